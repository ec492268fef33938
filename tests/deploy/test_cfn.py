"""The template each monitored account deploys (`aws-topology cfn`): generated from the mappings, cfn-lint
clean, deployable.

moto 5.2.5's CloudFormation has no AWS::KinesisFirehose::DeliveryStream nor AWS::S3::BucketPolicy, ignores
an S3 bucket's VersioningConfiguration, LifecycleConfiguration and PublicAccessBlockConfiguration, and
evaluates an output's export even when the output's condition is false (CloudFormation does not), and has no
Ref for AWS::Lambda::LayerVersion (CloudFormation's is the layer version's ARN).
The deploy test adds them to the in-process server, passing the template's properties to moto's own Firehose
and S3 backends as CloudFormation defines them, so what the test reads back is what the template declared.
The rules AWS enforces on the template, per region, are in tests/deploy/test_cfn_rules.py.
"""

from __future__ import annotations

import functools
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.api import ManualArgs, lint
from click.testing import CliRunner

from engine import cli
from engine.deploy.policy import role_policy
from engine.deploy.template import event_patterns, render, template
from engine.language.loader import CLOUDTRAIL, load_mappings
from tests.support import ACCOUNT, live_aws, moto_server

ROOT = Path(__file__).resolve().parents[2]
AGENT_ACCOUNT = "210987654321"


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    return template(load_mappings())


@functools.cache
def template_text() -> str:
    """The template as `aws-topology cfn` prints it (generated when deploying, never committed)."""
    return render(load_mappings())


def test_cfn_command_prints_the_template_or_writes_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["cfn"])
    assert result.exit_code == 0
    assert result.stdout == render(load_mappings())
    out = tmp_path / "t.yaml"
    result = CliRunner().invoke(cli.main, ["cfn", "--out", str(out)])
    assert result.exit_code == 0 and result.stdout == f"wrote {out}\n"
    assert out.read_text() == render(load_mappings())


def test_cfn_lint_finds_no_error_and_no_warning_in_any_region_the_docs_name() -> None:
    named = re.findall(
        r"\b(?:[a-z]{2}-)(?:gov-)?[a-z]+-[0-9]\b", (ROOT / "docs" / "aws-setup.md").read_text()
    )
    regions = sorted(set(named))
    assert len(regions) >= 3, regions
    matches = lint(template_text(), config=ManualArgs(regions=regions))
    assert [f"{m.rule.id} {m.message}" for m in matches] == []


def test_parameters_conditions_and_outputs(tpl: dict[str, Any]) -> None:
    assert list(tpl["Parameters"]) == [
        "MainRegion", "StsAccountId", "ExternalId", "IncludeOpenTelemetryTracing",
        "OpenTelemetryLayerBucket", "OpenTelemetryLayerKey",
    ]  # fmt: skip
    assert tpl["Parameters"]["ExternalId"]["NoEcho"] is True
    assert tpl["Parameters"]["OpenTelemetryLayerBucket"]["Default"] == ""  # only needed with tracing
    main = {"Fn::Equals": [{"Ref": "AWS::Region"}, {"Ref": "MainRegion"}]}
    assert list(tpl["Conditions"]) == ["IsMainRegion", "IncludeOpenTelemetryLayer"]
    assert tpl["Conditions"]["IsMainRegion"] == main
    main_only = {k for k, r in tpl["Resources"].items() if r.get("Condition") == "IsMainRegion"}
    assert main_only == {"StsIntegrationRole", "StsLogsBucket", "StsLogsBucketPolicy"}
    traced = {k for k, r in tpl["Resources"].items() if r.get("Condition") == "IncludeOpenTelemetryLayer"}
    assert traced == {"StsOpenTelemetryLayer"}
    every_region = set(tpl["Resources"]) - main_only - traced
    assert {"StsKmsKey", "StsEventBridgeRule", "StsFirehoseDeliveryStream", "StsFirehoseRole",
            "StsEventBridgeRole"} <= every_region  # fmt: skip
    assert tpl["Outputs"]["LogsBucketArn"]["Value"] == {"Fn::GetAtt": ["StsLogsBucket", "Arn"]}
    assert "Export" in tpl["Outputs"]["LogsBucketArn"]
    assert tpl["Outputs"]["OpenTelemetryLayerArn"]["Value"] == {"Ref": "StsOpenTelemetryLayer"}
    assert tpl["Outputs"]["OpenTelemetryLayerArn"]["Condition"] == "IncludeOpenTelemetryLayer"


def test_role_trusts_the_agent_account_with_the_external_id_only(tpl: dict[str, Any]) -> None:
    role = tpl["Resources"]["StsIntegrationRole"]["Properties"]
    assert role["RoleName"] == "StackStateAwsIntegrationRole"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${StsAccountId}:root"}}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    (policy,) = role["Policies"]
    generated = role_policy(load_mappings(), partition="${AWS::Partition}", account="${AWS::AccountId}")
    document = policy["PolicyDocument"]
    assert [s["Action"] for s in document["Statement"]] == [s["Action"] for s in generated["Statement"]]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["LogBucket"]["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::stackstate-logs-*"}


def test_bucket_firehose_and_rules(tpl: dict[str, Any]) -> None:
    res = tpl["Resources"]
    bucket = res["StsLogsBucket"]["Properties"]
    assert bucket["BucketName"] == {"Fn::Sub": "stackstate-logs-${AWS::AccountId}"}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == 1 and rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    s3 = res["StsFirehoseDeliveryStream"]["Properties"]["ExtendedS3DestinationConfiguration"]
    assert s3["BufferingHints"]["IntervalInSeconds"] == 60 and s3["CompressionFormat"] == "GZIP"
    assert s3["Prefix"] == {"Fn::Sub": "AWSLogs/${AWS::AccountId}/EventBridge/${AWS::Region}/"}
    rules = [r["Properties"] for r in res.values() if r["Type"] == "AWS::Events::Rule"]
    assert [r["EventPattern"] for r in rules] == event_patterns(load_mappings())
    for r in rules:
        assert r["Targets"][0]["Arn"] == {"Fn::GetAtt": ["StsFirehoseDeliveryStream", "Arn"]}


def test_event_patterns_cover_every_event_rule_of_the_mappings() -> None:
    patterns = event_patterns(load_mappings())
    declared = {(e.detail_type, e.source) for r in load_mappings().resources for e in r.event_rules}
    covered = set()
    for p in patterns:
        for detail_type in p["detail-type"]:
            sources = p["detail"]["eventSource"] if detail_type == CLOUDTRAIL else p["source"]
            covered |= {(detail_type, s) for s in sources}
    assert covered == declared
    cloudtrail = next(p for p in patterns if p["detail-type"] == [CLOUDTRAIL])
    assert "aws.ec2" in cloudtrail["source"] and "ec2.amazonaws.com" in cloudtrail["detail"]["eventSource"]
    assert "aws.states" in cloudtrail["source"]  # the envelope source of states.amazonaws.com


def _teach_moto(patch: pytest.MonkeyPatch) -> None:
    """A Firehose delivery-stream type and the S3 bucket properties moto's CloudFormation ignores."""
    from moto.awslambda.models import LayerVersion
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel
    from moto.firehose.models import firehose_backends
    from moto.s3.models import FakeBucket, s3_backends

    class BucketPolicy(CloudFormationModel):
        __module__ = "moto.s3.models"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::S3::BucketPolicy"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kw: Any
        ) -> BucketPolicy:
            props = cloudformation_json["Properties"]
            document = json.dumps(props["PolicyDocument"]).encode()
            s3_backends[account_id]["aws"].put_bucket_policy(props["Bucket"], document)
            return cls()

        @property
        def physical_resource_id(self) -> str:
            return "policy"

    class DeliveryStream(CloudFormationModel):
        __module__ = "moto.firehose.models"  # moto's model registry names a model's service by its module

        def __init__(self, arn: str) -> None:
            self.arn = arn

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::KinesisFirehose::DeliveryStream"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kw: Any
        ) -> DeliveryStream:
            props = cloudformation_json["Properties"]
            arn = firehose_backends[account_id][region_name].create_delivery_stream(
                region_name, resource_name, props["DeliveryStreamType"], {},
                props.get("DeliveryStreamEncryptionConfigurationInput", {}), {},
                props["ExtendedS3DestinationConfiguration"], {}, {}, {}, {}, {}, {}, [],
            )  # fmt: skip
            return cls(arn)

        @property
        def physical_resource_id(self) -> str:
            return self.arn.rsplit("/", 1)[-1]

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr == "Arn"

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.arn

    original = parsing.resource_class_from_type
    taught = {m.cloudformation_type(): m for m in (DeliveryStream, BucketPolicy)}
    patch.setattr(parsing, "resource_class_from_type", lambda t: taught.get(t) or original(t))

    def exports(self: Any) -> list[Any]:
        conditions, resources = self._resource_map.lazy_condition_map, self._resource_map
        return [
            parsing.Export(
                self._stack_id, parsing.clean_json(o["Export"]["Name"], resources),
                parsing.clean_json(o["Value"], resources),
            )
            for o in (self._output_json_map or {}).values()
            if o.get("Export") and ("Condition" not in o or conditions[o["Condition"]])
        ]  # fmt: skip

    patch.setattr(parsing.OutputMap, "exports", property(exports))
    create_bucket = FakeBucket.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def bucket(cls: Any, name: str, cfn: Any, account_id: str, region_name: str, **kw: Any) -> Any:
        made = create_bucket(cls, name, cfn, account_id, region_name, **kw)
        props, backend = cfn.get("Properties", {}), s3_backends[account_id]["aws"]
        if "VersioningConfiguration" in props:
            backend.put_bucket_versioning(name, props["VersioningConfiguration"]["Status"])
        if "PublicAccessBlockConfiguration" in props:
            backend.put_public_access_block(name, props["PublicAccessBlockConfiguration"])
        return made

    patch.setattr(FakeBucket, "create_from_cloudformation_json", classmethod(bucket))
    # Ref of a layer version is its ARN (moto answers the object's repr)
    patch.setattr(LayerVersion, "physical_resource_id", property(lambda self: self.arn), raising=False)


def _deploy(endpoint: str, region: str, **parameters: str) -> dict[str, Any]:
    """The stack as a StackSet makes it in `region` of the account (main region eu-west-1)."""
    cfn = boto3.client("cloudformation", region_name=region, endpoint_url=endpoint)
    params = {"MainRegion": "eu-west-1", "StsAccountId": AGENT_ACCOUNT, "ExternalId": "uniquesecret!1",
              **parameters}  # fmt: skip
    cfn.create_stack(
        StackName="stackstate-resources", TemplateBody=template_text(),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
    )  # fmt: skip
    stack = cfn.describe_stacks(StackName="stackstate-resources")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    return stack


@pytest.mark.live
def test_template_deploys_into_moto() -> None:
    with moto_server() as endpoint, live_aws(endpoint) as patch:
        _teach_moto(patch)
        stack = _deploy(endpoint, "eu-west-1")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        bucket = f"stackstate-logs-{ACCOUNT}"
        assert outputs["LogsBucketArn"] == f"arn:aws:s3:::{bucket}"
        s3 = boto3.client("s3", region_name="eu-west-1", endpoint_url=endpoint)
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        assert [s["Sid"] for s in policy["Statement"]] == [
            "AWSLogDeliveryWrite", "AWSLogDeliveryAclCheck", "DenyWithoutTls",
        ]  # fmt: skip
        assert f"arn:aws:s3:::{bucket}/AWSLogs/{ACCOUNT}/*" in str(policy)
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == dict.fromkeys(
            ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"], True
        )
        iam = boto3.client("iam", region_name="eu-west-1", endpoint_url=endpoint)
        role = iam.get_role(RoleName="StackStateAwsIntegrationRole")["Role"]
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"AWS": f"arn:aws:iam::{AGENT_ACCOUNT}:root"}
        assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": "uniquesecret!1"}}
        (name,) = iam.list_role_policies(RoleName="StackStateAwsIntegrationRole")["PolicyNames"]
        document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=name)["PolicyDocument"]
        text = str(document)  # moto answers the Python form of the document
        assert "arn:aws:s3:::stackstate-logs-*" in text and "sqs:ListQueues" in text and "${" not in text
        firehose = boto3.client("firehose", region_name="eu-west-1", endpoint_url=endpoint)
        (stream,) = firehose.list_delivery_streams()["DeliveryStreamNames"]
        (destination,) = firehose.describe_delivery_stream(DeliveryStreamName=stream)[
            "DeliveryStreamDescription"]["Destinations"]  # fmt: skip
        described = destination["ExtendedS3DestinationDescription"]
        assert described["Prefix"] == f"AWSLogs/{ACCOUNT}/EventBridge/eu-west-1/"
        assert described["BucketARN"] == f"arn:aws:s3:::{bucket}"
        events = boto3.client("events", region_name="eu-west-1", endpoint_url=endpoint)
        rules = events.list_rules()["Rules"]
        assert len(rules) == len(event_patterns(load_mappings()))
        targets = events.list_targets_by_rule(Rule=rules[0]["Name"])["Targets"]
        assert targets[0]["Arn"].endswith(f":deliverystream/{stream}")
        layers = boto3.client("lambda", region_name="eu-west-1", endpoint_url=endpoint).list_layers()
        assert layers["Layers"] == []
        assert "OpenTelemetryLayerArn" not in outputs  # tracing is off by default


@pytest.mark.live
def test_template_with_tracing_publishes_the_layer_from_the_regions_bucket() -> None:
    """IncludeOpenTelemetryTracing enabled: the layer version is made from the zip in this region's bucket,
    and its ARN is the stack's output. (moto names a layer after its stack, not after LayerName.)"""
    with moto_server() as endpoint, live_aws(endpoint) as patch:
        _teach_moto(patch)
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
        s3.create_bucket(Bucket="layers-us-east-1")
        layer_zip = _zip({"otel-handler": "#!/bin/sh\n"})
        s3.put_object(Bucket="layers-us-east-1", Key="otel-layer.zip", Body=layer_zip)
        location = {"OpenTelemetryLayerBucket": "layers-us-east-1", "OpenTelemetryLayerKey": "otel-layer.zip"}
        stack = _deploy(endpoint, "us-east-1", IncludeOpenTelemetryTracing="enabled", **location)
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        arn = outputs["OpenTelemetryLayerArn"]
        assert re.fullmatch(rf"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:[^:]+:1", arn)
        awslambda = boto3.client("lambda", region_name="us-east-1", endpoint_url=endpoint)
        version = awslambda.get_layer_version(LayerName=arn.split(":")[6], VersionNumber=1)
        assert version["LayerVersionArn"] == arn
        assert version["CompatibleRuntimes"] == ["nodejs18.x", "nodejs20.x", "nodejs22.x"]
        assert version["Content"]["CodeSize"] == len(layer_zip)


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(zipfile.ZipInfo(name, (2026, 12, 7, 0, 0, 0)), text)
    return buffer.getvalue()


@pytest.mark.live
def test_template_deploys_into_a_region_other_than_the_main_one() -> None:
    """The StackSet's other regions: no role, no bucket; their stream writes to the main region's bucket with
    that bucket's own key (default encryption), not with a key of their region."""
    with moto_server() as endpoint, live_aws(endpoint) as patch:
        _teach_moto(patch)
        _deploy(endpoint, "eu-west-1")
        stack = _deploy(endpoint, "us-east-1")
        cfn = boto3.client("cloudformation", region_name="us-east-1", endpoint_url=endpoint)
        made = cfn.describe_stack_resources(StackName="stackstate-resources")["StackResources"]
        logical = {
            r["LogicalResourceId"] for r in made if "LogicalResourceId" in r
        }  # moto lists skipped ones bare
        assert "StsFirehoseDeliveryStream" in logical
        assert not logical & {"StsIntegrationRole", "StsLogsBucket", "StsLogsBucketPolicy"}
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [f"stackstate-logs-{ACCOUNT}"]
        firehose = boto3.client("firehose", region_name="us-east-1", endpoint_url=endpoint)
        (stream,) = firehose.list_delivery_streams()["DeliveryStreamNames"]
        (destination,) = firehose.describe_delivery_stream(DeliveryStreamName=stream)[
            "DeliveryStreamDescription"]["Destinations"]  # fmt: skip
        described = destination["ExtendedS3DestinationDescription"]
        assert described["BucketARN"] == f"arn:aws:s3:::stackstate-logs-{ACCOUNT}"
        assert described["Prefix"] == f"AWSLogs/{ACCOUNT}/EventBridge/us-east-1/"
        assert described["EncryptionConfiguration"] == {"NoEncryptionConfig": "NoEncryption"}
        assert "Outputs" not in stack or stack["Outputs"] == []


def test_template_yaml_has_no_tags_a_plain_loader_cannot_read() -> None:
    """Long-form intrinsics only: any YAML tool (and `aws cloudformation deploy`) reads it as is."""
    assert yaml.safe_load(template_text())["AWSTemplateFormatVersion"] == "2010-09-09"
