"""Running variants over examples: concurrency, storage of every output, errors, stored runs
and the `tuneloop eval show/compare` commands.

The variants here are scripted stand-ins (answers chosen by the test, no model): they exercise the
runner's concurrency and storage logic only. tests/test_eval_integration.py runs real variants.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import run_cli
from tuneloop import Project
from tuneloop.engines.base import Completion
from tuneloop.errors import DataError, EngineError
from tuneloop.evaluate import compare_runs, load_run
from tuneloop.evaluate.run import evaluate_examples
from tuneloop.evaluate.runner import WARMUP_TOKENS, Example, examples_from_records, run_variant
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.store.evals import EvalOutput, EvalRun


@dataclass
class Result:
    completion: Completion
    citations: list = field(default_factory=list)
    hits: list = field(default_factory=list)


class ScriptedVariant:
    """A stand-in variant whose answers the test chooses (no model runs)."""

    uses_retrieval = False

    def __init__(self, name: str, answer, *, barrier: threading.Barrier | None = None,
                 fail_on: set[str] | None = None) -> None:
        self.name = name
        self.answer = answer
        self.barrier = barrier
        self.fail_on = fail_on or set()
        self.resource = Resource("variant", name, 1)
        self.calls = 0
        self.max_tokens_seen: list[int | None] = []
        self._lock = threading.Lock()

    def params(self, **overrides):
        return dict(overrides)

    def run(self, messages, actor, params=None) -> Result:
        with self._lock:
            self.calls += 1
            self.max_tokens_seen.append((params or {}).get("max_tokens"))
        question = messages[-1]["content"]
        if self.barrier is not None:
            self.barrier.wait(timeout=20)  # only returns when `parties` calls are in flight
        if question in self.fail_on:
            raise EngineError(f"engine crashed on {question!r}")
        text = self.answer(question)
        return Result(Completion(text=text, finish_reason="stop", prompt_tokens=12,
                                 completion_tokens=len(text.split()), ttft_s=0.01, total_s=0.05))


def make_examples(n: int = 12) -> list[Example]:
    records = [{"id": f"r{i}",
                "messages": [{"role": "user", "content": f"q{i}"},
                             {"role": "assistant", "content": f"answer number {i}"}],
                "metadata": {"category": "even" if i % 2 == 0 else "odd"}} for i in range(n)]
    return examples_from_records(records, slice_field="category")


ACTOR = Actor(1, "tester", "developer", "internal")


def test_runner_keeps_the_stated_number_of_requests_in_flight() -> None:
    # Three parties: the barrier releases only when three requests are in flight together.
    variant = ScriptedVariant("v", lambda q: "x", barrier=threading.Barrier(3))
    outputs, _, _ = run_variant(variant, make_examples(6), ACTOR, concurrency=3, warmup=False)
    assert [o.record_id for o in outputs] == [f"r{i}" for i in range(6)]
    assert all(o.output == "x" and not o.error for o in outputs)


def test_runner_warms_up_once_and_does_not_measure_the_warm_up() -> None:
    variant = ScriptedVariant("v", lambda q: "x")
    outputs, _, _ = run_variant(variant, make_examples(4), ACTOR, concurrency=1)
    assert variant.calls == 5 and len(outputs) == 4
    # the warm-up asks for a few tokens only; measured requests use the variant's own settings
    assert variant.max_tokens_seen == [WARMUP_TOKENS, None, None, None, None]


def test_an_engine_error_on_one_example_is_recorded_and_the_others_still_run() -> None:
    variant = ScriptedVariant("v", lambda q: "fine", fail_on={"q2"})
    outputs, _, _ = run_variant(variant, make_examples(4), ACTOR, concurrency=2, warmup=False)
    failed = [o for o in outputs if o.error]
    assert [o.record_id for o in failed] == ["r2"]
    assert "crashed on 'q2'" in failed[0].error and failed[0].finish_reason == "error"
    assert sum(1 for o in outputs if o.output == "fine") == 3


def test_a_malformed_record_names_the_file_and_line(tmp_path: Path) -> None:
    good = {"id": "a", "messages": [{"role": "user", "content": "q"},
                                    {"role": "assistant", "content": "r"}]}
    bad = {"id": "b", "messages": [{"role": "user", "content": "q"}]}
    with pytest.raises(DataError, match=r"test\.jsonl:2: a record needs `messages`"):
        examples_from_records([good, bad], path=tmp_path / "test.jsonl")
    no_ref = {"id": "c", "messages": [{"role": "user", "content": "q"},
                                      {"role": "user", "content": "again"}]}
    with pytest.raises(DataError, match=r":1: the last message must be the reference"):
        examples_from_records([no_ref], path="x.jsonl")


def test_evaluation_stores_every_output_with_timings_scores_and_a_report(
        project_dir: Path) -> None:
    project = Project.open(project_dir)
    actor = project.actor()
    exact = ScriptedVariant("exact", lambda q: f"answer number {q[1:]}")
    vague = ScriptedVariant("vague", lambda q: "I am not sure about that",
                            fail_on={"q3"})
    result = evaluate_examples(project, actor, [vague, exact], make_examples(12),
                               dataset_ref="unit@1", resources=[], concurrency=2,
                               slice_field="category")
    per = result.per_variant
    assert per["exact"]["quality"]["rouge_l"] == pytest.approx(1.0)
    assert per["vague"]["quality"]["rouge_l"] < 0.2
    assert per["vague"]["errors"] == 1 and per["exact"]["errors"] == 0
    assert per["exact"]["passed"] and not per["vague"]["passed"]
    comp = next(c for c in result.comparisons if c["metric"] == "rouge_l")
    assert (comp["a"], comp["b"], comp["verdict"]) == ("vague", "exact", "better")
    assert set(result.summary["slices"]) == {"even", "odd"}
    assert result.report_paths["html"].is_file()

    with project.store.session(write=False) as session:
        run = session.get(EvalRun, result.run_id)
        rows = list(session.scalars(select(EvalOutput).where(EvalOutput.run_id == run.id)))
    assert run.status == "completed" and run.variants == ["vague", "exact"]
    assert len(rows) == 24
    stored = {(r.variant, r.record_id): r for r in rows}
    assert stored[("exact", "r5")].output == "answer number 5"
    # the engine's 50 ms plus whatever the variant spent before calling it
    assert stored[("exact", "r5")].total_s >= 0.05
    assert stored[("exact", "r5")].total_s - stored[("exact", "r5")].ttft_s == pytest.approx(0.04)
    assert stored[("exact", "r5")].scores["rouge_l"] == pytest.approx(1.0)
    assert stored[("exact", "r5")].slice == "odd"
    assert "crashed" in stored[("vague", "r3")].error

    again = load_run(project, result.run_id)
    assert again.summary["per_variant"]["exact"]["quality"] == per["exact"]["quality"]
    assert len(again.outputs) == 24
    project.close()


@pytest.mark.slow
def test_eval_show_and_compare_render_stored_runs(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite only: the commands read through the same code on both backends, which the test
    # above covers; each command is a fresh process, so this keeps the suite's time down.
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project_dir = tmp_path / "proj"
    project = Project.init(project_dir)
    actor = project.actor()
    first = evaluate_examples(project, actor, [ScriptedVariant("v", lambda q: "nothing")],
                              make_examples(10), dataset_ref="unit@1", resources=[],
                              report=False)
    second = evaluate_examples(project, actor,
                               [ScriptedVariant("v", lambda q: f"answer number {q[1:]}")],
                               make_examples(10), dataset_ref="unit@1", resources=[],
                               report=False)
    across = compare_runs(project, first.run_id, second.run_id, resamples=1000)
    comp = next(c for c in across["comparisons"] if c["metric"] == "rouge_l")
    assert (comp["a"], comp["b"], comp["verdict"]) == (f"v@{first.run_id}",
                                                       f"v@{second.run_id}", "better")
    project.close()

    shown = run_cli("eval", "show", str(second.run_id), cwd=project_dir)
    assert shown.returncode == 0, shown.stderr
    assert f"Evaluation run {second.run_id}" in shown.stdout and "rouge_l" in shown.stdout
    compared = run_cli("eval", "compare", str(first.run_id), str(second.run_id), cwd=project_dir)
    assert compared.returncode == 0, compared.stderr
    assert "better" in compared.stdout
    missing = run_cli("eval", "show", "999", cwd=project_dir)
    assert missing.returncode == 1 and "no evaluation run 999" in missing.stderr
