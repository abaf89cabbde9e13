"""`tuneloop models`: the models this project knows, GGUF export, the bundled model's HF copy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from tuneloop.cli._common import Context, console, state, when

if TYPE_CHECKING:
    from tuneloop.project import Project

app = typer.Typer(help="Models: list, export to GGUF, prepare the bundled model.",
                  no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List base models, fine-tuned models and exports with their tier and lineage.

    Example:  tuneloop models list
    """
    from tuneloop.engines.registry import list_models

    project = state(ctx).project()
    table = Table(title="Models")
    for col in ("name", "kind", "engine / format", "tier", "base", "lineage", "created"):
        table.add_column(col)
    for m in list_models(project):
        lineage = m.lineage
        parts = []
        if lineage.get("dataset_versions"):
            parts.append("data " + ", ".join(map(str, lineage["dataset_versions"])))
        if lineage.get("run_id") is not None:
            parts.append(f"run {lineage['run_id']}")
        if lineage.get("approvals"):
            parts.append("approvals " + ", ".join(map(str, lineage["approvals"])))
        tier = f"[red]{m.tier}[/]" if m.tier == 2 else str(m.tier)
        table.add_row(m.name, m.kind, f"{m.engine} / {m.format}", tier, m.base_model or "-",
                      "; ".join(parts) or ("tuneloop.yaml" if not m.registered else "-"),
                      when(m.created_at) if m.created_at else "-")
    console.print(table)


@app.command("export")
def export(
    ctx: typer.Context,
    model_dir: Path = typer.Argument(..., help="A llama-family Hugging Face folder (safetensors)."),
    out: Path = typer.Option(..., "--out", "-o", help="The .gguf file to write."),
    quantization: str = typer.Option("f16", "--quant", "-q", help="f32 | f16 | q8_0"),
    register: str | None = typer.Option(None, help="Register the export under this name."),
    tier: int = typer.Option(1, help="The export's tier at least (its lineage may raise it: a "
                                     "model made from Tier 2 data is Tier 2)."),
) -> None:
    """Export a Hugging Face model folder to GGUF for the llama.cpp engine.

    Inside a project the export is recorded (source, file, quantization, actor, time, and the
    models and dataset versions it was made from): an erasure of a subject whose data it holds
    lists it as a copy that left the project.

    Example:  tuneloop models export ./merged --out merged-q8.gguf --quant q8_0 --register faq-q8
    """
    from rich.progress import Progress

    from tuneloop.engines.export import export_gguf

    c = state(ctx)
    project = c.project() if register else _project_if_any(c)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"Exporting {model_dir.name} ({quantization})", total=None)
        path = export_gguf(model_dir, out, quantization,  # type: ignore[arg-type]
                           progress=lambda done, total: progress.update(task, completed=done,
                                                                        total=total))
    console.print(f"[green]✓[/] wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if project is not None:
        _record(project, c.actor(project).name, model_dir, path, quantization, tier, register)


def _project_if_any(c: Context) -> Project | None:
    """The project around the working folder, or None outside any project (nothing to record)."""
    from tuneloop.config import CONFIG_FILE

    start = c.project_dir.resolve()
    if not any((folder / CONFIG_FILE).is_file() for folder in (start, *start.parents)):
        return None
    return c.project()


def _record(project: Project, actor: str, model_dir: Path, path: Path, quantization: str,
            tier: int, register: str | None) -> None:
    """Register the export (with `--register`) and record it in the project's exports."""
    from tuneloop.engines.registry import lineage_of, register_model
    from tuneloop.flywheel.model_exports import record_export

    made_from_tier, roots = lineage_of(project, model_dir)
    tier = max(tier, made_from_tier)
    row = record_export(project, actor, model_dir, path, quantization=quantization, tier=tier)
    if register:
        record = register_model(
            project, name=register, kind="gguf", path=str(path.resolve()), format="gguf",
            tier=tier, roots=roots, base_model=str(model_dir),
            lineage={"exported_from": str(model_dir), "quantization": quantization,
                     "dataset_versions": row.dataset_versions, "made_from": row.models},
            actor=actor)
        console.print(f"[green]✓[/] registered as {register} (tier {record.tier})")
    made = f" (made from data {', '.join(row.dataset_versions)})" if row.dataset_versions else ""
    console.print(f"[dim]recorded as model export #{row.id}{made}[/]")


@app.command("prepare")
def prepare(ctx: typer.Context) -> None:
    """Convert the bundled SmolLM2 GGUF to a safetensors folder (once) for transformers/training.

    Example:  tuneloop models prepare
    """
    from tuneloop.engines.bundled import bundled_hf_dir

    project = state(ctx).project()
    folder = bundled_hf_dir(project.state_dir / "models")
    console.print(f"[green]✓[/] bundled model ready at {folder}")
