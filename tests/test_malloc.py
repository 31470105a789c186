"""agent.malloc: the arena limit is really in force in the process (glibc's own report, malloc_info), and the
long-running commands set it from the setting."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from agent.settings import Settings

# Counts the arenas glibc reports after 6 threads each malloc once (each new allocating thread gets its own arena
# until the limit is reached).
PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, sys, tempfile, threading
    from agent.malloc import limit_arenas
    n = int(sys.argv[1])
    print("limited", limit_arenas(n))
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    keep = []
    def work():
        keep.append(libc.malloc(4096))
    threads = [threading.Thread(target=work) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        fp = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        print("heaps", open(f.name).read().count("<heap nr="))
""")


def _heaps(limit: int) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(limit)], capture_output=True, text=True, env=env,
                         check=True, timeout=60).stdout.split()
    return out[1], int(out[3])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_arena_limit_bounds_the_arenas_glibc_creates():
    limited, heaps = _heaps(1)
    assert limited == "True"
    assert heaps == 1
    unlimited, heaps_default = _heaps(0)
    assert unlimited == "False"
    assert heaps_default > 1  # the probe itself can tell: without the limit, the threads got arenas of their own


def test_the_environment_variable_wins(monkeypatch):
    from agent.malloc import limit_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas(2) is True  # glibc read the variable at start; nothing to set


def test_the_default_is_two_arenas_and_zero_turns_it_off(monkeypatch):
    monkeypatch.delenv("MOMENTS_MALLOC_ARENAS", raising=False)
    assert Settings().malloc_arenas == 2
    monkeypatch.setenv("MOMENTS_MALLOC_ARENAS", "0")
    assert Settings().malloc_arenas == 0
