"""`tuneloop runs`: the training runs, their parameters and metric curves."""

from __future__ import annotations

import typer
from rich.table import Table

from tuneloop.cli._common import console, state, tier_label, when
from tuneloop.numbers import fmt

app = typer.Typer(help="Training runs: list and show.", no_args_is_help=True)

_STATUS = {"completed": "green", "running": "yellow", "failed": "red"}


@app.command("list")
def list_(
    ctx: typer.Context,
    kind: str | None = typer.Option(None, help="train, sweep or trial."),
    limit: int = typer.Option(30, help="How many, newest first."),
) -> None:
    """List runs, newest first.

    Example:  tuneloop runs list --kind train
    """
    from tuneloop.train.history import list_runs

    project = state(ctx).project()
    table = Table(title="runs")
    for column in ("id", "kind", "status", "dataset", "base", "model", "tier", "loss",
                   "val loss", "started"):
        table.add_column(column)
    for run in list_runs(project, kind=kind, limit=limit):
        s = run.summary or {}
        colour = _STATUS.get(run.status, "white")
        table.add_row(str(run.id), run.kind, f"[{colour}]{run.status}[/]", run.dataset_version,
                      run.base_model, run.output_model or "-", tier_label(run.tier),
                      fmt(s.get("train_loss"), 4), fmt(s.get("eval_loss"), 4), when(run.created_at))
    console.print(table)


@app.command()
def show(ctx: typer.Context, run_id: int = typer.Argument(..., help="The run's id.")) -> None:
    """Show one run: parameters, lineage, final figures and metric curves.

    Example:  tuneloop runs show 3
    """
    from tuneloop.train.history import get_run, run_metrics

    project = state(ctx).project()
    run = get_run(project, run_id)
    colour = _STATUS.get(run.status, "white")
    console.print(f"[bold]run {run.id}[/] ({run.kind}) [{colour}]{run.status}[/]  "
                  f"by {run.actor}, {when(run.created_at)}")
    console.print(f"  dataset {run.dataset_version} · base {run.base_model} · tier "
                  f"{tier_label(run.tier)} · approvals {', '.join(run.approvals) or 'none'}")
    console.print(f"  output model: {run.output_model or '-'} · folder: {run.output_dir}")
    if run.error:
        console.print(f"  [red]error:[/] {run.error}", highlight=False)
    params = Table(title="parameters", show_header=False)
    for key in sorted(k for k in run.params if k not in ("base_dir",)):
        params.add_row(key, str(run.params[key]))
    console.print(params)
    if run.summary:
        summary = Table(title="results", show_header=False)
        for key, value in run.summary.items():
            summary.add_row(key, fmt(value, 4) if isinstance(value, float) else str(value))
        console.print(summary)
    curves = run_metrics(project, run.id)
    if curves:
        table = Table(title="metrics (first, last, min, max over steps)")
        for column in ("metric", "points", "first", "last", "min", "max"):
            table.add_column(column)
        for name, points in sorted(curves.items()):
            values = [v for _, v in points]
            table.add_row(name, str(len(points)), fmt(values[0], 4), fmt(values[-1], 4),
                          fmt(min(values), 4), fmt(max(values), 4))
        console.print(table)


