"""Erasure destroys data, never models: a subject whose first name is a token of every vocabulary
("Jane") is erased, and every model file (GGUF, safetensors, tokenizer, adapter config) is left
byte for byte; serving still answers. The variant trained on their data is withdrawn from the
public at once, refused promotion past `internal`, listed by `erase status`, and cleared once its
model is retrained on a dataset version without the subject."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import run_cli
from tests.test_flywheel_support import open_project, person
from tests.test_serve_support import close_engines, live_server, llama_loader
from tuneloop import Project, rollout
from tuneloop.data.build import build_dataset
from tuneloop.data.versions import get_version
from tuneloop.engines.registry import register_model
from tuneloop.engines.testing import tiny_gguf, tiny_llama
from tuneloop.errors import GateFailed
from tuneloop.flywheel.erasure import erase, needs_retraining
from tuneloop.governance import audit, principals
from tuneloop.store.evals import EvalRun

EMAIL = "jane.roe@example.com"
CONFIG = """\
version: 1
task:
  name: erasure-models
  system_prompt: You answer support questions briefly.
sources:
  - {name: tickets, path: data/tickets.jsonl, tier: 1, subject_field: customer_email}
datasets:
  - name: tickets
    sources: [tickets]
    split: {train: 0.5, validation: 0.0, test: 0.5}
variants:
  - name: base
  - name: tuned
    model: tickets-run1
server: {app_alias: assistant}
"""
QUESTIONS = ["How do I reset my password?", "Where do I find invoices?", "Is there a dark mode?",
             "How do I install on Linux?", "What does error 429 mean?", "Can I export my data?"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = tmp_path / "proj"
    rows = [{"input": q, "output": "See the help centre.", "customer_email": f"c{i}@example.com"}
            for i, q in enumerate(QUESTIONS)]
    rows.append({"input": "Hi, Jane Roe here: my laptop will not sync.",
                 "output": "Reinstall the app, Jane.", "customer_email": EMAIL})
    (root / "data").mkdir(parents=True)
    (root / "data" / "tickets.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    p = open_project(root, "sqlite", monkeypatch, CONFIG)
    yield p
    p.close()


def place_models(project: Project) -> dict[str, Path]:
    """A trained run as training leaves it: merged HF folder, adapter config, GGUF export."""
    run = project.artifacts_dir / "runs" / "1"
    merged = tiny_llama(run / "merged")
    gguf = tiny_gguf(run / "export")
    adapter = run / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 8}', encoding="utf-8")
    shutil.copy(merged / "tokenizer.json", adapter / "tokenizer.json")
    exported = project.state_dir / "exports" / "tuned.gguf"  # a GGUF outside any run folder
    exported.parent.mkdir(parents=True)
    shutil.copy(gguf, exported)
    return {"gguf": gguf, "merged": merged, "adapter": adapter, "exported": exported}


def fingerprints(folders: list[Path]) -> dict[str, str]:
    files = [f for d in folders for f in ([d] if d.is_file() else sorted(d.rglob("*")))
             if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def pass_gates(project: Project, variant: str) -> None:
    with project.store.session() as session:
        session.add(EvalRun(status="completed", variants=[variant],
                            summary={"per_variant": {variant: {"passed": True, "gates": []}}}))


@pytest.mark.slow
def test_erasing_jane_keeps_every_model_file_and_serving_answers(project: Project) -> None:
    models = place_models(project)
    built = build_dataset(project, project.actor(), "tickets")
    register_model(project, name="tickets-run1", kind="gguf", path=str(models["gguf"]),
                   format="gguf", tier=1, lineage={"dataset_versions": [built.ref]})
    tokenizer = models["merged"] / "tokenizer.json"
    # The old erasure matched raw bytes: "Jane" is a vocabulary token in the tokenizer.
    assert b"Jane" in tokenizer.read_bytes()
    before = fingerprints(list(models.values()))
    report_file = project.artifacts_dir / "evals" / "1" / "report.html"
    report_file.parent.mkdir(parents=True)
    report_file.write_text("<p>worst: Jane Roe asked about sync</p>", encoding="utf-8")
    other = project.artifacts_dir / "evals" / "1" / "janet.txt"
    other.write_text("Janet asked about invoices", encoding="utf-8")

    pia = person(project, "pia", role="privacy")
    report = erase(project, pia, EMAIL, also=["Jane", "Jane Roe"],
                   withdraw=rollout.withdraw_from_public)

    assert fingerprints(list(models.values())) == before
    assert report.files_removed == [report_file] and other.exists()
    assert report.residue == []
    assert report.counts["dataset_records"] == 1 and report.models == ["tickets-run1"]
    assert all(not str(p).endswith((".gguf", ".safetensors")) for p in report.artefacts)
    loader = llama_loader(project, paths={"tuned": str(models["exported"]),
                                          "base": str(models["exported"])})
    key = principals.create_key(project.store, project.actor(), "app",
                                audience="internal").secret
    rollout.set_stage(project, project.actor(), "assistant", "tuned", "internal")
    app = __import__("tuneloop.serve.app", fromlist=["create_app"]).create_app(
        project, variant_loader=loader)
    try:
        with live_server(app) as url:
            api = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
            answer = api.chat.completions.create(
                model="assistant", max_tokens=8,
                messages=[{"role": "user", "content": "Hello, is Jane there?"}])
    finally:
        close_engines(loader)
    assert answer.choices[0].message.content


@pytest.mark.slow
def test_marked_variant_is_withdrawn_refused_listed_and_cleared_by_retraining(
        project: Project) -> None:
    gguf = tiny_gguf(project.artifacts_dir / "runs" / "1")
    built = build_dataset(project, project.actor(), "tickets")
    register_model(project, name="tickets-run1", kind="gguf", path=str(gguf), format="gguf",
                   tier=1, lineage={"dataset_versions": [built.ref]})
    admin = project.actor()
    pass_gates(project, "tuned")
    rollout.set_stage(project, admin, "assistant", "tuned", "all")

    report = erase(project, person(project, "pia", role="privacy"), EMAIL, also=["Jane Roe"],
                   withdraw=rollout.withdraw_from_public)

    assert report.variants == ["tuned"]
    assert report.withdrawn == ["assistant: tuned (all -> internal)"]
    assert [(e.variant, e.stage) for e in rollout.state(project, "assistant").entries] == [
        ("tuned", "internal")]
    change = rollout.history(project, "assistant")[0]
    assert change.action == "withdraw" and f"erasure #{report.id}" in change.reason
    assert any(e.action == "rollout.withdraw" for e in audit.list_events(project.store, limit=20))
    with pytest.raises(GateFailed, match="cannot go past internal"):
        rollout.set_stage(project, admin, "assistant", "tuned", "public", percent=10)
    refused = next(e for e in audit.list_events(project.store, limit=20)
                   if e.action == "rollout.refused")
    assert json.loads(refused.details)["why"] == "retraining mark"
    listed = run_cli("erase", "status", cwd=project.root)
    assert listed.returncode == 0, listed.stderr
    assert "tickets-run1" in listed.stdout and "tuned" in listed.stdout
    shown = run_cli("rollout", "status", "assistant", cwd=project.root)
    assert "withdrawn from the public by erasure" in " ".join(shown.stdout.split())
    from tuneloop.ui.loop_data import variants

    dashboard = {v.name: v for v in variants(project)}
    assert f"erased by erasure #{report.id}" in dashboard["tuned"].retraining
    assert dashboard["base"].retraining == ""

    # Retrained on the version the erasure left (made after it, without the subject).
    clean = get_version(project, "tickets")
    assert clean.ref != built.ref
    register_model(project, name="tickets-run1", kind="gguf", path=str(gguf), format="gguf",
                   tier=1, lineage={"dataset_versions": [clean.ref]})
    assert needs_retraining(project) == []
    rollout.set_stage(project, admin, "assistant", "tuned", "public", percent=10)
    assert rollout.state(project, "assistant").at("public")[0].variant == "tuned"
    assert run_cli("erase", "status", cwd=project.root).stdout.strip() == \
        "no open retraining marks"


def test_an_export_made_before_the_erasure_is_listed_as_a_copy_that_left(
        project: Project) -> None:
    from tuneloop.data.export import export_version, list_exports

    built = build_dataset(project, project.actor(), "tickets")
    out = export_version(project, project.actor(), "tickets", project.root / "out" / "t1",
                         fmt="jsonl")
    [row] = list_exports(project)
    assert (row.dataset_version, row.path, row.format, row.actor) == (
        built.ref, str(out), "jsonl", project.actor().name)
    pia = person(project, "pia", role="privacy")
    dry = run_cli("erase", "--subject", EMAIL, "--dry-run", cwd=project.root)
    assert dry.returncode == 0, dry.stderr
    assert "export that left the project" in dry.stdout
    report = erase(project, pia, EMAIL, withdraw=rollout.withdraw_from_public)
    assert len(report.exports) == 1 and report.exports[0].startswith(f"{out} (jsonl of {built.ref}")
    event = next(e for e in audit.list_events(project.store, limit=30) if e.action == "erasure")
    assert str(out) in event.details


def test_a_model_export_made_before_the_erasure_is_listed_with_its_path(
        project: Project) -> None:
    from tuneloop.flywheel.model_exports import list_model_exports

    built = build_dataset(project, project.actor(), "tickets")
    merged = tiny_llama(project.artifacts_dir / "runs" / "1" / "merged")
    register_model(project, name="tickets-run1", kind="merged", path=str(merged),
                   format="safetensors", tier=1, lineage={"dataset_versions": [built.ref]})
    unrelated = tiny_llama(project.root / "downloads" / "public-model")
    out, other = project.root / "out" / "tickets-q8.gguf", project.root / "out" / "public.gguf"
    for folder, target in ((merged, out), (unrelated, other)):
        done = run_cli("models", "export", str(folder), "--out", str(target), "--quant", "q8_0",
                       cwd=project.root)
        assert done.returncode == 0, done.stderr
    assert [(r.path, r.source, r.models, r.dataset_versions, r.quantization, r.actor)
            for r in list_model_exports(project)] == [
        (str(other.resolve()), str(unrelated.resolve()), [], [], "q8_0", project.actor().name),
        (str(out.resolve()), str(merged.resolve()), ["tickets-run1"], [built.ref], "q8_0",
         project.actor().name)]
    dry = run_cli("erase", "--subject", EMAIL, "--dry-run", cwd=project.root)
    assert dry.returncode == 0, dry.stderr
    assert str(out.resolve()) in "".join(dry.stdout.split())
    copy = out.read_bytes()

    report = erase(project, person(project, "pia", role="privacy"), EMAIL,
                   withdraw=rollout.withdraw_from_public)

    [listed] = [e for e in report.exports if "model export" in e]
    assert listed.startswith(f"{out.resolve()} (model export, gguf q8_0 of tickets-run1; "
                             f"data {built.ref}, by {project.actor().name}")
    assert str(other.resolve()) not in " ".join(report.exports)
    assert out.read_bytes() == copy  # erasure lists the copy; it never deletes a model
    event = next(e for e in audit.list_events(project.store, limit=30) if e.action == "erasure")
    assert any(str(out.resolve()) in e for e in json.loads(event.details)["exports_outside"])
