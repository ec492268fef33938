"""Flow-log records: flow-log objects in, per-flow sums out.

An object is text (gzip or plain) whose first line names its fields (the AWS default v2 format or any custom
one), or Parquet. `unpack` writes it to disk as text, checking the gzip stream to its end, in pieces of at
most `MAX_LINE` bytes; a longer line, or more than `MAX_UNPACKED` bytes in all, makes it unusable, so memory
and disk are bounded whatever the object (a decompression bomb included).
Only the fields the reader needs are read, by name, so any format that has them works.
Records are read in batches by pyarrow's CSV/Parquet readers (C++, about 3x pure Python here: see
`bench/flowlogs.py`) and summed per flow, `(interface-id, srcaddr, dstaddr, protocol)`, batch by batch:
memory holds one batch and the sums, never the object. Records with `log-status` NODATA or SKIPDATA (no
addresses) are skipped; a line with a wrong number of fields, a number that is not one, or no protocol,
start or end (`-`) is a counted skip; an object that is not flow-log data (no header with the required
fields, broken gzip, too large) raises `UnsupportedObject` and is left alone by the caller.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
import pyarrow.parquet as pq

from engine.core import gunzip
from engine.core.ahead import in_order

REQUIRED = ("interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "start", "end")
OPTIONAL = ("bytes", "packets", "log-status")
NUMBERS = ("srcport", "dstport", "protocol", "start", "end", "bytes", "packets")
SKIPPED_STATUS = ("NODATA", "SKIPDATA")
KEY = ("interface-id", "srcaddr", "dstaddr", "protocol")
SUMS = (("bytes", "sum"), ("packets", "sum"), ("records", "sum"), ("start", "min"), ("end", "max"),
        ("srcport", "min"), ("dstport", "min"))  # fmt: skip
SEGMENT = 64 << 20  # bytes of text read whole (an object is cut into segments of about this size)
# Bytes of text per parsing block (a segment's blocks are parsed in parallel): twice MAX_LINE, so each holds a
# line end, and small enough that 2 cores share a 10 MB segment evenly (4 MiB: 3 blocks, a core idle a third).
BLOCK = 2 << 20
COMPACT_ROWS = 500_000  # partial sums kept before they are summed again
VERDICTS = 200_000  # addresses whose `private` verdict is remembered (about 30 MB)
MAX_LINE = 1 << 20  # bytes: a longer line makes the object unusable; also the step of decompression
MAX_UNPACKED = 2 << 30  # bytes of unpacked content per object; more makes it unusable
GZIP = b"\x1f\x8b"
USED = (*KEY, "start", "end")  # a record without one of these cannot be used
_DIGITS = r"^[0-9]+$"
SCHEMA = pa.schema(  # of the partial sums
    [*((name, pa.string()) for name in KEY[:3]), *((name, pa.int64()) for name in (KEY[3], *dict(SUMS)))]
)
T = TypeVar("T")


class UnsupportedObject(Exception):
    """Not flow-log data this reader can use; the object is reported and left in the bucket."""


@dataclass
class Flow:
    """The sums of one flow: the records one interface logged for (srcaddr, dstaddr, protocol)."""

    bytes: int
    packets: int
    records: int
    start: int
    end: int
    srcport: int  # lowest source port seen
    dstport: int  # lowest destination port seen


@dataclass
class FlowSums:
    """Per-flow sums over any number of objects, and what was skipped.

    With `interfaces`, only flows of these interfaces are kept, and with `private`, only those between two
    private addresses; objects read or merged are filtered as they come (lines as they are read, before
    they are grouped), so the sums grow with the private traffic of known interfaces, not with every public
    peer. What is left out is counted in `skipped` (records, by reason), decided on whole columns (each
    distinct interface or address judged once), not flow by flow."""

    interfaces: Collection[str] | None = None
    private: Callable[[str], bool] | None = None
    records: int = 0  # every record read, skipped ones included
    skipped_status: int = 0  # NODATA / SKIPDATA
    bad_lines: int = 0  # wrong number of fields, or not a number where one belongs
    skipped: Counter = field(default_factory=Counter)
    _parts: list[pa.Table] = field(default_factory=list)
    _rows: int = 0
    _verdicts: dict[str, bool] = field(default_factory=dict)  # address -> `private(address)`, for `empty` too

    def _private(self, addresses: list[str]) -> list[bool]:
        """`private` of each address, each judged once per run (the same peers come back in every object);
        forgotten past `VERDICTS` addresses, so that a run with many public peers stays bounded."""
        verdicts, private = self._verdicts, self.private
        assert private is not None
        if len(verdicts) > VERDICTS:
            verdicts.clear()
        found = []
        for address in addresses:
            verdict = verdicts.get(address)
            if verdict is None:
                verdict = verdicts[address] = private(address)
            found.append(verdict)
        return found

    def add_object(self, path: Path, parquet: bool = False) -> None:
        """Read one file `unpack` wrote (a segment of an object's text, or a Parquet object) into the sums."""
        before = (self.records, self.skipped_status, self.bad_lines, len(self._parts), self._rows)
        skipped = self.skipped.copy()
        try:
            try:
                self._read(path, parquet, strict=True)
            except pa.ArrowInvalid:  # a number that is not one: read again, checking each value
                self.records, self.skipped_status, self.bad_lines = before[:3]
                del self._parts[before[3] :]
                self._rows, self.skipped = before[4], skipped
                self._read(path, parquet, strict=False)
        except pa.ArrowException as exc:  # e.g. a Parquet list column where a number belongs
            raise UnsupportedObject(f"unreadable: {type(exc).__name__}: {str(exc)[:200]}") from None

    def empty(self) -> FlowSums:
        """New sums with these filters: for one object, read on its own and then merged (or not at all)."""
        return FlowSums(interfaces=self.interfaces, private=self.private, _verdicts=self._verdicts)

    def of_files(self, paths: list[Path], parquet: bool = False) -> FlowSums:
        """New sums with these filters, of one object's files (`unpack`'s): to merge whole, or not at all."""
        own = self.empty()
        for path in paths:
            own.add_object(path, parquet=parquet)
        return own

    def merge(self, other: FlowSums) -> None:
        """Add another object's sums (read on its own, so a corrupt object adds nothing)."""
        other._compact()
        parts = [self._kept(part.cast(SCHEMA)) for part in other._parts]  # all of it, or nothing
        self.records += other.records
        self.skipped_status += other.skipped_status
        self.bad_lines += other.bad_lines
        self.skipped.update(other.skipped)
        self._parts += parts
        self._rows += sum(part.num_rows for part in parts)
        self._compact_when_due()

    def flows(self) -> dict[tuple[str, str, str, int], Flow]:
        """The sums per (interface-id, srcaddr, dstaddr, protocol), of the flows kept."""
        self._compact()
        if not self._parts:
            return {}
        table = self._kept(self._parts[0])
        columns = [table.column(name).to_pylist() for name in table.column_names]
        return {row[:4]: Flow(*row[4:]) for row in zip(*columns, strict=True)}  # type: ignore[misc]

    def _kept(self, table: pa.Table) -> pa.Table:
        if self.interfaces is not None:
            known = pc.is_in(table["interface-id"], pa.array(list(self.interfaces), pa.string()))
            self._skip("unknown_interface", table, known)
            table = table.filter(known)
        if self.private is not None:
            addresses = pc.unique(
                pa.chunked_array([*table["srcaddr"].chunks, *table["dstaddr"].chunks], pa.string())
            )
            listed = addresses.to_pylist()
            judged = zip(listed, self._private(listed), strict=True)
            inside = pa.array([address for address, ok in judged if ok], pa.string())
            both = pc.and_(pc.is_in(table["srcaddr"], inside), pc.is_in(table["dstaddr"], inside))
            self._skip("public", table, both)
            table = table.filter(both)
        return table

    def _skip(self, reason: str, table: pa.Table, kept: pa.Array) -> None:
        if left_out := pc.sum(pc.filter(table["records"], pc.invert(kept))).as_py():
            self.skipped[reason] += left_out

    def _read(self, path: Path, parquet: bool, strict: bool) -> None:
        for table in _tables(path, parquet, strict, self):
            self._add(table, strict)

    def _add(self, table: pa.Table, strict: bool) -> None:
        self.records += table.num_rows
        if not strict:
            table = self._numbers(table)
        usable = None
        if any(table[name].null_count for name in USED):  # NODATA/SKIPDATA lines have no addresses
            usable = self._usable(table)
            self._count_unusable(table, usable)
        if not table.num_rows:
            return
        # Grouping on dictionary indices (each string hashed once) beats grouping on the strings. Unusable
        # lines get no interface, so they group apart and their groups are dropped: cheaper than filtering
        # every column first.
        columns, dictionaries = {}, {}
        for name in KEY[:3]:
            encoded = pc.dictionary_encode(table[name]).combine_chunks()
            dictionaries[name], columns[name] = encoded.dictionary, encoded.indices
        if self.interfaces is not None or self.private is not None:
            usable = self._filtered(dictionaries, columns, usable)
        if usable is not None:
            for name in KEY[:3]:  # all three: the lines left out fall into a few groups
                columns[name] = pc.if_else(usable, columns[name], None)
        columns.update({name: table[name] for name in ("protocol", "srcport", "dstport", "start", "end")})
        for name in ("bytes", "packets"):
            present = name in table.column_names
            columns[name] = table[name] if present else pa.nulls(table.num_rows, pa.int64())
        first = [s for s in SUMS if s[0] != "records"] + [([], "count_all")]
        sums = pa.table(columns).group_by(list(KEY), use_threads=False).aggregate(first)
        sums = sums.rename_columns([c if c != "count_all" else "records_sum" for c in sums.column_names])
        if usable is not None:
            sums = sums.filter(pc.is_valid(sums[KEY[0]]))
            if not sums.num_rows:
                return
        for name, dictionary in dictionaries.items():
            sums = sums.set_column(sums.column_names.index(name), name, pc.take(dictionary, sums[name]))
        self._append(sums)

    def _filtered(self, dictionaries: dict, columns: dict, usable: pa.Array | None) -> pa.Array:
        """The usable lines the filters keep, counting the others as `_kept` does, decided on the dictionaries
        (each interface and address judged once), so the lines left out are never grouped."""
        kept = pa.repeat(pa.scalar(True), len(columns[KEY[0]])) if usable is None else usable
        if self.interfaces is not None:
            known = pc.is_in(dictionaries[KEY[0]], pa.array(list(self.interfaces), pa.string()))
            kept = self._count(kept, pc.take(known, columns[KEY[0]]), "unknown_interface")
        if self.private is not None:
            inside = {}
            for name in KEY[1:3]:
                private = pa.array(self._private(dictionaries[name].to_pylist()), pa.bool_())
                inside[name] = pc.take(private, columns[name])
            kept = self._count(kept, pc.and_kleene(*inside.values()), "public")
        return kept

    def _count(self, kept: pa.Array, passes: pa.Array, reason: str) -> pa.Array:
        if left_out := pc.sum(pc.and_kleene(kept, pc.invert(passes))).as_py():
            self.skipped[reason] += left_out
        return pc.and_kleene(kept, passes)

    @staticmethod
    def _usable(table: pa.Table) -> pa.Array:
        usable = pc.is_valid(table[USED[0]])
        for name in USED[1:]:
            usable = pc.and_(usable, pc.is_valid(table[name]))
        return usable

    def _count_unusable(self, table: pa.Table, usable: pa.Array) -> None:
        """Count the lines lacking an address, protocol, start or end: NODATA/SKIPDATA ones, and bad lines."""
        if unusable := table.num_rows - (pc.sum(usable).as_py() or 0):
            no_data = 0
            if "log-status" in table.column_names:
                status = pc.filter(table["log-status"], pc.invert(usable))
                no_data = pc.sum(pc.is_in(status, pa.array(SKIPPED_STATUS))).as_py() or 0
            self.skipped_status += no_data
            self.bad_lines += unusable - no_data

    def _numbers(self, table: pa.Table) -> pa.Table:
        """Strings to numbers, counting and dropping the lines where one is not a number."""
        present = [n for n in NUMBERS if n in table.column_names]
        good = pa.repeat(pa.scalar(True), table.num_rows)
        for name in present:
            column = table[name]
            number = pc.fill_null(pc.match_substring_regex(column, _DIGITS), True)  # null ("-") is fine
            good = pc.and_(good, number)
        self.bad_lines += table.num_rows - (pc.sum(good).as_py() or 0)
        table = table.filter(good)
        for name in present:
            index = table.column_names.index(name)
            table = table.set_column(index, name, pc.cast(table[name], pa.int64()))
        return table

    def _append(self, sums: pa.Table) -> None:
        names = [*KEY, *(f"{c}_{op}" for c, op in SUMS)]
        self._parts.append(sums.select(names).rename_columns([*KEY, *(c for c, _ in SUMS)]))
        self._rows += sums.num_rows
        self._compact_when_due()

    def _compact_when_due(self) -> None:
        if self._rows > COMPACT_ROWS and len(self._parts) > 1:
            self._compact()

    def _compact(self) -> None:
        if len(self._parts) < 2:
            return
        merged = pa.concat_tables(self._parts)
        self._parts, self._rows = [], 0
        self._append(merged.group_by(list(KEY)).aggregate(list(SUMS)))


def unpack(
    chunks: Iterable[bytes], directory: Path, segment: int | None = SEGMENT, limit: int = MAX_UNPACKED,
    max_line: int = MAX_LINE,
) -> list[Path]:  # fmt: skip
    """Write an object's content under `directory`, gunzipped when it is gzip (every member, each checked to
    its end, so a truncated object is refused rather than half read). Text is cut at line ends into files of
    about `segment` bytes, each starting with the header line, so that each is read whole (in parallel) and
    memory stays bounded; `segment=None` writes one file as it is (Parquet). Content is handled in pieces of
    at most `max_line` bytes; a text line longer than that, or more than `limit` bytes in all, raise
    `UnsupportedObject`. Returns the files, in order."""
    out = _Segments(directory, segment, max_line if segment else None)
    total = 0
    try:
        for piece in _pieces(chunks, max_line):
            total += len(piece)
            if total > limit:
                raise UnsupportedObject(f"more than {limit:,} bytes unpacked (the bound per object)")
            out.write(piece)
    except gunzip.error as exc:
        raise UnsupportedObject(f"cannot decompress: {exc}") from None
    finally:
        out.close()
    return out.paths


def _pieces(chunks: Iterable[bytes], step: int) -> Iterator[bytes]:
    """The content in pieces of at most `step` bytes: gunzipped (each member to its end) when it is gzip."""
    inflate: Any = None
    for chunk in chunks:
        if inflate is None:
            inflate = gunzip.inflater() if chunk[:2] == GZIP else False
        if inflate is False:
            yield from (chunk[at : at + step] for at in range(0, len(chunk), step))
            continue
        while True:
            piece = inflate.decompress(chunk, step)
            if piece:
                yield piece
            if inflate.eof and inflate.unused_data:  # the next gzip member
                chunk, inflate = inflate.unused_data, gunzip.inflater()
                continue
            chunk = inflate.unconsumed_tail
            if not chunk and len(piece) < step:  # a full piece may leave output inside the inflater
                break
    if inflate and not inflate.eof:
        raise UnsupportedObject("cannot decompress: the gzip stream ends early (truncated object)")


def unpacked(
    objects: Iterable[T], chunks: Callable[[T], Iterable[bytes]], directory: Path,
    parquet: Callable[[T], bool] = lambda _: False, ahead: int = 2, limit: int = MAX_UNPACKED,
    read: Callable[[T, list[Path]], Any] | None = None, workers: int = 1,
) -> Iterator[tuple[T, Any]]:  # fmt: skip
    """Each object `unpack`ed under `directory`, in order, up to `ahead` of them while the caller reads the
    current one: download and decompression (which release the GIL) overlap parsing. An object that cannot
    be downloaded or unpacked comes with its exception (`UnsupportedObject`, a failed call, a full disk), for
    the caller to judge. With `read`, each object's files are read on the unpacking thread too, and what
    `read(object, files)` returns (or raises) comes instead of the files: `workers` objects are unpacked and
    read at once (pyarrow's readers release the GIL), still handed over in order. Each object's files are
    removed once the caller moves on."""  # fmt: skip
    made: list[Path] = []

    def job(item: tuple[int, T]) -> Any:
        index, obj = item
        made.append(where := directory / f"object-{index}")
        where.mkdir()
        paths = unpack(chunks(obj), where, segment=None if parquet(obj) else SEGMENT, limit=limit)
        return paths if read is None else read(obj, paths)

    try:
        with closing(in_order(enumerate(objects), job, workers, ahead, name="unpack")) as done:
            for (index, obj), outcome in done:
                try:
                    yield obj, outcome
                finally:
                    shutil.rmtree(directory / f"object-{index}", ignore_errors=True)
    finally:  # the objects unpacked ahead that the caller never took
        for where in made:
            shutil.rmtree(where, ignore_errors=True)


class _Segments:
    """Files of about `size` bytes of text, cut at line ends, each starting with the first (header) line."""

    def __init__(self, directory: Path, size: int | None, max_line: int | None = None) -> None:
        self.directory, self.size, self.max_line, self.paths = directory, size, max_line, []
        self._out: IO[bytes] | None = None
        self._header: bytes | None = None if size else b""
        self._pending = b""
        self._written = 0
        self._line = 0  # bytes of the current line so far

    def write(self, data: bytes) -> None:
        if self.max_line is not None:
            self._measure(data)
        if self._header is None:  # the header line is not complete yet
            self._pending += data
            end = self._pending.find(b"\n")
            if end < 0:
                return
            self._header, data, self._pending = self._pending[: end + 1], self._pending[end + 1 :], b""
        if self._out is None:
            self._open()
        while data:
            room = self.size - self._written if self.size else len(data)
            if len(data) <= room:
                self._put(data)
                return
            cut = data.rfind(b"\n", 0, room)
            cut = cut if cut >= 0 else data.find(b"\n", room)  # a line longer than what is left
            if cut < 0:
                self._put(data)
                return
            self._put(data[: cut + 1])
            data = data[cut + 1 :]
            self._open()

    def _measure(self, data: bytes) -> None:
        """Refuse a line longer than `max_line`; `data` is at most that long, so only a line that spans
        pieces can be: the one it continues, up to its first line end."""
        first = data.find(b"\n")
        line = self._line + (len(data) if first < 0 else first)
        if line > self.max_line:  # type: ignore[operator]
            raise UnsupportedObject(f"a line longer than {self.max_line:,} bytes")
        self._line = line if first < 0 else len(data) - data.rfind(b"\n") - 1

    def _put(self, data: bytes) -> None:
        assert self._out is not None
        self._out.write(data)
        self._written += len(data)

    def _open(self) -> None:
        if self._out is not None:
            self._out.close()
        path = self.directory / f"segment-{len(self.paths):05d}"
        self._out = path.open("wb")
        self.paths.append(path)
        self._out.write(self._header or b"")
        self._written = len(self._header or b"")

    def close(self) -> None:
        if self._header is None and self._pending:  # no line end at all: one file, refused by its header
            self._header, pending = b"", self._pending
            self._open()
            self._put(pending)
        if self._out is not None:
            self._out.close()


def _header(path: Path) -> list[str]:
    with open(path, "rb") as stream:
        line = stream.readline(64 * 1024)
    try:
        return line.decode("ascii").split()
    except UnicodeDecodeError:
        raise UnsupportedObject("the first line is not a header of field names") from None


def _missing(names: list[str]) -> list[str]:
    return [n for n in REQUIRED if n not in names]


def _tables(path: Path, parquet: bool, strict: bool, sums: FlowSums) -> Iterator[pa.Table]:
    if parquet:
        yield from _parquet_tables(path, strict)
        return
    names = _header(path)
    if missing := _missing(names):
        raise UnsupportedObject(f"the header has no {', '.join(missing)} (fields: {' '.join(names)[:200]})")
    wanted = [n for n in (*REQUIRED, *OPTIONAL) if n in names]

    def bad_line(_row: object) -> str:
        sums.bad_lines += 1
        return "skip"

    types = {n: (pa.int64() if strict and n in NUMBERS else pa.string()) for n in wanted}
    try:
        table = csv.read_csv(  # a whole segment: its blocks are parsed in parallel
            str(path),
            read_options=csv.ReadOptions(block_size=BLOCK, use_threads=True),
            parse_options=csv.ParseOptions(delimiter=" ", invalid_row_handler=bad_line),
            convert_options=csv.ConvertOptions(
                include_columns=wanted, column_types=types,
                null_values=["-", ""], strings_can_be_null=True,
            ),
        )  # fmt: skip
        yield table
    except OSError as exc:
        raise UnsupportedObject(f"cannot read: {exc}") from None


def _parquet_tables(path: Path, strict: bool) -> Iterator[pa.Table]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnsupportedObject(f"not a Parquet file: {exc}") from None
    by_name = {name.replace("_", "-"): name for name in parquet.schema_arrow.names}
    if missing := _missing(list(by_name)):
        raise UnsupportedObject(f"the Parquet schema has no {', '.join(missing)}")
    wanted = [n for n in (*REQUIRED, *OPTIONAL) if n in by_name]
    for batch in parquet.iter_batches(batch_size=256 * 1024, columns=[by_name[n] for n in wanted]):
        arrays = []
        for name, array in zip(wanted, batch.columns, strict=True):
            target = (pa.int64() if strict else pa.string()) if name in NUMBERS else pa.string()
            arrays.append(pc.cast(array, target))
        yield pa.Table.from_arrays(arrays, names=wanted)
