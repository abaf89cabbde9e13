"""Hyperparameter sweeps: Optuna searches learning rate, LoRA rank/alpha and epochs; every
trial is a tracked run (kind "trial") under one sweep run; the best trial is registered and
exported like a normal run.

The objective is the validation loss (the training loss when there is no validation split).
Budget by number of trials, by time, or both (whichever ends first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuneloop.errors import TrainingError, TuneloopError
from tuneloop.governance import Actor, require
from tuneloop.train import run as runs
from tuneloop.train.base import resolve_base
from tuneloop.train.params import resolve_params

if TYPE_CHECKING:
    from tuneloop.data.versions import DatasetVersion
    from tuneloop.project import Project
    from tuneloop.train.callbacks import TrainProgress

LR_RANGE = (5e-5, 5e-3)
RANKS = (4, 8, 16, 32)
ALPHA_FACTORS = (1, 2, 4)
EPOCHS = (1, 2, 3)


@dataclass
class Trial:
    """One trial: its run, the parameters tried, and the objective reached (None if failed)."""

    number: int
    run_id: int | None
    params: dict[str, Any]
    objective: float | None
    error: str = ""


@dataclass
class SweepResult:
    """A finished sweep: every trial and the best one's training result."""

    sweep_id: int
    trials: list[Trial] = field(default_factory=list)
    best: runs.TrainResult | None = None
    objective: str = "eval_loss"


def suggest(trial: Any, method: str) -> dict[str, Any]:
    """The search space: learning rate (log scale), epochs, and LoRA rank and alpha."""
    chosen: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", *LR_RANGE, log=True),
        "epochs": trial.suggest_categorical("epochs", list(EPOCHS)),
    }
    if method == "lora":
        rank = trial.suggest_categorical("lora_r", list(RANKS))
        chosen["lora_r"] = rank
        chosen["lora_alpha"] = rank * trial.suggest_categorical("alpha_factor",
                                                                list(ALPHA_FACTORS))
    return chosen


def sweep(project: Project, actor: Actor, dataset: str | DatasetVersion, *,
          base: str | None = None, overrides: dict[str, Any] | None = None,
          trials: int | None = 8, timeout_s: float | None = None, export: bool = True,
          on_trial: Callable[[Trial], None] | None = None,
          progress: Callable[[TrainProgress], None] | None = None) -> SweepResult:
    """Search hyperparameters with Optuna, then register (and export) the best trial."""
    import optuna

    if not trials and not timeout_s:
        raise TrainingError("a sweep needs a budget", hint="pass --trials N and/or --timeout S")
    version = runs.dataset_version(project, dataset)
    model = resolve_base(project, base)
    params = resolve_params(project.config.training, overrides)
    approvals = require(project.store, actor, "train",
                        runs.run_resources(project, version, model, params),
                        purpose=f"sweep on {version.ref}")
    sweep_id = runs.create_run(project, actor, "sweep", None,
                               {**params, "trials": trials, "timeout_s": timeout_s},
                               version, model, approvals)
    result = SweepResult(sweep_id)
    objective = _objective(project, actor, version, result, params["method"], base=base,
                           overrides=overrides, on_trial=on_trial, progress=progress)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=params["seed"]))
    try:
        study.optimize(objective, n_trials=trials, timeout=timeout_s)
        best = _best(result)
        result.best = runs.publish_run(project, best.run_id or 0, export=export)
    except TuneloopError as exc:
        runs.update_run(project, sweep_id, status="failed", error=str(exc)[:4000])
        raise
    runs.update_run(project, sweep_id, status="completed", finished=True,
                    output_model=(result.best.published.model_name if result.best.published
                                  else result.best.model_name),
                    summary={"best_run": best.run_id, "best_params": best.params,
                             result.objective: best.objective, "trials": len(result.trials)})
    return result


def _objective(project: Project, actor: Actor, version: DatasetVersion, result: SweepResult,
               method: str, *, base: str | None, overrides: dict[str, Any] | None,
               on_trial: Callable[[Trial], None] | None,
               progress: Callable[[TrainProgress], None] | None) -> Callable[[Any], float]:
    """Optuna's objective: train one trial run (kind "trial" under the sweep), record it in
    `result`, and return its validation loss (its training loss without a validation split);
    a trial that fails is pruned."""
    import optuna

    def objective(trial: optuna.Trial) -> float:
        chosen = suggest(trial, method)
        try:
            outcome = runs.train(project, actor, version, base=base,
                                 overrides={**(overrides or {}), **chosen}, progress=progress,
                                 export=False, register=False, kind="trial",
                                 parent_id=result.sweep_id)
        except TuneloopError as exc:
            result.trials.append(Trial(trial.number, None, chosen, None, str(exc)))
            if on_trial:
                on_trial(result.trials[-1])
            raise optuna.TrialPruned(str(exc)) from exc
        value = outcome.metrics.get("eval_loss", outcome.metrics["train_loss"])
        result.objective = "eval_loss" if "eval_loss" in outcome.metrics else "train_loss"
        trial.set_user_attr("run_id", outcome.run_id)
        result.trials.append(Trial(trial.number, outcome.run_id, chosen, value))
        if on_trial:
            on_trial(result.trials[-1])
        return value

    return objective


def _best(result: SweepResult) -> Trial:
    """The completed trial with the lowest objective (TrainingError when none completed)."""
    done = [t for t in result.trials if t.objective is not None]
    if not done:
        raise TrainingError(f"sweep {result.sweep_id}: no trial completed",
                            hint=f"`tuneloop runs list` shows the trials' errors: "
                                 f"{result.trials[-1].error if result.trials else ''}")
    return min(done, key=lambda t: t.objective or 0.0)
