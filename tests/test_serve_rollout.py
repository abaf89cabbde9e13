"""Rollout: stages, gates before the public, sticky traffic shares, shadows, rollback, audit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import run_cli
from tests.test_serve_support import (
    CONFIG,
    close_engines,
    direct_answer,
    live_server,
    llama_loader,
    make_keys,
    make_project,
)
from tuneloop import Project, rollout
from tuneloop.errors import ApprovalRequired, GateFailed, PermissionDenied
from tuneloop.governance import approvals, audit, principals
from tuneloop.serve import requestlog
from tuneloop.serve.app import create_app
from tuneloop.store.evals import EvalRun
from tuneloop.store.models import utcnow

TIER2_CONFIG = CONFIG.replace("variants:\n", """\
sources:
  - {name: tickets-kb, path: kb, kind: documents, tier: 2}
knowledge_base:
  sources: [tickets-kb]
variants:
  - name: rag2
    retrieval: {enabled: true}
""")


@pytest.fixture
def any_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                database_url: str) -> Iterator[Project]:
    """The project on SQLite and on PostgreSQL."""
    if database_url.startswith("postgres"):
        monkeypatch.setenv("TUNELOOP_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    p = make_project(tmp_path / "proj", TIER2_CONFIG)
    yield p
    p.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """The project on SQLite only (the store code paths are the same as above)."""
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    p = make_project(tmp_path / "proj", TIER2_CONFIG)
    yield p
    p.close()


def record_eval(project: Project, variant: str, passed: bool) -> int:
    """Store a completed evaluation run as the evaluation stage does (its table, its summary)."""
    gate = {"variant": variant, "gate": "rouge_l", "kind": "quality", "value": 0.5,
            "threshold": 0.3 if passed else 0.9, "op": ">=", "required": True,
            "status": "pass" if passed else "fail"}
    with project.store.session() as session:
        run = EvalRun(status="completed", actor="test", variants=[variant],
                      summary={"per_variant": {variant: {"passed": passed, "gates": [gate]}}},
                      finished_at=utcnow())
        session.add(run)
        session.flush()
        return run.id


def actions(project: Project) -> list[str]:
    return [e.action for e in reversed(audit.list_events(project.store, limit=200))]


def test_candidate_reaches_public_only_after_its_evaluation_passed(any_project: Project) -> None:
    project = any_project
    me = project.actor()
    rollout.set_stage(project, me, "assistant", "base", "internal")
    rollout.set_stage(project, me, "assistant", "candidate", "shadow")
    assert rollout.promote(project, me, "assistant", "candidate").at("internal")[0].variant \
        == "candidate"
    with pytest.raises(GateFailed, match="no completed evaluation"):
        rollout.promote(project, me, "assistant", "candidate", percent=20)
    failed_run = record_eval(project, "candidate", passed=False)
    with pytest.raises(GateFailed, match=f"eval run #{failed_run}: failed rouge_l"):
        rollout.promote(project, me, "assistant", "candidate", percent=20)
    record_eval(project, "candidate", passed=True)
    state = rollout.promote(project, me, "assistant", "candidate", percent=20)
    assert [(e.variant, e.stage, e.percent) for e in state.at("public")] == [
        ("candidate", "public", 20.0)]
    assert actions(project).count("rollout.refused") == 2
    assert "rollout.promote" in actions(project)
    assert audit.verify(project.store).ok


def test_public_share_is_sticky_per_caller_and_near_the_percentage() -> None:
    state = rollout.AliasState("assistant", (rollout.Entry("candidate", "public", 20.0),
                                             rollout.Entry("base", "all", 100.0)))
    routes = {f"user{i}": state.route(f"user{i}", "public") for i in range(2000)}
    share = sum(v == "candidate" for v in routes.values()) / len(routes)
    assert 0.16 < share < 0.24
    assert all(state.route(name, "public") == v for name, v in list(routes.items())[:200])
    # Internal callers get the newest variant first, whatever their hash.
    assert {state.route(f"user{i}", "internal") for i in range(50)} == {"candidate"}
    assert state.shadows("public") == []


def test_tier2_variant_needs_a_deploy_public_approval(project: Project) -> None:
    me = project.actor()
    record_eval(project, "rag2", passed=True)
    with pytest.raises(ApprovalRequired, match="deploy-public"):
        rollout.set_stage(project, me, "assistant", "rag2", "public", percent=10)
    assert rollout.state(project, "assistant").entries == ()
    with project.store.session() as session:
        privacy = principals.actor_of(principals.ensure_principal(session, "pia", role="privacy"))
    request_id = approvals.request(project.store, me, scope=["source:tickets-kb"],
                                   uses=["deploy-public"], purpose="serve the RAG assistant")
    approvals.grant(project.store, privacy, request_id)
    state = rollout.set_stage(project, me, "assistant", "rag2", "public", percent=10)
    assert state.at("public")[0].variant == "rag2"
    assert "access.refused" in actions(project) and "use.deploy-public" in actions(project)


@pytest.mark.slow
def test_revoking_deploy_public_stops_public_traffic_to_a_tier2_variant(project: Project) -> None:
    me = project.actor()
    keys = make_keys(project)
    (project.root / "kb").mkdir()
    (project.root / "kb" / "faq.md").write_text("# Refunds\nRefunds take five days.\n")
    with project.store.session() as session:
        privacy = principals.actor_of(principals.ensure_principal(session, "pia", role="privacy"))
    approval = approvals.request(project.store, me, scope=["source:tickets-kb"],
                                 uses=["deploy-public"], purpose="serve the RAG assistant")
    approvals.grant(project.store, privacy, approval)
    record_eval(project, "rag2", passed=True)
    rollout.set_stage(project, me, "assistant", "rag2", "all")
    loader = llama_loader(project)
    app = create_app(project, variant_loader=loader)
    question = [{"role": "user", "content": "refunds?"}]
    with live_server(app) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=keys.public, max_retries=0)
        answer = api.chat.completions.create(model="assistant", messages=question)
        # What rag2 answers directly, retrieving with the public caller's rights.
        expected = direct_answer(loader, "rag2", question,
                                 principals.authenticate(project.store, keys.public))
        assert answer.choices[0].message.content == expected.text
        assert expected.text != direct_answer(loader, "base", question).text
        approvals.revoke(project.store, privacy, approval, reason="customer complaint")
        deadline = time.monotonic() + 15
        while True:
            try:
                api.chat.completions.create(model="assistant",
                                            messages=[{"role": "user", "content": "again"}])
            except openai.InternalServerError as exc:
                assert exc.status_code == 503 and "rag2" not in exc.message
                break
            assert time.monotonic() < deadline, "public traffic went on after the revocation"
            time.sleep(0.2)
    rows = requestlog.recent(project.store)
    assert rows[0].status == 503 and rows[0].tier == 2 and rows[-1].status == 200
    assert rows[-1].variant == "rag2"
    close_engines(loader)


def test_rollback_restores_the_state_before_the_last_change(any_project: Project) -> None:
    project = any_project
    me = project.actor()
    record_eval(project, "base", passed=True)
    record_eval(project, "candidate", passed=True)
    rollout.set_stage(project, me, "assistant", "base", "all")
    rollout.set_stage(project, me, "assistant", "candidate", "all", reason="ship it")
    assert [e.variant for e in rollout.state(project, "assistant").at("all")] == ["candidate"]
    state = rollout.rollback(project, me, "assistant", reason="complaints")
    assert [(e.variant, e.stage) for e in state.entries] == [("base", "all")]
    state = rollout.rollback(project, me, "assistant")
    assert state.entries == ()
    with pytest.raises(Exception, match="nothing to roll back"):
        rollout.rollback(project, me, "assistant")
    history = rollout.history(project, "assistant")
    assert [h.action for h in history] == ["rollback", "rollback", "set", "set"]
    assert actions(project).count("rollout.rollback") == 2


def test_public_callers_cannot_change_rollouts(project: Project) -> None:
    with project.store.session() as session:
        outsider = principals.actor_of(principals.ensure_principal(
            session, "pam", role="developer", audience="public"))
    with pytest.raises(PermissionDenied):
        rollout.set_stage(project, outsider, "assistant", "base", "internal")
    assert actions(project)[-1] == "rollout.refused"


@pytest.mark.slow
def test_shadow_gets_internal_traffic_but_never_answers(project: Project) -> None:
    me = project.actor()
    keys = make_keys(project)
    record_eval(project, "base", passed=True)
    rollout.set_stage(project, me, "assistant", "base", "all")
    rollout.set_stage(project, me, "assistant", "shadowy", "shadow")
    loader = llama_loader(project)
    with live_server(create_app(project, variant_loader=loader)) as url:
        answers = {}
        for who, key in (("internal", keys.internal), ("public", keys.public)):
            api = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
            raw = api.chat.completions.with_raw_response.create(
                model="assistant", messages=[{"role": "user", "content": "hi"}])
            answers[who] = (raw.headers["x-request-id"], raw.parse().choices[0].message.content)
        deadline = time.monotonic() + 10
        while len(requestlog.recent(project.store)) < 3:
            assert time.monotonic() < deadline, "the shadow answer was never logged"
            time.sleep(0.05)
        public_models = openai.OpenAI(base_url=url + "/v1", api_key=keys.public,
                                      max_retries=0).models.list()
        assert [m.id for m in public_models] == ["assistant", "all-minilm-l6-v2"]
    hi = [{"role": "user", "content": "hi"}]
    base_answer, shadow_answer = (direct_answer(loader, v, hi).text for v in ("base", "shadowy"))
    assert base_answer != shadow_answer
    assert {text for _, text in answers.values()} == {base_answer}
    shadows = [r for r in requestlog.recent(project.store) if r.shadow_of]
    redacted_shadow = requestlog.redact(project.config.privacy.redact, ["hi", shadow_answer])[0]
    assert [(r.variant, r.shadow_of, r.output) for r in shadows] == [
        ("shadowy", answers["internal"][0], redacted_shadow[-1])]
    close_engines(loader)
    public_row = requestlog.get(project.store, answers["public"][0])
    assert public_row is not None and public_row.tier == 2  # logs from customers are Tier 2


@pytest.mark.slow
def test_rollout_cli_sets_and_shows_the_stage(project: Project) -> None:
    done = run_cli("rollout", "set", "assistant", "candidate", "--stage", "shadow",
                   cwd=project.root)
    assert done.returncode == 0, done.stderr
    shown = run_cli("rollout", "status", "assistant", cwd=project.root)
    assert "candidate" in shown.stdout and "shadow" in shown.stdout
    refused = run_cli("rollout", "promote", "assistant", "base", cwd=project.root)
    assert refused.returncode == 1 and "not in the rollout" in refused.stderr

