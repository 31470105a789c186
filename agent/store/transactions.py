"""Transactions against the store's database: one engine, a session per call, retries while the database is busy.

:class:`Database` opens the engine (:mod:`agent.store.db`), upgrades the schema when it opens (refusing a schema
newer than this code knows), and runs each unit of work as one transaction: :meth:`Database.write` commits (with
SQLite's write lock taken at ``BEGIN``), :meth:`Database.read` does not. Contention (SQLite's write lock, PostgreSQL
serialization failures or deadlocks) is retried with backoff for up to ``retry_deadline_s``; other database errors
become a :class:`~agent.errors.StoreError` that names the URL (password masked) and says what to do.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from agent.errors import StoreError
from agent.store import migrate
from agent.store.db import (
    make_engine,
    mask_url,
    parse_url,
    refuses_writes,
    retryable,
    unreachable,
    writer,
)
from agent.store.errors import InvalidInputError

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@lru_cache(maxsize=1)
def _revisions() -> tuple[str, frozenset[str]]:
    return migrate.head_revision(), frozenset(migrate.known_revisions())


def validated(model: type[M], data: Any, what: str) -> M:
    """``model`` validated from ``data``; invalid values raise :class:`InvalidInputError` saying which and why."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise InvalidInputError(f"invalid {what}: {problems}") from None


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


class Database:
    """The database at ``url``, with transactions as described in the module docstring."""

    def __init__(self, url: str, *, upgrade: bool = True, busy_timeout_s: float = 5.0,
                 retry_deadline_s: float = 30.0) -> None:
        #: the URL with its password masked: safe to show and log
        self.url = mask_url(url)
        self.backend = parse_url(url).get_backend_name()
        self.retry_deadline_s = retry_deadline_s
        self._engine = make_engine(url, busy_timeout_s=busy_timeout_s)
        self._writer = writer(self._engine)
        if upgrade:
            try:
                self._retry("open the conversation store", self._upgrade)
            except BaseException:
                self._engine.dispose()
                raise

    def close(self) -> None:
        self._engine.dispose()

    def connect(self) -> Connection:
        """A raw connection (the caller closes it)."""
        return self._engine.connect()

    def schema_revision(self) -> str | None:
        with self._engine.connect() as connection:
            return migrate.current_revision(connection)

    def _upgrade(self) -> None:
        head, known = _revisions()
        with self._engine.connect() as connection:
            current = migrate.current_revision(connection)
        if current == head:
            return
        if current is not None and current not in known:
            raise StoreError(
                f"the conversation store at {self.url} has schema revision {current}, newer than this version of "
                f"Moments knows (up to {head}); upgrade Moments, or point MOMENTS_DATABASE_URL at another database"
            )
        with self._writer.begin() as connection:
            migrate.upgrade(connection, "head")
        log.info("conversation store %s upgraded from revision %s to %s", self.url, current, head)

    def _error(self, what: str, exc: SQLAlchemyError) -> StoreError:
        if unreachable(exc) and self.backend == "sqlite":
            return StoreError(
                f"cannot open the conversation store's SQLite file at {self.url} ({_reason(exc)}). Check that the "
                "file and its folder exist and are readable and writable by this user (MOMENTS_HOME, "
                "MOMENTS_DATABASE_URL or --db)."
            )
        if unreachable(exc):
            return StoreError(
                f"cannot reach the conversation store at {self.url} ({_reason(exc)}). Check that the database "
                "server is running and that the URL, user and password are right (MOMENTS_DATABASE_URL or --db); "
                "unset MOMENTS_DATABASE_URL to use the SQLite file in the data home."
            )
        if retryable(exc):
            return StoreError(
                f"could not {what}: the conversation store at {self.url} stayed busy for {self.retry_deadline_s:.0f} s "
                "(another process holds its write lock); try again, or stop the process that holds it"
            )
        if refuses_writes(exc):
            return StoreError(
                f"could not {what}: the conversation store at {self.url} refuses writes ({_reason(exc)}). Check that "
                "its file and folder are writable and the disk is not full (or point MOMENTS_DATABASE_URL at a "
                "writable database)"
            )
        return StoreError(f"could not {what} in the conversation store at {self.url}: {_reason(exc)}")

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a whole transaction), again with backoff while the database reports contention."""
        deadline = time.monotonic() + self.retry_deadline_s
        attempt = 0
        while True:
            try:
                return fn()
            except SQLAlchemyError as exc:
                attempt += 1
                if not retryable(exc) or time.monotonic() >= deadline:
                    raise self._error(what, exc) from exc
                delay = min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5)
                log.debug("%s: %s; retry %d in %.3f s", what, _reason(exc), attempt, delay)
                time.sleep(delay)

    def write(self, what: str, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one write transaction and commit it (retried as a whole on contention)."""

        def transaction() -> T:
            with Session(self._writer, expire_on_commit=False) as session:
                result = fn(session)
                session.commit()
                return result

        try:
            return self._retry(what, transaction)
        except UnicodeEncodeError as exc:  # a lone surrogate (undecodable bytes) in a text value: nothing written
            bad = exc.object[exc.start:exc.end] if isinstance(exc.object, str) else ""
            raise InvalidInputError(
                f"could not {what}: the text is not valid UTF-8 (it holds {bad!r}, a lone surrogate, at character "
                f"{exc.start + 1}); send it again as UTF-8 text"
            ) from None

    def read(self, what: str, fn: Callable[[Session], T]) -> T:
        def transaction() -> T:
            with Session(self._engine) as session:
                return fn(session)

        return self._retry(what, transaction)

