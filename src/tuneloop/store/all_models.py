"""Imports every module that declares tables, so `Base.metadata` knows the whole schema.

A stage that adds tables adds its module here and a migration in `migrations/versions/`.
"""

from tuneloop.store import models  # noqa: F401
from tuneloop.store import evals  # noqa: F401
from tuneloop.store import runs  # noqa: F401
from tuneloop.store import datasets  # noqa: F401
from tuneloop.store import serving  # noqa: F401
