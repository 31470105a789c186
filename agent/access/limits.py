"""Failed sign-in limiting: a name that keeps failing is locked for a while, so passwords cannot be guessed at speed.

:class:`SignInLimiter` counts consecutive failures per name (user or API key id). After ``max_failures`` of them
within ``window_s``, further attempts for that name are refused without checking the password, for
``lockout_s`` seconds, doubling with each further lockout up to ``max_lockout_s``; a success clears the count.
It is per process and in memory (a restart forgets it), and safe to share between threads. A lockout refuses
the right password too: that is the point, and also why it is short. :func:`locked_message` is what the person
(or program) signing in is told while a name is locked: that it is locked, why, and for how long.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: list[float]
    locked_until: float = 0.0
    lockouts: int = 0


class SignInLimiter:
    """See the module docstring. ``clock`` is ``time.monotonic`` (tests pass their own)."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 30.0,
                 max_lockout_s: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self.lockout_s, self.max_lockout_s = lockout_s, max_lockout_s
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def wait_s(self, name: str) -> float:
        """Seconds until ``name`` may try again (0 when it may now)."""
        with self._lock:
            record = self._records.get(name)
            return max(0.0, record.locked_until - self._clock()) if record else 0.0

    def failed(self, name: str) -> float:
        """Record a failed attempt; the lockout it starts, in seconds (0 when none)."""
        now = self._clock()
        with self._lock:
            record = self._records.setdefault(name, _Record(failures=[]))
            record.failures = [t for t in record.failures if now - t < self.window_s] + [now]
            if len(record.failures) < self.max_failures:
                return 0.0
            lockout = min(self.max_lockout_s, self.lockout_s * 2 ** record.lockouts)
            record.lockouts += 1
            record.failures = []
            record.locked_until = now + lockout
            if len(self._records) > 10_000:  # bounded: forget names that are not locked
                self._records = {k: r for k, r in self._records.items() if r.locked_until > now}
            return lockout

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._records.pop(name, None)


def duration(seconds: float) -> str:
    """``seconds`` rounded up, for people: ``"28 s"``, ``"2 min 5 s"``, ``"15 min"``."""
    whole = max(1, math.ceil(seconds))
    minutes, rest = divmod(whole, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def locked_message(name: str, wait_s: float) -> str:
    """What a sign-in for a locked ``name`` is answered (see the module docstring)."""
    shown = name if len(name) <= 64 else name[:64] + "…"
    return (f"Sign-in for {shown!r} is locked for {duration(wait_s)} more after repeated failed attempts; until then "
            "even the right password is refused. Try again after that, or ask an admin.")
