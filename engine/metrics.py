"""Metrics files of a run, in the Prometheus text format, written atomically beside a SQLite state file or
in `--metrics DIR` (named `aws-topology*.prom` there; a shard's `*.shard-{index}*.prom`).

After a full scan: per-type component counts, relations, calls, throttles, errors, incomplete units and
duration per account (`{state}.prom`), which a node-exporter textfile collector or any scraper can read. The
events and flow-log phases write one file each (`{state}.events.prom`, `{state}.flowlogs.prom`: last run
complete, objects, deleted, corrupt, duration).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.aws.fetch import Fetcher
    from engine.scan.full_scan import AccountScan


def metrics_text(
    results: list[AccountScan],
    fetcher: Fetcher,
    seconds: float,
    now: float | None = None,
    shard: str | None = None,
) -> str:
    """The scan's metrics in the Prometheus text exposition format; a shard's run-wide series carry its
    `shard` label (the accounts of shards differ, so their other series never collide)."""
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
    run = "" if shard is None else f'{{shard="{shard}"}}'
    text.append("# TYPE aws_topology_scan_run_seconds gauge")
    text.append(f"aws_topology_scan_run_seconds{run} {seconds:.3f}")
    text.append("# TYPE aws_topology_scan_last_run_timestamp_seconds gauge")
    text.append(
        f"aws_topology_scan_last_run_timestamp_seconds{run} {now if now is not None else time.time():.0f}"
    )
    return "\n".join(text) + "\n"


PHASE_METRICS = {  # metric suffix -> key of the phase's run summary
    "complete": "complete",
    "objects": "objects",
    "deleted_objects": "deleted_objects",
    "corrupt_objects": "corrupt_objects",
    "duration_seconds": "seconds",
    "api_calls": "api_calls",
}
TRACE_METRICS = {  # the traces phase reads no objects: its relations instead
    "complete": "complete",
    "relations": "relations",
    "new_relations": "new",
    "expired_relations": "expired",
    "duration_seconds": "seconds",
    "api_calls": "api_calls",
}


def phase_metrics_text(
    kind: str,
    rows: list[dict],
    now: float | None = None,
    shard: str | None = None,
    seconds: float | None = None,
) -> str:
    """One phase's (`events`, `flowlogs`, `traces`) per-account metrics; `rows` are its run summaries plus
    `account`, `complete`, `seconds` and `api_calls`; then the whole phase's `seconds`, where given. A failed
    run lacks the counts: its lines say 0."""
    text = []
    for suffix, key in (TRACE_METRICS if kind == "traces" else PHASE_METRICS).items():
        name = f"aws_topology_{kind}_{suffix}"
        text.append(f"# TYPE {name} gauge")
        text += [f'{name}{{account="{row["account"]}"}} {float(row.get(key) or 0):g}' for row in rows]
    run = "" if shard is None else f'{{shard="{shard}"}}'
    if seconds is not None:
        name = f"aws_topology_{kind}_run_seconds"
        text += [f"# TYPE {name} gauge", f"{name}{run} {seconds:.3f}"]
    name = f"aws_topology_{kind}_last_run_timestamp_seconds"
    text += [f"# TYPE {name} gauge", f"{name}{run} {now if now is not None else time.time():.0f}"]
    return "\n".join(text) + "\n"


def write_metrics(
    path: Path, results: list[AccountScan], fetcher: Fetcher, seconds: float, shard: str | None = None
) -> None:
    """Write the scan's metrics file atomically (a scraper never reads half a file)."""
    _write(path, metrics_text(results, fetcher, seconds, shard=shard))


def write_phase_metrics(
    path: Path, kind: str, rows: list[dict], seconds: float | None = None, shard: str | None = None
) -> None:
    """Write one phase's metrics file atomically."""
    _write(path, phase_metrics_text(kind, rows, shard=shard, seconds=seconds))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
