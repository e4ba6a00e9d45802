"""The module each `regua worker` process imports: the broker and actors from the environment."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from regua.assembly import build_jobs, lazy_context
from regua.logs import configure_logging
from regua.sandbox.dev import with_dev_defaults
from regua.settings import Settings

M_ARENA_MAX = -8
MALLOC_ARENAS = 2
"""glibc gives each new thread an arena of its own, up to eight per core: after a minute of `bench.e2e` a
worker process held 132 MB with them and 115 MB with two, settling as fast (Python's small objects
are pymalloc's, not malloc's)."""


def limit_malloc_arenas() -> None:
    """Before the job threads start: at most MALLOC_ARENAS malloc arenas (unless MALLOC_ARENA_MAX says)."""
    libc = ctypes.util.find_library("c")
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:  # glibc read that variable itself at start
        return
    mallopt = getattr(ctypes.CDLL(libc), "mallopt", None)  # musl has no arenas and no mallopt
    if mallopt is not None:
        mallopt(M_ARENA_MAX, MALLOC_ARENAS)


limit_malloc_arenas()
settings = with_dev_defaults(Settings.from_env())
configure_logging(settings)
jobs = build_jobs(settings, lazy_context(settings))
broker = jobs.broker
