"""Flow-log reader throughput: records/s of the whole reading path against the floor, side by side.

Generates gzip flow-log objects (AWS default v2 format) for an estate of interfaces in one VPC: each
interface talks to a few private peers on well-known ports from ephemeral ones, some traffic is public,
some lines are NODATA. Then, alternating in each round, times:

- floor: decompress the objects (zlib) and split them into lines, nothing else; and the same with the
  engine's inflate (ISA-L), printed beside it (the ratio is to the zlib floor);
- engine: what `aws-topology flowlogs` does with the objects once downloaded: `unpacked` to temporary
  files (gzip checked to its end, text cut into segments, the next objects while one is read), pyarrow's
  reader summing per flow, then connections, components, relations and gauges for the whole estate;
- pure Python: decompress, split, and sum per flow in a dict (the alternative to pyarrow, for scale).

Each path's best wall time and its CPU time (all threads) are printed, then the engine's peak RSS (taken
after its first run, before the pure-Python reader's dict); `--stages` adds where the engine's time goes,
each stage run alone (wall and CPU). S3 transfer is not part of it (moto's server would dominate). Usage:
    python -m bench.flowlogs [--records 5000000] [--objects 50] [--interfaces 400] [--rounds 2] [--stages]
"""

from __future__ import annotations

import argparse
import gzip
import random
import resource
import shutil
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from engine.core import gunzip
from engine.core.config import Instance
from engine.flowlogs.connections import READERS, Interface, _connections, _output, _private
from engine.flowlogs.records import FlowSums, _tables, unpack, unpacked

ACCOUNT = "123456789012"
VPC = "vpc-0bench"
CHUNK = 1 << 20
T = TypeVar("T")


def estate(interfaces: int) -> dict[str, Interface]:
    return {
        f"eni-{n:017x}": Interface(
            id=f"eni-{n:017x}",
            vpc=VPC,
            addresses=frozenset({_address(n)}),
            public={},
            owner=f"i-{n:017x}",
            excluded=False,
            described={"id": f"eni-{n:017x}"},
        )
        for n in range(interfaces)
    }


def _address(n: int) -> str:
    return f"10.0.{n // 250}.{n % 250 + 1}"


def generate(directory: Path, records: int, objects: int, interfaces: int, seed: int = 1) -> list[Path]:
    rng = random.Random(seed)
    header = (
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
        "action log-status"
    )
    peers = {n: [rng.randrange(interfaces) for _ in range(6)] for n in range(interfaces)}
    paths = []
    per_object = records // objects
    for o in range(objects):
        lines = [header]
        start = 1_700_000_000 + o * 60
        for _ in range(per_object):
            n = rng.randrange(interfaces)
            eni, me = f"eni-{n:017x}", _address(n)
            roll = rng.random()
            if roll < 0.02:
                lines.append(f"2 {ACCOUNT} {eni} - - - - - - - {start} {start + 60} - NODATA")
                continue
            peer = (
                f"52.94.{rng.randrange(4)}.{rng.randrange(1, 250)}"
                if roll < 0.15
                else _address(rng.choice(peers[n]))
            )
            port, ephemeral = rng.choice((443, 5432, 6379, 8080)), rng.randrange(32768, 61000)
            src, dst, sport, dport = (
                (me, peer, ephemeral, port) if roll < 0.6 else (peer, me, port, ephemeral)
            )
            lines.append(
                f"2 {ACCOUNT} {eni} {src} {dst} {sport} {dport} 6 {rng.randrange(1, 60)} "
                f"{rng.randrange(40, 90_000)} {start} {start + 60} ACCEPT OK"
            )
        path = directory / f"{ACCOUNT}_vpcflowlogs_eu-west-1_fl-1_{o:04d}.log.gz"
        path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), 6))
        paths.append(path)
    return paths


def _chunks(path: Path):
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def floor(paths: list[Path], inflater: Callable[[], Any] = lambda: zlib.decompressobj(31)) -> int:
    lines = 0
    for path in paths:
        inflate, rest = inflater(), b""
        for chunk in _chunks(path):
            parts = (rest + inflate.decompress(chunk)).split(b"\n")
            rest = parts.pop()
            lines += len(parts)
    return lines


def engine(paths: list[Path], interfaces: dict[str, Interface], scratch: Path) -> int:
    sums = FlowSums(interfaces=set(interfaces), private=_private)
    whole = unpacked(paths, _chunks, scratch, read=lambda _, files: sums.of_files(files), workers=READERS)
    for _, read in whole:  # as the reader does: each object's own sums, merged whole
        assert isinstance(read, FlowSums), read
        sums.merge(read)
    skipped: Counter = Counter()
    instance = Instance(role_arn=f"arn:aws:iam::{ACCOUNT}:role/R", regions=("eu-west-1",))
    owners = set(i.owner for i in interfaces.values() if i.owner)
    for connection in _connections(sums, interfaces, skipped):
        _output(connection, "eu-west-1", ACCOUNT, instance, (owners, {}))
    return sums.records


def stages(paths: list[Path], interfaces: dict[str, Interface], scratch: Path) -> dict[str, list[float]]:
    """Wall and CPU seconds of each stage of `engine`, one stage after the other (no overlap)."""
    spent: dict[str, list[float]] = {}
    sums = FlowSums(interfaces=set(interfaces), private=_private)

    def timed(stage: str, work: Callable[..., T], *args: object) -> T:
        began, cpu = time.perf_counter(), time.process_time()
        result = work(*args)
        seconds = spent.setdefault(stage, [0.0, 0.0])
        seconds[0] += time.perf_counter() - began
        seconds[1] += time.process_time() - cpu
        return result

    for n, path in enumerate(paths):
        where = scratch / f"stage-{n}"
        where.mkdir()
        own = sums.empty()
        for segment in timed("gunzip to files", unpack, _chunks(path), where):
            for table in timed("pyarrow CSV read", _read, segment, own):
                timed("group-by", own._add, table, True)
        timed("filter and merge", sums.merge, own)
        shutil.rmtree(where)
    instance = Instance(role_arn=f"arn:aws:iam::{ACCOUNT}:role/R", regions=("eu-west-1",))
    owners = set(i.owner for i in interfaces.values() if i.owner)
    for connection in timed("connections", _connections, sums, interfaces, Counter()):
        timed("output", _output, connection, "eu-west-1", ACCOUNT, instance, (owners, {}))
    return dict(spent)


def _read(segment: Path, own: FlowSums) -> list:
    return list(_tables(segment, False, True, own))


def pure_python(paths: list[Path]) -> int:
    sums: dict[tuple, list[int]] = {}
    records = 0
    for path in paths:
        with gzip.open(path, "rb") as stream:
            names = stream.readline().split()
            i, s, d, p, b = (
                names.index(n) for n in (b"interface-id", b"srcaddr", b"dstaddr", b"protocol", b"bytes")
            )
            status = names.index(b"log-status")
            for line in stream:
                records += 1
                fields = line.split()
                if fields[status] in (b"NODATA", b"SKIPDATA"):
                    continue
                key = (fields[i], fields[s], fields[d], fields[p])
                entry = sums.get(key)
                if entry is None:
                    sums[key] = [int(fields[b]), 1]
                else:
                    entry[0] += int(fields[b])
                    entry[1] += 1
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--interfaces", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-pure", action="store_true", help="Skip the pure-Python comparison.")
    parser.add_argument("--stages", action="store_true", help="Time each stage of the engine alone too.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-flowlogs-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        paths = generate(directory, args.records, args.objects, args.interfaces)
        size = sum(p.stat().st_size for p in paths)
        print(f"generated {args.records:,} records in {len(paths)} gzip objects ({size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - started:.0f}s")  # fmt: skip
        interfaces = estate(args.interfaces)
        runs = {
            "floor": lambda: floor(paths),
            "floor, ISA-L": lambda: floor(paths, gunzip.inflater),
            "engine": lambda: engine(paths, interfaces, directory),
            "pure": lambda: pure_python(paths),
        }
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        rss = 0.0
        for _ in range(args.rounds):
            for name in timings:
                if name == "pure" and args.no_pure:
                    continue
                began, cpu = time.perf_counter(), time.process_time()
                count = runs[name]()
                timings[name].append((time.perf_counter() - began, time.process_time() - cpu))
                assert count >= args.records - args.objects, (name, count)
                rss = rss or (name == "engine" and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        spent = stages(paths, interfaces, directory) if args.stages else {}
    best = {name: min(t) for name, t in timings.items() if t}
    floor_wall, floor_cpu = best["floor"]
    for name, (seconds, cpu) in best.items():
        print(f"{name:>12}: {seconds:6.2f}s  {args.records / seconds:>12,.0f} records/s  "
              f"{seconds / floor_wall:.2f}x floor  (CPU {cpu:.2f}s, {cpu / floor_cpu:.2f}x)")  # fmt: skip
    for stage, (seconds, cpu) in spent.items():
        print(f"  stage {stage:<17} {seconds:6.2f}s  {seconds / floor_wall:.2f}x floor  "
              f"(CPU {cpu:.2f}s, {cpu / floor_cpu:.2f}x)")  # fmt: skip
    ratio = best["engine"][0] / floor_wall
    pure = f" pure/engine={best['pure'][0] / best['engine'][0]:.2f}" if "pure" in best else ""
    speed = args.records / best["engine"][0]
    print(f"engine records/s={speed:,.0f} engine/floor={ratio:.2f}{pure} engine_peak_rss_mb={rss:.0f}")


if __name__ == "__main__":
    main()
