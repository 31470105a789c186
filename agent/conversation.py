"""Stored conversations: the database is the conversation. Every channel (UI, API, CLI) runs its turns here.

:class:`ConversationRunner` runs :class:`agent.pipeline.Agent` turns and records them in the conversation store:

* :meth:`~ConversationRunner.history` is the one source of a conversation's history: the last
  ``Settings.history_turns`` exchanges, read from the store (an exchange whose answer failed is left out).
* :meth:`~ConversationRunner.stream` reads that history and, when the turn ends, commits the user's message and the
  finished turn (:class:`~agent.turn.TurnResult`: passages, versions, timings, explanation, tokens and subset
  table) in one transaction: stored whole, or reported as not stored (``result.stored``, ``result.not_stored``),
  never a question without its answer. A store that refuses reads or writes does not cost the customer the answer.
  A failure during retrieval, generation or attribution is stored as a turn with status ``error`` and re-raised,
  and the conversation can continue. With no store (or no conversation) nothing is recorded and a turn has no
  history.
* :meth:`~ConversationRunner.reexplain` explains a stored answer again from its stored subset table (no model pass).

:func:`open_store` is the one way the app opens the store configured by the settings.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from agent.errors import MomentsError, StoreError
from agent.generation.prompt import Exchange
from agent.pipeline import Agent, TurnEvent
from agent.settings import Settings
from agent.turn import TurnResult
from agent.vocabulary import Channel

if TYPE_CHECKING:
    from agent.store import Store

log = logging.getLogger(__name__)

def open_store(settings: Settings) -> Store:
    """The conversation store the settings name (``MOMENTS_DATABASE_URL``, else SQLite in the data home); raises
    :class:`~agent.errors.StoreError` saying what to do when it cannot be opened."""
    from agent.store import Store

    return Store(settings.db_url)


def try_open_store(settings: Settings) -> tuple[Store | None, str | None]:
    """:func:`open_store`, or ``(None, why)`` when it cannot be opened (the app then answers without storing)."""
    try:
        return open_store(settings), None
    except MomentsError as exc:
        log.error("conversation store unavailable: %s", exc)
        return None, str(exc)


class ConversationRunner:
    """Runs and records the turns of stored conversations. ``store`` is an :class:`agent.store.Store` or None."""

    def __init__(self, agent: Agent, store: Store | None = None, background=None) -> None:
        self.agent = agent
        self.store = store
        #: where exact explanations are computed after the turn (:mod:`agent.background`), or None
        self.background = background

    def start(self, *, channel: Channel, operator: str | None = None, title: str | None = None) -> uuid.UUID | None:
        """Open a conversation (None when there is no store); untitled, the store titles it with its first question."""
        if self.store is None:
            return None
        return self.store.start_conversation(channel=channel, operator=operator, title=title)

    def resolve(self, conversation_id: str) -> uuid.UUID:
        """The stored conversation whose id is (or starts with) ``conversation_id``."""
        if self.store is None:
            raise StoreError("there is no conversation store to continue a conversation from")
        return self.store.resolve_conversation_id(conversation_id)

    def history(self, conversation_id: uuid.UUID | None) -> list[Exchange]:
        """The conversation's recent exchanges, oldest first (at most ``history_turns``), from the store."""
        limit = self.agent.settings.history_turns
        if conversation_id is None or self.store is None or limit == 0:
            return []
        exchanges, pending = [], None
        for t in self.store.recent_turns(conversation_id, limit=2 * limit):
            if t.role == "user":
                pending = t.text
            elif pending is not None and t.status != "error":
                exchanges.append(Exchange(user=pending, assistant=t.text))
                pending = None
        return exchanges[-limit:]

    def open(self, *, channel: Channel, operator: str | None = None) -> tuple[uuid.UUID | None, str | None]:
        """:meth:`start`, or ``(None, why)`` when the store refuses it: the turn is then answered and reported as
        not stored (pass ``why`` to :meth:`stream` as ``not_stored``)."""
        try:
            return self.start(channel=channel, operator=operator), None
        except StoreError as exc:
            log.error("could not open a conversation; answering without storing: %s", exc)
            return None, str(exc)

    def stream(self, conversation_id: uuid.UUID | None, question: str, *, explain: bool = False,
               method: str | None = None, not_stored: str | None = None) -> Iterator[TurnEvent]:
        """Run and record one turn; events as :meth:`Agent.stream`. Invalid input raises before anything is stored.

        The question and its answer are written together when the turn is done (:meth:`Store.add_exchange`): a
        turn is stored whole, or the ``done`` event's result says it was not (``stored`` False, ``not_stored``
        why) and still carries the answer. A store that cannot be read for the history, or refuses the write,
        never costs the customer the answer; a failure of the turn itself is stored as an ``error`` turn (when
        the store takes it) and re-raised. ``not_stored``: why a turn with no ``conversation_id`` is not stored.
        ``method`` defaults to ``Settings.explain_method``; ``instant`` explains with the learned estimate and queues
        the exact explanation on :attr:`background` once the turn is stored (see :meth:`_method`).
        """
        question = self.agent.validate(question)
        store = self.store if conversation_id is not None else None
        problem = not_stored
        history: list[Exchange] = []
        if store is not None:
            try:
                store.resolve_conversation_id(str(conversation_id))  # a conversation that is not there: refused
                history = self.history(conversation_id)
            except StoreError as exc:
                if isinstance(exc, (LookupError, ValueError)):  # no such conversation, a bad id: the caller's
                    raise
                log.error("could not read the conversation history; answering without it: %s", exc)
                store, problem = None, str(exc)
        try:
            run_method = self._method(method, stored=store is not None) if explain else (method or "shapley")
            for event in self.agent.stream(question, history, explain=explain, method=run_method):
                if event.kind == "done":
                    self._record(store, conversation_id, event.result, problem)
                    if event.result.stored:
                        self._queue_exact(event.result)
                yield event
        except GeneratorExit:
            raise
        except Exception as exc:
            if store is not None:
                log.exception("turn failed; storing it with status 'error'")
                failed = TurnResult(question=question, status="error", error=f"{type(exc).__name__}: {exc}")
                try:
                    store.add_exchange(conversation_id, failed)
                except StoreError as store_exc:
                    log.error("the failed turn was not stored either: %s", store_exc)
            raise

    @staticmethod
    def _record(store: Store | None, conversation_id: uuid.UUID | None, result: TurnResult,
                problem: str | None) -> None:
        """Store the finished exchange, or mark ``result`` as not stored and say why."""
        if conversation_id is not None:
            result.conversation_id = str(conversation_id)
        if store is None:
            result.stored, result.not_stored = False, problem
            return
        try:
            _, result.turn_id = store.add_exchange(conversation_id, result)
            result.stored = True
        except StoreError as exc:
            log.error("the answer was given but not stored: %s", exc)
            result.stored, result.not_stored = False, str(exc)

    def _method(self, method: str | None, *, stored: bool) -> str:
        """The attribution method a turn runs: ``instant`` becomes ``learned`` when the turn is stored, a background
        worker is attached and the generator has fitted estimator weights; otherwise exact ``shapley`` at once."""
        method = method or self.agent.settings.explain_method
        if method != "instant":
            return method
        if stored and self.background is not None:
            from agent.attribution.estimator import for_model

            model = getattr(self.agent.generator, "model", None)  # an agent without a causal LM has no estimator
            if model is not None and for_model(model) is not None:
                return "learned"
        return "shapley"

    def _queue_exact(self, result: TurnResult) -> None:
        """Queue the exact explanation of a stored turn explained by an estimate."""
        exp = result.explanation
        if exp is None or exp.estimator != "learned" or self.background is None or result.turn_id is None:
            return
        from agent.store.exactjobs import queue_exact

        queue_exact(self.store, result.turn_id, estimate_method=exp.method)
        self.background.submit(result.turn_id)

    def explain_later(self, turn_id: int) -> dict:
        """Queue the exact explanation of a stored answer that has only an estimate (or none): Review's "explain
        later". Returns :meth:`exact_state`. Raises :class:`~agent.errors.StoreError` saying why when there is no
        store or background worker, no such answer, or nothing to explain (no stored reply tokens); an answer
        explained exactly already is left as it is (its state is returned)."""
        if self.store is None or self.background is None:
            raise StoreError("exact explanations are computed by the background worker, and this app has none "
                             "(it needs the conversation store)")
        from agent.store.exactjobs import exact_status, queue_exact

        result = self.store.get_result(int(turn_id))
        if result is None:
            raise StoreError(f"no stored answer {turn_id}")
        exp = result.explanation
        if exp is None or exp.estimator != "exact":
            if not result.token_ids or result.layout is None:
                raise StoreError(f"answer {turn_id} has no stored prompt and reply tokens (a hand-over, or an error): "
                                 "there is nothing to explain")
            job = exact_status(self.store, int(turn_id))
            if job is None or job.status not in ("queued", "running"):
                queue_exact(self.store, int(turn_id), estimate_method=exp.method if exp is not None else None)
                self.background.submit(int(turn_id))
                log.info("answer %s queued for its exact explanation (explain later)", turn_id)
        return self.exact_state(int(turn_id)) or {"status": "done", "agreement": {}, "attempts": 0, "worker": None,
                                                  "depth": self.background.depth()}

    def exact_state(self, turn_id: int) -> dict | None:
        """The UI's hook: ``{"status": queued|running|done|failed, "agreement": {...}, "depth": jobs pending}``
        for a turn explained by an estimate (None for a turn explained exactly at once, or without a store)."""
        if self.store is None:
            return None
        from agent.store.exactjobs import exact_status

        job = exact_status(self.store, turn_id)
        if job is None:
            return None
        depth = self.background.depth() if self.background is not None else None
        return {"status": job.status, "agreement": job.agreement, "attempts": job.attempts, "worker": job.worker,
                "depth": depth}

    def ask(self, conversation_id: uuid.UUID | None, question: str, *, explain: bool = False,
            method: str | None = None, not_stored: str | None = None) -> TurnResult:
        """Run and record one turn to the end."""
        for event in self.stream(conversation_id, question, explain=explain, method=method, not_stored=not_stored):
            if event.kind == "done":
                return event.result
        raise RuntimeError("turn ended without a result")  # pragma: no cover

    def reexplain(self, turn_id: int, *, method: str = "shapley", **options) -> TurnResult:
        """Explain a stored answer again from its stored subset table (no model pass: another ``method`` among
        ``shapley``, ``loo``, ``surrogate``, or other attribution ``options``), store the new explanation in place
        of the old one, and return the turn with it."""
        from agent.attribution import reexplain

        result = self.store.get_result(turn_id) if self.store is not None else None
        if result is None:
            raise StoreError(f"no stored answer {turn_id}; list conversations with `moments logs`")
        if result.subsets is None:
            raise StoreError(f"answer {turn_id} has no stored subset table (it was not explained, or explained "
                             "with a method that builds none); explain it with the model instead")
        result.explanation = reexplain(result.subsets, self.agent.generator.tokenizer, result.token_ids,
                                       result.token_texts, [h.passage for h in result.hits],
                                       [h.score for h in result.hits], method=method, **options)
        self.store.add_explanation(turn_id, explanation=result.explanation)
        return result
