"""Every evaluation of a RAG variant says where answers are lost: the share of key facts its
sources held beside the share its answers stated, per variant and per slice, in the terminal,
the HTML report and summary.json (real engine, real index, the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tuneloop import Project

CONFIG = """
version: 1
task: {{name: vault-qa, system_prompt: Answer briefly.}}
metrics:
  - name: rouge_l
    primary: true
latency: {{p95_ms: 600000, ttft_ms: 600000}}
sources:
  - {{name: runbooks, path: runbooks, kind: documents, tier: 1}}
knowledge_base: {{sources: [runbooks], chunk_tokens: 64, overlap_tokens: 0}}
base_model: {{name: tiny, path: {model}}}
variants:
  - name: plain
    model: base
    generation: {{max_tokens: 4}}
  - name: rag
    model: base
    retrieval: {{enabled: true, top_k: 1, context_tokens: 200}}
    generation: {{max_tokens: 4}}
"""

VAULTS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
HOURS = {"alpha": "3 hours", "bravo": "5 hours", "charlie": "7 hours", "delta": "9 hours",
         "echo": "11 hours", "foxtrot": "13 hours"}
DOCUMENTED = VAULTS[:3]  # the runbooks state these three facts only


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneloop.engines.testing import tiny_gguf

    return tiny_gguf(tmp_path_factory.mktemp("models"))


def make_project(root: Path, model: Path) -> str:
    from tuneloop.data.versions import publish
    from tuneloop.rag import index_knowledge_base

    root.mkdir(parents=True)
    (root / "tuneloop.yaml").write_text(CONFIG.format(model=model), encoding="utf-8")
    (root / "runbooks").mkdir()
    for vault in VAULTS:
        fact = HOURS[vault] if vault in DOCUMENTED else "a while, depending on its size"
        (root / "runbooks" / f"{vault}.md").write_text(
            f"# Vault {vault}\n\nA full backup of vault {vault} takes {fact}.\n", encoding="utf-8")
    project = Project.init(root)
    index_knowledge_base(project, project.actor())
    staging = project.state_dir / "staging"
    staging.mkdir()
    rows = [{"id": vault, "subject": None,
             "metadata": {"key_facts": [HOURS[vault]], "kb_refs": [vault],
                          "category": "documented" if vault in DOCUMENTED else "missing"},
             "messages": [{"role": "user", "content": f"How long is a backup of vault {vault}?"},
                          {"role": "assistant", "content": f"It takes {HOURS[vault]}."}]}
            for vault in VAULTS]
    for split, part in (("train", rows[:1]), ("validation", []), ("test", rows)):
        (staging / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part),
                                                encoding="utf-8")
    (staging / "rejects.jsonl").write_text("", encoding="utf-8")
    (project.state_dir / "datasets" / "vaults").mkdir(parents=True)
    version = publish(project, staging, {"name": "vaults", "id": "v1", "tier": 1, "roots": [],
                                         "approvals": [], "counts": {"train": 1, "test": 6}},
                      created_by="test")
    project.close()
    return version.ref


@pytest.mark.slow
def test_rag_evaluation_reports_context_holds_key_beside_answer_states_key(
        tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    root = tmp_path / "proj"
    ref = make_project(root, tiny_model)
    done = run_cli("eval", "--variants", "plain,rag", "--dataset", ref, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Where answers are lost" in done.stdout and "context holds key" in done.stdout

    project = Project.open(root)
    from tuneloop.evaluate import list_runs, load_run

    run = load_run(project, list_runs(project, 1)[0].id)
    summary = json.loads(run.report_paths["json"].read_text(encoding="utf-8"))
    rag, plain = summary["per_variant"]["rag"], summary["per_variant"]["plain"]
    assert "grounding" not in plain  # no sources, nothing to diagnose
    grounding = rag["grounding"]
    # Retrieval finds each vault's runbook; only three runbooks state the fact.
    assert grounding["examples"] == 6
    assert grounding["context_holds_key"] == pytest.approx(0.5)
    assert grounding["answer_states_key"] == pytest.approx(rag["quality"]["key_facts"])
    by_slice = rag["grounding_by_slice"]
    assert by_slice["documented"]["context_holds_key"] == pytest.approx(1.0)
    assert by_slice["missing"]["context_holds_key"] == pytest.approx(0.0)
    # key_facts and context_key_facts were added as ungated diagnostics
    added = {m["name"]: m for m in summary["metrics"]}
    assert added["context_key_facts"]["required"] is False
    assert added["key_facts"]["threshold"] is None
    for out in run.outputs:
        expected = None if out.variant == "plain" else float(out.record_id in DOCUMENTED)
        assert out.scores["context_key_facts"] == expected
    html = run.report_paths["html"].read_text(encoding="utf-8")
    assert 'id="grounding-table"' in html and "states it when held" in html
    project.close()
