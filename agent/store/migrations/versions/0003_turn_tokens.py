"""turn_tokens: what an answer needs to be explained again without the model's 2^k passes.

One row per answer with a prompt: the prompt's token ids and each passage's token span in it, the reply's token ids
and texts, and the attribution's subset table (float16, compressed ``.npz``; see
:func:`agent.attribution.rescoring.pack_table`). Older answers simply have no row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "turn_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("turn_id", sa.Integer(), sa.ForeignKey("turn.id", ondelete="CASCADE"), nullable=False),
        sa.Column("prompt_ids", sa.JSON(), nullable=False),
        sa.Column("passage_spans", sa.JSON(), nullable=False),
        sa.Column("reply_ids", sa.JSON(), nullable=False),
        sa.Column("reply_texts", sa.JSON(), nullable=False),
        sa.Column("subsets", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_turn_tokens_turn_id", "turn_tokens", ["turn_id"], unique=True)


def downgrade() -> None:
    op.drop_table("turn_tokens")
