"""Benchmark: many accounts on one machine, each AWS request taking ``--delay`` seconds as over a network.

Starts a moto server in its own process, with ``--delay`` (default 0.1 s) added in front of every AWS request
(a sleep in the server's request thread, switched on after seeding, so requests overlap as on AWS), seeds the
same estate (``demo.bulk.seed_bulk``, ``--resources`` each) in each of the largest ``--counts`` accounts,
then runs one engine full scan of the first N accounts for each N of ``--counts`` (each in a fresh process:
the peak RSS is the scanner's), with the engine's defaults for ``--workers`` and ``--accounts`` unless given.

Prints per N: wall time, calls, components, peak RSS, the CPU seconds of the scanner and of the moto server
(on 2 cores, a wall time near their sum over 2 means the machine, not the engine, is the bound), and the
ratio to one account (targets: 4 accounts at most 1.3x one, 50 at most 3x). ``--code DIR`` scans with the
engine of another checkout; given more than once, the checkouts scan in turn (before and after, side by side).

``--shards 1 2 4``: then the largest count of accounts is scanned by that many ``aws-topology scan --shard
i/N`` processes side by side on one state (a SQLite file, or ``--state postgresql://...``), as the pods of an
Indexed Job would: wall time until the last is done, ratio to one shard, peak RSS and CPU seconds of each.

    .venv/bin/python -m bench.scale [--counts 1 4 10] [--resources 100] [--delay 0.1] [--code DIR ...]
    .venv/bin/python -m bench.scale --counts 1 4 10 --resources 2000 --shards 1 2 4
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.scan import EXTERNAL_ID, REGIONS, _load, in_process

ROLE = "StackStateAwsIntegrationRole"


def accounts(count: int) -> list[str]:
    return [f"{100000000000 + i:012d}" for i in range(count)]


def config_for(count: int) -> Any:
    from engine.core.config import Config, Instance  # here: the engine of --code

    return Config(
        access_key_id=None,
        secret_access_key=None,
        external_id=EXTERNAL_ID,
        instances=tuple(
            Instance(role_arn=f"arn:aws:iam::{a}:role/{ROLE}", regions=("global", *REGIONS))
            for a in accounts(count)
        ),
    )


def _engine(code: str | None, count: int, workers: int | None, side: int | None, out: Any) -> None:
    """In a fresh process: one engine scan of `count` accounts; sends its figures back."""
    if code:  # that checkout's engine, not the one bench.scan imported
        sys.path.insert(0, code)
        for name in [m for m in sys.modules if m.split(".")[0] == "engine"]:
            del sys.modules[name]
    from engine.core import botocore_data, phase
    from engine.delivery.sinks import FileSink
    from engine.language.loader import load_mappings
    from engine.scan.full_scan import scan

    try:  # as the command does (a checkout from before may have neither)
        from engine.core.allocator import limit_arenas

        limit_arenas()
    except ImportError:
        pass
    mappings = load_mappings()
    getattr(botocore_data, "forget", lambda: None)()
    defaults = phase.LIMITS
    limits = phase.Limits(workers or defaults.workers, side or defaults.accounts)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        results, calls = scan(config_for(count), mappings, FileSink(folder), limits=limits)
        seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.send(
        {
            "seconds": seconds,
            "calls": calls,
            "components": sum(r.component_count for r in results),
            "incomplete": sum(1 for r in results for u in r.units if not u.complete),
            "rss_mb": usage.ru_maxrss / 1024,
            "cpu": usage.ru_utime + usage.ru_stime,
            "engine": os.path.dirname(os.path.dirname(phase.__file__)),
            "limits": f"workers={limits.workers} accounts={limits.accounts}",
        }
    )


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve() -> None:
    """The moto server, with the delay (``POST /bench/delay?s=0.1``) before every AWS request."""
    import urllib.parse

    import moto.server

    from demo.server import main as serve

    delay = [0.0]
    call = moto.server.DomainDispatcherApplication.__call__

    def delayed(self: Any, environ: dict, start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/bench/delay":
            delay[0] = float(urllib.parse.parse_qs(environ["QUERY_STRING"])["s"][0])
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        if not environ["PATH_INFO"].startswith("/moto-api"):
            time.sleep(delay[0])
        return call(self, environ, start_response)

    moto.server.DomainDispatcherApplication.__call__ = delayed
    os._exit(serve(["--port", "0"]))


def shards(count: int, shard_counts: list[int], state: str | None) -> dict[int, dict]:
    """Scan `count` accounts with N shard processes side by side, for each N; the figures per N."""
    import yaml

    exe = os.path.join(os.path.dirname(sys.executable), "aws-topology")
    figures: dict[int, dict] = {}
    for n in shard_counts:
        with tempfile.TemporaryDirectory() as folder:
            conf = os.path.join(folder, "conf.yaml")
            with open(conf, "w") as out:
                yaml.safe_dump(
                    {
                        "init_config": {"external_id": EXTERNAL_ID},
                        "instances": [
                            {"role_arn": f"arn:aws:iam::{a}:role/{ROLE}", "regions": ["global", *REGIONS]}
                            for a in accounts(count)
                        ],
                    },
                    out,
                )
            target = state or os.path.join(folder, "state.sqlite")
            if state:  # a fresh PostgreSQL state each time: every account is due
                import psycopg

                with psycopg.connect(state, autocommit=True) as conn:
                    conn.execute("DROP SCHEMA public CASCADE")
                    conn.execute("CREATE SCHEMA public")
            started = time.perf_counter()
            children = {
                subprocess.Popen(
                    [exe, "scan", "-c", conf, "--out", os.path.join(folder, f"out{i}"), "--state", target,
                     "--shard", f"{i}/{n}", "--no-table"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                ).pid: i
                for i in range(n)
            }  # fmt: skip
            rss, cpu, failed = [0.0] * n, [0.0] * n, 0
            while children:
                pid, status, usage = os.wait4(-1, 0)
                i = children.pop(pid)
                rss[i], cpu[i] = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
                failed += status != 0
            seconds = time.perf_counter() - started
        figures[n] = {"seconds": seconds, "rss": rss, "cpu": cpu, "failed": failed}
        print(
            f"shards={n} accounts={count} seconds={seconds:.1f} failed={failed} "
            f"peak_rss_mb={','.join(f'{r:.0f}' for r in rss)} "
            f"cpu_seconds={','.join(f'{c:.1f}' for c in cpu)} "
            f"load_avg={_load()}",
            flush=True,
        )
    one = figures.get(1)
    if one:
        ratios = (f"{n}/1 = {f['seconds'] / one['seconds']:.2f}" for n, f in figures.items())
        print("shard ratios: " + " ".join(ratios))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 10], help="accounts per scan")
    parser.add_argument("--resources", type=int, default=100, help="per account")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds added to every AWS request")
    parser.add_argument("--workers", type=int, help="default: the engine's")
    parser.add_argument("--accounts", type=int, help="side by side; default: the engine's")
    parser.add_argument(
        "--code", action="append", help="a checkout whose engine scans (e.g. a worktree of main); repeatable"
    )
    parser.add_argument("--shards", type=int, nargs="*", default=[], help="shard processes side by side")
    parser.add_argument("--state", help="the shards' state: a postgresql:// URL (default: a SQLite file)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return _serve()
    from demo.bulk import seed_bulk  # here, not at the top: the scanner processes must not import moto
    from demo.server import _post, reset

    command = [sys.executable, "-m", "bench.scale", "--serve"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    endpoint = server.stdout.readline().strip()
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    codes = args.code or [None]
    figures: dict[str | None, dict[int, dict]] = {code: {} for code in codes}
    try:
        reset(endpoint)
        started, seeded = time.perf_counter(), 0
        for account in accounts(max(args.counts)):
            seeded += seed_bulk(endpoint, args.resources, REGIONS, account=account)
        print(f"seeded={seeded} seed_seconds={time.perf_counter() - started:.1f}", flush=True)
        _post(f"{endpoint}/bench/delay?s={args.delay}")
        for count in args.counts:
            for code in codes:  # in turn, so each engine sees the same machine load
                moto_cpu = cpu_seconds(server.pid)
                f = in_process(_engine, code, count, args.workers, args.accounts)
                f["moto_cpu"] = cpu_seconds(server.pid) - moto_cpu
                figures[code][count] = f
                print(
                    f"engine={f['engine']} {f['limits']} accounts={count} seconds={f['seconds']:.1f} "
                    f"calls={f['calls']} components={f['components']} incomplete_units={f['incomplete']} "
                    f"peak_rss_mb={f['rss_mb']:.0f} cpu_seconds: scanner={f['cpu']:.1f} "
                    f"moto={f['moto_cpu']:.1f} load_avg={_load()}",
                    flush=True,
                )
        if args.shards:
            moto_cpu = cpu_seconds(server.pid)
            shards(max(args.counts), args.shards, args.state)
            print(f"moto cpu_seconds over the shard runs={cpu_seconds(server.pid) - moto_cpu:.1f}")
    finally:
        server.terminate()
        server.wait()
    print(f"delay={args.delay}s cores={os.cpu_count()}")
    for runs in figures.values():
        one = runs.get(1)
        if one:
            ratios = (f"{n}/1 = {f['seconds'] / one['seconds']:.2f}" for n, f in runs.items() if n != 1)
            print(f"engine={one['engine']} {one['limits']} ratios: " + " ".join(ratios))


if __name__ == "__main__":
    main()
