"""Keep freed memory in the process for the next large array.

glibc hands every large block (over 128 KiB at first) straight back to the
kernel when it is freed, so the next array of that size page-faults and is
zeroed again. The batch builder makes hundreds of short-lived arrays of a few
megabytes; on a million events that page-faulting costs about a third of its
CPU time. :func:`keep_freed_memory` raises glibc's thresholds so that freed
blocks stay in the heap for reuse. The process's memory then stays at its peak
until it exits, which suits a batch run. Elsewhere (not Linux, or not glibc)
it does nothing.

Examples
--------
>>> keep_freed_memory() in (True, False)
True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's ceiling for the mmap threshold on 64-bit builds (32 MiB).
_MMAP_MAX = 32 * 1024 * 1024


@cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
