"""Engines for the conversation store, and what to do when the database pushes back.

SQLite: WAL journal, ``foreign_keys=ON``, a busy timeout, connections usable from any thread; pysqlite's own
transaction handling is switched off so that SQLAlchemy's ``begin`` emits ``BEGIN`` for reads and ``BEGIN IMMEDIATE``
for writes (engines derived with :func:`writer`), which makes writers queue for the lock up front instead of failing
halfway. PostgreSQL: psycopg 3, a connect timeout and pre-ping. :func:`retryable` tells which errors mean "try the
whole transaction again" (SQLite busy/locked, PostgreSQL serialization failures and deadlocks, a lost race for a
unique turn index).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from agent.errors import StoreError
from agent.store.types import json_safe

#: Unique constraints whose violation means a concurrent writer won a race: retry the transaction.
RACE_CONSTRAINTS = frozenset({"uq_turn_conversation_index", "ix_explanation_turn_id"})
_WRITE_OPTION = "moments_write"


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (also for strings SQLAlchemy cannot parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def parse_url(url: str | URL) -> URL:
    """Parse a database URL; ``postgresql://`` and ``postgres://`` mean psycopg 3 (the driver Moments ships)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(
            f"{mask_url(url)!r} is not a database URL; use e.g. sqlite:////path/to/moments.db or "
            "postgresql+psycopg://user:password@host:5432/dbname (MOMENTS_DATABASE_URL)"
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {mask_url(parsed)}: Moments stores conversations in SQLite or "
                         "PostgreSQL (postgresql+psycopg://...)")
    return parsed


def dumps(value: Any) -> str:
    """The JSON serializer of the store's engines (see :func:`agent.store.types.json_safe`)."""
    return json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False)


def make_engine(url: str | URL, *, busy_timeout_s: float = 5.0, connect_timeout_s: int = 5) -> Engine:
    """An engine for ``url`` set up as described in the module docstring. Connects lazily."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            parsed,
            json_serializer=dumps,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            connect_args={"connect_timeout": connect_timeout_s},
        )
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder {folder} for the conversation store {mask_url(parsed)}: "
                             f"{exc.strerror or exc}; set MOMENTS_HOME or MOMENTS_DATABASE_URL to a writable "
                             "place") from exc
    engine = create_engine(
        parsed,
        json_serializer=dumps,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
        # one shared connection for an in-memory database (each connection would see its own empty database)
        **({"poolclass": StaticPool} if in_memory else {"pool_size": 10, "max_overflow": 20}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        # switching to WAL needs a moment of exclusive access: only ask when the file is not in WAL mode yet
        if not in_memory and cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine (same pool) whose transactions take SQLite's write lock at BEGIN."""
    return engine.execution_options(**{_WRITE_OPTION: True})


def retryable(exc: BaseException) -> bool:
    """Whether the failed transaction can simply be run again."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig).lower()
        return "locked" in message or "busy" in message
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):  # serialization failure, deadlock, lock not available
        return True
    if isinstance(exc, IntegrityError):
        diag = getattr(orig, "diag", None)
        constraint = getattr(diag, "constraint_name", None) if diag is not None else None
        return constraint in RACE_CONSTRAINTS
    return False


def refuses_writes(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is there but will not take writes (a read-only SQLite file or folder, a
    full disk, an I/O error, a read-only PostgreSQL transaction or server)."""
    if not isinstance(exc, DBAPIError):
        return False
    if isinstance(exc.orig, sqlite3.OperationalError):
        message = str(exc.orig).lower()
        return any(w in message for w in ("readonly", "read-only", "disk i/o", "database or disk is full"))
    return getattr(exc.orig, "sqlstate", None) in ("25006", "53100")  # read-only transaction, disk full


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (rather than rejecting a statement)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03", "3D000", "28000", "28P01")
    if isinstance(exc.orig, sqlite3.OperationalError):
        return "unable to open" in str(exc.orig).lower()
    # psycopg raises OperationalError without a SQLSTATE when the connection attempt itself fails
    return type(exc.orig).__name__ == "OperationalError"
