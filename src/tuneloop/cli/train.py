"""`tuneloop train`: fine-tune the base model on a dataset version, resume a run, or sweep."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tuneloop.cli._common import console, state
from tuneloop.errors import ConfigError


def train(
    ctx: typer.Context,
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="NAME or NAME@VERSION."),
    base: str | None = typer.Option(None, "--base", help="Base model (default: the config's)."),
    method: str | None = typer.Option(None, "--method", help="lora or full."),
    epochs: float | None = typer.Option(None, "--epochs"),
    learning_rate: float | None = typer.Option(None, "--lr", "--learning-rate"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    grad_accum: int | None = typer.Option(None, "--gradient-accumulation"),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length"),
    lora_r: int | None = typer.Option(None, "--lora-r"),
    lora_alpha: int | None = typer.Option(None, "--lora-alpha"),
    lora_layers: int | None = typer.Option(None, "--lora-layers", help="LoRA on the last N "
                                           "decoder layers only (faster on a CPU)."),
    packing: bool | None = typer.Option(None, "--packing/--no-packing"),
    retrieval: bool | None = typer.Option(
        None, "--retrieval/--no-retrieval",
        help="Train on the prompts a RAG variant serves: its retrieved sources for each "
             "training question (the gold passage where known), so the model learns to answer "
             "from them. Uses training.retrieval_variant, else the first RAG variant."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after N steps."),
    seed: int | None = typer.Option(None, "--seed"),
    save_steps: int | None = typer.Option(None, "--save-steps"),
    eval_steps: int | None = typer.Option(None, "--eval-steps"),
    resume: int | None = typer.Option(None, "--resume", help="Continue run RUN from its last "
                                      "checkpoint."),
    sweep: bool = typer.Option(False, "--sweep", help="Search lr, LoRA rank/alpha and epochs."),
    trials: int | None = typer.Option(None, "--trials", help="Sweep budget in trials."),
    timeout: float | None = typer.Option(None, "--timeout", help="Sweep budget in seconds."),
    name: str | None = typer.Option(None, "--name", help="Register the served model under "
                                    "this name (a variant's `model:`)."),
    export: bool = typer.Option(True, "--export/--no-export",
                                help="Merge, export to GGUF and parity-check (default on)."),
) -> None:
    """Fine-tune (LoRA or full) with every run tracked; export to GGUF for serving.

    Hyperparameters come from the training: section of tuneloop.yaml; flags override them.
    Under `torchrun --nproc_per_node N -m tuneloop train ...` it trains on N processes.

    Example:  tuneloop train --dataset tickets --epochs 2 --lr 2e-4
    Example:  tuneloop train --dataset docs-qa --retrieval   (after `tuneloop rag index`)
    """
    c = state(ctx)
    project = c.project()
    actor = c.actor(project)
    overrides: dict[str, Any] = {
        "method": method, "epochs": epochs, "learning_rate": learning_rate,
        "batch_size": batch_size, "gradient_accumulation": grad_accum,
        "max_seq_length": max_seq_length, "lora_r": lora_r, "lora_alpha": lora_alpha,
        "lora_layers": lora_layers, "packing": packing, "retrieval": retrieval,
        "max_steps": max_steps, "seed": seed,
        "save_steps": save_steps, "eval_steps": eval_steps, "model_name": name,
    }
    _run(project, actor, dataset, base, overrides, resume=resume, sweep=sweep, trials=trials,
         timeout=timeout, export=export)


def _run(project: Any, actor: Any, dataset: str | None, base: str | None,
         overrides: dict[str, Any], *, resume: int | None, sweep: bool, trials: int | None,
         timeout: float | None, export: bool) -> None:
    """Resume a run, sweep, or train once, and show what came of it."""
    from tuneloop.train import run as runs

    if resume is not None:
        with _progress() as report:
            result = runs.resume(project, actor, resume, progress=report, export=export)
        _show_result(result)
        return
    if not dataset:
        raise ConfigError("which dataset? pass --dataset NAME[@VERSION] (or --resume RUN)",
                          hint="`tuneloop data list` shows the dataset versions")
    if sweep:
        _sweep(project, actor, dataset, base, overrides, trials, timeout, export)
        return
    with _progress() as report:
        result = runs.train(project, actor, dataset, base=base, overrides=overrides,
                            progress=report, export=export)
    _show_result(result)


def _sweep(project: Any, actor: Any, dataset: str, base: str | None,
           overrides: dict[str, Any], trials: int | None, timeout: float | None,
           export: bool) -> None:
    from tuneloop.train.sweep import sweep

    def on_trial(trial: Any) -> None:
        value = "failed" if trial.objective is None else f"{trial.objective:.4f}"
        console.print(f"trial {trial.number}: run {trial.run_id or '-'} → {value}")

    with _progress() as report:
        result = sweep(project, actor, dataset, base=base, overrides=overrides,
                       trials=trials if trials or timeout else 8, timeout_s=timeout,
                       export=export, on_trial=on_trial, progress=report)
    table = Table(title=f"sweep {result.sweep_id}")
    for column in ("trial", "run", "learning rate", "epochs", "LoRA r", "alpha",
                   result.objective):
        table.add_column(column)
    best = result.best.run_id if result.best else None
    for t in result.trials:
        style = "bold green" if t.run_id == best else None
        table.add_row(str(t.number), str(t.run_id or "-"),
                      f"{t.params['learning_rate']:.2e}", str(t.params["epochs"]),
                      str(t.params.get("lora_r", "-")), str(t.params.get("lora_alpha", "-")),
                      "failed" if t.objective is None else f"{t.objective:.4f}", style=style)
    console.print(table)
    if result.best:
        _show_result(result.best)


def _show_result(result: Any) -> None:
    m = result.metrics
    console.print(f"[green]✓[/] run {result.run_id}: train loss {m.get('train_loss', 0):.4f}"
                  + (f", validation loss {m['eval_loss']:.4f}" if "eval_loss" in m else "")
                  + (f", {m['tokens_per_s']:.0f} tokens/s" if "tokens_per_s" in m else ""))
    console.print(f"  adapter: {result.adapter_dir}  (tier {result.tier})")
    if result.model_name:
        console.print(f"  registered: {result.model_name}")
    if result.published:
        p = result.published
        console.print(f"  exported: {p.gguf_path} as {p.model_name}; parity with the adapter: "
                      f"{p.agreement:.0%} of tokens ({p.parity.exact:.0%} of answers identical)")


@contextlib.contextmanager
def _progress() -> Iterator[Any]:
    progress = Progress(TextColumn("[bold]{task.fields[stage]}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} steps"),
                        TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                        console=console, transient=False)
    task = progress.add_task("train", total=None, stats="", stage="training")

    def report(p: Any) -> None:
        stats = []
        if p.loss is not None:
            stats.append(f"loss {p.loss:.4f}")
        if p.eval_loss is not None:
            stats.append(f"val {p.eval_loss:.4f}")
        if p.tokens_per_s:
            stats.append(f"{p.tokens_per_s:.0f} tok/s")
        progress.update(task, completed=p.step, total=p.total_steps, stats=" · ".join(stats),
                        stage=p.stage)

    with progress:
        yield report
