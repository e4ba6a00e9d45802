"""How a worker process is set up before its job threads start: fewer malloc arenas, shorter GIL turns."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_ARENA_MAX = -8
MALLOC_ARENAS = 2
"""glibc gives each new thread an arena of its own, up to eight per core: after a minute of `bench.e2e` a
worker process held 132 MB with them and 115 MB with two, settling as fast (Python's small objects
are pymalloc's, not malloc's)."""

SWITCH_INTERVAL = 0.001
"""A job thread back from the database waits for the GIL while another thread runs Python: for up to
5 ms by default, at each of a settlement's dozen round trips. With 1 ms, `bench.e2e` at a fixed
24 payments a second had a p99 to the block lifted of 201 and 229 ms, against 313 and 324 with the
default, the runs alternated (BENCHMARKS.md)."""


def limit_malloc_arenas() -> None:
    """At most MALLOC_ARENAS malloc arenas (unless MALLOC_ARENA_MAX says), before the job threads start."""
    libc = ctypes.util.find_library("c")
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:  # glibc read that variable itself at start
        return
    mallopt = getattr(ctypes.CDLL(libc), "mallopt", None)  # musl has no arenas and no mallopt
    if mallopt is not None:
        mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def tune_worker_process() -> None:
    limit_malloc_arenas()
    sys.setswitchinterval(SWITCH_INTERVAL)
