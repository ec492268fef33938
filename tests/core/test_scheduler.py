"""The shared scheduler: fan-out over idle workers, callers that help, no deadlock when tasks nest."""

from __future__ import annotations

import threading
import time

import pytest

from engine.core.scheduler import Scheduler, Serial


def test_map_keeps_the_order_and_runs_the_items_side_by_side():
    barrier = threading.Barrier(4, timeout=10)  # breaks (raises) unless four items run at the same time

    def item(n: int) -> tuple[int, str]:
        barrier.wait()
        return n * n, threading.current_thread().name

    with Scheduler(4) as scheduler:
        results = scheduler.map(item, range(4))

    assert [square for square, _ in results] == [0, 1, 4, 9]
    assert len({thread for _, thread in results}) == 4


def test_nested_fan_outs_finish_even_when_every_worker_waits():
    with Scheduler(2) as scheduler:
        units = [
            scheduler.spawn(lambda u=u: sum(scheduler.map(lambda i: u * i, range(50))), urgent=False)
            for u in range(6)
        ]
        assert [t.result(help=False) for t in units] == [u * sum(range(50)) for u in range(6)]


def test_a_task_no_worker_has_started_runs_in_the_thread_that_needs_it():
    release = threading.Event()
    with Scheduler(1) as scheduler:
        blocker = scheduler.spawn(release.wait)
        time.sleep(0.05)  # the only worker is now busy
        queued = scheduler.spawn(lambda: threading.current_thread().name)
        assert queued.result() == threading.current_thread().name
        release.set()
        blocker.result()


def test_the_first_error_in_item_order_is_raised_and_no_new_item_starts_after_it():
    started: list[int] = []

    def item(n: int) -> int:
        started.append(n)
        if n in (3, 5):
            raise ValueError(n)
        return n

    with pytest.raises(ValueError, match="3"):
        Serial().map(item, range(10))
    assert started == [0, 1, 2, 3]
    started.clear()
    with Scheduler(3) as scheduler, pytest.raises(ValueError, match=r"^3$"):
        scheduler.map(item, range(200))
    assert len(started) < 200


def test_work_of_started_units_goes_before_new_units():
    order: list[str] = []
    gate = threading.Event()
    with Scheduler(1) as scheduler:
        scheduler.spawn(gate.wait)
        time.sleep(0.05)
        tasks = [scheduler.spawn(lambda: order.append("unit"), urgent=False)]
        tasks.append(scheduler.spawn(lambda: order.append("detail")))
        gate.set()
        for task in tasks:
            task.result(help=False)
    assert order == ["detail", "unit"]
