"""Full-text search over turn texts (the review desk's and ``moments logs``' text filter).

SQLite: an FTS5 index ``turn_fts`` over ``turn.text`` (external content, porter stemming, diacritics folded), kept in
step by triggers and filled from the existing turns. PostgreSQL: a GIN index on ``to_tsvector('english', text)``.
Neither is a model table: :data:`agent.store.textsearch.SEARCH_OBJECTS` names them so that schema comparisons skip
them. The query side is :class:`agent.store.textsearch.TurnTextMatch`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SQLITE_UP = [
    ("CREATE VIRTUAL TABLE turn_fts USING fts5(text, content='turn', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')"),
    ("CREATE TRIGGER turn_fts_insert AFTER INSERT ON turn BEGIN "
    "INSERT INTO turn_fts(rowid, text) VALUES (new.id, new.text); END"),
    ("CREATE TRIGGER turn_fts_delete AFTER DELETE ON turn BEGIN "
    "INSERT INTO turn_fts(turn_fts, rowid, text) VALUES ('delete', old.id, old.text); END"),
    ("CREATE TRIGGER turn_fts_update AFTER UPDATE OF text ON turn BEGIN "
    "INSERT INTO turn_fts(turn_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO turn_fts(rowid, text) VALUES (new.id, new.text); END"),
    "INSERT INTO turn_fts(turn_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS turn_fts_update", "DROP TRIGGER IF EXISTS turn_fts_delete",
               "DROP TRIGGER IF EXISTS turn_fts_insert", "DROP TABLE IF EXISTS turn_fts"]
POSTGRES_UP = ["CREATE INDEX ix_turn_text_fts ON turn USING gin (to_tsvector('english', text))"]
POSTGRES_DOWN = ["DROP INDEX IF EXISTS ix_turn_text_fts"]


def _run(sqlite: list[str], postgres: list[str]) -> None:
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": sqlite, "postgresql": postgres}.get(dialect, []):
        op.execute(statement)


def upgrade() -> None:
    _run(SQLITE_UP, POSTGRES_UP)


def downgrade() -> None:
    _run(SQLITE_DOWN, POSTGRES_DOWN)
