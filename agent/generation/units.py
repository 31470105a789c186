r"""Answer units of a passage: its sentences of prose, list items and table rows, each a candidate answer.

:func:`split_units` splits a passage body (heading line, prose, bullets, Markdown tables) into :class:`Unit`\ s: the
heading (when the first line has no sentence end and more lines follow), each sentence of prose, each list item, and
each table row as ``header: cell; header: cell.``, Markdown emphasis dropped. :func:`focused_text` puts the heading and
chosen units back together. Used by the evidence focus (:mod:`agent.generation.focus`) and the answer selector
(:mod:`agent.generation.selector`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_TABLE_RULE = re.compile(r"^\|?[\s:\-|]+\|?$")


@dataclass(frozen=True)
class Unit:
    """One answer unit of a passage: its text and its position among the passage's lines/sentences."""

    text: str
    order: int
    heading: bool = False


def _clean(text: str) -> str:
    return " ".join(text.replace("**", "").replace("__", "").split())


def _table_row(line: str, header: list[str] | None) -> str:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if header and len(header) == len(cells) and header != cells:
        return "; ".join(f"{h}: {c}" for h, c in zip(header, cells) if c) + "."
    return ": ".join(c for c in cells if c) + "."


_DANGLING = re.compile(r"(?:,\s*)?\b(?:or|and)$", re.IGNORECASE)


def _join_dangling(lines: list[str]) -> list[str]:
    """List items that end with a dangling "or" / "and" ("- Click Unsubscribe in any email, or") joined with the item
    after them, which completes their sentence; the next item's first word is lower-cased when it is a plain
    capitalised word ("Go to ..." -> "go to ...", "Apple Pay" and "PayPal" are kept)."""
    out: list[str] = []
    for line in lines:
        prev = out[-1] if out else ""
        if prev and _BULLET.match(prev) and _DANGLING.search(prev) and _BULLET.match(line):
            rest = _BULLET.sub("", line)
            words = rest.split(" ", 2)
            plain = words[0].isalpha() and words[0].istitle() and not (len(words) > 1 and words[1][:1].isupper())
            out[-1] = f"{prev} {rest[:1].lower() + rest[1:] if plain else rest}"
        else:
            out.append(line)
    return out


def split_units(text: str) -> list[Unit]:
    """Answer units of a passage body (see module docstring); the first line is a heading when it has no sentence
    end and more lines follow."""
    lines = _join_dangling([ln.strip() for ln in text.strip().splitlines() if ln.strip()])
    units: list[Unit] = []
    header: list[str] | None = None
    for i, line in enumerate(lines):
        if i == 0 and len(lines) > 1 and not line.endswith((".", "!", "?", ":")) and not line.startswith("|"):
            units.append(Unit(_clean(line.lstrip("#")), len(units), heading=True))
            continue
        if line.startswith("|"):
            if _TABLE_RULE.fullmatch(line):
                continue
            if header is None:
                header = [c.strip() for c in line.strip("|").split("|")]
                continue
            units.append(Unit(_clean(_table_row(line, header)), len(units)))
            continue
        header = None
        for sentence in _SENT_END.split(_clean(_BULLET.sub("", line))):
            if sentence.strip():
                units.append(Unit(_clean(sentence), len(units)))
    return units


def focused_text(units: Sequence[Unit], keep_orders: set[int]) -> str:
    """The heading line (if any) and the kept units, in their original order, one line for the heading."""
    head = [u.text for u in units if u.heading]
    body = " ".join(u.text for u in units if u.order in keep_orders and not u.heading)
    return "\n".join([*head, body]) if head else body
