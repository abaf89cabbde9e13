"""The Alembic migrations build exactly the schema the models declare, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tuneloop.store import Store, all_models  # noqa: F401
from tuneloop.store import migrate as store_migrate
from tuneloop.store.models import Base


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def test_store_is_at_the_newest_revision_after_open(store: Store) -> None:
    assert store.current_revision() == store_migrate.head()


def test_reopening_a_migrated_store_is_a_no_op(database_url: str) -> None:
    first = Store(database_url)
    revision = first.current_revision()
    first.dispose()
    again = Store(database_url)
    assert again.current_revision() == revision
    again.dispose()
