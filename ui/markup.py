"""Safe HTML from untrusted text: :func:`esc` for plain text and attributes, :func:`markdown` for passage Markdown.

Passage text is Markdown written by whoever maintains the knowledge base; :func:`markdown` renders it with raw HTML
switched off (any tag in the text is shown escaped, as text) and unsafe link targets (``javascript:``, ``data:``...)
left as plain text, so the only markup in the output is the formatting Markdown itself produces.
"""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt


def esc(text: Any) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape("" if text is None else str(text), quote=True)


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable("table")


def markdown(text: str) -> str:
    """``text`` as HTML: Markdown formatting (headings, emphasis, lists, tables, code), raw HTML escaped."""
    return _renderer().render(text or "")
