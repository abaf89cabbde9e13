"""Training runs and their per-step metrics: what was trained, from what, how it went.

A `Run` row is written when a run starts and updated as it goes (status, output model, error),
so a run killed with `kill -9` still shows up as `running` with its last checkpoint on disk and
can be resumed. `RunMetric` holds one number per (run, step, name): loss, learning rate,
tokens/s, validation loss, parity agreement.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tuneloop.store.models import Base, utcnow

RUN_STATUSES = ("running", "completed", "failed", "interrupted")


class Run(Base):
    """A training run (`kind="train"`), a sweep (`"sweep"`) or one trial of a sweep (`"trial"`)."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="train", index=True)
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), default=None, index=True)
    actor: Mapped[str] = mapped_column(String(128), default="")
    # every hyperparameter after config + overrides were merged: enough to re-run or resume
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dataset_version: Mapped[str] = mapped_column(String(160), default="")
    base_model: Mapped[str] = mapped_column(Text, default="")
    output_model: Mapped[str | None] = mapped_column(String(160), default=None)
    output_dir: Mapped[str] = mapped_column(Text, default="")
    tier: Mapped[int] = mapped_column(Integer, default=1)
    approvals: Mapped[list[str]] = mapped_column(JSON, default=list)
    # final figures: train/eval loss, tokens/s, parity agreement, sweep best trial ...
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    def __repr__(self) -> str:
        return f"Run({self.id}, kind={self.kind!r}, status={self.status!r})"


class RunMetric(Base):
    """One metric value of one run at one optimizer step."""

    __tablename__ = "run_metrics"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
