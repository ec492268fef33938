"""`engine.core.ahead.in_order`: work done on threads ahead of the caller, handed over in order."""

from __future__ import annotations

import threading
import time

from engine.core.ahead import in_order


def test_results_come_in_the_items_order_with_each_failure_in_its_place() -> None:
    first_done = threading.Event()

    def work(n: int) -> int:
        if n == 0:
            assert first_done.wait(30)  # item 0 finishes only after item 1 did
        if n == 1:
            first_done.set()
        if n == 2:
            raise ValueError("two")
        return n * 10

    outcomes = list(in_order(range(4), work, workers=2))
    assert [(n, r if isinstance(r, int) else repr(r)) for n, r in outcomes] == [
        (0, 0), (1, 10), (2, "ValueError('two')"), (3, 30),
    ]  # fmt: skip


def test_work_runs_at_most_ahead_items_past_the_one_the_caller_holds() -> None:
    started: list[int] = []
    for ahead in (0, 1, 3):
        started.clear()
        for n, _ in in_order(range(6), started.append, workers=1, ahead=ahead):
            time.sleep(0.01)  # what runs ahead has time to start
            assert max(started) <= n + ahead
        assert started == list(range(6))


def test_stopping_early_cancels_work_not_started_and_waits_for_work_running() -> None:
    running, release, finished = threading.Event(), threading.Event(), []

    def work(n: int) -> int:
        if n == 1:
            running.set()
            assert release.wait(30)
        finished.append(n)
        return n

    reading = in_order(range(10), work, workers=1, ahead=2)
    assert next(reading) == (0, 0)
    assert running.wait(30)  # item 1 runs; item 2 waits for the one worker
    threading.Timer(0.2, release.set).start()
    reading.close()  # returns once item 1 is done
    assert finished == [0, 1]
