"""Turns with memory: runs :class:`agent.pipeline.Agent` turns and records them in the conversation store.

The user's message is committed before generation starts; the assistant turn (passages, versions, timings and the
explanation) is committed when the turn ends; a failure during retrieval, generation or attribution is stored as a turn
with status ``error`` and re-raised, and the conversation can continue. With ``store=None`` nothing is recorded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from agent.generation.prompt import Exchange
from agent.pipeline import Agent, TurnEvent, TurnResult

log = logging.getLogger(__name__)


def turn_record(result: TurnResult) -> dict[str, Any]:
    """Keyword arguments for ``Store.add_assistant_turn`` describing a finished turn."""
    exp = result.explanation
    summary = exp.summary() if exp is not None else {}
    return {
        "text": result.answer,
        "status": "abstained" if result.abstained else "ok",
        "latency": {k: round(v, 1) for k, v in result.timings.items()},
        "versions": result.versions,
        "passages": [h.to_dict() for h in result.hits],
        "explanation": exp.to_dict() if exp is not None else None,
        "explanation_method": summary.get("method"),
        "confidence": summary.get("confidence"),
        "grounded_share": summary.get("grounded_share"),
        "top_doc_id": summary.get("top_doc_id"),
    }


class Conversations:
    """Runs turns of stored conversations. ``store`` is an :class:`agent.store.Store` or None."""

    def __init__(self, agent: Agent, store=None) -> None:
        self.agent = agent
        self.store = store

    def start(self, *, channel: str, operator: str | None = None, title: str | None = None) -> uuid.UUID | None:
        """Open a conversation (None when there is no store)."""
        if self.store is None:
            return None
        return self.store.start_conversation(channel=channel, operator=operator, title=title)

    def stream(self, conversation_id: uuid.UUID | None, question: str, history: Sequence[Exchange] = (), *,
               explain: bool = False, method: str = "shapley") -> Iterator[TurnEvent]:
        """Run and record one turn; events as :meth:`Agent.stream`. Invalid input raises before anything is stored."""
        question = self.agent.validate(question)
        store = self.store if conversation_id is not None else None
        if store is not None:
            store.add_user_turn(conversation_id, text=question)
        try:
            for event in self.agent.stream(question, history, explain=explain, method=method):
                if event.kind == "done" and store is not None:
                    event.result.turn_id = store.add_assistant_turn(conversation_id, **turn_record(event.result))
                    event.result.conversation_id = str(conversation_id)
                yield event
        except GeneratorExit:
            raise
        except Exception as exc:
            if store is not None:
                log.exception("turn failed; storing it with status 'error'")
                store.add_assistant_turn(conversation_id, text="", status="error", error=f"{type(exc).__name__}: {exc}",
                                         latency={}, versions={}, passages=[])
            raise

    def ask(self, conversation_id: uuid.UUID | None, question: str, history: Sequence[Exchange] = (), *,
            explain: bool = False, method: str = "shapley") -> TurnResult:
        """Run and record one turn to the end."""
        for event in self.stream(conversation_id, question, history, explain=explain, method=method):
            if event.kind == "done":
                return event.result
        raise RuntimeError("turn ended without a result")  # pragma: no cover
