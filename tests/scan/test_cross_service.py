"""A detail call to another service (`details[].service`): scanned, planned, paced, denied and granted as that
service's call, against a live moto server and a Stubber."""

from __future__ import annotations

import textwrap
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from engine.aws.fetch import Fetcher
from engine.deploy.policy import policy_actions, role_policy
from engine.language.components import Labels
from engine.language.loader import Mappings, load_mappings
from engine.scan.collect import Collector
from engine.scan.plan import call_plan, format_plan, plan
from tests.scan.test_collect import account_in
from tests.support import ACCOUNT, ids_of_type, make_config, moto_server, scan_live

REGION = "eu-west-1"

# An Auto Scaling group described by EC2's DescribeLaunchTemplates: its launch template's name and version.
GROUPS = """
version: 1
service: autoscaling
resources:
  group:
    type: test.group
    list: {operation: DescribeAutoScalingGroups, items: "AutoScalingGroups[]"}
    details:
      - service: ec2
        operation: DescribeLaunchTemplates
        args: {LaunchTemplateIds: "[LaunchTemplate.LaunchTemplateId]"}
        when: LaunchTemplate.LaunchTemplateId
        result: "LaunchTemplates[0]"
        into: _template
        rate: {per_second: 5}
    id: AutoScalingGroupName
    data: "merge(@, {Template: _template.LaunchTemplateName, TemplateVersion: _template.LatestVersionNumber})"
"""


def load(tmp_path: Path, text: str = GROUPS) -> Mappings:
    (tmp_path / "autoscaling.yaml").write_text(textwrap.dedent(text))
    return load_mappings(tmp_path)


@pytest.mark.live
def test_a_detail_of_another_service_is_called_on_that_service(tmp_path: Path) -> None:
    mappings = load(tmp_path)
    with moto_server() as endpoint:
        kw = {"endpoint_url": endpoint, "region_name": REGION}
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        ec2, groups = boto3.client("ec2", **kw, **keys), boto3.client("autoscaling", **kw, **keys)
        data = {"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
        template = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData=data)
        ec2.create_launch_template_version(LaunchTemplateName="web", LaunchTemplateData=data)
        groups.create_auto_scaling_group(
            AutoScalingGroupName="web-asg",
            LaunchTemplate={"LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"]},
            **{"MinSize": 0, "MaxSize": 1, "AvailabilityZones": [f"{REGION}a"]},
        )
        sink, [result] = scan_live(endpoint, mappings, regions=(REGION,))

    assert result.complete, [u.error for u in result.units if not u.complete]
    assert ids_of_type(sink, "test.group") == {"web-asg"}
    [group] = sink.components().values()
    assert (group["data"]["Template"], group["data"]["TemplateVersion"]) == ("web", 2)


def test_the_plan_names_the_other_service(tmp_path: Path) -> None:
    mappings = load(tmp_path)
    [unit] = plan(make_config(regions=(REGION,)).instances[0], mappings)
    services = [(c.service, c.operation, c.rate) for c in call_plan(unit, mappings)]
    assert services == [
        ("autoscaling", "DescribeAutoScalingGroups", "-"),
        ("ec2", "DescribeLaunchTemplates", "5/s burst 5"),
    ]
    assert "DescribeLaunchTemplates (ec2)" in "\n".join(format_plan([unit], mappings))


def test_the_policy_grants_the_other_services_action(tmp_path: Path) -> None:
    [group] = load(tmp_path).resources
    assert group.details[0].call.iam_action == "ec2:DescribeLaunchTemplates"
    actions = policy_actions(role_policy(load(tmp_path)))
    assert {"autoscaling:DescribeAutoScalingGroups", "ec2:DescribeLaunchTemplates"} <= actions
    assert "autoscaling:DescribeLaunchTemplates" not in actions


def test_an_http_method_action_of_the_other_service_is_granted_on_that_services_paths(tmp_path: Path) -> None:
    extra = "      - {service: apigateway, operation: GetRestApis, iam_action: apigateway:GET, into: _apis}\n"
    text = GROUPS.replace("    id: AutoScalingGroupName\n", extra + "    id: AutoScalingGroupName\n")
    statements = {s["Sid"]: s for s in role_policy(load(tmp_path, text))["Statement"]}
    assert statements["ReadApigatewayGet"]["Resource"] == ["arn:aws:apigateway:*::/restapis"]


def test_a_denied_detail_of_another_service_is_a_gap_naming_its_action(tmp_path: Path) -> None:
    mappings = load(tmp_path)
    account = account_in(REGION)
    answer = {"AutoScalingGroups": [group("a", "lt-1"), group("b", None)]}
    with (
        Stubber(account.client("autoscaling", REGION)) as groups,
        Stubber(account.client("ec2", REGION)) as ec2,
    ):
        groups.add_response("describe_auto_scaling_groups", answer)
        ec2.add_client_error("describe_launch_templates", "UnauthorizedOperation", http_status_code=403)
        [unit] = plan(make_config(regions=(REGION,)).instances[0], mappings)
        [result] = Collector(account, mappings, Fetcher(), Labels(account=ACCOUNT)).run(unit)
        ec2.assert_no_pending_responses()  # one call: only group a has a template (`when`)

    assert result.complete and [c["externalId"] for c in result.components] == ["a", "b"]
    assert [(g.operation, g.action) for g in result.gaps] == [
        ("DescribeLaunchTemplates", "ec2:DescribeLaunchTemplates")
    ]


def group(name: str, template: str | None) -> dict:
    found = {
        "AutoScalingGroupName": name, "MinSize": 0, "MaxSize": 1, "DesiredCapacity": 0,
        "DefaultCooldown": 300, "AvailabilityZones": [f"{REGION}a"], "HealthCheckType": "EC2",
        "CreatedTime": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    return {**found, "LaunchTemplate": {"LaunchTemplateId": template}} if template else found
