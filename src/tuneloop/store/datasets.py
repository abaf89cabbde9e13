"""The dataset versions table: an index of the immutable folders under `.tuneloop/datasets/`.

The folder's `manifest.json` is the full record (recipe, sources, step counts); this row lets every
stage find a version by name, newest first, and know its tier and Tier 2 roots without opening it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneloop.store.models import Base, utcnow


class DatasetVersionRow(Base):
    """One built dataset version: name, content-hash id, tier, roots, approvals and counts."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("name", "version_id", name="uq_dataset_versions_name_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version_id: Mapped[str] = mapped_column(String(64))
    tier: Mapped[int] = mapped_column(Integer)
    roots: Mapped[list[str]] = mapped_column(JSON)
    approvals: Mapped[list[int]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(Text)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)  # records per split
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DatasetExport(Base):
    """One export of a dataset version: a copy that left tuneloop's control, and who made it.

    Erasure lists the exports of every version that held the subject, since it cannot reach them.
    """

    __tablename__ = "dataset_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_version: Mapped[str] = mapped_column(String(160), index=True)  # name@id
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    tier: Mapped[int] = mapped_column(Integer, default=1)
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
