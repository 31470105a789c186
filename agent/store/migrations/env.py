"""Alembic environment of the conversation store (configured in code by :mod:`agent.store.migrate`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from agent.store.models import StoreModel
from agent.store.textsearch import is_search_object

config = context.config
target_metadata = StoreModel.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      include_name=lambda name, type_, parents: not is_search_object(name, type_, parents))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from agent.store.db import make_engine, writer

    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with writer(engine).begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
