"""mappings/stepfunctions.yaml against a live moto server: state machines, their states, activities."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from demo.seed import client
from engine.language.loader import load_mappings
from tests.support import ACCOUNT, ListSink, components_of_type, moto_server, scan_live, with_params

pytestmark = pytest.mark.live

REGION = "eu-west-1"
CHINA = "cn-north-1"
STATES = f"arn:aws:states:{REGION}:{ACCOUNT}"
MAIN = f"{STATES}:stateMachine:main"
BROKEN = f"{STATES}:stateMachine:broken"
LAMBDA = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-exec"

# One definition with every integration kind, Choice, Parallel, Map with Iterator and with ItemProcessor.
DEFINITION = {
    "Comment": "every integration",
    "StartAt": "Route",
    "States": {
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.kind", "StringEquals": "bare", "Next": "InvokeBare"},
                {"And": [{"Variable": "$.n", "NumericGreaterThan": 1}], "Next": "Fan"},
            ],
            "Default": "InvokeDirect",
        },
        "InvokeBare": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "orders", "Payload.$": "$"},
            "Next": "InvokeVersion",
        },
        "InvokeVersion": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "orders:7"},
            "Next": "InvokeLatest",
        },
        "InvokeLatest": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": f"{LAMBDA}:orders:$LATEST"},
            "Next": "InvokePartial",
        },
        "InvokePartial": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": f"{ACCOUNT}:function:billing:live"},
            "Next": "InvokeJsonPath",
        },
        "InvokeJsonPath": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName.$": "$.function"},
            "Next": "Fan",
        },
        "InvokeDirect": {"Type": "Task", "Resource": f"{LAMBDA}:orders:3", "Next": "Fan"},
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Put",
                    "States": {
                        "Put": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::dynamodb:putItem",
                            "Parameters": {"TableName": "orders", "Item": {"id": {"S.$": "$.id"}}},
                            "Next": "Notify",
                        },
                        "Notify": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::sns:publish",
                            "Parameters": {
                                "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts",
                                "Message": "x",
                            },
                            "End": True,
                        },
                    },
                },
                {
                    "StartAt": "Enqueue",
                    "States": {
                        "Enqueue": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::sqs:sendMessage",
                            "Parameters": {
                                "QueueUrl": f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/jobs",
                                "MessageBody": "x",
                            },
                            "End": True,
                        }
                    },
                },
            ],
            "Next": "EachItem",
        },
        "EachItem": {
            "Type": "Map",
            "Iterator": {
                "StartAt": "Child",
                "States": {
                    "Child": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::states:startExecution.sync:2",
                        "Parameters": {"StateMachineArn": f"{STATES}:stateMachine:child"},
                        "End": True,
                    }
                },
            },
            "Next": "Distributed",
        },
        "Distributed": {
            "Type": "Map",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Work",
                "States": {
                    "Work": {"Type": "Task", "Resource": f"{STATES}:activity:work", "Next": "RunTask"},
                    "RunTask": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::ecs:runTask.sync",
                        "Parameters": {"Cluster": "jobs", "TaskDefinition": "worker:4"},
                        "End": True,
                    },
                },
            },
            "Next": "CallApi",
        },
        "CallApi": {
            "Type": "Task",
            "Resource": "arn:aws:states:::apigateway:invoke",
            "Parameters": {"ApiEndpoint": f"a1b2c3.execute-api.{REGION}.amazonaws.com", "Stage": "prod"},
            "Next": "CallApiDynamic",
        },
        "CallApiDynamic": {
            "Type": "Task",
            "Resource": "arn:aws:states:::apigateway:invoke",
            "Parameters": {"ApiEndpoint": "$.endpoint", "Stage": "prod"},
            "Next": "Regions",
        },
        # Data under a "States" key is not a block of states.
        "Regions": {
            "Type": "Pass",
            "Result": {"States": ["CA", "NY"], "Codes": {"States": "x"}},
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}
CHILD = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}


def state(name: str, machine: str = MAIN) -> str:
    return f"{machine}:state/{name}"


def _seed(endpoint: str) -> None:
    sfn = client("stepfunctions", REGION, endpoint)
    sfn.create_state_machine(
        name="main",
        definition=json.dumps(DEFINITION),
        roleArn=ROLE,
        tags=[{"key": "team", "value": "orders"}],
    )
    sfn.create_state_machine(name="broken", definition='{"StartAt": "A", "States": {', roleArn=ROLE)
    sfn.create_state_machine(name="child", definition=json.dumps(CHILD), roleArn=ROLE)
    sfn.create_activity(name="work", tags=[{"key": "queue", "value": "jobs"}])
    sfn.create_activity(name="review")
    sfn.create_activity(name="approve")
    china = client("stepfunctions", CHINA, endpoint)
    china.create_state_machine(
        name="main",
        definition=json.dumps(
            {
                "StartAt": "Call",
                "States": {
                    "Call": {
                        "Type": "Task",
                        "Resource": "arn:aws-cn:states:::lambda:invoke",
                        "Parameters": {"FunctionName": "orders"},
                        "End": True,
                    }
                },
            }
        ),
        roleArn=f"arn:aws-cn:iam::{ACCOUNT}:role/sfn-exec",
    )


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list]]:
    with moto_server() as endpoint:
        _seed(endpoint)
        # One machine and one activity per page: the listings must follow nextToken.
        mappings = with_params(
            load_mappings(), "stepfunctions.state-machine", "ListStateMachines", maxResults=1
        )
        mappings = with_params(mappings, "stepfunctions.activity", "ListActivities", maxResults=1)
        sink, results = scan_live(endpoint, mappings, regions=(REGION, CHINA), apis_to_run=("stepfunctions",))
        yield sink, results


def test_stepfunctions_scan_is_complete_despite_a_malformed_definition(scanned):
    _, results = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_stepfunctions_lists_every_state_machine_page(scanned):
    sink, _ = scanned
    assert set(components_of_type(sink, "aws.stepfunction.statemachine")) == {
        MAIN,
        BROKEN,
        f"{STATES}:stateMachine:child",
        f"arn:aws-cn:states:{CHINA}:{ACCOUNT}:stateMachine:main",
    }


def test_state_machine_has_name_tags_cw_dimension_and_no_definition(scanned):
    sink, _ = scanned
    data = sink.components()[MAIN]["data"]
    assert data["Name"] == "main"
    assert data["StateMachineArn"] == MAIN
    assert data["RoleArn"] == ROLE
    assert data["Tags"] == {"team": "orders"}
    assert data["CW"] == {"Dimensions": [{"Key": "StateMachineArn", "Value": MAIN}]}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Serverless"
    assert "Definition" not in data and "definition" not in data


def test_state_machine_uses_its_role_and_its_start_state(scanned):
    sink, _ = scanned
    out = {(t, kind) for s, kind, t in sink.relations() if s == MAIN}
    assert out == {(ROLE, "uses-service"), (state("Route"), "uses-service")}


def test_malformed_definition_gives_no_states_and_no_start_edge(scanned):
    sink, _ = scanned
    assert sink.components()[BROKEN]["data"]["Name"] == "broken"
    assert not any(k.startswith(f"{BROKEN}:") for k in sink.components())
    assert {(s, t) for s, _, t in sink.relations() if BROKEN in (s, t)} == {(BROKEN, ROLE)}


def test_states_include_parallel_branches_and_both_map_forms(scanned):
    sink, _ = scanned
    states = {k for k in components_of_type(sink, "aws.stepfunction.state") if k.startswith(f"{MAIN}:")}
    names = {
        "Route", "InvokeBare", "InvokeVersion", "InvokeLatest", "InvokePartial", "InvokeJsonPath",
        "InvokeDirect", "Fan", "Put", "Notify", "Enqueue", "EachItem", "Child", "Distributed", "Work",
        "RunTask", "CallApi", "CallApiDynamic", "Regions", "Done",
    }  # fmt: skip
    assert states == {state(n) for n in names}
    assert state("Only", f"{STATES}:stateMachine:child") in sink.components()


def test_state_data_is_the_state_json_with_name_and_integration(scanned):
    sink, _ = scanned
    components = sink.components()
    put = components[state("Put")]["data"]
    assert put["Name"] == "Put"
    assert put["Type"] == "Task"
    assert put["Resource"] == "arn:aws:states:::dynamodb:putItem"
    assert put["Parameters"] == {"TableName": "orders", "Item": {"Id": {"S.$": "$.id"}}}
    assert put["Next"] == "Notify"
    assert (put["IntegrationType"], put["IntegrationSubType"]) == ("dynamodb", "putItem")
    assert put["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    integrations = {
        name: (components[state(name)]["data"].get("IntegrationType"),
               components[state(name)]["data"].get("IntegrationSubType"))
        for name in ("InvokeLatest", "InvokeDirect", "Notify", "Enqueue", "Child", "Work", "RunTask",
                     "CallApi", "Route", "Done")
    }  # fmt: skip
    assert integrations == {
        "InvokeLatest": ("lambda", "invoke.waitForTaskToken"),
        "InvokeDirect": ("lambda", "orders:3"),
        "Notify": ("sns", "publish"),
        "Enqueue": ("sqs", "sendMessage"),
        "Child": ("stepfunctions", "startExecution.sync:2"),
        "Work": ("activity", "work"),
        "RunTask": ("ecs", "runTask.sync"),
        "CallApi": ("apigateway", "invoke"),
        "Route": (None, None),
        "Done": (None, None),
    }
    parallel = components[state("Fan")]["data"]
    assert [b["StartAt"] for b in parallel["Branches"]] == ["Put", "Enqueue"]


def test_state_transitions_follow_next_choices_default_branches_and_maps(scanned):
    sink, _ = scanned
    transitions = {
        (s.rsplit("/", 1)[-1], t.rsplit("/", 1)[-1])
        for s, kind, t in sink.relations()
        if s.startswith(f"{MAIN}:state/") and t.startswith(f"{MAIN}:state/") and kind == "uses-service"
    }
    assert transitions == {
        ("Route", "InvokeBare"), ("Route", "Fan"), ("Route", "InvokeDirect"),
        ("InvokeBare", "InvokeVersion"), ("InvokeVersion", "InvokeLatest"), ("InvokeLatest", "InvokePartial"),
        ("InvokePartial", "InvokeJsonPath"), ("InvokeJsonPath", "Fan"), ("InvokeDirect", "Fan"),
        ("Fan", "Put"), ("Fan", "Enqueue"), ("Fan", "EachItem"), ("Put", "Notify"),
        ("EachItem", "Child"), ("EachItem", "Distributed"),
        ("Distributed", "Work"), ("Distributed", "CallApi"), ("Work", "RunTask"),
        ("CallApi", "CallApiDynamic"), ("CallApiDynamic", "Regions"), ("Regions", "Done"),
    }  # fmt: skip


def test_task_states_use_their_integrations(scanned):
    sink, _ = scanned
    integrations = {
        (s.rsplit("/", 1)[-1], t)
        for s, kind, t in sink.relations()
        if s.startswith(f"{MAIN}:state/") and not t.startswith(f"{MAIN}:state/") and kind == "uses-service"
    }
    assert integrations == {
        ("InvokeBare", f"{LAMBDA}:orders"),  # a bare name
        ("InvokeVersion", f"{LAMBDA}:orders"),  # a numeric version is dropped
        ("InvokeLatest", f"{LAMBDA}:orders"),  # so is $LATEST
        ("InvokePartial", f"{LAMBDA}:billing:live"),  # a partial ARN with an alias
        ("InvokeDirect", f"{LAMBDA}:orders"),  # a Lambda ARN as the Resource
        ("Put", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders"),
        ("Notify", f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts"),
        ("Enqueue", f"arn:aws:sqs:us-east-1:{ACCOUNT}:jobs"),  # the queue URL's region
        ("Child", f"{STATES}:stateMachine:child"),
        ("Work", f"{STATES}:activity:work"),
        ("RunTask", "worker:4"),  # the task definition as given
        ("RunTask", f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/jobs"),
        ("CallApi", f"arn:aws:execute-api:{REGION}:{ACCOUNT}:a1b2c3/prod"),
    }  # InvokeJsonPath and CallApiDynamic take their targets from JSONPath: no edge


def test_dynamodb_task_relation_carries_the_operation(scanned):
    sink, _ = scanned
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders"
    data = [
        r["data"]
        for t in sink.topologies()
        for r in t["relations"]
        if r["sourceId"] == state("Put") and r["targetId"] == table
    ]
    assert data == [{"operation": "putItem"}]


def test_state_machine_arns_follow_the_partition(scanned):
    sink, _ = scanned
    machine = f"arn:aws-cn:states:{CHINA}:{ACCOUNT}:stateMachine:main"
    assert sink.components()[state("Call", machine)]["data"]["IntegrationType"] == "lambda"
    assert (
        state("Call", machine),
        "uses-service",
        f"arn:aws-cn:lambda:{CHINA}:{ACCOUNT}:function:orders",
    ) in (sink.relations())


def test_activities_have_name_tags_and_cw_dimension_across_pages(scanned):
    sink, _ = scanned
    activities = components_of_type(sink, "aws.stepfunction.activity")
    assert set(activities) == {f"{STATES}:activity:{n}" for n in ("work", "review", "approve")}
    data = activities[f"{STATES}:activity:work"]["data"]
    assert data["Name"] == "work"
    assert data["ActivityArn"] == f"{STATES}:activity:work"
    assert data["Tags"] == {"queue": "jobs"}
    assert data["CW"] == {"Dimensions": [{"Key": "ActivityArn", "Value": f"{STATES}:activity:work"}]}
    assert data["layer"] == "Serverless"
    assert activities[f"{STATES}:activity:review"]["data"]["Tags"] == {}
