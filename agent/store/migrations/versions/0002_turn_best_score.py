"""Turn.best_score: the best retrieval score of the turn's passages, indexed, for "weak retrieval" queries.

Backfilled from the passages already stored, so an old database answers the new queries at once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("turn", sa.Column("best_score", sa.Float(), nullable=True))
    op.create_index("ix_turn_best_score", "turn", ["best_score"])
    op.execute(
        "UPDATE turn SET best_score = "
        "(SELECT MAX(retrieved_passage.score) FROM retrieved_passage WHERE retrieved_passage.turn_id = turn.id)"
    )


def downgrade() -> None:
    op.drop_index("ix_turn_best_score", table_name="turn")
    op.drop_column("turn", "best_score")  # a native ALTER TABLE on SQLite >= 3.35, no table copy
