"""The rules AWS enforces on the template each monitored account deploys (`aws-topology cfn`), checked as
each region of a StackSet sees it (the main region, with the role and the bucket, and any other region).

`Stack` resolves the template the way CloudFormation does for one stack: parameters and pseudo parameters
substituted, conditions evaluated, resources and outputs whose condition is false dropped, `Fn::If` /
`Fn::Sub` / `Ref` / `Fn::GetAtt` resolved. A reference to a resource that a region does not have fails there.
`allows` answers one request against a policy's statements (Allow unless an explicit Deny; conditions with the
operators the template uses); it is a deliberately small reading of the IAM policy evaluation logic, enough to
ask "may this principal do this to that, in this request context". Each rule names the AWS page it comes from.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml

from engine.deploy.template import render, template
from engine.language.loader import load_mappings
from tests.support import ACCOUNT

AGENT_ACCOUNT = "210987654321"
OTHER_ACCOUNT = "999999999999"
EXTERNAL_ID = "uniquesecret!1"
MAIN, OTHER = "eu-west-1", "us-east-1"
NO_VALUE = object()
ARNS = {
    "AWS::KMS::Key": "arn:{partition}:kms:{region}:{account}:key/{name}",
    "AWS::IAM::Role": "arn:{partition}:iam::{account}:role/{name}",
    "AWS::S3::Bucket": "arn:{partition}:s3:::{name}",
    "AWS::KinesisFirehose::DeliveryStream": "arn:{partition}:firehose:{region}:{account}:deliverystream/{name}",  # noqa: E501
    "AWS::Events::Rule": "arn:{partition}:events:{region}:{account}:rule/{name}",
    "AWS::Lambda::LayerVersion": "arn:{partition}:lambda:{region}:{account}:layer:{name}:1",
}
NAME_PROPERTY = {
    "AWS::IAM::Role": "RoleName", "AWS::S3::Bucket": "BucketName", "AWS::Lambda::LayerVersion": "LayerName",
}  # fmt: skip
REF_IS_ARN = {"AWS::Lambda::LayerVersion"}  # CloudFormation reference: Ref of a layer version is its ARN


class Stack:
    """The template resolved for one region, as CloudFormation would deploy it there."""

    def __init__(self, tpl: dict[str, Any], region: str, partition: str = "aws", **parameters: str) -> None:
        self.tpl, self.region, self.partition = tpl, region, partition
        values = {k: p.get("Default") for k, p in tpl["Parameters"].items()}
        self.params: dict[str, Any] = {
            **values, "MainRegion": MAIN, "StsAccountId": AGENT_ACCOUNT, "ExternalId": EXTERNAL_ID,
            **parameters,
            "AWS::AccountId": ACCOUNT, "AWS::Region": region, "AWS::Partition": partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
            "AWS::StackName": "stackstate-resources", "AWS::NoValue": NO_VALUE,
        }  # fmt: skip
        self.conditions = {name: self.resolve(c) for name, c in tpl.get("Conditions", {}).items()}
        self.kept = {k: r for k, r in tpl["Resources"].items() if self._present(r)}
        self.resources = {k: self.resolve(r) for k, r in self.kept.items()}
        self.outputs = {k: self.resolve(o["Value"]) for k, o in tpl["Outputs"].items() if self._present(o)}

    def _present(self, item: dict[str, Any]) -> bool:
        return "Condition" not in item or self.conditions[item["Condition"]]

    def of_type(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == type_name}

    def one(self, type_name: str) -> dict[str, Any]:
        (resource,) = self.of_type(type_name).values()
        return resource["Properties"]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            function = FUNCTIONS.get(key)
            if function:
                return function(self, arg)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        resource = self.kept[name]  # KeyError: this region's stack has no such resource
        return self.arn(name) if resource["Type"] in REF_IS_ARN else self.physical_name(name)

    def physical_name(self, name: str) -> Any:
        resource = self.kept[name]
        return self.resolve(resource["Properties"].get(NAME_PROPERTY.get(resource["Type"], ""), name))

    def arn(self, name: str) -> str:
        pattern = ARNS[self.kept[name]["Type"]]
        return pattern.format(
            partition=self.partition, region=self.region, account=ACCOUNT, name=self.physical_name(name)
        )

    def sub(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            return self.arn(name[: -len(".Arn")]) if name.endswith(".Arn") else str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def rule_failures(self) -> list[str]:
        """The AssertDescription of every template rule assertion that fails for these parameters."""
        failures = []
        for rule in self.tpl.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            failures += [a["AssertDescription"] for a in rule["Assertions"] if not self.resolve(a["Assert"])]
        return failures


FUNCTIONS = {
    "Ref": Stack.ref,
    "Fn::Sub": Stack.sub,
    "Fn::GetAtt": lambda s, arg: s.arn(arg[0]) if arg[1] == "Arn" else pytest.fail(f"GetAtt {arg}"),
    "Fn::Equals": lambda s, arg: s.resolve(arg[0]) == s.resolve(arg[1]),
    "Fn::Contains": lambda s, arg: s.resolve(arg[1]) in s.resolve(arg[0]),
    "Fn::Not": lambda s, arg: not s.resolve(arg[0]),
    "Fn::And": lambda s, arg: all(s.resolve(a) for a in arg),
    "Fn::Or": lambda s, arg: any(s.resolve(a) for a in arg),
    "Fn::If": lambda s, arg: s.resolve(arg[1] if s.conditions[arg[0]] else arg[2]),
}


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(operator: str, key: str, wanted: Any, context: dict[str, str]) -> bool:
    if key not in context:
        return False
    actual = context[key]
    if operator == "StringEquals":
        return actual in _listed(wanted)
    if operator in ("StringLike", "ArnLike"):
        return any(fnmatchcase(actual, pattern) for pattern in _listed(wanted))
    if operator == "Bool":
        return actual.lower() in [str(w).lower() for w in _listed(wanted)]
    raise AssertionError(f"condition operator {operator} is not read by this test")


def _applies(statement: dict[str, Any], principal: dict[str, str] | None, action: str, resource: str,
             context: dict[str, str]) -> bool:  # fmt: skip
    if principal is not None:
        named = statement.get("Principal")
        if named != "*" and not any(p in _listed(named.get(kind, [])) for kind, p in principal.items()):
            return False
    if not any(fnmatchcase(action.lower(), a.lower()) for a in _listed(statement["Action"])):
        return False
    if not any(fnmatchcase(resource, r) for r in _listed(statement.get("Resource", "*"))):
        return False
    return all(
        _condition_holds(operator, key, wanted, context)
        for operator, pairs in statement.get("Condition", {}).items()
        for key, wanted in pairs.items()
    )


def allows(
    statements: list[dict[str, Any]],
    action: str,
    resource: str,
    context: dict[str, str] | None = None,
    principal: dict[str, str] | None = None,
) -> bool:
    """Whether the statements allow the request: some Allow applies and no Deny does. `principal` (for
    resource policies) is one kind and value, e.g. {"Service": "delivery.logs.amazonaws.com"}."""
    applying = [s for s in statements if _applies(s, principal, action, resource, context or {})]
    return any(s["Effect"] == "Allow" for s in applying) and all(s["Effect"] != "Deny" for s in applying)


def role_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def region_of(arn: str) -> str:
    return arn.split(":")[3]


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    return template(load_mappings())


@pytest.fixture(scope="module")
def main_stack(tpl: dict[str, Any]) -> Stack:
    return Stack(tpl, MAIN)


@pytest.fixture(scope="module", params=[MAIN, OTHER], ids=["main-region", "other-region"])
def stack(request: pytest.FixtureRequest, tpl: dict[str, Any]) -> Stack:
    return Stack(tpl, request.param)


def bucket_and_key(main_stack: Stack) -> tuple[str, str]:
    """The log bucket's ARN and the ARN of its default encryption key (both exist in the main region only)."""
    (name,) = main_stack.of_type("AWS::S3::Bucket")
    (default,) = main_stack.one("AWS::S3::Bucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    return main_stack.arn(name), default["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]


def bucket_policy(main_stack: Stack) -> list[dict[str, Any]]:
    """The log bucket's policy statements (none without an AWS::S3::BucketPolicy)."""
    policies = main_stack.of_type("AWS::S3::BucketPolicy").values()
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def key_policy_of(main_stack: Stack, key_arn: str) -> list[dict[str, Any]]:
    (key,) = [r for k, r in main_stack.of_type("AWS::KMS::Key").items() if main_stack.arn(k) == key_arn]
    return key["Properties"]["KeyPolicy"]["Statement"]


def test_each_region_has_its_share_of_the_stack_set(stack: Stack, main_stack: Stack) -> None:
    # A StackSet deploys one template to every region (CloudFormation User Guide, "StackSets concepts"):
    # the account-wide role and bucket exist once, in the main region; every region delivers to that bucket.
    main = stack.region == MAIN
    counts = {
        t: len(stack.of_type(t)) for t in ("AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::IAM::Role")
    }
    assert counts == {"AWS::S3::Bucket": main, "AWS::S3::BucketPolicy": main, "AWS::IAM::Role": 2 + main}
    assert ("IntegrationRoleArn" in stack.outputs) == main
    destination = stack.one("AWS::KinesisFirehose::DeliveryStream")["ExtendedS3DestinationConfiguration"]
    assert destination["BucketARN"] == bucket_and_key(main_stack)[0]
    assert destination["Prefix"] == f"AWSLogs/{ACCOUNT}/EventBridge/{stack.region}/"


def test_s3_destination_key_is_in_the_bucket_region(stack: Stack, main_stack: Stack) -> None:
    # CloudFormation reference, AWS::KinesisFirehose::DeliveryStream KMSEncryptionConfig, AWSKMSKeyARN:
    # "The key must belong to the same region as the destination S3 bucket." Without it,
    # the objects get the bucket's default encryption (S3 User Guide, "Setting default server-side encryption
    # behavior for Amazon S3 buckets"), whose key must be in the bucket's region too.
    destination = stack.one("AWS::KinesisFirehose::DeliveryStream")["ExtendedS3DestinationConfiguration"]
    explicit = destination.get("EncryptionConfiguration", {}).get("KMSEncryptionConfig", {})
    key = explicit.get("AWSKMSKeyARN") or bucket_and_key(main_stack)[1]
    assert region_of(key) == MAIN, (
        f"the {stack.region} stream encrypts its S3 objects with a key in {region_of(key)}"
    )


def test_firehose_role_may_write_the_bucket_with_its_key(stack: Stack, main_stack: Stack) -> None:
    # Firehose Developer Guide, "Grant Firehose access to an Amazon S3 destination": the role needs the S3
    # actions on the bucket and its objects, and kms:GenerateDataKey / kms:Decrypt on the key S3 encrypts
    # with, through S3 (kms:ViaService s3.{region}) for this bucket (kms:EncryptionContext:aws:s3:arn; with
    # an S3 Bucket Key the context is the bucket's ARN: S3 User Guide, "Reducing the cost of SSE-KMS with S3
    # Bucket Keys"). The key policy lets IAM policies grant it (KMS Developer Guide, "Default key policy").
    bucket, key = bucket_and_key(main_stack)
    stream = stack.one("AWS::KinesisFirehose::DeliveryStream")["ExtendedS3DestinationConfiguration"]
    (role,) = [r for k, r in stack.of_type("AWS::IAM::Role").items() if stack.arn(k) == stream["RoleARN"]]
    statements = role_statements(role)
    obj = f"{bucket}/{stream['Prefix']}2026/12/06/12/object.gz"
    for action in ("s3:PutObject", "s3:AbortMultipartUpload"):
        assert allows(statements, action, obj)
    assert allows(statements, "s3:GetBucketLocation", bucket)
    via_s3 = {"kms:ViaService": f"s3.{MAIN}.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": bucket}
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert allows(statements, action, key, via_s3), (
            f"the {stack.region} Firehose role cannot {action} {key}"
        )
        assert not allows(
            statements, action, key, {**via_s3, "kms:ViaService": "sqs.eu-west-1.amazonaws.com"}
        )
    root = {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert allows(key_policy_of(main_stack, key), "kms:GenerateDataKey", "*", principal=root)
    denied = [s for s in bucket_policy(main_stack) if s["Effect"] == "Deny"]
    assert not any(_applies(s, root, "s3:PutObject", obj, {"aws:SecureTransport": "true"}) for s in denied)


def test_flow_log_delivery_may_write_the_bucket_with_its_key(stack: Stack, main_stack: Stack) -> None:
    # VPC User Guide, "Amazon S3 bucket permissions for flow logs": delivery.logs.amazonaws.com needs
    # s3:PutObject with s3:x-amz-acl bucket-owner-full-control and s3:GetBucketAcl, both scoped by
    # aws:SourceAccount and aws:SourceArn (arn:...:logs:region:account:*), on the default prefix
    # AWSLogs/{account}/vpcflowlogs/{region}/; with SSE-KMS, "Required key policy for use with SSE-KMS" adds
    # kms:GenerateDataKey* for the same principal and conditions. Flow logs of this region go to the bucket.
    bucket, key = bucket_and_key(main_stack)
    logs = {"Service": "delivery.logs.amazonaws.com"}
    context = {
        "aws:SourceAccount": ACCOUNT, "aws:SourceArn": f"arn:aws:logs:{stack.region}:{ACCOUNT}:*",
        "s3:x-amz-acl": "bucket-owner-full-control", "aws:SecureTransport": "true",
    }  # fmt: skip
    policy = bucket_policy(main_stack)
    obj = f"{bucket}/AWSLogs/{ACCOUNT}/vpcflowlogs/{stack.region}/2026/12/06/{ACCOUNT}_vpcflowlogs_x.log.gz"
    assert allows(policy, "s3:PutObject", obj, context, logs)
    assert allows(policy, "s3:GetBucketAcl", bucket, context, logs)
    key_policy = key_policy_of(main_stack, key)
    assert allows(key_policy, "kms:GenerateDataKey", "*", context, logs)
    # The confused deputy: delivery on behalf of another account is refused by both policies.
    foreign = {
        **context,
        "aws:SourceAccount": OTHER_ACCOUNT,
        "aws:SourceArn": f"arn:aws:logs:{MAIN}:{OTHER_ACCOUNT}:*",
    }
    assert not allows(policy, "s3:PutObject", obj, foreign, logs)
    assert not allows(key_policy, "kms:GenerateDataKey", "*", foreign, logs)
    assert not allows(policy, "s3:PutObject", obj, {**context, "s3:x-amz-acl": "private"}, logs)


def assumers(stack: Stack) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """Per role ARN, who assumes it and the request context of a legitimate AssumeRole: the role's user in
    this stack (the Firehose stream, the EventBridge rules) or the integration role's output (the agent)."""
    found: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for stream in stack.of_type("AWS::KinesisFirehose::DeliveryStream").values():
        role = stream["Properties"]["ExtendedS3DestinationConfiguration"]["RoleARN"]
        # Firehose Developer Guide, "Allow Firehose to assume an IAM role": sts:ExternalId is the account id.
        found[role] = ({"Service": "firehose.amazonaws.com"}, {"sts:ExternalId": ACCOUNT})
    for name, rule in stack.of_type("AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            # EventBridge User Guide, "Cross-service confused deputy prevention": aws:SourceArn is the rule,
            # aws:SourceAccount the account.
            context = {"aws:SourceArn": stack.arn(name), "aws:SourceAccount": ACCOUNT}
            found[target["RoleArn"]] = ({"Service": "events.amazonaws.com"}, context)
    if "IntegrationRoleArn" in stack.outputs:
        # IAM User Guide, "Access to AWS accounts owned by third parties": the third party's account with the
        # sts:ExternalId it was given.
        agent = {"AWS": f"arn:aws:iam::{AGENT_ACCOUNT}:root"}
        found[stack.outputs["IntegrationRoleArn"]] = (agent, {"sts:ExternalId": EXTERNAL_ID})
    return found


def test_every_role_trusts_exactly_its_assumer_with_the_confused_deputy_conditions(stack: Stack) -> None:
    roles = {stack.arn(k): r for k, r in stack.of_type("AWS::IAM::Role").items()}
    by_role = assumers(stack)
    assert set(by_role) == set(roles)
    for arn, (principal, context) in by_role.items():
        trust = roles[arn]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [principal], arn
        assert allows(trust, "sts:AssumeRole", "*", context, principal), arn
        for (
            key
        ) in context:  # every documented condition is required: leaving one out, or a foreign value, fails
            assert not allows(
                trust, "sts:AssumeRole", "*", {k: v for k, v in context.items() if k != key}, principal
            )
            foreign = context[key].replace(ACCOUNT, OTHER_ACCOUNT) if ACCOUNT in context[key] else "other"
            assert not allows(trust, "sts:AssumeRole", "*", {**context, key: foreign}, principal), (arn, key)


def _statements(stack: Stack) -> list[dict[str, Any]]:
    roles = stack.of_type("AWS::IAM::Role").values()
    return [s for r in roles for s in role_statements(r)]


def _conditions(statement: dict[str, Any]) -> dict[str, Any]:
    return {k: v for pairs in statement.get("Condition", {}).values() for k, v in pairs.items()}


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("region", ["cn-north-1", "cn-northwest-1"])
def test_every_arn_is_partition_aware(tpl: dict[str, Any], region: str) -> None:
    # IAM User Guide, "IAM identifiers" (ARN format): the partition is aws, aws-cn or aws-us-gov; a template
    # deployed in China must name arn:aws-cn:... (CloudFormation's AWS::Partition pseudo parameter).
    china = Stack(tpl, region, partition="aws-cn", MainRegion="cn-north-1")
    text = _strings([china.resources, china.outputs])
    arns = [a for s in text for a in re.findall(r"arn:[^:\s]*:", s)]
    assert arns and set(arns) == {"arn:aws-cn:"}
    # KMS Developer Guide, "kms:ViaService": the value is the service's endpoint name, whose domain is the
    # partition's (CloudFormation's AWS::URLSuffix).
    via = [v for s in _statements(china) for v in _listed(_conditions(s).get("kms:ViaService", []))]
    assert via and all(v.endswith(".amazonaws.com.cn") for v in via)


def test_nothing_is_public(stack: Stack, main_stack: Stack) -> None:
    # S3 User Guide, "Blocking public access to your Amazon S3 storage" (all four settings) and "The meaning
    # of public"; "Security best practices for Amazon S3": deny requests without TLS
    # (aws:SecureTransport false).
    block = main_stack.one("AWS::S3::Bucket")["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
    )
    bucket = bucket_and_key(main_stack)[0]
    policy = bucket_policy(main_stack)
    documents = [k["Properties"]["KeyPolicy"] for k in stack.of_type("AWS::KMS::Key").values()]
    documents += [
        r["Properties"]["AssumeRolePolicyDocument"] for r in stack.of_type("AWS::IAM::Role").values()
    ]
    for statement in policy + [s for d in documents for s in d["Statement"]]:
        principal = statement["Principal"]
        public = principal == "*" or "*" in _listed(principal.get("AWS", []))
        assert statement["Effect"] == "Deny" or not public, statement
    stranger = {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"}
    assert not allows(
        policy, "s3:GetObject", f"{bucket}/AWSLogs/x", {"aws:SecureTransport": "true"}, stranger
    )
    plain = {"aws:SecureTransport": "false"}
    denied = [s for s in policy if s["Effect"] == "Deny"]
    for resource in (bucket, f"{bucket}/AWSLogs/x"):
        assert any(_applies(s, {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "s3:GetObject", resource, plain)
                   for s in denied), resource  # fmt: skip


def test_tracing_publishes_the_layer_when_on_and_asks_for_its_location(tpl: dict[str, Any]) -> None:
    # CloudFormation User Guide, "Template Rules": an assertion that fails stops the create or update before
    # any resource is made, showing its AssertDescription. The StackPack's page says both enabled and true.
    # CloudFormation reference, AWS::Lambda::LayerVersion: Content names the zip's S3 bucket and key (the
    # bucket in the layer's region), Ref returns the layer version's ARN.
    assert set(tpl["Parameters"]["IncludeOpenTelemetryTracing"]["AllowedValues"]) == {
        "enabled", "true", "disabled", "false",
    }  # fmt: skip
    location = {"OpenTelemetryLayerBucket": "layers-here", "OpenTelemetryLayerKey": "otel-layer.zip"}
    for off in ("disabled", "false"):
        for given in ({}, location):
            stack = Stack(tpl, MAIN, IncludeOpenTelemetryTracing=off, **given)
            assert stack.rule_failures() == []
            assert stack.of_type("AWS::Lambda::LayerVersion") == {}
            assert "OpenTelemetryLayerArn" not in stack.outputs
    default = Stack(tpl, MAIN)  # the default: off
    assert default.rule_failures() == [] and default.of_type("AWS::Lambda::LayerVersion") == {}
    for on in ("enabled", "true"):
        for region in (MAIN, OTHER):
            bucket_missing, key_missing = Stack(tpl, region, IncludeOpenTelemetryTracing=on).rule_failures()
            assert "IncludeOpenTelemetryTracing" in bucket_missing
            assert "OpenTelemetryLayerBucket" in bucket_missing
            assert "OpenTelemetryLayerKey" in key_missing
            given_bucket = {"OpenTelemetryLayerBucket": "layers-here"}
            (only_key,) = Stack(tpl, region, IncludeOpenTelemetryTracing=on, **given_bucket).rule_failures()
            assert "OpenTelemetryLayerKey" in only_key
            stack = Stack(tpl, region, IncludeOpenTelemetryTracing=on, **location)
            assert stack.rule_failures() == []
            layer = stack.one("AWS::Lambda::LayerVersion")
            assert layer["Content"] == {"S3Bucket": "layers-here", "S3Key": "otel-layer.zip"}
            assert layer["CompatibleRuntimes"] == ["nodejs18.x", "nodejs20.x", "nodejs22.x"]
            assert stack.outputs["OpenTelemetryLayerArn"] == (
                f"arn:aws:lambda:{region}:{ACCOUNT}:layer:stackstate-otel-nodejs:1"
            )


def test_flow_log_command_is_a_valid_create_flow_logs_call_to_the_default_prefix(main_stack: Stack) -> None:
    # EC2 API Reference, CreateFlowLogs; VPC User Guide, "Create a flow log that publishes to Amazon S3": the
    # destination is the bucket ARN, and without a subfolder the objects land under AWSLogs/{account}/
    # vpcflowlogs/{region}/, where the flow-log reader looks.
    words = shlex.split(main_stack.outputs["FlowLogCommand"])
    assert words[:3] == ["aws", "ec2", "create-flow-logs"]
    options = dict(zip(words[3::2], words[4::2], strict=True))
    model = botocore.session.get_session().get_service_model("ec2").operation_model("CreateFlowLogs")
    members = {re.sub(r"(?<!^)(?=[A-Z])", "-", m).lower() for m in model.input_shape.members}
    assert {o.removeprefix("--") for o in options} - members == {"region"}
    bucket, _ = bucket_and_key(main_stack)
    assert options["--log-destination-type"] == "s3" and options["--log-destination"] == f"{bucket}/"
    assert "--log-format" not in options and "--destination-options" not in options
    assert set(model.input_shape.required_members) <= {
        m for m in model.input_shape.members if "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", m).lower() in options
    }


TRACING = {
    "IncludeOpenTelemetryTracing": "enabled",
    "OpenTelemetryLayerBucket": "layers-here",
    "OpenTelemetryLayerKey": "otel-layer.zip",
}


@pytest.mark.parametrize("tracing", [{}, TRACING], ids=["tracing-off", "tracing-on"])
def test_security_scan_finds_nothing_unexplained(tmp_path: Path, tracing: dict[str, str]) -> None:
    # cfripper's CloudFormation security rules (IAM wildcards and escalation, cross-account trust, public S3
    # and KMS policies, encryption, ...), offline, with the parameters resolved: every finding is a skip the
    # template declares with its reason (Metadata.cfripper.skip), and every declared skip is still found.
    parameters = tmp_path / "parameters.json"
    given = {"MainRegion": MAIN, "StsAccountId": AGENT_ACCOUNT, "ExternalId": "x", **tracing}
    parameters.write_text(json.dumps(given))
    template = tmp_path / "stackstate-resources.cfn.yaml"
    template.write_text(render(load_mappings()))
    cfripper = Path(sys.executable).with_name("cfripper")
    result = subprocess.run(
        [str(cfripper), str(template), "--format", "json", "--resolve", "--resolve-parameters",
         str(parameters), "--aws-account-id", ACCOUNT, "--logging", "ERROR"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 2), result.stderr[-2000:]  # 2: findings (judged below)
    report = json.loads(result.stdout)
    assert report["exceptions"] == []
    found = {(f["rule"], r) for f in report["failures"] for r in f["resource_ids"]}
    resources = yaml.safe_load(template.read_text())["Resources"]
    declared = {
        (skip["rule"], name): skip["reason"]
        for name, r in resources.items()
        for skip in r.get("Metadata", {}).get("cfripper", {}).get("skip", [])
    }
    assert found == set(declared)
    assert all(reason.strip() for reason in declared.values())
