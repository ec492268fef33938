"""mappings/lambda.yaml against a live moto server: functions, aliases, event source mappings."""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile
from collections.abc import Iterator

import pytest

from demo.seed import client
from tests.support import ACCOUNT, ListSink, components_of_type, live_aws, moto_server, scan_live

pytestmark = pytest.mark.live

REGION = "eu-west-1"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
MOTO_VPC = "vpc-123abc"  # moto hard-codes VpcConfig.VpcId (moto-coverage.md)
ENVIRONMENT = {
    "DB": f"orders-db.abcdefghijkl.{REGION}.rds.amazonaws.com:5432",  # instance endpoint with port
    "REPORTING_DB": "reports.0123456789ab.us-east-1.rds.amazonaws.com",  # another region, no port
    "CLUSTER": f"orders.cluster-abcdefghijkl.{REGION}.rds.amazonaws.com",  # cluster: no edge
    "READER": f"orders.cluster-ro-abcdefghijkl.{REGION}.rds.amazonaws.com",  # reader: no edge
    "JDBC": f"jdbc:postgresql://other.abcdefghijkl.{REGION}.rds.amazonaws.com:5432/app",  # not whole value
    "SHORT": f"bad.abcdefghijk.{REGION}.rds.amazonaws.com",  # 11 characters: no edge
    "PLAIN": "hello",
}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            zipfile.ZipInfo("index.py", date_time=(2020, 1, 1, 0, 0, 0)), "def handler(e, c): return e"
        )
    return buffer.getvalue()


def _no_docker(endpoint: str) -> None:
    body = json.dumps({"lambda": {"use_docker": False}}).encode()
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _seed(endpoint: str) -> dict:
    _no_docker(endpoint)
    iam = client("iam", REGION, endpoint)
    role = iam.create_role(RoleName="lambda-exec", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    groups = ["sg-0aaaaaaaaaaaaaaaa", "sg-0bbbbbbbbbbbbbbbb"]  # moto does not check them
    aws = client("lambda", REGION, endpoint)
    common = {"Runtime": "python3.12", "Role": role, "Handler": "index.handler", "Code": {"ZipFile": _zip()}}
    orders = aws.create_function(
        FunctionName="orders",
        VpcConfig={"SubnetIds": ["subnet-0aaaaaaaaaaaaaaaa"], "SecurityGroupIds": groups},
        Environment={"Variables": ENVIRONMENT},
        Tags={"team": "orders", "stackstate-environment": "prod"},
        **common,
    )
    aws.create_function(FunctionName="billing", **common)
    aws.publish_version(FunctionName="orders")
    aws.create_alias(FunctionName="orders", Name="live", FunctionVersion="1")
    aws.create_alias(FunctionName="orders", Name="canary", FunctionVersion="$LATEST")
    aws.create_alias(FunctionName="billing", Name="live", FunctionVersion="$LATEST")

    sqs = client("sqs", REGION, endpoint)
    queue_url = sqs.create_queue(QueueName="orders-in")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    queue = attributes["QueueArn"]
    kinesis = client("kinesis", REGION, endpoint)
    kinesis.create_stream(StreamName="clicks", ShardCount=1)
    stream = kinesis.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"]["StreamARN"]
    kinesis.create_stream(StreamName="paused", ShardCount=1)
    paused = kinesis.describe_stream_summary(StreamName="paused")["StreamDescriptionSummary"]["StreamARN"]
    ddb = client("dynamodb", REGION, endpoint)
    table = ddb.create_table(
        TableName="payments",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]
    sqs_mapping = aws.create_event_source_mapping(EventSourceArn=queue, FunctionName="orders", BatchSize=5)
    aws.create_event_source_mapping(EventSourceArn=stream, FunctionName="billing", StartingPosition="LATEST")
    # AWS reports the alias ARN as the mapping's FunctionArn; moto drops the qualifier.
    table_mapping = aws.create_event_source_mapping(
        EventSourceArn=table["LatestStreamArn"],
        FunctionName=f"{FUNCTION}:billing:live",
        StartingPosition="LATEST",
    )
    aws.create_event_source_mapping(
        EventSourceArn=paused, FunctionName="orders", StartingPosition="LATEST", Enabled=False
    )
    return {
        "orders": orders,
        "groups": groups,
        "queue": queue,
        "stream": stream,
        "paused": paused,
        "table_stream": table["LatestStreamArn"],
        "sqs_mapping": sqs_mapping,
        "table_mapping": table_mapping,
    }


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, dict]]:
    with moto_server() as endpoint:
        seeded = _seed(endpoint)
        with live_aws(endpoint):
            yield endpoint, seeded


@pytest.fixture(scope="module")
def scanned(live) -> tuple[ListSink, list, dict]:
    endpoint, seeded = live
    sink, results = scan_live(endpoint, regions=(REGION,), apis_to_run=("lambda",))
    return sink, results, seeded


def _relation_data(sink: ListSink, source: str, target: str) -> dict:
    found = [
        r["data"]
        for t in sink.topologies()
        for r in t["relations"]
        if r["sourceId"] == source and r["targetId"] == target
    ]
    assert len(found) == 1, found
    return found[0]


def test_lambda_scan_is_complete(scanned):
    _, results, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_lambda_function_has_arn_name_tags_and_configuration(scanned):
    sink, _, seeded = scanned
    functions = components_of_type(sink, "aws.lambda.function")
    assert set(functions) == {f"{FUNCTION}:orders", f"{FUNCTION}:billing"}
    data = functions[f"{FUNCTION}:orders"]["data"]
    assert data["Name"] == "orders"
    assert data["FunctionName"] == "orders"
    assert data["FunctionArn"] == f"{FUNCTION}:orders"
    assert data["Tags"] == {"team": "orders", "stackstate-environment": "prod"}
    assert data["environments"] == ["prod"]
    assert data["Environment"] == {"Variables": ENVIRONMENT}
    assert data["VpcConfig"]["SecurityGroupIds"] == seeded["groups"]
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Serverless"
    assert data["CW"] == {"Dimensions": [{"Key": "FunctionName", "Value": "orders"}]}  # AWS/Lambda
    assert "URN" not in data
    assert functions[f"{FUNCTION}:billing"]["data"]["Tags"] == {}


def test_lambda_function_uses_its_vpc_and_security_groups(scanned):
    sink, _, seeded = scanned
    orders = f"{FUNCTION}:orders"
    relations = sink.relations()
    assert (orders, "uses-service", MOTO_VPC) in relations
    for group in seeded["groups"]:
        assert (orders, "uses-service", group) in relations
    assert not any(s == f"{FUNCTION}:billing" and t.startswith(("vpc-", "sg-")) for s, _, t in relations)


def test_lambda_function_uses_rds_instances_named_by_whole_environment_values(scanned):
    sink, _, _ = scanned
    orders = f"{FUNCTION}:orders"
    rds = {t for s, _, t in sink.relations() if s == orders and ":rds:" in t}
    assert rds == {
        f"arn:aws:rds:{REGION}:{ACCOUNT}:db:orders-db",
        f"arn:aws:rds:us-east-1:{ACCOUNT}:db:reports",  # the endpoint's own region
    }


def test_lambda_alias_has_its_function_nested_and_uses_the_vpc(scanned):
    sink, _, _ = scanned
    aliases = components_of_type(sink, "aws.lambda.alias")
    assert set(aliases) == {
        f"{FUNCTION}:orders:live",
        f"{FUNCTION}:orders:canary",
        f"{FUNCTION}:billing:live",
    }
    data = aliases[f"{FUNCTION}:orders:live"]["data"]
    assert data["Name"] == "live"
    assert data["AliasArn"] == f"{FUNCTION}:orders:live"
    assert data["FunctionVersion"] == "1"
    function = data["Function"]
    assert function["FunctionArn"] == f"{FUNCTION}:orders"
    assert function["Name"] == "orders"
    assert function["Tags"] == {"team": "orders", "stackstate-environment": "prod"}
    assert function["Environment"] == {"Variables": ENVIRONMENT}
    assert not [k for k in function if k.startswith("_")]  # no engine context keys
    assert data["Tags"] == {}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["CW"] == {  # AWS/Lambda: an alias's metrics carry Resource = {function}:{alias}
        "Dimensions": [
            {"Key": "FunctionName", "Value": "orders"},
            {"Key": "Resource", "Value": "orders:live"},
        ]
    }
    relations = sink.relations()
    assert (f"{FUNCTION}:orders:live", "uses-service", MOTO_VPC) in relations
    assert not any(s == f"{FUNCTION}:billing:live" for s, _, _ in relations)
    # The StackPack's "Lambda Function: Lambda Alias": each function has its aliases.
    assert {(s, t) for s, kind, t in relations if kind == "has-resource"} == {
        (alias.rsplit(":", 1)[0], alias) for alias in aliases
    }


def test_lambda_queue_mapping_relates_queue_to_function_with_the_mapping_as_data(scanned):
    sink, _, seeded = scanned
    assert (seeded["queue"], "uses-service", f"{FUNCTION}:orders") in sink.relations()
    data = _relation_data(sink, seeded["queue"], f"{FUNCTION}:orders")
    assert data["UUID"] == seeded["sqs_mapping"]["UUID"]
    assert data["BatchSize"] == 5
    assert data["State"] == "Enabled"
    assert data["EventSourceArn"] == seeded["queue"]
    assert not [k for k in data if k.startswith("_")]


def test_lambda_stream_mappings_relate_function_to_stream_and_skip_disabled_ones(scanned):
    sink, _, seeded = scanned
    relations = sink.relations()
    assert (f"{FUNCTION}:billing", "uses-service", seeded["stream"]) in relations
    assert (seeded["table_mapping"]["FunctionArn"], "uses-service", seeded["table_stream"]) in relations
    assert not any(seeded["paused"] in (s, t) for s, _, t in relations)
    assert not components_of_type(sink, "aws.lambda.event-source-mapping")  # relations only


def test_lambda_mappings_filter_gives_only_the_mapping_relations(live):
    endpoint, seeded = live
    sink, results = scan_live(endpoint, regions=(REGION,), apis_to_run=("lambda|mappings",))
    assert results[0].complete
    assert sink.components() == {}
    assert sink.relations() == {
        (seeded["queue"], "uses-service", f"{FUNCTION}:orders"),
        (f"{FUNCTION}:billing", "uses-service", seeded["stream"]),
        (seeded["table_mapping"]["FunctionArn"], "uses-service", seeded["table_stream"]),
    }
