"""Scheduler: one bounded pool of worker threads for every task of a run, across accounts.

Units, per-item detail calls, child listings and region-wide join calls share the pool, so one large unit
fans its items out over idle workers instead of making them one after another. A task that waits for others
helps: `map` runs the caller's own items too, and `Task.result` runs a task that no worker has started yet,
so nested fan-outs never deadlock the pool. Fan-out work is taken before new units (the urgent queue): a
started unit finishes before the next one starts, which bounds what the run holds at once.

With one worker everything runs one after another in that worker (the cassette tests need one thread).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_PENDING, _RUNNING, _DONE = range(3)


class Task(Generic[T]):
    """A unit of work run once: by a pool worker, or by whoever asks for its result first."""

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


class Scheduler:
    """A bounded pool of `workers` threads, started on demand; urgent tasks are taken first."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._urgent: deque[Task] = deque()
        self._normal: deque[Task] = deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def spawn(self, fn: Callable[[], T], urgent: bool = True) -> Task[T]:
        """Queue `fn`; urgent tasks (work of a started unit) go before normal ones (new units)."""
        task: Task[T] = Task(fn)
        with self._cond:
            (self._urgent if urgent else self._normal).append(task)
            if self._idle == 0 and len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name=f"worker-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()
        return task

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`fn` over `items`, in order, fanned out over idle workers while the caller runs its share.

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

    def _work(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                self._cond.wait_for(lambda: self._urgent or self._normal or self._closed)
                self._idle -= 1
                if not (self._urgent or self._normal):
                    return
                task = self._urgent.popleft() if self._urgent else self._normal.popleft()
            task.run()

    def close(self) -> None:
        """Let the workers finish what is queued, then stop them."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

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
