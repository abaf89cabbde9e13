"""models_registry: the models table (fine-tuned adapters, merged models, GGUF exports, endpoints)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tuneloop.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("models",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(length=128), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("format", sa.String(length=32), nullable=False),
    sa.Column("tier", sa.Integer(), nullable=False),
    sa.Column("roots", sa.JSON(), nullable=False),
    sa.Column("base_model", sa.String(length=256), nullable=False),
    sa.Column("lineage", sa.JSON(), nullable=False),
    sa.Column("created_by", sa.String(length=128), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
    sa.UniqueConstraint("name", name=op.f("uq_models_name"))
    )


def downgrade() -> None:
    op.drop_table("models")
