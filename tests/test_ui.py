"""The dashboard over plain HTTP: sign-in, sessions, CSRF, the Tier 2 rule, approvals, audit,
and what each page shows. A real server on loopback (the serving app with /ui mounted)."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import httpx
import itsdangerous
import pytest

from tests.ui_helpers import (
    BAD_ANSWER,
    TIER1_TEXT,
    TIER2_CHUNK,
    TIER2_SECRET,
    Seeded,
    csrf_of,
    seed,
    serving,
    signed_in,
)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Seeded, str]]:
    """One seeded project served for the read-only tests of this module, on each backend."""
    from tuneloop import Project

    with pytest.MonkeyPatch.context() as mp:
        dropper = None
        if request.param == "postgres":
            base = os.environ.get("TUNELOOP_TEST_POSTGRES_URL")
            if not base:
                pytest.skip("PostgreSQL tests need TUNELOOP_TEST_POSTGRES_URL")
            import psycopg

            name = "tl_ui_" + uuid.uuid4().hex[:10]
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            mp.setenv("TUNELOOP_DATABASE_URL", base.rsplit("/", 1)[0] + "/" + name)

            def dropper() -> None:
                with psycopg.connect(base, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            mp.delenv("TUNELOOP_DATABASE_URL", raising=False)
        root = tmp_path_factory.mktemp("ui") / "proj"
        Project.init(root).close()
        seeded = seed(root)
        try:
            with serving(root) as base_url:
                yield seeded, base_url
        finally:
            if dropper:
                dropper()


@pytest.fixture
def fresh(project_dir: Path) -> Iterator[tuple[Seeded, str]]:
    """A seeded project of its own, for tests that change what is stored (on both backends)."""
    seeded = seed(project_dir)
    with serving(project_dir) as base_url:
        yield seeded, base_url


@pytest.fixture
def fresh_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Seeded, str]]:
    """Like `fresh`, on SQLite only: for page behaviour that does not depend on the backend."""
    from tuneloop import Project

    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    root = tmp_path / "proj"
    Project.init(root).close()
    seeded = seed(root)
    with serving(root) as base_url:
        yield seeded, base_url


PAGES = ["/ui/overview", "/ui/evaluations", "/ui/requests", "/ui/requests?audience=public",
         "/ui/review", "/ui/approvals"]


def _walk(client: httpx.Client, s: Seeded) -> dict[str, httpx.Response]:
    paths = [*PAGES, f"/ui/evaluations/{s.eval_run}", f"/ui/evaluations/{s.tier2_eval_run}",
             f"/ui/evaluations/{s.tier2_eval_run}/examples/ex-1",
             f"/ui/requests/{s.tier1_request}", f"/ui/requests/{s.tier2_request}",
             "/ui/review?status=all", f"/ui/review/{s.review_items['req-tier2']}"]
    return {p: client.get(p) for p in paths}


@pytest.mark.slow
def test_developer_without_approval_never_receives_tier2_text(site) -> None:
    s, base = site
    with signed_in(base, s.keys["dan"]) as dan:
        pages = _walk(dan, s)
    for path, page in pages.items():
        assert page.status_code == 200, path
        assert "TL-CUSTOMER-7731" not in page.text, f"Tier 2 text leaked on {path}"
        assert "refund went to the wrong account" not in page.text, f"Tier 2 chunk on {path}"
        assert "question 1 about tickets" not in page.text, f"Tier 2 example leaked on {path}"
    detail = pages[f"/ui/requests/{s.tier2_request}"].text
    assert "Tier 2 request is hidden" in detail and "dan may not use logs" in detail
    assert "approvals?scope=logs%3Abase&amp;use=view" in detail
    # Metadata stays visible, and the Tier 1 chunk: it is the Tier 2 text that is withheld.
    assert "pub (public)" in detail and "<code>kb-40</code>" in detail
    assert "Deploy tokens rotate weekly." in detail
    assert "may not use source &#39;tickets&#39; (tier 2)" in detail
    item = pages[f"/ui/review/{s.review_items['req-tier2']}"].text
    assert "This Tier 2 item is hidden" in item and "logs%3Abase" in item
    examples = pages[f"/ui/evaluations/{s.tier2_eval_run}/examples/ex-1"].text
    assert "Tier 2 example hidden" in examples and "answer 1 by base" not in examples


def test_privacy_officer_sees_tier2_text_with_pii_redacted(site) -> None:
    s, base = site
    with signed_in(base, s.keys["pia"]) as pia:
        page = pia.get(f"/ui/requests/{s.tier2_request}")
        examples = pia.get(f"/ui/evaluations/{s.tier2_eval_run}/examples/ex-1")
    assert page.status_code == 200
    assert TIER2_SECRET in page.text
    assert "returned to sender" in page.text  # the corrected answer in the feedback
    assert "ana.silva@example.org" not in page.text
    assert "&lt;EMAIL_ADDRESS_1&gt;" in page.text
    assert "answer 1 by base" in examples.text
    assert TIER2_CHUNK.replace("'", "&#39;") in page.text


def test_tier1_request_shows_its_redacted_conversation_to_developers(site) -> None:
    s, base = site
    with signed_in(base, s.keys["dan"]) as dan:
        page = dan.get(f"/ui/requests/{s.tier1_request}").text
        listing = dan.get("/ui/requests").text
    assert TIER1_TEXT in page and "dan@example.com" not in page
    assert "EMAIL_ADDRESS × 1" in page
    assert TIER1_TEXT in listing  # Tier 1 excerpts appear in the list; Tier 2 ones never do
    assert "Tier 2: open the request" in listing


def test_request_log_filters_narrow_the_list(site) -> None:
    s, base = site
    with signed_in(base, s.keys["dan"]) as dan:
        def ids(query: str) -> set[str]:
            text = dan.get("/ui/requests" + query).text
            return {i for i in ("req-tier1", "req-tier2", "req-failed") if f">{i}<" in text}


        assert ids("") == {"req-tier1", "req-tier2", "req-failed"}  # (and req-bad)
        assert ids("?status=error") == {"req-failed"}
        assert ids("?status=429") == {"req-failed"}
        assert ids("?audience=public") == {"req-tier2"}
        assert ids("?rating=5") == {"req-tier1"}
        assert ids("?rating=low") == {"req-tier2"}
        assert ids("?rating=-1") == {"req-tier2"}
        assert ids("?rating=unrated") == {"req-failed"}
        assert ids("?variant=base&since=1h&status=ok") == {"req-tier1", "req-tier2"}
        assert ids("?variant=nope") == set()
        bad = dan.get("/ui/requests?since=yesterday")
    assert bad.status_code == 400 and "cannot read duration" in bad.text


def test_evaluation_page_compares_variants_with_charts_slices_and_examples(site) -> None:
    s, base = site
    with signed_in(base, s.keys["dan"]) as dan:
        run = dan.get(f"/ui/evaluations/{s.eval_run}").text
        only = dan.get(f"/ui/evaluations/{s.eval_run}?variant=base-rag&slice=billing").text
        example = dan.get(f"/ui/evaluations/{s.eval_run}/examples/ex-3").text
        listing = dan.get("/ui/evaluations").text
        missing = dan.get(f"/ui/evaluations/{s.eval_run}/examples/nope")
    assert "support@v1" in listing and f"run {s.eval_run}" in listing
    assert run.count("<svg") == 4 and 'aria-label="quality-vs-latency"' in run
    assert "Side by side" in run and "base-rag" in run and "95% CI" in run
    assert ">billing<" in run and ">shipping<" in run
    assert "answer 0 by base" in run
    assert "answer 1 by base-rag" in only and "answer 1 by base<" not in only
    assert "answer 0 by base-rag" not in only  # ex-0 is in the shipping slice
    assert "reference answer 3" in example
    assert "answer 3 by base" in example and "answer 3 by base-rag" in example
    assert missing.status_code == 404


def test_two_runs_compare_example_by_example(site) -> None:
    s, base = site
    a, b = s.eval_run, s.tier2_eval_run
    with signed_in(base, s.keys["dan"]) as dan:
        listing = dan.get("/ui/evaluations").text
        page = dan.get(f"/ui/compare?a={a}&b={b}")
        same = dan.get(f"/ui/compare?a={a}&b={a}")
        unknown = dan.get(f"/ui/compare?a={a}&b=999")
    assert 'action="/ui/compare"' in listing
    assert page.status_code == 200
    text = page.text
    assert f"base@{a}" in text and f"base-rag@{a}" in text and f"base@{b}" in text
    assert "Side by side" in text and text.count("<svg") == 3
    assert same.status_code == 400 and "compared with itself" in same.text
    assert unknown.status_code == 404 and "no evaluation run 999" in unknown.text


def test_overview_shows_variants_rollout_and_last_gate_status(site) -> None:
    s, base = site
    with signed_in(base, s.keys["dan"]) as dan:
        page = dan.get("/ui/overview").text
    assert "assistant: internal" in page
    assert f'href="/ui/evaluations/{s.tier2_eval_run}"' in page  # the newest run with `base`
    # the overview shows the verdict that run's summary holds for `base`, beside the run
    from tuneloop import Project
    from tuneloop.evaluate import load_run

    project = Project.open(s.root)
    passed = load_run(project, s.tier2_eval_run, with_outputs=False).per_variant["base"]["passed"]
    project.close()
    verdict = ('<span class="gate pass">gates passed</span>' if passed
               else '<span class="gate fail">gates failed</span>')
    assert f"run {s.tier2_eval_run}</a> {verdict}" in page
    assert "v1a2b3c4d5e6" in page and "train 40, validation 5, test 6" in page
    # Lineage: the fine-tuned model, its base and the dataset version it was trained on.
    assert "support-lora-1" in page and "support@v1a2b3c4d5e6f7" in page


def test_audit_page_is_for_privacy_and_shows_the_chain_verified(site) -> None:
    s, base = site
    with signed_in(base, s.keys["pia"]) as pia:
        page = pia.get("/ui/audit").text
        filtered = pia.get("/ui/audit?action=approval.").text
    assert "Chain verified" in page and "key.create" in page
    assert "approval.request" in filtered and "key.create" not in filtered
    with signed_in(base, s.keys["dan"]) as dan:
        refused = dan.get("/ui/audit")
    assert refused.status_code == 403 and "privacy team and admins" in refused.text


def test_public_principal_sees_only_its_own_requests_and_no_loop_pages(site) -> None:
    s, base = site
    with signed_in(base, s.keys["pub"]) as pub:
        listing = pub.get("/ui/requests").text
        overview = pub.get("/ui/overview")
        other = pub.get(f"/ui/requests/{s.tier1_request}")
    assert ">req-tier2<" in listing and ">req-tier1<" not in listing
    assert overview.status_code == 403
    assert other.status_code == 404 and TIER1_TEXT not in other.text


def test_pages_need_a_session_and_bad_keys_are_refused(site) -> None:
    s, base = site
    with httpx.Client(base_url=base) as anon:
        page = anon.get("/ui/requests/req-tier2")
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login?next=%2Fui%2Frequests%2Freq-tier2"
        token = csrf_of(anon.get("/ui/login").text)
        bad = anon.post("/ui/login", data={"csrf_token": token, "api_key": "tl_nope_nope"})
        assert bad.status_code == 401 and "not valid" in bad.text
        assert anon.get("/ui/overview").status_code == 303
        # `next` only ever leads to a page of this site.
        token = csrf_of(anon.get("/ui/login").text)
        ok = anon.post("/ui/login", data={"csrf_token": token, "api_key": s.keys["dan"],
                                          "next": "//evil.example/"})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/overview"


def test_session_cookie_is_httponly_samesite_strict_and_holds_no_key(site) -> None:
    s, base = site
    with httpx.Client(base_url=base) as client:
        token = csrf_of(client.get("/ui/login").text)
        answer = client.post("/ui/login", data={"csrf_token": token, "api_key": s.keys["dan"]})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert "secure" not in cookie  # plain http here; see the https test below
    value = answer.cookies["tuneloop_ui"]
    secret = s.keys["dan"].split("_", 2)[2]  # the secret itself may hold "_"
    assert s.keys["dan"] not in value and secret[:10] not in value
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")


def test_session_cookie_is_secure_when_served_over_https(project_dir: Path) -> None:
    # A TLS server needs a certificate; Starlette's in-process client speaks the https scheme.
    from starlette.testclient import TestClient

    from tuneloop import Project
    from tuneloop.ui import create_ui_app

    project = Project.open(project_dir)
    with TestClient(create_ui_app(project), base_url="https://dash.internal") as client:
        answer = client.get("/ui/login")
    project.close()
    assert "secure" in answer.headers["set-cookie"].lower()


def test_forms_refuse_posts_without_a_valid_csrf_token(fresh) -> None:
    from tuneloop import Project
    from tuneloop.governance import approvals

    s, base = fresh
    with signed_in(base, s.keys["pia"]) as pia:
        before = pia.get("/ui/approvals").text
        for token in (None, "forged-token", csrf_of(before)[:-2] + "xx"):
            data = {"reason": "looks fine"} | ({"csrf_token": token} if token else {})
            grant = pia.post(f"/ui/approvals/{s.pending_approval}/grant", data=data)
            assert grant.status_code == 403 and "security token" in grant.text
            asked = pia.post("/ui/approvals", data={**data, "scope": "source:tickets",
                                                    "uses": "view", "purpose": "x"})
            assert asked.status_code == 403
            assert pia.post("/ui/logout", data=data).status_code == 403
        assert pia.get("/ui/overview").status_code == 200  # still signed in
    with httpx.Client(base_url=base) as anon:
        anon.get("/ui/login")
        login = anon.post("/ui/login", data={"api_key": s.keys["dan"]})
        assert login.status_code == 403
        assert anon.get("/ui/overview").status_code == 303  # not signed in
    project = Project.open(s.root)
    rows = approvals.list_approvals(project.store)
    project.close()
    assert [(a.id, a.status) for a, _, _ in rows] == [(s.pending_approval, "pending")]


def test_grant_over_the_dashboard_lets_the_developer_see_tier2(fresh) -> None:
    s, base = fresh
    path = f"/ui/requests/{s.tier2_request}"
    with signed_in(base, s.keys["dan"]) as dan:
        assert TIER2_SECRET not in dan.get(path).text
        page = dan.get("/ui/approvals").text
        # The requester cannot decide on their own request, whatever the page offers.
        self_grant = dan.post(f"/ui/approvals/{s.pending_approval}/grant",
                              data={"csrf_token": csrf_of(page), "reason": "mine"})
        assert self_grant.status_code == 303
        assert "only the privacy team decides" in dan.get("/ui/approvals").text
        with signed_in(base, s.keys["pia"]) as pia:
            token = csrf_of(pia.get("/ui/approvals").text)
            no_reason = pia.post(f"/ui/approvals/{s.pending_approval}/grant",
                                 data={"csrf_token": token, "reason": " "})
            assert "give a reason" in pia.get(no_reason.headers["location"]).text
            done = pia.post(f"/ui/approvals/{s.pending_approval}/grant",
                            data={"csrf_token": token, "reason": "scoped to one variant"})
            assert f"Approval #{s.pending_approval} granted" in pia.get(
                done.headers["location"]).text
            audit = pia.get("/ui/audit?action=approval.grant").text
            assert "scoped to one variant" in audit and "Chain verified" in audit
            # Nobody decides on their own request, privacy officers included.
            asked = pia.post("/ui/approvals", data={"csrf_token": token, "scope": "logs:base",
                                                    "uses": "view", "purpose": "spot checks"})
            own = int(pia.get(asked.headers["location"]).text.split("Approval #")[1].split()[0])
            pia.post(f"/ui/approvals/{own}/grant", data={"csrf_token": token, "reason": "me"})
            assert "nobody approves their own request" in pia.get("/ui/approvals").text
        assert TIER2_SECRET in dan.get(path).text
        mine = dan.get("/ui/approvals").text
        assert "granted" in mine and "by pia" in mine


def test_developer_requests_an_approval_from_the_dashboard(fresh_sqlite) -> None:
    s, base = fresh_sqlite
    with signed_in(base, s.keys["dan"]) as dan:
        token = csrf_of(dan.get("/ui/approvals").text)
        bad = dan.post("/ui/approvals", data={"csrf_token": token, "scope": "tickets",
                                              "uses": "view", "purpose": "x"})
        assert "cannot read scope" in dan.get(bad.headers["location"]).text
        ok = dan.post("/ui/approvals", data={"csrf_token": token, "scope": "source:tickets",
                                             "uses": ["view", "evaluate"],
                                             "purpose": "measure the refund answers",
                                             "expires_in": "7d"})
        page = dan.get(ok.headers["location"]).text
    assert "requested; the privacy team will decide" in page
    assert "measure the refund answers" in page and "evaluate, view" in page
    with signed_in(base, s.keys["pat"]) as pat:
        assert "measure the refund answers" in pat.get("/ui/approvals").text


def test_revoked_key_and_expired_session_end_the_session(fresh_sqlite) -> None:
    from tuneloop import Project
    from tuneloop.governance import principals
    from tuneloop.ui.session import load_secret

    s, base = fresh_sqlite
    project = Project.open(s.root)
    with signed_in(base, s.keys["dan"]) as dan:
        assert dan.get("/ui/overview").status_code == 200
        principals.revoke_key(project.store, project.actor(), "_".join(
            s.keys["dan"].split("_")[:2]))
        gone = dan.get("/ui/overview")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/ui/login")
        assert "was revoked" in dan.get(gone.headers["location"]).text
    # A session signed in thirteen hours ago has expired, however valid its signature.
    pia = principals.authenticate(project.store, s.keys["pia"])
    started = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=13)).isoformat()
    payload = {"pid": pia.id, "prefix": "_".join(s.keys["pia"].split("_")[:2]),
               "since": started, "csrf": "t"}
    signer = itsdangerous.TimestampSigner(load_secret(project.state_dir))
    cookie = signer.sign(b64encode(json.dumps(payload).encode())).decode()
    project.close()
    with httpx.Client(base_url=base) as old:
        answer = old.get("/ui/audit", headers={"cookie": f"tuneloop_ui={cookie}"})
        assert answer.status_code == 303
        assert "session expired" in old.get(answer.headers["location"]).text


def test_review_queue_decisions_go_through_the_flywheel(fresh_sqlite) -> None:
    s, base = fresh_sqlite
    bad, tier2 = s.review_items["req-bad"], s.review_items["req-tier2"]
    with signed_in(base, s.keys["dan"]) as dan:
        queue = dan.get("/ui/review").text
        assert f">#{bad}<" in queue and f">#{tier2}<" in queue
        item = dan.get(f"/ui/review/{bad}").text
        assert BAD_ANSWER in item and "My VPN drops every hour" in item
        token = csrf_of(item)
        assert dan.post(f"/ui/review/{bad}/edit", data={"answer": "x"}).status_code == 403
        edited = dan.post(f"/ui/review/{bad}/edit", data={
            "csrf_token": token, "answer": "Update the VPN client; mail ops@example.com",
            "note": "known issue"})
        page = dan.get(edited.headers["location"]).text
        assert f"Review item #{bad}: edited." in page
        assert "&lt;EMAIL_ADDRESS_1&gt;" in page and "ops@example.com" not in page
        # Deciding on a Tier 2 item needs the same view approval as reading it.
        refused = dan.post(f"/ui/review/{tier2}/accept", data={"csrf_token": token})
        assert "may not use logs" in dan.get(refused.headers["location"]).text
        assert ">edited<" in dan.get("/ui/review?status=edited").text
        assert f">#{bad}<" not in dan.get("/ui/review").text  # no longer open
        assert dan.get("/ui/review?status=bogus").status_code == 400


def test_view_approval_for_a_dataset_opens_its_tier2_evaluation_examples(fresh_sqlite) -> None:
    from tuneloop import Project
    from tuneloop.governance import approvals, principals

    s, base = fresh_sqlite
    path = f"/ui/evaluations/{s.tier2_eval_run}/examples/ex-1"
    with signed_in(base, s.keys["dan"]) as dan:
        hidden = dan.get(path).text
        assert "may not use dataset &#39;tickets&#39;" in hidden
        assert "answer 1 by base" not in hidden
        project = Project.open(s.root)
        store = project.store
        asked = approvals.request(store, principals.authenticate(store, s.keys["dan"]),
                                  scope=["dataset:tickets"], uses=["view"],
                                  purpose="read the failing ticket answers")
        approvals.grant(store, principals.authenticate(store, s.keys["pat"]), asked, "ok")
        project.close()
        shown = dan.get(path).text
    assert "answer 1 by base" in shown and "question 1 about tickets@v7" in shown


def test_audit_page_says_when_the_chain_is_broken(fresh_sqlite) -> None:
    from sqlalchemy import update

    from tuneloop import Project
    from tuneloop.store import AuditEvent

    s, base = fresh_sqlite
    project = Project.open(s.root)
    with project.store.session() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(actor="mallory"))
    project.close()
    with signed_in(base, s.keys["pia"]) as pia:
        page = pia.get("/ui/audit").text
    assert "Chain BROKEN at event #2" in page and "edited?" in page
    assert "Chain verified" not in page
