"""Sweeps: every trial is a tracked run under one sweep, and the best trial is registered."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_train_run import FAST, make_version, sqlite_project, tiny_model  # noqa: F401


@pytest.mark.slow
def test_sweep_tracks_each_trial_and_keeps_the_best(sqlite_project, tiny_model: Path) -> None:  # noqa: F811
    from tuneloop.train.history import get_run, list_runs
    from tuneloop.train.sweep import sweep

    version = make_version(sqlite_project, n_train=8)
    seen = []
    result = sweep(sqlite_project, sqlite_project.actor(), version.ref, base=str(tiny_model),
                   overrides={**FAST, "max_steps": 2}, trials=2, export=False,
                   on_trial=seen.append)
    assert [t.number for t in seen] == [0, 1]
    trials = list_runs(sqlite_project, kind="trial")
    assert sorted(r.id for r in trials) == sorted(t.run_id for t in result.trials)
    assert all(r.parent_id == result.sweep_id and r.status == "completed" for r in trials)
    best = min(result.trials, key=lambda t: t.objective)
    assert result.best is not None and result.best.run_id == best.run_id
    sweep_run = get_run(sqlite_project, result.sweep_id)
    assert sweep_run.status == "completed" and sweep_run.summary["best_run"] == best.run_id
    assert sweep_run.summary["best_params"]["learning_rate"] == best.params["learning_rate"]

    listed = run_cli("-C", str(sqlite_project.root), "runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert "sweep" in listed.stdout and version.ref in listed.stdout
    shown = run_cli("-C", str(sqlite_project.root), "runs", "show", str(best.run_id))
    assert shown.returncode == 0, shown.stderr
    assert "eval_loss" in shown.stdout and f"{best.params['lora_r']}" in shown.stdout
    missing = run_cli("-C", str(sqlite_project.root), "runs", "show", "999")
    assert missing.returncode == 1 and "no run 999" in missing.stderr
