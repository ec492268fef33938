"""Events that name only a child (an EFS mount target): the child's `get` finds it, `parent_id` names its
parent, and the parent is refreshed; a child's delete is confirmed by its `get`. The rules, then a live delta
against moto."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from demo.seed import client
from engine.aws.fetch import Fetcher
from engine.aws.sessions import Account, client_config
from engine.core.config import load_config
from engine.core.errors import AccessDenied, MappingErrors
from engine.core.state import State
from engine.events.delta import UNCONFIRMED_KEY, apply_events
from engine.events.eventbridge import Change, Rules
from engine.language.components import Labels
from engine.language.loader import Mappings, load_mappings
from engine.scan.collect import Collector, UnitResult
from engine.scan.plan import Unit
from tests.events.test_events import BUCKET, PREFIX, REGION, cloudtrail, firehose
from tests.support import ACCOUNT, ROLE, ListSink, live_aws

SOURCE = "elasticfilesystem.amazonaws.com"
EFS = f"""
version: 1
service: efs
resources:
  file-system:
    type: test.efs.file-system
    list: {{operation: DescribeFileSystems, items: "FileSystems[]"}}
    get: {{operation: DescribeFileSystems, args: {{FileSystemId: _id}}, items: "FileSystems[]",
           gone: [FileSystemNotFound]}}
    id: FileSystemId
    external_id: FileSystemArn
  mount-target:
    type: test.efs.mount-target
    parent: file-system
    list: {{operation: DescribeMountTargets, args: {{FileSystemId: FileSystemId}}, items: "MountTargets[]"}}
    get: {{operation: DescribeMountTargets, args: {{MountTargetId: _id}}, items: "MountTargets[]",
           gone: [MountTargetNotFound]}}
    parent_id: FileSystemId
    id: MountTargetId
    external_id: "format('mt:{{_region}}:{{MountTargetId}}', @)"
    relations:
      - {{type: has-resource, direction: in, target: _parent._external_id}}
    events:
      - {{source: {SOURCE}, names: [CreateMountTarget], ids: responseElements.mountTargetId}}
      - {{source: {SOURCE}, names: [DeleteMountTarget], ids: requestParameters.mountTargetId,
         action: delete, delete_id: "format('mt:{{_region}}:{{_id}}', @)"}}
"""


def efs_mappings(folder: Path, text: str = EFS) -> Mappings:
    folder.mkdir(exist_ok=True)
    (folder / "efs.yaml").write_text(textwrap.dedent(text))
    return load_mappings(folder)


def created(mount_target: str) -> dict:
    return cloudtrail(SOURCE, "CreateMountTarget", responseElements={"mountTargetId": mount_target})


def deleted(mount_target: str) -> dict:
    return cloudtrail(SOURCE, "DeleteMountTarget", requestParameters={"mountTargetId": mount_target})


# --- what fires -------------------------------------------------------------------------------------


def test_a_child_rule_fires_a_change_of_the_child_with_its_delete_id(tmp_path: Path) -> None:
    mappings = efs_mappings(tmp_path / "m")
    _, target = mappings.resources
    rules = Rules(mappings)
    assert rules.changes(created("fsmt-1"), ACCOUNT, (REGION,)) == [Change(target, REGION, "fsmt-1", False)]
    assert rules.changes(deleted("fsmt-2"), ACCOUNT, (REGION,)) == [
        Change(target, REGION, "fsmt-2", True, f"mt:{REGION}:fsmt-2")
    ]
    assert rules.changes(deleted("fsmt-2"), ACCOUNT, ("us-east-1",)) == []  # not a configured region


def test_a_child_change_is_in_the_region_of_its_roots_unit(tmp_path: Path) -> None:
    """A child whose root is listed once per account: its change goes to the root's `account` unit."""
    text = EFS.replace(
        "    type: test.efs.file-system\n", "    type: test.efs.file-system\n    scope: account\n"
    )
    text = text.replace("    id: FileSystemId\n", "    id: FileSystemId\n    region: \"'eu-west-1'\"\n")
    _, target = (mappings := efs_mappings(tmp_path / "m", text)).resources
    assert target.scope == "regional"
    assert [c.region for c in Rules(mappings).changes(deleted("fsmt-2"), ACCOUNT, (REGION,))] == ["account"]


# --- a live delta -----------------------------------------------------------------------------------


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[dict]:
    """Two file systems: `one` with mount targets `kept` and `still`, `two` with `gone` (already deleted)."""
    from demo.server import reset, start

    server, endpoint = start(0)
    reset(endpoint)
    s3, ec2, efs = (client(s, REGION, endpoint) for s in ("s3", "ec2", "efs"))
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")
        for i, zone in enumerate("ab")
    ]
    one, two = (efs.create_file_system(CreationToken=token) for token in ("one", "two"))
    kept, still = (
        efs.create_mount_target(FileSystemId=one["FileSystemId"], SubnetId=s["Subnet"]["SubnetId"])
        for s in subnets
    )
    gone = efs.create_mount_target(
        FileSystemId=two["FileSystemId"], SubnetId=subnets[0]["Subnet"]["SubnetId"]
    )
    efs.delete_mount_target(MountTargetId=gone["MountTargetId"])
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: ext-id}\n"
        f"instances: [{{role_arn: 'arn:aws:iam::{ACCOUNT}:role/R', regions: [{REGION}]}}]\n"
    )
    ids = {"kept": kept, "still": still, "gone": gone}
    yield {
        "endpoint": endpoint, "s3": s3, "conf": conf, "tmp": tmp_path, "one": one["FileSystemArn"],
        "two": two["FileSystemArn"], **{name: mt["MountTargetId"] for name, mt in ids.items()},
    }  # fmt: skip
    server.stop()


def apply(estate: dict, *events: dict) -> tuple[ListSink, dict]:
    """Put one object of `events` (if any) in the bucket and apply the bucket with the EFS mapping; the sink
    and the summary, with the deletes left unconfirmed."""
    if events:
        key = f"{PREFIX}2026/12/01/12/stackstate-eventbridge-stream-1-2026-12-01-12-00"
        estate["s3"].put_object(Bucket=BUCKET, Key=key, Body=firehose(*events))
    config, sink = load_config(estate["conf"]), ListSink()
    mappings = efs_mappings(estate["tmp"] / "m")
    with live_aws(estate["endpoint"]), State(estate["tmp"] / "s.sqlite") as state:
        result = apply_events(config, config.instances[0], mappings, sink, state, Fetcher())
        unconfirmed = state.get(UNCONFIRMED_KEY.format(account=ACCOUNT), [])
    summary = result.summary()
    return sink, {**summary, "unconfirmed": [(u["resource"], u["id"]) for u in unconfirmed]}


@pytest.mark.live
def test_a_child_event_refreshes_its_parent_and_a_child_delete_is_confirmed_by_its_get(estate: dict) -> None:
    sink, summary = apply(
        estate,
        created(estate["kept"]),  # refreshes file system one, and with it both of its mount targets
        deleted(estate["gone"]),  # gone: deleted; its file system two is not refreshed
        created("fsmt-00000000"),  # no such mount target: nothing is refreshed
    )

    assert summary["status"] == "complete" and summary["changes"] == 3, summary
    mount_target = lambda name: f"mt:{REGION}:{estate[name]}"  # noqa: E731
    assert set(sink.components()) == {estate["one"], mount_target("kept"), mount_target("still")}
    assert len(sink.topologies()[0]["components"]) == 3  # each once: a child is shaped only under its root
    assert (estate["one"], "has-resource", mount_target("kept")) in sink.relations()
    [topology] = sink.topologies()
    assert topology["delete_ids"] == [mount_target("gone")] and summary["unconfirmed"] == []
    assert topology["start_snapshot"] is False and topology["stop_snapshot"] is False


@pytest.mark.live
def test_a_delete_of_a_child_its_get_still_finds_refreshes_its_parent_and_is_asked_again(
    estate: dict,
) -> None:
    sink, summary = apply(estate, deleted(estate["still"]))

    assert summary["status"] == "complete" and summary["unconfirmed_deletes"] == 1, summary
    assert set(sink.components()) == {
        estate["one"],
        f"mt:{REGION}:{estate['kept']}",
        f"mt:{REGION}:{estate['still']}",
    }
    [topology] = sink.topologies()
    assert topology["delete_ids"] == []
    assert summary["unconfirmed"] == [("efs.mount-target", estate["still"])]

    client("efs", REGION, estate["endpoint"]).delete_mount_target(MountTargetId=estate["still"])
    sink, summary = apply(estate)  # no new event: the unconfirmed delete is asked again
    assert sink.topologies()[0]["delete_ids"] == [f"mt:{REGION}:{estate['still']}"]
    assert summary["unconfirmed"] == [] and set(sink.components()) == set()


# --- a grandchild reaches its root, level by level (Collector.lift) ------------------------------------

GRANDCHILD = """
  access-point:
    type: test.efs.access-point
    parent: mount-target
    list: {operation: DescribeAccessPoints, args: {FileSystemId: _root.FileSystemId}, items: "AccessPoints[]"}
    get: {operation: DescribeAccessPoints, args: {AccessPointId: _id}, items: "AccessPoints[]"}
    parent_id: "Tags[?Key == 'mount-target'].Value | [0]"
    id: AccessPointId
    events:
      - {source: elasticfilesystem.amazonaws.com, names: [TagResource], ids: requestParameters.resourceId}
"""


class Answers:
    """A fetcher answering each (operation, id asked) from a table; any other id is not found (empty)."""

    def __init__(self, table: dict[tuple[str, str], dict], error: Exception | None = None) -> None:
        self.table, self.error, self.asked = table, error, []

    def call(self, account: object, region: str, service: str, call: object, params: dict) -> dict:
        operation = call.operation  # type: ignore[attr-defined]
        self.asked.append((service, operation, *params.values()))
        if self.error is not None:
            raise self.error
        lists = {"DescribeAccessPoints": "AccessPoints", "DescribeMountTargets": "MountTargets"}
        return self.table.get((operation, *params.values()), {lists[operation]: []})


def lifted(tmp_path: Path, ids: tuple[str, ...], fetcher: Answers) -> tuple[UnitResult, dict[str, str]]:
    mappings = efs_mappings(tmp_path / "m", EFS + GRANDCHILD)
    point = mappings.resources[-1]
    account = Account(ACCOUNT, ROLE, boto3.Session(region_name=REGION), client_config(1))
    unit = Unit(ACCOUNT, REGION, REGION, point, (REGION,), ids)
    return Collector(account, mappings, fetcher, Labels(account=ACCOUNT)).lift(unit)  # type: ignore[arg-type]


def test_a_grandchild_is_lifted_through_each_parent_to_its_root(tmp_path: Path) -> None:
    def point(access_point: str, mount_target: str) -> dict:
        tags = [{"Key": "mount-target", "Value": mount_target}]
        return {"AccessPoints": [{"AccessPointId": access_point, "Tags": tags}]}

    mount_target = {"MountTargetId": "fsmt-1", "FileSystemId": "fs"}
    fetcher = Answers({
        ("DescribeAccessPoints", "fsap-1"): point("fsap-1", "fsmt-1"),
        ("DescribeAccessPoints", "fsap-2"): point("fsap-2", "fsmt-9"),
        ("DescribeAccessPoints", "fsap-4"): {"AccessPoints": [{"AccessPointId": "fsap-4"}]},
        ("DescribeAccessPoints", "fsap-5"): point("fsap-5", 7),  # type: ignore[arg-type]
        ("DescribeMountTargets", "fsmt-1"): {"MountTargets": [mount_target]},
    })  # fmt: skip

    result, found = lifted(tmp_path, ("fsap-1", "fsap-2", "fsap-3", "fsap-4", "fsap-5"), fetcher)

    assert result.complete  # found: still there; fsap-2's mount target is gone, fsap-4 and 5 name none
    assert found == {"fsap-1": "fs", "fsap-2": None, "fsap-4": None, "fsap-5": None}  # fsap-3 is gone
    mount_targets = [a[2:] for a in fetcher.asked if a[1] == "DescribeMountTargets"]
    assert sorted(mount_targets, key=str) == [("fsmt-1",), ("fsmt-9",)]  # by id: none for "no parent"


def test_a_failed_lift_is_a_unit_result_not_a_crash(tmp_path: Path) -> None:
    action = "elasticfilesystem:DescribeAccessPoints"
    where = {"account": ACCOUNT, "region": REGION, "role_arn": ROLE}
    denied = AccessDenied(operation="DescribeAccessPoints", code="AccessDenied", action=action, **where)
    result, found = lifted(tmp_path, ("fsap-1",), Answers({}, denied))
    assert (result.status, found) == ("denied", {})
    assert [g.action for g in result.gaps] == [action]


def test_a_grandchild_whose_parent_cannot_reach_the_root_is_refused(tmp_path: Path) -> None:
    text = (EFS + GRANDCHILD).replace("    parent_id: FileSystemId\n", "")
    with pytest.raises(MappingErrors) as caught:
        efs_mappings(tmp_path / "m", text)
    assert (
        "efs.yaml: resources.access-point.events: reach the root through resources.mount-target: add its "
        "`parent_id`" in str(caught.value).splitlines()
    )


@pytest.mark.live
def test_a_child_event_whose_root_refresh_fails_keeps_its_object(estate: dict, monkeypatch) -> None:
    run = Collector.run

    def roots_fail(self: Collector, unit: Unit) -> list[UnitResult]:
        return [UnitResult(unit, "failed", "DescribeFileSystems failed")]

    with monkeypatch.context() as patch:
        patch.setattr(Collector, "run", roots_fail)
        _, summary = apply(estate, created(estate["kept"]), deleted(estate["still"]))
    assert summary["status"] == "INCOMPLETE" and summary["kept_objects"] == 1, summary
    assert summary["unconfirmed"] == []  # the delete is not counted as tried: its object is read again

    assert Collector.run is run
    sink, summary = apply(estate)  # the kept object, read again
    assert summary["status"] == "complete" and summary["unconfirmed"] == [
        ("efs.mount-target", estate["still"])
    ]
    assert estate["one"] in sink.components()
