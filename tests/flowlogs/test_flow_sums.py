"""Per-flow sums, exactly: the interface and private-address filters with their skip counts, merging and
compaction of partial sums, the strict read and its retry, headers and Parquet schemas, and the parallel
unpacking of several objects. Objects are built in tmp_path; no AWS, no moto."""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.flowlogs import records
from engine.flowlogs.records import Flow, FlowSums, UnsupportedObject, unpack, unpacked

V2 = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action"
    " log-status"
)


def text(path: Path, *lines: str, header: str = V2) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def line(eni: str, src: str, dst: str, ports: str = "40000 443", protocol: str = "6", packets: str = "1",
         size: str = "100", start: str = "100", end: str = "160", status: str = "OK") -> str:  # fmt: skip
    """A default-format (v2) record."""
    return f"2 1 {eni} {src} {dst} {ports} {protocol} {packets} {size} {start} {end} ACCEPT {status}"


def read(path: Path, sums: FlowSums | None = None, parquet: bool | None = None) -> FlowSums:
    sums = FlowSums() if sums is None else sums
    sums.add_object(path) if parquet is None else sums.add_object(path, parquet=parquet)
    return sums


def parquet(path: Path, **columns: pa.Array | list) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def partial_sums(sums: FlowSums) -> tuple[list[int], int]:
    """The rows of each partial sum kept, and the row count the sums keep of them."""
    return [part.num_rows for part in sums._parts], sums._rows


# --- Flow sums ---------------------------------------------------------------------------------------------


def test_a_flow_sums_bytes_and_packets_and_keeps_the_first_start_last_end_and_lowest_ports(
    tmp_path: Path,
) -> None:
    sums = read(text(tmp_path / "a", *[
        line("eni-a", "10.0.0.1", "10.0.0.2", "40002 8443", packets="3", size="300", start="150", end="170"),
        line("eni-a", "10.0.0.1", "10.0.0.2", "40000 9443", packets="4", size="400", start="120", end="200"),
        line("eni-a", "10.0.0.1", "10.0.0.2", "40001 443", packets="5", size="500", start="130", end="190"),
    ]))  # fmt: skip
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(1200, 12, 3, 120, 200, 40000, 443)}
    assert (sums.records, sums.skipped_status, sums.bad_lines, dict(sums.skipped)) == (3, 0, 0, {})


def test_flows_are_told_apart_by_interface_addresses_and_protocol(tmp_path: Path) -> None:
    sums = read(text(tmp_path / "a", *[
        line("eni-a", "10.0.0.1", "10.0.0.2"), line("eni-b", "10.0.0.1", "10.0.0.2"),
        line("eni-a", "10.0.0.2", "10.0.0.1"), line("eni-a", "10.0.0.1", "10.0.0.3"),
        line("eni-a", "10.0.0.1", "10.0.0.2", protocol="17"),
    ]))  # fmt: skip
    one = Flow(100, 1, 1, 100, 160, 40000, 443)
    assert sums.flows() == {
        ("eni-a", "10.0.0.1", "10.0.0.2", 6): one, ("eni-b", "10.0.0.1", "10.0.0.2", 6): one,
        ("eni-a", "10.0.0.2", "10.0.0.1", 6): one, ("eni-a", "10.0.0.1", "10.0.0.3", 6): one,
        ("eni-a", "10.0.0.1", "10.0.0.2", 17): one,
    }  # fmt: skip


def test_no_object_gives_no_flows() -> None:
    assert FlowSums().flows() == {}
    assert FlowSums(interfaces={"eni-a"}, private=lambda _: True).flows() == {}


# --- Filters -----------------------------------------------------------------------------------------------

PRIVATE = lambda address: address.startswith("10.")  # noqa: E731


def mixed(path: Path) -> Path:
    """Flows of a known and an unknown interface, private and public, some of several records."""
    return text(path, *[
        line("eni-a", "10.0.0.1", "10.0.0.2"), line("eni-a", "10.0.0.1", "10.0.0.2"),  # known, private: kept
        line("eni-a", "10.0.0.1", "8.8.8.8"), line("eni-a", "10.0.0.1", "8.8.8.8"),  # known, public dst
        line("eni-a", "1.1.1.1", "10.0.0.2"),  # known, public src
        line("eni-x", "10.0.0.1", "10.0.0.2"), line("eni-x", "10.0.0.1", "10.0.0.2"),  # unknown, private
        line("eni-x", "10.0.0.3", "10.0.0.2"),  # unknown, private, another flow
        line("eni-x", "9.9.9.9", "8.8.8.8"),  # unknown and public
    ])  # fmt: skip


KEPT = Flow(200, 2, 2, 100, 160, 40000, 443)  # of ("eni-a", "10.0.0.1", "10.0.0.2", 6) in `mixed`


@pytest.mark.parametrize("merged", [True, False], ids=["merge", "flows"])
@pytest.mark.parametrize(
    ("interfaces", "private", "flows", "skipped"),
    [
        (None, None, 6, {}),
        ({"eni-a", "eni-b"}, None, 3, {"unknown_interface": 4}),
        (None, PRIVATE, 3, {"public": 4}),
        (["eni-a"], PRIVATE, 1, {"unknown_interface": 4, "public": 3}),
    ],
    ids=["none", "interfaces", "private", "both"],
)
def test_filters_keep_known_private_flows_and_count_what_they_leave_out_in_records(
    tmp_path: Path, merged: bool, interfaces: list | None, private: object, flows: int, skipped: dict
) -> None:
    sums = FlowSums(interfaces=interfaces, private=private)  # type: ignore[arg-type]
    if merged:
        sums.merge(read(mixed(tmp_path / "a")))
    else:
        read(mixed(tmp_path / "a"), sums)
    kept = sums.flows()
    assert len(kept) == flows
    assert kept[("eni-a", "10.0.0.1", "10.0.0.2", 6)] == KEPT
    assert dict(sums.skipped) == skipped
    assert (sums.records, sums.skipped_status, sums.bad_lines) == (9, 0, 0)
    if private is not None:
        assert all(PRIVATE(k[1]) and PRIVATE(k[2]) for k in kept)
    if interfaces is not None:
        assert {k[0] for k in kept} == {"eni-a"}


def test_filtered_merges_add_their_skips_and_leave_the_kept_flows_alone(tmp_path: Path) -> None:
    sums = FlowSums(interfaces={"eni-a"}, private=PRIVATE)
    for n in range(3):
        sums.merge(read(mixed(tmp_path / f"{n}")))
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(600, 6, 6, 100, 160, 40000, 443)}
    assert dict(sums.skipped) == {"unknown_interface": 12, "public": 9}
    assert sums.records == 27
    sums.flows()  # the merged sums were filtered as they came: nothing left out twice
    assert dict(sums.skipped) == {"unknown_interface": 12, "public": 9}


def test_a_private_flow_needs_both_addresses_private(tmp_path: Path) -> None:
    sums = FlowSums(private=lambda a: a in {"10.0.0.1", "10.0.0.2", "10.0.0.3"})
    first = read(
        text(tmp_path / "a", line("eni-a", "10.0.0.1", "10.0.0.9"), line("eni-a", "10.0.0.1", "10.0.0.3"))
    )
    public = line("eni-a", "10.0.0.9", "10.0.0.2")
    read(text(tmp_path / "b", public, public, line("eni-a", "10.0.0.1", "10.0.0.3")), first)
    sums.merge(first)  # 10.0.0.1 is only a source, 10.0.0.3 only a destination
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.3", 6): Flow(200, 2, 2, 100, 160, 40000, 443)}
    assert dict(sums.skipped) == {"public": 3}


def test_each_address_is_judged_once_for_every_object_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    judged: Counter = Counter()

    def private(address: str) -> bool:
        judged[address] += 1
        return address.startswith("10.")

    sums = FlowSums(private=private)
    for n in range(3):  # each object read on its own, as the reader does, then merged
        own = sums.empty()
        lines = line("eni-a", "10.0.0.1", "10.0.0.2"), line("eni-a", "10.0.0.1", "52.0.0.1")
        read(text(tmp_path / f"{n}", *lines), own)
        sums.merge(own)
    assert judged == {"10.0.0.1": 1, "10.0.0.2": 1, "52.0.0.1": 1}
    assert sums.flows()[("eni-a", "10.0.0.1", "10.0.0.2", 6)].records == 3
    assert dict(sums.skipped) == {"public": 3}
    monkeypatch.setattr(records, "VERDICTS", 1)  # past the bound: forgotten, judged again
    read(text(tmp_path / "more", line("eni-a", "10.0.0.1", "10.0.0.2")), sums.empty())
    assert judged == {"10.0.0.1": 2, "10.0.0.2": 2, "52.0.0.1": 1}


def test_no_known_interface_or_no_private_address_keeps_nothing(tmp_path: Path) -> None:
    for sums, reason in (
        (FlowSums(interfaces=set()), "unknown_interface"),
        (FlowSums(private=lambda _: False), "public"),
    ):
        sums.merge(read(mixed(tmp_path / "a")))
        assert (sums.flows(), dict(sums.skipped)) == ({}, {reason: 9})


def test_an_object_left_out_whole_by_the_filters_adds_no_flows_and_no_error(tmp_path: Path) -> None:
    unknown = text(
        tmp_path / "a", line("eni-x", "10.0.0.1", "10.0.0.2"), line("eni-x", "10.0.0.1", "8.8.8.8")
    )
    public = text(tmp_path / "b", line("eni-a", "10.0.0.1", "8.8.8.8"))
    sums = FlowSums(interfaces={"eni-a"}, private=PRIVATE)
    sums.merge(read(unknown))  # nothing left for the private filter: no columns to look at
    assert (sums.flows(), dict(sums.skipped)) == ({}, {"unknown_interface": 2})
    sums = FlowSums(interfaces={"eni-a"}, private=PRIVATE)
    sums.merge(read(public))
    assert (sums.flows(), dict(sums.skipped)) == ({}, {"public": 1})


# --- Merge and compaction ----------------------------------------------------------------------------------


def test_merge_adds_every_counter_over_several_objects(tmp_path: Path) -> None:
    sums = FlowSums()
    sums.skipped["public"] = 1
    for n in range(3):
        other = read(text(tmp_path / f"{n}", *[
            line("eni-a", "10.0.0.1", "10.0.0.2", size=str(10 + n)),
            line("eni-a", "-", "-", status="NODATA"), line("eni-a", "-", "-", status="SKIPDATA"),
            "2 1 eni-a 10.0.0.1",  # too few fields
        ]))  # fmt: skip
        other.skipped.update({"public": 2, "unknown_interface": n})
        sums.merge(other)
    assert (sums.records, sums.skipped_status, sums.bad_lines) == (9, 6, 3)
    assert dict(sums.skipped) == {"public": 7, "unknown_interface": 3}
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(33, 3, 3, 100, 160, 40000, 443)}


def test_partial_sums_are_summed_again_past_the_bound_with_the_same_flows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = [
        text(tmp_path / "a", line("eni-a", "10.0.0.1", "10.0.0.2"), line("eni-a", "10.0.0.1", "10.0.0.3")),
        text(tmp_path / "b", line("eni-a", "10.0.0.1", "10.0.0.4", size="7")),
        text(tmp_path / "c", line("eni-a", "10.0.0.1", "10.0.0.2", start="90", end="300")),
        text(tmp_path / "d", line("eni-a", "10.0.0.1", "10.0.0.3"), line("eni-a", "10.0.0.1", "10.0.0.5")),
    ]
    unbounded = FlowSums()
    for path in objects:
        read(path, unbounded)
    monkeypatch.setattr(records, "COMPACT_ROWS", 3)
    for add in ("add_object", "merge"):
        sums = FlowSums()
        steps = []
        for path in objects:
            sums.add_object(path) if add == "add_object" else sums.merge(read(path))
            steps.append(partial_sums(sums))
        # 2 rows; 3 rows in 2 parts (not past the bound); 4 > 3: summed again into 3 rows; 3 + 2 > 3: 4 rows
        assert steps == [([2], 2), ([2, 1], 3), ([3], 3), ([4], 4)], add
        assert sums.flows() == unbounded.flows()
    two = FlowSums()
    two.merge(read(objects[0]))
    two.merge(read(objects[3]))  # 4 rows in 2 parts: past the bound
    assert partial_sums(two) == ([3], 3)


# --- Strict read, retry and unreadable objects -------------------------------------------------------------


def test_add_object_reads_text_by_default(tmp_path: Path) -> None:
    sums = FlowSums()
    sums.add_object(text(tmp_path / "a", line("eni-a", "10.0.0.1", "10.0.0.2")))
    assert list(sums.flows()) == [("eni-a", "10.0.0.1", "10.0.0.2", 6)]


def test_a_non_number_reads_the_object_again_counting_each_bad_line_once(tmp_path: Path) -> None:
    sums = read(
        text(
            tmp_path / "first",
            line("eni-a", "10.0.0.1", "10.0.0.2"),
            line("eni-a", "-", "-", status="NODATA"),
            "x",  # too few fields
        )
    )
    assert (sums.records, sums.skipped_status, sums.bad_lines) == (2, 1, 1)
    read(text(tmp_path / "a", *[
        line("eni-a", "10.0.0.1", "10.0.0.2", size="many"),  # not a number: the object is read again
        line("eni-a", "10.0.0.1", "10.0.0.2", size="-", packets="-"),  # no bytes: fine
        line("eni-a", "10.0.0.1", "10.0.0.2", ports="- -"),  # no ports: fine
        line("eni-a", "-", "-", status="NODATA"),
        "2 1 eni-a 10.0.0.1",  # too few fields
    ]), sums)  # fmt: skip
    assert (sums.records, sums.skipped_status, sums.bad_lines) == (2 + 4, 2, 1 + 2)
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(200, 2, 3, 100, 160, 40000, 443)}


def test_an_object_of_nodata_records_only_is_all_skipped_status(tmp_path: Path) -> None:
    sums = read(text(tmp_path / "a", *[line("eni-a", "-", "-", status=s) for s in ("NODATA", "SKIPDATA")]))
    assert (sums.records, sums.skipped_status, sums.bad_lines, sums.flows()) == (2, 2, 0, {})


def test_an_object_of_non_numbers_only_is_all_bad_lines(tmp_path: Path) -> None:
    sums = read(
        text(tmp_path / "a", *[line("eni-a", "10.0.0.1", "10.0.0.2", protocol=p) for p in ("tcp", "udp")])
    )
    assert (sums.records, sums.bad_lines, sums.flows()) == (2, 2, {})


def test_a_parquet_retry_drops_what_the_strict_read_had_added(tmp_path: Path) -> None:
    rows = 256 * 1024 + 2  # the non-number is in the second batch: the first was added already

    def column(value: str, first: str | None = None, last: str | None = None) -> pa.Array:
        ends = [pa.array([first or value]), pa.array([last or value])]
        return pa.concat_arrays([ends[0], pa.repeat(pa.scalar(value), rows - 2), ends[1]])

    no_address = pa.concat_arrays([pa.nulls(1, pa.string()), pa.repeat(pa.scalar("10.0.0.1"), rows - 1)])
    path = parquet(  # the first record has no address (NODATA), the last a byte count that is not a number
        tmp_path / "a.parquet", interface_id=column("eni-a"), srcaddr=no_address, dstaddr=column("10.0.0.2"),
        srcport=column("1"), dstport=column("2"), protocol=column("6"), start=column("100"),
        end=column("160"), bytes=column("1", last="x"), log_status=column("OK", first="NODATA"),
    )  # fmt: skip
    sums = read(
        text(tmp_path / "b", line("eni-b", "10.0.0.1", "10.0.0.2"), line("eni-b", "10.0.0.1", "10.0.0.3"))
    )
    read(path, sums, parquet=True)
    assert (sums.records, sums.skipped_status, sums.bad_lines) == (2 + rows, 1, 1)
    assert partial_sums(sums) == ([2, 1, 1], 4)  # the object's two batches, read again
    flow = sums.flows()[("eni-a", "10.0.0.1", "10.0.0.2", 6)]
    assert flow == Flow(rows - 2, None, rows - 2, 100, 160, 1, 2)


def test_a_parquet_column_of_the_wrong_type_is_unsupported_with_the_reason(tmp_path: Path) -> None:
    columns = {name.replace("-", "_"): ["1"] for name in records.REQUIRED}
    path = parquet(tmp_path / "a.parquet", **{**columns, "end": pa.array([[1, 2]], pa.list_(pa.int64()))})
    with pytest.raises(
        UnsupportedObject, match=r"^unreadable: ArrowNotImplementedError: Unsupported cast from list"
    ):
        read(path, parquet=True)
    long = pa.array([{"a" * 300: 1}], pa.struct([("a" * 300, pa.int64())]))
    path = parquet(tmp_path / "b.parquet", **{**columns, "end": long})
    with pytest.raises(UnsupportedObject) as refused:
        read(path, parquet=True)
    assert str(refused.value).startswith(
        "unreadable: ArrowNotImplementedError: Unsupported cast from struct<aaa"
    )
    assert len(str(refused.value)) == len("unreadable: ArrowNotImplementedError: ") + 200


# --- Headers and Parquet schemas ---------------------------------------------------------------------------


def test_any_field_order_is_read_by_name_and_optional_fields_may_be_absent(tmp_path: Path) -> None:
    header = "end start protocol dstport srcport dstaddr srcaddr interface-id action"
    sums = read(text(tmp_path / "a", "160 100 6 443 40000 10.0.0.2 10.0.0.1 eni-a ACCEPT", header=header))
    with_all = read(text(tmp_path / "b", line("eni-a", "10.0.0.1", "10.0.0.2", packets="2", size="50")), sums)
    assert with_all.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(50, 2, 2, 100, 160, 40000, 443)}
    header = "protocol interface-id srcaddr dstaddr srcport dstport start end packets"
    only = read(text(tmp_path / "c", "6 eni-b 10.0.0.1 10.0.0.2 1 2 3 4 7", header=header))
    assert only.flows() == {("eni-b", "10.0.0.1", "10.0.0.2", 6): Flow(None, 7, 1, 3, 4, 1, 2)}


def test_a_line_without_a_usable_key_field_is_a_bad_line_and_a_dash_elsewhere_is_none(tmp_path: Path) -> None:
    header = "interface-id srcaddr dstaddr srcport dstport protocol start end bytes"
    sums = read(text(tmp_path / "a", *[
        "- 10.0.0.1 10.0.0.2 1 2 6 100 160 5", "eni-a - 10.0.0.2 1 2 6 100 160 5",
        "eni-a 10.0.0.1 - 1 2 6 100 160 5",
        "eni-a 10.0.0.1 10.0.0.2 - - 6 100 160 -",
    ], header=header))  # fmt: skip
    assert (sums.records, sums.skipped_status, sums.bad_lines) == (4, 0, 3)  # no log-status: all bad lines
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(None, None, 1, 100, 160, None, None)}


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("version srcaddr dstaddr srcport dstport protocol start end", "interface-id"),
        ("interface-id srcaddr dstaddr srcport protocol start", "dstport, end"),
        ("bytes packets", "interface-id, srcaddr, dstaddr, srcport, dstport, protocol, start, end"),
    ],
)
def test_a_header_without_required_fields_names_them(tmp_path: Path, header: str, missing: str) -> None:
    with pytest.raises(UnsupportedObject) as refused:
        read(text(tmp_path / "a", "1 2 3", header=header))
    assert str(refused.value) == f"the header has no {missing} (fields: {header})"
    columns = {name.replace("-", "_"): ["1"] for name in header.split()}
    with pytest.raises(UnsupportedObject) as refused:
        read(parquet(tmp_path / "a.parquet", **columns), parquet=True)
    assert str(refused.value) == f"the Parquet schema has no {missing}"


def test_a_long_header_is_cut_in_the_message_and_a_binary_one_refused(tmp_path: Path) -> None:
    header = " ".join(f"field-{n}" for n in range(100))
    with pytest.raises(UnsupportedObject) as refused:
        read(text(tmp_path / "a", "1", header=header))
    assert str(refused.value) == f"the header has no {', '.join(records.REQUIRED)} (fields: {header[:200]})"
    (tmp_path / "b").write_bytes(b"interface-id \xff\n")
    with pytest.raises(UnsupportedObject, match=r"^the first line is not a header of field names$"):
        read(tmp_path / "b")


def test_a_header_is_read_up_to_64_kib(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_text(
        "x" * (64 * 1024 - 1) + " interface-id srcaddr dstaddr srcport dstport protocol start end\n1\n"
    )
    with pytest.raises(
        UnsupportedObject, match=r"^the header has no interface-id, srcaddr, dstaddr, srcport, "
    ):
        read(path)


def test_the_header_is_the_first_line_only(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"interface-id srcaddr dstaddr srcport\ndstport protocol start end\n")
    with pytest.raises(
        UnsupportedObject, match=r"^the header has no dstport, protocol, start, end \(fields: "
    ):
        read(path)


def test_parquet_columns_are_found_by_name_in_any_order_and_type(tmp_path: Path) -> None:
    path = parquet(
        tmp_path / "a.parquet", action=["ACCEPT", "ACCEPT", "-"], end=pa.array([160, 170, 1], pa.int32()),
        start=pa.array([100, 90, 1], pa.int64()), protocol=pa.array([6, 6, 6], pa.int8()),
        dstport=pa.array([443, 443, 1], pa.int32()), srcport=pa.array([40001, 40000, None], pa.int32()),
        dstaddr=["10.0.0.2", "10.0.0.2", None], srcaddr=["10.0.0.1", "10.0.0.1", None],
        interface_id=["eni-a", "eni-a", "eni-a"], packets=pa.array([None, 3, None], pa.int64()),
        log_status=["OK", "OK", "NODATA"],
    )  # fmt: skip
    sums = read(path, parquet=True)
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(None, 3, 2, 90, 170, 40000, 443)}
    assert (sums.records, sums.skipped_status, sums.bad_lines) == (3, 1, 0)


def test_parquet_text_columns_stay_text_when_they_look_like_numbers(tmp_path: Path) -> None:
    columns = {name.replace("-", "_"): ["1", "2"] for name in records.REQUIRED}
    sums = read(parquet(tmp_path / "a.parquet", **columns), parquet=True)
    assert sums.flows() == {
        ("1", "1", "1", 1): Flow(None, None, 1, 1, 1, 1, 1),
        ("2", "2", "2", 2): Flow(None, None, 1, 2, 2, 2, 2),
    }


def test_parquet_strings_that_are_not_numbers_are_bad_lines(tmp_path: Path) -> None:
    columns = {name.replace("-", "_"): ["1", "2", "3"] for name in records.REQUIRED}
    path = parquet(
        tmp_path / "a.parquet", **{**columns, "start": ["100", "-1", "1e3"], "bytes": ["5", "6", None]}
    )
    sums = read(path, parquet=True)
    assert sums.flows() == {("1", "1", "1", 1): Flow(5, None, 1, 100, 1, 1, 1)}
    assert (sums.records, sums.bad_lines) == (3, 2)


def test_a_file_that_is_not_parquet_is_unsupported(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"PAR1 not really")
    with pytest.raises(UnsupportedObject, match=r"^not a Parquet file: "):
        read(tmp_path / "a", parquet=True)


# --- Unpacking several objects -----------------------------------------------------------------------------


class Objects:
    """Objects by name: text, gzip, Parquet bytes, or an exception raised when they are downloaded."""

    def __init__(self, **content: bytes | Exception) -> None:
        self.content, self.pulled, self.threads = content, 0, set()

    def __iter__(self) -> Iterator[str]:
        for name in self.content:
            self.pulled += 1
            yield name

    def chunks(self, name: str) -> Iterator[bytes]:
        self.threads.add(threading.current_thread().name)
        content = self.content[name]
        if isinstance(content, Exception):
            raise content
        yield from (content[i : i + 1000] for i in range(0, len(content), 1000))


def test_objects_are_unpacked_ahead_in_order_each_with_its_files_or_its_failure(tmp_path: Path) -> None:
    body = f"{V2}\n{line('eni-a', '10.0.0.1', '10.0.0.2')}\n".encode()
    failure = RuntimeError("no such key")
    big = b"PAR1" + b"y" * (records.MAX_LINE + 1)  # no line end: fine for Parquet
    objects = Objects(
        a=gzip.compress(body), b=failure, c=b"x" * 40, d=big, e=gzip.compress(body)[:-4], f=body
    )
    seen: list[tuple[str, object]] = []
    for name, outcome in unpacked(
        objects, objects.chunks, tmp_path, parquet=lambda n: n == "d", limit=len(big)
    ):
        if name == "a":
            assert objects.pulled == 3  # the current one and 2 ahead
        assert (tmp_path / f"object-{len(seen)}").is_dir()
        assert not (tmp_path / f"object-{len(seen) - 1}").exists()  # the one before, failed or not, is gone
        if isinstance(outcome, Exception):
            seen.append((name, outcome))
        else:
            assert all(path.parent == tmp_path / f"object-{len(seen)}" for path in outcome)
            seen.append((name, [path.read_bytes() for path in outcome]))
    assert seen[:4] == [("a", [body]), ("b", failure), ("c", [b"x" * 40]), ("d", [big])]
    assert [name for name, _ in seen] == ["a", "b", "c", "d", "e", "f"]
    assert isinstance(seen[4][1], UnsupportedObject) and "ends early" in str(seen[4][1])
    assert seen[5] == ("f", [body])
    assert list(tmp_path.iterdir()) == []
    assert objects.threads == {"unpack_0"}  # downloads run on the unpacking thread


def test_with_a_reader_objects_are_read_two_at_once_and_handed_over_in_order(tmp_path: Path) -> None:
    objects = Objects(a=b"h\n1\n", b=b"h\n2\n", c=RuntimeError("no such key"), d=b"h\n4\n")
    both = threading.Barrier(2, timeout=30)  # a's read and b's meet here, or neither goes on

    def read(name: str, paths: list[Path]) -> tuple[str, list[bytes]]:
        if name in "ab":
            both.wait()
        if name == "d":
            raise ValueError("not flow-log data")
        return threading.current_thread().name, [path.read_bytes() for path in paths]

    outcomes = list(unpacked(objects, objects.chunks, tmp_path, read=read, workers=2))
    assert [name for name, _ in outcomes] == ["a", "b", "c", "d"]
    (_, (thread_a, a)), (_, (thread_b, b)) = outcomes[:2]
    assert (a, b) == ([b"h\n1\n"], [b"h\n2\n"]) and thread_a != thread_b
    assert isinstance(outcomes[2][1], RuntimeError) and isinstance(outcomes[3][1], ValueError)
    assert list(tmp_path.iterdir()) == []


def test_unpacking_is_bounded_per_object_and_by_how_far_ahead(tmp_path: Path) -> None:
    limit = 2 * records.MAX_LINE
    long_line, too_much = b"h\n" + b"z" * (records.MAX_LINE + 1), b"h\n" + b"1\n" * records.MAX_LINE
    objects = Objects(a=long_line, b=too_much, c=b"h\n1\n")
    outcomes = list(unpacked(objects, objects.chunks, tmp_path, ahead=0, limit=limit))
    assert [n for n, _ in outcomes] == ["a", "b", "c"]
    assert str(outcomes[0][1]) == f"a line longer than {records.MAX_LINE:,} bytes"
    assert str(outcomes[1][1]) == f"more than {limit:,} bytes unpacked (the bound per object)"
    assert isinstance(outcomes[2][1], list)
    objects = Objects(a=b"h\n1\n", b=b"h\n1\n", c=b"h\n1\n")
    for name, _ in unpacked(objects, objects.chunks, tmp_path, ahead=1):
        assert objects.pulled == {"a": 2, "b": 3, "c": 3}[name]


def test_stopping_early_removes_every_unpacked_object(tmp_path: Path) -> None:
    objects = Objects(a=b"h\n1\n", b=b"h\n1\n", c=RuntimeError("boom"), d=b"h\n1\n")
    reading = unpacked(objects, objects.chunks, tmp_path, ahead=2)
    name, [path] = next(reading)  # type: ignore[misc]
    assert (name, path.read_bytes()) == ("a", b"h\n1\n")
    deadline = time.monotonic() + 30
    while not ((tmp_path / "object-1").is_dir() and (tmp_path / "object-2").is_dir()):  # the two ahead begun
        assert time.monotonic() < deadline
        time.sleep(0.01)
    reading.close()
    assert list(tmp_path.iterdir()) == []
    assert objects.pulled == 3


def test_objects_that_cannot_be_unpacked_each_come_with_their_failure(tmp_path: Path) -> None:
    objects = Objects(a=b"h\n1\n", b=b"h\n1\n", c=b"h\n1\n")
    outcomes = list(unpacked(objects, objects.chunks, tmp_path / "missing"))  # no directory to unpack them in
    assert [(n, type(o)) for n, o in outcomes] == [(n, FileNotFoundError) for n in "abc"]
    reading = unpacked(objects, objects.chunks, tmp_path / "missing")
    assert next(reading)[0] == "a"
    reading.close()  # the objects ahead have nothing to remove either
    assert list(tmp_path.iterdir()) == []


def test_a_line_of_exactly_the_longest_length_is_kept(tmp_path: Path) -> None:
    body = b"h\n" + b"x" * 64 + b"\n" + b"y" * 64
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    [path] = unpack([body], tmp_path / "a", max_line=64)
    assert path.read_bytes() == body
    with pytest.raises(UnsupportedObject, match=r"^a line longer than 64 bytes$"):
        unpack([body + b"y"], tmp_path / "b", max_line=64)


def test_text_is_cut_at_line_ends_into_segments_each_with_the_header(tmp_path: Path) -> None:
    header, lines = b"h1 h2\n", [b"%d 1234567890\n" % n for n in range(100)]
    paths = unpack([gzip.compress(header + b"".join(lines))], tmp_path, segment=200)
    contents = [path.read_bytes() for path in paths]
    assert len(contents) > 5 and all(c.startswith(header) and c.endswith(b"\n") for c in contents)
    assert b"".join(c.removeprefix(header) for c in contents) == b"".join(lines)
    assert max(map(len, contents)) <= 200


def test_text_fields_stay_text_and_numbers_numbers_whatever_they_look_like(tmp_path: Path) -> None:
    header = "interface-id srcaddr dstaddr srcport dstport protocol start end"
    sums = read(text(tmp_path / "a", "1 2 3 4 5 6 100 160", "1 2 3 4 5 6 99 161", header=header))
    assert sums.flows() == {("1", "2", "3", 6): Flow(None, None, 2, 99, 161, 4, 5)}


def test_an_empty_field_is_no_value_like_a_dash(tmp_path: Path) -> None:
    sums = read(text(tmp_path / "a", line("eni-a", "10.0.0.1", "10.0.0.2", size="")))
    assert (sums.records, sums.bad_lines) == (1, 0)
    assert sums.flows() == {("eni-a", "10.0.0.1", "10.0.0.2", 6): Flow(None, 1, 1, 100, 160, 40000, 443)}
