"""Progress and metrics of a full scan.

On a terminal: one live line per account (units done/total, API calls, throttles, errors, elapsed), redrawn
in place. Under cron: a log line per unit (`UnitLog`); after the scan, a metrics file in the Prometheus text
format (per-type component counts, relations, calls, throttles, errors, incomplete units, duration per
account) that a node-exporter textfile collector or any scraper can read, written atomically. The events
and flow-log phases write one file each (`phase_metrics_text`: last run complete, objects, deleted, corrupt,
duration).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from engine.aws.fetch import Fetcher
    from engine.scan.collect import UnitResult
    from engine.scan.full_scan import AccountScan


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
            result.unit.label, result.status, len(result.components), len(result.relations), result.seconds,
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


def metrics_text(
    results: list[AccountScan], fetcher: Fetcher, seconds: float, now: float | None = None
) -> str:
    """The scan's metrics in the Prometheus text exposition format."""
    rows: dict[str, list[str]] = {
        "aws_topology_scan_components": [],
        "aws_topology_scan_relations": [],
        "aws_topology_scan_api_calls": [],
        "aws_topology_scan_throttles": [],
        "aws_topology_scan_errors": [],
        "aws_topology_scan_incomplete_units": [],
        "aws_topology_scan_complete": [],
        "aws_topology_scan_duration_seconds": [],
    }
    for a in results:
        label = f'account="{a.account}"'
        counts = fetcher.per_account.get(a.account, Counter())
        for name, count in sorted(a.component_types.items()):
            rows["aws_topology_scan_components"].append(f'{{{label},type="{name}"}} {count}')
        rows["aws_topology_scan_relations"].append(f"{{{label}}} {a.relation_count}")
        for key in ("calls", "throttles", "errors"):
            name = "aws_topology_scan_api_calls" if key == "calls" else f"aws_topology_scan_{key}"
            rows[name].append(f"{{{label}}} {counts[key]}")
        rows["aws_topology_scan_incomplete_units"].append(
            f"{{{label}}} {sum(not u.complete for u in a.units)}"
        )
        rows["aws_topology_scan_complete"].append(f"{{{label}}} {int(a.complete)}")
        rows["aws_topology_scan_duration_seconds"].append(f"{{{label}}} {a.seconds:.3f}")
    text = []
    for name, values in rows.items():
        text.append(f"# TYPE {name} gauge")
        text += [f"{name}{value}" for value in values]
    text.append("# TYPE aws_topology_scan_run_seconds gauge")
    text.append(f"aws_topology_scan_run_seconds {seconds:.3f}")
    text.append("# TYPE aws_topology_scan_last_run_timestamp_seconds gauge")
    text.append(f"aws_topology_scan_last_run_timestamp_seconds {now if now is not None else time.time():.0f}")
    return "\n".join(text) + "\n"


PHASE_METRICS = {  # metric suffix -> key of the phase's run summary
    "complete": "complete",
    "objects": "objects",
    "deleted_objects": "deleted_objects",
    "corrupt_objects": "corrupt_objects",
    "duration_seconds": "seconds",
}


def phase_metrics_text(kind: str, rows: list[dict], now: float | None = None) -> str:
    """One phase's (`events`, `flowlogs`) per-account metrics; `rows` are its run summaries plus `account`,
    `complete` and `seconds`. A failed run lacks the counts: its lines say 0."""
    text = []
    for suffix, key in PHASE_METRICS.items():
        name = f"aws_topology_{kind}_{suffix}"
        text.append(f"# TYPE {name} gauge")
        text += [f'{name}{{account="{row["account"]}"}} {float(row.get(key) or 0):g}' for row in rows]
    name = f"aws_topology_{kind}_last_run_timestamp_seconds"
    text += [f"# TYPE {name} gauge", f"{name} {now if now is not None else time.time():.0f}"]
    return "\n".join(text) + "\n"


def write_metrics(path: Path, results: list[AccountScan], fetcher: Fetcher, seconds: float) -> None:
    """Write the scan's metrics file atomically (a scraper never reads half a file)."""
    _write(path, metrics_text(results, fetcher, seconds))


def write_phase_metrics(path: Path, kind: str, rows: list[dict]) -> None:
    """Write one phase's metrics file atomically."""
    _write(path, phase_metrics_text(kind, rows))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
