"""VPC flow logs end to end against a live moto server: flow-log objects written from the estate's real
interfaces and addresses become `vpc.request` components, `flowlog` relations and gauges; objects are
deleted only after delivery, and a broken one stays."""

from __future__ import annotations

import errno
import gzip
import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from demo.common import client, lambda_zip, trust_policy
from engine.aws.fetch import Fetcher
from engine.aws.log_bucket import LogBucket
from engine.cli import main
from engine.core.config import load_config
from engine.core.errors import DeliveryError, Throttled
from engine.core.state import State
from engine.delivery.payload import validate_payload
from engine.flowlogs import connections as flowlogs
from engine.flowlogs.connections import AccountFlows, apply_flowlogs
from engine.language.loader import load_mappings
from tests.flowlogs.test_flowlog_records import bomb as gzip_bomb
from tests.support import ACCOUNT, ListSink, live_aws, moto_env

pytestmark = pytest.mark.live

REGION = "eu-west-1"
BUCKET = f"stackstate-logs-{ACCOUNT}"
PREFIX = f"AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/"
HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action "
    "log-status"
)
LAMBDA_ENI = "AWS Lambda VPC ENI-orders-5e3c4f0e-1111-2222-3333-444455556666"


def line(eni: str, src: str, dst: str, sport: int, dport: int, packets: int, size: int, start: int = 1000,
         end: int = 1060, status: str = "OK", protocol: int = 6) -> str:  # fmt: skip
    fields = (2, ACCOUNT, eni, src, dst, sport, dport, protocol, packets, size, start, end, "ACCEPT", status)
    return " ".join(map(str, fields))


def key(name: str) -> str:
    return f"{PREFIX}2026/12/01/{ACCOUNT}_vpcflowlogs_{REGION}_fl-1_{name}.log.gz"


@pytest.fixture
def aws(tmp_path: Path, dns_table: dict[str, list[str]]) -> Iterator[dict]:
    from demo.server import reset, start

    server, endpoint = start(0)
    reset(endpoint)
    ec2, s3, rds = (client(s, REGION, endpoint) for s in ("ec2", "s3", "rds"))
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]

    def run(address: str) -> tuple[str, str]:
        found = ec2.run_instances(
            ImageId="ami-04681a1dbd79675a5", MinCount=1, MaxCount=1, SubnetId=subnet, PrivateIpAddress=address
        )["Instances"][0]
        return found["InstanceId"], found["NetworkInterfaces"][0]["NetworkInterfaceId"]

    def interface(address: str, description: str) -> str:
        made = ec2.create_network_interface(
            SubnetId=subnet, PrivateIpAddress=address, Description=description
        )
        return made["NetworkInterface"]["NetworkInterfaceId"]

    app, app_eni = run("10.0.1.10")
    ec2.assign_private_ip_addresses(NetworkInterfaceId=app_eni, PrivateIpAddresses=["10.0.1.200"])
    public = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=public["AllocationId"], NetworkInterfaceId=app_eni)
    worker, worker_eni = run("10.0.1.11")
    rds.create_db_subnet_group(DBSubnetGroupName="db", DBSubnetGroupDescription="db", SubnetIds=[subnet])
    db = rds.create_db_instance(
        DBInstanceIdentifier="orders-db", DBInstanceClass="db.t3.micro", Engine="postgres",
        DBSubnetGroupName="db", MasterUsername="admin1", MasterUserPassword="not-a-secret-1",
    )["DBInstance"]  # fmt: skip
    dns_table[db["Endpoint"]["Address"]] = ["10.0.1.50"]  # what the endpoint resolves to inside the VPC
    iam = client("iam", REGION, endpoint)
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=trust_policy("lambda.amazonaws.com"))
    function = client("lambda", REGION, endpoint).create_function(
        FunctionName="orders", Runtime="python3.12", Role=role["Role"]["Arn"], Handler="index.handler",
        Code={"ZipFile": lambda_zip("def handler(event, context):\n    return 1\n")},
        VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": []},
    )  # fmt: skip
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: ext-id}\n"
        f"instances: [{{role_arn: 'arn:aws:iam::{ACCOUNT}:role/R', regions: [{REGION}], "
        "apis_to_run: [ec2, rds, lambda], tags: ['team:core']}]\n"
    )
    env = moto_env(endpoint)
    yield {
        "s3": s3, "env": env, "conf": conf, "tmp": tmp_path, "vpc": vpc, "app": app, "app_eni": app_eni,
        "worker": worker, "worker_eni": worker_eni, "db": db["DBInstanceArn"],
        "public_ip": public["PublicIp"],
        "rds_eni": interface("10.0.1.50", "RDSNetworkInterface"),
        "nat_eni": interface("10.0.1.60", "Interface for NAT Gateway nat-0a1b2c3d4e5f60718"),
        "alb_eni": interface("10.0.1.70", "ELB app/web/50dc6c495c0c9188"),
        "lambda_eni": interface("10.0.1.80", LAMBDA_ENI), "function": function["FunctionArn"],
    }  # fmt: skip
    server.stop()


def cli(aws: dict, *args: str) -> Result:
    out = aws["tmp"] / "out"
    state = aws["tmp"] / "state.sqlite"
    return CliRunner().invoke(
        main, [*args, "-c", str(aws["conf"]), "--out", str(out), "--state", str(state)], env=aws["env"]
    )


def put(aws: dict, name: str, lines: list[str], *, header: str = HEADER, compress: bool = True) -> str:
    body = "\n".join([header, *lines]).encode() + b"\n"
    object_key = key(name) if compress else key(name).removesuffix(".gz")
    aws["s3"].put_object(Bucket=BUCKET, Key=object_key, Body=gzip.compress(body) if compress else body)
    return object_key


def flow_payloads(aws: dict) -> list[dict]:
    files = sorted((aws["tmp"] / "out").glob("run-*/flowlogs-*.json"))
    payloads = [json.loads(f.read_text()) for f in files]
    for payload in payloads:
        validate_payload(payload)
    return payloads


def scanned_components(aws: dict) -> list[dict]:
    files = [f for f in (aws["tmp"] / "out").glob("run-*/*.json")
             if not f.name.startswith(("flowlogs-", "manifest"))]  # fmt: skip
    topologies = [t for f in files for t in json.loads(f.read_text()).get("topologies", [])]
    return [c for t in topologies for c in t["components"]]


def remaining(aws: dict) -> set[str]:
    return {o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_private_traffic_becomes_relations_between_the_components_that_talk(aws: dict) -> None:
    first = cli(aws, "run")  # its full scan is the last snapshot: instances, RDS instance, function
    assert first.exit_code == 0, first.output
    assert "flowlogs account=123456789012 status=complete" in first.output and "objects=0" in first.output
    app, worker, db = "10.0.1.10", "10.0.1.11", "10.0.1.50"
    traffic = put(aws, "a", [
        # app -> db on 5432, logged by both interfaces: 3000 bytes up, 9000 down, each counted once
        line(aws["app_eni"], app, db, 40001, 5432, 10, 3000, 1000, 1060),
        line(aws["rds_eni"], app, db, 40001, 5432, 10, 3000, 1000, 1060),
        line(aws["rds_eni"], db, app, 5432, 40001, 12, 9000, 1000, 1060),
        line(aws["app_eni"], db, app, 5432, 40001, 12, 9000, 1020, 1120),
        # the secondary address of the app talks to the worker's web port: only the worker has the record
        line(aws["worker_eni"], "10.0.1.200", worker, 51000, 8080, 4, 400, 1000, 1060),
        # the Lambda function's interface reaches the database
        line(aws["lambda_eni"], "10.0.1.80", db, 33000, 5432, 2, 100, 1000, 1030),
        # public traffic, NAT and load-balancer traffic, a record of an unknown interface, no data
        line(aws["app_eni"], app, "52.94.1.1", 40002, 443, 3, 700),
        line(aws["nat_eni"], "10.0.1.60", worker, 443, 41000, 3, 700),
        line(aws["worker_eni"], worker, "10.0.1.70", 41001, 80, 3, 700),
        line("eni-00000000000000000", "10.0.1.90", db, 41002, 5432, 3, 700),
        f"2 {ACCOUNT} {aws['worker_eni']} - - - - - - - 1000 1060 - NODATA",
    ])  # fmt: skip
    result = cli(aws, "flowlogs")
    assert result.exit_code == 0, result.output
    assert "connections=3" in result.output and "direct_relations=3" in result.output
    assert "skipped_public=1" in result.output and "skipped_nat_or_load_balancer=2" in result.output
    assert "skipped_unknown_interface=1" in result.output and "skipped_no_data=1" in result.output
    [payload] = flow_payloads(aws)
    [topology] = payload["topologies"]
    assert not topology["start_snapshot"] and not topology["stop_snapshot"]
    components = {c["externalId"]: c for c in topology["components"]}
    vpc = aws["vpc"]
    db_conn, web_conn, fn_conn = (
        f"{vpc}/10.0.1.10/10.0.1.50",
        f"{vpc}/10.0.1.11/10.0.1.200",
        f"{vpc}/10.0.1.50/10.0.1.80",
    )
    assert set(components) == {
        f"{side}/{c}" for side in ("local", "remote") for c in (db_conn, web_conn, fn_conn)
    }
    assert {c["type"]["name"] for c in components.values()} == {"vpc.request"}
    # the agent's tags, as every scanned component carries them
    [scanned] = [c for c in scanned_components(aws) if c["externalId"] == aws["app"]]
    assert "team:core" in scanned["data"]["tags"] and "integration-type:aws-v2" in scanned["data"]["tags"]
    assert {tuple(c["data"]["tags"]) for c in components.values()} == {tuple(scanned["data"]["tags"])}
    # the client is local, the server (lower port) remote; the app's public address is on its side
    assert components[f"local/{db_conn}"]["data"]["URN"] == [
        f"urn:vpcip:{vpc}/{app}",
        f"urn:host:/{aws['public_ip']}",
    ]
    assert components[f"remote/{db_conn}"]["data"]["URN"] == [f"urn:vpcip:{vpc}/{db}"]
    assert components[f"local/{web_conn}"]["data"]["URN"] == [f"urn:vpcip:{vpc}/10.0.1.200"]
    relations = {(r["sourceId"], r["type"]["name"], r["targetId"]): r for r in topology["relations"]}
    flow = relations[(f"local/{db_conn}", "flowlog", f"remote/{db_conn}")]["data"]
    assert (flow["local_address"], flow["remote_address"], flow["family"], flow["traffic_type"]) == (
        app,
        db,
        "v4",
        "6",
    )
    assert (flow["bytes_sent"], flow["bytes_received"], flow["start"], flow["end"]) == (
        3000,
        9000,
        1000,
        1120,
    )
    assert flow["source"] == f"local/{db_conn}".replace(".", "_")
    assert {i["id"] for i in flow["network_interfaces"]} == {aws["app_eni"], aws["rds_eni"]}
    # beyond the StackPack: the components themselves are related, through owners and URNs
    assert (aws["app"], "flowlog", aws["db"]) in relations
    assert (aws["app"], "flowlog", aws["worker"]) in relations  # the secondary address is the app's
    assert (aws["function"], "flowlog", aws["db"]) in relations
    assert relations[(aws["app"], "flowlog", aws["db"])]["data"]["bytes_sent"] == 3000
    gauges = {(m[0], tuple(m[3]["tags"])): m[2] for m in payload["metrics"]}
    tags = (f"source:{flow['source']}", f"target:{flow['target']}")
    assert gauges[("aws.flowlog.bytes_sent", tags)] == 3000
    assert gauges[("aws.flowlog.bytes_received", tags)] == 9000
    assert gauges[("aws.flowlog.bytes_sent_per_second", tags)] == 3000 / 120
    assert gauges[("aws.flowlog.bytes_received_per_second", tags)] == 9000 / 120
    assert len(payload["metrics"]) == 4 * 3
    assert traffic not in remaining(aws)  # delivered, then deleted


def test_custom_plain_text_format_and_a_broken_object_which_stays(aws: dict) -> None:
    custom = "srcaddr dstaddr srcport dstport protocol interface-id bytes start end vpc-id"
    body = [f"10.0.1.10 10.0.1.11 40000 22 6 {aws['app_eni']} 1234 1000 1060 {aws['vpc']}", "too few fields"]
    good = put(aws, "custom", body, header=custom, compress=False)
    hive = f"AWSLogs/aws-account-id={ACCOUNT}/aws-service=vpcflowlogs/aws-region={REGION}/year=2026/x.log.gz"
    line_ = line(aws["app_eni"], "10.0.1.10", "10.0.1.11", 40000, 22, 1, 766)  # the same flow, once more
    aws["s3"].put_object(Bucket=BUCKET, Key=hive, Body=gzip.compress(f"{HEADER}\n{line_}\n".encode()))
    broken = key("broken")
    aws["s3"].put_object(Bucket=BUCKET, Key=broken, Body=b"\x1f\x8b\x08\x00 not gzip at all")
    no_fields = put(aws, "nofields", ["a b c"], header="version account-id action")
    result = cli(aws, "flowlogs")
    assert result.exit_code == 1, result.output  # corrupt objects make the run incomplete
    assert "connections=1" in result.output and "corrupt_objects=2" in result.output
    assert "skipped_bad_line=1" in result.output
    [payload] = flow_payloads(aws)
    relation = payload["topologies"][0]["relations"][0]
    assert (relation["data"]["local_address"], relation["data"]["bytes_sent"]) == ("10.0.1.10", 2000)
    assert remaining(aws) == {broken, no_fields}  # the good one went, the others stay for a person to see
    assert good not in remaining(aws) and hive not in remaining(aws)
    status = CliRunner().invoke(main, ["status", "--state", str(aws["tmp"] / "state.sqlite")])
    assert f"corrupt object (left in the bucket): {no_fields}: the header has no" in status.output
    assert "flowlogs" in status.output


def test_a_spooled_delta_is_durable_so_the_object_goes(aws: dict) -> None:
    traffic = put(aws, "a", [line(aws["app_eni"], "10.0.1.10", "10.0.1.11", 40001, 22, 1, 100)])
    state = aws["tmp"] / "state.sqlite"
    result = CliRunner().invoke(
        main,
        ["flowlogs", "-c", str(aws["conf"]), "--receiver", "http://127.0.0.1:9", "--state", str(state)],
        env={**aws["env"], "STS_API_KEY": "k"},
    )
    assert result.exit_code == 1, result.output
    assert "delivery spooled=1" in result.output and "deleted_objects=1" in result.output
    assert traffic not in remaining(aws)
    with State(state) as opened:
        [(_, name, payload)] = opened.spool_items()
    assert (
        name.startswith("flowlogs-") and payload["topologies"][0]["relations"][0]["type"]["name"] == "flowlog"
    )


def test_nothing_is_deleted_when_the_delta_cannot_be_delivered(aws: dict) -> None:
    traffic = put(aws, "a", [line(aws["app_eni"], "10.0.1.10", "10.0.1.11", 40001, 22, 1, 100)])

    class Down:
        def send(self, payload: dict, name: str) -> None:
            raise DeliveryError(target="receiver", problem="down", name=name)

    with live_aws(aws["env"]["AWS_ENDPOINT_URL"]), State(aws["tmp"] / "state.sqlite") as state:
        config = load_config(aws["conf"])
        result = apply_flowlogs(config, config.instances[0], load_mappings(), Down(), state, Fetcher())
    assert result.error and "no object deleted" in result.error and not result.complete
    assert result.deleted == [] and traffic in remaining(aws)


def test_an_unversioned_bucket_is_refused(aws: dict) -> None:
    aws["s3"].put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    traffic = put(aws, "a", [line(aws["app_eni"], "10.0.1.10", "10.0.1.11", 40001, 22, 1, 100)])
    result = cli(aws, "flowlogs")
    assert result.exit_code == 2
    assert "is not versioned (Suspended)" in result.output
    assert traffic in remaining(aws)


def test_without_the_bucket_flow_logs_are_simply_not_set_up(aws: dict) -> None:
    aws["s3"].delete_bucket(Bucket=BUCKET)
    result = cli(aws, "flowlogs")
    assert result.exit_code == 0, result.output
    assert f"bucket={BUCKET} (absent)" in result.output and "status=complete" in result.output


def test_a_full_snapshot_does_not_erase_recent_traffic(aws: dict) -> None:
    """A full snapshot deletes what it does not hold, flow-log components included: the run that sent it
    sends the connections of the last hour again (`run` passes `after_snapshot` for such accounts)."""
    put(aws, "a", [line(aws["app_eni"], "10.0.1.10", "10.0.1.11", 40001, 22, 1, 100)])
    first = cli(aws, "run")
    assert first.exit_code == 0, first.output
    assert "connections=1" in first.output and "resent_connections=0" in first.output
    assert cli(aws, "scan").exit_code == 0  # a new full snapshot, without the flow-log components
    sink = ListSink()
    with live_aws(aws["env"]["AWS_ENDPOINT_URL"]), State(aws["tmp"] / "state.sqlite") as state:
        config = load_config(aws["conf"])
        args = (config, config.instances[0], load_mappings(), sink, state, Fetcher())
        again = apply_flowlogs(*args, after_snapshot=True)
        quiet = apply_flowlogs(*args)  # no new object, no snapshot: nothing to send
    assert (again.objects, again.resent, again.payloads, quiet.payloads) == (0, 1, 1, 0)
    connection = f"{aws['vpc']}/10.0.1.10/10.0.1.11"
    assert set(sink.components()) == {f"local/{connection}", f"remote/{connection}"}
    assert (aws["app"], "flowlog", aws["worker"]) in sink.relations()


def read_once(aws: dict, opened: Callable[[Path], State] = State, **options: Any) -> AccountFlows:
    """`apply_flowlogs` for the fixture's account, as `flowlogs` runs it."""
    with live_aws(aws["env"]["AWS_ENDPOINT_URL"]), opened(aws["tmp"] / "state.sqlite") as state:
        config = load_config(aws["conf"])
        instance = config.instances[0]
        return apply_flowlogs(config, instance, load_mappings(), ListSink(), state, Fetcher(), **options)


def recorded_corrupt(aws: dict) -> dict[str, str]:
    """What `status` shows as corrupt objects: key -> problem."""
    with State(aws["tmp"] / "state.sqlite") as state:
        return {k: v["problem"] for k, v in state.get(f"flowlogs.corrupt.{ACCOUNT}", {}).items()}


def test_poison_objects_are_kept_corrupt_in_bounded_memory_and_the_good_one_is_read(aws: dict) -> None:
    app, worker = "10.0.1.10", "10.0.1.11"
    put(aws, "warm", [line(aws["app_eni"], app, worker, 40001, 22, 1, 100)])
    assert read_once(aws).deleted  # models and mappings loaded: what follows is the objects' own memory
    good = put(aws, "good", [
        line(aws["app_eni"], app, worker, 40001, 22, 1, 100),
        line(aws["app_eni"], app, worker, 40001, 22, 1, 100, start="-", end="-"),  # a bad line, not a crash
    ])  # fmt: skip
    records = f"{line(aws['app_eni'], app, worker, 40001, 22, 1, 100)}\n".encode()
    bomb = key("bomb")  # 200 MB of records, well under 1 MB in the bucket
    packed = gzip_bomb(aws["tmp"] / "bomb.gz", records, 200 << 20, header=HEADER.encode() + b"\n")
    aws["s3"].put_object(Bucket=BUCKET, Key=bomb, Body=packed.read_bytes())
    lists = key("lists").removesuffix(".log.gz") + ".parquet"  # ports as lists: pyarrow cannot cast them
    table = pa.table({
        "interface_id": [aws["app_eni"]], "srcaddr": [app], "dstaddr": [worker], "srcport": [[40001]],
        "dstport": [[22]], "protocol": [6], "start": [1000], "end": [1060],
    })  # fmt: skip
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    aws["s3"].put_object(Bucket=BUCKET, Key=lists, Body=sink.getvalue().to_pybytes())
    long_line = put(aws, "long", ["x" * (2 << 20)])
    tracemalloc.start()
    try:
        result = read_once(aws, max_unpacked=16 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20  # the bomb alone unpacks to 200 MB
    assert set(result.corrupt) == {bomb, lists, long_line} and not result.complete
    assert result.corrupt[bomb] == f"more than {16 << 20:,} bytes unpacked (the bound per object)"
    assert result.corrupt[lists].startswith("unreadable: ArrowNotImplementedError: ")
    assert result.corrupt[long_line] == "a line longer than 1,048,576 bytes"
    assert (result.connections, result.skipped["bad_line"], result.deleted) == (1, 1, [good])
    assert remaining(aws) == {bomb, lists, long_line}
    assert recorded_corrupt(aws) == result.corrupt
    again = read_once(aws)  # recorded: not read again while unchanged
    assert (again.objects, set(again.corrupt)) == (0, {bomb, lists, long_line})


def test_an_unreadable_object_is_recorded_and_a_passing_failure_waits(
    aws: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    archived = key("archived")
    body = f"{HEADER}\n{line(aws['app_eni'], '10.0.1.10', '10.0.1.11', 40001, 22, 1, 100)}\n".encode()
    aws["s3"].put_object(Bucket=BUCKET, Key=archived, Body=gzip.compress(body), StorageClass="GLACIER")
    throttled, full = (put(aws, name, [line(aws["app_eni"], "10.0.1.10", "10.0.1.11", 40001, 22, 1, 100)])
                       for name in ("throttled", "full"))  # fmt: skip
    good = put(aws, "good", [line(aws["app_eni"], "10.0.1.10", "10.0.1.11", 40001, 22, 1, 100)])
    faults = {
        throttled: Throttled(operation="GetObject", account=ACCOUNT, region="global", code="SlowDown"),
        full: OSError(errno.ENOSPC, "No space left on device"),
    }
    opened = LogBucket.open

    def faulty(self: LogBucket, obj: dict) -> Any:
        if obj["Key"] in faults:
            raise faults[obj["Key"]]
        return opened(self, obj)

    monkeypatch.setattr(LogBucket, "open", faulty)
    result = read_once(aws)
    assert list(result.corrupt) == [archived] and result.corrupt[archived].startswith("unreadable: ")
    assert "InvalidObjectState" in result.corrupt[archived]
    assert set(result.unread) == {throttled, full} and not result.complete
    assert throttled in str(result.error) and full in str(result.error)
    assert result.deleted == [good] and remaining(aws) == {archived, throttled, full}
    monkeypatch.setattr(LogBucket, "open", opened)  # the throttling and the full disk pass
    result = read_once(aws)
    assert sorted(result.deleted) == sorted([throttled, full]) and list(result.corrupt) == [archived]
    assert recorded_corrupt(aws) == {archived: result.corrupt[archived]}


def test_known_corrupt_objects_do_not_hold_the_window(aws: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flowlogs, "MAX_OBJECTS", 2)
    broken = [key(f"a{n}-broken") for n in range(2)]
    for name in broken:
        aws["s3"].put_object(Bucket=BUCKET, Key=name, Body=b"\x1f\x8b\x08\x00 not gzip at all")
    assert set(read_once(aws).corrupt) == set(broken)
    good = put(aws, "b-good", [line(aws["app_eni"], "10.0.1.10", "10.0.1.11", 40001, 22, 1, 100)])
    result = read_once(aws)
    assert (result.objects, result.waiting, result.deleted) == (1, 0, [good])


def test_objects_left_undeleted_make_the_run_incomplete_are_named_and_never_read_twice(aws: dict) -> None:
    lock = {"ObjectLockEnabled": "Enabled"}
    aws["s3"].put_object_lock_configuration(Bucket=BUCKET, ObjectLockConfiguration=lock)
    locked = put(aws, "locked", [line(aws["app_eni"], "10.0.1.10", "10.0.1.11", 40001, 22, 1, 100)])
    aws["s3"].put_object_legal_hold(Bucket=BUCKET, Key=locked, LegalHold={"Status": "ON"})
    result = cli(aws, "flowlogs")
    assert result.exit_code == 1, result.output
    assert "status=INCOMPLETE" in result.output and "connections=1 " in result.output
    assert "deleted_objects=0" in result.output and f"not deleted: {locked} (AccessDenied)" in result.output
    assert locked in remaining(aws)
    again = cli(aws, "flowlogs")  # its bytes were sent: it is deleted again, not read again
    assert "objects=0 records=0 connections=0" in again.output and f"not deleted: {locked}" in again.output
    aws["s3"].put_object_legal_hold(Bucket=BUCKET, Key=locked, LegalHold={"Status": "OFF"})
    last = cli(aws, "flowlogs")
    assert last.exit_code == 0, last.output
    assert "objects=0 records=0 connections=0" in last.output and "deleted_objects=1" in last.output
    assert locked not in remaining(aws)


def test_a_run_writes_only_its_own_recent_connections(aws: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recent connections (sent again after a full snapshot) are kept per minute: a run writes the
    connections it saw, and reads the others only when a snapshot was just sent."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(flowlogs, "time", SimpleNamespace(time=lambda: now[0], monotonic=time.monotonic))
    written: list[str] = []
    read: list[str] = []

    class Watched(State):
        def get(self, key: str, default: Any = None) -> Any:
            read.append(key)
            return super().get(key, default)

        def set(self, key: str, value: Any) -> None:
            written.append(json.dumps(value) if key.startswith("flowlogs.recent.") else "")
            super().set(key, value)

    first, second = "10.0.1.11", "10.0.1.50"
    put(aws, "a", [line(aws["app_eni"], "10.0.1.10", first, 40001, 22, 1, 100)])
    read_once(aws, Watched)
    now[0] += 120
    put(aws, "b", [line(aws["app_eni"], "10.0.1.10", second, 40001, 5432, 1, 100)])
    written.clear()
    read.clear()
    assert read_once(aws, Watched).connections == 1
    [recent] = [w for w in written if w]
    assert f"/10.0.1.10/{second}" in recent and f"/10.0.1.10/{first}" not in recent
    this_minute = f"flowlogs.recent.{ACCOUNT}.{int(now[0] // 60) % flowlogs.SLOTS}"
    assert {k for k in read if k.startswith("flowlogs.recent.")} <= {this_minute}
    now[0] += 120
    again = read_once(aws, after_snapshot=True)
    assert again.resent == 2
    now[0] += 3600 - 200  # the first connection is now older than an hour
    assert read_once(aws, after_snapshot=True).resent == 1
