"""Scheduler: the tasks of one account, `workers` at once, on threads a `Pool` shares across accounts.

AWS limits each account separately, so each account has a `Scheduler` of its own (`workers` tasks running at
once), and all of them share one `Pool` of threads, bounded by `max_threads` (what the machine can hold). The
pool grows whenever a task could run and no thread is free, up to that bound; no account waits for another's
threads. Units, per-item detail calls, child listings and region-wide join calls of an account share its
scheduler, so one large unit fans its items out instead of making them one after another. A task that waits
for others helps: `map` runs the caller's own items too, and `Task.result` runs a task that no thread has
started yet, so nested fan-outs never deadlock, at an account's bound or at the pool's. Fan-out work is taken
before new units (urgent first): a started unit finishes before the next one starts, which bounds what the
run holds at once.

With one worker (and one thread) everything runs one after another in that thread (the cassette tests need
one thread).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_PENDING, _RUNNING, _DONE = range(3)


class Task(Generic[T]):
    """A unit of work run once: by a pool thread, or by whoever asks for its result first."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._state = _PENDING
        self._cond = threading.Condition()
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        with self._cond:
            if self._state != _PENDING:
                return
            self._state = _RUNNING
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to whoever asks for the result
            self._error = exc
        finally:
            with self._cond:
                self._state = _DONE
                self._cond.notify_all()

    def result(self, help: bool = True) -> T:
        """The task's value (or its exception raised); with `help`, run it here if nobody has started it."""
        if help:
            self.run()
        with self._cond:
            self._cond.wait_for(lambda: self._state == _DONE)
        if self._error is not None:
            raise self._error
        return self._value

    def done(self) -> bool:
        return self._state == _DONE

    def cancel(self) -> None:
        """Never run it if it has not started (its result is then None)."""
        with self._cond:
            if self._state == _PENDING:
                self._state = _DONE
                self._cond.notify_all()


class Pool:
    """Threads, started when a queued task could run and none is free, at most `max_threads`.

    With `max_items`, new (normal) tasks wait while the items `hold` says are in flight reach it; urgent ones
    never wait, so the holders finish and `release` lets the next start.
    """

    def __init__(self, max_threads: int, max_items: int | None = None) -> None:
        self.max_threads = max(1, max_threads)
        self.max_items = max_items
        self._held = 0  # items of running tasks (`hold`, `release`)
        self._cond = threading.Condition()
        self._schedulers: list[Scheduler] = []
        self._threads: list[threading.Thread] = []
        self._free = 0  # threads not running a task (waiting, or just started)
        self._turn = itertools.count()  # which scheduler is looked at first: each gets its turn
        self._closed = False

    def _ready(self) -> int:
        return sum(min(len(s._urgent) + len(s._normal), s.workers - s._running) for s in self._schedulers)

    def _queue(self, scheduler: Scheduler, task: Task, urgent: bool) -> None:
        with self._cond:
            if scheduler not in self._schedulers:
                self._schedulers.append(scheduler)
            (scheduler._urgent if urgent else scheduler._normal).append(task)
            if self._free < self._ready() and len(self._threads) < self.max_threads:
                self._free += 1
                thread = threading.Thread(target=self._work, name=f"worker-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()

    def _take(self) -> tuple[Scheduler, Task] | None:
        """The next task of a scheduler below its bound: urgent ones first, the schedulers in turn."""
        count = len(self._schedulers)
        start = next(self._turn) % count if count else 0
        turn = self._schedulers[start:] + self._schedulers[:start]
        open_ = [s for s in turn if s._running < s.workers]
        for scheduler in open_:
            if scheduler._urgent:
                scheduler._running += 1
                return scheduler, scheduler._urgent.popleft()
        if self.max_items is not None and self._held >= self.max_items:
            return None  # new tasks wait: `release` wakes the threads
        for scheduler in open_:
            if scheduler._normal:
                scheduler._running += 1
                return scheduler, scheduler._normal.popleft()
        return None

    def hold(self, items: int) -> None:
        """A running task holds `items` (listed items in memory) until it `release`s them."""
        with self._cond:
            self._held += items

    def release(self, items: int) -> None:
        with self._cond:
            self._held -= items
            self._cond.notify_all()

    def _leave(self, scheduler: Scheduler) -> None:
        """Forget a scheduler whose work is over; what it left queued (idle fan-out helpers) never runs."""
        with self._cond:
            for task in (*scheduler._urgent, *scheduler._normal):
                task.cancel()
            scheduler._urgent.clear()
            scheduler._normal.clear()
            if scheduler in self._schedulers:
                self._schedulers.remove(scheduler)

    def _work(self) -> None:
        with self._cond:
            while True:
                taken = self._take()
                if taken is None:
                    if self._closed and not any(s._urgent or s._normal for s in self._schedulers):
                        self._cond.notify_all()  # a thread that waited for a busy scheduler may stop too
                        return
                    self._cond.wait()
                    continue
                scheduler, task = taken
                self._free -= 1
                self._cond.release()
                try:
                    task.run()
                finally:
                    self._cond.acquire()
                    self._free += 1
                    scheduler._running -= 1

    def close(self) -> None:
        """Let the threads finish what is queued, then stop them."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Scheduler:
    """One account's tasks, at most `workers` running at once, on `pool`'s threads (its own pool if none)."""

    def __init__(self, workers: int, pool: Pool | None = None) -> None:
        self.workers = max(1, workers)
        self._own = pool is None
        self.pool = Pool(self.workers) if pool is None else pool
        self._urgent: deque[Task] = deque()
        self._normal: deque[Task] = deque()
        self._running = 0  # guarded by the pool's lock

    def spawn(self, fn: Callable[[], T], urgent: bool = True) -> Task[T]:
        """Queue `fn`; urgent tasks (work of a started unit) go before normal ones (new units)."""
        task: Task[T] = Task(fn)
        self.pool._queue(self, task, urgent)
        return task

    def hold(self, items: int) -> None:
        """See `Pool.hold`: new tasks of every scheduler on the pool wait while too many items are held."""
        self.pool.hold(items)

    def release(self, items: int) -> None:
        self.pool.release(items)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`fn` over `items`, in order, fanned out over the account's workers while the caller runs its share.

        The first exception (in item order) is raised once every started item is done; after an
        exception no new item is started.
        """
        todo = list(items)
        if self.workers == 1 or len(todo) < 2:
            return [fn(item) for item in todo]
        results: list[Any] = [None] * len(todo)
        errors: dict[int, BaseException] = {}
        cond = threading.Condition()
        state = {"next": 0, "active": 0}

        def drain() -> None:
            while True:
                with cond:
                    index = state["next"]
                    if index >= len(todo) or errors:
                        return
                    state["next"] += 1
                    state["active"] += 1
                try:
                    results[index] = fn(todo[index])
                except BaseException as exc:
                    with cond:
                        errors[index] = exc
                finally:
                    with cond:
                        state["active"] -= 1
                        cond.notify_all()

        for _ in range(min(self.workers - 1, len(todo) - 1)):
            self.spawn(drain)
        drain()
        with cond:
            cond.wait_for(lambda: state["active"] == 0)
        if errors:
            raise errors[min(errors)]
        return results

    def close(self) -> None:
        """Its own pool: stop it once what is queued is done. A shared one: leave it (its owner closes it)."""
        if self._own:
            self.pool.close()
        else:
            self.pool._leave(self)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Serial(Scheduler):
    """No pool: every task runs in the caller, when its result is asked for (tests, event deltas)."""

    def __init__(self) -> None:
        super().__init__(1)

    def spawn(self, fn: Callable[[], T], urgent: bool = True) -> Task[T]:
        return Task(fn)
