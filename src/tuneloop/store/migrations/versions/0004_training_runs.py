"""training_runs: runs (train, sweep, trial) and their per-step metrics

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tuneloop.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("runs",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("parent_id", sa.Integer(), nullable=True),
    sa.Column("actor", sa.String(length=128), nullable=False),
    sa.Column("params", sa.JSON(), nullable=False),
    sa.Column("dataset_version", sa.String(length=160), nullable=False),
    sa.Column("base_model", sa.Text(), nullable=False),
    sa.Column("output_model", sa.String(length=160), nullable=True),
    sa.Column("output_dir", sa.Text(), nullable=False),
    sa.Column("tier", sa.Integer(), nullable=False),
    sa.Column("approvals", sa.JSON(), nullable=False),
    sa.Column("summary", sa.JSON(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(["parent_id"], ["runs.id"], name=op.f("fk_runs_parent_id_runs")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_runs"))
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_status"), ["status"], unique=False)

    op.create_table("run_metrics",
    sa.Column("run_id", sa.Integer(), nullable=False),
    sa.Column("step", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(length=64), nullable=False),
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_metrics_run_id_runs"),
                            ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("run_id", "step", "name", name=op.f("pk_run_metrics"))
    )


def downgrade() -> None:
    op.drop_table("run_metrics")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_status"))
        batch_op.drop_index(batch_op.f("ix_runs_parent_id"))
        batch_op.drop_index(batch_op.f("ix_runs_kind"))
    op.drop_table("runs")
