"""mappings/cloudformation.yaml against a live moto server: stacks and their has-resource edges.

moto returns every stack resource in one ListStackResources response, so the fixture makes it page
at three per page (NextToken), as AWS pages at 100. A stack whose resources cannot be listed any
more answers ValidationError, as a stack deleted mid-scan does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from moto.cloudformation.responses import CloudFormationResponse
from moto.core.responses import ActionResult

from demo.seed import client
from engine.language.components import relations
from engine.language.loader import load_mappings
from tests.support import ACCOUNT, ListSink, moto_server, scan_live

pytestmark = pytest.mark.live

REGION = "eu-west-1"
PAGE = 3
UNSUPPORTED = {"AWS::Logs::LogGroup"}
CHILD = {"Resources": {"Inner": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "inner"}}}}
TEMPLATE = {
    "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "alerts"}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "jobs"}},
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "shop-data"}},
        "Table": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": "orders",
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        },
        "Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "clicks", "ShardCount": 1}},
        "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": "shop"}},
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "shop-api"}},
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.1.0.0/16"}},
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "shop-logs"}},
        "Nested": {
            "Type": "AWS::CloudFormation::Stack",
            "Properties": {"TemplateURL": "https://templates.s3.amazonaws.com/child.json"},
        },
    }
}
DOOMED = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "doomed"}}}}


def _page_stack_resources(patch: pytest.MonkeyPatch, pages: list[int]) -> None:
    """ListStackResources pages of PAGE summaries; the stack `doomed` is gone (ValidationError)."""
    original = CloudFormationResponse.list_stack_resources

    def paged(self):
        if self._get_param("StackName").split("/")[-2:-1] == ["doomed"]:
            self.cloudformation_backend.get_stack("no-such-stack")  # raises ValidationError
        result = original(self).result
        summaries = result["StackResourceSummaries"]
        start = int(self._get_param("NextToken") or 0)
        pages.append(start)
        page = {"StackResourceSummaries": summaries[start : start + PAGE]}
        if start + PAGE < len(summaries):
            page["NextToken"] = str(start + PAGE)
        return ActionResult(page)

    patch.setattr(CloudFormationResponse, "list_stack_resources", paged)


def _seed(endpoint: str) -> dict:
    s3 = client("s3", REGION, endpoint)
    cfn = client("cloudformation", REGION, endpoint)
    s3.create_bucket(Bucket="templates", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="templates", Key="child.json", Body=json.dumps(CHILD))
    stack = cfn.create_stack(
        StackName="shop", TemplateBody=json.dumps(TEMPLATE), Tags=[{"Key": "team", "Value": "shop"}]
    )["StackId"]
    doomed = cfn.create_stack(StackName="doomed", TemplateBody=json.dumps(DOOMED))["StackId"]
    summaries = cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    physical = {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries}
    nested = next(s for s in cfn.describe_stacks()["Stacks"] if s["StackId"] == physical["Nested"])
    return {"stack": stack, "doomed": doomed, "summaries": summaries, "physical": physical, "nested": nested}


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict, list[int]]]:
    pages: list[int] = []
    with moto_server() as endpoint:
        ids = _seed(endpoint)
        with pytest.MonkeyPatch.context() as patch:
            _page_stack_resources(patch, pages)
            sink, results = scan_live(endpoint, regions=(REGION,), apis_to_run=("cloudformation",))
        yield sink, results, ids, pages


def _resources_of(sink: ListSink, stack: str) -> set[str]:
    return {t for s, kind, t in sink.relations() if s == stack and kind == "has-resource"}


def test_cloudformation_scan_is_complete(scanned):
    _, results, _, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_cloudformation_stack_has_arn_name_and_tags(scanned):
    sink, _, ids, _ = scanned
    component = sink.components()[ids["stack"]]
    assert component["type"]["name"] == "aws.cloudformation.stack"
    data = component["data"]
    assert data["Name"] == "shop"
    assert data["StackName"] == "shop"
    assert data["StackStatus"] == "CREATE_COMPLETE"
    assert data["Tags"] == {"team": "shop"}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Applications"
    assert "CW" not in data and "URN" not in data


def test_cloudformation_stack_has_each_supported_resource_by_its_external_id(scanned):
    sink, _, ids, _ = scanned
    physical = ids["physical"]
    arn = f"{REGION}:{ACCOUNT}"
    assert physical["Topic"] == f"arn:aws:sns:{arn}:alerts"  # already an ARN: used as is
    assert physical["Queue"] == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/jobs"  # a URL: made an ARN
    assert _resources_of(sink, ids["stack"]) == {
        f"arn:aws:sns:{arn}:alerts",
        f"arn:aws:sqs:{arn}:jobs",
        "arn:aws:s3:::shop-data",
        f"arn:aws:dynamodb:{arn}:table/orders",
        f"arn:aws:kinesis:{arn}:stream/clicks",
        f"arn:aws:ecs:{arn}:cluster/shop",
        f"arn:aws:execute-api:{arn}:{physical['Api']}",
        physical["Vpc"],
        physical["Nested"],  # the child stack's ARN
    }


def test_cloudformation_edge_count_matches_every_page_of_stack_resources(scanned):
    sink, _, ids, pages = scanned
    supported = [s for s in ids["summaries"] if s["ResourceType"] not in UNSUPPORTED]
    assert len(ids["summaries"]) == 10
    assert len(_resources_of(sink, ids["stack"])) == len(supported) == 9
    assert sorted(pages) == [0, 0, 3, 6, 9]  # shop: 4 pages of 3; the nested stack: 1 page


def test_cloudformation_unsupported_resource_types_give_no_edge(scanned):
    sink, _, ids, _ = scanned
    targets = _resources_of(sink, ids["stack"])
    assert not {t for t in targets if "shop-logs" in t}
    assert ids["physical"]["Logs"] == "shop-logs"


def test_cloudformation_nested_stack_is_a_stack_with_its_own_resources(scanned):
    sink, _, ids, _ = scanned
    nested = ids["nested"]
    component = sink.components()[nested["StackId"]]
    assert component["type"]["name"] == "aws.cloudformation.stack"
    assert component["data"]["Name"] == nested["StackName"]
    assert _resources_of(sink, nested["StackId"]) == {f"arn:aws:sqs:{REGION}:{ACCOUNT}:inner"}


def test_cloudformation_stack_gone_while_listing_its_resources_is_dropped(scanned):
    sink, _, ids, _ = scanned
    assert ids["doomed"] not in sink.components()
    assert not _resources_of(sink, ids["doomed"])


@pytest.fixture(scope="module")
def stack():
    return next(r for r in load_mappings().resources if r.key == "cloudformation.stack")


@pytest.mark.parametrize(
    ("resource_type", "physical_id", "target"),
    [
        ("AWS::S3::Bucket", "logs", "arn:aws-cn:s3:::logs"),
        ("AWS::Lambda::Function", "fn", "arn:aws-cn:lambda:cn-north-1:123456789012:function:fn"),
        (
            "AWS::KinesisFirehose::DeliveryStream",
            "fh",
            "arn:aws-cn:firehose:cn-north-1:123456789012:deliverystream/fh",
        ),
        ("AWS::RDS::DBInstance", "db1", "arn:aws-cn:rds:cn-north-1:123456789012:db:db1"),
        ("AWS::RDS::DBCluster", "c1", "arn:aws-cn:rds:cn-north-1:123456789012:cluster:c1"),
        (
            "AWS::SQS::Queue",
            "https://sqs.cn-north-1.amazonaws.com.cn/210987654321/q",
            "arn:aws-cn:sqs:cn-north-1:210987654321:q",
        ),
        (
            "AWS::SNS::Topic",
            "arn:aws-cn:sns:cn-north-1:123456789012:t",
            "arn:aws-cn:sns:cn-north-1:123456789012:t",
        ),
        ("AWS::ApiGateway::RestApi", "a1b2c3", "arn:aws-cn:execute-api:cn-north-1:123456789012:a1b2c3"),
        ("AWS::ApiGatewayV2::Api", "h1", "arn:aws-cn:apigateway:cn-north-1::/apis/h1"),
        ("AWS::ECS::Service", "arn:aws-cn:ecs:cn-north-1:123456789012:service/c/web", None),  # as is
        ("AWS::Lambda::Alias", "arn:aws-cn:lambda:cn-north-1:123456789012:function:fn:live", None),
        ("AWS::EC2::NatGateway", "nat-0abc", "nat-0abc"),
        ("AWS::EC2::VPNGateway", "vgw-0abc", "vgw-0abc"),
        (
            "AWS::ElasticLoadBalancing::LoadBalancer",
            "classic",
            "arn:aws-cn:elasticloadbalancing:cn-north-1:123456789012:loadbalancer/classic",
        ),
        ("AWS::Redshift::Cluster", "wh", "arn:aws-cn:redshift:cn-north-1:123456789012:cluster:wh"),
        ("AWS::Route53::HostedZone", "Z123", "Z123"),  # the component's external id is the bare zone id
        ("AWS::EC2::Instance", "i-0abc", "i-0abc"),
        ("AWS::StepFunctions::StateMachine", "arn:sm", "arn:sm"),
        ("AWS::ECS::TaskDefinition", "arn:td", ""),  # not a component type: no edge
        ("AWS::Route53Domains::Domain", "shop.cn", ""),  # not a CloudFormation type
        ("AWS::ApiGateway::Method", "shop-Method-1AB", ""),  # its id gives no stage's method id
        ("AWS::IAM::Role", "role", ""),
    ],
)
def test_cloudformation_resource_table_is_partition_aware(stack, resource_type, physical_id, target):
    """The type table row by row, in the aws-cn partition (no moto: the expression over one item)."""
    item = {
        "StackId": "arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/s/1",
        "_resources": [{"ResourceType": resource_type, "PhysicalResourceId": physical_id}],
        "_account": "123456789012",
        "_region": "cn-north-1",
        "_partition": "aws-cn",
    }
    edges = {
        (r["sourceId"], r["type"]["name"], r["targetId"]) for r in relations(stack, item, item["StackId"])
    }
    target = physical_id if target is None else target
    assert edges == ({(item["StackId"], "has-resource", target)} if target else set())


@pytest.mark.parametrize(
    ("resource_type", "physical_id", "sibling", "target"),
    [
        ("AWS::ApiGateway::Stage", "prod", ("AWS::ApiGateway::RestApi", "a1"), "execute-api:{r}:{a}:a1/prod"),
        (
            "AWS::ApiGatewayV2::Stage",
            "live",
            ("AWS::ApiGatewayV2::Api", "h1"),
            "apigateway:{r}::/apis/h1/stages/live",
        ),
        ("AWS::ApiGateway::Stage", "prod", ("AWS::SQS::Queue", "https://q"), None),  # no API in the stack
    ],
)
def test_cloudformation_stage_edge_names_the_stage_of_the_stacks_api(
    stack, resource_type, physical_id, sibling, target
):
    """A stage's physical id is its name: the stage's external id takes the one API of the same stack."""
    region, account = "eu-west-1", "123456789012"
    item = {
        "StackId": f"arn:aws:cloudformation:{region}:{account}:stack/s/1",
        "_resources": [
            {"ResourceType": resource_type, "PhysicalResourceId": physical_id},
            {"ResourceType": sibling[0], "PhysicalResourceId": sibling[1]},
        ],
        "_account": account,
        "_region": region,
        "_partition": "aws",
    }
    targets = {r["targetId"] for r in relations(stack, item, item["StackId"])}
    stage = f"arn:aws:{target.format(r=region, a=account)}" if target else None
    assert stage in targets if stage else not {t for t in targets if physical_id in t}
