"""Exact explanations through a task queue: RQ on Redis (``Settings.queue_url``), run by ``moments worker``.

* :class:`RQBackend` (the app's side) enqueues ``exact_job(turn_id)`` on the queue :data:`QUEUE_NAME` with
  ``Retry(max=3)`` and ``Settings.exact_job_timeout_s``.
* :func:`run_worker` (``moments worker``) loads the store and the generator once, then runs jobs one at a time in
  its own process (:class:`MomentsWorker`, an RQ ``SimpleWorker``: no fork per job, the model stays loaded). Every
  ``worker_maintenance_s`` one live worker looks for *abandoned* jobs — still marked started
  ``exact_job_timeout_s + worker_grace_s`` after they began, so their worker died — and RQ retries them (while
  retries are left).
* Each job is taken by one worker (Redis' atomic dequeue), and the store writes a turn's exact explanation at most
  once (:func:`agent.store.exactjobs.finish_exact`), so a retried job never stores twice.

Workers need the same settings as the app: the database URL (PostgreSQL when they run on other machines), the model
and adapter, the queue URL.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

log = logging.getLogger(__name__)

QUEUE_NAME = "moments-exact"


def _redis(url: str):
    from redis import Redis

    return Redis.from_url(url)


class RQBackend:
    """Enqueues exact-explanation jobs for ``moments worker`` processes."""

    def __init__(self, url: str, settings) -> None:
        from rq import Queue

        self.url = url
        self.settings = settings
        self.queue = Queue(QUEUE_NAME, connection=_redis(url))

    def submit(self, turn_id: int) -> None:
        from rq import Retry

        self.queue.enqueue("agent.background.rqueue.exact_job", int(turn_id), retry=Retry(max=3),
                           job_timeout=self.settings.exact_job_timeout_s, result_ttl=3600, failure_ttl=7 * 86400,
                           description=f"exact explanation of turn {int(turn_id)}")

    def depth(self) -> int:
        """Jobs waiting, plus jobs started and not finished."""
        from rq.registry import StartedJobRegistry

        return len(self.queue) + len(StartedJobRegistry(queue=self.queue))


@dataclass
class _Context:
    store: object
    generator: object
    name: str


_context: _Context | None = None


def _load_context(settings=None, name: str | None = None) -> _Context:
    global _context
    if _context is None:
        from agent.generation.loading import load_generator
        from agent.settings import Settings
        from agent.store import Store

        settings = settings or Settings()
        _context = _Context(Store(settings.db_url), load_generator(settings),
                            name or f"{socket.gethostname()}:{os.getpid()}")
    return _context


def exact_job(turn_id: int) -> bool:
    """The job function: compute and store the exact explanation of ``turn_id`` (True when this run stored it)."""
    from agent.background.jobs import run_exact

    ctx = _load_context()
    return run_exact(ctx.store, ctx.generator, int(turn_id), worker=ctx.name)


def _worker_class():
    from rq.worker import SimpleWorker

    class MomentsWorker(SimpleWorker):
        """An RQ SimpleWorker whose started jobs count as abandoned ``grace`` seconds after their timeout."""

        grace = 60

        def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
            if job.timeout == -1 or job.timeout is None:
                return super().get_heartbeat_ttl(job, working_time)
            return int(job.timeout) + int(self.grace)

    return MomentsWorker


def run_worker(settings, *, burst: bool = False, name: str | None = None) -> int:
    """Run a worker on ``settings.queue_url`` until stopped (or, with ``burst``, until the queue is empty)."""
    from rq import Queue

    if not settings.queue_url:
        from agent.settings import SettingsError

        raise SettingsError("moments worker needs a queue: set MOMENTS_QUEUE_URL (e.g. redis://127.0.0.1:6379/0)")
    connection = _redis(settings.queue_url)
    ctx = _load_context(settings, name)
    log.info("worker %s: store %s, model loaded; waiting for jobs on %s", ctx.name, ctx.store.url, QUEUE_NAME)
    cls = _worker_class()
    worker = cls([Queue(QUEUE_NAME, connection=connection)], connection=connection, name=ctx.name.replace(":", "-"),
                 maintenance_interval=settings.worker_maintenance_s,
                 worker_ttl=settings.worker_maintenance_s + 15)  # an idle worker wakes every maintenance_s
    worker.grace = settings.worker_grace_s
    worker.work(burst=burst, logging_level="INFO")
    return 0
