"""Reading flow-log objects into per-flow sums: formats, skips, broken objects, and sums that match a
plain re-computation when batches and partial sums are forced small."""

from __future__ import annotations

import gzip
import random
import tempfile
import tracemalloc
import zlib
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.flowlogs import records as flowlog_records
from engine.flowlogs.records import Flow, FlowSums, UnsupportedObject, unpack

V2 = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action "
    "log-status"
)


def write(path: Path, lines: list[str], compress: bool = True) -> Path:
    body = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(body) if compress else body)
    return path


def sums_of(*paths: Path, parquet: bool = False, segment_bytes: int = flowlog_records.SEGMENT) -> FlowSums:
    """As the flow-log reader does: each object unpacked to a file in pieces, then read."""
    sums = FlowSums()
    for n, path in enumerate(paths):
        data = path.read_bytes()
        directory = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"unpacked-{path.name}-{n}-"))
        pieces = (data[i : i + 100] for i in range(0, len(data), 100))
        for segment in unpack(pieces, directory, segment=None if parquet else segment_bytes):
            sums.add_object(segment, parquet=parquet)
    return sums


def test_default_format_sums_per_flow_and_skips_nodata(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log.gz", [
        V2,
        "2 1 eni-a 10.0.0.1 10.0.0.2 40000 5432 6 10 1000 100 160 ACCEPT OK",
        "2 1 eni-a 10.0.0.1 10.0.0.2 40001 5432 6 5 500 90 200 REJECT OK",
        "2 1 eni-a 10.0.0.2 10.0.0.1 5432 40000 6 7 700 100 160 ACCEPT OK",
        "2 1 eni-a - - - - - - - 100 160 - NODATA",
        "2 1 eni-a - - - - - - - 100 160 - SKIPDATA",
    ])  # fmt: skip
    sums = sums_of(path)
    assert sums.flows() == {
        ("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(1500, 15, 2, 90, 200, 40000, 5432),
        ("eni-a", "10.0.0.2", "10.0.0.1", 6): Flow(700, 7, 1, 100, 160, 5432, 40000),
    }
    assert (sums.records, sums.skipped_status, sums.bad_lines) == (5, 2, 0)


def test_a_custom_format_is_read_by_its_header_plain_or_gzip(tmp_path: Path) -> None:
    header = "vpc-id dstaddr srcaddr interface-id protocol dstport srcport end start bytes pkt-srcaddr"
    lines = [header, "vpc-1 10.0.0.2 10.0.0.1 eni-b 17 53 50000 160 100 64 10.0.0.1"]
    for sums in (
        sums_of(write(tmp_path / "p.log", lines, compress=False)),
        sums_of(write(tmp_path / "g", lines)),
    ):
        # no packets field: null sums; no log-status: nothing skipped
        assert sums.flows() == {("eni-b", "10.0.0.1", "10.0.0.2", 17): Flow(64, None, 1, 100, 160, 50000, 53)}


def test_bad_lines_are_counted_and_skipped_and_the_rest_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log.gz", [
        V2,
        "2 1 eni-a 10.0.0.1 10.0.0.2 40000 5432 6 10 1000 100 160 ACCEPT OK",
        "2 1 eni-a 10.0.0.1 10.0.0.2 40000 5432 6 10 many 100 160 ACCEPT OK",  # not a number
        "2 1 eni-a 10.0.0.1 10.0.0.2 40000",  # too few fields
        "2 1 eni-a 10.0.0.1 10.0.0.2 40000 5432 6 10 1000 100 160 ACCEPT OK extra",  # too many
        "2 1 eni-a 10.0.0.1 10.0.0.2 40000 5432 6 1 1 100 160 ACCEPT OK",
    ])  # fmt: skip
    sums = sums_of(path)
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(1001, 11, 2, 100, 160, 40000, 5432)}
    assert sums.bad_lines == 3


def test_objects_without_the_required_fields_or_broken_are_refused(tmp_path: Path) -> None:
    no_fields = write(tmp_path / "a.gz", ["version account-id srcaddr dstaddr", "2 1 10.0.0.1 10.0.0.2"])
    with pytest.raises(UnsupportedObject, match=r"the header has no interface-id, srcport, dstport"):
        sums_of(no_fields)
    whole = write(tmp_path / "whole.gz", [V2, *["2 1 eni-a 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 A OK"] * 1000])
    broken = tmp_path / "b.gz"
    broken.write_bytes(whole.read_bytes()[:-20])  # the end of the stream is missing
    with pytest.raises(UnsupportedObject, match=r"cannot decompress: the gzip stream ends early"):
        sums_of(broken)
    corrupt = tmp_path / "c.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 not gzip at all")
    with pytest.raises(UnsupportedObject, match="cannot decompress"):
        sums_of(corrupt)
    binary = tmp_path / "c"
    binary.write_bytes(b"\x00\xff\xfe binary")
    with pytest.raises(UnsupportedObject, match="not a header"):
        sums_of(binary)


def test_parquet_flow_logs_give_the_same_sums(tmp_path: Path) -> None:
    table = pa.table({
        "version": pa.array([2, 2], pa.int32()), "interface_id": ["eni-a", "eni-a"],
        "srcaddr": ["10.0.0.1", "10.0.0.1"], "dstaddr": ["10.0.0.2", "10.0.0.2"],
        "srcport": pa.array([40000, 40001], pa.int32()), "dstport": pa.array([5432, 5432], pa.int32()),
        "protocol": pa.array([6, 6], pa.int32()), "packets": pa.array([1, 2], pa.int64()),
        "bytes": pa.array([10, 20], pa.int64()), "start": pa.array([100, 90], pa.int64()),
        "end": pa.array([160, 170], pa.int64()), "log_status": ["OK", "OK"],
    })  # fmt: skip
    pq.write_table(table, tmp_path / "a.parquet")
    sums = sums_of(tmp_path / "a.parquet", parquet=True)
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(30, 3, 2, 90, 170, 40000, 5432)}


def test_sums_over_many_segments_and_partial_sums_equal_a_plain_recount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowlog_records, "BLOCK", 4096)  # many parsing blocks per segment
    monkeypatch.setattr(flowlog_records, "COMPACT_ROWS", 50)  # partial sums summed again often
    rng = random.Random(7)
    expected: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 1 << 40, 0, 1 << 20, 1 << 20])
    paths = []
    for n in range(3):
        lines = [V2]
        for _ in range(2000):
            eni, src, dst = (
                f"eni-{rng.randrange(4)}",
                f"10.0.0.{rng.randrange(6)}",
                f"10.0.1.{rng.randrange(6)}",
            )
            sport, dport, size, packets = (
                rng.randrange(1024, 65535),
                rng.choice([22, 443, 5432]),
                rng.randrange(1, 9000),
                rng.randrange(1, 9),
            )
            start = rng.randrange(1000, 2000)
            lines.append(
                f"2 1 {eni} {src} {dst} {sport} {dport} 6 {packets} {size} {start} {start + 60} ACCEPT OK"
            )
            e = expected[(eni, src, dst, 6)]
            e[0] += size
            e[1] += packets
            e[2] += 1
            e[3], e[4] = min(e[3], start), max(e[4], start + 60)
            e[5], e[6] = min(e[5], sport), min(e[6], dport)
        paths.append(write(tmp_path / f"{n}.gz", lines))
    sums = sums_of(*paths, segment_bytes=7000)  # each object cut into ~20 segments, each with the header
    assert sums.flows() == {k: Flow(*v) for k, v in expected.items()}
    assert sums.records == 6000


def test_objects_read_on_their_own_and_merged_sum_like_one(tmp_path: Path) -> None:
    lines = [V2, "2 1 eni-a 10.0.0.1 10.0.0.2 40000 5432 6 10 1000 100 160 ACCEPT OK"]
    first, second = write(tmp_path / "a.gz", lines), write(tmp_path / "b.gz", [*lines, lines[1]])
    merged = sums_of(first)
    merged.merge(sums_of(second))
    assert merged.flows() == sums_of(first, second).flows()
    assert merged.flows()[("eni-a", "10.0.0.1", "10.0.0.2", 6)] == Flow(3000, 30, 3, 100, 160, 40000, 5432)
    assert merged.records == 3


def test_a_record_without_protocol_start_or_end_is_a_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log.gz", [
        V2,
        "2 1 eni-a 10.0.0.1 10.0.0.2 40000 5432 6 10 1000 100 160 ACCEPT OK",
        "2 1 eni-a 10.0.0.1 10.0.0.2 40000 5432 6 10 1000 - 160 ACCEPT OK",  # no start
        "2 1 eni-b 10.0.0.1 10.0.0.2 40000 5432 6 10 1000 100 - ACCEPT OK",  # no end
        "2 1 eni-c 10.0.0.1 10.0.0.2 40000 5432 - 10 1000 100 160 ACCEPT OK",  # no protocol
        "2 1 eni-d 10.0.0.1 10.0.0.2 - - 6 - - 100 160 ACCEPT OK",  # no ports, bytes, packets: fine
    ])  # fmt: skip
    sums = sums_of(path)
    assert sums.flows() == {
        ("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(1000, 10, 1, 100, 160, 40000, 5432),
        ("eni-d", "10.0.0.1", "10.0.0.2", 6): Flow(None, None, 1, 100, 160, None, None),
    }
    assert (sums.records, sums.bad_lines) == (5, 3)


def bomb(path: Path, piece: bytes, size: int, header: bytes = b"") -> Path:
    """A gzip object that unpacks to `size` bytes of `piece`, written without holding them."""
    deflate, block = zlib.compressobj(6, zlib.DEFLATED, 31), piece * ((1 << 20) // len(piece))
    with path.open("wb") as out:
        out.write(deflate.compress(header))
        for _ in range(size // len(block)):
            out.write(deflate.compress(block))
        out.write(deflate.flush())
    return path


def peak_unpacking(path: Path, directory: Path, **bounds: int) -> tuple[int, str]:
    """The Python memory peak (bytes) of unpacking `path` as the reader does, and why it was refused."""
    data = path.read_bytes()
    chunks = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]  # as the bucket gives them
    directory.mkdir()
    tracemalloc.start()
    try:
        with pytest.raises(UnsupportedObject) as refused:
            unpack(chunks, directory, **bounds)
        return tracemalloc.get_traced_memory()[1], str(refused.value)
    finally:
        tracemalloc.stop()


def test_a_decompression_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    zeros = bomb(tmp_path / "zeros.gz", b"\0", 200 << 20)  # 200 MB without a line end
    lines = bomb(tmp_path / "lines.gz", b"2 1 eni-a 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 A OK\n", 64 << 20,
                 header=V2.encode() + b"\n")  # fmt: skip
    assert zeros.stat().st_size < 1 << 20 and lines.stat().st_size < 1 << 20
    peak, problem = peak_unpacking(zeros, tmp_path / "z")
    assert problem == f"a line longer than {flowlog_records.MAX_LINE:,} bytes"
    assert peak < 8 << 20
    peak, problem = peak_unpacking(lines, tmp_path / "l", limit=16 << 20)
    assert problem == f"more than {16 << 20:,} bytes unpacked (the bound per object)"
    assert peak < 8 << 20
    assert sum(p.stat().st_size for p in (tmp_path / "l").iterdir()) <= 17 << 20  # disk is bounded too


def test_any_chunking_of_gzip_members_or_plain_text_unpacks_whole_and_long_lines_are_refused(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    for attempt in range(20):
        max_line = rng.choice([64, 1000, 4096])
        lengths = [rng.randrange(0, max_line) for _ in range(rng.randrange(1, 100))]
        lines = [b"h" * rng.randrange(1, max_line), *(bytes(rng.choices(b"abc ", k=n)) for n in lengths)]
        lines += [lines[-1]] * rng.randrange(0, 300)  # long matches: output beyond a piece stays in zlib
        body = b"\n".join(lines) + b"\n"
        cuts = sorted(rng.sample(range(1, len(body)), rng.randrange(0, 4)))
        parts = zip([0, *cuts], [*cuts, len(body)], strict=True)
        members = b"".join(gzip.compress(body[a:b]) for a, b in parts)  # gzip members, cut anywhere
        for data in (members, body):
            size = rng.randrange(1 + len(data) // 300, 5000)  # down to a byte, at most ~300 chunks
            pieces = (data[i : i + size] for i in range(0, len(data), size))
            [path] = unpack(pieces, Path(tempfile.mkdtemp(dir=tmp_path)), max_line=max_line)
            assert path.read_bytes() == body, attempt
        too_long = body + b"x" * (max_line + 1)
        with pytest.raises(UnsupportedObject, match="a line longer than"):
            unpack([gzip.compress(too_long)], Path(tempfile.mkdtemp(dir=tmp_path)), max_line=max_line)
