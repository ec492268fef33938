"""mappings/elbv2.yaml against a live moto server: load balancers, target groups, their targets.

moto does not enforce DescribeTags' maximum of 20 ARNs, so the fixture makes its backend refuse
bigger batches as AWS does and records the batch sizes it got. Load balancer and listener listings
are made to page at one item, which moto honours.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.elbv2.exceptions import ValidationError
from moto.elbv2.models import ELBv2Backend

from demo.seed import AMI_ID, client
from engine.language.dialect import search
from engine.language.loader import load_mappings
from tests.support import (
    ACCOUNT,
    ListSink,
    components_of_type,
    ids_of_type,
    moto_server,
    scan_live,
    with_params,
)

pytestmark = pytest.mark.live

REGION = "eu-west-1"
ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}"
EXTRA_GROUPS = [f"tg{n:02}" for n in range(21)]  # with web, ips and fn: 24 target groups, 2 tag batches


def _enforce_tag_maximum(patch: pytest.MonkeyPatch, sizes: list[int]) -> None:
    """Make moto refuse more than 20 ARNs per DescribeTags, as AWS does; record each batch size."""
    original = ELBv2Backend.describe_tags

    def limited(self, resource_arns):
        sizes.append(len(resource_arns))
        if len(resource_arns) > 20:
            raise ValidationError("DescribeTags takes at most 20 resource ARNs")
        return original(self, resource_arns)

    patch.setattr(ELBv2Backend, "describe_tags", limited)


def _seed(endpoint: str) -> dict:
    ec2 = client("ec2", REGION, endpoint)
    elb = client("elbv2", REGION, endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for n, zone in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    instance = ec2.run_instances(ImageId=AMI_ID, MinCount=1, MaxCount=1, SubnetId=subnets[0])["Instances"][0]
    web = elb.create_load_balancer(
        Name="web", Subnets=subnets, SecurityGroups=[group], Tags=[{"Key": "team", "Value": "shop"}]
    )["LoadBalancers"][0]
    net = elb.create_load_balancer(Name="net", Subnets=subnets, Type="network")["LoadBalancers"][0]
    gateway = elb.create_load_balancer(Name="gw", Subnets=subnets[:1], Type="gateway")["LoadBalancers"][0]
    web_tg = elb.create_target_group(
        Name="web", Protocol="HTTP", Port=80, VpcId=vpc, Tags=[{"Key": "tier", "Value": "frontend"}]
    )["TargetGroups"][0]
    ips = elb.create_target_group(Name="ips", Protocol="TCP", Port=443, VpcId=vpc, TargetType="ip")[
        "TargetGroups"
    ][0]
    fn = elb.create_target_group(Name="fn", TargetType="lambda")["TargetGroups"][0]
    elb.register_targets(TargetGroupArn=web_tg["TargetGroupArn"], Targets=[{"Id": instance["InstanceId"]}])
    elb.register_targets(TargetGroupArn=ips["TargetGroupArn"], Targets=[{"Id": "10.0.1.5", "Port": 443}])
    for port in (80, 8080):  # two listeners: two DescribeListeners pages at one per page
        elb.create_listener(
            LoadBalancerArn=web["LoadBalancerArn"],
            Protocol="HTTP",
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": web_tg["TargetGroupArn"]}],
        )
    elb.create_listener(
        LoadBalancerArn=net["LoadBalancerArn"],
        Protocol="TCP",
        Port=443,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": ips["TargetGroupArn"]}],
    )
    extra = [
        elb.create_target_group(
            Name=name, Protocol="HTTP", Port=80, VpcId=vpc, Tags=[{"Key": "name", "Value": name}]
        )["TargetGroups"][0]["TargetGroupArn"]
        for name in EXTRA_GROUPS
    ]
    return {
        "vpc": vpc,
        "subnets": subnets,
        "group": group,
        "instance": instance["InstanceId"],
        "web": web["LoadBalancerArn"],
        "net": net["LoadBalancerArn"],
        "gateway": gateway["LoadBalancerArn"],
        "web_tg": web_tg["TargetGroupArn"],
        "ips": ips["TargetGroupArn"],
        "fn": fn["TargetGroupArn"],
        "extra": extra,
    }


@pytest.fixture(scope="module")
def scanned() -> Iterator[dict]:
    sizes: list[int] = []
    with moto_server() as endpoint:
        ids = _seed(endpoint)
        with pytest.MonkeyPatch.context() as patch:
            _enforce_tag_maximum(patch, sizes)
            mappings = with_params(
                load_mappings(), "elbv2.load-balancer", "DescribeLoadBalancers", PageSize=1
            )
            mappings = with_params(mappings, "elbv2.load-balancer", "DescribeListeners", PageSize=1)
            sink, results = scan_live(endpoint, mappings, regions=(REGION,), apis_to_run=("elbv2",))
            groups_only, groups_only_results = scan_live(
                endpoint, regions=(REGION,), apis_to_run=("elbv2|targetgroups",)
            )
        yield {
            "sink": sink,
            "results": results,
            "ids": ids,
            "sizes": sizes,
            "groups_only": groups_only,
            "groups_only_results": groups_only_results,
        }


def _with_type_prefix(sink: ListSink, prefix: str) -> dict[str, dict]:
    return {k: c for k, c in sink.components().items() if c["type"]["name"].startswith(prefix)}


def test_elbv2_scan_is_complete(scanned):
    assert scanned["results"][0].complete, [u.error for u in scanned["results"][0].units]


def test_elbv2_load_balancer_type_follows_its_kind_over_every_page(scanned):
    sink, ids = scanned["sink"], scanned["ids"]
    balancers = {
        k: c["type"]["name"]
        for k, c in _with_type_prefix(sink, "aws.elb-v2.").items()
        if "loadbalancer/" in k
    }
    assert balancers == {
        ids["web"]: "aws.elb-v2.application-load-balancer",
        ids["net"]: "aws.elb-v2.network-load-balancer",
        ids["gateway"]: "aws.elb-v2.gateway-load-balancer",
    }


def test_elbv2_load_balancer_has_name_tags_every_listener_and_cw_dimension(scanned):
    sink, ids = scanned["sink"], scanned["ids"]
    data = sink.components()[ids["web"]]["data"]
    assert data["Name"] == "web"
    assert data["Tags"] == {"team": "shop"}
    assert sorted(listener["Port"] for listener in data["Listeners"]) == [80, 8080]
    suffix = ids["web"].split(":loadbalancer/")[1]
    assert suffix.startswith("app/web/")
    assert data["CW"] == {"Dimensions": [{"Key": "LoadBalancer", "Value": suffix}]}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Load Balancers"


def test_elbv2_load_balancer_uses_its_security_groups_and_vpc(scanned):
    sink, ids = scanned["sink"], scanned["ids"]
    uses = {t for s, kind, t in sink.relations() if s == ids["web"] and kind == "uses-service"}
    assert uses == {ids["group"], ids["vpc"], ids["web_tg"]}  # and its target group, declared there
    uses = {t for s, kind, t in sink.relations() if s == ids["net"] and kind == "uses-service"}
    assert uses == {ids["vpc"], ids["ips"]}  # a network load balancer without security groups


def test_elbv2_target_group_has_name_tags_lb_type_and_cw_dimensions(scanned):
    sink, ids = scanned["sink"], scanned["ids"]
    data = sink.components()[ids["web_tg"]]["data"]
    assert sink.components()[ids["web_tg"]]["type"]["name"] == "aws.elb-v2.target-group"
    assert data["Name"] == "web"
    assert data["Tags"] == {"tier": "frontend"}
    assert data["TargetLoadBalancerType"] == "application"
    assert data["CW"] == {
        "Dimensions": [
            {"Key": "TargetGroup", "Value": ids["web_tg"].split(":")[-1]},
            {"Key": "LoadBalancer", "Value": ids["web"].split(":loadbalancer/")[1]},
        ]
    }
    assert ids["web_tg"].split(":")[-1].startswith("targetgroup/web/")
    # moto spells every load balancer ARN `loadbalancer/app/...`, so `net/` (network) is not seen here.
    assert ids["net"].split(":loadbalancer/")[1].startswith("app/net/")


def test_elbv2_target_group_without_load_balancer_has_only_its_own_dimension(scanned):
    sink, ids = scanned["sink"], scanned["ids"]
    data = sink.components()[ids["fn"]]["data"]
    assert data["CW"] == {"Dimensions": [{"Key": "TargetGroup", "Value": ids["fn"].split(":")[-1]}]}
    assert "TargetLoadBalancerType" not in data


def test_elbv2_tags_every_target_group_twenty_at_a_time(scanned):
    sink, ids, sizes = scanned["sink"], scanned["ids"], scanned["sizes"]
    groups = ids_of_type(sink, "aws.elb-v2.target-group")
    assert groups == {ids["web_tg"], ids["ips"], ids["fn"], *ids["extra"]}
    for name, arn in zip(EXTRA_GROUPS, ids["extra"], strict=True):
        assert sink.components()[arn]["data"]["Tags"] == {"name": name}
    assert max(sizes) == 20 and sum(1 for s in sizes if s == 20) >= 2  # both scans: 24 = 20 + 4


def test_elbv2_target_group_uses_its_vpc_and_is_used_by_its_load_balancer(scanned):
    sink, ids = scanned["sink"], scanned["ids"]
    relations = sink.relations()
    assert (ids["web_tg"], "uses-service", ids["vpc"]) in relations
    assert (ids["web"], "uses-service", ids["web_tg"]) in relations
    assert (ids["net"], "uses-service", ids["ips"]) in relations
    assert not {r for r in relations if r[0] == ids["fn"] or r[2] == ids["fn"]}  # Lambda targets: no VPC


def test_elbv2_load_balancer_edge_to_target_group_carries_its_location(scanned):
    sink, ids = scanned["sink"], scanned["ids"]
    edge = next(
        r
        for t in sink.topologies()
        for r in t["relations"]
        if r["sourceId"] == ids["web"] and r["targetId"] == ids["web_tg"]
    )
    assert edge["type"]["name"] == "uses-service"
    assert edge["data"] == {"Location": {"AwsAccount": ACCOUNT, "AwsRegion": REGION}}


def test_elbv2_target_group_instance_per_health_record(scanned):
    sink, ids = scanned["sink"], scanned["ids"]
    targets = components_of_type(sink, "aws.elb-v2.target-group-instance")
    instance, ip = (
        f"urn:aws/target-group-instance/{ids['instance']}",
        "urn:aws/target-group-instance/10.0.1.5",
    )
    assert set(targets) == {instance, ip}
    data = targets[instance]["data"]
    assert data["Name"] == ids["instance"]
    assert data["URN"] == [ids["instance"]]  # merges with the EC2 instance of that id
    assert data["TargetHealth"]["State"] == "healthy"
    assert data["Target"]["Id"] == ids["instance"]
    assert (ids["web_tg"], "uses-service", instance) in sink.relations()
    assert (ids["ips"], "uses-service", ip) in sink.relations()


def test_elbv2_target_groups_alone_need_no_load_balancers(scanned):
    groups_only, ids = scanned["groups_only"], scanned["ids"]
    assert scanned["groups_only_results"][0].complete
    types = {c["type"]["name"] for c in groups_only.components().values()}
    assert types == {"aws.elb-v2.target-group", "aws.elb-v2.target-group-instance"}
    data = groups_only.components()[ids["web_tg"]]["data"]
    assert data["TargetLoadBalancerType"] == "application"
    assert {"Key": "LoadBalancer", "Value": ids["web"].split(":loadbalancer/")[1]} in data["CW"]["Dimensions"]
    assert (ids["web"], "uses-service", ids["web_tg"]) in groups_only.relations()


@pytest.fixture(scope="module")
def target_group():
    return next(r for r in load_mappings().resources if r.key == "elbv2.target-group")


@pytest.mark.parametrize(
    ("kind", "expected"), [("app", "application"), ("net", "network"), ("gwy", "gateway"), (None, None)]
)
def test_elbv2_target_group_load_balancer_type_comes_from_its_arn(target_group, kind, expected):
    """AWS spells the kind in the load balancer ARN (moto always writes `app`), so no moto here."""
    resource = target_group
    balancers = [f"{ARN}:loadbalancer/{kind}/edge/0123456789abcdef"] if kind else []
    item = {"TargetGroupArn": f"{ARN}:targetgroup/edge/fedcba9876543210", "LoadBalancerArns": balancers}
    data = search(resource.data, item)
    assert data.get("TargetLoadBalancerType") == expected
    dimensions = search(resource.cw_dimensions, item)
    assert dimensions["LoadBalancer"] == (f"{kind}/edge/0123456789abcdef" if kind else None)
