"""Seeding reliability: reset a fresh moto server and run the bulk seeder several times in a row.

Prints one line per run (seconds and components created, or the error) and a summary; exits 1 when a
run failed.

    .venv/bin/python -m bench.seed [--resources 5000] [--runs 5] [--workers 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

from demo.bulk import seed_bulk
from demo.server import reset, start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    server, endpoint = start(0)
    times, failed = [], 0
    try:
        for run in range(1, args.runs + 1):
            reset(endpoint)
            started = time.perf_counter()
            try:
                created = seed_bulk(endpoint, args.resources, workers=args.workers)
            except Exception as exc:  # report every run, then the summary
                failed += 1
                seconds = time.perf_counter() - started
                print(f"run={run} failed after {seconds:.1f}s: {type(exc).__name__}: {exc}", flush=True)
                continue
            times.append(time.perf_counter() - started)
            print(f"run={run} seeded={created} seconds={times[-1]:.1f}", flush=True)
    finally:
        server.stop()
    summary = f"runs={args.runs} failed={failed}"
    if times:
        summary += f" median_seconds={statistics.median(times):.1f} max_seconds={max(times):.1f}"
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
