"""Physical purge after deleting rows: deleted text must not survive in the database's files.

SQLite: the store runs with `secure_delete=ON` (freed pages are zeroed); `VACUUM` then rewrites the
file without free pages and `wal_checkpoint(TRUNCATE)` empties the write-ahead log, which still
holds copies of the pages as they were before the delete.

PostgreSQL: a delete leaves dead tuples in the table's files until they are vacuumed; `VACUUM
FULL` rewrites the touched tables (and their TOAST) into new files and unlinks the old ones.
What no command here can reach, and the output says so: WAL segments not yet recycled, WAL
archives, base backups and replicas' copies; they age out with the backup retention policy.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from tuneloop.store import Store

POSTGRES_LIMITS = (
    "PostgreSQL keeps copies of changed pages in WAL segments until they are recycled, and in WAL "
    "archives, base backups and replicas; those age out under the backup retention policy and "
    "are beyond what this command can purge"
)


@dataclass
class PurgeReport:
    """What was done to the database files, and what could not be done."""

    actions: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)


def purge(store: Store, tables: list[str]) -> PurgeReport:
    """Rewrite the database so deleted rows of `tables` leave no trace in its files."""
    if store.dialect == "sqlite":
        return _sqlite(store)
    if store.dialect == "postgresql":
        return _postgres(store, tables)
    return PurgeReport(limits=[f"no physical purge known for {store.dialect}"])


def _sqlite(store: Store) -> PurgeReport:
    report = PurgeReport()
    raw = store.engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        # The store's connections run in autocommit mode (BEGIN is issued explicitly), so VACUUM,
        # which cannot run inside a transaction, runs as is.
        conn.execute("PRAGMA secure_delete=ON")
        try:
            conn.execute("VACUUM")
        except sqlite3.OperationalError as exc:
            # Another process kept the database busy past the timeout; the rows are gone and
            # their pages zeroed (secure_delete), but the file keeps its free pages for now.
            report.limits.append(f"VACUUM could not run ({exc}); stop the server and run the "
                                 "same `tuneloop erase` again (it is safe to repeat)")
            return report
        report.actions.append("VACUUM (file rewritten without free pages)")
        busy, _log_pages, moved = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            report.limits.append(
                "the write-ahead log could not be truncated because another process is reading "
                "the database; stop the server and run the same `tuneloop erase` again (it is "
                "safe to repeat: it finds nothing more and purges the files)")
        else:
            report.actions.append(f"write-ahead log checkpointed and truncated ({moved} pages)")
    finally:
        raw.close()
    # Pooled connections keep pages cached; dropping them means nothing stale is written back.
    store.engine.dispose()
    return report


def _postgres(store: Store, tables: list[str]) -> PurgeReport:
    report = PurgeReport()
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            # Table names come from our own models, never from input. ANALYZE replaces the
            # column statistics, whose most-common-value samples may quote deleted rows.
            conn.exec_driver_sql(f'VACUUM (FULL, ANALYZE) "{table}"')
        report.actions.append(f"VACUUM FULL and ANALYZE of {', '.join(tables)}")
        try:
            conn.exec_driver_sql("VACUUM FULL pg_catalog.pg_statistic")
            report.actions.append("VACUUM FULL of the statistics catalog")
        except Exception:  # owner or superuser only; old samples then age out with autovacuum
            report.limits.append("the statistics catalog (pg_statistic) could not be vacuumed "
                                 "by this user; replaced statistics linger until autovacuum")
        try:
            conn.exec_driver_sql("CHECKPOINT")
            report.actions.append("CHECKPOINT")
        except Exception:  # needs superuser or pg_checkpoint; the purge above stands without it
            report.limits.append("CHECKPOINT not allowed for this database user")
    report.limits.append(POSTGRES_LIMITS)
    return report
