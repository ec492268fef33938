"""The shipped `traces:` rules: a call of each attribute generation names exactly its target's external id."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.errors import MappingErrors
from engine.language.loader import load_mappings
from engine.traces.relations import TraceRules, api_of, call_document, operation_of

CALLER = "arn:aws:lambda:eu-west-1:123456789012:function:orders"
QUEUE = "arn:aws:sqs:eu-west-1:123456789012:jobs"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:alerts"
MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:checkout"


def call(name: str, **attributes: object) -> dict:
    return {"function": CALLER, "name": name, "kind": 3, "attributes": attributes, "count": 1, "last": 1}


CASES = [
    # StackState's layer on the SDK v2 instrumentation (2022): aws.service.identifier and aws.request.*
    ("layer-sqs", call("jobs send", **{"aws.service.identifier": "sqs", "aws.operation": "sendMessage",
     "aws.region": "eu-west-1", "messaging.url": "https://eu-west-1.queue.amazonaws.com/123456789012/jobs",
     "messaging.destination": "jobs"}), [QUEUE]),
    ("layer-s3", call("S3.PutObject", **{"aws.service.identifier": "s3", "aws.request.bucket": "invoices"}),
     ["arn:aws:s3:::invoices"]),
    ("layer-sns", call("SNS.Publish", **{"aws.service.identifier": "sns", "aws.request.topic.arn": TOPIC}),
     [TOPIC]),
    ("layer-lambda", call("Lambda.Invoke", **{"aws.service.identifier": "lambda", "aws.operation": "invoke",
     "aws.request.function.name": "billing"}), ["arn:aws:lambda:eu-west-1:123456789012:function:billing"]),
    ("layer-sfn", call("StepFunctions.StartExecution", **{"aws.service.identifier": "stepfunctions",
     "aws.request.state.machine.arn": MACHINE}), [MACHINE]),
    ("2022-dynamodb", call("DynamoDB.GetItem", **{"aws.service.identifier": "dynamodb", "db.name": "carts"}),
     ["arn:aws:dynamodb:eu-west-1:123456789012:table/carts"]),
    # The SDK v3 instrumentation and the current conventions: rpc.* and aws.<service>.* attributes
    ("v3-sqs-other-account", call("SQS.SendMessage", **{"rpc.system": "aws-api", "rpc.service": "SQS",
     "rpc.method": "SendMessage", "aws.region": "us-east-1",
     "aws.sqs.queue.url": "https://sqs.us-east-1.amazonaws.com/210987654321/jobs?x=1"}),
     ["arn:aws:sqs:us-east-1:210987654321:jobs"]),
    ("v3-sqs-by-name", call("SQS.SendMessage", **{"rpc.service": "SQS",
     "messaging.destination.name": "jobs"}), [QUEUE]),
    ("v3-s3", call("S3.GetObject", **{"rpc.service": "S3", "aws.s3.bucket": "invoices"}),
     ["arn:aws:s3:::invoices"]),
    ("v3-sns-destination", call("SNS.Publish", **{"rpc.service": "SNS", "messaging.destination.name": TOPIC}),
     [TOPIC]),
    ("v3-lambda-qualified-arn", call("Lambda.Invoke", **{"rpc.service": "Lambda", "rpc.method": "Invoke",
     "faas.invoked_name": "arn:aws:lambda:us-east-1:111122223333:function:far:live"}),
     ["arn:aws:lambda:us-east-1:111122223333:function:far"]),
    ("v3-lambda-partial-arn", call("Lambda.Invoke", **{"rpc.service": "Lambda", "rpc.method": "Invoke",
     "aws.request.function.name": "111122223333:function:near:3"}),
     ["arn:aws:lambda:eu-west-1:111122223333:function:near"]),
    ("v3-lambda-region", call("Lambda.Invoke", **{"rpc.service": "Lambda", "rpc.method": "Invoke",
     "faas.invoked_name": "billing", "faas.invoked_region": "eu-central-1"}),
     ["arn:aws:lambda:eu-central-1:123456789012:function:billing"]),
    ("v3-sfn", call("SFN.StartExecution", **{"rpc.service": "SFN",
     "aws.step_functions.state_machine.arn": MACHINE}), [MACHINE]),
    ("v3-dynamodb-batch", call("DynamoDB.BatchGetItem", **{"rpc.service": "DynamoDB",
     "aws.dynamodb.table_names": ["carts", "arn:aws:dynamodb:eu-west-1:123456789012:table/orders", "carts"]}),
     ["arn:aws:dynamodb:eu-west-1:123456789012:table/carts",
      "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"]),
    ("v3-kinesis", call("Kinesis.PutRecord", **{"rpc.service": "Kinesis",
     "aws.kinesis.stream_name": "clicks"}), ["arn:aws:kinesis:eu-west-1:123456789012:stream/clicks"]),
    ("current-rpc-method-only", call("PutRecord", **{"rpc.method": "Kinesis.PutRecord",
     "aws.request.stream.arn": "arn:aws:kinesis:eu-west-1:123456789012:stream/clicks"}),
     ["arn:aws:kinesis:eu-west-1:123456789012:stream/clicks"]),
    # Calls that name nothing known
    ("lambda-not-an-invoke", call("Lambda.GetFunction", **{"rpc.service": "Lambda",
     "rpc.method": "GetFunction", "aws.request.function.name": "billing"}), []),
    ("no-rule-for-ec2", call("EC2.DescribeInstances", **{"rpc.service": "EC2"}), []),
    ("sns-endpoint-not-topic", call("SNS.Publish", **{"rpc.service": "SNS",
     "aws.request.target.arn": "arn:aws:sns:eu-west-1:123456789012:endpoint/GCM/app/1"}), []),
    ("sqs-without-queue", call("SQS.ListQueues", **{"rpc.service": "SQS",
     "url.full": "https://sqs.eu-west-1.amazonaws.com/"}), []),
    ("no-service", call("work", **{"aws.s3.bucket": "invoices"}), []),
]  # fmt: skip


@pytest.fixture(scope="module")
def rules() -> TraceRules:
    return TraceRules(load_mappings())


@pytest.mark.parametrize(("record", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_attribute_generation_names_its_target(rules: TraceRules, record: dict, expected: list) -> None:
    assert rules.targets(record) == expected


def test_a_caller_that_is_no_function_names_nothing(rules: TraceRules) -> None:
    record = call("S3.PutObject", **{"rpc.service": "S3", "aws.s3.bucket": "invoices"})
    assert rules.targets({**record, "function": "arn:aws:ecs:eu-west-1:123456789012:task/x"}) == []
    assert rules.targets({**record, "function": "orders"}) == []
    assert rules.targets({**record, "attributes": "not an object"}) == []


@pytest.mark.parametrize(
    ("attributes", "name", "api", "operation"),
    [
        ({"aws.service.identifier": "stepfunctions", "aws.operation": "startExecution"}, "x", "stepfunctions",
         "StartExecution"),
        ({"rpc.service": "SFN", "rpc.method": "StartExecution"}, "SFN.StartExecution", "sfn",
         "StartExecution"),
        ({"rpc.method": "DynamoDB.GetItem"}, "GetItem", "dynamodb", "GetItem"),
        ({}, "SQS.SendMessage", "sqs", "SendMessage"),
        ({"rpc.service": "Resource Groups Tagging API"}, "x", "resourcegroupstaggingapi", None),
        ({}, "work", None, None),
    ],
)  # fmt: skip
def test_service_and_operation_from_every_generation(attributes, name, api, operation) -> None:
    assert (api_of(attributes, name), operation_of(attributes, name)) == (api, operation)


def test_the_call_region_wins_over_the_callers() -> None:
    document = call_document(call("S3.PutObject", **{"cloud.region": "us-west-2"}))
    assert document is not None
    keys = ("_region", "_account", "_partition", "_caller", "_api", "_operation")
    assert {k: document[k] for k in keys} == {
        "_region": "us-west-2", "_account": "123456789012", "_partition": "aws", "_caller": CALLER,
        "_api": "s3", "_operation": "PutObject",
    }  # fmt: skip
    assert call_document(call("S3.PutObject"))["_region"] == "eu-west-1"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{services: [SQS], id: QueueUrl}", "traces[0].services[0]: 'SQS' does not match"),
        ("{services: [sqs], id: 'format('}", "traces[0].id: "),
        ("{services: [sqs], operations: [invoke], id: x}", "traces[0].operations[0]: 'invoke' does not"),
        ("{services: [sqs]}", "traces[0]: 'id' is a required property"),
    ],
)  # fmt: skip
def test_a_broken_rule_names_the_file_and_the_key(tmp_path: Path, rule: str, expected: str) -> None:
    (tmp_path / "sqs.yaml").write_text(
        "version: 1\nservice: sqs\nresources:\n  queue:\n    type: aws.sqs.queue\n"
        "    list: {operation: ListQueues, items: 'QueueUrls[]'}\n    id: '@'\n"
        f"    traces:\n      - {rule}\n"
    )
    with pytest.raises(MappingErrors) as raised:
        load_mappings(tmp_path)
    assert f"sqs.yaml: resources.queue.{expected}" in str(raised.value)
