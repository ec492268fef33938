"""mappings/elb.yaml (classic load balancers) and mappings/autoscaling.yaml against a live moto server."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto.elb.exceptions import ELBClientError
from moto.elb.responses import ELBResponse

from demo.seed import AMI_ID, client
from engine.aws.fetch import Fetcher
from engine.aws.sessions import Account, client_config
from engine.events.eventbridge import Rules
from engine.language.components import Labels
from engine.language.loader import CLOUDTRAIL, load_mappings
from engine.scan.collect import Collector
from engine.scan.plan import Unit
from tests.support import (
    ACCOUNT,
    ROLE,
    ListSink,
    components_of_type,
    live_aws,
    moto_server,
    scan_live,
    with_params,
)

pytestmark = pytest.mark.live

REGION = "eu-west-1"
ELB = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer"
BULK = [f"bulk-{n:02}" for n in range(22)]  # with "web": 23 load balancers, two DescribeTags batches
LISTENERS = [{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 80}]
DESCRIBE_TAGS_MAXIMUM = 20  # LoadBalancerNamesMax20 in the API model; moto does not enforce it


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict]]:
    tag_batches: list[int] = []
    original = ELBResponse.describe_tags

    def describe_tags(self: ELBResponse):
        """Like AWS: more than 20 names is a ValidationError."""
        names = self._get_param("LoadBalancerNames", [])
        tag_batches.append(len(names))
        if len(names) > DESCRIBE_TAGS_MAXIMUM:
            raise ELBClientError("ValidationError", "LoadBalancerNames: at most 20 names")
        return original(self)

    with moto_server() as endpoint:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ELBResponse, "describe_tags", describe_tags)
            ids = _seed(endpoint)
            # Seven load balancers per DescribeLoadBalancers page: the listing must follow NextMarker.
            mappings = with_params(load_mappings(), "elb.load-balancer", "DescribeLoadBalancers", PageSize=7)
            sink, results = scan_live(
                endpoint, mappings, regions=(REGION,), apis_to_run=("elb", "autoscaling")
            )
        yield sink, results, {**ids, "tag_batches": tag_batches, "endpoint": endpoint}


def _seed(endpoint: str) -> dict:
    ec2 = client("ec2", REGION, endpoint)
    elb = client("elb", REGION, endpoint)
    elbv2 = client("elbv2", REGION, endpoint)
    autoscaling = client("autoscaling", REGION, endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.5.0.0/20", AvailabilityZone=f"{REGION}a")["Subnet"][
        "SubnetId"
    ]
    sg = ec2.create_security_group(GroupName="lb", Description="lb", VpcId=vpc)["GroupId"]
    instance = ec2.run_instances(
        ImageId=AMI_ID, MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnet
    )["Instances"][0]["InstanceId"]
    elb.create_load_balancer(
        LoadBalancerName="web",
        Listeners=LISTENERS,
        Subnets=[subnet],
        SecurityGroups=[sg],
        Tags=[{"Key": "app", "Value": "web"}],
    )
    elb.register_instances_with_load_balancer(LoadBalancerName="web", Instances=[{"InstanceId": instance}])
    for n, name in enumerate(BULK):
        elb.create_load_balancer(
            LoadBalancerName=name,
            Listeners=LISTENERS,
            Subnets=[subnet],
            SecurityGroups=[sg],
            Tags=[{"Key": "index", "Value": str(n)}],
        )
    target_group = elbv2.create_target_group(Name="web-tg", Protocol="HTTP", Port=80, VpcId=vpc)[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    autoscaling.create_launch_configuration(
        LaunchConfigurationName="web", ImageId=AMI_ID, InstanceType="t3.micro"
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="web-asg",
        LaunchConfigurationName="web",
        MinSize=2,
        MaxSize=2,
        DesiredCapacity=2,
        VPCZoneIdentifier=subnet,
        LoadBalancerNames=["web"],
        TargetGroupARNs=[target_group],
        Tags=[{"Key": "tier", "Value": "frontend", "PropagateAtLaunch": False}],
    )
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["web-asg"])["AutoScalingGroups"][
        0
    ]
    return {
        "vpc": vpc,
        "sg": sg,
        "instance": instance,
        "target_group": target_group,
        "group_arn": group["AutoScalingGroupARN"],
        "group_instances": sorted(i["InstanceId"] for i in group["Instances"]),
    }


def test_elb_and_autoscaling_scan_is_complete(scanned):
    _, results, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_elb_describe_tags_batches_at_most_20_names_and_keeps_every_load_balancer(scanned):
    sink, _, ids = scanned
    balancers = components_of_type(sink, "aws.elb-classic.load-balancer")
    assert set(balancers) == {f"{ELB}/{name}" for name in ["web", *BULK]}  # four DescribeLoadBalancers pages
    assert sorted(ids["tag_batches"]) == [3, 20]  # 23 names: no batch above the maximum, none dropped
    for n, name in enumerate(BULK):
        assert balancers[f"{ELB}/{name}"]["data"]["Tags"] == {"index": str(n)}


def test_elb_has_constructed_arn_as_id_and_urn_with_name_and_tags(scanned):
    sink, _, ids = scanned
    data = sink.components()[f"{ELB}/web"]["data"]
    assert data["Name"] == "web"
    assert data["URN"] == [f"{ELB}/web"]
    assert data["Tags"] == {"app": "web"}
    assert data["VPCId"] == ids["vpc"]
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Load Balancers"
    assert data["CW"] == {"Dimensions": [{"Key": "LoadBalancerName", "Value": "web"}]}  # AWS/ELB
    assert "InstanceHealth" not in data and "_instance_health" not in data


def test_elb_uses_its_vpc_instances_and_security_groups(scanned):
    sink, _, ids = scanned
    instances = [ids["instance"], *ids["group_instances"]]  # moto registers the group's instances too
    from_elb_mapping = {r for r in sink.relations() if r[0] == f"{ELB}/web" and r[2] != ids["group_arn"]}
    assert from_elb_mapping == {
        (f"{ELB}/web", "uses-service", target) for target in [ids["vpc"], ids["sg"], *instances]
    }
    assert {r for r in sink.relations() if r[0] == f"{ELB}/bulk-00"} == {
        (f"{ELB}/bulk-00", "uses-service", ids["vpc"]),
        (f"{ELB}/bulk-00", "uses-service", ids["sg"]),
    }


def test_autoscaling_group_is_identified_by_name_with_its_arn_as_urn(scanned):
    sink, _, ids = scanned
    groups = components_of_type(sink, "aws.autoscaling.group")
    assert set(groups) == {"web-asg"}
    data = groups["web-asg"]["data"]
    assert data["Name"] == "web-asg"
    assert data["URN"] == [ids["group_arn"]]
    assert data["identifiers"] == [ids["group_arn"]]  # how StackState resolves the ARN-based edges
    assert data["Tags"]["tier"] == "frontend"
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Machines"


def test_autoscaling_group_arn_uses_its_instances_and_is_used_by_its_classic_elb_and_target_group(scanned):
    sink, _, ids = scanned
    arn = ids["group_arn"]
    assert {r for r in sink.relations() if arn in r} == {
        *((arn, "uses-service", instance) for instance in ids["group_instances"]),
        (f"{ELB}/web", "uses-service", arn),
        (ids["target_group"], "uses-service", arn),
    }
    assert not {r for r in sink.relations() if "web-asg" in (r[0], r[2])}  # edges use the ARN, not the name


def test_autoscaling_events_refresh_the_group_by_name_to_its_arn_edges_and_delete_only_the_name(scanned):
    """An Auto Scaling event re-describes the group by name, children included, into the scan's ARN-based
    edges; deleting the group deletes its component (the name), and no relation id (the predecessor's
    no-op deletes of load balancer -> instance relations are not emitted)."""
    sink, _, ids = scanned
    mappings = load_mappings()
    rules = Rules(mappings)
    [change] = rules.changes(asg_event("DetachInstances"), ACCOUNT, (REGION,))
    assert (change.resource.key, change.id, change.delete) == ("autoscaling.group", "web-asg", False)
    with live_aws(ids["endpoint"]):
        session = boto3.Session(region_name=REGION)
        account = Account(ACCOUNT, ROLE, session, client_config(1), endpoint_url=ids["endpoint"])
        unit = Unit(ACCOUNT, REGION, REGION, change.resource, (REGION,), (change.id,))
        refreshed = Collector(account, mappings, Fetcher(), Labels(account=ACCOUNT)).run(unit)

    assert [(u.unit.resource.key, u.complete) for u in refreshed] == [
        ("autoscaling.group", True),
        ("autoscaling.group-edges", True),
    ]
    edges = {(r["sourceId"], r["type"]["name"], r["targetId"]) for u in refreshed for r in u.relations}
    assert edges == {r for r in sink.relations() if ids["group_arn"] in r}
    assert [c["externalId"] for u in refreshed for c in u.components] == ["web-asg"]
    [delete] = rules.changes(asg_event("DeleteAutoScalingGroup"), ACCOUNT, (REGION,))
    assert (delete.delete, delete.delete_id) == (True, "web-asg")


def asg_event(name: str) -> dict:
    """An EventBridge envelope of a CloudTrail Auto Scaling call on the group `web-asg`."""
    detail = {
        "eventSource": "autoscaling.amazonaws.com", "eventName": name, "awsRegion": REGION,
        "requestParameters": {"autoScalingGroupName": "web-asg"},
    }  # fmt: skip
    return {"detail-type": CLOUDTRAIL, "source": "aws.autoscaling", "region": REGION, "detail": detail}
