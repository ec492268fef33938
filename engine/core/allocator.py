"""glibc's malloc: two arenas for the whole process instead of one per thread (up to 8 per core).

Memory a thread frees stays in its arena, for that arena's threads only, so a scan's peak grows with its
threads (8 per account side by side). The job's threads mostly wait on AWS, so two shared arenas cost no time
that could be measured, and take 8 to 12% off the peak (docs/benchmarks.md, "Memory").
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_arenas(count: int = 2) -> bool:
    """At most `count` arenas from now on (call it before threads start); whether the limit was set.
    MALLOC_ARENA_MAX in the environment wins; on another C library than glibc nothing is done."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, count) == 1)
