"""serving: rollouts, rollout history, request logs, feedback

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tuneloop.store.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("rollouts",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("alias", sa.String(length=64), nullable=False),
    sa.Column("variant", sa.String(length=64), nullable=False),
    sa.Column("stage", sa.String(length=16), nullable=False),
    sa.Column("percent", sa.Float(), nullable=False),
    sa.Column("updated_by", sa.String(length=128), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    sa.UniqueConstraint("alias", "variant", name="uq_rollouts_alias_variant"),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollouts_alias"), ["alias"], unique=False)

    op.create_table("rollout_history",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("alias", sa.String(length=64), nullable=False),
    sa.Column("action", sa.String(length=16), nullable=False),
    sa.Column("variant", sa.String(length=64), nullable=False),
    sa.Column("before", sa.JSON(), nullable=False),
    sa.Column("after", sa.JSON(), nullable=False),
    sa.Column("actor", sa.String(length=128), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("rolled_back", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_history")),
    )
    with op.batch_alter_table("rollout_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollout_history_alias"), ["alias"], unique=False)

    op.create_table("request_logs",
    sa.Column("id", sa.String(length=40), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("principal", sa.String(length=128), nullable=True),
    sa.Column("audience", sa.String(length=16), nullable=True),
    sa.Column("model", sa.String(length=128), nullable=False),
    sa.Column("variant", sa.String(length=64), nullable=True),
    sa.Column("shadow_of", sa.String(length=40), nullable=True),
    sa.Column("tier", sa.Integer(), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("stream", sa.Boolean(), nullable=False),
    sa.Column("prompt", sa.JSON(), nullable=False),
    sa.Column("output", sa.Text(), nullable=False),
    sa.Column("redactions", sa.JSON(), nullable=False),
    sa.Column("chunk_ids", sa.JSON(), nullable=False),
    sa.Column("finish_reason", sa.String(length=16), nullable=False),
    sa.Column("prompt_tokens", sa.Integer(), nullable=False),
    sa.Column("completion_tokens", sa.Integer(), nullable=False),
    sa.Column("ttft_ms", sa.Float(), nullable=True),
    sa.Column("total_ms", sa.Float(), nullable=False),
    sa.Column("replica", sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_request_logs")),
    )
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_request_logs_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_request_logs_principal"), ["principal"], unique=False)
        batch_op.create_index(batch_op.f("ix_request_logs_variant"), ["variant"], unique=False)
        batch_op.create_index(batch_op.f("ix_request_logs_shadow_of"), ["shadow_of"], unique=False)

    op.create_table("feedback",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("request_id", sa.String(length=40), nullable=False),
    sa.Column("principal", sa.String(length=128), nullable=False),
    sa.Column("rating", sa.Integer(), nullable=True),
    sa.Column("comment", sa.Text(), nullable=False),
    sa.Column("corrected", sa.Text(), nullable=True),
    sa.Column("redactions", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(["request_id"], ["request_logs.id"],
                            name=op.f("fk_feedback_request_id_request_logs")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_request_id"), ["request_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_request_id"))
    op.drop_table("feedback")
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        for column in ("shadow_of", "variant", "principal", "created_at"):
            batch_op.drop_index(batch_op.f(f"ix_request_logs_{column}"))
    op.drop_table("request_logs")
    with op.batch_alter_table("rollout_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollout_history_alias"))
    op.drop_table("rollout_history")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollouts_alias"))
    op.drop_table("rollouts")
