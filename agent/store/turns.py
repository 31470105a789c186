"""A finished turn (:class:`agent.turn.TurnResult`) as the store's rows, and back: the one place that maps them.

* :func:`answer_rows` gives the validated rows of an answer: the turn itself (text, status, rounded timings,
  versions), its passages (a hit's ``id`` is the ``passage_id`` column), its explanation with the summary columns,
  and its tokens with the packed subset table.
* :func:`turn_result` rebuilds the :class:`~agent.turn.TurnResult` of a stored answer (with the question it answered
  and, when given, its tokens), so that a stored turn renders, serialises and can be explained again exactly like a
  live one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.attribution.explanation import Explanation
from agent.attribution.rescoring import pack_table, unpack_table
from agent.store.models import (
    AssistantTurnCreate,
    ExplanationCreate,
    PassageCreate,
    PassagePublic,
    TurnPublic,
    TurnTokensCreate,
    TurnTokensPublic,
)
from agent.store.transactions import validated
from agent.turn import TurnResult
from retrieval.types import Hit, Passage

log = logging.getLogger(__name__)


@dataclass
class AnswerRows:
    """The validated rows of one answer, written together in one transaction."""

    turn: AssistantTurnCreate
    passages: list[PassageCreate]
    explanation: ExplanationCreate | None = None
    tokens: TurnTokensCreate | None = None


def passage_row(hit: Hit) -> PassageCreate:
    """A retrieval hit as a stored passage snapshot (score rounded as in the turn's JSON)."""
    p = hit.passage
    return validated(PassageCreate, {"rank": hit.rank, "doc_id": p.doc_id, "passage_id": p.id or None,
                                     "title": p.title, "text": p.text, "score": round(hit.score, 4),
                                     "source": p.source or None, "line": p.line}, "passage")


def explanation_row(exp: Explanation) -> ExplanationCreate:
    """An explanation value as its row: the whole value as JSON, and its summary in the searchable columns."""
    summary = exp.summary()
    return validated(ExplanationCreate, {"method": summary["method"], "data": exp.to_dict(),
                                         "confidence": summary["confidence"],
                                         "grounded_share": summary["grounded_share"],
                                         "top_doc_id": summary["top_doc_id"]}, "explanation")


def answer_rows(result: TurnResult, *, reply_to: int | None = None) -> AnswerRows:
    """The rows that record ``result`` (see the module docstring)."""
    turn = AssistantTurnCreate(text=result.answer, status=result.status, error=result.error,
                               latency={k: round(v, 1) for k, v in result.timings.items()},
                               versions=result.versions, reply_to_id=reply_to)
    rows = AnswerRows(turn=turn, passages=[passage_row(h) for h in result.hits])
    if result.explanation is not None:
        rows.explanation = explanation_row(result.explanation)
    if result.prompt_ids:
        rows.tokens = TurnTokensCreate(prompt_ids=result.prompt_ids,
                                       passage_spans=[list(span) for span in result.passage_spans],
                                       reply_ids=result.token_ids, reply_texts=result.token_texts,
                                       subsets=pack_table(result.subsets) if result.subsets is not None else None)
    return rows


def stored_hit(p: PassagePublic) -> Hit:
    """A stored passage snapshot as the hit the turn saw."""
    passage = Passage(id=p.passage_id or "", doc_id=p.doc_id, title=p.title, text=p.text, source=p.source or "",
                      line=p.line or 0)
    return Hit(passage=passage, score=p.score, rank=p.rank)


def stored_explanation(data: dict | None) -> Explanation | None:
    """The stored explanation value; None (logged) when the stored data is not one this version can read."""
    if not data:
        return None
    try:
        return Explanation.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("stored explanation not readable (%s: %s); shown without it", type(exc).__name__, exc)
        return None


def turn_result(answer: TurnPublic, question: str = "", tokens: TurnTokensPublic | None = None) -> TurnResult:
    """The :class:`TurnResult` of a stored answer (``question``: the text of the user turn it answered)."""
    result = TurnResult(question=question, answer=answer.text, status=answer.status,  # type: ignore[arg-type]
                        hits=[stored_hit(p) for p in sorted(answer.passages, key=lambda p: p.rank)],
                        timings=dict(answer.latency), versions=dict(answer.versions),
                        explanation=stored_explanation(answer.explanation.data if answer.explanation else None),
                        error=answer.error, conversation_id=str(answer.conversation_id), turn_id=answer.id,
                        stored=True)
    if tokens is not None:
        result.prompt_ids, result.token_ids, result.token_texts = tokens.prompt_ids, tokens.reply_ids, tokens.reply_texts
        result.passage_spans = [(int(a), int(b)) for a, b in tokens.passage_spans]
        result.subsets = unpack_table(tokens.subsets) if tokens.subsets else None
    return result
