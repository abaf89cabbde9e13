"""`tuneloop init`: create a project; on a shared PostgreSQL store, also its first admin."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneloop.cli._common import console
from tuneloop.errors import TuneloopError
from tuneloop.governance import principals
from tuneloop.project import Project


def init(
    directory: Path = typer.Argument(Path("."), help="Folder to create the project in."),
    admin: str | None = typer.Option(
        None, "--admin", help="PostgreSQL store only: the name of the first admin, whose key is "
        "printed once (default: your account's name)."),
) -> None:
    """Create a project: a commented starter tuneloop.yaml and the .tuneloop/ folder.

    On a local SQLite store your account administers the project without a key. On a shared
    PostgreSQL store (TUNELOOP_DATABASE_URL) administration takes a key: the first `init` makes
    the first admin and prints their key once; later admins are made with an admin's key.

    Example:  tuneloop init my-assistant

    Example:  TUNELOOP_DATABASE_URL=postgresql://tuneloop@db/tuneloop tuneloop init . --admin ada
    """
    existed = (directory / "tuneloop.yaml").exists()
    project = Project.init(directory)
    verb = "kept the existing" if existed else "wrote a starter"
    console.print(f"[green]✓[/] {verb} {project.config_path}")
    console.print(f"[green]✓[/] store ready at {project.store.safe_url}")
    if principals.keyless_admin(project.store):
        if admin is not None:
            raise TuneloopError(
                "--admin is for a shared PostgreSQL store; on this local SQLite store your "
                "account administers the project without a key",
                hint=f"make an admin key with `tuneloop keys create {admin} --role admin`")
    else:
        _first_admin(project, admin or principals.local_account()[1])
    console.print("Next: edit tuneloop.yaml, then `tuneloop data add PATH --tier 1|2 --name NAME`.")


def _first_admin(project: Project, name: str) -> None:
    """Bootstrap the shared store's first admin and print the key once, unless one exists."""
    with project.store.session(write=False) as session:
        exists = principals.admin_key_exists(session)
    if exists:
        console.print("[green]✓[/] an admin key exists already; administration takes an "
                      "admin's key (ask an admin for yours)")
        return
    made = principals.bootstrap_admin(project.store, name)
    console.print(f"[green]✓[/] first admin {name}: administration on this shared store takes "
                  "a key. Copy it now, it is not shown again:")
    console.print(made.secret, soft_wrap=True, highlight=False)
    console.print(f"   then: export TUNELOOP_API_KEY=...; tuneloop keys create NAME --role "
                  f"privacy (as {name})")
