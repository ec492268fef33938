"""Benchmark: engine full scan against a bare boto3 replay of the same API calls.

Seeds a moto server with >= 2,000 resources, runs the engine (`scan`, payloads written to files), records
every call it made per unit, then replays exactly those calls with bare boto3 clients at the same
concurrency (one thread per unit, same worker count). Prints `engine_seconds / floor_seconds`: what the
engine's planning, JMESPath shaping, payload building and writing cost on top of the API calls.

    .venv/bin/python -m bench.scan [--resources 2000] [--workers 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from demo.seed import seed_bulk
from demo.server import reset, start
from engine import collect, fetch
from engine.auth import assume
from engine.config import Config, Instance
from engine.mappings import load_mappings
from engine.scan import scan
from engine.sink import FileSink

ROLE = "arn:aws:iam::123456789012:role/StackStateAwsIntegrationRole"
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


def engine(config: Config, workers: int) -> tuple[float, int, int]:
    mappings = load_mappings()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        results, calls = scan(config, mappings, FileSink(out), workers=workers)
        seconds = time.perf_counter() - started
    assert all(r.complete for r in results), [u.error for r in results for u in r.units if not u.complete]
    return seconds, calls, len(results[0].components)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    server, endpoint = start(0)
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    reset(endpoint)
    seeded = seed_bulk(endpoint, args.resources)
    config = Config(
        access_key_id=None,
        secret_access_key=None,
        external_id="bench",
        instances=(Instance(role_arn=ROLE, regions=("eu-west-1", "us-east-1")),),
    )
    _record()
    engine(config, args.workers)  # warm-up: moto backends, botocore models; records the calls
    engine_times, floor_times = [], []
    for _ in range(args.rounds):  # alternate, so both see the same machine load
        _calls.clear()
        seconds, calls, components = engine(config, args.workers)
        engine_times.append(seconds)
        floor_times.append(floor(config, args.workers))
    server.stop()
    e, f = statistics.median(engine_times), statistics.median(floor_times)
    print(
        f"seeded={seeded} components={components} calls={calls} workers={args.workers} rounds={args.rounds}"
    )
    print(f"engine_seconds={e:.2f} floor_seconds={f:.2f} ratio engine/floor={e / f:.2f}")


if __name__ == "__main__":
    main()
