"""Helpers for tests that run the store against the real PostgreSQL server (and SQLite).

Each PostgreSQL test gets a schema of its own (``CREATE SCHEMA t_<random>``, reached through
``options=-csearch_path=...`` in the URL) that is dropped afterwards, so tests can run while others use the same
database. When the server cannot be reached, :func:`postgres_or_skip` fails the test if ``CI`` is set (the CI machine
has the server) and skips it otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import quote

#: The PostgreSQL server the tests use (trust authentication); override with MOMENTS_TEST_POSTGRES_URL.
TEST_POSTGRES_URL = os.environ.get("MOMENTS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def libpq_url(url: str) -> str:
    """The URL as libpq (psycopg.connect) wants it."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@lru_cache(maxsize=8)
def postgres_unreachable_reason(url: str = TEST_POSTGRES_URL) -> str | None:
    """None when the server answers, else why not (asked once per process)."""
    import psycopg

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def postgres_or_skip(url: str = TEST_POSTGRES_URL) -> None:
    """Skip (locally) or fail (when ``CI`` is set) the calling test if the server cannot be reached."""
    import pytest

    reason = postgres_unreachable_reason(url)
    if reason is None:
        return
    message = f"PostgreSQL at {url} is unreachable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: the server must be running)")
    pytest.skip(message)


@contextmanager
def temporary_postgres_schema(url: str = TEST_POSTGRES_URL) -> Iterator[str]:
    """A URL whose connections work in a fresh schema (dropped, with everything in it, on exit)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin_url = libpq_url(url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    # synchronous_commit=off: commits do not wait for the disk (tests need no crash durability, and run faster)
    options = f"-csearch_path={schema} -csynchronous_commit=off"
    try:
        yield f"{url}{separator}options={quote(options)}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def empty_database(kind: str, folder: os.PathLike[str] | str) -> Iterator[str]:
    """A URL of an empty database: ``kind`` 'sqlite' (a file in ``folder``) or 'postgresql' (a fresh schema)."""
    if kind == "sqlite":
        yield f"sqlite:///{os.path.join(os.fspath(folder), 'moments.db')}"
    elif kind == "postgresql":
        postgres_or_skip()
        with temporary_postgres_schema() as url:
            yield url
    else:
        raise ValueError(f"unknown database kind {kind!r}; use 'sqlite' or 'postgresql'")
