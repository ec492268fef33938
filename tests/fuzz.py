"""Shared pieces of the property-based tests (tests/*/test_fuzz_*.py): hypothesis settings and strategies, and
a memory bound.

The property of every reader of untrusted input: any input gives a result, a counted skip, or the reader's
documented error, never another exception, and Python's memory stays bounded for bounded input.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

T = TypeVar("T")

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    derandomize=True,  # the same examples every run: a failure is reproducible, the suite is not flaky
    database=None,
)

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)


def bounded(fn: Callable[[], T], limit: int = 32 << 20) -> T:
    """`fn()`, asserting that Python's allocations peaked under `limit` bytes more than before it ran.

    Tracing starts on first use and stays on until the module ends (conftest's `tracing_ends_with_module`):
    stopping it after each call raced with pyarrow's worker threads on Python 3.11 (a segfault in about one
    run of the flow-log fuzz tests in ten)."""
    if not tracemalloc.is_tracing():
        tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    assert peak - before < limit, f"peak {peak - before} bytes"
    return result
