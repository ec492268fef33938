"""Property-based tests of the flow-log record reader: text objects (any header order, `-` values, wrong
field counts, junk) and Parquet objects (odd column types) give per-flow sums with counted skips, or
UnsupportedObject, never another exception."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from engine.flowlogs.records import OPTIONAL, REQUIRED, FlowSums, UnsupportedObject, unpack
from tests.fuzz import FUZZ, bounded

FIELDS = (*REQUIRED, *OPTIONAL, "version", "account-id", "action")
TOKENS = st.sampled_from(["-", "0", "6", "17", "443", "10.0.0.1", "10.0.0.2", "eni-a", "OK", "NODATA",
                          "SKIPDATA", "ACCEPT", "1700000000", "-1", "1e3", "9" * 25, "x"]) | st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=" \n\r"), min_size=1, max_size=8
)  # fmt: skip


def read(data: bytes, parquet: bool = False, segment: int | None = 256) -> FlowSums | None:
    """Sums of one object as the reader makes them (unpacked in pieces, then each file read), or None when
    the object was refused as UnsupportedObject."""
    sums = FlowSums()
    with tempfile.TemporaryDirectory() as directory:
        pieces = [data[i : i + 97] for i in range(0, len(data), 97)] or [b""]
        try:
            for path in unpack(pieces, Path(directory), segment=None if parquet else segment):
                bounded(lambda path=path: sums.add_object(path, parquet=parquet))
        except UnsupportedObject as exc:
            assert str(exc)
            return None
    check(sums)
    return sums


def check(sums: FlowSums) -> None:
    """The sums are well formed: counts are not negative and the flows hold no more records than were read."""
    flows = sums.flows()
    assert min(sums.records, sums.skipped_status, sums.bad_lines, *sums.skipped.values(), 0) == 0
    assert sum(f.records for f in flows.values()) <= sums.records
    for key, flow in flows.items():
        assert len(key) == 4 and all(isinstance(k, str) for k in key[:3]) and isinstance(key[3], int)
        assert flow.records >= 1


@st.composite
def text_object(draw: st.DrawFn) -> bytes:
    """A header naming the fields in any order (some may be missing), then lines of any tokens, some with
    the wrong number of fields."""
    names = draw(st.permutations(FIELDS))
    names = names[: draw(st.integers(min_value=1, max_value=len(names)))]
    lines = [" ".join(names)]
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        count = draw(st.sampled_from([len(names)] * 4 + [0, 1, len(names) - 1, len(names) + 1]))
        lines.append(" ".join(draw(st.lists(TOKENS, min_size=count, max_size=count))))
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    return text.encode()


@FUZZ
@given(text_object(), st.booleans())
def test_any_text_object_gives_sums_with_counted_skips_or_is_unsupported(data, compress):
    read(gzip.compress(data) if compress else data)


@FUZZ
@given(st.binary(max_size=1_500), st.booleans())
def test_any_bytes_give_sums_or_unsupported(data, parquet):
    read(data, parquet=parquet)


@FUZZ
@given(st.binary(min_size=1, max_size=600), st.integers(min_value=1, max_value=30))
def test_a_truncated_gzip_object_is_unsupported(data, cut):
    packed = gzip.compress(data)
    assert read(packed[: max(2, len(packed) - cut)]) is None


SCALAR_COLUMNS = [
    ("string", pa.string(), st.sampled_from(["eni-a", "10.0.0.1", "-", "", "6", "x"])),
    ("int", pa.int64(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    ("small", pa.int8(), st.integers(min_value=-128, max_value=127)),
    ("float", pa.float64(), st.floats(allow_nan=True)),
    ("bool", pa.bool_(), st.booleans()),
    ("binary", pa.binary(), st.binary(max_size=6)),
]  # fmt: skip
NESTED_COLUMNS = [
    ("list", pa.list_(pa.int64()), st.lists(st.integers(min_value=0, max_value=99), max_size=3)),
    ("struct", pa.struct([("a", pa.int64())]), st.fixed_dictionaries({"a": st.integers(0, 9)})),
]


@st.composite
def parquet_object(draw: st.DrawFn, types: list) -> bytes:
    """A Parquet file whose flow-log columns (some missing) each have one of `types`, nulls included."""
    rows = draw(st.integers(min_value=0, max_value=8))
    columns = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, unique=True)):
        _, kind, values = draw(st.sampled_from(types))
        columns[name] = pa.array(draw(st.lists(st.none() | values, min_size=rows, max_size=rows)), kind)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


@FUZZ
@given(parquet_object(SCALAR_COLUMNS))
def test_any_parquet_object_of_scalar_columns_gives_sums_or_is_unsupported(data):
    read(data, parquet=True)


def test_a_parquet_list_column_is_unsupported_not_a_crash():
    names = {name: pa.array(["1"], pa.string()) for name in REQUIRED}
    table = pa.table({**names, "end": pa.array([[1, 2]], pa.list_(pa.int64()))})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    assert read(sink.getvalue().to_pybytes(), parquet=True) is None


@FUZZ
@given(parquet_object(SCALAR_COLUMNS + NESTED_COLUMNS))
def test_any_parquet_object_gives_sums_or_is_unsupported(data):
    read(data, parquet=True)
