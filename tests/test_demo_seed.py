"""Live checks that demo.seed builds the promised estate on an in-process moto server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from demo.seed import AMI_ID, client, seed_bulk, seed_estate
from demo.server import reset, start

pytestmark = pytest.mark.live

EU = "eu-west-1"
US = "us-east-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A warmed moto server on a free port, stopped after the module."""
    server, url = start(0)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def estate(endpoint: str) -> dict[str, Any]:
    """The demo estate, seeded once after a reset with the default id seed."""
    reset(endpoint)
    return seed_estate(endpoint)


def _tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    """Turn AWS ``[{Key, Value}]`` tags into a dict."""
    return {tag["Key"]: tag["Value"] for tag in items or []}


def test_vpc_subnets_and_vpn_gateway(endpoint: str, estate: dict[str, Any]) -> None:
    ec2 = client("ec2", EU, endpoint)
    vpc = ec2.describe_vpcs(VpcIds=[estate["vpc_id"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    assert _tags(vpc.get("Tags"))["Name"] == "demo-vpc"

    subnets = ec2.describe_subnets(SubnetIds=list(estate["subnet_ids"].values()))["Subnets"]
    assert {s["AvailabilityZone"]: s["SubnetId"] for s in subnets} == estate["subnet_ids"]
    assert {s["VpcId"] for s in subnets} == {estate["vpc_id"]}
    assert sorted(s["CidrBlock"] for s in subnets) == ["10.0.0.0/20", "10.0.16.0/20"]
    assert sorted("Name" in _tags(s.get("Tags")) for s in subnets) == [False, True]

    vgw = ec2.describe_vpn_gateways(VpnGatewayIds=[estate["vpn_gateway_id"]])["VpnGateways"][0]
    assert vgw["VpcAttachments"] == [{"VpcId": estate["vpc_id"], "State": "attached"}]
    assert _tags(vgw.get("Tags"))["Name"] == "demo-vgw"


def test_security_group_reference(endpoint: str, estate: dict[str, Any]) -> None:
    ec2 = client("ec2", EU, endpoint)
    sg_ids = estate["security_group_ids"]
    groups = {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(GroupIds=[sg_ids["web"], sg_ids["db"]])["SecurityGroups"]
    }
    assert {name: g["VpcId"] for name, g in groups.items()} == {
        "web": estate["vpc_id"],
        "db": estate["vpc_id"],
    }
    db_rules = groups["db"]["IpPermissions"]
    assert [(r["FromPort"], [p["GroupId"] for p in r["UserIdGroupPairs"]]) for r in db_rules] == [
        (5432, [sg_ids["web"]])
    ]
    web_ports = {r["FromPort"] for r in groups["web"]["IpPermissions"]}
    assert web_ports == {80, 443}


def test_instances(endpoint: str, estate: dict[str, Any]) -> None:
    ids = estate["instance_ids"]
    ec2 = client("ec2", EU, endpoint)
    pages = ec2.get_paginator("describe_instances").paginate(
        InstanceIds=[ids["web-1"], ids["web-2"], ids["db-1"]]
    )
    found = {i["InstanceId"]: i for page in pages for r in page["Reservations"] for i in r["Instances"]}
    by_name = {_tags(i["Tags"])["Name"]: i for i in found.values()}
    assert {name: i["InstanceId"] for name, i in by_name.items()} == {
        k: ids[k] for k in ("web-1", "web-2", "db-1")
    }

    sg_ids = estate["security_group_ids"]
    subnet_a, subnet_b = estate["subnet_ids"][f"{EU}a"], estate["subnet_ids"][f"{EU}b"]
    expected = {
        "web-1": (subnet_a, sg_ids["web"]),
        "web-2": (subnet_b, sg_ids["web"]),
        "db-1": (subnet_b, sg_ids["db"]),
    }
    for name, (subnet, sg) in expected.items():
        inst = by_name[name]
        assert inst["State"]["Name"] == "running"
        assert inst["ImageId"] == AMI_ID
        assert (inst["SubnetId"], inst["VpcId"]) == (subnet, estate["vpc_id"])
        assert [g["GroupId"] for g in inst["SecurityGroups"]] == [sg]
        assert "team" in _tags(inst["Tags"])

    web1 = _tags(by_name["web-1"]["Tags"])
    assert web1["stackstate-identifier"] == "urn:host:/web-1.demo.internal"
    assert web1["stackstate-environment"] == "production"
    assert by_name["web-1"]["PrivateIpAddress"] == "10.0.0.10"

    us = client("ec2", US, endpoint)
    ops = us.describe_instances(InstanceIds=[ids["ops-1"]])["Reservations"][0]["Instances"][0]
    assert _tags(ops["Tags"])["Name"] == "ops-1"
    default_vpc = us.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    assert ops["VpcId"] == default_vpc["VpcId"] == estate["default_vpc_id_us"]


def test_buckets(endpoint: str, estate: dict[str, Any]) -> None:
    s3 = client("s3", EU, endpoint)
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert names == {"demo-assets-eu", "demo-logs-eu", "demo-assets-us"} == set(estate["buckets"])
    locations = {name: s3.get_bucket_location(Bucket=name)["LocationConstraint"] for name in sorted(names)}
    assert locations == {"demo-assets-eu": EU, "demo-logs-eu": EU, "demo-assets-us": None}
    assert _tags(s3.get_bucket_tagging(Bucket="demo-assets-eu")["TagSet"])["team"] == "storefront"


def test_queues_and_topics(endpoint: str, estate: dict[str, Any]) -> None:
    urls, arns, topics = estate["queue_urls"], estate["queue_arns"], estate["topic_arns"]
    sqs = client("sqs", EU, endpoint)
    assert sorted(sqs.list_queues()["QueueUrls"]) == sorted([urls["orders"], urls["orders-dlq"]])
    attrs = sqs.get_queue_attributes(QueueUrl=urls["orders"], AttributeNames=["All"])["Attributes"]
    assert attrs["QueueArn"] == arns["orders"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == arns["orders-dlq"]
    assert sqs.list_dead_letter_source_queues(QueueUrl=urls["orders-dlq"])["queueUrls"] == [urls["orders"]]
    assert sqs.list_queue_tags(QueueUrl=urls["orders"])["Tags"]["team"] == "storefront"

    sns = client("sns", EU, endpoint)
    assert (
        _tags(sns.list_tags_for_resource(ResourceArn=topics["order-events"])["Tags"])["team"] == "storefront"
    )
    subs = sns.list_subscriptions_by_topic(TopicArn=topics["order-events"])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"], s["SubscriptionArn"]) for s in subs] == [
        ("sqs", arns["orders"], estate["subscription_arns"]["order-events"])
    ]

    us_sqs = client("sqs", US, endpoint)
    assert us_sqs.list_queues()["QueueUrls"] == [urls["audit"]]
    assert arns["audit"] == f"arn:aws:sqs:{US}:123456789012:audit"
    us_subs = client("sns", US, endpoint).list_subscriptions_by_topic(TopicArn=topics["alerts"])[
        "Subscriptions"
    ]
    assert [(s["Protocol"], s["Endpoint"]) for s in us_subs] == [("sqs", arns["audit"])]


def test_bulk_in_separate_account(endpoint: str) -> None:
    account = "210987654321"
    created = seed_bulk(endpoint, resources=150, account=account)
    assert created >= 150

    bulk = [{"Name": "tag:bulk", "Values": ["true"]}]
    counted = len({b["Name"] for b in client("s3", EU, endpoint, account).list_buckets()["Buckets"]})
    for region in (EU, US):
        ec2 = client("ec2", region, endpoint, account)
        pages = ec2.get_paginator("describe_instances").paginate(Filters=bulk)
        counted += sum(len(r["Instances"]) for page in pages for r in page["Reservations"])
        counted += len(ec2.describe_vpcs(Filters=bulk)["Vpcs"])
        counted += len(ec2.describe_subnets(Filters=bulk)["Subnets"])
        counted += len(ec2.describe_security_groups(Filters=bulk)["SecurityGroups"])
        counted += len(client("sqs", region, endpoint, account).list_queues(MaxResults=1000)["QueueUrls"])
        counted += len(client("sns", region, endpoint, account).list_topics()["Topics"])
    assert counted == created
    # the default account still holds only the demo estate
    assert len(client("s3", EU, endpoint).list_buckets()["Buckets"]) == 3


def test_seed_is_deterministic(endpoint: str, estate: dict[str, Any]) -> None:
    reset(endpoint)
    assert seed_estate(endpoint) == estate
