"""The flow-log phase in-process: connections, their components, relations and gauges, the recent record,
the object window and refusals, and whole runs over a small fake of the S3 and EC2 calls (no moto server).
The live end-to-end runs are in test_flowlogs.py."""

from __future__ import annotations

import datetime as dt
import errno
import gzip
import io
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from engine.aws.log_bucket import LogBucket
from engine.aws.sessions import Account
from engine.core.config import Instance
from engine.core.errors import (
    AccessDenied,
    CallFailed,
    CredentialsError,
    DeliveryError,
    Interrupted,
    Throttled,
    Unreachable,
)
from engine.core.phase import Limits
from engine.core.state import State
from engine.flowlogs import connections as flowlogs
from engine.flowlogs.connections import (
    AccountFlows,
    Connection,
    Interface,
    apply_flowlogs,
)
from engine.flowlogs.records import Flow, FlowSums, UnsupportedObject
from engine.language.loader import Call, Mappings, load_mappings
from engine.scan.last_snapshot import unit_labels
from tests.support import ACCOUNT, ROLE, ListSink, make_config

REGION = "eu-west-1"
BUCKET = f"stackstate-logs-{ACCOUNT}"
VPC = "vpc-1"
HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action "
    "log-status"
)
NOW = 1_800_000_000.0
TAGS = ["integration-type:aws-v2", f"integration-url:{ACCOUNT}", "team:core"]


@cache
def mappings() -> Mappings:
    return load_mappings()


def iface(
    id_: str, *addresses: str, vpc: str = VPC, public: dict | None = None, owner: str | None = None,
    excluded: bool = False,
) -> Interface:  # fmt: skip
    return Interface(id_, vpc, frozenset(addresses), public or {}, owner, excluded, {"id": id_})


def flow(
    size: int | None = 100, *, sport: int | None = 40000, dport: int | None = 22, start: int = 1000,
    end: int = 1060, records: int = 1, packets: int | None = 2,
) -> Flow:  # fmt: skip
    return Flow(size, packets, records, start, end, sport, dport)  # type: ignore[arg-type]


def line(eni: str, src: str, dst: str, sport: int, dport: int, size: int, start: int = 1000, end: int = 1060,
         protocol: int = 6, packets: int = 1) -> str:  # fmt: skip
    fields = (2, ACCOUNT, eni, src, dst, sport, dport, protocol, packets, size, start, end, "ACCEPT", "OK")
    return " ".join(map(str, fields))


def body(*lines: str) -> bytes:
    return gzip.compress("\n".join([HEADER, *lines]).encode() + b"\n")


def sums_of(tmp_path: Path, *lines: str) -> FlowSums:
    path = tmp_path / "object.log"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    sums = FlowSums()
    sums.add_object(path)
    return sums


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    found = Clock()
    monkeypatch.setattr(flowlogs, "time", found)
    return found


@pytest.fixture
def state() -> Any:
    with State(":memory:") as opened:
        yield opened


# --- the fake AWS: S3 and EC2 as Fetcher.call answers them ---------------------------------------------


def failed(operation: str, code: str, region: str = "us-east-1") -> CallFailed:
    return CallFailed(operation=operation, account=ACCOUNT, region=region, code=code, problem="it failed")


class FakeAws:
    """One bucket and each region's network interfaces, answered as `Fetcher.call` does: the response without
    metadata, every page merged, errors typed (`CallFailed` and its kinds)."""

    def __init__(self) -> None:
        self.bucket = BUCKET
        self.versioning: str | None = "Enabled"
        self.exists = True
        self.objects: dict[str, dict] = {}  # key -> body, version, etag, modified
        self.interfaces: dict[str, list[dict]] = {}
        self.faults: dict[tuple[str, str], Exception] = {}  # (operation, key or region) -> raised
        self.kept: set[str] = set()  # keys DeleteObjects refuses
        self.calls: list[tuple[str, str, str, dict]] = []
        self.serial = 0

    def put(self, key: str, data: bytes) -> str:
        self.serial += 1
        modified = dt.datetime(2026, 12, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=self.serial)
        self.objects[key] = {"body": data, "version": f"v{self.serial}", "etag": f'"e{self.serial}"',
                             "modified": modified}  # fmt: skip
        return key

    def call(self, account: Account, region: str, service: str, call: Call, params: dict) -> dict:
        assert account.id == ACCOUNT
        self.calls.append((region, service, call.operation, params))
        operation = call.operation
        fault = self.faults.get((operation, params.get("Key", region)))
        if fault is not None:
            raise fault
        if service == "ec2":
            assert (operation, params) == ("DescribeNetworkInterfaces", {"MaxResults": 1000})
            return {"NetworkInterfaces": self.interfaces.get(region, [])}
        assert (service, region, params["Bucket"]) == ("s3", "us-east-1", self.bucket)
        if not self.exists:
            raise failed(operation, "NoSuchBucket")
        if operation == "GetBucketVersioning":
            return {"Status": self.versioning} if self.versioning else {}
        if operation == "ListObjectsV2":
            found = [{"Key": k, "LastModified": o["modified"], "ETag": o["etag"], "Size": len(o["body"])}
                     for k, o in sorted(self.objects.items()) if k.startswith(params["Prefix"])]  # fmt: skip
            return {"Contents": found} if found else {}
        if operation == "GetObject":
            if params["Key"] not in self.objects:
                raise failed(operation, "NoSuchKey")
            obj = self.objects[params["Key"]]
            return {"Body": io.BytesIO(obj["body"]), "VersionId": obj["version"], "ETag": obj["etag"]}
        assert operation == "DeleteObjects"
        deleted, errors = [], []
        for entry in params["Delete"]["Objects"]:
            if entry["Key"] in self.kept:
                errors.append({"Key": entry["Key"], "Code": "AccessDenied", "Message": "Access Denied"})
                continue
            obj = self.objects.get(entry["Key"])
            if obj and entry.get("VersionId") in (None, obj["version"]):
                del self.objects[entry["Key"]]
            deleted.append({"Key": entry["Key"]})
        return {"Deleted": deleted, "Errors": errors} if errors else {"Deleted": deleted}

    def operations(self) -> list[str]:
        return [c[2] for c in self.calls]


ACCOUNT_ = Account(ACCOUNT, ROLE, session=None, config=None)  # type: ignore[arg-type]


def eni(eni_id: str, *addresses: str, vpc: str = VPC, **extra: Any) -> dict:
    """A DescribeNetworkInterfaces item."""
    return {
        "NetworkInterfaceId": eni_id, "VpcId": vpc, "PrivateIpAddress": addresses[0],
        "PrivateIpAddresses": [{"PrivateIpAddress": a} for a in addresses], **extra,
    }  # fmt: skip


def key(name: str, region: str = REGION) -> str:
    return (
        f"AWSLogs/{ACCOUNT}/vpcflowlogs/{region}/2026/12/01/{ACCOUNT}_vpcflowlogs_{region}_fl-1_{name}.log.gz"
    )


def hive_key(name: str, region: str = REGION) -> str:
    prefix = flowlogs.PREFIXES[1].format(account=ACCOUNT, region=region)
    return f"{prefix}year=2026/{name}.log.gz"


def instance(**options: Any) -> Instance:
    return Instance(role_arn=ROLE, regions=("global", REGION), apis_to_run=("ec2",), tags=("team:core",),
                    **options)  # fmt: skip


def bucket_of(aws: FakeAws, state: State) -> LogBucket:
    return LogBucket(ACCOUNT_, BUCKET, aws, state, "flowlogs")  # type: ignore[arg-type]


# --- AccountFlows ------------------------------------------------------------------------------------


def test_a_result_is_complete_until_an_error_a_corrupt_an_unread_or_an_undeleted_object() -> None:
    assert AccountFlows(ACCOUNT, BUCKET).complete
    for problem in (
        {"error": "x"},
        {"corrupt": {"k": "p"}},
        {"unread": {"k": "p"}},
        {"not_deleted": {"k": "c"}},
    ):
        assert not AccountFlows(ACCOUNT, BUCKET, **problem).complete  # type: ignore[arg-type]


def test_the_summary_names_every_figure_and_only_the_skips_that_happened() -> None:
    assert AccountFlows(ACCOUNT, BUCKET).summary() == {
        "status": "complete", "bucket": BUCKET, "objects": 0, "records": 0, "connections": 0,
        "direct_relations": 0, "resent_connections": 0, "payloads": 0, "deleted_objects": 0,
        "corrupt_objects": 0, "waiting_objects": 0,
    }  # fmt: skip
    result = AccountFlows(
        ACCOUNT, BUCKET, absent=True, objects=2, waiting=3, records=4, connections=5, direct=6, resent=7,
        payloads=8, deleted=["a", "b"], corrupt={"c": "p"}, skipped=Counter(public=2, bad_line=1, no_data=0),
        error="boom", interrupted=True,
    )  # fmt: skip
    summary = result.summary()
    assert summary == {
        "status": "INCOMPLETE", "bucket": f"{BUCKET} (absent)", "objects": 2, "records": 4, "connections": 5,
        "direct_relations": 6, "resent_connections": 7, "payloads": 8, "deleted_objects": 2,
        "corrupt_objects": 1, "waiting_objects": 3, "skipped_bad_line": 1, "skipped_public": 2,
        "error": "'boom'", "interrupted": True,
    }  # fmt: skip
    assert [k for k in summary if k.startswith("skipped_")] == ["skipped_bad_line", "skipped_public"]


def test_notes_are_joined_after_the_error() -> None:
    result = AccountFlows(ACCOUNT, BUCKET)
    result.note("first")
    assert result.error == "first"
    result.note("second")
    assert result.error == "first; second"


# --- Connection --------------------------------------------------------------------------------------


def test_a_connection_sums_bytes_records_and_the_span_and_keeps_the_lowest_port() -> None:
    app = iface("eni-app", "10.0.0.1")
    connection = Connection(VPC, "10.0.0.1", "10.0.0.2")
    assert connection.id == f"{VPC}/10.0.0.1/10.0.0.2"
    key_ = ("eni-app", "10.0.0.1", "10.0.0.2", 6)
    connection.add(app, key_, flow(100, sport=40001, dport=5432, start=2000, end=2060, records=2), True)
    connection.add(app, key_, flow(50, sport=40000, dport=5433, start=1000, end=1500, records=3), True)
    connection.add(app, ("eni-app", "10.0.0.2", "10.0.0.1", 17), flow(None, sport=None, dport=None,
                                                                      packets=None), False)  # fmt: skip
    assert connection.sent == {("10.0.0.1", "10.0.0.2"): 150}
    assert connection.received == {("10.0.0.2", "10.0.0.1"): 0}
    assert connection.port == {"10.0.0.1": 40000, "10.0.0.2": 5432}
    assert connection.protocols == {6, 17}
    assert connection.interfaces == {"eni-app": app}
    assert (connection.start, connection.end, connection.records) == (1000, 2060, 6)
    assert connection.log == [
        "eni-app 10.0.0.1 -> 10.0.0.2 tcp: 2 records, 2 packets, 100 bytes, 2000-2060",
        "eni-app 10.0.0.1 -> 10.0.0.2 tcp: 3 records, 2 packets, 50 bytes, 1000-1500",
        "eni-app 10.0.0.2 -> 10.0.0.1 udp: 1 records, 0 packets, 0 bytes, 1000-1060",
    ]


def test_the_log_names_unknown_protocols_by_number_and_keeps_twenty_lines() -> None:
    connection = Connection(VPC, "10.0.0.1", "10.0.0.2")
    app = iface("eni-app", "10.0.0.1")
    for n in range(25):
        connection.add(app, ("eni-app", "10.0.0.1", "10.0.0.2", 47), flow(n, start=n + 1, end=n + 2), True)
    assert len(connection.log) == flowlogs.LOG_LINES == 20
    assert connection.log[-1] == "eni-app 10.0.0.1 -> 10.0.0.2 47: 1 records, 2 packets, 19 bytes, 20-21"
    assert (connection.records, connection.start, connection.end) == (25, 1, 26)
    assert connection.sent == {("10.0.0.1", "10.0.0.2"): sum(range(25))}


def test_bytes_are_the_senders_figure_else_the_receivers() -> None:
    connection = Connection(VPC, "10.0.0.1", "10.0.0.2")
    connection.sent = {("10.0.0.1", "10.0.0.2"): 10}
    connection.received = {("10.0.0.1", "10.0.0.2"): 99, ("10.0.0.2", "10.0.0.1"): 7}
    assert connection.bytes("10.0.0.1", "10.0.0.2") == 10
    assert connection.bytes("10.0.0.2", "10.0.0.1") == 7
    assert connection.bytes("10.0.0.2", "10.0.0.9") == 0


@pytest.mark.parametrize(
    ("ports", "ends"),
    [
        ({"10.0.0.1": 40000, "10.0.0.2": 22}, ("10.0.0.1", "10.0.0.2")),
        ({"10.0.0.1": 22, "10.0.0.2": 40000}, ("10.0.0.2", "10.0.0.1")),
        ({"10.0.0.1": 443, "10.0.0.2": 443}, ("10.0.0.1", "10.0.0.2")),
        ({"10.0.0.1": 65535}, ("10.0.0.2", "10.0.0.1")),
        ({"10.0.0.2": 65535}, ("10.0.0.1", "10.0.0.2")),
        ({}, ("10.0.0.1", "10.0.0.2")),
    ],
    ids=["high-serves", "low-serves", "equal", "only-low", "only-high", "none"],
)
def test_the_server_is_the_address_with_the_lower_port(ports: dict, ends: tuple[str, str]) -> None:
    connection = Connection(VPC, "10.0.0.1", "10.0.0.2", port=ports)
    assert connection.ends() == ends


# --- small functions ---------------------------------------------------------------------------------


def test_the_region_of_a_key_in_either_prefix_form() -> None:
    assert flowlogs._region(key("a", "us-east-1")) == "us-east-1"
    assert flowlogs._region(hive_key("a", "ap-south-2")) == "ap-south-2"
    with pytest.raises(AssertionError, match="elsewhere/x"):
        flowlogs._region("elsewhere/x")


def test_private_addresses() -> None:
    addresses = ("10.1.2.3", "192.168.0.1", "fd00::1", "52.94.1.1", "2a05::1", "-")
    assert [flowlogs._private(a) for a in addresses] == [True, True, True, False, False, False]


def test_the_prefixes_and_bounds() -> None:
    assert [p.format(account=ACCOUNT, region=REGION) for p in flowlogs.PREFIXES] == [
        f"AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/",
        f"AWSLogs/aws-account-id={ACCOUNT}/aws-service=vpcflowlogs/aws-region={REGION}/",
    ]
    assert (flowlogs.MAX_OBJECTS, flowlogs.RECENT_SECONDS, flowlogs.SLOT_SECONDS, flowlogs.SLOTS) == (
        2000, 3600, 60, 61,
    )  # fmt: skip


# --- connections from sums ---------------------------------------------------------------------------


def test_flows_become_connections_keyed_by_vpc_and_ordered_addresses(tmp_path: Path) -> None:
    app, db = iface("eni-app", "10.0.0.1", owner="i-app"), iface("eni-db", "10.0.0.9")
    other = iface("eni-other", "10.0.0.1", vpc="vpc-2")
    sums = sums_of(
        tmp_path,
        line("eni-app", "10.0.0.7", "10.0.0.8", 40000, 5432, 7),
        line("eni-app", "10.0.0.1", "10.0.0.9", 40000, 5432, 300, 1000, 1060),
        line("eni-db", "10.0.0.1", "10.0.0.9", 40000, 5432, 310, 1010, 1070),
        line("eni-db", "10.0.0.9", "10.0.0.1", 5432, 40000, 900, 1000, 1100),
        line("eni-other", "10.0.0.2", "10.0.0.1", 40000, 22, 5),
        line("eni-gone", "10.0.0.1", "10.0.0.9", 40000, 5432, 7),
        line("eni-gone", "10.0.0.9", "10.0.0.1", 5432, 40000, 7),
        line("eni-app", "10.0.0.7", "10.0.0.8", 40000, 5433, 7),
    )
    skipped = Counter(unknown_interface=10, not_its_address=10)  # added to
    found = flowlogs._connections(sums, {i.id: i for i in (app, db, other)}, skipped)
    assert skipped == {"unknown_interface": 12, "not_its_address": 12}
    assert [c.id for c in found] == [f"{VPC}/10.0.0.1/10.0.0.9", "vpc-2/10.0.0.1/10.0.0.2"]
    first, second = found
    assert first.sent == {("10.0.0.1", "10.0.0.9"): 300, ("10.0.0.9", "10.0.0.1"): 900}
    assert first.received == {("10.0.0.1", "10.0.0.9"): 310}
    assert first.holders == {"10.0.0.1": app, "10.0.0.9": db}
    assert set(first.interfaces) == {"eni-app", "eni-db"} and first.ends() == ("10.0.0.1", "10.0.0.9")
    assert (second.received, second.sent, second.holders) == (
        {("10.0.0.2", "10.0.0.1"): 5},
        {},
        {"10.0.0.1": other},
    )


def test_a_holder_is_found_by_its_address_in_the_vpc_even_when_it_logged_nothing(tmp_path: Path) -> None:
    app, worker = iface("eni-app", "10.0.0.1"), iface("eni-worker", "10.0.0.2")
    sums = sums_of(tmp_path, line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 5))
    [connection] = flowlogs._connections(sums, {"eni-app": app, "eni-worker": worker}, Counter())
    assert connection.holders == {"10.0.0.1": app, "10.0.0.2": worker}
    assert list(connection.interfaces) == ["eni-app"]


def test_traffic_through_a_nat_gateway_or_load_balancer_is_left_out(tmp_path: Path) -> None:
    app, nat = iface("eni-app", "10.0.0.1"), iface("eni-nat", "10.0.0.60", excluded=True)
    sums = sums_of(
        tmp_path,
        line("eni-app", "10.0.0.1", "10.0.0.60", 40000, 443, 5, packets=3),
        line("eni-app", "10.0.0.1", "10.0.0.60", 40000, 443, 5, protocol=17),
        line("eni-nat", "10.0.0.60", "10.0.0.1", 443, 40000, 5),
        line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 5),
    )
    skipped = Counter(nat_or_load_balancer=10)
    [kept] = flowlogs._connections(sums, {"eni-app": app, "eni-nat": nat}, skipped)
    assert kept.id == f"{VPC}/10.0.0.1/10.0.0.2" and skipped == {"nat_or_load_balancer": 13}


# --- owners and output --------------------------------------------------------------------------------


def test_an_owner_is_the_holders_declared_owner_when_scanned_else_the_component_with_the_address() -> None:
    connection = Connection(VPC, "10.0.0.1", "10.0.0.2")
    connection.holders = {"10.0.0.1": iface("e1", "10.0.0.1", owner="i-1"),
                          "10.0.0.2": iface("e2", "10.0.0.2", owner="i-gone")}  # fmt: skip
    known = ({"i-1", "db"}, {f"urn:vpcip:{VPC}/10.0.0.1": "other", f"urn:vpcip:{VPC}/10.0.0.2": "db"})
    assert flowlogs._owner(connection, "10.0.0.1", known) == "i-1"
    assert flowlogs._owner(connection, "10.0.0.2", known) == "db"
    assert flowlogs._owner(connection, "10.0.0.3", known) is None
    assert flowlogs._owner(connection, "10.0.0.3", ({"None"}, {})) is None


def db_connection() -> Connection:
    app = iface("eni-app", "10.0.0.1", public={"10.0.0.1": "52.1.1.1"}, owner="i-app")
    db = iface("eni-db", "10.0.0.9")
    connection = Connection(VPC, "10.0.0.1", "10.0.0.9")
    connection.add(app, ("eni-app", "10.0.0.1", "10.0.0.9", 6), flow(300, sport=40000, dport=5432), True)
    connection.add(
        db, ("eni-db", "10.0.0.9", "10.0.0.1", 6), flow(900, sport=5432, dport=40000, end=1120), True
    )
    connection.holders = {"10.0.0.1": app, "10.0.0.9": db}
    return connection


def test_a_connection_gives_two_placeholders_a_flowlog_relation_and_four_gauges() -> None:
    connection = db_connection()
    local, remote = f"local/{VPC}/10.0.0.1/10.0.0.9", f"remote/{VPC}/10.0.0.1/10.0.0.9"
    inst = instance()
    components, relations, metrics = flowlogs._output(connection, REGION, ACCOUNT, inst, (set(), {}))
    common = {"Location": {"AwsAccount": ACCOUNT, "AwsRegion": REGION},
              "labels": ["stackpack:aws-v2", "team:core"], "tags": TAGS}  # fmt: skip
    app_urns = [f"urn:vpcip:{VPC}/10.0.0.1", "urn:host:/52.1.1.1"]
    assert components == [
        {"externalId": local, "type": {"name": "vpc.request"},
         "data": {"Name": "10.0.0.1", "URN": app_urns, "identifiers": app_urns, **common}},
        {"externalId": remote, "type": {"name": "vpc.request"},
         "data": {"Name": "10.0.0.9", "URN": [f"urn:vpcip:{VPC}/10.0.0.9"],
                  "identifiers": [f"urn:vpcip:{VPC}/10.0.0.9"], **common}},
    ]  # fmt: skip
    source, target = local.replace(".", "_"), remote.replace(".", "_")
    assert relations == [{
        "externalId": f"{local}-flowlog-{remote}", "sourceId": local, "targetId": remote,
        "type": {"name": "flowlog"},
        "data": {
            "traffic_type": "6", "family": "v4", "local_address": "10.0.0.1", "remote_address": "10.0.0.9",
            "start": 1000, "end": 1120, "records": 2, "bytes_sent": 300, "bytes_received": 900,
            "log": connection.log, "network_interfaces": [{"id": "eni-app"}, {"id": "eni-db"}],
            "source": source, "target": target,
        },
    }]  # fmt: skip
    tags = {"hostname": "aws-topology", "tags": [f"source:{source}", f"target:{target}"], "type": "gauge"}
    assert metrics == [
        ["aws.flowlog.bytes_sent", 1120, 300, tags],
        ["aws.flowlog.bytes_sent_per_second", 1120, 300 / 120, tags],
        ["aws.flowlog.bytes_received", 1120, 900, tags],
        ["aws.flowlog.bytes_received_per_second", 1120, 900 / 120, tags],
    ]


def test_the_components_carry_the_accounts_labels() -> None:
    inst = instance(identifier="id-1", environment="prod")
    [component, _], _, _ = flowlogs._output(db_connection(), REGION, ACCOUNT, inst, (set(), {}))
    assert component["data"]["labels"] == ["stackpack:aws-v2", "team:core"]
    assert component["data"]["tags"] == TAGS


def test_owned_ends_are_related_directly() -> None:
    connection = db_connection()
    known = ({"i-app"}, {f"urn:vpcip:{VPC}/10.0.0.9": "arn:db"})
    _, relations, _ = flowlogs._output(connection, REGION, ACCOUNT, instance(), known)
    assert relations[1] == {
        "externalId": "i-app-flowlog-arn:db", "sourceId": "i-app", "targetId": "arn:db",
        "type": {"name": "flowlog"},
        "data": {"traffic_type": "6", "family": "v4", "local_address": "10.0.0.1",
                 "remote_address": "10.0.0.9", "bytes_sent": 300, "bytes_received": 900, "start": 1000,
                 "end": 1120,
                 "connection": f"{VPC}/10.0.0.1/10.0.0.9"},
    }  # fmt: skip
    assert len(relations) == 2
    for one_end in (({"i-app"}, {}), (set(), {f"urn:vpcip:{VPC}/10.0.0.9": "arn:db"})):
        assert len(flowlogs._output(connection, REGION, ACCOUNT, instance(), one_end)[1]) == 1
    same = ({"i-app"}, {f"urn:vpcip:{VPC}/10.0.0.9": "i-app"})
    assert len(flowlogs._output(connection, REGION, ACCOUNT, instance(), same)[1]) == 1


def test_a_zero_span_several_protocols_and_ipv6() -> None:
    host = iface("eni-a", "fd00::1")
    connection = Connection(VPC, "fd00::1", "fd00::2")
    connection.add(host, ("eni-a", "fd00::1", "fd00::2", 6), flow(10, start=5, end=5), True)
    connection.add(host, ("eni-a", "fd00::1", "fd00::2", 17), flow(10, start=5, end=5), True)
    components, [relation], metrics = flowlogs._output(connection, REGION, ACCOUNT, instance(), (set(), {}))
    assert relation["data"]["traffic_type"] == "unknown" and relation["data"]["family"] == "v6"
    assert [m[2] for m in metrics] == [20, 0, 0, 0]
    assert components[0]["data"]["URN"] == [f"urn:vpcip:{VPC}/fd00::1"]
    assert relation["data"]["source"] == f"local/{VPC}/fd00::1/fd00::2"


def test_a_negative_span_gives_no_rate() -> None:
    sent = {("10.0.0.1", "10.0.0.2"): 5, ("10.0.0.2", "10.0.0.1"): 3}
    connection = Connection(VPC, "10.0.0.1", "10.0.0.2", sent=sent, start=10, end=9)
    _, _, metrics = flowlogs._output(connection, REGION, ACCOUNT, instance(), (set(), {}))
    assert [m[2] for m in metrics] == [5, 0, 3, 0]
    connection.end = 11
    _, _, metrics = flowlogs._output(connection, REGION, ACCOUNT, instance(), (set(), {}))
    assert [m[2] for m in metrics] == [5, 5.0, 3, 3.0]


# --- the recent record --------------------------------------------------------------------------------


def test_recent_connections_are_those_of_the_last_hour_the_latest_sending_wins(
    clock: Clock, state: State
) -> None:
    old = {"at": NOW - 3601, "components": ["old"], "relations": []}
    edge = {"at": NOW - 3600, "components": ["edge"], "relations": []}
    late = {"at": NOW - 10, "components": ["late"], "relations": []}
    early = {"at": NOW - 20, "components": ["early"], "relations": []}
    state.set(f"flowlogs.recent.{ACCOUNT}.0", {"minute": 1, "connections": {"a": old, "b": edge, "c": late}})
    state.set(f"flowlogs.recent.{ACCOUNT}.60", {"minute": 2, "connections": {"c": early, "d": early}})
    state.set(f"flowlogs.recent.{ACCOUNT}.61", {"minute": 3, "connections": {"e": late}})
    state.set("flowlogs.recent.other.5", {"minute": 3, "connections": {"f": late}})
    assert flowlogs._recent(state, ACCOUNT) == {"b": edge, "c": late, "d": early}
    state.set(f"flowlogs.recent.{ACCOUNT}.1", {"minute": 2, "connections": {"c": early}})
    assert flowlogs._recent(state, ACCOUNT)["c"] == late
    assert flowlogs._recent(state, "999") == {}


def test_a_run_remembers_its_connections_in_this_minutes_slot(clock: Clock, state: State) -> None:
    minute = int(NOW // 60)
    slot = f"flowlogs.recent.{ACCOUNT}.{minute % 61}"
    flowlogs._remember(state, ACCOUNT, {"a": {"at": 1}})
    assert state.get(slot) == {"minute": minute, "connections": {"a": {"at": 1}}}
    clock.now += 59 - NOW % 60  # the same minute: added to what this minute's runs wrote
    flowlogs._remember(state, ACCOUNT, {"b": {"at": 2}})
    flowlogs._remember(state, ACCOUNT, {"a": {"at": 3}})
    assert state.get(slot) == {"minute": minute, "connections": {"a": {"at": 3}, "b": {"at": 2}}}
    clock.now += 61 * 60  # the same slot, an hour later: what it held is gone
    flowlogs._remember(state, ACCOUNT, {"c": {"at": 3}})
    assert state.get(slot) == {"minute": minute + 61, "connections": {"c": {"at": 3}}}


# --- objects: undeleted, window, refusals, deletion ------------------------------------------------------


def test_objects_kept_by_s3_after_delivery_are_deleted_again_not_read(state: State) -> None:
    state.set(f"flowlogs.undeleted.{ACCOUNT}", {"a": {"etag": '"1"', "version": "v1"},
                                                 "b": {"etag": '"2"', "version": None},
                                                 "c": {"etag": '"3"', "version": "v3"}})  # fmt: skip
    objects = [{"Key": "a", "ETag": '"1"'}, {"Key": "b", "ETag": '"2"'}, {"Key": "c", "ETag": '"new"'},
               {"Key": "d", "ETag": '"4"'}]  # fmt: skip
    done, others = flowlogs._undeleted(state, ACCOUNT, objects)
    assert done == [{"Key": "a", "ETag": '"1"', "VersionId": "v1"}, {"Key": "b", "ETag": '"2"'}]
    assert others == [{"Key": "c", "ETag": '"new"'}, {"Key": "d", "ETag": '"4"'}]
    assert flowlogs._undeleted(state, "999", objects) == ([], objects)


def test_the_window_leaves_known_corrupt_objects_out_then_takes_the_oldest(
    state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowlogs, "MAX_OBJECTS", 2)
    objects = [{"Key": k, "ETag": "e"} for k in "abcd"]
    corrupt = {"a": {"etag": "e", "problem": "bad"}}
    result = AccountFlows(ACCOUNT, BUCKET)
    assert flowlogs._window(objects, bucket_of(FakeAws(), state), corrupt, result) == objects[1:3]
    assert (result.objects, result.waiting, result.corrupt) == (2, 1, {"a": "bad"})
    result = AccountFlows(ACCOUNT, BUCKET)
    assert flowlogs._window(objects[:2], bucket_of(FakeAws(), state), corrupt, result) == objects[1:2]
    assert (result.objects, result.waiting) == (1, 0)


@pytest.mark.parametrize(
    ("problem", "corrupt", "unread"),
    [
        (AccessDenied(role_arn=ROLE, action="s3:GetObject", operation="GetObject", account=ACCOUNT,
                      region="us-east-1", code="AccessDenied"),
         f"unreadable: role {ROLE} needs s3:GetObject ({ACCOUNT}/us-east-1: AccessDenied)", None),
        (failed("GetObject", "InvalidObjectState"),
         f"unreadable: GetObject in {ACCOUNT}/us-east-1 failed: InvalidObjectState: it failed", None),
        (Throttled(operation="GetObject", account=ACCOUNT, region="us-east-1", code="SlowDown"), None,
         f"GetObject throttled in {ACCOUNT}/us-east-1 after retries (SlowDown)"),
        (failed("GetObject", "NoSuchKey"), None,
         f"GetObject in {ACCOUNT}/us-east-1 failed: NoSuchKey: it failed"),
        (EndpointConnectionError(endpoint_url="http://s3"), None,
         'Could not connect to the endpoint URL: "http://s3"'),
        (OSError(errno.ENOSPC, "full"), None, "[Errno 28] full"),
        (OSError(errno.EDQUOT, "quota"), None, f"[Errno {errno.EDQUOT}] quota"),
        (OSError(errno.EIO, "io"), "OSError: [Errno 5] io", None),
        (UnsupportedObject("not flow logs"), "not flow logs", None),
        (ValueError("x" * 400), "ValueError: " + "x" * 288, None),
        (UnsupportedObject("y" * 400), "y" * 300, None),
    ],
    ids=["denied", "archived", "throttled", "gone", "network", "disk-full", "quota", "io", "unsupported",
         "other-long", "unsupported-long"],
)  # fmt: skip
def test_an_object_that_cannot_be_read_is_corrupt_or_waits(
    state: State, problem: Exception, corrupt: str | None, unread: str | None
) -> None:
    obj = {"Key": "k", "ETag": "e"}
    known: dict = {}
    result = AccountFlows(ACCOUNT, BUCKET)
    flowlogs._refuse(obj, problem, bucket_of(FakeAws(), state), known, result)
    assert result.corrupt == ({"k": corrupt} if corrupt else {})
    assert result.unread == ({"k": unread} if unread else {})
    assert {k: v["problem"] for k, v in known.items()} == result.corrupt


def test_a_long_passing_problem_is_cut_and_an_interruption_stops_the_run(state: State) -> None:
    result = AccountFlows(ACCOUNT, BUCKET)
    flowlogs._refuse(
        {"Key": "k"}, failed("GetObject", "Slow" + "w" * 400), bucket_of(FakeAws(), state), {}, result
    )
    assert len(result.unread["k"]) == 300 and result.unread["k"].startswith("GetObject in")
    with pytest.raises(Interrupted):
        flowlogs._refuse(
            {"Key": "k"}, Interrupted(operation="GetObject"), bucket_of(FakeAws(), state), {}, result
        )


def test_deletion_records_what_s3_kept(state: State) -> None:
    aws = FakeAws()
    for name in ("a", "b"):
        aws.put(name, b"x")
    aws.kept = {"b"}
    result, undeleted = AccountFlows(ACCOUNT, BUCKET), {}
    objects = [{"Key": "a", "ETag": "ea", "VersionId": "v1"}, {"Key": "b", "ETag": "eb"}]
    flowlogs._delete(bucket_of(aws, state), state, ACCOUNT, objects, result, undeleted)
    assert (result.deleted, result.not_deleted) == (["a"], {"b": "AccessDenied"})
    assert undeleted == {"b": {"etag": "eb", "version": None}}
    assert state.get(f"flowlogs.undeleted.{ACCOUNT}") == undeleted and list(aws.objects) == ["b"]
    flowlogs._delete(bucket_of(aws, state), state, ACCOUNT, [], result, {})
    assert state.get(f"flowlogs.undeleted.{ACCOUNT}") == undeleted and aws.operations() == ["DeleteObjects"]


# --- sending ------------------------------------------------------------------------------------------


def test_a_delta_carries_the_recent_connections_first_and_is_remembered(clock: Clock, state: State) -> None:
    sink, result = ListSink(), AccountFlows(ACCOUNT, BUCKET)
    again = {"old": {"components": [{"externalId": "c0", "type": {"name": "vpc.request"}, "data": {}}],
                     "relations": [{"externalId": "r0", "sourceId": "c0", "targetId": "c1",
                                    "type": {"name": "flowlog"}, "data": {}}]}}  # fmt: skip
    new = [{"externalId": "c1", "type": {"name": "vpc.request"}, "data": {}}]
    metric = [["aws.flowlog.bytes_sent", 1, 2, {"hostname": "aws-topology", "tags": [], "type": "gauge"}]]
    seen = {"new": {"at": NOW}}
    assert flowlogs._send(ACCOUNT, again, seen, new, [], sink, state, result, 1_000_000, metric)
    [(name, payload)] = sink.payloads
    assert name == f"flowlogs-{ACCOUNT}-0001"
    [topology] = payload["topologies"]
    assert [c["externalId"] for c in topology["components"]] == ["c0", "c1"]
    assert [r["externalId"] for r in topology["relations"]] == ["r0"]
    assert (topology["start_snapshot"], topology["stop_snapshot"]) == (False, False)
    assert topology["instance"] == {"type": "aws-v2", "url": ACCOUNT} and payload["metrics"] == metric
    assert (result.payloads, result.resent) == (1, 1)
    assert flowlogs._recent(state, ACCOUNT) == seen
    assert state.get(f"flowlogs.recent.{ACCOUNT}.{int(NOW // 60) % 61}")["connections"] == seen


def test_a_large_delta_is_split_and_nothing_remembered_without_connections(
    clock: Clock, state: State
) -> None:
    sink, result = ListSink(), AccountFlows(ACCOUNT, BUCKET)
    many = [
        {"externalId": f"c{n}", "type": {"name": "vpc.request"}, "data": {"Name": "x" * 100}}
        for n in range(30)
    ]
    assert flowlogs._send(ACCOUNT, {}, {}, many, [], sink, state, result, 2000)
    assert [n for n, _ in sink.payloads][:2] == [f"flowlogs-{ACCOUNT}-0001", f"flowlogs-{ACCOUNT}-0002"]
    assert result.payloads == len(sink.payloads) > 1 and result.resent == 0
    assert "metrics" not in sink.payloads[0][1] or sink.payloads[0][1]["metrics"] == []
    assert state.get(f"flowlogs.recent.{ACCOUNT}.{int(NOW // 60) % 61}") is None


def test_an_undelivered_delta_is_an_error_and_not_remembered(clock: Clock, state: State) -> None:
    class Down:
        def send(self, payload: dict, name: str) -> None:
            raise DeliveryError(target="receiver", problem="down")

    result = AccountFlows(ACCOUNT, BUCKET)
    new = [{"externalId": "c1", "type": {"name": "vpc.request"}, "data": {}}]
    assert not flowlogs._send(ACCOUNT, {}, {"new": {"at": NOW}}, new, [], Down(), state, result, 1_000_000)
    assert (
        result.error == "flow-log delta not delivered, no object deleted: delivery to receiver failed: down"
    )
    assert (result.payloads, result.resent) == (0, 0)
    assert state.get(f"flowlogs.recent.{ACCOUNT}.{int(NOW // 60) % 61}") is None


# --- network interfaces from the mapping --------------------------------------------------------------


def test_interfaces_are_read_as_the_mapping_declares() -> None:
    aws = FakeAws()
    aws.interfaces[REGION] = [
        eni("eni-app", "10.0.0.1", "10.0.0.200", Attachment={"InstanceId": "i-app"}, Description="app",
            InterfaceType="interface", Association={"PublicIp": "52.1.1.1"},
            Ipv6Addresses=[{"Ipv6Address": "fd00::1"}]),
        eni("eni-fn", "10.0.0.80",
            Description="AWS Lambda VPC ENI-orders-5e3c4f0e-1111-2222-3333-444455556666"),
        {"VpcId": VPC, "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.0.99"}]},  # no id: left out
        eni("eni-nat", "10.0.0.60", InterfaceType="nat_gateway"),
        eni("eni-alb", "10.0.0.70", Description="ELB app/web/50dc6c495c0c9188"),
    ]  # fmt: skip
    found = flowlogs._interfaces(ACCOUNT_, REGION, mappings().interfaces, aws)  # type: ignore[arg-type]
    assert list(found) == ["eni-app", "eni-fn", "eni-nat", "eni-alb"]
    assert found["eni-app"] == Interface(
        "eni-app", VPC, frozenset({"10.0.0.1", "10.0.0.200", "fd00::1"}), {"10.0.0.1": "52.1.1.1"}, "i-app",
        False, {"id": "eni-app", "description": "app", "type": "interface", "owner": "i-app",
                "private_ip": "10.0.0.1"},
    )  # fmt: skip
    assert found["eni-fn"].owner == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"
    assert found["eni-fn"].public == {} and not found["eni-fn"].excluded
    assert found["eni-nat"].excluded and found["eni-alb"].excluded
    assert aws.calls == [(REGION, "ec2", "DescribeNetworkInterfaces", {"MaxResults": 1000})]
    china = "cn-north-1"
    aws.interfaces[china] = aws.interfaces[REGION][1:2]
    found = flowlogs._interfaces(ACCOUNT_, china, mappings().interfaces, aws)  # type: ignore[arg-type]
    assert found["eni-fn"].owner == f"arn:aws-cn:lambda:{china}:{ACCOUNT}:function:orders"


def test_an_interface_specs_optional_fields_may_be_absent() -> None:
    from dataclasses import replace

    spec = replace(mappings().interfaces[0], public_ips=None, owner=None, exclude=None, describe=None)
    aws = FakeAws()
    aws.interfaces[REGION] = [
        eni("eni-app", "10.0.0.1", Attachment={"InstanceId": "i-app"}, Association={"PublicIp": "52.1.1.1"},
            InterfaceType="nat_gateway"),
    ]  # fmt: skip
    assert flowlogs._interfaces(ACCOUNT_, REGION, (spec,), aws) == {  # type: ignore[arg-type]
        "eni-app": Interface("eni-app", VPC, frozenset({"10.0.0.1"}), {}, None, False, {"id": "eni-app"})
    }
    aws.interfaces[REGION] = [
        {"NetworkInterfaceId": "eni-bare", "PrivateIpAddresses": [{"PrivateIpAddress": 5}]}
    ]
    assert flowlogs._interfaces(ACCOUNT_, REGION, (spec,), aws) == {  # type: ignore[arg-type]
        "eni-bare": Interface("eni-bare", "", frozenset(), {}, None, False, {"id": "eni-bare"})
    }
    assert flowlogs._interfaces(ACCOUNT_, REGION, (spec,), FakeAws()) == {}  # type: ignore[arg-type]


# --- whole runs over the fake AWS ----------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> FakeAws:
    fake = FakeAws()
    fake.interfaces[REGION] = [
        eni("eni-app", "10.0.0.1", Attachment={"InstanceId": "i-app"}, Association={"PublicIp": "52.1.1.1"}),
        eni("eni-worker", "10.0.0.2", Attachment={"InstanceId": "i-worker"}),
        eni("eni-db", "10.0.0.9", Description="RDSNetworkInterface"),
        eni("eni-nat", "10.0.0.60", InterfaceType="nat_gateway"),
    ]  # fmt: skip
    fake.interfaces["us-east-1"] = [eni("eni-east", "10.9.0.1", vpc="vpc-east")]
    assumed: list[dict] = []

    def assume(config: Any, inst: Instance, **options: Any) -> Account:
        assert (config.external_id, inst.account_id) == ("test-external-id", ACCOUNT)
        assumed.append(options)
        return ACCOUNT_

    monkeypatch.setattr(flowlogs, "assume", assume)
    fake.assumed = assumed  # type: ignore[attr-defined]
    return fake


def run(aws: FakeAws, state: State, sink: Any = None, regions: tuple[str, ...] = ("global", REGION),
        **options: Any) -> AccountFlows:  # fmt: skip
    inst = Instance(role_arn=ROLE, regions=regions, apis_to_run=("ec2",), tags=("team:core",))
    return apply_flowlogs(make_config(), inst, mappings(), sink or ListSink(), state, aws, **options)  # type: ignore[arg-type]


def scanned(state: State, *components: dict) -> None:
    """A last full scan holding `components`."""
    inst = Instance(role_arn=ROLE, regions=("global", REGION), apis_to_run=("ec2",))
    label = next(unit_labels(inst, mappings()))
    state.set(f"unit.{label}", {"at": NOW, "components": list(components), "relations": []})


def test_a_run_reads_new_objects_sends_one_delta_then_deletes_them(aws: FakeAws, state: State) -> None:
    scanned(state, {"externalId": "i-app"}, {"externalId": "i-worker"},
            {"externalId": "arn:db", "data": {"URN": [f"urn:vpcip:{VPC}/10.0.0.9", "urn:other:x"]}},
            {"externalId": "arn:dup", "data": {"URN": [f"urn:vpcip:{VPC}/10.0.0.9"]}})  # fmt: skip
    first = aws.put(key("a"), body(
        line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 300, 1000, 1060),
        line("eni-worker", "10.0.0.2", "10.0.0.1", 22, 40000, 900, 1000, 1100),
        line("eni-app", "10.0.0.1", "52.94.1.1", 40001, 443, 7),
        line("eni-nat", "10.0.0.60", "10.0.0.2", 443, 41000, 7),
        line("eni-gone", "10.0.0.5", "10.0.0.2", 41000, 22, 7),
        line("eni-gone", "10.0.0.5", "52.94.1.2", 41000, 443, 7),
        f"2 {ACCOUNT} eni-app - - - - - - - 1000 1060 - NODATA",
        "2 too few",
    ))  # fmt: skip
    second = aws.put(
        hive_key("b"), body(line("eni-app", "10.0.0.1", "10.0.0.9", 40002, 5432, 50, 2000, 2010))
    )
    east = aws.put(key("c", "us-east-1"), body(line("eni-east", "10.9.0.1", "10.9.0.2", 1, 2, 3)))
    sink = ListSink()
    result = run(aws, state, sink)
    assert result.account == ACCOUNT
    assert result.summary() == {
        "status": "complete", "bucket": BUCKET, "objects": 2, "records": 8, "connections": 2,
        "direct_relations": 2, "resent_connections": 0, "payloads": 1, "deleted_objects": 2,
        "corrupt_objects": 0, "waiting_objects": 0, "skipped_bad_line": 1, "skipped_nat_or_load_balancer": 1,
        "skipped_no_data": 1, "skipped_public": 1, "skipped_unknown_interface": 2,
    }  # fmt: skip
    assert result.deleted == [first, second] and list(aws.objects) == [east]
    assert result.seconds == 0.0 and result.error is None
    assert aws.assumed == [{"base": None, "endpoint_url": None, "workers": 8}]  # type: ignore[attr-defined]
    lists = [c[3]["Prefix"] for c in aws.calls if c[2] == "ListObjectsV2"]
    assert lists == [p.format(account=ACCOUNT, region=REGION) for p in flowlogs.PREFIXES]
    assert [c[:3] for c in aws.calls if c[1] == "ec2"] == [(REGION, "ec2", "DescribeNetworkInterfaces")]
    web, db = f"{VPC}/10.0.0.1/10.0.0.2", f"{VPC}/10.0.0.1/10.0.0.9"
    assert set(sink.components()) == {f"{side}/{c}" for side in ("local", "remote") for c in (web, db)}
    assert sink.relations() == {
        (f"local/{web}", "flowlog", f"remote/{web}"), (f"local/{db}", "flowlog", f"remote/{db}"),
        ("i-app", "flowlog", "i-worker"), ("i-app", "flowlog", "arn:db"),
    }  # fmt: skip
    [(name, payload)] = sink.payloads
    assert name == f"flowlogs-{ACCOUNT}-0001" and len(payload["metrics"]) == 8
    relation = next(r for t in sink.topologies() for r in t["relations"] if r["sourceId"] == f"local/{web}")
    assert (relation["data"]["bytes_sent"], relation["data"]["bytes_received"]) == (300, 900)
    assert sink.components()[f"local/{web}"]["data"]["URN"] == [
        f"urn:vpcip:{VPC}/10.0.0.1",
        "urn:host:/52.1.1.1",
    ]
    recent = flowlogs._recent(state, ACCOUNT)
    assert set(recent) == {web, db} and recent[web]["at"] == NOW
    assert [c["externalId"] for c in recent[web]["components"]] == [f"local/{web}", f"remote/{web}"]
    assert len(recent[web]["relations"]) == 2 and len(recent[db]["relations"]) == 2
    assert state.get(f"flowlogs.undeleted.{ACCOUNT}") == {}
    assert state.get(f"flowlogs.corrupt.{ACCOUNT}") == {}


def test_each_region_with_objects_is_read_with_its_own_interfaces(aws: FakeAws, state: State) -> None:
    aws.put(key("a", "us-east-1"), body(line("eni-east", "10.9.0.1", "10.9.0.2", 40000, 22, 3),
                                        line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3)))  # fmt: skip
    sink = ListSink()
    result = run(aws, state, sink, regions=("global", REGION, "us-east-1"))
    assert (result.connections, result.records, result.skipped) == (1, 2, Counter(unknown_interface=1))
    assert [c[0] for c in aws.calls if c[1] == "ec2"] == ["us-east-1"]
    assert [c[3]["Prefix"] for c in aws.calls if c[2] == "ListObjectsV2"] == [
        p.format(account=ACCOUNT, region=r) for r in (REGION, "us-east-1") for p in flowlogs.PREFIXES
    ]
    [local, _] = sink.topologies()[0]["components"]
    assert local["data"]["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": "us-east-1"}
    for region in (REGION, "us-east-1"):
        aws.put(key("b", region), body(
            line("eni-east", "10.9.0.1", "10.9.0.2", 40000, 22, 3),
            line("eni-app", "10.0.0.1", "10.0.0.2", 1, 2, 3),
            "2 too few", f"2 {ACCOUNT} eni-app - - - - - - - 1000 1060 - NODATA",
        ))  # fmt: skip
    both = run(aws, state, regions=("global", REGION, "us-east-1"))
    assert (both.connections, both.records) == (2, 6)
    assert both.skipped == Counter(no_data=2, bad_line=2, unknown_interface=2)


def test_without_the_bucket_flow_logs_are_not_set_up(aws: FakeAws, state: State) -> None:
    aws.exists = False
    result = run(aws, state)
    assert (result.absent, result.complete, result.error) == (True, True, None)
    assert result.summary()["bucket"] == f"{BUCKET} (absent)" and aws.operations() == ["GetBucketVersioning"]


def test_a_bucket_that_cannot_be_read_or_is_unversioned_stops_the_run(aws: FakeAws, state: State) -> None:
    aws.faults[("GetBucketVersioning", "us-east-1")] = failed("GetBucketVersioning", "AccessDenied")
    result = run(aws, state)
    assert result.error == (
        f"cannot read flow logs from bucket {BUCKET}: GetBucketVersioning in {ACCOUNT}/us-east-1 failed: "
        "AccessDenied: it failed"
    )
    assert not result.absent and not result.bad_input
    aws.faults.clear()
    aws.versioning = "Suspended"
    aws.put(key("a"), body())
    result = run(aws, state)
    assert result.bad_input and f"bucket {BUCKET} is not versioned (Suspended)" in str(result.error)
    assert aws.operations().count("ListObjectsV2") == 0 and len(aws.objects) == 1


def test_credentials_are_bad_input_an_outage_is_not(
    aws: FakeAws, state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    for problem, bad_input in ((CredentialsError(role_arn=ROLE, problem="denied"), True),
                               (Unreachable(role_arn=ROLE, problem="no route"), False)):  # fmt: skip

        def refused(*args: Any, problem: Exception = problem, **kwargs: Any) -> Account:
            raise problem

        monkeypatch.setattr(flowlogs, "assume", refused)
        result = run(aws, state)
        assert (result.error, result.bad_input) == (str(problem), bad_input)
    assert aws.calls == []


def test_a_listing_that_fails_stops_the_run(aws: FakeAws, state: State) -> None:
    aws.faults[("ListObjectsV2", "us-east-1")] = failed("ListObjectsV2", "InternalError")
    assert run(aws, state).error == (
        f"cannot read flow logs from bucket {BUCKET}: ListObjectsV2 in {ACCOUNT}/us-east-1 failed: "
        "InternalError: it failed"
    )


def test_no_object_is_read_or_deleted_without_the_interfaces(aws: FakeAws, state: State) -> None:
    aws.put(key("a"), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3)))
    aws.faults[("DescribeNetworkInterfaces", REGION)] = failed(
        "DescribeNetworkInterfaces", "Throttling", REGION
    )
    result = run(aws, state)
    assert result.error == (
        f"cannot list network interfaces: DescribeNetworkInterfaces in {ACCOUNT}/{REGION} failed: "
        "Throttling: it failed; no object was read or deleted"
    )
    assert "GetObject" not in aws.operations() and len(aws.objects) == 1


def test_nothing_is_deleted_when_the_delta_is_not_delivered(aws: FakeAws, state: State) -> None:
    class Down:
        def send(self, payload: dict, name: str) -> None:
            raise DeliveryError(target="receiver", problem="down")

    traffic = aws.put(key("a"), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3)))
    result = run(aws, state, Down())
    assert (
        result.error == "flow-log delta not delivered, no object deleted: delivery to receiver failed: down"
    )
    assert result.deleted == [] and list(aws.objects) == [traffic] and "DeleteObjects" not in aws.operations()
    assert state.get(f"flowlogs.recent.{ACCOUNT}.{int(NOW // 60) % 61}") is None


def test_objects_s3_keeps_are_named_then_deleted_again_never_read_twice(aws: FakeAws, state: State) -> None:
    kept, held = (aws.put(key(n), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3))) for n in "ab")
    aws.kept = {kept, held}
    result = run(aws, state)
    assert (result.connections, result.deleted) == (1, [])
    assert result.not_deleted == {kept: "AccessDenied", held: "AccessDenied"} and not result.complete
    assert result.error == f"not deleted: {kept} (AccessDenied), {held} (AccessDenied)"
    record = {kept: {"etag": '"e1"', "version": "v1"}, held: {"etag": '"e2"', "version": "v2"}}
    assert state.get(f"flowlogs.undeleted.{ACCOUNT}") == record
    aws.calls.clear()
    aws.kept = {held}
    again = run(aws, state)  # deleted again, not read; the one S3 still keeps stays recorded
    assert (again.objects, again.records, again.payloads) == (0, 0, 0)
    assert (again.deleted, again.not_deleted) == ([kept], {held: "AccessDenied"})
    assert state.get(f"flowlogs.undeleted.{ACCOUNT}") == {held: record[held]}
    assert "GetObject" not in aws.operations()
    delete = next(c[3] for c in aws.calls if c[2] == "DeleteObjects")
    assert delete["Delete"]["Objects"] == [{"Key": kept, "VersionId": "v1"}, {"Key": held, "VersionId": "v2"}]
    aws.kept = set()
    new = aws.put(key("new"), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3)))
    last = run(aws, state)
    assert (last.complete, last.deleted, last.objects, aws.objects) == (True, [held, new], 1, {})
    assert state.get(f"flowlogs.undeleted.{ACCOUNT}") == {}


def test_a_corrupt_object_is_recorded_and_skipped_a_passing_failure_waits(aws: FakeAws, state: State) -> None:
    broken = aws.put(key("broken"), b"\x1f\x8b\x08\x00 not gzip at all")
    slow = aws.put(key("slow"), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3)))
    good = aws.put(key("good"), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3)))
    aws.faults[("GetObject", slow)] = Throttled(operation="GetObject", account=ACCOUNT, region="us-east-1",
                                                code="SlowDown")  # fmt: skip
    result = run(aws, state)
    assert list(result.corrupt) == [broken] and result.corrupt[broken].startswith("cannot decompress")
    assert result.unread == {slow: f"GetObject throttled in {ACCOUNT}/us-east-1 after retries (SlowDown)"}
    assert result.error == f"left for the next run: {slow} ({result.unread[slow]})"
    assert result.deleted == [good] and set(aws.objects) == {broken, slow}
    recorded = state.get(f"flowlogs.corrupt.{ACCOUNT}")
    assert {k: v["problem"] for k, v in recorded.items()} == result.corrupt
    aws.faults.clear()
    aws.calls.clear()
    again = run(aws, state)
    assert (again.objects, again.deleted, list(again.corrupt)) == (1, [slow], [broken])
    assert [c[3]["Key"] for c in aws.calls if c[2] == "GetObject"] == [slow]
    del aws.objects[broken]
    last = run(aws, state)
    assert (last.complete, last.objects) == (True, 0) and state.get(f"flowlogs.corrupt.{ACCOUNT}") == {}


def test_both_problems_are_noted(aws: FakeAws, state: State) -> None:
    slow, kept = (aws.put(key(n), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3))) for n in "ab")
    aws.faults[("GetObject", slow)] = failed("GetObject", "SlowDown")
    aws.kept = {kept}
    result = run(aws, state)
    assert result.error == (
        f"left for the next run: {slow} (GetObject in {ACCOUNT}/us-east-1 failed: SlowDown: it failed); "
        f"not deleted: {kept} (AccessDenied)"
    )


def test_the_bounds_given_are_used(aws: FakeAws, state: State, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flowlogs, "MAX_OBJECTS", 2)
    lines = [line("eni-app", "10.0.0.1", f"10.0.0.{n}", 40000, 22, 3) for n in range(2, 40)]
    names = [aws.put(key(f"o{n}"), body(*lines)) for n in range(3)]
    sink = ListSink()
    result = run(aws, state, sink, limits=Limits(workers=3, max_bytes=5000), max_unpacked=100,
                 endpoint_url="http://aws", base="session")  # fmt: skip
    assert aws.assumed == [{"base": "session", "endpoint_url": "http://aws", "workers": 3}]  # type: ignore[attr-defined]
    assert (result.objects, result.waiting) == (2, 1)
    assert set(result.corrupt) == set(names[:2]) and result.payloads == 0
    assert result.corrupt[names[0]] == "more than 100 bytes unpacked (the bound per object)"
    result = run(aws, state, sink, limits=Limits(max_bytes=5000))
    assert (result.objects, result.connections) == (1, 38) and result.payloads == len(sink.payloads) > 1


def test_after_a_snapshot_recent_connections_are_sent_again(aws: FakeAws, state: State, clock: Clock) -> None:
    aws.put(key("a"), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3)))
    run(aws, state)
    web = f"{VPC}/10.0.0.1/10.0.0.2"
    clock.now += 120
    quiet = ListSink()
    assert (run(aws, state, quiet).payloads, quiet.payloads) == (0, [])
    sink = ListSink()
    again = run(aws, state, sink, after_snapshot=True)
    assert (again.objects, again.resent, again.payloads) == (0, 1, 1)
    assert set(sink.components()) == {f"local/{web}", f"remote/{web}"}
    assert sink.topologies()[0]["instance"]["url"] == ACCOUNT
    assert ("i-app", "flowlog", "i-worker") not in sink.relations()  # no last scan: no direct relation
    aws.put(key("b"), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3),
                           line("eni-app", "10.0.0.1", "10.0.0.9", 40000, 5432, 3)))  # fmt: skip
    clock.now += 60
    sink = ListSink()
    both = run(aws, state, sink, after_snapshot=True)
    assert (both.objects, both.connections, both.resent) == (1, 2, 0)
    assert len(sink.components()) == 4 == len(list(sink.topologies()[0]["components"]))


def test_a_slot_without_connections_and_an_equal_time_the_later_slot_wins(clock: Clock, state: State) -> None:
    first = {"at": NOW, "components": ["first"], "relations": []}
    second = {"at": NOW, "components": ["second"], "relations": []}
    state.set(f"flowlogs.recent.{ACCOUNT}.0", {"minute": 1})
    state.set(f"flowlogs.recent.{ACCOUNT}.3", {"minute": 1, "connections": {"c": first}})
    state.set(f"flowlogs.recent.{ACCOUNT}.4", {"minute": 2, "connections": {"c": second}})
    assert flowlogs._recent(state, ACCOUNT) == {"c": second}
    minute = int(NOW // 60)
    state.set(f"flowlogs.recent.{ACCOUNT}.{minute % 61}", {"minute": minute})
    flowlogs._remember(state, ACCOUNT, {"d": first})
    assert state.get(f"flowlogs.recent.{ACCOUNT}.{minute % 61}") == {
        "minute": minute,
        "connections": {"d": first},
    }


def test_parquet_objects_are_read_as_parquet(aws: FakeAws, state: State, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "interface_id": ["eni-app"], "srcaddr": ["10.0.0.1"], "dstaddr": ["10.0.0.2"], "srcport": [40000],
        "dstport": [22], "protocol": [6], "packets": [1], "bytes": [77], "start": [1000], "end": [1060],
    })  # fmt: skip
    table = table.append_column("padding", pa.array([b"x" * (2 << 20)]))  # no line end: text would be refused
    out = pa.BufferOutputStream()
    pq.write_table(table, out, compression="NONE", use_dictionary=False)
    parquet = aws.put(hive_key("p").removesuffix(".log.gz") + ".parquet", out.getvalue().to_pybytes())
    lines = body(line("eni-app", "10.0.0.1", "10.0.0.9", 40000, 5432, 5))
    text = aws.put(hive_key("t").removesuffix(".gz") + ".parquet.log", lines)  # a name is not enough
    sink = ListSink()
    result = run(aws, state, sink)
    assert (result.connections, result.corrupt, result.deleted) == (2, {}, [parquet, text])
    web = next(
        r
        for t in sink.topologies()
        for r in t["relations"]
        if r["sourceId"] == f"local/{VPC}/10.0.0.1/10.0.0.2"
    )
    assert web["data"]["bytes_sent"] == 77


def test_every_problem_of_a_kind_is_named(aws: FakeAws, state: State) -> None:
    slow = [aws.put(key(n), body(line("eni-app", "10.0.0.1", "10.0.0.2", 40000, 22, 3))) for n in "ba"]
    for name in slow:
        aws.faults[("GetObject", name)] = failed("GetObject", "SlowDown")
    problem = f"GetObject in {ACCOUNT}/us-east-1 failed: SlowDown: it failed"
    assert run(aws, state).error == f"left for the next run: {slow[1]} ({problem}), {slow[0]} ({problem})"
