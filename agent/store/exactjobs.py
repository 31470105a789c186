"""Exact explanations computed after the turn (table ``exact_job``, revision 0005): queue, claim, store once.

A turn answered with the instant (learned) estimate gets one ``exact_job`` row: ``queued`` when the turn is stored,
``running`` while a worker computes the exact Shapley table (``attempts`` counts the starts), then ``done`` when
:func:`finish_exact` stored the exact explanation in place of the estimate, the subset table with the turn's tokens,
and the agreement of the estimate with the exact values (``agreement``; the estimate's method in
``estimate_method``); or ``failed`` with the error. :func:`finish_exact` stores *at most once* per turn: the row is
locked and checked in the same transaction, so a job run twice (a retried worker that was not dead after all, two
queues) stores the first result and reports False for the second. Every function takes an open
:class:`~agent.store.Store` and is one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, func
from sqlmodel import JSON, Field, Session, select

from agent.attribution.explanation import Explanation
from agent.store import crud
from agent.store.models import StoreModel, TurnTokens
from agent.store.store import Store
from agent.store.turns import explanation_row
from agent.store.types import UTCDateTime, utcnow

EXACT_STATUSES = ("queued", "running", "done", "failed")


class ExactJob(StoreModel, table=True):
    """The exact explanation of one answer, computed in the background."""
    __tablename__ = "exact_job"

    id: int | None = Field(default=None, primary_key=True)
    turn_id: int = Field(foreign_key="turn.id", ondelete="CASCADE", unique=True, index=True)
    status: str = Field(default="queued", sa_type=String(16), index=True)
    estimate_method: str | None = Field(default=None, max_length=64)
    attempts: int = Field(default=0)
    worker: str | None = Field(default=None, max_length=255)
    error: str | None = Field(default=None, sa_type=Text)
    agreement: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    queued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ExactJobPublic(StoreModel):
    turn_id: int
    status: str
    estimate_method: str | None
    attempts: int
    worker: str | None
    error: str | None
    agreement: dict[str, Any]
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _job(session: Session, turn_id: int, *, lock: bool = False) -> ExactJob | None:
    query = select(ExactJob).where(ExactJob.turn_id == turn_id)
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


def queue_exact(store: Store, turn_id: int, *, estimate_method: str | None) -> ExactJobPublic:
    """Record that ``turn_id`` waits for its exact explanation (again ``queued`` unless it is done)."""

    def write(session: Session) -> ExactJobPublic:
        crud.get_turn(session=session, turn_id=turn_id)
        job = _job(session, turn_id, lock=True)
        if job is None:
            job = ExactJob(turn_id=turn_id, estimate_method=estimate_method)
        elif job.status != "done":
            job.status, job.error, job.queued_at = "queued", None, utcnow()
        session.add(job)
        session.flush()
        return ExactJobPublic.model_validate(job)

    return store._write("queue the exact explanation", write)


def start_exact(store: Store, turn_id: int, *, worker: str) -> bool:
    """Mark the job running (one more attempt); False when it is already done (nothing to compute)."""

    def write(session: Session) -> bool:
        job = _job(session, turn_id, lock=True)
        if job is None:
            job = ExactJob(turn_id=turn_id)
        if job.status == "done":
            return False
        job.status, job.worker, job.started_at, job.attempts = "running", worker, utcnow(), job.attempts + 1
        session.add(job)
        return True

    return store._write("start the exact explanation", write)


def finish_exact(store: Store, turn_id: int, *, explanation: Explanation, table: bytes | None,
                 agreement: dict[str, Any], worker: str, exact_ms: float) -> bool:
    """Store the exact explanation (replacing the estimate), its subset table and the agreement, once: False (and
    nothing written) when the job was done already."""
    explanation_in = explanation_row(explanation)

    def write(session: Session) -> bool:
        job = _job(session, turn_id, lock=True)
        if job is not None and job.status == "done":
            return False
        job = job or ExactJob(turn_id=turn_id, attempts=1)
        turn = crud.get_turn(session=session, turn_id=turn_id)
        crud.upsert_explanation(session=session, turn_id=turn_id, explanation_in=explanation_in)
        tokens = session.exec(select(TurnTokens).where(TurnTokens.turn_id == turn_id)).first()
        if tokens is not None and table is not None:
            tokens.subsets = table
            session.add(tokens)
        crud.add_latency(session=session, turn=turn, exact_ms=round(float(exact_ms), 1))
        job.status, job.worker, job.finished_at, job.agreement, job.error = "done", worker, utcnow(), agreement, None
        session.add(job)
        return True

    return store._write("store the exact explanation", write)


def fail_exact(store: Store, turn_id: int, *, error: str) -> None:
    """Record a failed attempt (the queue may retry it)."""

    def write(session: Session) -> None:
        job = _job(session, turn_id, lock=True)
        if job is not None and job.status != "done":
            job.status, job.error, job.finished_at = "failed", error[:2000], utcnow()
            session.add(job)

    store._write("record the failed exact explanation", write)


def exact_status(store: Store, turn_id: int) -> ExactJobPublic | None:
    """The exact explanation's job for ``turn_id`` (None for a turn that never had one)."""

    def read(session: Session) -> ExactJobPublic | None:
        job = _job(session, turn_id)
        return None if job is None else ExactJobPublic.model_validate(job)

    return store._read("read the exact explanation's state", read)


def queue_depth(store: Store) -> int:
    """Jobs waiting or running: what the UI shows as "exact pending"."""

    def read(session: Session) -> int:
        return int(session.exec(select(func.count()).select_from(ExactJob)
                                .where(ExactJob.status.in_(("queued", "running")))).one())

    return store._read("count the pending exact explanations", read)


def pending_turns(store: Store, *, limit: int = 1000) -> list[int]:
    """Turns whose exact explanation is queued, running (a worker that stopped) or failed, oldest first: what an
    in-process worker takes up again when the app starts, so nothing is dropped."""

    def read(session: Session) -> list[int]:
        rows = session.exec(select(ExactJob.turn_id).where(ExactJob.status != "done")
                            .order_by(ExactJob.queued_at).limit(limit)).all()
        return [int(r) for r in rows]

    return store._read("list the pending exact explanations", read)
