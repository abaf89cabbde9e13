"""Opening the store: SQLite in `.tuneloop/` by default, PostgreSQL by URL; migrated on open."""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tuneloop.errors import StoreError

DATABASE_URL_ENV = "TUNELOOP_DATABASE_URL"
BUSY_TIMEOUT_MS = 60_000


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs given without a driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Store:
    """A database handle: sessions, dialect facts, and migrations applied when opened."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalise_url(url)
        self.engine = _create_engine(self.url)
        self._write = sessionmaker(
            self.engine.execution_options(tuneloop_write=True), expire_on_commit=False
        )
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.upgrade()

    @classmethod
    def for_project(cls, state_dir: Path, *, migrate: bool = True) -> Store:
        """The project's store: `TUNELOOP_DATABASE_URL` if set, else SQLite in `state_dir`."""
        url = os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{state_dir / 'tuneloop.db'}"
        return cls(url, migrate=migrate)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def sqlite_path(self) -> Path | None:
        if self.dialect != "sqlite":
            return None
        database = make_url(self.url).database
        return Path(database) if database and database != ":memory:" else None

    @contextlib.contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on error.

        On SQLite a writing session takes the write lock at BEGIN (IMMEDIATE), so concurrent
        writers queue on the busy timeout instead of failing half-way through.
        """
        factory = self._write if write else self._read
        session = factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to `revision`; safe when several processes open the store at once."""
        from tuneloop.store import migrate

        try:
            with self._migration_lock():
                migrate.upgrade(self.engine, revision)
        except OperationalError as exc:
            raise StoreError(f"cannot open the store at {self.safe_url}: {exc.orig}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate the store at {self.safe_url}: {exc}") from None

    def current_revision(self) -> str | None:
        from tuneloop.store import migrate

        return migrate.current(self.engine)

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect == "sqlite":
            path = self.sqlite_path
            if path is None:
                yield
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(str(path) + ".lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        elif self.dialect == "postgresql":
            key = zlib.crc32(b"tuneloop-migrations")
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        else:
            yield

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise StoreError(
        f"unsupported database {parsed.get_backend_name()!r} in {DATABASE_URL_ENV}",
        hint="use sqlite:///path/to/file.db or postgresql://user@host/db",
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how each transaction starts.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("tuneloop_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
