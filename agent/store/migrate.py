"""Alembic, configured in code: the migration scripts live in ``agent/store/migrations`` and ship with the package.

There is no ``alembic.ini``. :func:`upgrade` runs inside the caller's transaction (the store opens it with the write
lock on SQLite and a PostgreSQL advisory lock, so replicas starting together upgrade one after the other).

A new revision: add ``agent/store/migrations/versions/NNNN_what.py`` by hand (copy the previous one: ``revision =
"NNNN"``, ``down_revision`` = the previous), change ``agent/store/models.py`` to match, and extend
``tests/test_store_migrations.py``. Never recreate a table on SQLite ("batch" mode) while foreign keys are on: dropping
a parent table cascades to its children.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Key of the PostgreSQL advisory lock held while the schema is upgraded ("moments" in ASCII).
ADVISORY_LOCK_KEY = 0x6D6F6D656E7473


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration for the store's scripts, bound to an open ``connection`` (or a ``url``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of Moments knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None for an empty database)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` inside the connection's transaction (serialised across processes)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    command.upgrade(alembic_config(connection), revision)


def downgrade(connection: Connection, revision: str) -> None:
    """Downgrade the schema to ``revision`` (for tests and emergencies; data in dropped columns is lost)."""
    command.downgrade(alembic_config(connection), revision)
