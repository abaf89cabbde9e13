"""What every command shares: the project, the acting principal, the console, time formatting."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from tuneloop.governance.tiers import Actor
from tuneloop.project import Project

console = Console()
err_console = Console(stderr=True)


@dataclass
class Context:
    project_dir: Path
    key: str | None

    def project(self) -> Project:
        """Open the project; a key given on the command line is checked at once."""
        project = Project.open(self.project_dir)
        if self.key:
            project.actor(self.key)
        return project

    def actor(self, project: Project) -> Actor:
        return project.actor(self.key)


def state(ctx: typer.Context) -> Context:
    """The global options (`--project`, `--key`) given before the command."""
    obj = ctx.find_root().obj
    if not isinstance(obj, Context):
        obj = Context(Path("."), None)
    return obj


def when(value: dt.datetime | None) -> str:
    """A timestamp for tables: local-agnostic UTC, minutes precision."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def tier_label(tier: int | None) -> str:
    return {1: "[green]1[/]", 2: "[bold red]2[/]"}.get(tier or 0, "-")


@contextmanager
def stage_progress(out: Console | None = None) -> Iterator[Callable[[str, int, int], None]]:
    """A Rich progress bar with one row per stage, fed by `progress(stage, done, total)`: the
    callback form every long-running domain function takes (index, synth, evaluate)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=out or console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield progress
