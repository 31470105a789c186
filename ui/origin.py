"""Where a reply and its explanation came from, in words: which answer method wrote the reply (the help centre's
sentences quoted, or the model's own words), where each of its sentences came from, and which method produced the
explanation (exact, or an estimate that the exact one will replace).

A turn records the method that wrote its reply in ``versions["generation"]["answer_method"]`` (``quote`` or
``generate``; :class:`agent.pipeline.Agent`): in ``quote`` answer mode the reply is sentences of one passage, cited,
unless no passage had a sentence to quote and the model wrote the reply instead. Turns stored before the method was
recorded are judged by their text: quoted when the answer mode was ``quote`` and every sentence is found word for
word in a passage. :func:`sentence_origins` gives each sentence of the reply its origin (``quoted`` when the quote
method wrote it, else ``generated``) and the passage that holds it word for word (compared word by word, punctuation
and case ignored, also against the passage's answer units, so a table row quoted as ``header: cell`` is found; a
generated sentence the model copied from a passage names that passage too). The explanation's ``method`` and
``estimator`` (:class:`~agent.attribution.explanation.Explanation`) name how it was computed; :func:`method_words`
says it in words for the known ones and shows any other name as recorded, so a new method (an instant estimate
followed by the exact explanation) is labelled without a change here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.attribution.explanation import Explanation
from agent.attribution.sentences import split_sentences
from agent.generation.units import split_units
from agent.turn import TurnResult
from ui.markup import esc

_MARKER = re.compile(r"\s*\[\d+\]")
_WORDS = re.compile(r"[^\W_]+", re.UNICODE)
#: Answer methods (``versions["generation"]["answer_method"]``); ``none``: abstained or failed, no reply written.
METHODS = ("quote", "generate", "none")
#: A generated sentence is said to be copied from a passage only when it has at least this many words.
MIN_COPIED_WORDS = 3

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


@dataclass(frozen=True)
class SentenceOrigin:
    """One sentence of the reply: its text (``[n]`` markers included), its character span in the answer, ``quoted``
    or ``generated``, and the passage (0-based) holding it word for word (None: no passage does)."""

    text: str
    start: int
    end: int
    kind: str
    passage: int | None


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(_MARKER.sub(" ", text))]


def _within(needle: list[str], hay: list[str]) -> bool:
    """``needle`` is a run of ``hay`` (its last word may be cut short: a reply stopped by ``max_new_tokens``)."""
    n = len(needle)
    if not n or n > len(hay):
        return False
    return any(hay[i:i + n - 1] == needle[:-1] and hay[i + n - 1].startswith(needle[-1])
               for i in range(len(hay) - n + 1))


def _holds(passage_text: str, words: list[str]) -> bool:
    if _within(words, _words(passage_text)):
        return True
    return any(_within(words, _words(u.text)) for u in split_units(passage_text))


def answer_mode(result: TurnResult) -> str | None:
    generation = (result.versions or {}).get("generation") or {}
    return generation.get("answer_mode") if isinstance(generation, dict) else None


def _recorded_method(result: TurnResult) -> str | None:
    generation = (result.versions or {}).get("generation") or {}
    method = generation.get("answer_method") if isinstance(generation, dict) else None
    return method if method in ("quote", "generate") else None


def _found(result: TurnResult, text: str, min_words: int) -> int | None:
    """The passage (0-based) holding ``text`` word for word: a passage it cites first, then the best match."""
    words = _words(text)
    if len(words) < min_words:
        return None
    cited = [int(n) - 1 for n in re.findall(r"\[(\d+)\]", text)]
    order = [j for j in cited if 0 <= j < len(result.hits)] + list(range(len(result.hits)))
    return next((j for j in order if _holds(result.hits[j].passage.text, words)), None)


def _spans(result: TurnResult) -> list[tuple[int, int]]:
    return [(a, b) for a, b in split_sentences(result.answer) if _words(result.answer[a:b])]


def answer_method(result: TurnResult) -> str:
    """``quote`` or ``generate``: the method that wrote the reply (``none`` when it abstained or failed); see the
    module docstring for turns stored before it was recorded."""
    if result.status != "ok" or not result.answer.strip():
        return "none"
    recorded = _recorded_method(result)
    if recorded is not None:
        return recorded
    spans = _spans(result)
    quoted = answer_mode(result) == "quote" and spans and all(
        _found(result, result.answer[a:b], 1) is not None for a, b in spans)
    return "quote" if quoted else "generate"


def sentence_origins(result: TurnResult) -> list[SentenceOrigin]:
    """Every sentence of the reply with its origin (see the module docstring); [] when the turn wrote no reply."""
    method = answer_method(result)
    if method == "none":
        return []
    kind = "quoted" if method == "quote" else "generated"
    min_words = 1 if method == "quote" else MIN_COPIED_WORDS
    return [SentenceOrigin(result.answer[a:b], a, b, kind, _found(result, result.answer[a:b], min_words))
            for a, b in _spans(result)]


def origin(result: TurnResult) -> Origin:
    """Quoted (and from which passage), generated, or none (see the module docstring)."""
    method = answer_method(result)
    if method == "none":
        return Origin("none")
    if method == "generate":
        return Origin("generated")
    found = [s.passage for s in sentence_origins(result) if s.passage is not None]
    return Origin("quoted", found[0] if found else 0, _MARKER.sub("", result.answer).strip())


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
