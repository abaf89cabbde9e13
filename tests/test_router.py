"""Query-type routing: a router trained on a small labelled set (real embedding model), routed
evaluation from the outputs a real evaluation run stored, and its gate in the rollout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tuneloop import Project, rollout
from tuneloop.errors import ApprovalRequired, GateFailed

CONFIG = """
version: 1
task:
  name: routing
  system_prompt: Answer briefly.
metrics:
  - name: rouge_l
    threshold: 0.0
    primary: true
latency:
  p95_ms: 600000
  ttft_ms: 600000
sources:
  - name: tickets
    path: data/tickets.jsonl
    kind: records
    tier: {tier}
base_model:
  name: tiny
  path: {model}
datasets:
  - name: tickets
    sources: [tickets]
    split: {{train: 0.6, validation: 0.1, test: 0.3}}
    redact: false
    min_output_tokens: 0
    near_dup_threshold: 1.0
    slice_field: category
rollout:
  min_rated_requests: 4
variants:
  - name: short
    model: base
    generation: {{max_tokens: 3, temperature: 0}}
  - name: long
    model: base
    prompt: You are a careful support agent. Explain the fix step by step.
    generation: {{max_tokens: 8, temperature: 0}}
  - name: careful
    model: base
    prompt: Reply in one sentence that names the product area.
    generation: {{max_tokens: 6, temperature: 0}}
"""

TEMPLATES = {
    "billing": ["I was charged twice on invoice {i}, please refund the extra payment",
                "My credit card payment for plan {i} failed and the bill is overdue",
                "Why is my monthly invoice {i} higher than the price on your pricing page?",
                "Please send a receipt for the subscription charge number {i}"],
    "sync": ["Files in folder {i} are not syncing to my laptop",
             "The desktop client is stuck uploading {i} documents since yesterday",
             "Changes I make on my phone never sync to the shared folder {i}",
             "Sync conflict copies keep appearing in directory {i}"],
    "sso": ["SAML single sign-on login fails with error {i} from Okta",
            "Our identity provider redirect loops when staff sign in with SSO {i}",
            "How do I configure Azure AD SAML for workspace {i}?",
            "SCIM provisioning from Okta does not create user accounts {i}"],
}
HELD_OUT = {"billing": "The card was billed two times this month, I need my money back",
            "sync": "My documents stopped synchronising between the two computers",
            "sso": "Employees cannot log in through our Okta SAML integration"}
# TF-IDF alone matches words and their pieces, not meaning: its held-out messages share some.
LEXICAL_HELD_OUT = {"billing": "Please refund the payment: my card was charged for the invoice",
                    "sync": "My laptop folder stopped syncing with the desktop client",
                    "sso": "Staff cannot sign in, the Okta SAML login fails"}
MAPPING = {"billing": "short", "sync": "long", "sso": "careful"}


def write_project(root: Path, model: Path, tier: int = 1) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tuneloop.yaml").write_text(CONFIG.format(model=model, tier=tier))
    (root / "data").mkdir(exist_ok=True)
    with (root / "data" / "tickets.jsonl").open("w") as handle:
        for category, templates in TEMPLATES.items():
            for i in range(14):
                text = templates[i % len(templates)].format(i=100 + i)
                record = {"id": f"{category}-{i}", "category": category,
                          "messages": [{"role": "user", "content": text},
                                       {"role": "assistant",
                                        "content": f"Thanks, we fixed your {category} issue."}]}
                handle.write(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneloop.engines.export import export_gguf
    from tuneloop.engines.testing import tiny_llama

    folder = tmp_path_factory.mktemp("models")
    return export_gguf(tiny_llama(folder), folder / "tiny.gguf", quantization="f16")


@pytest.fixture(scope="module")
def routed_project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Path]:
    """A project with a built sliced dataset, a trained router and a real evaluation run."""
    import os

    os.environ.pop("TUNELOOP_DATABASE_URL", None)
    root = tmp_path_factory.mktemp("routing") / "proj"
    write_project(root, tiny_model)
    project = Project.init(root)
    from tuneloop.data.build import build_dataset
    from tuneloop.evaluate import evaluate

    build_dataset(project, project.actor(), "tickets")
    evaluate(project, project.actor(), ["short", "long", "careful"], "tickets")
    project.close()
    yield root


@pytest.fixture(scope="module")
def labelled_project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A project with a built sliced dataset and no evaluation run (enough to train routers)."""
    import os

    os.environ.pop("TUNELOOP_DATABASE_URL", None)
    root = tmp_path_factory.mktemp("labelled") / "proj"
    write_project(root, tiny_model)
    project = Project.init(root)
    from tuneloop.data.build import build_dataset

    build_dataset(project, project.actor(), "tickets")
    project.close()
    return root


def test_router_routes_held_out_messages_to_the_variant_of_their_slice(
        routed_project: Path) -> None:
    from tuneloop.router import Prediction, define, get_router, train_router

    project = Project.open(routed_project)
    trained = train_router(project, project.actor(), "tickets")
    record = get_router(project, "tickets-router")
    assert record.ref == trained.record.ref == "tickets-router@v1"
    assert set(record.labels) == {"billing", "sync", "sso"} and record.slice_field == "category"
    assert record.lineage["dataset_version"].startswith("tickets@")
    assert record.tier == 1 and trained.validation_accuracy is not None
    routed = define(project, project.actor(), "tickets-routed", router=record.ref,
                    mapping=MAPPING, fallback="short")
    predictions = record.load().predict(list(HELD_OUT.values()))
    for (slice_name, text), prediction in zip(HELD_OUT.items(), predictions, strict=True):
        assert prediction.slice == slice_name, (text, prediction)
        assert routed.choose(prediction).variant == MAPPING[slice_name]
    # A prediction below the routed variant's confidence floor goes to the fallback.
    unsure = routed.choose(Prediction("sync", 0.3, {}))
    assert (unsure.variant, unsure.fallback) == ("short", True)
    # Training again makes a new version; the first stays as it was.
    again = train_router(project, project.actor(), "tickets")
    assert again.record.version == 2 and get_router(project, "tickets-router@v1").version == 1
    project.close()


@pytest.mark.parametrize(("features", "held_out"), [("tfidf", LEXICAL_HELD_OUT),
                                                     ("embedding-int8+tfidf", HELD_OUT)])
def test_router_on_chosen_features_routes_held_out_messages_and_reloads_the_same(
        labelled_project: Path, features: str, held_out: dict[str, str]) -> None:
    from tuneloop.router import QueryRouter, define, train_router

    project = Project.open(labelled_project)
    name = features.replace("+", "-") + "-router"
    trained = train_router(project, project.actor(), "tickets", name=name, features=features)
    record = trained.record
    assert record.lineage["features"] == features
    assert (record.lineage["embedding_model"] is None) == (features == "tfidf")
    routed = define(project, project.actor(), f"{name}-routed", router=record.ref,
                    mapping=MAPPING, fallback="short")
    predictions = record.load().predict(list(held_out.values()))
    for (slice_name, text), prediction in zip(held_out.items(), predictions, strict=True):
        assert prediction.slice == slice_name, (text, prediction)
        assert routed.choose(prediction).variant == MAPPING[slice_name]
    # The saved artefact (weights, vocabularies and idf as plain files) predicts the same.
    saved = sorted(p.name for p in Path(record.path).iterdir())
    assert not [n for n in saved if n.endswith((".pkl", ".pickle", ".joblib"))]
    meta = json.loads((Path(record.path) / "router.json").read_text())
    assert meta["features"] == features
    assert meta["int8_max_tokens"] == (48 if "int8" in features else None)
    reloaded = QueryRouter.load(Path(record.path)).predict(list(held_out.values()))
    for before, after in zip(predictions, reloaded, strict=True):
        assert after.slice == before.slice
        assert after.confidence == pytest.approx(before.confidence, abs=1e-5)
    project.close()


def test_router_features_must_be_known_names(labelled_project: Path) -> None:
    from tuneloop.errors import ConfigError
    from tuneloop.router import train_router

    project = Project.open(labelled_project)
    with pytest.raises(ConfigError, match="bag-of-words") as raised:
        train_router(project, project.actor(), "tickets", features="bag-of-words")
    assert raised.value.hint and "--features" in raised.value.hint
    project.close()


def _stored_scores(project: Project, run_id: int) -> dict[tuple[str, str], float]:
    from sqlalchemy import select

    from tuneloop.store.evals import EvalOutput

    with project.store.session(write=False) as session:
        return {(o.variant, o.record_id): o.scores["rouge_l"] for o in session.scalars(
            select(EvalOutput).where(EvalOutput.run_id == run_id))}


def test_routed_evaluation_compares_real_outputs_by_paired_bootstrap_and_gates_rollout(
        routed_project: Path) -> None:
    from tuneloop.evaluate import list_runs
    from tuneloop.router import evaluate_routed, train_router

    project = Project.open(routed_project)
    admin = project.actor()
    train_router(project, admin, "tickets", name="eval-router")
    source = next(r.id for r in list_runs(project, 20) if r.variants == ["short", "long",
                                                                         "careful"])
    result = evaluate_routed(project, admin, router="eval-router", run_id=source,
                             resamples=2000)
    s = result.summary
    assert result.routed.name == "eval-routed" and s["source_run"] == source
    assert result.routed.mapping == {k: v for k, v in _best_per_slice(project, source).items()}
    n = len(s["examples"])
    router = s["router"]
    assert n >= 6 and router["n"] == n and sum(map(sum, router["matrix"])) == n
    assert router["accuracy"] == pytest.approx(np.trace(np.array(router["matrix"])) / n)
    assert router["accuracy"] >= 0.8  # three well-separated kinds of ticket
    # Every figure comes from the outputs the run stored: recompute the means by hand.
    stored = _stored_scores(project, source)
    routed_mean = np.mean([stored[(e["variant"], e["record_id"])] for e in s["examples"]])
    for variant in ("short", "long", "careful"):
        comp = next(c for c in s["comparisons"] if c["a"] == variant and c["metric"] == "rouge_l")
        assert comp["n"] == n and comp["b"] == "eval-routed"
        assert comp["mean_a"] == pytest.approx(np.mean(
            [stored[(variant, e["record_id"])] for e in s["examples"]]))
        assert comp["mean_b"] == pytest.approx(routed_mean)
        assert comp["low"] <= comp["diff"] <= comp["high"]
        assert any(c["a"] == variant and c["metric"] == "total_ms_p95" for c in s["comparisons"])
    gate = s["gate"]
    assert gate["best_single"] == s["best_single"] and gate["low"] == next(
        c["low"] for c in s["comparisons"] if c["a"] == s["best_single"]
        and c["metric"] == "rouge_l")
    assert (gate["status"] == "pass") == (gate["low"] > -gate["margin"])
    assert result.report_paths["html"].read_text().count("<svg") >= 2
    assert json.loads(result.report_paths["json"].read_text())["gate"]["status"] == gate["status"]

    # The routed variant rolls out like a variant: internal first; public only through its gate.
    rollout.set_stage(project, admin, "assistant", "eval-routed", "internal")
    assert rollout.state(project, "assistant").route("someone", "internal") == "eval-routed"
    strict = evaluate_routed(project, admin, router="eval-router", run_id=source,
                             name="eval-routed", margin=-2.0, resamples=500)
    assert not strict.passed and strict.gate["status"] == "fail"
    with pytest.raises(GateFailed, match="eval-routed"):
        rollout.set_stage(project, admin, "assistant", "eval-routed", "public", percent=10)
    project.close()


def _best_per_slice(project: Project, run_id: int) -> dict[str, str]:
    from tuneloop.evaluate import load_run

    return dict(load_run(project, run_id, with_outputs=False).summary["best_per_slice"])


def test_training_a_router_on_tier2_records_needs_a_train_approval(
        tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneloop.data.build import build_dataset
    from tuneloop.governance import approvals
    from tuneloop.router import train_router

    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    root = tmp_path / "proj"
    write_project(root, tiny_model, tier=2)
    project = Project.init(root)
    from tuneloop.governance.principals import actor_of, ensure_principal

    with project.store.session() as session:
        privacy = actor_of(ensure_principal(session, "pia", role="privacy"))
        other = actor_of(ensure_principal(session, "dora", role="developer"))
    dev = project.actor()
    approval = approvals.request(project.store, dev, scope=["source:tickets"], uses=["train"],
                                 purpose="route tickets by kind")
    approvals.grant(project.store, privacy, approval)
    build_dataset(project, dev, "tickets")
    with pytest.raises(ApprovalRequired, match="--use train"):
        train_router(project, other, "tickets")
    trained = train_router(project, dev, "tickets")
    assert trained.record.tier == 2 and trained.record.roots == frozenset({"source:tickets"})
    assert trained.record.lineage["approvals"] == [approval]
    assert trained.record.resource.tier == 2
    project.close()


def test_served_routed_alias_answers_with_the_variant_of_each_predicted_slice_and_logs_it(
        routed_project: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.test_serve_support import free_port
    from tuneloop.governance import principals
    from tuneloop.router import define, train_router
    from tuneloop.serve import requestlog
    from tuneloop.variants import get_variant

    project = Project.open(routed_project)
    admin = project.actor()
    record = train_router(project, admin, "tickets", name="serve-router").record
    define(project, admin, "serve-routed", router=record.ref, mapping=MAPPING, fallback="short",
           min_confidence=0.0)
    rollout.set_stage(project, admin, "assistant", "serve-routed", "internal")
    key = principals.create_key(project.store, admin, "ivy", audience="internal").secret
    expected = {}
    for slice_name, text in HELD_OUT.items():
        variant = get_variant(project, MAPPING[slice_name])
        expected[slice_name] = variant.run([{"role": "user", "content": text}], admin).completion
    assert len({c.text for c in expected.values()}) == 3  # the variants answer differently
    project.close()

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tuneloop", "serve", "--port", str(port)],
                            cwd=routed_project, env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        answers = {}
        for slice_name, text in HELD_OUT.items():
            reply = httpx.post(url + "/v1/chat/completions", timeout=120,
                               headers={"authorization": f"Bearer {key}"},
                               json={"model": "assistant",
                                     "messages": [{"role": "user", "content": text}]})
            assert reply.status_code == 200, reply.text
            answers[slice_name] = (reply.headers["x-request-id"],
                                   reply.json()["choices"][0]["message"]["content"])
        # Users rate the billing answer down with a correction, the sso answer up.
        for slice_name, body in (("billing", {"rating": -1, "corrected_answer": "Refunded."}),
                                 ("sso", {"rating": 1})):
            rated = httpx.post(url + "/v1/feedback", timeout=30,
                               headers={"authorization": f"Bearer {key}"},
                               json={"request_id": answers[slice_name][0], **body})
            assert rated.status_code == 200, rated.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    project = Project.open(routed_project)
    for slice_name, (request_id, content) in answers.items():
        assert content == expected[slice_name].text
        row = requestlog.get(project.store, request_id)
        assert row is not None and row.variant == MAPPING[slice_name]
        assert (row.routed_by, row.predicted_slice) == ("serve-routed", slice_name)
        assert row.slice_confidence is not None and 0 < row.slice_confidence <= 1
    _watched_by_slice(project)
    project.close()
    _dashboard_shows_routing(routed_project, key)


def _watched_by_slice(project: Project) -> None:
    """monitor, eval online and enrich see the routed requests by their predicted slice."""
    from tuneloop.evaluate.online import evaluate_online
    from tuneloop.flywheel.enrich import enrich
    from tuneloop.flywheel.monitor import monitor

    slices = {h.variant: h.total for h in monitor(project).slices}
    assert set(slices) == set(HELD_OUT) and all(s.requests == 1 for s in slices.values())
    assert (slices["billing"].thumbs_down, slices["billing"].corrected) == (1, 1)
    assert (slices["sso"].thumbs_up, slices["sync"].rated) == (1, 0)
    assert all(s.p95_ms is not None and s.p95_ms > 0 for s in slices.values())
    online = evaluate_online(project, project.actor(), since="1h")["slices"]
    assert online["billing"]["feedback"]["corrections"] == 1
    assert online["sso"]["feedback"]["positive_rate"] == 1.0 and online["sync"]["requests"] == 1
    report = enrich(project, project.actor(), "tickets")  # the correction and the thumbs-up
    assert report.version is not None and len(report.request_ids) == 2
    added = {r["metadata"]["predicted_slice"]: r for split in ("train", "validation", "test")
             for r in report.version.iter_split(split)
             if (r.get("metadata") or {}).get("request_id") in report.request_ids}
    assert set(added) == {"billing", "sso"}
    for name, record in added.items():
        assert (record["metadata"]["category"], record["metadata"]["slice_source"]) == (
            name, "router")
    assert added["billing"]["messages"][-1]["content"] == "Refunded."


def test_router_commands_train_show_and_evaluate_with_the_gate_as_exit_code(
        routed_project: Path) -> None:
    trained = run_cli("router", "train", "--dataset", "tickets", "--name", "cli-router",
                      "--features", "tfidf", cwd=routed_project)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "router cli-router@v1 (tier 1)" in trained.stdout and "billing" in trained.stdout
    assert "features tfidf" in trained.stdout
    evaluated = run_cli("router", "evaluate", "--router", "cli-router", "--margin", "5",
                        cwd=routed_project)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert "routed variant cli-routed" in evaluated.stdout and "gate pass" in evaluated.stdout
    assert "report.html" in evaluated.stdout
    refused = run_cli("router", "evaluate", "--router", "cli-router", "--margin", "-5",
                      cwd=routed_project)
    assert refused.returncode == 3 and "gate fail" in refused.stdout
    shown = run_cli("router", "show", cwd=routed_project)
    assert shown.returncode == 0 and "cli-router@v1" in shown.stdout
    assert "cli-routed" in shown.stdout


def test_route_queries_rolls_out_to_internal_only_when_routing_is_shown_not_worse(
        routed_project: Path) -> None:
    from tuneloop.evaluate import list_runs
    from tuneloop.rollout.routed import route_queries

    project = Project.open(routed_project)
    admin = project.actor()
    source = next(r.id for r in list_runs(project, 50) if r.variants == ["short", "long",
                                                                         "careful"])
    refused = route_queries(project, admin, dataset="tickets", eval_run=source,
                            alias="demo-alias", margin=-5.0)
    assert not refused.rolled_out and "not rolled out" in refused.message
    assert refused.gate["status"] == "fail" and not rollout.state(project, "demo-alias").entries
    passed = route_queries(project, admin, dataset="tickets", eval_run=source,
                           alias="demo-alias", margin=5.0)
    assert passed.rolled_out and passed.routed == "tickets-routed"
    assert "now serves internal users of 'demo-alias'" in passed.message
    assert rollout.state(project, "demo-alias").route("anyone", "internal") == "tickets-routed"
    assert f"{passed.accuracy:.3f}" in passed.message and passed.report is not None
    project.close()


def _dashboard_shows_routing(root: Path, key: str) -> None:
    """The overview breaks routed traffic down by predicted slice; a routed evaluation's page
    shows the router's confusion matrix."""
    from tests.ui_helpers import serving, signed_in
    from tuneloop.evaluate import list_runs
    from tuneloop.router import evaluate_routed

    project = Project.open(root)
    source = next(r.id for r in list_runs(project, 50) if r.variants == ["short", "long",
                                                                         "careful"])
    routed = evaluate_routed(project, project.actor(), router="serve-router", run_id=source,
                             name="serve-routed", resamples=500)
    project.close()
    with serving(root) as base, signed_in(base, key) as ivy:
        overview = ivy.get("/ui/overview").text
        page = ivy.get(f"/ui/evaluations/{routed.run_id}").text
    assert "Routed requests by predicted slice" in overview
    assert all(f"<td>{name}</td>" in overview for name in HELD_OUT)
    assert 'aria-label="confusion matrix"' in page and "serve-routed" in page


def test_a_routed_variant_goes_public_only_through_the_gates_and_online_evidence_of_any_variant(
        routed_project: Path) -> None:
    import httpx

    from tests.test_serve_support import live_server
    from tuneloop.evaluate import list_runs
    from tuneloop.governance import audit, principals
    from tuneloop.router import evaluate_routed, train_router
    from tuneloop.serve.app import create_app

    project = Project.open(routed_project)
    admin = project.actor()
    source = next(r.id for r in list_runs(project, 50) if r.variants == ["short", "long",
                                                                         "careful"])
    train_router(project, admin, "tickets", name="promo-router")
    failing = evaluate_routed(project, admin, router="promo-router", run_id=source,
                              name="promo-routed", margin=-2.0, resamples=500, report=False)
    assert not failing.passed
    rollout.set_stage(project, admin, "promo", "short", "all")  # the incumbent
    rollout.set_stage(project, admin, "promo", "promo-routed", "internal")  # no gate for internal
    # No internal user has rated a routed answer yet: the online evidence refuses first.
    with pytest.raises(GateFailed, match="only 0 rated internal requests for 'promo-routed'"):
        rollout.promote(project, admin, "promo", "promo-routed", percent=10)

    key = principals.create_key(project.store, admin, "ivy", audience="internal").secret
    auth = {"authorization": f"Bearer {key}"}
    messages = [*HELD_OUT.values(), TEMPLATES["billing"][0].format(i=999)]
    with live_server(create_app(project)) as url:
        for text in messages:
            reply = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=120,
                               json={"model": "promo",
                                     "messages": [{"role": "user", "content": text}]})
            assert reply.status_code == 200, reply.text
            rated = httpx.post(url + "/v1/feedback", headers=auth, timeout=30,
                               json={"request_id": reply.headers["x-request-id"], "rating": 1})
            assert rated.status_code == 200, rated.text
    # The evidence is there, but the routed evaluation (its own eval run) failed its gate.
    with pytest.raises(GateFailed, match="'promo-routed' cannot go public: its latest evaluation"):
        rollout.promote(project, admin, "promo", "promo-routed", percent=10)
    assert rollout.state(project, "promo").at("internal")[0].variant == "promo-routed"

    passing = evaluate_routed(project, admin, router="promo-router", run_id=source,
                              name="promo-routed", margin=5.0, resamples=500, report=False)
    assert passing.passed
    state = rollout.promote(project, admin, "promo", "promo-routed", percent=10)
    public = state.at("public")
    assert [(e.variant, e.percent) for e in public] == [("promo-routed", 10.0)]
    assert state.at("all")[0].variant == "short"
    events = [(e.action, json.loads(e.details))
              for e in reversed(audit.list_events(project.store, limit=500))
              if e.target in ("variant:promo-routed", "alias:promo")]
    evidence = next(d for a, d in reversed(events) if a == "rollout.evidence")
    assert evidence["candidate"] == {"variant": "promo-routed", "rated": len(messages),
                                     "up": len(messages)}
    assert evidence["incumbent"]["variant"] == "short"
    promoted = next(d for a, d in reversed(events) if a == "rollout.promote")
    assert promoted["eval_run"] == passing.run_id and promoted["variant"] == "promo-routed"
    refusals = [d["why"] for a, d in events if a == "rollout.refused"]
    assert refusals == ["online evidence", "evaluation gates"]
    project.close()
