"""The generator's lock, with answering first: a background job (the exact explanation) gives the model up to a
question between its passes.

Contract
--------
:class:`GeneratorLock` is what :class:`~agent.generation.loading.LoadedModel` holds as ``lock``. Used as a plain
lock (``with generator.lock:``, ``acquire``/``release``) it is the *foreground*: a live turn generating its reply or
its instant explanation. :meth:`GeneratorLock.background` is the other kind of holder, for jobs that may wait:

* a background holder takes the lock only when no one holds it, no foreground thread waits for it, and the last
  foreground release is at least ``quiet_s`` old (a turn takes the lock twice in a row, for the reply and then for
  its instant explanation: the job must not slip in between);
* while it holds the lock, the job calls :func:`checkpoint` between units of work (the exact re-scoring does, before
  every batched forward pass: :mod:`agent.attribution.rescoring`). When a foreground thread waits, ``checkpoint``
  releases the lock, waits until the foreground is done (same rule as above) and takes it back, so a question asked
  during an exact job waits for at most one forward pass, not for the job. The job's state (the trie's caches) stays
  in memory meanwhile: nothing is computed twice.

``checkpoint()`` outside a background holder does nothing, so code that re-scores in the foreground is unchanged.
Why not a second model copy for the jobs: it costs the fp32 model's memory again (``bench/priority.py`` measures
it) and on two cores the job would still take CPU from the answer; yielding costs one pass of waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

log = logging.getLogger(__name__)

_local = threading.local()  # .lock: the GeneratorLock this thread holds as a background job


class GeneratorLock:
    """A lock whose foreground holders (plain ``with lock:``) go before background ones (:meth:`background`)."""

    def __init__(self, quiet_s: float = 0.3) -> None:
        self.quiet_s = quiet_s
        self._cond = threading.Condition(threading.Lock())
        self._holder: int | None = None  # thread ident
        self._holder_background = False
        self._waiting = 0  # foreground threads waiting for the lock
        self._foreground_released = 0.0  # time.monotonic() of the last foreground release
        self.yields = 0  # times a background holder gave the lock up to the foreground
        self.yielded_s = 0.0  # how long background holders waited for it in total

    # ------------------------------------------------------------------------------ foreground (a plain lock)
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock as the foreground; ``blocking``/``timeout`` as :meth:`threading.Lock.acquire`."""
        with self._cond:
            if not blocking:
                if self._holder is not None:
                    return False
            else:
                self._waiting += 1
                try:
                    free = self._cond.wait_for(lambda: self._holder is None, None if timeout < 0 else timeout)
                finally:
                    self._waiting -= 1
                if not free:
                    return False
            self._holder, self._holder_background = threading.get_ident(), False
            return True

    def release(self) -> None:
        with self._cond:
            if self._holder is None:
                raise RuntimeError("release of an unlocked GeneratorLock")
            if not self._holder_background:
                self._foreground_released = time.monotonic()
            self._holder, self._holder_background = None, False
            self._cond.notify_all()

    def locked(self) -> bool:
        return self._holder is not None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def waiting(self) -> int:
        """Foreground threads waiting for the lock now."""
        return self._waiting

    # ------------------------------------------------------------------------------ background
    @contextmanager
    def background(self) -> Iterator[GeneratorLock]:
        """Hold the lock as a background job (see the module docstring); call :func:`checkpoint` inside."""
        self._take_background()
        _local.lock = self
        try:
            yield self
        finally:
            _local.lock = None
            self.release()

    def _take_background(self) -> None:
        with self._cond:
            while True:
                self._cond.wait_for(lambda: self._holder is None and self._waiting == 0)
                quiet = self._foreground_released + self.quiet_s - time.monotonic()
                if quiet <= 0:
                    break
                self._cond.wait(quiet)  # a turn may take the lock again at once (its instant explanation)
            self._holder, self._holder_background = threading.get_ident(), True

    def yield_to_foreground(self) -> float:
        """For the background holder: when a foreground thread waits, let it go first and take the lock back
        afterwards; the seconds given up (0 when no one waited)."""
        if self._waiting == 0:  # read without the condition: a stale 0 only defers the hand-over by one pass
            return 0.0
        started = time.monotonic()
        self.yields += 1  # counted when given up (the foreground may finish before the job has it back)
        self.release()
        self._take_background()
        waited = time.monotonic() - started
        self.yielded_s += waited
        log.debug("background job gave the generator up for %.2f s", waited)
        return waited


def checkpoint() -> float:
    """Between two units of background work: give the generator to a waiting answer, if any (see
    :meth:`GeneratorLock.yield_to_foreground`); a no-op (0.0) outside :meth:`GeneratorLock.background`."""
    lock = getattr(_local, "lock", None)
    return lock.yield_to_foreground() if lock is not None else 0.0


@contextmanager
def background_hold(lock) -> Iterator[None]:
    """``lock.background()`` for a :class:`GeneratorLock`; a plain lock is simply held (no yielding); None: nothing."""
    if isinstance(lock, GeneratorLock):
        with lock.background():
            yield
    elif lock is not None:
        with lock:
            yield
    else:
        yield
