"""foundation: principals, keys, sources, approvals, audit

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 09:33:02.146895
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tuneloop.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("audit_events",
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(length=128), nullable=False),
    sa.Column("action", sa.String(length=64), nullable=False),
    sa.Column("target", sa.Text(), nullable=False),
    sa.Column("tier", sa.Integer(), nullable=True),
    sa.Column("details", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(length=64), nullable=False),
    sa.Column("hash", sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events"))
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)

    op.create_table("audit_head",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("hash", sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head"))
    )
    op.create_table("principals",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(length=128), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("audience", sa.String(length=16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("disabled_at", UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_principals")),
    sa.UniqueConstraint("name", name=op.f("uq_principals_name"))
    )
    op.create_table("sources",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(length=64), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("format", sa.String(length=16), nullable=False),
    sa.Column("tier", sa.Integer(), nullable=False),
    sa.Column("owner", sa.String(length=128), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("registered_by", sa.String(length=128), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
    sa.UniqueConstraint("name", name=op.f("uq_sources_name"))
    )
    op.create_table("api_keys",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("principal_id", sa.Integer(), nullable=False),
    sa.Column("prefix", sa.String(length=32), nullable=False),
    sa.Column("key_hash", sa.String(length=64), nullable=False),
    sa.Column("label", sa.String(length=128), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(["principal_id"], ["principals.id"], name=op.f("fk_api_keys_principal_id_principals")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix"))
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_principal_id"), ["principal_id"], unique=False)

    op.create_table("approvals",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("requester_id", sa.Integer(), nullable=False),
    sa.Column("purpose", sa.Text(), nullable=False),
    sa.Column("scope", sa.JSON(), nullable=False),
    sa.Column("uses", sa.JSON(), nullable=False),
    sa.Column("beneficiary", sa.String(length=160), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("decided_by_id", sa.Integer(), nullable=True),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(["decided_by_id"], ["principals.id"], name=op.f("fk_approvals_decided_by_id_principals")),
    sa.ForeignKeyConstraint(["requester_id"], ["principals.id"], name=op.f("fk_approvals_requester_id_principals")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals"))
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approvals_requester_id"), ["requester_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_approvals_status"), ["status"], unique=False)

    # The audit chain"s head: the row every append locks.
    op.bulk_insert(sa.table("audit_head", sa.column("id", sa.Integer), sa.column("seq", sa.Integer),
                            sa.column("hash", sa.String)), [{"id": 1, "seq": 0, "hash": "0" * 64}])



def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approvals_status"))
        batch_op.drop_index(batch_op.f("ix_approvals_requester_id"))

    op.drop_table("approvals")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_principal_id"))

    op.drop_table("api_keys")
    op.drop_table("sources")
    op.drop_table("principals")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))

    op.drop_table("audit_events")
