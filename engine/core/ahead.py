"""Work done ahead on threads, handed over in order: downloads and decompression (which release the GIL)
overlap what the caller does with the item before.

`in_order(items, work)` yields each item with what `work(item)` returned, or the `Exception` it raised for
the caller to judge; `work` runs on `workers` threads for up to `ahead` items past the one the caller holds.
When the caller stops early, work not started is cancelled and work running is waited for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_order(
    items: Iterable[T], work: Callable[[T], R], workers: int = 1, ahead: int = 2, name: str = "ahead"
) -> Iterator[tuple[T, R | Exception]]:
    """Each item and `work(item)`'s result or exception, in the items' order (see the module)."""
    waiting: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        try:
            for item in items:
                waiting.append((item, pool.submit(work, item)))
                if len(waiting) > ahead:
                    yield _handed(*waiting.popleft())
            while waiting:
                yield _handed(*waiting.popleft())
        finally:
            for _, future in waiting:
                future.cancel()  # the pool's exit waits for those already running


def _handed(item: T, future: Future[R]) -> tuple[T, R | Exception]:
    try:
        return item, future.result()
    except Exception as exc:  # the item's own failure
        return item, exc
