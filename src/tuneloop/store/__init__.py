"""The store: every concept of the loop in one database (SQLite by default, PostgreSQL by URL)."""

from tuneloop.store.db import DATABASE_URL_ENV, Store, normalise_url
from tuneloop.store.models import (
    ApiKey,
    Approval,
    AuditEvent,
    AuditHead,
    Base,
    Principal,
    Source,
    utcnow,
)

__all__ = [
    "DATABASE_URL_ENV",
    "ApiKey",
    "Approval",
    "AuditEvent",
    "AuditHead",
    "Base",
    "Principal",
    "Source",
    "Store",
    "normalise_url",
    "utcnow",
]
