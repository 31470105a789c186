"""The first schema: conversations, turns, retrieved passages, explanations, feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("operator", sa.String(255), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    for column in ("channel", "operator", "status", "created_at", "updated_at"):
        op.create_index(f"ix_conversation_{column}", "conversation", [column])

    op.create_table(
        "turn",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("conversation_id", sa.Uuid(), sa.ForeignKey("conversation.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency", sa.JSON(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("reply_to_id", sa.Integer(), sa.ForeignKey("turn.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("conversation_id", "index", name="uq_turn_conversation_index"),
    )
    for column in ("status", "reply_to_id", "created_at"):
        op.create_index(f"ix_turn_{column}", "turn", [column])

    op.create_table(
        "retrieved_passage",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("turn_id", sa.Integer(), sa.ForeignKey("turn.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("doc_id", sa.String(255), nullable=False),
        sa.Column("passage_id", sa.String(255), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.UniqueConstraint("turn_id", "rank", name="uq_retrieved_passage_turn_rank"),
    )
    op.create_index("ix_retrieved_passage_doc_id", "retrieved_passage", ["doc_id"])

    op.create_table(
        "explanation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("turn_id", sa.Integer(), sa.ForeignKey("turn.id", ondelete="CASCADE"), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("grounded_share", sa.Float(), nullable=True),
        sa.Column("top_doc_id", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_explanation_turn_id", "explanation", ["turn_id"], unique=True)
    op.create_index("ix_explanation_confidence", "explanation", ["confidence"])
    op.create_index("ix_explanation_top_doc_id", "explanation", ["top_doc_id"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("turn_id", sa.Integer(), sa.ForeignKey("turn.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("rating", sa.String(8), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("corrected_answer", sa.Text(), nullable=True),
        sa.Column("reviewed", sa.Boolean(), nullable=False),
        sa.Column("reviewer", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
    )
    for column in ("turn_id", "rating", "reviewed", "created_at"):
        op.create_index(f"ix_feedback_{column}", "feedback", [column])


def downgrade() -> None:
    for table in ("feedback", "explanation", "retrieved_passage", "turn", "conversation"):
        op.drop_table(table)
