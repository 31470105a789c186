"""The typed values the API returns (``Client.view_api()`` documents them from these ``TypedDict`` s) and the compact
explanation format.

Compact explanations (:func:`compact_explanation`, typed :class:`ExplanationOut`): floats rounded to 4 significant
digits, credit given once (the Shapley values are the credit when the estimator is exact), and a detail level:
``summary`` (reply figures, passages, sentences), ``tokens`` (+ per token: text, probability, grounding, flag, top
passage, credit per passage) or ``full`` (+ top alternatives and leave-one-out values). A turn says which method
wrote its reply (``answer_method``: ``quote``, the help centre's sentences word for word; ``generate``, the model's
own words; ``none``, abstained or failed) and where each sentence came from (``sentence_origins``: ``quoted`` or
``generated``, and the passage ``[n]`` holding it word for word, see :mod:`ui.origin`), with or without an
explanation. A turn's ``stored`` says whether it is in the conversation store; ``not_stored`` why not (the answer is
given all the same). Like :mod:`ui.api`, this module has no ``from __future__ import annotations``: Gradio reads the
real type hints.
"""

from typing import NotRequired, TypedDict

import gradio as gr

from agent.attribution.explanation import Explanation, TokenAttribution
from agent.settings import Settings
from agent.turn import TurnResult
from retrieval.types import Hit
from ui.confidence import grade
from ui.origin import sentence_origins

DETAILS = ("summary", "tokens", "full")


class PassageOut(TypedDict):
    n: int  # the [n] the reply and its citations use
    doc_id: str
    passage_id: str
    title: str
    score: float
    text: str


class ConfidenceOut(TypedDict):
    level: str  # high | check | low | unknown | abstained | error
    value: float | None
    warning: str
    offer_handover: bool


class SentenceOriginOut(TypedDict):
    text: str  # the sentence as in the answer ([n] markers included)
    origin: str  # quoted (the quote method took it word for word from a passage) | generated (the model wrote it)
    passage: int | None  # the [n] of the passage holding it word for word (a generated one may copy); None: none


class PassageCreditOut(TypedDict):
    n: int
    doc_id: str
    credit: float | None  # the passage's total credit over the reply's tokens, in nats
    grounded_tokens: int


class SentenceCitationOut(TypedDict):
    text: str
    cited: list[int]  # the passages the attribution credits for this sentence
    model_cited: list[int]  # the [n] the reply wrote in it
    grounded_share: float | None


class TokenOut(TypedDict):
    i: int
    text: str
    p: float | None  # the token's probability with every passage
    grounding: float | None  # log p with the passages minus log p with none, in nats
    flag: str  # grounded | prior | ...
    top: int | None  # the passage that did most for it
    credit: list[float | None]  # per passage, in nats
    alternatives: NotRequired[list[tuple[str, float | None]]]  # detail "full": the top 5 (token, probability)
    loo: NotRequired[list[float | None]]  # detail "full": leave-one-out values, when computed
    shapley: NotRequired[list[float | None]]  # detail "full", estimated credit only: the exact values


class ExplanationOut(TypedDict):
    method: str
    estimator: str  # exact | learned | ...: exact credit, or an estimate the exact explanation replaces later
    confidence: float | None
    grounded_share: float | None
    top_doc_id: str | None
    seconds: float | None
    passages: list[PassageCreditOut]
    sentences: list[SentenceCitationOut]
    notes: list[str]
    detail: str  # summary | tokens | full
    tokens: NotRequired[list[TokenOut]]  # detail "tokens" and "full" only


class AskOut(TypedDict):
    question: str
    answer: str
    status: str  # ok | abstained | error
    conversation_id: str
    turn_id: int | None
    passages: list[PassageOut]
    confidence: ConfidenceOut
    answer_method: str  # quote | generate | none (abstained or failed)
    sentence_origins: list[SentenceOriginOut]
    explanation: ExplanationOut | None  # compact format, see compact_explanation
    timings: dict[str, float]
    stored: bool  # whether the turn is in the conversation store
    not_stored: str  # why not, when it is not ("" when stored, or when the server keeps no store)


class StreamEvent(TypedDict):
    kind: str  # token | explaining | done
    text: str  # the new text of a token event
    result: AskOut | None  # the finished turn, on the done event


class FeedbackOut(TypedDict):
    feedback_id: int
    turn_id: int
    rating: str


class ConversationSummaryOut(TypedDict):
    conversation_id: str
    title: str
    channel: str
    status: str
    turns: int
    updated_at: str
    last_confidence: float | None


class PageOut(TypedDict):
    total: int
    offset: int
    items: list[ConversationSummaryOut]


class FeedbackItemOut(TypedDict):
    rating: str | None  # up | down | None (a comment alone)
    reasons: list[str]
    comment: str | None
    source: str  # operator | reviewer | api | ...
    corrected_answer: str | None


class TurnOut(TypedDict):
    turn_id: int
    role: str  # user | assistant
    text: str
    status: str
    confidence: ConfidenceOut | None  # assistant turns only
    answer_method: str | None  # assistant turns: quote | generate | none
    sentence_origins: list[SentenceOriginOut]
    passages: list[PassageOut]
    explanation: ExplanationOut | None
    feedback: list[FeedbackItemOut]


class ConversationOut(TypedDict):
    conversation_id: str
    title: str
    channel: str
    status: str
    turns: list[TurnOut]


class HandoverOut(TypedDict):
    conversation_id: str
    status: str
    summary: str


def sig(value: float | None, digits: int = 4) -> float | None:
    """``value`` rounded to ``digits`` significant digits (None stays None)."""
    return None if value is None else float(f"{value:.{digits}g}")


def _token(t: TokenAttribution, full: bool, exact: bool) -> TokenOut:
    out: TokenOut = {"i": t.index, "text": t.text, "p": sig(t.prob), "grounding": sig(t.grounding),
                           "flag": t.flag, "top": None if t.top_passage is None else t.top_passage + 1,
                           "credit": [sig(c) for c in t.credit]}
    if full:
        out["alternatives"] = [[a, sig(p)] for a, p in t.alternatives[:5]]
        if t.loo is not None:
            out["loo"] = [sig(c) for c in t.loo]
        if t.shapley is not None and not exact:
            out["shapley"] = [sig(c) for c in t.shapley]
    return out


def compact_explanation(exp: Explanation | None, detail: str = "summary") -> ExplanationOut | None:
    """The explanation in the API's compact format (see the module docstring); passages numbered from 1."""
    if exp is None:
        return None
    if detail not in DETAILS:
        raise gr.Error(f"detail must be one of {', '.join(DETAILS)} (got {detail!r}).")
    out: ExplanationOut = {
        "method": exp.method, "estimator": exp.estimator, "confidence": sig(exp.confidence),
        "grounded_share": sig(exp.grounded_share), "top_doc_id": exp.top_doc_id, "seconds": sig(exp.seconds, 3),
        "passages": [{"n": p.index + 1, "doc_id": p.doc_id, "credit": sig(p.credit), "grounded_tokens":
                      p.grounded_tokens} for p in exp.passages],
        "sentences": [{"text": s.text, "cited": [j + 1 for j in s.cited], "model_cited": [j + 1 for j in
                       s.model_cited], "grounded_share": sig(s.grounded_share)} for s in exp.sentences],
        "notes": list(exp.notes), "detail": detail}
    if detail != "summary":
        exact = exp.estimator == "exact"
        out["tokens"] = [_token(t, detail == "full", exact) for t in exp.tokens]
    return out


def passage_out(hits: list[Hit]) -> list[PassageOut]:
    return [PassageOut(n=i + 1, doc_id=h.passage.doc_id, passage_id=h.passage.id, title=h.passage.title,
                       score=round(h.score, 4), text=h.passage.text) for i, h in enumerate(hits)]


def origins_out(result: TurnResult) -> list[SentenceOriginOut]:
    """Each sentence of the reply: quoted or generated, and the [n] of the passage holding it word for word."""
    return [SentenceOriginOut(text=s.text, origin=s.kind, passage=None if s.passage is None else s.passage + 1)
            for s in sentence_origins(result)]


def confidence_out(result: TurnResult, settings: Settings) -> ConfidenceOut:
    g = grade(result, settings)
    return ConfidenceOut(level=g.level, value=sig(g.confidence), warning=g.warning, offer_handover=g.offer_handover)
