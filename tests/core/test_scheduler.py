"""The shared scheduler: fan-out over idle workers, callers that help, no deadlock when tasks nest."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest

from engine.core.scheduler import Pool, Scheduler, Serial


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


def test_new_units_of_every_account_wait_while_the_pool_holds_its_items_and_fan_out_work_goes_on():
    started: list[str] = []
    listed, done = threading.Event(), threading.Event()
    with Pool(8, max_items=100) as pool:
        first, second = Scheduler(4, pool), Scheduler(4, pool)

        def big_unit() -> None:
            first.hold(100)  # its listing: the budget is reached
            listed.set()
            assert first.map(lambda n: n * 2, range(4)) == [0, 2, 4, 6]  # its fan-out still runs
            assert second.spawn(lambda: "detail").result(help=False) == "detail"  # urgent: never waits
            done.wait(5)
            started.append("big released")
            first.release(100)

        unit = first.spawn(big_unit, urgent=False)
        assert listed.wait(5)
        others = [
            s.spawn(partial(started.append, f"unit {n}"), urgent=False) for n, s in enumerate((first, second))
        ]
        time.sleep(0.1)
        assert started == []  # neither account started a new unit while the items were held
        done.set()
        for task in (unit, *others):
            task.result(help=False)
    assert started[0] == "big released" and sorted(started[1:]) == ["unit 0", "unit 1"]


class Peak:
    """How many callers are inside at once, at most (per key and in all)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.threads: set[str] = set()

    def enter(self, *keys: str) -> None:
        with self.lock:
            self.threads.add(threading.current_thread().name)
            for key in keys:
                self.now[key] = self.now.get(key, 0) + 1
                self.most[key] = max(self.most.get(key, 0), self.now[key])

    def leave(self, *keys: str) -> None:
        with self.lock:
            for key in keys:
                self.now[key] -= 1


def test_the_pool_grows_while_tasks_wait_so_a_fan_out_gets_every_worker():
    barrier = threading.Barrier(16, timeout=10)  # breaks (raises) unless all sixteen items run at once
    peak = Peak()

    def item(n: int) -> int:
        peak.enter("all")
        barrier.wait()
        peak.leave("all")
        return n

    with Scheduler(16) as scheduler:
        assert scheduler.map(item, range(16)) == list(range(16))
    assert peak.most["all"] == 16
    assert len(peak.threads) == 16  # the caller and fifteen pool threads


def test_accounts_run_side_by_side_each_with_its_own_workers():
    barrier = threading.Barrier(6, timeout=10)  # both accounts' three workers at once
    with Pool(64) as pool:
        schedulers = [Scheduler(3, pool) for _ in range(2)]
        tasks = [s.spawn(barrier.wait, urgent=False) for s in schedulers for _ in range(3)]
        for task in tasks:
            task.result(help=False)


def test_an_account_never_runs_more_than_its_workers_at_once():
    peak = Peak()
    with Pool(64) as pool:
        schedulers = {name: Scheduler(3, pool) for name in ("a", "b")}
        barriers = {name: threading.Barrier(3, timeout=10) for name in schedulers}

        def unit(name: str) -> None:
            peak.enter(name, "all")
            barriers[name].wait()  # three of the account at once, in rounds
            time.sleep(0.001)
            peak.leave(name, "all")

        tasks = [
            s.spawn(lambda name=name: unit(name), urgent=urgent)
            for name, s in schedulers.items()
            for urgent in (True, False) * 9
        ]
        for task in tasks:
            task.result(help=False)
    assert peak.most["a"] == peak.most["b"] == 3


def test_all_accounts_together_never_use_more_threads_than_the_pool_holds():
    peak = Peak()

    def unit() -> None:
        peak.enter("all")
        time.sleep(0.002)
        peak.leave("all")

    with Pool(5) as pool:
        schedulers = [Scheduler(4, pool) for _ in range(3)]
        tasks = [s.spawn(unit, urgent=False) for s in schedulers for _ in range(12)]
        for task in tasks:
            task.result(help=False)
        assert len(pool._threads) == 5
    assert peak.most["all"] <= 5
    assert len(peak.threads) == 5


def test_nested_fan_outs_finish_at_the_pools_bound_and_at_each_accounts():
    sums: list[int] = []

    def run() -> None:
        with Pool(2) as pool:
            schedulers = [Scheduler(4, pool) for _ in range(3)]

            def unit(s: Scheduler, u: int) -> int:
                return sum(s.map(lambda i: sum(s.map(lambda j: u * i * j, range(5))), range(20)))

            units = [s.spawn(partial(unit, s, u), urgent=False) for s in schedulers for u in range(4)]
            sums.extend(task.result(help=False) for task in units)

    scan = threading.Thread(target=run, daemon=True)
    scan.start()
    scan.join(60)  # a deadlock never ends; a pass takes milliseconds
    assert not scan.is_alive()
    assert sums == [u * sum(range(20)) * sum(range(5)) for _ in range(3) for u in range(4)]


def test_one_worker_and_one_thread_run_everything_in_that_thread():
    threads: set[str] = set()

    def item(n: int) -> int:
        threads.add(threading.current_thread().name)
        return n

    with Pool(1) as pool:
        schedulers = [Scheduler(1, pool) for _ in range(3)]
        tasks = [
            s.spawn(lambda s=s: s.map(item, range(10)), urgent=False) for s in schedulers for _ in range(4)
        ]
        tasks += [s.spawn(lambda: item(0)) for s in schedulers]
        for task in tasks:
            task.result(help=False)
        assert len(pool._threads) == 1
    assert threads == {"worker-0"}


def test_closing_the_pool_stops_threads_that_waited_for_a_busy_account():
    release = threading.Event()
    pool = Pool(4)
    busy, other = Scheduler(1, pool), Scheduler(1, pool)
    busy.spawn(release.wait)
    queued = [busy.spawn(lambda: None) for _ in range(2)]  # wait for the busy account's one worker
    other.spawn(lambda: None).result(help=False)  # on a second thread, which then waits for work
    closing = threading.Thread(target=pool.close, daemon=True)
    closing.start()
    while not pool._closed:
        time.sleep(0.001)
    time.sleep(0.05)  # the second thread, woken by the close, waits again: the busy account has work queued
    release.set()
    closing.join(60)  # never ends when the waiting thread is not told to stop; a pass takes milliseconds
    assert not closing.is_alive()
    assert all(task.done() for task in queued)
