"""Imports every module that declares tables, so `Base.metadata` knows the whole schema.

A stage that adds tables adds its module here and a migration in `migrations/versions/`.
"""

from tuneloop.store import (
    datasets,  # noqa: F401
    evals,  # noqa: F401
    flywheel,  # noqa: F401
    models,  # noqa: F401
    rag,  # noqa: F401
    registry,  # noqa: F401
    routing,  # noqa: F401
    runs,  # noqa: F401
    serving,  # noqa: F401
)
