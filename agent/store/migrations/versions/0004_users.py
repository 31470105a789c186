"""app_user and api_key: who may use the app, and who wrote each piece of feedback.

One row per user: a unique name, a role (operator, reviewer or admin) and an argon2 password hash (never the
password). One row per API key of an embedding app: its public id, the SHA-256 of its random secret (never the
secret), a label, the admin who made it, its channel (``api``) and when it was revoked. Feedback gains ``author``: the
signed-in user (or key) who gave it (None for older rows and unauthenticated runs).

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
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_key_key_id", "api_key", ["key_id"], unique=True)
    op.add_column("feedback", sa.Column("author", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("feedback", "author")
    op.drop_table("api_key")
    op.drop_table("app_user")
