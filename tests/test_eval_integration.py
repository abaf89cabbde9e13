"""`tuneloop eval` end to end through real variants: a tiny random llama (the real SmolLM2
tokenizer) served by the real engine, a dataset built by the real builder, the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tuneloop import Project

CONFIG = """
version: 1
task:
  name: unit-qa
  system_prompt: Answer briefly.
metrics:
  - name: rouge_l
    threshold: {threshold}
    primary: true
  - name: key_facts
    required: false
  - name: llm_judge
    required: false
    params: {{model: {judge}, max_tokens: 1}}
latency:
  p95_ms: 600000
  ttft_ms: 600000
  concurrency: 2
sources:
  - name: qa
    path: data/qa.jsonl
    kind: records
    tier: 1
base_model:
  name: tiny
  path: {model}
datasets:
  - name: qa
    sources: [qa]
    split: {{train: 0.5, validation: 0.0, test: 0.5}}
    redact: false
    min_output_tokens: 0
    slice_field: category
variants:
  - name: short
    model: base
    generation: {{max_tokens: 4, temperature: 0}}
  - name: long
    model: base
    generation: {{max_tokens: 12, temperature: 0}}
"""


def write_project(root: Path, model: Path, judge: Path, threshold: float) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tuneloop.yaml").write_text(CONFIG.format(threshold=threshold, model=model,
                                                      judge=judge))
    (root / "data").mkdir(exist_ok=True)
    topics = ["billing", "sync", "security"]
    with (root / "data" / "qa.jsonl").open("w") as handle:
        for i in range(16):
            record = {"id": f"q{i}", "category": topics[i % 3], "key_facts": [f"{i} days"],
                      "messages": [{"role": "user", "content": f"How long does step {i} take?"},
                                   {"role": "assistant", "content": f"Step {i} takes {i} days."}]}
            handle.write(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama exported to GGUF by tuneloop's exporter, served by llama.cpp."""
    from tuneloop.engines.export import export_gguf
    from tuneloop.engines.testing import tiny_llama

    folder = tmp_path_factory.mktemp("models")
    return export_gguf(tiny_llama(folder), folder / "tiny.gguf", quantization="f16")


@pytest.fixture(scope="module")
def judge_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny model (served by the transformers engine) whose every reply is "4"."""
    from tuneloop.engines.testing import fixed_answer_llama

    return fixed_answer_llama(tmp_path_factory.mktemp("judge"), "4")


@pytest.mark.slow
def test_eval_command_measures_real_variants_and_exits_by_the_gates(
        tmp_path: Path, tiny_model: Path, judge_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    root = tmp_path / "proj"
    write_project(root, tiny_model, judge_model, threshold=0.99)  # a random model cannot reach this
    project = Project.init(root)
    from tuneloop.data.build import build_dataset

    version = build_dataset(project, project.actor(), "qa")
    project.close()

    failed = run_cli("eval", "--variants", "short,long", "--dataset", f"qa@{version.id}",
                     "--limit", "4", cwd=root)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "required gates failed" in failed.stderr and "rouge_l" in failed.stderr

    project = Project.open(root)
    from tuneloop.evaluate import list_runs, load_run

    run = load_run(project, list_runs(project, 1)[0].id)
    n_test = min(4, sum(1 for _ in version.iter_split("test")))
    assert run.status == "completed" and len(run.outputs) == 2 * n_test
    for out in run.outputs:
        assert out.total_s > 0 and out.ttft_s > 0 and out.total_s >= out.ttft_s
        assert 0 < out.completion_tokens <= (4 if out.variant == "short" else 12)
        assert out.prompt_tokens > 5
        assert 0.0 <= out.scores["rouge_l"] <= 1.0
        assert out.scores["key_facts"] in (0.0, 1.0)  # one key fact per example
    # the judge's real engine replies "4" on the 1..5 scale to every answer: (4 - 1) / 4
    assert [out.scores["llm_judge"] for out in run.outputs] == [0.75] * (2 * n_test)
    assert not any("judge replies" in note for note in run.summary["notes"])
    assert run.summary["per_variant"]["long"]["quality"]["llm_judge"] == pytest.approx(0.75)
    latency = run.summary["per_variant"]["long"]["latency"]
    assert latency["concurrency"] == 2 and latency["total_ms_p95"] >= latency["total_ms_p50"] > 0
    assert run.summary["slice_field"] == "category"
    assert run.report_paths["html"].is_file()
    project.close()

    # With thresholds the variant can reach, the same command exits 0.
    write_project(root, tiny_model, judge_model, threshold=0.0)
    passing = run_cli("eval", "--variants", "short", "--limit", "2", cwd=root)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "report.html" in passing.stdout
