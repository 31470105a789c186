"""HTML rendering of passages and explanations for the Gradio UI.

Every piece of text that comes from a user, a passage or the model goes through :func:`html.escape`; the only markup
in the output is the markup written here. Functions take the typed values (:class:`~retrieval.types.Hit`,
:class:`~agent.turn.TurnResult` with its :class:`~agent.attribution.explanation.Explanation`); a stored turn is read
back as the same :class:`TurnResult` (:meth:`agent.store.Store.get_result`), so it renders exactly like a live one.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from agent.attribution.explanation import Explanation, TokenAttribution
from agent.turn import TurnResult
from retrieval.types import Hit

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


def passages_html(hits: Sequence[Hit], credits: Sequence[float] | None = None) -> str:
    """The numbered passages panel: rank, title, retrieval score, attribution credit (if any) and the text."""
    if not hits:
        return "<div class='mo-passage'>No passages retrieved.</div>"
    parts = []
    for i, h in enumerate(hits):
        credit = f" · credit {credits[i]:+.2f}" if credits is not None and i < len(credits) else ""
        parts.append(
            f"<div class='mo-passage' style='border-left-color:{colour(i)}'>"
            f"<div class='mo-head'>[{i + 1}] {esc(h.passage.title)}"
            f"<span class='mo-score'>score {h.score:.3f}{esc(credit)} · {esc(h.passage.id)}</span>"
            f"</div><pre>{esc(h.passage.text)}</pre></div>"
        )
    return "\n".join(parts)


def error_html(message: str) -> str:
    return f"<div class='mo-error'>{esc(message)}</div>"


def passage_credits(explanation: Explanation | None) -> list[float] | None:
    """Total attribution credit of each passage (in prompt order), or None without an explanation."""
    return None if explanation is None else explanation.passage_totals()


def _token_html(tok: TokenAttribution) -> str:
    top, prior = tok.top_passage, tok.flag == "prior"
    alts = ", ".join(f"{a!r} {p:.2f}" for a, p in tok.alternatives[:5])
    where = "model prior" if prior else f"grounded in [{top + 1}]" if top is not None else "grounded"
    title = f"p={tok.prob:.2f} · {where} · grounding {tok.grounding or 0.0:+.2f} · nearly said: {alts}"
    style = f"background:{colour(top)}" if top is not None and not prior else ""
    cls = "mo-tok mo-prior" if prior else "mo-tok"
    return f"<span class='{cls}' style='{style}' title='{esc(title)}'>{esc(tok.text)}</span>"


def explanation_html(result: TurnResult) -> str:
    """The reply with every token tinted by its top passage (dotted underline: model prior), hover for details."""
    if result.abstained:
        return (f"<div class='mo-note'>Abstained: the best passage scored {result.best_score:.3f}, below the "
                "threshold, so Moments handed over instead of guessing.</div>")
    exp = result.explanation
    if exp is None:
        return f"<div class='mo-reply'>{esc(result.answer)}</div><div class='mo-legend'>No explanation " \
               "was computed for this reply (turn on “Explain each reply”).</div>"
    spans = "".join(_token_html(tok) for tok in exp.tokens)
    notes = "".join(f"<div class='mo-note'>{esc(n)}</div>" for n in exp.notes)
    legend = (f"<div class='mo-legend'>Colour = passage with the most credit (Shapley); dotted underline = from the "
              f"model's prior. Confidence {exp.confidence:.2f} · grounded tokens {exp.grounded_share:.0%} · "
              f"method {esc(exp.method)} · {exp.forward_passes} forward passes, {exp.seconds:.1f} s</div>")
    cited = []
    for sent in exp.sentences:
        marks = "".join(f"<sup style='background:{colour(j)}'>[{j + 1}]</sup>" for j in sent.cited)
        cited.append(f"{esc(sent.text)}{marks}")
    cited_html = f"<div class='mo-legend'><b>Cited:</b> {' '.join(cited)}</div>" if cited else ""
    return f"<div class='mo-reply'>{spans}</div>{cited_html}{legend}{notes}"
