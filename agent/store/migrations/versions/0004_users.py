"""app_user: the people (and their roles) who may use the app, and who wrote each piece of feedback.

One row per user: a unique name, a role (operator, reviewer or admin) and an argon2 password hash (never the
password). Feedback gains ``author``: the signed-in user who gave it (None for older rows and unauthenticated runs).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_app_user_name", "app_user", ["name"], unique=True)
    op.add_column("feedback", sa.Column("author", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("feedback", "author")
    op.drop_table("app_user")
