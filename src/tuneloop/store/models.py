"""SQLAlchemy models of the foundation: principals, API keys, sources, approvals, audit events.

Every later stage adds its own tables in a module of this package and a migration beside them;
nothing creates tables outside Alembic.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Now, timezone-aware, in UTC: the only clock the store uses."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use tuneloop.store.utcnow()")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


class Principal(Base):
    """A person or service that acts: role decides what it may do, audience what it is served."""

    __tablename__ = "principals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="person")  # person | service
    role: Mapped[str] = mapped_column(String(16))  # developer | privacy | admin
    audience: Mapped[str] = mapped_column(String(16))  # internal | public
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    keys: Mapped[list[ApiKey]] = relationship(back_populates="principal")

    def __repr__(self) -> str:
        return f"Principal({self.name!r}, role={self.role!r}, audience={self.audience!r})"


class ApiKey(Base):
    """A bearer key; only its SHA-256 is stored, the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    principal: Mapped[Principal] = relationship(back_populates="keys")


class Source(Base):
    """A registered file or folder of records or documents, with its tier."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # records | documents
    format: Mapped[str] = mapped_column(String(16), default="auto")
    tier: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str] = mapped_column(String(128), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    registered_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Approval(Base):
    """A privacy-team decision on a request to use Tier 2 data."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    scope: Mapped[list[str]] = mapped_column(JSON)  # resource refs such as "source:tickets"
    uses: Mapped[list[str]] = mapped_column(JSON)
    # who may rely on it: "principal:NAME" (the requester by default) or "audience:internal"
    beneficiary: Mapped[str] = mapped_column(String(160))
    expires_at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("principals.id"), default=None)
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    requester: Mapped[Principal] = relationship(foreign_keys=[requester_id])
    decided_by: Mapped[Principal | None] = relationship(foreign_keys=[decided_by_id])


class AuditEvent(Base):
    """One link of the append-only, hash-chained audit log."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    ts: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(Text, default="")
    tier: Mapped[int | None] = mapped_column(Integer, default=None)
    details: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON, hashed as is
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    @property
    def details_dict(self) -> dict[str, Any]:
        return json.loads(self.details)


class AuditHead(Base):
    """The single row that serialises appends to the audit chain (locked while appending)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
