"""Full-text matching of turn texts: the store's text filter, on the index revision 0006 builds.

:class:`TurnTextMatch` compiles per database: SQLite, a phrase query on the FTS5 index ``turn_fts`` (porter
stemming: "refunds" finds "refund", "expired" finds "expire"); PostgreSQL, ``phraseto_tsquery('english', …)``
against the GIN-indexed ``to_tsvector('english', turn.text)`` (the same stemming; English stop words are ignored);
any other database, a case-insensitive substring test. The query's words must occur together, in order; a query
with no word characters (e.g. "?!") falls back to the substring test (:func:`text_clause`).
"""

from __future__ import annotations

import re

from sqlalchemy import Boolean, ColumnElement, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlmodel import col

from agent.store.models import Turn

#: Database objects of the full-text index that are not model tables (schema comparisons skip them).
SEARCH_OBJECTS = frozenset({"turn_fts", "turn_fts_data", "turn_fts_idx", "turn_fts_docsize", "turn_fts_config",
                            "turn_fts_content", "ix_turn_text_fts"})


def is_search_object(name: str | None, type_: str, parent_names: dict | None = None) -> bool:
    """Alembic ``include_name`` hook, negated: True for the full-text index's own objects."""
    return name in SEARCH_OBJECTS


class TurnTextMatch(ColumnElement[bool]):
    """``turn.text`` matches the words of ``query`` (see the module docstring)."""

    type = Boolean()
    inherit_cache = False  # the query string is part of the statement's text on SQLite

    def __init__(self, query: str) -> None:
        self.query = query


def _fts5_phrase(query: str) -> str:
    return '"' + query.replace('"', '""') + '"'


@compiles(TurnTextMatch, "sqlite")
def _sqlite(element: TurnTextMatch, compiler, **kw) -> str:
    phrase = compiler.process(bindparam("fts_query", _fts5_phrase(element.query), unique=True), **kw)
    turn_id = compiler.process(col(Turn.id), **kw)
    return f"{turn_id} IN (SELECT rowid FROM turn_fts WHERE turn_fts MATCH {phrase})"


@compiles(TurnTextMatch, "postgresql")
def _postgresql(element: TurnTextMatch, compiler, **kw) -> str:
    query = compiler.process(bindparam("fts_query", element.query, unique=True), **kw)
    text = compiler.process(col(Turn.text), **kw)
    return f"to_tsvector('english', {text}) @@ phraseto_tsquery('english', {query})"


def _substring(query: str) -> ColumnElement[bool]:
    return col(Turn.text).icontains(query, autoescape=True)


@compiles(TurnTextMatch)
def _other(element: TurnTextMatch, compiler, **kw) -> str:
    return compiler.process(_substring(element.query), **kw)


def text_clause(query: str) -> ColumnElement[bool]:
    """The WHERE clause on :class:`~agent.store.models.Turn` for a text filter."""
    return TurnTextMatch(query) if re.search(r"\w", query) else _substring(query)
