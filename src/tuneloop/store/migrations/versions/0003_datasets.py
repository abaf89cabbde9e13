"""datasets: the index of immutable dataset versions

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tuneloop.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("dataset_versions",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(length=64), nullable=False),
    sa.Column("version_id", sa.String(length=64), nullable=False),
    sa.Column("tier", sa.Integer(), nullable=False),
    sa.Column("roots", sa.JSON(), nullable=False),
    sa.Column("approvals", sa.JSON(), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("counts", sa.JSON(), nullable=False),
    sa.Column("created_by", sa.String(length=128), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
    sa.UniqueConstraint("name", "version_id", name="uq_dataset_versions_name_id")
    )
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_versions_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_versions_name"))
    op.drop_table("dataset_versions")
