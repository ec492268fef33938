"""Benchmark: the engine's full scan against a naive boto3 scanner of the per-item call plan.

Starts a moto server in its own process, seeds ``--accounts`` accounts with ``--resources`` resources each of
every mapped service (``demo.bulk.seed_bulk``; accounts are reached by AssumeRole, as in production), then
alternates, ``--rounds`` times, one engine scan and one naive scan, each in a fresh process (so the peak RSS
is that of a scanner alone). Both use ``--workers`` threads over all accounts:

- engine: ``engine.scan.full_scan.scan`` with payloads written to files (region-wide joins, per-item calls
  fanned out over the shared pool, accounts side by side);
- floor: ``bench.naive`` (the per-item plan: tags, attributes and subscriptions per item, one (region, type)
  task per thread, items one after another; no shaping, no payloads).

Prints the medians: ``engine / naive floor``, resources/s, API calls per resource of both, the engine's peak
RSS, and the components per type; with ``--calls``, the engine's calls by operation (last round).

    .venv/bin/python -m bench.scan [--resources 5000] [--accounts 3] [--workers 8] [--rounds 3] [--calls]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

from engine.core.config import Config, Instance
from engine.language.loader import load_mappings

ACCOUNTS = ("123456789012", "210987654321", "111122223333", "444455556666", "777788889999")
REGIONS = ("eu-west-1", "us-east-1")
EXTERNAL_ID = "bench"


def config_for(accounts: int) -> Config:
    return Config(
        access_key_id=None,
        secret_access_key=None,
        external_id=EXTERNAL_ID,
        instances=tuple(
            Instance(
                role_arn=f"arn:aws:iam::{a}:role/StackStateAwsIntegrationRole", regions=("global", *REGIONS)
            )
            for a in ACCOUNTS[:accounts]
        ),
    )


def _engine(accounts: int, workers: int, out: Any) -> None:
    """In a fresh process: one engine scan; sends its figures back."""
    from engine.aws.fetch import Fetcher
    from engine.core import botocore_data
    from engine.core.allocator import limit_arenas
    from engine.core.phase import Limits
    from engine.delivery.sinks import FileSink
    from engine.scan.full_scan import PATIENCE, scan

    per_operation: Counter[str] = Counter()

    class Counting(Fetcher):
        """Also counts the requests per service and operation (pages included)."""

        def _take(self, account: str, region: str, service: str, operation: str) -> None:
            with self._lock:
                per_operation[f"{service}:{operation}"] += 1
            super()._take(account, region, service, operation)

    limit_arenas()  # as the command does
    mappings = load_mappings()
    botocore_data.forget()  # as a run does
    fetcher = Counting(patience=PATIENCE)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        results, calls = scan(
            config_for(accounts),
            mappings,
            FileSink(folder),
            limits=Limits(workers, accounts),
            fetcher=fetcher,
        )
        seconds = time.perf_counter() - started
    types = sum((r.component_types for r in results), Counter())
    out.send(
        {
            "seconds": seconds,
            "calls": calls,
            "components": sum(r.component_count for r in results),
            "relations": sum(r.relation_count for r in results),
            "incomplete": [f"{u.unit.label}: {u.error}" for r in results for u in r.units if not u.complete],
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "types": dict(types),
            "operations": dict(per_operation),
        }
    )


def _naive(accounts: int, workers: int, endpoint: str, out: Any) -> None:
    """In a fresh process: one naive scan of the per-item plan; sends its figures back."""
    from bench.naive import scan_naive
    from engine.scan.plan import per_item

    mappings = per_item(load_mappings())
    started = time.perf_counter()
    items, calls = scan_naive(config_for(accounts), mappings, endpoint, workers)
    seconds = time.perf_counter() - started
    out.send(
        {
            "seconds": seconds,
            "calls": calls,
            "items": items,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def in_process(target: Any, *args: Any) -> dict:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(*args, send))
    process.start()
    figures = receive.recv()
    process.join()
    return figures


def serve() -> tuple[subprocess.Popen, str]:
    """A moto server in a process of its own (its memory is not the scanner's)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "demo.server", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    endpoint = server.stdout.readline().strip()
    if not endpoint.startswith("http://"):
        server.kill()
        raise SystemExit(f"moto server did not start: {endpoint!r}")
    return server, endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=5000, help="per account")
    parser.add_argument("--accounts", type=int, default=3, choices=range(1, len(ACCOUNTS) + 1))
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", action="store_true", help="list the engine's calls by operation")
    parser.add_argument("--engine-only", action="store_true", help="no naive floor (large estates)")
    parser.add_argument(
        "--no-warm-up", action="store_true", help="skip the warm-up scan (large estates: seeding warmed moto)"
    )
    args = parser.parse_args()
    from demo.bulk import seed_bulk  # here, not at the top: the scanner processes must not import moto
    from demo.server import reset

    server, endpoint = serve()
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    try:
        reset(endpoint)
        started, seeded = time.perf_counter(), 0
        for account in ACCOUNTS[: args.accounts]:
            seeded += seed_bulk(endpoint, args.resources, REGIONS, account=account)
        print(
            f"seeded={seeded} accounts={args.accounts} seed_seconds={time.perf_counter() - started:.1f}",
            flush=True,
        )
        if not args.no_warm_up:
            in_process(_engine, args.accounts, args.workers)  # warm-up: moto's lazily built backends
        engines, floors = [], []
        for round_ in range(args.rounds):  # alternate, so both see the same machine load
            engines.append(in_process(_engine, args.accounts, args.workers))
            if not args.engine_only:
                floors.append(in_process(_naive, args.accounts, args.workers, endpoint))
            floor = f" naive={floors[-1]['seconds']:.1f}s" if floors else ""
            print(
                f"round={round_ + 1} engine={engines[-1]['seconds']:.1f}s{floor} "
                f"engine_rss_mb={engines[-1]['rss_mb']:.0f} load_avg={_load()}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait()
    report(engines, floors, args)


def _load() -> str:
    """The 1, 5 and 15 minute load averages: the machine may be shared; each figure says how busy it was."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def report(engines: list[dict], floors: list[dict], args: argparse.Namespace) -> None:
    last = engines[-1]
    assert not last["incomplete"], "incomplete scan:\n" + "\n".join(last["incomplete"])
    e = statistics.median(r["seconds"] for r in engines)
    components = last["components"]
    print("types: " + " ".join(f"{k}={v}" for k, v in Counter(last["types"]).most_common()))
    print(
        f"components={components} relations={last['relations']} accounts={args.accounts} "
        f"workers={args.workers} rounds={args.rounds} cores={os.cpu_count()} load_avg={_load()}"
    )
    print(
        f"engine: seconds={e:.2f} resources/s={components / e:.0f} calls={last['calls']} "
        f"calls/resource={last['calls'] / components:.2f} peak_rss_mb={max(r['rss_mb'] for r in engines):.0f}"
    )
    if args.calls:
        print_calls(last["operations"], components)
    if floors:
        f = statistics.median(r["seconds"] for r in floors)
        naive = floors[-1]
        print(
            f"naive floor: seconds={f:.2f} resources/s={components / f:.0f} calls={naive['calls']} "
            f"calls/resource={naive['calls'] / components:.2f} "
            f"peak_rss_mb={max(r['rss_mb'] for r in floors):.0f}"
        )
        print(f"ratio engine / naive floor = {e / f:.2f}")


def print_calls(operations: dict[str, int], components: int) -> None:
    """The engine's calls by operation, most first: count, calls per resource, share of all calls."""
    total = sum(operations.values())
    print(f"calls by operation: {total} in all, {len(operations)} operations")
    for name, count in Counter(operations).most_common():
        print(f"  {name:<58} {count:>6} {count / components:>6.3f}/resource {100 * count / total:>5.1f}%")


if __name__ == "__main__":
    main()
