"""Giving the allocator's free memory back to the operating system between a large tune's
stages.

glibc keeps what a process frees for its next allocations: the arenas of the worker
threads grow and are trimmed only above a threshold that rises with the sizes freed
(up to 64 MiB per arena), and memory freed in one thread's arena is not reused by
another's. So a large tune's stages each left their temporaries behind as resident
memory, under the next stage's peak: the first default tune of a process at 1M x 100
raised the resident set by 1.10x its inputs while its live arrays peaked at 0.99x
(``bench/bench_tuning.py``, its first-call figure), and kept 0.3x after returning.
``malloc_trim(0)`` hands those free pages back (1-10 ms each at that size), as Dask's
workers do for the same reason; it changes no allocation that is live. A tune calls it
after each stage, and at the end of the work it runs beside them (the diagnosis, the
estimate). A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from collections.abc import Callable

#: Tunes with at least this many scores (rows x labels) release between stages; below,
#: the temporaries are small and the call's cost matters more.
RELEASE_ELEMENTS = 1 << 23


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def can_release() -> bool:
    """Whether :func:`release_free_memory` does anything here (glibc on Linux)."""
    return _TRIM is not None


def release_free_memory() -> None:
    """Return the allocator's free pages to the operating system (glibc's ``malloc_trim``)."""
    if _TRIM is not None:
        _TRIM(0)
