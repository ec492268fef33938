"""Progress of a full scan.

On a terminal: one live line per account (units done/total, API calls, throttles, errors, elapsed), redrawn
in place. Under cron: a log line per unit (`UnitLog`). The metrics files are `engine/metrics.py`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from engine.aws.fetch import Fetcher
    from engine.scan.collect import UnitResult


log = logging.getLogger("aws_topology")


class Progress:
    """What a scan reports as it goes (from worker threads, one call at a time): here, nothing."""

    def plan(self, account: str, units: int) -> None:
        """The account's units are known."""

    def unit(self, result: UnitResult) -> None:
        """A unit ended."""

    def close(self) -> None:
        """The scan ended."""


class UnitLog(Progress):
    """Under cron: one log line per unit."""

    def unit(self, result: UnitResult) -> None:
        log.log(
            logging.INFO if result.complete else logging.WARNING,
            "event=unit.done unit=%s status=%s components=%d relations=%d seconds=%.3f%s",
            result.unit.label, result.status, *result.counts, result.seconds,
            f" error={result.error!r}" if result.error else "",
        )  # fmt: skip


class LiveProgress(Progress):
    """One line per account, redrawn in place at most every `interval` seconds."""

    def __init__(self, fetcher: Fetcher, stream: TextIO, interval: float = 0.2) -> None:
        self.fetcher, self.stream, self.interval = fetcher, stream, interval
        self.started = time.monotonic()
        self.total: dict[str, int] = {}
        self.done: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._drawn = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def plan(self, account: str, units: int) -> None:
        with self._lock:
            self.total[account] = units
            self._draw(force=True)

    def unit(self, result: UnitResult) -> None:
        if result.unit.resource.parent is not None:
            return  # child types finish inside their root's unit
        with self._lock:
            self.done[result.unit.account] += 1
            self.failed[result.unit.account] += not result.complete
            if not result.complete:  # above the live lines, which are then drawn anew below it
                up = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
                self.stream.write(f"{up}  {result.status.upper()} {result.unit.label}: {result.error}\n")
                self._drawn = 0
            self._draw(force=not result.complete)

    def close(self) -> None:
        with self._lock:
            self._draw(force=True)

    def lines(self) -> list[str]:
        elapsed = time.monotonic() - self.started
        out = []
        for account, total in self.total.items():
            counts = self.fetcher.per_account.get(account, Counter())
            out.append(
                f"account {account}: units {self.done[account]}/{total} calls {counts['calls']} "
                f"throttles {counts['throttles']} errors {counts['errors']} "
                f"incomplete {self.failed[account]} {elapsed:.0f}s"
            )
        return out

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        lines = self.lines()
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.stream.flush()
        self._drawn = len(lines)
