"""Clients carry service models narrowed to the operations wanted of them, and still call those operations."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from engine.aws.sessions import Account, boto3_session, client_config
from engine.core import botocore_data
from engine.core.botocore_data import NarrowLoader, narrowed

REGION = "eu-west-1"


def whole(service: str) -> dict:
    return NarrowLoader().load_service_model(service, "service-2")


def test_a_narrowed_model_keeps_the_operations_and_every_shape_they_reach_without_documentation():
    ec2 = whole("ec2")
    model = narrowed(ec2, ["DescribeSecurityGroups"])

    assert set(model["operations"]) == {"DescribeSecurityGroups"}
    assert "IpPermission" in model["shapes"]  # reached through a list member of a structure member
    assert "Instance" not in model["shapes"]
    assert "documentation" not in json.dumps(model)
    assert len(json.dumps(model)) * 50 < len(json.dumps(ec2))


def test_the_endpoint_discovery_operation_is_kept():
    model = narrowed(whole("dynamodb"), ["ListTables"])

    assert set(model["operations"]) == {"ListTables", "DescribeEndpoints"}


def test_a_client_on_a_narrowed_model_has_only_the_wanted_methods_and_parses_their_answers():
    loader = NarrowLoader()
    loader.want("sqs", ["ListQueues", "GetQueueAttributes"])
    session = boto3.Session(aws_access_key_id="stub", aws_secret_access_key="stub", region_name=REGION)
    session._session.register_component("data_loader", loader)
    client = session.client("sqs")

    assert not hasattr(client, "purge_queue")
    with Stubber(client) as stub:
        stub.add_response("list_queues", {"QueueUrls": ["https://queue/a"]})
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"VisibilityTimeout": "30"}},
            {"QueueUrl": "https://queue/a"},
        )
        assert client.list_queues()["QueueUrls"] == ["https://queue/a"]
        attributes = client.get_queue_attributes(QueueUrl="https://queue/a")["Attributes"]
    assert attributes == {"VisibilityTimeout": "30"}


def test_what_botocore_calls_by_itself_is_kept():
    loader = NarrowLoader()
    loader.want("s3", ["ListBuckets"])

    operations = loader.load_service_model("s3", "service-2")["operations"]

    assert set(operations) == {"ListBuckets", "HeadBucket", "CreateSession"}


def test_a_service_nothing_wants_keeps_its_whole_model():
    loader = NarrowLoader()
    loader.want("sqs", ["ListQueues"])

    assert len(loader.load_service_model("sns", "service-2")["operations"]) > 20


def test_an_account_builds_its_client_again_for_an_operation_it_lacks(monkeypatch: pytest.MonkeyPatch):
    loader = NarrowLoader()
    loader.want("sqs", ["ListQueues"])
    monkeypatch.setattr(botocore_data, "client_loader", lambda: loader)
    session = boto3_session(aws_access_key_id="stub", aws_secret_access_key="stub")
    account = Account(id="123456789012", role_arn="arn:aws:iam::123456789012:role/r", session=session,
                      config=client_config(1))  # fmt: skip

    first = account.client("sqs", REGION, "ListQueues")
    again = account.client("sqs", REGION, "ListQueues")
    wider = account.client("sqs", REGION, "PurgeQueue")

    assert again is first and not hasattr(first, "purge_queue")
    assert wider is not first and hasattr(wider, "purge_queue") and hasattr(wider, "list_queues")
    assert account.client("sqs", REGION) is wider


def test_partitions_and_regions_come_from_the_clients_loader_not_the_whole_model_session():
    from engine.aws.sessions import _aws_dns_suffixes, known_regions, partition

    botocore_data.forget()
    for cached in (partition, known_regions, _aws_dns_suffixes):
        cached.cache_clear()

    assert partition("cn-north-1") == "aws-cn" and partition("xx-nowhere-1") == "aws"
    assert "eu-west-1" in known_regions() and "amazonaws.com" in _aws_dns_suffixes()
    # botocore's `endpoints` (about 7 MB parsed) is not parsed a second time by a session of its own
    assert botocore_data.session.cache_info().currsize == 0
    assert botocore_data.data("endpoints") is botocore_data.client_loader().load_data("endpoints")
