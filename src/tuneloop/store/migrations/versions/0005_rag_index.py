"""rag_index: knowledge-base documents, chunks with their embeddings, the index generation.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tuneloop.store.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rag_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("doc_id", sa.String(length=512), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("n_chunks", sa.Integer(), nullable=False),
        sa.Column("indexed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rag_documents")),
        sa.UniqueConstraint("doc_id", name=op.f("uq_rag_documents_doc_id")),
    )
    with op.batch_alter_table("rag_documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rag_documents_source"), ["source"], unique=False)

    op.create_table(
        "rag_index_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("embedding_model", sa.String(length=128), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rag_index_state")),
    )
    op.create_table(
        "rag_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("chunk_id", sa.String(length=600), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("heading", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("n_tokens", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["document_id"], ["rag_documents.id"],
                                name=op.f("fk_rag_chunks_document_id_rag_documents"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rag_chunks")),
        sa.UniqueConstraint("chunk_id", name=op.f("uq_rag_chunks_chunk_id")),
    )
    with op.batch_alter_table("rag_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rag_chunks_document_id"), ["document_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_rag_chunks_source"), ["source"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rag_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rag_chunks_source"))
        batch_op.drop_index(batch_op.f("ix_rag_chunks_document_id"))
    op.drop_table("rag_chunks")
    op.drop_table("rag_index_state")
    with op.batch_alter_table("rag_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rag_documents_source"))
    op.drop_table("rag_documents")
