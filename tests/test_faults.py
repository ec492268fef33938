"""Faults moto cannot produce on demand (throttling after retries), via botocore's Stubber."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from engine.auth import Account, client_config
from engine.collect import Collector
from engine.fetch import Fetcher
from engine.mappings import load_mappings
from engine.plan import plan
from engine.shape import Labels
from tests.conftest import ACCOUNT, ROLE, make_config

REGION = "eu-west-1"


@pytest.fixture
def account() -> Account:
    session = boto3.Session(aws_access_key_id="stub", aws_secret_access_key="stub", region_name=REGION)
    return Account(id=ACCOUNT, role_arn=ROLE, session=session, config=client_config(1))


def run_unit(account: Account, key: str):
    mappings = load_mappings()
    unit = next(u for u in plan(make_config().instances[0], mappings) if u.resource.key == key)
    return Collector(account, mappings, Fetcher(), Labels(account=ACCOUNT)).run(unit)


def test_throttled_listing_marks_the_unit_throttled_not_empty(account):
    client = account.client("sqs", REGION)
    with Stubber(client) as stub:
        stub.add_client_error("list_queues", service_error_code="ThrottlingException", http_status_code=400)
        result = run_unit(account, "sqs.queue")

    assert (result.status, result.components) == ("throttled", [])
    assert "ListQueues throttled in 123456789012/eu-west-1" in result.error


def test_denied_detail_keeps_the_item_and_reports_the_iam_action(account):
    client = account.client("sns", REGION)
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:orders"
    with Stubber(client) as stub:
        stub.add_response("list_topics", {"Topics": [{"TopicArn": topic}]})
        stub.add_response(
            "get_topic_attributes", {"Attributes": {"TopicArn": topic, "DisplayName": "Orders"}}
        )
        stub.add_client_error(
            "list_tags_for_resource", service_error_code="AuthorizationError", http_status_code=403
        )
        stub.add_response("list_subscriptions_by_topic", {"Subscriptions": []})
        result = run_unit(account, "sns.topic")

    assert result.complete
    assert [c["externalId"] for c in result.components] == [topic]
    assert result.components[0]["data"]["DisplayName"] == "Orders"
    assert [g.action for g in result.gaps] == ["sns:ListTagsForResource"]


def test_item_deleted_between_list_and_describe_is_dropped(account):
    client = account.client("sqs", REGION)
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/"
    with Stubber(client) as stub:
        stub.add_response("list_queues", {"QueueUrls": [url + "gone", url + "kept"]})
        stub.add_client_error(
            "get_queue_attributes", service_error_code="QueueDoesNotExist", http_status_code=400
        )
        stub.add_response(
            "get_queue_attributes", {"Attributes": {"QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:kept"}}
        )
        stub.add_response("list_queue_tags", {"Tags": {"team": "a"}})
        result = run_unit(account, "sqs.queue")

    assert result.complete
    assert [c["externalId"] for c in result.components] == [f"arn:aws:sqs:{REGION}:{ACCOUNT}:kept"]


def test_unexpected_error_fails_the_unit_with_the_aws_code(account):
    client = account.client("ec2", REGION)
    with Stubber(client) as stub:
        stub.add_client_error("describe_vpcs", service_error_code="InternalError", http_status_code=400)
        result = run_unit(account, "ec2.vpc")

    assert result.status == "failed"
    assert result.error.startswith("DescribeVpcs in 123456789012/eu-west-1 failed: InternalError")
