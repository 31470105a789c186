"""The embedded background worker: one thread in the app's process computes exact explanations in turn order.

:meth:`InProcessWorker.submit` queues a stored turn (its ``exact_job`` row says ``queued``); the thread runs
:func:`agent.background.jobs.run_exact` for each. The generator is the app's own: its lock
(:class:`agent.generation.priority.GeneratorLock`) serialises the exact re-scoring with the live turns, and a live
turn goes first (the job yields the model between its forward passes). :meth:`~InProcessWorker.resume` queues again what the store still lists as pending
(the app stopped before they were done), so nothing is dropped; :meth:`~InProcessWorker.wait` blocks until the queue
is empty (tests, a CLI that wants the exact explanation before it exits).

The thread is not a daemon: when the program ends it finishes the job in hand (torch must not be torn down under a
running job) and stops; jobs still queued stay ``queued`` in the store for the next start.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class InProcessWorker:
    """A (non-daemon) thread computing exact explanations for ``store`` with the generator ``generator()`` returns."""

    def __init__(self, store, generator: Callable[[], object], *, name: str | None = None) -> None:
        self.store = store
        self._generator = generator
        self.name = name or f"in-process:{os.getpid()}"
        self._queue: queue.Queue[int] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failures = 0

    def submit(self, turn_id: int) -> None:
        self._queue.put(int(turn_id))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="moments-exact", daemon=False)
                self._thread.start()

    def depth(self) -> int:
        """Jobs queued or running in this process."""
        return self._queue.unfinished_tasks

    def resume(self) -> int:
        """Queue the store's pending exact explanations again; how many."""
        from agent.store.exactjobs import pending_turns

        turns = pending_turns(self.store)
        for turn_id in turns:
            self.submit(turn_id)
        if turns:
            log.info("resuming %d pending exact explanations", len(turns))
        return len(turns)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted job is finished (True) or ``timeout`` seconds passed (False)."""
        done = threading.Event()

        def joiner() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=joiner, daemon=True).start()
        return done.wait(timeout)

    def _run(self) -> None:
        from agent.background.jobs import run_exact

        while True:
            if not threading.main_thread().is_alive():  # the program is ending: leave the rest queued in the store
                return
            try:
                turn_id = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                run_exact(self.store, self._generator(), turn_id, worker=self.name)
            except Exception:
                self.failures += 1
                log.exception("exact explanation of turn %d failed", turn_id)
            finally:
                self._queue.task_done()
