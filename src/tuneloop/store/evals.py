"""Evaluation runs and every output they produced, with its timings, tokens and metric scores.

An `EvalRun` row is written when a run starts and completed when the report is written, so a run
that died half-way still shows up (status `running` or `failed`) with the outputs it stored. One
`EvalOutput` row per (run, variant, example) keeps what the variant answered, the reference, the
latency the caller felt and each metric's score, so any comparison can be recomputed later.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneloop.store.models import Base, utcnow

EVAL_STATUSES = ("running", "completed", "failed")


class EvalRun(Base):
    """One evaluation of one or more variants on one dataset version's test split."""

    __tablename__ = "eval_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    actor: Mapped[str] = mapped_column(String(128), default="")
    dataset_version: Mapped[str] = mapped_column(String(160), default="")
    split: Mapped[str] = mapped_column(String(16), default="test")
    variants: Mapped[list[str]] = mapped_column(JSON, default=list)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    tier: Mapped[int] = mapped_column(Integer, default=1)
    approvals: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # per-variant metrics and latency, gates, comparisons: see evaluate.run.EvalResult.summary
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report_dir: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    def __repr__(self) -> str:
        return f"EvalRun({self.id}, status={self.status!r}, variants={self.variants!r})"


class EvalOutput(Base):
    """What one variant answered to one example, how long it took, and how it scored."""

    __tablename__ = "eval_outputs"
    __table_args__ = (UniqueConstraint("run_id", "variant", "record_id",
                                       name="uq_eval_outputs_run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"),
                                        index=True)
    variant: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(128))
    slice: Mapped[str | None] = mapped_column(String(128), default=None)
    prompt: Mapped[list[Any]] = mapped_column(JSON, default=list)  # the example's input messages
    reference: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[str] = mapped_column(Text, default="")
    finish_reason: Mapped[str] = mapped_column(String(16), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    ttft_s: Mapped[float] = mapped_column(Float, default=0.0)
    total_s: Mapped[float] = mapped_column(Float, default=0.0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # metric name -> score in [0, 1], or null where the metric does not apply to this example
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    citations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    chunk_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
