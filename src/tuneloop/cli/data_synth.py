"""Rendering for `tuneloop data synth`: a progress bar per stage and the kept/dropped summary."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tuneloop.data.synth import SynthReport


def render_report(console: Console, report: SynthReport) -> None:
    """What was read, generated, kept and dropped (by reason), and where the records went."""
    table = Table(title=f"Synthetic records by {report.teacher}, answers: {report.answers}")
    table.add_column("step")
    table.add_column("count", justify="right")
    table.add_row("documents read", f"{report.documents:,}")
    table.add_row("passages", f"{report.passages:,}")
    table.add_row("  without a checkable fact (skipped)", f"{report.passages_without_facts:,}")
    table.add_row("questions asked", f"{report.generated:,}")
    for reason, count in report.dropped.items():
        style = "red" if count else "dim"
        table.add_row(f"  [{style}]dropped: {reason}[/]", f"[{style}]{count:,}[/]")
    table.add_row("[bold green]kept[/]", f"[bold green]{report.kept:,}[/]")
    if report.questions != "teacher":
        table.add_row("  of which cloze questions (the teacher's was not usable)"
                      if report.questions == "auto" else "  of which cloze questions",
                      f"{report.cloze:,}")
    console.print(table)
    contamination = report.dropped.get("near duplicate of a test record", 0)
    checked = ", ".join(report.test_versions) or "no dataset version yet"
    console.print(f"  contamination check: {report.test_records:,} test texts from {checked}; "
                  f"{contamination:,} synthetic question(s) dropped")
    console.print(f"[green]✓[/] {report.kept:,} grounded records → source "
                  f"[bold]{report.source}[/] at {report.path}")
    console.print(f"  next: add `{report.source}` to a dataset's sources in tuneloop.yaml, then "
                  "`tuneloop data build NAME`")
