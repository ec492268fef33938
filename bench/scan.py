"""Benchmark: engine full scan against a bare boto3 replay of the same API calls.

Seeds a moto server with an estate of every mapped service (``demo.bulk.seed_bulk``, >= 5,000 resources
by default), runs the engine (`scan` over two regions and `global`, payloads written to files), records
every call it made per unit, then replays exactly those calls with bare boto3 clients at the same
concurrency (one thread per unit, same worker count). Engine and replay alternate over the rounds and
the medians are compared: `engine_seconds / floor_seconds` is what the engine's planning, JMESPath
shaping, payload building and writing cost on top of the API calls. Also printed: components per
engine second and API calls per component, the components per type, and the types the scan saw fewer
of than the estate holds (a listing that stopped early while its unit still reported complete).

With ``--profile FILE`` one more engine run is profiled (cProfile in every unit thread and the main
thread, merged) and the top functions by cumulative and by own time are written to FILE.

    .venv/bin/python -m bench.scan [--resources 5000] [--workers 8] [--rounds 3] [--profile /tmp/engine.txt]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from demo.bulk import expected_types, seed_bulk
from demo.server import reset, start
from engine import collect, fetch
from engine.auth import assume
from engine.config import Config, Instance
from engine.mappings import Mappings, load_mappings
from engine.scan import scan
from engine.sink import FileSink

ROLE = "arn:aws:iam::123456789012:role/StackStateAwsIntegrationRole"
REGIONS = ("eu-west-1", "us-east-1")
_unit = threading.local()
_calls: dict[str, list[tuple[str, str, str, bool, dict]]] = defaultdict(list)


def _record() -> None:
    """Wrap the engine so every call is remembered under the unit that made it."""
    run, call = collect.Collector.run, fetch.Fetcher.call

    def recording_run(self: Any, unit: Any) -> Any:
        _unit.label = unit.label
        return run(self, unit)

    def recording_call(self: Any, account: Any, region: str, service: str, spec: Any, params: dict) -> dict:
        _calls[_unit.label].append((service, region, spec.method, spec.paginate, dict(params)))
        return call(self, account, region, service, spec, params)

    collect.Collector.run = recording_run  # type: ignore[method-assign]
    fetch.Fetcher.call = recording_call  # type: ignore[method-assign]


def floor(config: Config, workers: int) -> float:
    """The same calls with plain boto3: clients made up front, units run side by side."""
    account = assume(config, config.instances[0], workers=workers)
    clients = {(s, r): account.client(s, r) for calls in _calls.values() for s, r, *_ in calls}

    def replay(calls: list) -> None:
        for service, region, method, paginate, params in calls:
            client = clients[(service, region)]
            if paginate:
                client.get_paginator(method).paginate(**params).build_full_result()
            else:
                getattr(client, method)(**params)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(replay, list(_calls.values())))
    return time.perf_counter() - started


def engine(config: Config, mappings: Mappings, workers: int) -> tuple[float, int, Any]:
    """One full engine scan; its seconds, its API calls and the account's result (asserted complete)."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        results, calls = scan(config, mappings, FileSink(out), workers=workers)
        seconds = time.perf_counter() - started
    incomplete = [
        f"{u.unit.label}: {u.status}: {u.error}" for r in results for u in r.units if not u.complete
    ]
    assert all(r.complete for r in results), "incomplete scan:\n" + "\n".join(incomplete or [str(results)])
    return seconds, calls, results[0]


def profile(config: Config, mappings: Mappings, workers: int, path: str, top: int = 25) -> None:
    """Profile one engine run in every thread that runs engine code; write the top functions to ``path``."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    run = collect.Collector.run

    def profiled_run(self: Any, unit: Any) -> Any:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return run(self, unit)
        finally:
            profiler.disable()
            with lock:
                profiles.append(profiler)

    collect.Collector.run = profiled_run  # type: ignore[method-assign]
    main_thread = cProfile.Profile()
    try:
        main_thread.enable()
        seconds, _, _ = engine(config, mappings, workers)
        main_thread.disable()
    finally:
        collect.Collector.run = run  # type: ignore[method-assign]
    stats = pstats.Stats(main_thread, stream=(text := io.StringIO()))
    for profiler in profiles:
        stats.add(profiler)
    stats.dump_stats(f"{path}.prof")
    text.write(f"one profiled engine run: {seconds:.2f}s, {len(profiles)} unit threads + the main thread\n")
    for order in ("cumulative", "tottime"):
        text.write(f"\n=== top {top} by {order} ===\n")
        stats.sort_stats(order).print_stats(top)
    with open(path, "w") as file:
        file.write(text.getvalue())
    print(f"profile: {path} (raw: {path}.prof)")


def by_type(account: Any, resources: int, regions: int) -> tuple[str, str]:
    """Components per type, most first; and the types the scan saw fewer of than the estate holds."""
    counts = Counter(c["type"]["name"] for c in account.components)
    short = {name: n for name, n in expected_types(resources, regions).items() if counts[name] < n}
    return (
        " ".join(f"{name}={n}" for name, n in counts.most_common()),
        " ".join(f"{name}={counts[name]}/{n}" for name, n in short.items()) or "none",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", metavar="FILE", help="profile one more engine run into FILE")
    args = parser.parse_args()

    server, endpoint = start(0)
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    reset(endpoint)
    started = time.perf_counter()
    seeded = seed_bulk(endpoint, args.resources, REGIONS)
    print(f"seeded={seeded} seed_seconds={time.perf_counter() - started:.1f}", flush=True)
    config = Config(
        access_key_id=None,
        secret_access_key=None,
        external_id="bench",
        instances=(Instance(role_arn=ROLE, regions=("global", *REGIONS)),),
    )
    mappings = load_mappings()  # once: files edited while the bench runs must not change what it measures
    _record()
    engine(config, mappings, args.workers)  # warm-up: moto backends, botocore models; records the calls
    engine_times, floor_times = [], []
    for _ in range(args.rounds):  # alternate, so both see the same machine load
        _calls.clear()
        seconds, calls, account = engine(config, mappings, args.workers)
        engine_times.append(seconds)
        floor_times.append(floor(config, args.workers))
    if args.profile:
        profile(config, mappings, args.workers, args.profile)
    server.stop()
    e, f = statistics.median(engine_times), statistics.median(floor_times)
    components, relations = len(account.components), len(account.relations)
    types, short = by_type(account, args.resources, len(REGIONS))
    print(f"types: {types}")
    print(f"short (scanned/seeded): {short}")
    print(
        f"seeded={seeded} components={components} relations={relations} calls={calls} "
        f"workers={args.workers} rounds={args.rounds}"
    )
    print(f"engine_seconds={e:.2f} floor_seconds={f:.2f} ratio engine/floor={e / f:.2f}")
    print(f"resources/s={components / e:.0f} calls/resource={calls / components:.2f}")


if __name__ == "__main__":
    main()
