"""How much to trust a reply, in words an operator acts on: a badge (high / check / low), the weakest sentence, and
citations the model wrote that the attribution does not back.

The reply-level confidence is the explanation's (``grounded share × retrieval support``, see
:mod:`agent.attribution.summary`); the bands come from the settings (``confidence_high``, ``confidence_low``),
calibrated against measured answer correctness on the development sets (``python -m bench.calibrate_confidence``,
``bench/results/calibrate_confidence.md``): *low* (below 0.4) replies were mostly wrong (13 of 20 with the exact
explanation), but no confidence below 1 made a *high* band of exactly explained replies right 90% of the time
(the best ten or more: 75%), so *high* needs 1.0 — in practice an instant estimate of a fully grounded reply (26 of
27 right), which the exact explanation turns into *check* when it replaces the estimate (all 27 on the development
sets). Read *check* as "read it before sending": on the development sets such replies were right about half to 60% of
the time. A reply without an explanation is graded ``unknown``; an abstained one ``abstained``. Low and abstained
replies offer a hand-over to a colleague.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.attribution.explanation import Explanation, SentenceCitation
from agent.settings import Settings
from agent.turn import TurnResult

#: Badge levels, best first.
LEVELS = ("high", "check", "low", "unknown", "abstained", "error")
LABELS = {"high": "High confidence", "check": "Check before sending", "low": "Low confidence",
          "unknown": "Confidence not computed", "abstained": "No answer (abstained)", "error": "Failed"}


@dataclass(frozen=True)
class Grade:
    """A reply's badge: its level, the confidence it came from, and the one-line warning to show (if any)."""

    level: str
    confidence: float | None
    warning: str = ""

    @property
    def label(self) -> str:
        return LABELS[self.level]

    @property
    def offer_handover(self) -> bool:
        """Low-confidence and abstained replies offer "Hand over to a colleague"."""
        return self.level in ("low", "abstained", "error")


def level(confidence: float | None, settings: Settings) -> str:
    """``high``, ``check`` or ``low`` for a confidence in [0, 1] (``unknown`` for None)."""
    if confidence is None:
        return "unknown"
    if confidence >= settings.confidence_high:
        return "high"
    return "low" if confidence < settings.confidence_low else "check"


def weakest_sentence(exp: Explanation) -> SentenceCitation | None:
    """The sentence with the smallest share of grounded content words (None when no sentence has content)."""
    scored = [s for s in exp.sentences if s.grounded_share is not None and s.text.strip()]
    return min(scored, key=lambda s: s.grounded_share) if scored else None


def citation_mismatch(sentence: SentenceCitation) -> str:
    """A note when the model cited passages (``[n]`` in the text) that the attribution does not credit; else ''."""
    if not sentence.model_cited:
        return ""
    unbacked = [j for j in sentence.model_cited if j not in sentence.cited]
    if not unbacked:
        return ""
    wrote = ", ".join(f"[{j + 1}]" for j in unbacked)
    backed = ", ".join(f"[{j + 1}]" for j in sentence.cited) or "no passage"
    return f"The model cites {wrote} here, but the attribution credits {backed}."


def _short(text: str, limit: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def abstain_reason(result: TurnResult, settings: Settings) -> str:
    """Why a turn abstained, in words: retrieval too weak, or (quoting) no sentence close enough to the question."""
    if not result.hits or result.best_score < settings.abstain_threshold:
        return (f"the best passage scored {result.best_score:.3f}, below the threshold "
                f"({settings.abstain_threshold:.2f})")
    return (f"the passages matched (best {result.best_score:.3f}) but none of their sentences was close enough to "
            "the question to quote")


def grade(result: TurnResult, settings: Settings) -> Grade:
    """The badge of a finished turn (see the module docstring)."""
    if result.status == "error":
        return Grade("error", None, "The reply failed; hand the conversation over or try again.")
    if result.abstained:
        return Grade("abstained", None, f"No answer: {abstain_reason(result, settings)}, so Moments did not guess.")
    exp = result.explanation
    if exp is None:
        return Grade("unknown", None)
    lvl = level(exp.confidence, settings)
    if lvl != "low":
        return Grade(lvl, exp.confidence)
    weak = weakest_sentence(exp)
    where = f"weakest sentence: “{_short(weak.text)}”" if weak is not None else "little of the reply is grounded"
    return Grade(lvl, exp.confidence, f"Low confidence ({exp.confidence:.2f}): check the facts before sending; "
                                      f"{where}.")
