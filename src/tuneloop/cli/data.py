"""`tuneloop data`: sources, builds, versions with their lineage, synthetic data and exports."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuneloop.cli._common import console, state, tier_label
from tuneloop.cli.data_tier import tier as tier_command

app = typer.Typer(help="Datasets: add sources, build versions, show lineage, synthesise, export.",
                  no_args_is_help=True)


def _progress(label: str) -> Progress:
    return Progress(SpinnerColumn(), TextColumn(f"{label} [bold]{{task.completed:,.0f}}[/] "
                                                "records"), TimeElapsedColumn(), console=console,
                    transient=True)


@app.command()
def add(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A JSONL, CSV or Parquet file, or a documents folder."),
    name: str = typer.Option(..., "--name", "-n", help="The source's name."),
    tier: int = typer.Option(..., "--tier", "-t", help="1 = internal data, 2 = customer data."),
    kind: str | None = typer.Option(None, help="records or documents (default: by path)."),
    owner: str = typer.Option("", help="Who is responsible for this data."),
) -> None:
    """Register a file or folder as a data source with its privacy tier.

    Example:  tuneloop data add data/tickets.jsonl --name tickets --tier 2 --owner support-ops
    """
    from tuneloop.data.sources import add_source

    c = state(ctx)
    project = c.project()
    info = add_source(project, c.actor(project), path, name, tier, kind=kind, owner=owner)
    console.print(f"[green]✓[/] source [bold]{info.name}[/] ({info.kind}, {info.format}, tier "
                  f"{tier_label(info.tier)}) → {info.path}")
    if info.tier == 2:
        console.print("  Tier 2: every use needs an approval, e.g. `tuneloop approvals request "
                      f"--scope source:{info.name} --use train --purpose \"...\"`")


app.command("tier")(tier_command)


@app.command()
def sources(ctx: typer.Context) -> None:
    """List the project's sources, their tiers and where each was registered.

    One registry: a source declared in tuneloop.yaml and one added with `tuneloop data add` can
    both be named in dataset recipes, knowledge_base.sources, `data synth` and `rag index`.

    Example:  tuneloop data sources
    """
    from tuneloop.data.sources import list_sources

    project = state(ctx).project()
    table = Table(title="Sources")
    for col in ("name", "kind", "format", "tier", "owner", "from", "path"):
        table.add_column(col, overflow="fold")
    for s in list_sources(project):
        table.add_row(s.name, s.kind, s.format, tier_label(s.tier), s.owner, s.origin,
                      str(s.path))
    console.print(table)


@app.command()
def build(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A dataset recipe from tuneloop.yaml."),
    strict: bool = typer.Option(False, help="Fail on the first bad record instead of "
                                            "setting it aside in rejects.jsonl."),
) -> None:
    """Build a dataset version from its recipe: validate, redact, dedup, filter, split.

    Example:  tuneloop data build support --strict
    """
    from tuneloop.data.build import build_dataset

    c = state(ctx)
    project = c.project()
    actor = c.actor(project)
    with _progress("reading") as bar:
        task = bar.add_task("build", total=None)
        version = build_dataset(project, actor, name, strict=strict,
                                progress=lambda n: bar.update(task, completed=n))
    steps = version.manifest["steps"]
    removed = sum(sum(c.values()) for c in steps["removed"].values())
    console.print(f"[green]✓[/] built [bold]{version.ref}[/] (tier {tier_label(version.tier)}): "
                  f"{steps['read']:,} read, {removed:,} removed, "
                  + ", ".join(f"{version.counts[s]:,} {s}" for s in ("train", "validation",
                                                                     "test")))
    console.print(f"  lineage: `tuneloop data show {version.ref}`; rejects: "
                  f"{version.rejects_path}")


@app.command("list")
def list_(ctx: typer.Context, name: str | None = typer.Argument(None)) -> None:
    """List dataset versions, newest first.

    Example:  tuneloop data list support
    """
    from tuneloop.data.versions import list_versions

    project = state(ctx).project()
    table = Table(title="Dataset versions")
    for col in ("version", "tier", "train", "validation", "test", "approvals", "created"):
        table.add_column(col, overflow="fold")
    for v in list_versions(project, name):
        table.add_row(v.ref, tier_label(v.tier), *(f"{v.counts.get(s, 0):,}"
                                                   for s in ("train", "validation", "test")),
                      ", ".join(f"#{a}" for a in v.approvals) or "-",
                      v.created_at.isoformat(timespec="seconds") if v.created_at else "")
    console.print(table)


@app.command()
def show(ctx: typer.Context, ref: str = typer.Argument(..., help="name or name@id")) -> None:
    """Show a version's lineage: sources, approvals, recipe, step counts, token lengths.

    Example:  tuneloop data show support@3f2a
    """
    from tuneloop.cli.data_show import render_version
    from tuneloop.data.versions import get_version

    project = state(ctx).project()
    render_version(console, get_version(project, ref))


@app.command()
def export(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name or name@id"),
    out: Path = typer.Option(..., "--out", "-o", help="A new folder to write."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl (OpenAI chat), parquet or hf."),
) -> None:
    """Export a version; Tier 2 data needs an approval that allows `export`.

    Example:  tuneloop data export support --format jsonl --out exports/support
    """
    from tuneloop.data.export import export_version

    c = state(ctx)
    project = c.project()
    folder = export_version(project, c.actor(project), ref, out, fmt)
    console.print(f"[green]✓[/] exported {ref} as {fmt} to {folder}")


@app.command()
def synth(
    ctx: typer.Context,
    source: str = typer.Option(..., "--from", help="A documents source (the knowledge base)."),
    name: str = typer.Option("synth", "--name", help="Name of the records source to create."),
    teacher: str = typer.Option("base", "--teacher", help="The model that writes questions and "
                                "answers: base, bundled:smollm2-135m, a registered model, a "
                                "path, or an OpenAI-compatible URL (with --teacher-model)."),
    teacher_model: str | None = typer.Option(None, help="The model name at a --teacher URL."),
    api_key_env: str | None = typer.Option(None, help="Variable holding the --teacher URL's "
                                                      "API key (never the key itself)."),
    answers: str = typer.Option("extract", help="extract: the answer is the passage sentence "
                                "that holds the fact (grounded by construction); teacher: the "
                                "teacher answers from the passage (for a strong --teacher)."),
    questions: str = typer.Option("auto", help="auto: the teacher's question, or a cloze of "
                                  "the fact's sentence (its fact replaced by 'what') when the "
                                  "teacher's is not about the passage; teacher; cloze (no "
                                  "teacher call for questions)."),
    per_passage: int = typer.Option(1, min=1, help="Questions to ask per passage."),
    limit: int | None = typer.Option(None, min=1, help="Use at most this many documents."),
    min_support: float = typer.Option(0.6, min=0.0, max=1.0, help="Share of an answer's words "
                                      "that must occur in its passage."),
) -> None:
    """Write grounded question/answer records from documents, as a new records source.

    Each answer must state a key fact of its passage (kept in metadata.key_facts, with the
    document in metadata.kb_refs and the passage in metadata.passage); pairs that are not
    grounded, give the answer away, repeat, or nearly duplicate any dataset's test record are
    dropped and counted by reason.

    Examples:  tuneloop data synth --from kb --name kb-qa
               tuneloop data synth --from kb --name kb-qa --answers teacher
                 --teacher http://127.0.0.1:8000/v1 --teacher-model qwen2.5-7b-instruct
    """
    from tuneloop.cli._common import stage_progress
    from tuneloop.cli.data_synth import render_report
    from tuneloop.data.synth import synthesise

    c = state(ctx)
    project = c.project()
    options = {k: v for k, v in (("model", teacher_model), ("api_key_env", api_key_env)) if v}
    with stage_progress(console) as progress:
        report = synthesise(project, c.actor(project), source, name=name, teacher=teacher,
                            teacher_options=options, answers=answers, questions=questions,
                            per_passage=per_passage, limit=limit,
                            min_support=min_support, progress=progress)
    render_report(console, report)
