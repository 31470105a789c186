"""HTML rendering of passages and explanations for the Gradio UI.

Every piece of text that comes from a user, a passage or the model goes through :func:`html.escape`; the only markup
in the output is the markup written here. Functions take plain dicts (``Hit.to_dict()``, ``Explanation.to_dict()``)
so stored turns render exactly like live ones.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

#: One colour per passage rank ([1] .. [8]); grounded tokens are tinted with their top passage's colour.
PALETTE = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa", "#a5f3fc", "#e5e7eb"]

CSS = """
.mo-passage {border-left: 4px solid #ccc; padding: 4px 8px; margin: 6px 0; font-size: 0.9em;}
.mo-passage .mo-head {font-weight: 600;}
.mo-passage .mo-score {color: #555; font-weight: 400; margin-left: 6px;}
.mo-passage pre {white-space: pre-wrap; font-family: inherit; margin: 4px 0 0 0;}
.mo-reply {line-height: 1.9; font-size: 1em;}
.mo-tok {border-radius: 3px; padding: 1px 0;}
.mo-tok.mo-prior {text-decoration: underline dotted #b91c1c; text-underline-offset: 3px;}
.mo-legend {font-size: 0.85em; color: #444; margin-top: 6px;}
.mo-note {font-size: 0.85em; color: #92400e;}
.mo-error {color: #b91c1c; font-weight: 600;}
"""


def esc(text: Any) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape("" if text is None else str(text), quote=True)


def colour(index: int | None) -> str:
    return PALETTE[index % len(PALETTE)] if index is not None and index >= 0 else "transparent"


def passages_html(passages: Sequence[dict], credits: Sequence[float] | None = None) -> str:
    """The numbered passages panel: rank, title, retrieval score, attribution credit (if any) and the text."""
    if not passages:
        return "<div class='mo-passage'>No passages retrieved.</div>"
    parts = []
    for i, p in enumerate(passages):
        credit = f" · credit {credits[i]:+.2f}" if credits is not None and i < len(credits) else ""
        parts.append(
            f"<div class='mo-passage' style='border-left-color:{colour(i)}'>"
            f"<div class='mo-head'>[{i + 1}] {esc(p.get('title'))}"
            f"<span class='mo-score'>score {float(p.get('score', 0)):.3f}{esc(credit)} · {esc(p.get('id'))}</span>"
            f"</div><pre>{esc(p.get('text'))}</pre></div>"
        )
    return "\n".join(parts)


def error_html(message: str) -> str:
    return f"<div class='mo-error'>{esc(message)}</div>"
