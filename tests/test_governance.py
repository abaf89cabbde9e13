"""Approval rules and the gate, against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from tuneloop.errors import ApprovalRequired, NotFound, PermissionDenied, TuneloopError
from tuneloop.governance import Resource, approvals, audit, principals, require
from tuneloop.store import Approval, AuditEvent

TICKETS = Resource("source", "tickets", 2)
DOCS = Resource("source", "docs", 1)
DATASET = Resource("dataset", "support", 2, roots=frozenset({"source:tickets"}))


def granted(
    store,
    people,
    *,
    scope=("source:tickets",),
    uses=("train",),
    requester="dev",
    expires_in=dt.timedelta(days=30),
    **kw,
) -> int:
    approval_id = approvals.request(
        store,
        people[requester],
        scope=list(scope),
        uses=list(uses),
        purpose="fine-tune the assistant",
        expires_in=expires_in,
        **kw,
    )
    approvals.grant(store, people["privacy"], approval_id, "ok")
    return approval_id


def actions(store) -> list[str]:
    with store.session(write=False) as s:
        return list(s.execute(select(AuditEvent.action).order_by(AuditEvent.seq)).scalars())


def test_tier1_is_usable_without_approval_and_every_use_is_audited(store, people) -> None:
    assert require(store, people["dev"], "train", [DOCS]) == []
    assert actions(store)[-1] == "use.train"


def test_tier2_without_approval_is_refused_naming_what_to_request(store, people) -> None:
    with pytest.raises(ApprovalRequired) as info:
        require(store, people["dev"], "train", [TICKETS])
    err = info.value
    assert "source 'tickets' (tier 2)" in err.message and "'train'" in err.message
    assert "tuneloop approvals request --scope source:tickets --use train" in err.hint
    assert actions(store)[-1] == "access.refused"


def test_granted_approval_allows_the_use_and_is_returned_for_lineage(store, people) -> None:
    approval_id = granted(store, people)
    assert require(store, people["dev"], "train", [TICKETS, DOCS]) == [approval_id]


def test_approval_of_a_source_covers_what_is_derived_from_it(store, people) -> None:
    approval_id = granted(store, people)
    assert require(store, people["dev"], "train", [DATASET]) == [approval_id]


def test_self_approval_is_impossible_even_for_the_privacy_team(store, people) -> None:
    approval_id = approvals.request(
        store, people["privacy"], scope=["source:tickets"], uses=["view"], purpose="audit sample"
    )
    with pytest.raises(PermissionDenied, match="nobody approves their own request"):
        approvals.grant(store, people["privacy"], approval_id)
    approvals.grant(store, people["privacy2"], approval_id)  # a colleague may


@pytest.mark.parametrize("role", ["dev2", "admin"])
def test_only_the_privacy_role_decides(store, people, role) -> None:
    approval_id = approvals.request(
        store, people["dev"], scope=["source:tickets"], uses=["train"], purpose="x"
    )
    with pytest.raises(PermissionDenied, match="only the privacy team"):
        approvals.grant(store, people[role], approval_id)
    with pytest.raises(PermissionDenied, match="only the privacy team"):
        approvals.deny(store, people[role], approval_id)
    assert actions(store)[-1] == "approval.refused"
    with pytest.raises(ApprovalRequired):
        require(store, people["dev"], "train", [TICKETS])


def test_expired_approval_stops_working_and_the_refusal_says_so(store, people) -> None:
    approval_id = granted(store, people)
    with store.session() as s:
        s.execute(
            update(Approval)
            .where(Approval.id == approval_id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        )
    with pytest.raises(ApprovalRequired, match=f"approval #{approval_id} expired"):
        require(store, people["dev"], "train", [TICKETS])


def test_revoked_approval_stops_working_at_once(store, people) -> None:
    approval_id = granted(store, people)
    require(store, people["dev"], "train", [TICKETS])
    approvals.revoke(store, people["privacy"], approval_id, "project ended")
    with pytest.raises(ApprovalRequired, match=f"approval #{approval_id} is revoked"):
        require(store, people["dev"], "train", [TICKETS])


def test_denied_and_pending_requests_allow_nothing(store, people) -> None:
    pending = approvals.request(
        store, people["dev"], scope=["source:tickets"], uses=["train"], purpose="x"
    )
    with pytest.raises(ApprovalRequired, match=f"approval #{pending} is pending"):
        require(store, people["dev"], "train", [TICKETS])
    approvals.deny(store, people["privacy"], pending, "no")
    with pytest.raises(ApprovalRequired, match=f"approval #{pending} is denied"):
        require(store, people["dev"], "train", [TICKETS])
    with pytest.raises(TuneloopError, match="only a pending approval"):
        approvals.grant(store, people["privacy"], pending)


def test_scope_that_does_not_cover_the_resource_allows_nothing(store, people) -> None:
    granted(store, people, scope=("source:other-tickets",))
    with pytest.raises(ApprovalRequired):
        require(store, people["dev"], "train", [TICKETS])
    derived_from_two = Resource(
        "dataset", "mix", 2, roots=frozenset({"source:tickets", "source:calls"})
    )
    granted(store, people, scope=("source:tickets",))
    with pytest.raises(ApprovalRequired):
        require(store, people["dev"], "train", [derived_from_two])


def test_use_not_allowed_by_the_approval_is_refused(store, people) -> None:
    approval_id = granted(store, people, uses=("evaluate",))
    with pytest.raises(
        ApprovalRequired, match=f"approval #{approval_id} allows evaluate, not 'train'"
    ):
        require(store, people["dev"], "train", [TICKETS])
    assert require(store, people["dev"], "evaluate", [TICKETS]) == [approval_id]


def test_an_approval_is_personal_unless_given_to_an_audience(store, people) -> None:
    granted(store, people)
    with pytest.raises(ApprovalRequired):
        require(store, people["dev2"], "train", [TICKETS])
    team = granted(store, people, uses=("rag",), for_audience="internal")
    assert require(store, people["dev2"], "rag", [TICKETS]) == [team]
    with pytest.raises(ApprovalRequired):
        require(store, people["public"], "rag", [TICKETS])


def test_privacy_team_may_view_tier2_without_approval_but_not_train(store, people) -> None:
    require(store, people["privacy"], "view", [TICKETS])
    with pytest.raises(ApprovalRequired):
        require(store, people["privacy"], "train", [TICKETS])


def test_bad_requests_are_refused_with_the_allowed_values(store, people) -> None:
    with pytest.raises(TuneloopError, match="allowed uses: train, evaluate"):
        approvals.request(store, people["dev"], scope=["source:t"], uses=["sell"], purpose="x")
    with pytest.raises(TuneloopError, match="cannot read scope 'tickets'"):
        approvals.request(store, people["dev"], scope=["tickets"], uses=["train"], purpose="x")
    with pytest.raises(TuneloopError, match="needs a purpose"):
        approvals.request(store, people["dev"], scope=["source:t"], uses=["train"], purpose=" ")
    with pytest.raises(NotFound):
        approvals.grant(store, people["privacy"], 999)


def test_api_keys_are_stored_hashed_and_revocable(store, people) -> None:
    new = principals.create_key(
        store, people["admin"], "svc", role="developer", audience="public", kind="service"
    )
    assert principals.authenticate(store, new.secret).name == "svc"
    for key, _ in principals.list_keys(store):
        assert new.secret not in (key.key_hash, key.prefix)
    with pytest.raises(PermissionDenied):
        principals.authenticate(store, new.secret + "x")
    principals.revoke_key(store, people["admin"], new.prefix)
    with pytest.raises(PermissionDenied, match="revoked"):
        principals.authenticate(store, new.secret)
    with pytest.raises(PermissionDenied, match="only an admin"):
        principals.create_key(store, people["dev"], "mallory", role="admin")


def test_every_decision_lands_in_a_chain_that_verifies(store, people) -> None:
    approval_id = granted(store, people)
    approvals.revoke(store, people["privacy"], approval_id)
    assert actions(store) == ["approval.request", "approval.grant", "approval.revoke"]
    assert audit.verify(store).ok


def test_malformed_approval_requests_are_the_callers_error(store, people) -> None:
    """A bad duration, scope or use is a 400 for the server and a clear message for the CLI,
    never a server error (found by the API fuzz test)."""
    from tuneloop.errors import InvalidInput

    with pytest.raises(InvalidInput, match="cannot read duration") as caught:
        approvals.parse_duration("")
    assert caught.value.http_status == 400
    for bad in ({"scope": []}, {"uses": ["sell"]}):
        arguments = {"scope": ["source:tickets"], "uses": ["train"], **bad}
        with pytest.raises(InvalidInput) as caught:
            approvals.request(store, people["dev"], purpose="x", **arguments)
        assert caught.value.http_status == 400
