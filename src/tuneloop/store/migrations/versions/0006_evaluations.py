"""evaluations: evaluation runs and their per-example outputs

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tuneloop.store.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("eval_runs",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("actor", sa.String(length=128), nullable=False),
    sa.Column("dataset_version", sa.String(length=160), nullable=False),
    sa.Column("split", sa.String(length=16), nullable=False),
    sa.Column("variants", sa.JSON(), nullable=False),
    sa.Column("concurrency", sa.Integer(), nullable=False),
    sa.Column("tier", sa.Integer(), nullable=False),
    sa.Column("approvals", sa.JSON(), nullable=False),
    sa.Column("summary", sa.JSON(), nullable=False),
    sa.Column("report_dir", sa.Text(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_runs"))
    )
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_runs_status"), ["status"], unique=False)

    op.create_table("eval_outputs",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("run_id", sa.Integer(), nullable=False),
    sa.Column("variant", sa.String(length=64), nullable=False),
    sa.Column("record_id", sa.String(length=128), nullable=False),
    sa.Column("slice", sa.String(length=128), nullable=True),
    sa.Column("prompt", sa.JSON(), nullable=False),
    sa.Column("reference", sa.Text(), nullable=False),
    sa.Column("output", sa.Text(), nullable=False),
    sa.Column("finish_reason", sa.String(length=16), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("ttft_s", sa.Float(), nullable=False),
    sa.Column("total_s", sa.Float(), nullable=False),
    sa.Column("prompt_tokens", sa.Integer(), nullable=False),
    sa.Column("completion_tokens", sa.Integer(), nullable=False),
    sa.Column("scores", sa.JSON(), nullable=False),
    sa.Column("citations", sa.JSON(), nullable=False),
    sa.Column("chunk_ids", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(["run_id"], ["eval_runs.id"],
                            name=op.f("fk_eval_outputs_run_id_eval_runs"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_outputs")),
    sa.UniqueConstraint("run_id", "variant", "record_id", name="uq_eval_outputs_run_id")
    )
    with op.batch_alter_table("eval_outputs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_outputs_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_table("eval_outputs")
    op.drop_table("eval_runs")
