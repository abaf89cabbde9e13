"""Shared fixtures: a store on SQLite and (when the CI's server is up) on PostgreSQL, projects,
and principals in each role."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tuneloop import Project
    from tuneloop.governance.tiers import Actor

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

POSTGRES_ENV = "TUNELOOP_TEST_POSTGRES_URL"


def _postgres_base() -> str | None:
    return os.environ.get(POSTGRES_ENV)


def _need_postgres() -> None:
    if not _postgres_base():
        if os.environ.get("TUNELOOP_REQUIRE_POSTGRES"):
            pytest.fail(f"{POSTGRES_ENV} is not set but TUNELOOP_REQUIRE_POSTGRES is")
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (.ci/run starts a server)")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    _need_postgres()
    import psycopg

    base = _postgres_base()
    assert base
    name = "tl_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url: str):
    from tuneloop.store import Store

    s = Store(database_url)
    yield s
    s.dispose()


@pytest.fixture
def people(store):
    """An admin, two developers, two privacy officers and a public user, as Actors."""
    from tuneloop.governance.principals import actor_of, ensure_principal

    with store.session() as session:
        made = {
            "admin": ensure_principal(session, "ada", role="admin"),
            "dev": ensure_principal(session, "dan", role="developer"),
            "dev2": ensure_principal(session, "dora", role="developer"),
            "privacy": ensure_principal(session, "pia", role="privacy"),
            "privacy2": ensure_principal(session, "pat", role="privacy"),
            "public": ensure_principal(session, "pub", role="developer", audience="public"),
        }
        return {k: actor_of(v) for k, v in made.items()}


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    """An initialised project whose store is on the parametrised backend."""
    from tuneloop import Project

    if database_url.startswith("postgres"):
        monkeypatch.setenv("TUNELOOP_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    root = tmp_path / "proj"
    Project.init(root).close()
    return root


_ADMIN_KEYS: dict[str, str] = {}


def admin_key(project: Project) -> str:
    """An admin's key for a test project (principal `ada`), made once per store: on SQLite by the
    account that created the project (the keyless owner); on PostgreSQL, where administration
    always takes a key, by bootstrapping the first admin as `tuneloop init` does."""
    from tuneloop.governance import principals

    url = str(project.store.url)
    if url not in _ADMIN_KEYS:
        if project.store.dialect == "sqlite":
            made = principals.create_key(project.store, project.actor(), "ada", role="admin")
        else:
            made = principals.bootstrap_admin(project.store, "ada")
        _ADMIN_KEYS[url] = made.secret
    return _ADMIN_KEYS[url]


def project_admin(project: Project) -> Actor:
    """The admin of a test project as an Actor (see `admin_key`)."""
    from tuneloop.governance import principals

    return principals.authenticate(project.store, admin_key(project))


PROJECT_CONFIG = """\
version: 1
task:
  name: flywheel-test
  system_prompt: You answer support questions briefly.
latency: {p95_ms: 1000, ttft_ms: 300}
variants:
  - name: base
  - name: candidate
    prompt: You answer very briefly.
privacy:
  retention_days: {1: 365, 2: 30}
"""


def open_project(root: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
                 config: str = PROJECT_CONFIG) -> Project:
    """A project with `config` as its tuneloop.yaml (by default two variants, base and
    candidate) whose store is on the given backend."""
    from tuneloop import Project

    if database_url.startswith("postgres"):
        monkeypatch.setenv("TUNELOOP_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    root.mkdir(parents=True, exist_ok=True)
    (root / "tuneloop.yaml").write_text(config, encoding="utf-8")
    Project.init(root).close()
    return Project.open(root)


@pytest.fixture
def project_config() -> str:
    """The tuneloop.yaml of the `project` fixture; a test module overrides this fixture to
    give its project other settings."""
    return PROJECT_CONFIG


@pytest.fixture
def project(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
            project_config: str) -> Iterator[Project]:
    """An open project on the parametrised backend (`project_config` as its configuration),
    closed after the test."""
    opened = open_project(tmp_path / "proj", database_url, monkeypatch, project_config)
    yield opened
    opened.close()


KB_CONFIG = """
version: 1
task: {name: rag-test}
sources:
  - {name: handbook, path: handbook, kind: documents, tier: 1}
  - {name: tickets, path: tickets, kind: documents, tier: 2}
knowledge_base:
  sources: [handbook, tickets]
  chunk_tokens: 128
  overlap_tokens: 16
"""
HANDBOOK = {
    "refunds.md": "# Refund policy\n\nAnnual plans are refunded within 30 days of purchase.\n",
    "linux.md": "# Linux install\n\nRaise the inotify watch limit with sysctl when sync is slow.\n",
    "sso.md": "# Single sign-on\n\nSAML needs the identity provider metadata URL.\n",
}
TICKETS = {
    "t1.md": "# Ticket 1\n\nAcme Corp asked for a refund of their annual plan after 40 days.\n",
    "t2.md": "# Ticket 2\n\nGlobex cannot sync: the inotify watch limit was reached.\n",
}


def write_files(folder: Path, files: dict[str, str]) -> None:
    """Write `files` (name -> text) into `folder`, made if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def kb_dir(project_dir: Path) -> Path:
    """The initialised project folder with a knowledge base: a Tier 1 handbook (three
    documents) and Tier 2 tickets (two), declared in its tuneloop.yaml (`KB_CONFIG`)."""
    (project_dir / "tuneloop.yaml").write_text(KB_CONFIG, encoding="utf-8")
    write_files(project_dir / "handbook", HANDBOOK)
    write_files(project_dir / "tickets", TICKETS)
    return project_dir


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run the real `tuneloop` command in a subprocess, as a user would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tuneloop", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
    )
