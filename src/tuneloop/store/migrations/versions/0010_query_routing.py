"""query routing: routers, routed variants, and the predicted slice of each logged request

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tuneloop.store.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "query_routers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("dataset_version", sa.String(length=160), nullable=False),
        sa.Column("slice_field", sa.String(length=128), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("roots", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_query_routers")),
        sa.UniqueConstraint("name", "version", name="uq_query_routers_name_version"),
    )
    with op.batch_alter_table("query_routers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_query_routers_name"), ["name"], unique=False)
    op.create_table(
        "routed_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("router", sa.String(length=80), nullable=False),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("fallback", sa.String(length=64), nullable=False),
        sa.Column("min_confidence", sa.Float(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routed_variants")),
        sa.UniqueConstraint("name", name=op.f("uq_routed_variants_name")),
    )
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("routed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("predicted_slice", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("slice_confidence", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_request_logs_predicted_slice"),
                              ["predicted_slice"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_logs_predicted_slice"))
        batch_op.drop_column("slice_confidence")
        batch_op.drop_column("predicted_slice")
        batch_op.drop_column("routed_by")
    op.drop_table("routed_variants")
    with op.batch_alter_table("query_routers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_query_routers_name"))
    op.drop_table("query_routers")
