"""Exact explanations in the background: the reply and its instant estimate go out at once, the exact Shapley
explanation follows and replaces the estimate in the store.

    background = start_background(settings, store, agent)      # None without a store
    runner = ConversationRunner(agent, store, background=background)

* :mod:`~agent.background.jobs` — one job: compute the exact explanation of a stored turn, compare it with the
  stored estimate, store both facts once (:func:`agent.store.exactjobs.finish_exact`);
* :mod:`~agent.background.inprocess` — the embedded default: a worker thread in the app's process;
* :mod:`~agent.background.rqueue` — with ``Settings.queue_url``: RQ on Redis, ``moments worker`` processes on any
  machine, abandoned jobs (a killed worker) retried.

A backend has ``submit(turn_id)`` and ``depth()`` (jobs waiting or running). The store's ``exact_job`` table is the
record of truth either way (:mod:`agent.store.exactjobs`).
"""

from __future__ import annotations

from typing import Protocol


class Background(Protocol):
    def submit(self, turn_id: int) -> None: ...

    def depth(self) -> int: ...


def start_background(settings, store, agent) -> Background | None:
    """The backend the settings name (None without a store: nothing to store an exact explanation in)."""
    if store is None:
        return None
    if settings.queue_url:
        from agent.background.rqueue import RQBackend

        return RQBackend(settings.queue_url, settings)
    from agent.background.inprocess import InProcessWorker

    worker = InProcessWorker(store, lambda: agent.generator)
    worker.resume()
    return worker
