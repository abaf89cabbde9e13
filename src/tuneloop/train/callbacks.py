"""Trainer callbacks: per-step metrics into the store, progress for the caller, and a marker
that says a checkpoint was written completely (so resume never picks a half-written one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tuneloop.store import Store, utcnow

COMPLETE_MARKER = ".tuneloop-complete"


@dataclass
class TrainProgress:
    """One progress report: where training is and how fast it goes."""

    step: int
    total_steps: int
    loss: float | None
    tokens_per_s: float | None
    eta_s: float | None
    eval_loss: float | None = None
    stage: str = "training"  # "RAG prompts" while retrieval-aware training prepares its data


class ProgressCallback(TrainerCallback):
    """Turns Trainer logs into `TrainProgress` reports (for a Rich progress bar)."""

    def __init__(self, report: Callable[[TrainProgress], None], tokens: Callable[[], int]) -> None:
        self.report = report
        self.tokens = tokens
        self._start = 0.0
        self._start_step = 0
        self.loss: float | None = None
        self.eval_loss: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()
        self._start_step = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        self.loss = logs.get("loss", self.loss)
        self.eval_loss = logs.get("eval_loss", self.eval_loss)
        elapsed = time.perf_counter() - self._start
        done = state.global_step - self._start_step
        left = state.max_steps - state.global_step
        eta = elapsed / done * left if done > 0 else None
        # every process trains on its own shard: the run's rate is the local one times the world
        rate = self.tokens() * args.world_size / elapsed if elapsed > 0 else None
        self.report(TrainProgress(state.global_step, state.max_steps, self.loss, rate, eta,
                                  self.eval_loss))


class StoreMetricsCallback(TrainerCallback):
    """Writes every logged number (loss, learning rate, eval loss, ...) to `run_metrics`."""

    _SKIP = ("epoch", "total_flos", "train_runtime", "train_samples_per_second",
             "train_steps_per_second", "eval_runtime", "eval_samples_per_second",
             "eval_steps_per_second")

    def __init__(self, store: Store, run_id: int, extra: Callable[[], dict[str, float]]) -> None:
        self.store = store
        self.run_id = run_id
        self.extra = extra

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        values = {k: float(v) for k, v in logs.items()
                  if k not in self._SKIP and isinstance(v, int | float)}
        if "loss" in values:
            values.update(self.extra())
        if values:
            record_metrics(self.store, self.run_id, state.global_step, values)


class CheckpointMarkerCallback(TrainerCallback):
    """Marks `checkpoint-N/` complete once Trainer has written all of it."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / COMPLETE_MARKER).write_text(str(state.global_step), encoding="utf-8")


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint folder that was written completely, or None."""
    found = []
    for folder in output_dir.glob("checkpoint-*"):
        suffix = folder.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (folder / COMPLETE_MARKER).is_file():
            found.append((int(suffix), folder))
    return max(found)[1] if found else None


def record_metrics(store: Store, run_id: int, step: int, values: dict[str, float]) -> None:
    """Store metric values of one step, replacing what a previous attempt wrote for that step."""
    from sqlalchemy import delete

    from tuneloop.store.runs import RunMetric

    with store.session() as session:
        session.execute(delete(RunMetric).where(RunMetric.run_id == run_id,
                                                RunMetric.step == step,
                                                RunMetric.name.in_(list(values))))
        now = utcnow()
        session.add_all(RunMetric(run_id=run_id, step=step, name=name, value=value,
                                  recorded_at=now) for name, value in values.items())
