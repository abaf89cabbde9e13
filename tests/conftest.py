"""Shared fixtures: a store on SQLite and (when the CI's server is up) on PostgreSQL, projects,
and principals in each role."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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
