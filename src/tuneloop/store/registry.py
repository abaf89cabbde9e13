"""The model registry table: every model tuneloop can serve, with its tier and lineage.

Base models from the config need no row (they are resolved from `tuneloop.yaml`); fine-tuned
adapters, merged models, GGUF exports and named endpoints are registered here by the stage that
makes them, with what they were made from (dataset versions, run id, approvals).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tuneloop.store.models import Base, utcnow


class ModelRow(Base):
    """One registered model: where it is, what it is, its tier and where it came from."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # base | adapter | merged | gguf | endpoint
    path: Mapped[str] = mapped_column(Text)  # folder, file or base URL
    format: Mapped[str] = mapped_column(String(32))  # safetensors | gguf | openai
    tier: Mapped[int] = mapped_column(Integer)
    roots: Mapped[list[str]] = mapped_column(JSON)
    base_model: Mapped[str] = mapped_column(String(256), default="")
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ModelExport(Base):
    """One model written out of the project by `tuneloop models export` (a GGUF file), with the
    registered models and dataset versions it was made from as known at the time.

    Erasure lists the exports made from a subject's data as copies that left the project.
    """

    __tablename__ = "model_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)  # the model folder that was exported
    path: Mapped[str] = mapped_column(Text)  # the file written
    format: Mapped[str] = mapped_column(String(16))  # gguf
    quantization: Mapped[str] = mapped_column(String(16))
    models: Mapped[list[str]] = mapped_column(JSON)  # registered models at or around `source`
    dataset_versions: Mapped[list[str]] = mapped_column(JSON)  # what those were trained on
    tier: Mapped[int] = mapped_column(Integer, default=1)
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
