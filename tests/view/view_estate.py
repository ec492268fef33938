"""A small estate seeded in an in-process moto server and scanned once by `aws-topology scan`, for the views
tests: a VPC with subnets, a security group and instances, S3 buckets, Lambda functions and an alias, an
application and a network load balancer with a target group, an SQS queue. The scan writes both snapshot
sources, the state and an `--out` run folder. Also: a generated snapshot of any size (`generated_estate`, for
the page at 5,000 components and `bench/page.py`), and the flags the page tests start Chromium with.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from click.testing import CliRunner

from demo.common import lambda_zip, moto_post
from demo.seed import AMI_ID, client
from engine.cli import main
from engine.language.loader import load_mappings
from engine.scan.last_snapshot import Snapshot
from tests.support import ACCOUNT, ROLE, live_aws, moto_server

REGION = "eu-west-1"
APIS = ["ec2", "s3", "lambda", "elbv2", "sqs"]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@dataclass(frozen=True)
class ScannedEstate:
    config: Path
    state: Path
    out: Path
    seeded: dict


def _seed(endpoint: str) -> dict:
    moto_post(endpoint, "/moto-api/config", {"lambda": {"use_docker": False}})
    ec2 = client("ec2", REGION, endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{n}.0/24", AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for n, zone in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(GroupName="shop-web", Description="web", VpcId=vpc)["GroupId"]
    tags = [
        {
            "ResourceType": "instance",
            "Tags": [{"Key": "Name", "Value": "shop-web-1"}, {"Key": "team", "Value": "storefront"}],
        }
    ]
    instance = ec2.run_instances(
        ImageId=AMI_ID,
        MinCount=1,
        MaxCount=1,
        SubnetId=subnets[0],
        SecurityGroupIds=[group],
        TagSpecifications=tags,
    )["Instances"][0]["InstanceId"]
    s3 = client("s3", REGION, endpoint)
    buckets = ["shop-assets-view", "shop-logs-view"]
    for name in buckets:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_tagging(Bucket=buckets[0], Tagging={"TagSet": [{"Key": "team", "Value": "storefront"}]})
    role = client("iam", REGION, endpoint).create_role(RoleName="view-fn", AssumeRolePolicyDocument="{}")[
        "Role"
    ]
    aws_lambda = client("lambda", REGION, endpoint)
    common = {
        "Runtime": "python3.12",
        "Role": role["Arn"],
        "Handler": "index.handler",
        "Code": {"ZipFile": lambda_zip("def handler(e, c): return e")},
    }
    functions = ["shop-checkout", "shop-mailer"]
    for name in functions:
        aws_lambda.create_function(FunctionName=name, **common)
    aws_lambda.create_alias(FunctionName=functions[0], Name="live", FunctionVersion="$LATEST")
    elb = client("elbv2", REGION, endpoint)
    alb = elb.create_load_balancer(
        Name="shop-alb", Subnets=subnets, SecurityGroups=[group], Type="application"
    )
    nlb = elb.create_load_balancer(Name="shop-nlb", Subnets=subnets, Type="network")
    target_group = elb.create_target_group(Name="shop-web", Protocol="HTTP", Port=80, VpcId=vpc)[
        "TargetGroups"
    ][0]
    elb.register_targets(TargetGroupArn=target_group["TargetGroupArn"], Targets=[{"Id": instance}])
    elb.create_listener(
        LoadBalancerArn=alb["LoadBalancers"][0]["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group["TargetGroupArn"]}],
    )  # fmt: skip
    client("sqs", REGION, endpoint).create_queue(QueueName="shop-orders")
    return {
        "vpc": vpc, "subnets": subnets, "group": group, "instance": instance, "buckets": buckets,
        "functions": functions, "alb": alb["LoadBalancers"][0]["LoadBalancerArn"],
        "nlb": nlb["LoadBalancers"][0]["LoadBalancerArn"],
    }  # fmt: skip


@cache
def scanned_estate(base: Path) -> ScannedEstate:
    """Seed, then `aws-topology scan --out --state` once per test session (cached by `base`)."""
    base.mkdir(parents=True, exist_ok=True)
    config = base / "conf.yaml"
    config.write_text(
        "init_config: {external_id: test-external-id}\n"
        f"instances:\n  - role_arn: {ROLE}\n    regions: [{REGION}]\n    apis_to_run: {json.dumps(APIS)}\n"
        "    tags: ['env:test']\n"
    )
    state, out = base / "state.sqlite", base / "out"
    with moto_server() as endpoint, live_aws(endpoint):
        seeded = _seed(endpoint)
        args = ["scan", "-c", str(config), "--out", str(out), "--state", str(state), "--no-table"]
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return ScannedEstate(config, state, out, seeded)


def generated_estate(size: int, seed: int = 7) -> Snapshot:
    """`size` components spread over every mapped type, with about 1.3 relations each."""
    rng = random.Random(seed)
    resources = [r for r in load_mappings().resources if r.emits_component]
    components = []
    for n in range(size):
        resource = resources[n % len(resources)]
        type_name = resource.types[n % len(resource.types)]
        components.append({
            "externalId": f"arn:aws:test:eu-west-1:{ACCOUNT}:{type_name}/{n}", "type": {"name": type_name},
            "data": {
                "Name": f"{resource.name}-{n}", "layer": resource.layer, "domain": resource.domain,
                "Tags": {"team": f"team{n % 40}"}, "labels": ["stackpack:aws-v2", f"team:team{n % 40}"],
                "tags": ["integration-type:aws-v2", f"integration-url:{ACCOUNT}"],
                "Location": {"AwsAccount": ACCOUNT, "AwsRegion": "eu-west-1"},
                "ConsoleUrl": f"https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#Thing:id={n}",
            },
        })  # fmt: skip
    kinds = ["uses-service", "has-resource", "uses-ec2-host", "has_cluster_node"]
    relations = []
    for _ in range(int(size * 1.3)):
        source, target = rng.sample(components, 2)
        kind = rng.choice(kinds)
        relations.append({
            "externalId": f"{source['externalId']}-{kind}-{target['externalId']}", "type": {"name": kind},
            "sourceId": source["externalId"], "targetId": target["externalId"], "data": {},
        })  # fmt: skip
    return Snapshot("generated", [ACCOUNT], components, relations, {ACCOUNT: time.time()})
