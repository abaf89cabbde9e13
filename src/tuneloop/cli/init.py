"""`tuneloop init`: create a project."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneloop.cli._common import console
from tuneloop.project import Project


def init(
    directory: Path = typer.Argument(Path("."), help="Folder to create the project in."),
) -> None:
    """Create a project: a commented starter tuneloop.yaml and the .tuneloop/ folder.

    Example:  tuneloop init my-assistant
    """
    existed = (directory / "tuneloop.yaml").exists()
    project = Project.init(directory)
    verb = "kept the existing" if existed else "wrote a starter"
    console.print(f"[green]✓[/] {verb} {project.config_path}")
    console.print(f"[green]✓[/] store ready at {project.store.safe_url}")
    console.print("Next: edit tuneloop.yaml, then `tuneloop data add PATH --tier 1|2 --name NAME`.")
