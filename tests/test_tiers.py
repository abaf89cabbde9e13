"""The tier rules as pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from tuneloop.governance.tiers import (
    Actor,
    Grant,
    Resource,
    audience_may_receive,
    covering_grant,
    derived_roots,
    derived_tier,
    may_decide,
)

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DEV = Actor(1, "dan", "developer", "internal")


def grant(**kw) -> Grant:
    base = dict(
        id=1,
        status="granted",
        scope=frozenset({"source:t"}),
        uses=frozenset({"train"}),
        expires_at=NOW + dt.timedelta(days=1),
        beneficiary="principal:dan",
    )
    base.update(kw)
    return Grant(**base)


def test_taint_propagates_to_the_highest_input_tier() -> None:
    assert derived_tier() == 1
    assert derived_tier(1, 1) == 1
    assert derived_tier([1, 2], 1) == 2
    with pytest.raises(ValueError, match="unknown tier 3"):
        derived_tier(3)


def test_roots_are_the_tier2_sources_behind_a_derived_thing() -> None:
    src = Resource("source", "t", 2)
    ds = Resource("dataset", "d", 2, roots=frozenset({"source:t", "source:u"}))
    assert derived_roots(src, Resource("source", "docs", 1)) == {"source:t"}
    assert derived_roots(src, ds) == {"source:t", "source:u"}


@pytest.mark.parametrize(
    ("change", "allowed"),
    [
        ({}, True),
        ({"status": "pending"}, False),
        ({"status": "revoked"}, False),
        ({"expires_at": NOW}, False),
        ({"uses": frozenset({"view"})}, False),
        ({"scope": frozenset({"source:x"})}, False),
        ({"beneficiary": "principal:eve"}, False),
        ({"beneficiary": "audience:internal"}, True),
        ({"beneficiary": "audience:public"}, False),
    ],
)
def test_a_grant_covers_only_when_live_in_scope_for_the_use_and_for_this_actor(change, allowed):
    found = covering_grant(DEV, Resource("source", "t", 2), "train", [grant(**change)], NOW)
    assert (found is not None) is allowed


def test_deciding_needs_the_privacy_role_and_another_person() -> None:
    assert may_decide(Actor(2, "pia", "privacy", "internal"), requester_id=1) is None
    assert "own request" in may_decide(Actor(1, "pia", "privacy", "internal"), requester_id=1)
    assert "privacy team" in may_decide(Actor(3, "ada", "admin", "internal"), requester_id=1)


def test_public_audience_never_receives_tier2_without_deploy_public() -> None:
    assert audience_may_receive("internal", 2)
    assert audience_may_receive("public", 1)
    assert not audience_may_receive("public", 2)
    assert audience_may_receive("public", 2, deploy_public_approved=True)
