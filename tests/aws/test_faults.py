"""Faults moto cannot produce on demand (throttling after retries), via botocore's Stubber.

Every client a unit uses is stubbed, joins' clients included; any attempt to reach a real host fails the test.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from engine.aws.fetch import Fetcher
from engine.aws.sessions import Account, client_config
from engine.language.components import Labels
from engine.language.loader import load_mappings
from engine.scan.collect import Collector
from engine.scan.plan import plan
from tests.support import ACCOUNT, ROLE, make_config

REGION = "eu-west-1"

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture
def account() -> Account:
    session = boto3.Session(aws_access_key_id="stub", aws_secret_access_key="stub", region_name=REGION)
    return Account(id=ACCOUNT, role_arn=ROLE, session=session, config=client_config(1))


def tagging(account: Account) -> object:
    """The Resource Groups Tagging API client of the region: the tag joins' calls go there."""
    return account.client("resourcegroupstaggingapi", REGION)


def run_unit(account: Account, key: str):
    mappings = load_mappings()
    unit = next(u for u in plan(make_config().instances[0], mappings) if u.resource.key == key)
    [result] = Collector(account, mappings, Fetcher(), Labels(account=ACCOUNT)).run(unit)
    return result


def test_throttled_listing_marks_the_unit_throttled_not_empty(account):
    client = account.client("sqs", REGION)
    with Stubber(client) as stub:
        stub.add_client_error("list_queues", service_error_code="ThrottlingException", http_status_code=400)
        result = run_unit(account, "sqs.queue")

    assert (result.status, result.components) == ("throttled", [])
    assert "ListQueues throttled in 123456789012/eu-west-1" in result.error


def test_denied_detail_keeps_the_item_and_reports_the_iam_action(account):
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:orders"
    with Stubber(account.client("sns", REGION)) as stub, Stubber(tagging(account)) as tags:
        stub.add_response("list_topics", {"Topics": [{"TopicArn": topic}]})
        stub.add_response(
            "get_topic_attributes", {"Attributes": {"TopicArn": topic, "DisplayName": "Orders"}}
        )
        tags.add_client_error("get_resources", service_error_code="AccessDeniedException")
        stub.add_client_error(
            "list_tags_for_resource", service_error_code="AuthorizationError", http_status_code=403
        )
        stub.add_response("list_subscriptions", {"Subscriptions": []})
        result = run_unit(account, "sns.topic")
        stub.assert_no_pending_responses()
        tags.assert_no_pending_responses()

    assert result.complete
    assert [c["externalId"] for c in result.components] == [topic]
    assert result.components[0]["data"]["DisplayName"] == "Orders"
    assert [g.action for g in result.gaps] == ["tag:GetResources", "sns:ListTagsForResource"]


def test_item_deleted_between_list_and_describe_is_dropped(account):
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/"
    kept = f"arn:aws:sqs:{REGION}:{ACCOUNT}:kept"
    with Stubber(account.client("sqs", REGION)) as stub, Stubber(tagging(account)) as tags:
        stub.add_response("list_queues", {"QueueUrls": [url + "gone", url + "kept"]})
        stub.add_client_error(
            "get_queue_attributes", service_error_code="QueueDoesNotExist", http_status_code=400
        )
        stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": kept}})
        tags.add_response(
            "get_resources",
            {"ResourceTagMappingList": [{"ResourceARN": kept, "Tags": [{"Key": "team", "Value": "a"}]}]},
            {"ResourceTypeFilters": ["sqs"], "ResourcesPerPage": 100},
        )
        result = run_unit(account, "sqs.queue")
        stub.assert_no_pending_responses()
        tags.assert_no_pending_responses()

    assert result.complete
    assert [c["externalId"] for c in result.components] == [kept]
    assert result.components[0]["data"]["Tags"] == {"team": "a"}


def test_unexpected_error_fails_the_unit_with_the_aws_code(account):
    client = account.client("ec2", REGION)
    with Stubber(client) as stub:
        stub.add_client_error("describe_vpcs", service_error_code="InternalError", http_status_code=400)
        result = run_unit(account, "ec2.vpc")

    assert result.status == "failed"
    assert result.error.startswith("DescribeVpcs in 123456789012/eu-west-1 failed: InternalError")


ECS_MAPPING = """
version: 1
service: ecs
resources:
  cluster:
    type: test.ecs.cluster
    list: {operation: ListClusters, items: "clusterArns[].{clusterArn: @}"}
    id: clusterArn
  service:
    type: test.ecs.service
    parent: cluster
    list: {operation: ListServices, args: {cluster: clusterArn}, items: "serviceArns[].{serviceArn: @}"}
    details:
      - operation: DescribeServices
        args: {cluster: _parent.clusterArn}
        batch: {param: services, key: serviceArn, size: 10, items: "services[]", match: serviceArn}
    id: serviceArn
    relations:
      - {type: has_cluster_node, direction: in, target: _parent.clusterArn}
"""


def test_children_are_listed_per_parent_and_batched_per_parent(account, tmp_path):
    (tmp_path / "ecs.yaml").write_text(ECS_MAPPING)
    mappings = load_mappings(tmp_path)
    c1, c2 = (f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{n}" for n in ("one", "two"))
    s = {n: f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{n}" for n in ("a", "b", "c")}
    client = account.client("ecs", REGION)
    with Stubber(client) as stub:
        stub.add_response("list_clusters", {"clusterArns": [c1, c2]})
        stub.add_response("list_services", {"serviceArns": [s["a"], s["b"]]}, {"cluster": c1})
        stub.add_response("list_services", {"serviceArns": [s["c"]]}, {"cluster": c2})
        described = [{"serviceArn": s["a"], "status": "ACTIVE"}, {"serviceArn": s["b"], "status": "DRAINING"}]
        stub.add_response(
            "describe_services", {"services": described}, {"cluster": c1, "services": [s["a"], s["b"]]}
        )
        described = [{"serviceArn": s["c"], "status": "ACTIVE"}]
        stub.add_response("describe_services", {"services": described}, {"cluster": c2, "services": [s["c"]]})
        unit = plan(make_config().instances[0], mappings)[0]
        results = Collector(account, mappings, Fetcher(), Labels(account=ACCOUNT)).run(unit)
        stub.assert_no_pending_responses()

    assert [(r.unit.resource.name, r.complete) for r in results] == [("cluster", True), ("service", True)]
    status = {c["externalId"]: c["data"].get("Status") for r in results for c in r.components}
    assert status == {c1: None, c2: None, s["a"]: "ACTIVE", s["b"]: "DRAINING", s["c"]: "ACTIVE"}
    assert {(r["sourceId"], r["targetId"]) for r in results[1].relations} == {
        (c1, s["a"]),
        (c1, s["b"]),
        (c2, s["c"]),
    }
