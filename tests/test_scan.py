"""Full scans of the demo estate, replayed from cassettes recorded against a moto server."""

from __future__ import annotations

import pytest

from engine.mappings import load_mappings
from engine.payload import validate_payload
from engine.scan import scan
from tests.conftest import ACCOUNT, ListSink, make_config

pytestmark = pytest.mark.vcr

EU, US = "eu-west-1", "us-east-1"


def run_scan(endpoint: str, **kwargs) -> tuple[ListSink, list]:
    sink = ListSink()
    max_bytes = kwargs.pop("max_bytes", 1_000_000)
    results, _calls = scan(
        make_config(**kwargs), load_mappings(), sink, workers=1, max_bytes=max_bytes, endpoint_url=endpoint
    )
    return sink, results


def by_type(sink: ListSink, type_name: str) -> set[str]:
    return {i for i, c in sink.components().items() if c["type"]["name"] == type_name}


def test_full_scan_is_one_complete_snapshot_with_every_seeded_resource(aws_env, estate):
    sink, results = run_scan(aws_env)

    assert [r.complete for r in results] == [True]
    topologies = sink.topologies()
    assert topologies[0]["start_snapshot"] is True and topologies[-1]["stop_snapshot"] is True
    assert {t["instance"]["url"] for t in topologies} == {ACCOUNT}
    assert by_type(sink, "aws.ec2.instance") == set(estate["instance_ids"].values())
    assert by_type(sink, "aws.s3.bucket") == {f"arn:aws:s3:::{b}" for b in estate["buckets"]}
    assert by_type(sink, "aws.sqs.queue") == set(estate["queue_arns"].values())
    assert by_type(sink, "aws.sns.topic") == set(estate["topic_arns"].values())
    assert by_type(sink, "aws.ec2.vpn-gateway") == {estate["vpn_gateway_id"]}
    assert {estate["vpc_id"], estate["default_vpc_id_us"]} <= by_type(sink, "aws.ec2.vpc")
    assert set(estate["subnet_ids"].values()) <= by_type(sink, "aws.ec2.subnet")
    assert set(estate["security_group_ids"].values()) <= by_type(sink, "aws.ec2.security-group")
    for payload in (p for _, p in sink.payloads):
        validate_payload(payload)


def test_instance_component_carries_stackpack_identifiers_tags_and_labels(aws_env, estate):
    sink, _ = run_scan(aws_env)
    web1 = estate["instance_ids"]["web-1"]
    data = sink.components()[web1]["data"]

    assert sink.components()[web1]["type"] == {"name": "aws.ec2.instance"}
    assert data["Name"] == "web-1"
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": EU}
    ip = data["PrivateIpAddress"]
    assert data["URN"][:3] == [
        f"urn:host:/{web1}",
        f"arn:aws:ec2:{EU}:{ACCOUNT}:instance/{web1}",
        f"urn:vpcip:{estate['vpc_id']}/{ip}",
    ]
    assert data["Tags"]["instance-id"] == web1 and data["Tags"]["private-ip"] == ip
    assert "stackpack:aws-v2" in data["labels"] and "Name:web-1" in data["labels"]
    assert data["Tags"]["stackstate-identifier"] in data["identifiers"]
    assert sorted(data["tags"]) == ["integration-type:aws-v2", f"integration-url:{ACCOUNT}"]


def test_relations_follow_the_reference_directions(aws_env, estate):
    sink, _ = run_scan(aws_env)
    ids, sgs, subnets = estate["instance_ids"], estate["security_group_ids"], estate["subnet_ids"]
    vpc = estate["vpc_id"]
    relations = sink.relations()

    expected = {
        (ids["web-1"], "uses-service", sgs["web"]),
        (ids["db-1"], "uses-service", sgs["db"]),
        (vpc, "has-resource", sgs["web"]),
        (vpc, "has-resource", sgs["db"]),
        (estate["vpn_gateway_id"], "uses-service", vpc),
        (estate["topic_arns"]["order-events"], "uses-service", estate["queue_arns"]["orders"]),
        (estate["topic_arns"]["alerts"], "uses-service", estate["queue_arns"]["audit"]),
    }
    expected |= {(s, "uses-service", vpc) for s in subnets.values()}
    assert expected <= relations
    subnet_of = {
        c["externalId"]: c["data"]["SubnetId"]
        for c in sink.components().values()
        if c["type"]["name"] == "aws.ec2.instance"
    }
    assert {(i, "uses-service", s) for i, s in subnet_of.items()} <= relations
    for _, payload in sink.payloads:
        for rel in payload["topologies"][0]["relations"]:
            assert rel["externalId"] == f"{rel['sourceId']}-{rel['type']['name']}-{rel['targetId']}"


def test_apis_to_run_word_filter_selects_resource_types(aws_env, estate):
    sink, results = run_scan(aws_env, apis_to_run=("ec2|instances vpcs", "sqs"))

    assert {c["type"]["name"] for c in sink.components().values()} == {
        "aws.ec2.instance",
        "aws.ec2.vpc",
        "aws.sqs.queue",
    }
    assert {u.unit.resource.key for u in results[0].units} == {"ec2.instance", "ec2.vpc", "sqs.queue"}


def test_global_only_config_runs_no_regional_unit_and_closes_an_empty_snapshot(aws_env, estate):
    sink, results = run_scan(aws_env, regions=("global",))

    assert results[0].units == [] and results[0].complete
    assert [(t["start_snapshot"], t["stop_snapshot"], t["components"]) for t in sink.topologies()] == [
        (True, True, [])
    ]


def test_small_payload_limit_splits_the_snapshot_and_keeps_every_element(aws_env, estate):
    whole, _ = run_scan(aws_env)
    split, _ = run_scan(aws_env, max_bytes=20_000)

    flags = [(t["start_snapshot"], t["stop_snapshot"]) for t in split.topologies()]
    assert len(flags) > 2
    assert flags[0] == (True, False) and flags[-1] == (False, True)
    assert set(flags[1:-1]) == {(False, False)}
    assert split.components().keys() == whole.components().keys()
    assert split.relations() == whole.relations()
