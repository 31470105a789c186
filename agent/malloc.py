"""Process memory tuning for the long-running commands (``moments serve``, ``moments worker``): glibc malloc arenas.

glibc gives each thread that allocates concurrently its own malloc arena (up to 8 per core) and rarely returns an
arena's freed pages to the system. The app runs the model from Gradio's worker threads and the background
explanation worker, so its resident memory rose in steps over a 20-minute soak (155 MB over the second half) and
did not with ``MALLOC_ARENA_MAX=2`` (bench/results/soak.md and soak-malloc-arena-2.md). :func:`limit_arenas` sets
the same limit from inside the process (``mallopt(M_ARENA_MAX, n)``), as early as possible: arenas already created
stay, later threads share the ``n`` arenas. On a C library other than glibc it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

#: glibc's mallopt parameter number for the arena limit (malloc.h: ``#define M_ARENA_MAX -8``).
M_ARENA_MAX = -8


def limit_arenas(n: int) -> bool:
    """Limit glibc's malloc arenas to ``n`` (0: leave glibc's default). True when the limit is in force.

    ``MALLOC_ARENA_MAX`` in the environment wins: glibc read it at start, and the user set it on purpose."""
    if n <= 0:
        return False
    if os.environ.get("MALLOC_ARENA_MAX"):
        log.info("malloc arenas: MALLOC_ARENA_MAX=%s from the environment", os.environ["MALLOC_ARENA_MAX"])
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("malloc arenas: not glibc (no mallopt); the C library's default applies")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_ARENA_MAX, n) != 1:
        log.warning("malloc arenas: mallopt(M_ARENA_MAX, %d) refused; the C library's default applies", n)
        return False
    log.info("malloc arenas: at most %d (MOMENTS_MALLOC_ARENAS)", n)
    return True
