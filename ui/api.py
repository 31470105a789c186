"""The typed API for apps that embed Moments: named Gradio endpoints whose inputs and outputs ``Client.view_api()``
documents (typed dicts, integer ids), and the compact explanation format they return.

Endpoints (``gradio_client.Client(url).predict(..., api_name=...)``):

* ``/ask`` (question, conversation_id="", explain=False, detail="summary") → :class:`AskOut` (with the method that
  wrote the reply and each sentence's origin: quoted from passage [n] or generated);
* ``/ask_stream`` (same inputs) → :class:`StreamEvent` items: the reply's tokens, then the ``/ask`` object;
* ``/retrieve`` (question, top_k=0) → list of :class:`PassageOut` (no generation);
* ``/feedback`` (turn_id, rating, reasons="", comment="", corrected="") → :class:`FeedbackOut`;
* ``/conversations`` (status="", channel="", since="", until="", text="", limit=20, offset=0) → :class:`PageOut`;
* ``/conversation`` (conversation_id, detail="summary") → :class:`ConversationOut`, explanations included;
* ``/handover`` (conversation_id, note="") → :class:`HandoverOut`: the conversation becomes ``escalated``.

The returned values and the compact explanation format are defined in :mod:`ui.api_types`. A turn the store could
not keep is still answered: ``stored`` is false and ``not_stored`` says why. This module deliberately has no
``from __future__ import annotations``: Gradio reads the real type hints to document the endpoints.
"""

import inspect
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, get_args

import gradio as gr

from agent.conversation import ConversationRunner
from agent.errors import MomentsError
from agent.settings import Settings
from agent.turn import TurnResult
from agent.vocabulary import RATINGS
from ui.access import Caller, Gate
from ui.api_types import (
    DETAILS,
    AskOut,
    ConversationOut,
    ConversationSummaryOut,
    FeedbackItemOut,
    FeedbackOut,
    HandoverOut,
    PageOut,
    PassageOut,
    StreamEvent,
    TurnOut,
    compact_explanation,
    confidence_out,
    origins_out,
    passage_out,
    sig,
)
from ui.handover import handover_summary
from ui.origin import answer_method

log = logging.getLogger(__name__)

def streamed(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """``fn`` (a generator method) for ``gr.api``: Gradio documents an endpoint's output from the return annotation,
    so the wrapper announces the item type (``Iterator[X]`` → ``X``) and streams every item."""

    @wraps(fn)
    def endpoint(*args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from fn(*args, **kwargs)

    signature = inspect.signature(fn)
    endpoint.__signature__ = signature.replace(return_annotation=get_args(signature.return_annotation)[0])
    return endpoint


def parse_when(value: str, name: str, *, end: bool = False) -> datetime | None:
    """A date (``2026-12-01``) or date-time from a filter field, UTC; ``end``: a bare date means the end of that
    day (so ``until=2026-12-01`` includes the 1st). Empty → None; anything else → a clear error."""
    if not value or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise gr.Error(f"{name} must be a date like 2026-12-01 (or 2026-12-01T14:30), not {value!r}.") from None
    if end and len(value.strip()) == 10:
        when += timedelta(days=1)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def full_conversation_id(value: str | None) -> uuid.UUID | None:
    """The ``/ask`` caller's conversation id as a UUID (None when not given); only this can blame the id."""
    if not value or not str(value).strip():
        return None
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise gr.Error(f"Invalid conversation id {value!r}: pass the conversation_id a previous /ask call returned, "
                       "or leave it empty to start a new conversation.") from None


class MomentsApi:
    """The endpoint handlers, bound to one agent and store."""

    def __init__(self, settings: Settings, runner: ConversationRunner, store_error: str | None = None,
                 gate: Gate | None = None) -> None:
        self.settings, self.runner, self.store_error = settings, runner, store_error
        self.gate = gate or Gate.disabled()

    @property
    def store(self):
        return self.runner.store

    def need_store(self):
        if self.store is None:
            raise gr.Error(f"No conversation store: {self.store_error or 'none configured'}. Set "
                           "MOMENTS_DATABASE_URL to a database Moments can open, then restart.")
        return self.store

    def conversation_id(self, value: str, caller: Caller, *, write: bool = False) -> uuid.UUID:
        """A stored conversation's id the caller may use: reviewers (and local runs) may give a unique prefix,
        operators the full id of one of their own conversations; a clear error otherwise."""
        store = self.need_store()
        if not value or not value.strip():
            raise gr.Error("Give a conversation_id (from /ask or /conversations).")
        if not (caller.local or caller.can("reviewer")):
            cid = full_conversation_id(value)
            self.gate.check_owner(caller, cid, write=write)
            return cid
        try:
            cid = store.resolve_conversation_id(value.strip())
        except (MomentsError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
        self.gate.check_owner(caller, cid, write=write)
        return cid

    def turn_out(self, result: TurnResult, detail: str) -> AskOut:
        return AskOut(question=result.question, answer=result.answer, status=result.status,
                      conversation_id=result.conversation_id or "", turn_id=result.turn_id,
                      passages=passage_out(result.hits), confidence=confidence_out(result, self.settings),
                      answer_method=answer_method(result), sentence_origins=origins_out(result),
                      explanation=compact_explanation(result.explanation, detail),
                      timings={k: round(v, 1) for k, v in result.timings.items()},
                      stored=result.stored, not_stored=result.not_stored or "")

    def _begin(self, question: str, conversation_id: str, detail: str,
               request: gr.Request | None) -> tuple[str, uuid.UUID | None, str | None]:
        """Check an ask request (the caller may continue only their own conversation) and open its conversation
        (when new, recording the caller as its operator): the question, the conversation id, and why the turn
        will not be stored when the store refused to open the conversation."""
        caller = self.gate.caller(request)
        if detail not in DETAILS:
            raise gr.Error(f"detail must be one of {', '.join(DETAILS)} (got {detail!r}).")
        try:
            question = self.runner.agent.validate(question)
            cid = full_conversation_id(conversation_id)
            if cid is not None:
                self.gate.check_owner(caller, cid, write=True)
            not_stored = None
            if self.store is not None and cid is None:
                cid, not_stored = self.runner.open(channel="api", operator=self.gate.operator(caller))
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        return question, cid, not_stored

    def ask(self, question: str, conversation_id: str = "", explain: bool = False,
            detail: str = "summary", request: gr.Request = None) -> AskOut:
        """Answer one question; pass the returned conversation_id back to continue the conversation. With explain,
        the explanation comes in the compact format at the given detail (summary, tokens or full)."""
        question, cid, not_stored = self._begin(question, conversation_id, detail, request)
        try:
            result = self.runner.ask(cid, question, explain=bool(explain), not_stored=not_stored)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        return self.turn_out(result, detail)

    def ask_stream(self, question: str, conversation_id: str = "", explain: bool = False,
                   detail: str = "summary", request: gr.Request = None) -> Iterator[StreamEvent]:
        """/ask, streamed: events {kind: "token", text} as the reply is written, {kind: "explaining"} while the
        explanation is computed, then {kind: "done", result} with the same object /ask returns."""
        question, cid, not_stored = self._begin(question, conversation_id, detail, request)
        try:
            for event in self.runner.stream(cid, question, explain=bool(explain), not_stored=not_stored):
                if event.kind == "token":
                    yield StreamEvent(kind="token", text=event.text, result=None)
                elif event.kind == "explaining":
                    yield StreamEvent(kind="explaining", text="", result=None)
                elif event.kind == "done":
                    yield StreamEvent(kind="done", text="", result=self.turn_out(event.result, detail))
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc

    def retrieve(self, question: str, top_k: int = 0, request: gr.Request = None) -> list[PassageOut]:
        """The passages the knowledge base holds for a question, best first (no answer is written)."""
        self.gate.caller(request)
        try:
            question = self.runner.agent.validate(question)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        k = int(top_k) if top_k and int(top_k) > 0 else self.settings.top_k
        return passage_out(self.runner.agent.index.search(question, min(k, 50)))

    def feedback(self, turn_id: int, rating: str, reasons: str = "", comment: str = "",
                 corrected: str = "", request: gr.Request = None) -> FeedbackOut:
        """Rate a stored answer: rating up or down, reasons comma-separated (wrong source, incomplete, outdated,
        other), an optional comment and corrected answer. Operators rate answers of their own conversations; only
        reviewers may give a corrected answer (it becomes training data)."""
        store, caller = self.need_store(), self.gate.caller(request)
        if rating not in RATINGS:
            raise gr.Error(f"rating must be {' or '.join(repr(r) for r in RATINGS)}.")
        reviewer = caller.can("reviewer") and not caller.local
        if corrected and not (reviewer or caller.local):
            raise gr.Error("Not allowed: only reviewers give corrected answers.")
        self._check_turn(caller, turn_id)
        try:
            fid = store.add_feedback(int(turn_id), source="api", rating=rating,
                                     reasons=[r.strip() for r in reasons.split(",") if r.strip()],
                                     comment=comment or None, corrected_answer=corrected or None,
                                     reviewed=bool(reviewer and corrected), reviewer=caller.name if reviewer else None,
                                     author=self.gate.operator(caller))
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        return FeedbackOut(feedback_id=fid, turn_id=int(turn_id), rating=rating)

    def _check_turn(self, caller: Caller, turn_id: int) -> None:
        """Refuse feedback on a turn of someone else's conversation (reviewers may rate any)."""
        if caller.local or caller.can("reviewer"):
            return
        turn = self.store.get_turn(int(turn_id))
        if turn is None:
            raise gr.Error(f"No turn {turn_id} of yours.")
        self.gate.check_owner(caller, turn.conversation_id, write=True)

    def conversations(self, status: str = "", channel: str = "", since: str = "", until: str = "", text: str = "",
                      limit: int = 20, offset: int = 0, request: gr.Request = None) -> PageOut:
        """Stored conversations, most recently active first: filters (empty = any), dates as 2026-12-01, paging.
        An operator sees only their own."""
        store, caller = self.need_store(), self.gate.caller(request)
        filters = {k: v for k, v in (("status", status), ("channel", channel), ("text", text)) if v}
        if not (caller.local or caller.can("reviewer")):
            filters["operator"] = caller.name
        filters.update({k: v for k, v in (("since", parse_when(since, "since")),
                                          ("until", parse_when(until, "until", end=True))) if v})
        try:
            rows = store.list_conversations(limit=max(1, min(int(limit), 500)), offset=max(0, int(offset)),
                                            **filters)
            total = store.count_conversations(**filters)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        items = [ConversationSummaryOut(conversation_id=str(c.id), title=c.title or "", channel=c.channel,
                                        status=c.status, turns=c.turn_count, updated_at=c.updated_at.isoformat(),
                                        last_confidence=sig(c.last_confidence)) for c in rows]
        return PageOut(total=total, offset=max(0, int(offset)), items=items)

    def conversation(self, conversation_id: str, detail: str = "summary",
                     request: gr.Request = None) -> ConversationOut:
        """One stored conversation, every turn with its passages, confidence, explanation and feedback (an
        operator: one of their own, by its full id)."""
        store = self.need_store()
        cid = self.conversation_id(conversation_id, self.gate.caller(request))
        conv = store.get_conversation(cid)
        turns = []
        for t in sorted(conv.turns, key=lambda t: t.index):
            result = store.get_result(t.id) if t.role == "assistant" else None
            turns.append(TurnOut(
                turn_id=t.id, role=t.role, text=t.text, status=t.status,
                confidence=confidence_out(result, self.settings) if result else None,
                answer_method=answer_method(result) if result else None,
                sentence_origins=origins_out(result) if result else [],
                passages=passage_out(result.hits) if result else [],
                explanation=compact_explanation(result.explanation, detail) if result else None,
                feedback=[FeedbackItemOut(rating=f.rating, reasons=list(f.reasons), comment=f.comment, source=f.source,
                                          corrected_answer=f.corrected_answer) for f in t.feedback]))
        return ConversationOut(conversation_id=str(conv.id), title=conv.title or "", channel=conv.channel,
                               status=conv.status, turns=turns)

    def handover(self, conversation_id: str, note: str = "", request: gr.Request = None) -> HandoverOut:
        """Hand a conversation over to a colleague: its status becomes escalated; the summary (question, what was
        tried, passages) is what Review shows the colleague. A note is kept with the last answer."""
        store, caller = self.need_store(), self.gate.caller(request)
        cid = self.conversation_id(conversation_id, caller)
        try:
            store.set_status(cid, "escalated")
            conv = store.get_conversation(cid)
            answers = [t for t in conv.turns if t.role == "assistant"]
            if note and note.strip() and answers:
                last = max(answers, key=lambda t: t.index)
                store.add_feedback(last.id, source="operator", comment=f"Hand-over note: {note.strip()}",
                                   author=self.gate.operator(caller))
                conv = store.get_conversation(cid)
        except MomentsError as exc:
            raise gr.Error(str(exc)) from exc
        return HandoverOut(conversation_id=str(cid), status="escalated", summary=handover_summary(conv))
