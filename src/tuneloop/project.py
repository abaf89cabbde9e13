"""Project: a folder with `tuneloop.yaml` and `.tuneloop/`; the Python API's entry point.

project = tuneloop.Project.open("path/to/project")
project.config.task.name
with project.store.session() as session: ...
"""

from __future__ import annotations

import importlib.resources
import os
from functools import cached_property
from pathlib import Path

from sqlalchemy import func, select

from tuneloop.config import CONFIG_FILE, ProjectConfig, load_config
from tuneloop.errors import ConfigError
from tuneloop.governance import audit, principals
from tuneloop.governance.secrets import private_dir, private_file
from tuneloop.governance.tiers import Actor
from tuneloop.store import Principal, Store
from tuneloop.store.db import DATABASE_URL_ENV

STATE_DIR = ".tuneloop"
DATABASE_FILE = "tuneloop.db"  # what `Store.for_project` opens when no database URL is set


class Project:
    """An opened project: its configuration, its store and where its artifacts go."""

    def __init__(self, root: Path, config: ProjectConfig) -> None:
        self.root = root
        self.config = config

    @classmethod
    def open(cls, path: str | Path = ".") -> Project:
        """Open the project at `path` (or the nearest parent that has a `tuneloop.yaml`)."""
        start = Path(path).resolve()
        root = _find_root(start)
        if root is None:
            raise ConfigError(
                f"no {CONFIG_FILE} in {start} or any parent folder",
                hint="run `tuneloop init` to create a project here",
            )
        return cls(root, load_config(root / CONFIG_FILE))

    @classmethod
    def init(cls, path: str | Path = ".", *, config_text: str | None = None) -> Project:
        """Create a project: a starter `tuneloop.yaml` (unless one exists) and `.tuneloop/`.

        On a local SQLite store the account that creates it becomes the project's admin; on a
        shared PostgreSQL store administration takes a key (`principals.bootstrap_admin`, which
        `tuneloop init` runs). Safe to run again.
        """
        root = Path(path).resolve()
        root.mkdir(parents=True, exist_ok=True)
        config_path = root / CONFIG_FILE
        if not config_path.exists():
            text = config_text or starter_config()
            tmp = config_path.with_suffix(".yaml.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(config_path)
        project = cls.open(root)
        private_dir(project.state_dir)
        (project.state_dir / ".gitignore").write_text("*\n", encoding="utf-8")
        project.artifacts_dir.mkdir(exist_ok=True)
        with project.store.session() as session:
            existing = session.scalar(select(func.count()).select_from(Principal)) or 0
            # The operating-system account that creates a local project owns it (as its local
            # principal, bound to the account id); anyone else acts with a key.
            owner = existing == 0 and principals.keyless_admin(project.store)
            principal = principals.local_principal(
                session, role="admin" if owner else "developer")
            if existing == 0:
                audit.record(
                    session,
                    actor=principal.name,
                    action="project.init",
                    target=f"project:{project.config.task.name}",
                    details={"root": str(root)},
                )
        return project

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @cached_property
    def store(self) -> Store:
        """The project's store, migrated to the newest schema on first use.

        `.tuneloop/` is private to its owner (0700), and so is a SQLite database (0600, and its
        WAL files, which SQLite creates with the database's mode).
        """
        private_dir(self.state_dir)
        if not os.environ.get(DATABASE_URL_ENV):
            private_file(self.state_dir / DATABASE_FILE)
        return Store.for_project(self.state_dir)

    def actor(self, key: str | None = None) -> Actor:
        """Who is acting: the API key given or in TUNELOOP_API_KEY, else the local principal of
        the operating-system account (never a name from the environment)."""
        return principals.current_actor(self.store, key)

    def path(self, relative: str | Path) -> Path:
        """A path from the config, resolved against the project root."""
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.dispose()


def starter_config() -> str:
    """The commented `tuneloop.yaml` that `tuneloop init` writes."""
    return importlib.resources.files("tuneloop").joinpath("templates/tuneloop.yaml").read_text()


def _find_root(start: Path) -> Path | None:
    for candidate in (start, *start.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None
