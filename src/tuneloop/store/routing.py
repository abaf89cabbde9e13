"""Tables of query-type routing: trained routers (versioned, with lineage) and routed variants.

A router classifies a user's message into one of a dataset's slices (its `slice_field`, e.g. a
ticket's category). A routed variant maps each slice to the variant that serves it best, with a
fallback for messages the router is unsure of; rollouts name it like any variant.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneloop.store.models import Base, utcnow


class QueryRouterRow(Base):
    """One trained router version: where its weights are, its tier and what it was made from."""

    __tablename__ = "query_routers"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_query_routers_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)  # folder with weights.npz and router.json
    dataset_version: Mapped[str] = mapped_column(String(160))
    slice_field: Mapped[str] = mapped_column(String(128))
    labels: Mapped[list[str]] = mapped_column(JSON)
    tier: Mapped[int] = mapped_column(Integer)
    roots: Mapped[list[str]] = mapped_column(JSON)
    # embedding model, classifier, approvals used, validation accuracy, counts per slice
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RoutedVariantRow(Base):
    """A routed variant: a router, a slice -> variant map and a fallback below a confidence."""

    __tablename__ = "routed_variants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    router: Mapped[str] = mapped_column(String(80))  # "name@vN"
    mapping: Mapped[dict[str, str]] = mapped_column(JSON)
    fallback: Mapped[str] = mapped_column(String(64))
    min_confidence: Mapped[float] = mapped_column(Float, default=0.5)
    source: Mapped[str] = mapped_column(Text, default="")  # "eval run #N" or "by hand"
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
