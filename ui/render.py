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


def passage_credits(result: dict) -> list[float] | None:
    """Total attribution credit of each passage (in prompt order), or None without an explanation."""
    exp = result.get("explanation")
    if not exp:
        return None
    return [float(p.get("credit", 0.0)) for p in exp.get("passages", [])]


def explanation_html(result: dict) -> str:
    """The reply with every token tinted by its top passage (dotted underline: model prior), hover for details."""
    if result.get("abstained"):
        best = max((p.get("score", 0.0) for p in result.get("passages", [])), default=0.0)
        return (f"<div class='mo-note'>Abstained: the best passage scored {best:.3f}, below the threshold, so "
                "Moments handed over instead of guessing.</div>")
    exp = result.get("explanation")
    if not exp:
        return f"<div class='mo-reply'>{esc(result.get('answer'))}</div><div class='mo-legend'>No explanation " \
               "was computed for this reply (turn on “Explain each reply”).</div>"
    spans = []
    for tok in exp.get("tokens", []):
        top = tok.get("top_passage")
        prior = tok.get("flag") == "prior"
        alts = ", ".join(f"{a[0]!r} {float(a[1]):.2f}" for a in tok.get("alternatives", [])[:5])
        title = (f"p={float(tok.get('prob', 0)):.2f} · "
                 f"{'model prior' if prior else f'grounded in [{top + 1}]' if top is not None else 'grounded'} · "
                 f"grounding {float(tok.get('grounding', 0)):+.2f} · nearly said: {alts}")
        style = f"background:{colour(top)}" if top is not None and not prior else ""
        cls = "mo-tok mo-prior" if prior else "mo-tok"
        spans.append(f"<span class='{cls}' style='{style}' title='{esc(title)}'>{esc(tok.get('text'))}</span>")
    conf = exp.get("confidence")
    share = exp.get("grounded_share")
    notes = "".join(f"<div class='mo-note'>{esc(n)}</div>" for n in exp.get("notes", []))
    legend = (f"<div class='mo-legend'>Colour = passage with the most credit (Shapley); dotted underline = from the "
              f"model's prior. Confidence {float(conf or 0):.2f} · grounded tokens {float(share or 0):.0%} · "
              f"method {esc(exp.get('method'))} · {int(exp.get('forward_passes', 0))} forward passes, "
              f"{float(exp.get('seconds', 0)):.1f} s</div>")
    cited = []
    for sent in exp.get("sentences", []):
        marks = "".join(f"<sup style='background:{colour(j)}'>[{j + 1}]</sup>" for j in sent.get("cited", []))
        cited.append(f"{esc(sent.get('text'))}{marks}")
    cited_html = f"<div class='mo-legend'><b>Cited:</b> {' '.join(cited)}</div>" if cited else ""
    return f"<div class='mo-reply'>{''.join(spans)}</div>{cited_html}{legend}{notes}"
