"""Where a reply and its explanation came from, in words: quoted from a passage or written by the model, and which
method produced the explanation (exact, or an estimate that the exact one will replace).

A turn records its answer mode in ``versions["generation"]["answer_mode"]`` (:mod:`agent.generation.quoting`); in
``quote`` mode the reply is a sentence of passage [1], cited, unless passage [1] had no sentence to quote and the model
wrote the reply instead. :func:`origin` therefore checks the text itself: a reply is *quoted* only when, without its
``[n]`` markers, it is found word for word in the passage. The explanation's ``method`` and ``estimator``
(:class:`~agent.attribution.explanation.Explanation`) name how it was computed; :func:`method_words` says it in words
for the known ones and shows any other name as recorded, so a new method (an instant estimate followed by the exact
explanation) is labelled without a change here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.attribution.explanation import Explanation
from agent.turn import TurnResult
from ui.markup import esc

_MARKER = re.compile(r"\s*\[\d+\]")

#: Estimators whose credit is exact for the passages shown (the others are approximations).
EXACT = ("exact",)
ESTIMATORS = {
    "exact": "exact Shapley values: the reply re-scored under every subset of the {k} passages",
    "surrogate": "a surrogate fitted to a sample of passage subsets (too many passages for the exact values)",
    "loo": "leave-one-out: the reply re-scored without each passage in turn",
    "attention": "attention weights read while the reply was written (an instant estimate, not exact)",
}


@dataclass(frozen=True)
class Origin:
    """How the reply was produced: ``quoted`` (from passage ``passage``, 0-based), ``generated`` or ``none``
    (abstained or failed: no reply of the model's)."""

    kind: str
    passage: int | None = None
    sentence: str = ""


def _flat(text: str) -> str:
    return " ".join(text.split()).lower()


def answer_mode(result: TurnResult) -> str | None:
    generation = (result.versions or {}).get("generation") or {}
    return generation.get("answer_mode") if isinstance(generation, dict) else None


def origin(result: TurnResult) -> Origin:
    """Quoted (and from which passage), generated, or none (see the module docstring)."""
    if result.status != "ok" or not result.answer.strip():
        return Origin("none")
    plain = _MARKER.sub("", result.answer).strip()
    quoted = answer_mode(result) == "quote" and result.hits and plain
    if quoted and _flat(plain.rstrip(".!?")) in _flat(result.hits[0].passage.text):
        return Origin("quoted", 0, plain)
    return Origin("generated")


def origin_html(result: TurnResult) -> str:
    """One line: quoted from passage [n] (its title) or written by the model."""
    o = origin(result)
    if o.kind == "quoted":
        title = result.hits[o.passage].passage.title
        return (f"<div class='mo-origin' data-origin='quoted'>Quoted word for word from passage "
                f"<a class='mo-cite' href='#mo-p-{o.passage + 1}'>[{o.passage + 1}]</a> ({esc(title)}); the model "
                "did not write it, the explanation shows how strongly each passage backs it.</div>")
    if o.kind == "generated":
        fallback = " (no sentence of passage [1] could be quoted)" if answer_mode(result) == "quote" else ""
        return (f"<div class='mo-origin' data-origin='generated'>Written by the model{esc(fallback)} from the "
                "passages.</div>")
    return ""


def is_exact(exp: Explanation) -> bool:
    return exp.estimator in EXACT


def method_words(exp: Explanation) -> str:
    """The method that produced the explanation, in words (an unknown one by its recorded names)."""
    words = ESTIMATORS.get(exp.estimator)
    if words is None:
        return f"{exp.method} ({exp.estimator})"
    return words.format(k=exp.k)


def method_html(exp: Explanation, pending: bool = False) -> str:
    """The explanation's method line; ``pending``: an estimate shown while the exact explanation is computed."""
    exact = is_exact(exp)
    tag = "exact" if exact else "estimate"
    later = " The exact explanation replaces it when it is ready." if pending and not exact else ""
    return (f"<div class='mo-method' data-method='{esc(exp.method)}' data-estimator='{esc(exp.estimator)}'>"
            f"<span class='mo-badge mo-method-{tag}'>{'Exact' if exact else 'Estimate'}</span> Explained by "
            f"<b>{esc(exp.method)}</b>: {esc(method_words(exp))} · {exp.forward_passes} forward passes, "
            f"{exp.seconds:.1f} s.{esc(later)}</div>")
