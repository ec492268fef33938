"""Seed a moto server with a deterministic demo estate, or with bulk resources for benchmarks.

Usage: ``python -m demo.seed --endpoint http://127.0.0.1:5000 [--bulk 2000]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, cast

import boto3
from botocore.config import Config

from demo.server import reset

DEFAULT_ACCOUNT = "123456789012"
MAIN_REGION = "eu-west-1"
SECOND_REGION = "us-east-1"
# Amazon Linux 2 image from moto's built-in AMI catalogue (present in every region).
AMI_ID = "ami-04681a1dbd79675a5"

_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=16)


def client(service: str, region: str, endpoint: str, account: str = DEFAULT_ACCOUNT) -> Any:
    """Return a boto3 client for the moto ``endpoint``, acting in ``account``.

    The dummy credentials map to moto's default account; any other account is selected
    with moto's ``x-moto-account-id`` request header.
    """
    aws = boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=_CONFIG,
    )
    if account != DEFAULT_ACCOUNT:

        def _add_account_header(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = account

        aws.meta.events.register("before-sign.*.*", _add_account_header)
    return aws


def _tags(**tags: str) -> list[dict[str, str]]:
    """Return EC2/SNS-style ``[{Key, Value}]`` tags, keeping keyword order."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def _spec(resource_type: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    """Return an EC2 ``TagSpecifications`` list for one resource type."""
    return [{"ResourceType": resource_type, "Tags": _tags(**tags)}]


def _queue(sqs: Any, name: str, tags: dict[str, str] | None = None, **attributes: str) -> tuple[str, str]:
    """Create an SQS queue and return ``(url, arn)``."""
    kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if tags:
        kwargs["tags"] = tags
    url = sqs.create_queue(**kwargs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _allow_topic(sqs: Any, queue_url: str, queue_arn: str, topic_arn: str) -> None:
    """Attach the queue policy that lets an SNS topic deliver to the queue, as in real AWS."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowTopic",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


def _bucket(s3: Any, name: str, region: str, tags: dict[str, str] | None = None) -> None:
    """Create an S3 bucket in ``region`` (no LocationConstraint for us-east-1) and tag it."""
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    if tags:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(**tags)})


def _instance(ec2: Any, name: str, token: str, **kwargs: Any) -> str:
    """Run one instance with a fixed ClientToken (botocore would send a random one) and return its id."""
    tags = {"Name": name, **kwargs.pop("Tags", {})}
    reservation = ec2.run_instances(
        ImageId=AMI_ID,
        MinCount=1,
        MaxCount=1,
        ClientToken=token,
        TagSpecifications=_spec("instance", tags),
        **kwargs,
    )
    return reservation["Instances"][0]["InstanceId"]


def _seed_main_region(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Create the eu-west-1 part of the estate: VPC, subnets, SGs, instances, VGW, S3, SQS, SNS."""
    region = MAIN_REGION
    ec2 = client("ec2", region, endpoint, account)
    vpc_id = ec2.create_vpc(
        CidrBlock="10.0.0.0/16", TagSpecifications=_spec("vpc", {"Name": "demo-vpc", "team": "platform"})
    )["Vpc"]["VpcId"]
    subnet_a = ec2.create_subnet(
        VpcId=vpc_id,
        CidrBlock="10.0.0.0/20",
        AvailabilityZone=f"{region}a",
        TagSpecifications=_spec("subnet", {"Name": "demo-web-a", "tier": "web"}),
    )["Subnet"]["SubnetId"]
    subnet_b = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.16.0/20", AvailabilityZone=f"{region}b")[
        "Subnet"
    ]["SubnetId"]

    web_sg = ec2.create_security_group(
        GroupName="web",
        Description="Web tier: HTTP(S) from anywhere",
        VpcId=vpc_id,
        TagSpecifications=_spec("security-group", {"Name": "web", "team": "storefront"}),
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=web_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            for port in (80, 443)
        ],
    )
    db_sg = ec2.create_security_group(
        GroupName="db",
        Description="Database tier: PostgreSQL from web",
        VpcId=vpc_id,
        TagSpecifications=_spec("security-group", {"Name": "db", "team": "data"}),
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=db_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "UserIdGroupPairs": [{"GroupId": web_sg, "Description": "postgres from web tier"}],
            }
        ],
    )

    instances = {
        "web-1": _instance(
            ec2,
            "web-1",
            "demo-web-1",
            InstanceType="t3.small",
            SubnetId=subnet_a,
            PrivateIpAddress="10.0.0.10",
            SecurityGroupIds=[web_sg],
            Tags={
                "stackstate-identifier": "urn:host:/web-1.demo.internal",
                "stackstate-environment": "production",
                "team": "storefront",
            },
        ),
        "web-2": _instance(
            ec2,
            "web-2",
            "demo-web-2",
            InstanceType="t3.small",
            SubnetId=subnet_b,
            PrivateIpAddress="10.0.16.10",
            SecurityGroupIds=[web_sg],
            Tags={"stackstate-environment": "production", "team": "storefront"},
        ),
        "db-1": _instance(
            ec2,
            "db-1",
            "demo-db-1",
            InstanceType="r5.large",
            SubnetId=subnet_b,
            PrivateIpAddress="10.0.16.20",
            SecurityGroupIds=[db_sg],
            Tags={
                "stackstate-identifier": "urn:host:/db-1.demo.internal",
                "stackstate-environment": "staging",
                "team": "data",
            },
        ),
    }

    vgw_id = ec2.create_vpn_gateway(
        Type="ipsec.1", TagSpecifications=_spec("vpn-gateway", {"Name": "demo-vgw", "team": "network"})
    )["VpnGateway"]["VpnGatewayId"]
    ec2.attach_vpn_gateway(VpcId=vpc_id, VpnGatewayId=vgw_id)

    s3 = client("s3", region, endpoint, account)
    _bucket(s3, "demo-assets-eu", region, {"team": "storefront", "data-class": "public"})
    _bucket(s3, "demo-logs-eu", region)

    sqs = client("sqs", region, endpoint, account)
    dlq_url, dlq_arn = _queue(sqs, "orders-dlq", MessageRetentionPeriod="1209600")
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    orders_url, orders_arn = _queue(
        sqs,
        "orders",
        {"team": "storefront", "tier": "backend"},
        RedrivePolicy=redrive,
        VisibilityTimeout="60",
    )

    sns = client("sns", region, endpoint, account)
    topic_arn = sns.create_topic(Name="order-events", Tags=_tags(team="storefront", tier="backend"))[
        "TopicArn"
    ]
    _allow_topic(sqs, orders_url, orders_arn, topic_arn)
    sub_arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=orders_arn)["SubscriptionArn"]

    out.update(
        vpc_id=vpc_id,
        subnet_ids={f"{region}a": subnet_a, f"{region}b": subnet_b},
        security_group_ids={"web": web_sg, "db": db_sg},
        vpn_gateway_id=vgw_id,
    )
    out["instance_ids"].update(instances)
    out["buckets"].update({"demo-assets-eu": region, "demo-logs-eu": region})
    out["queue_urls"].update({"orders-dlq": dlq_url, "orders": orders_url})
    out["queue_arns"].update({"orders-dlq": dlq_arn, "orders": orders_arn})
    out["topic_arns"]["order-events"] = topic_arn
    out["subscription_arns"]["order-events"] = sub_arn


def _seed_second_region(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Create the us-east-1 part of the estate: S3 bucket, audit queue, alerts topic, one instance."""
    region = SECOND_REGION
    s3 = client("s3", region, endpoint, account)
    _bucket(s3, "demo-assets-us", region, {"team": "storefront"})

    sqs = client("sqs", region, endpoint, account)
    audit_url, audit_arn = _queue(sqs, "audit")
    sns = client("sns", region, endpoint, account)
    topic_arn = sns.create_topic(Name="alerts")["TopicArn"]
    _allow_topic(sqs, audit_url, audit_arn, topic_arn)
    sub_arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=audit_arn)["SubscriptionArn"]

    ec2 = client("ec2", region, endpoint, account)
    ops_id = _instance(ec2, "ops-1", "demo-ops-1", InstanceType="t3.micro", Tags={"team": "platform"})
    default_vpc = ec2.describe_instances(InstanceIds=[ops_id])["Reservations"][0]["Instances"][0]["VpcId"]

    out["default_vpc_id_us"] = default_vpc
    out["instance_ids"]["ops-1"] = ops_id
    out["buckets"]["demo-assets-us"] = region
    out["queue_urls"]["audit"] = audit_url
    out["queue_arns"]["audit"] = audit_arn
    out["topic_arns"]["alerts"] = topic_arn
    out["subscription_arns"]["alerts"] = sub_arn


def seed_estate(endpoint: str, account: str = DEFAULT_ACCOUNT) -> dict[str, object]:
    """Create the demo estate in eu-west-1 and us-east-1 and return the ids of what was created.

    Names, CIDRs, private IPs and ClientTokens are fixed, so after ``reset(endpoint, seed=N)``
    the returned ids are identical run to run. Keys: account, regions, ami_id, vpc_id,
    subnet_ids (by AZ), security_group_ids (by name), instance_ids (by Name tag),
    vpn_gateway_id, default_vpc_id_us, buckets (name -> region), queue_urls, queue_arns,
    topic_arns, subscription_arns (by queue/topic name).
    """
    out: dict[str, Any] = {
        "account": account,
        "regions": [MAIN_REGION, SECOND_REGION],
        "ami_id": AMI_ID,
        "instance_ids": {},
        "buckets": {},
        "queue_urls": {},
        "queue_arns": {},
        "topic_arns": {},
        "subscription_arns": {},
    }
    _seed_main_region(endpoint, account, out)
    _seed_second_region(endpoint, account, out)
    return out


def _short(region: str) -> str:
    """Return a compact region code for names, e.g. ``eu-west-1`` -> ``euw1``."""
    parts = region.split("-")
    return parts[0] + "".join(part[0] for part in parts[1:-1]) + parts[-1]


def _split(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` by ``weights``; rounding leftovers go to the first key."""
    counts = {key: int(total * weight) for key, weight in weights.items()}
    first = next(iter(counts))
    counts[first] += total - sum(counts.values())
    return counts


_BULK_WEIGHTS = {"queues": 0.36, "topics": 0.26, "buckets": 0.13, "groups": 0.13, "subnets": 0.12}
_MAX_SUBNETS_PER_REGION = 240  # /24s left in the bulk /16 after the /20 for instances


def _create_one(call: Callable[..., Any], **kwargs: Any) -> int:
    """Run one create call and count it as one resource."""
    call(**kwargs)
    return 1


def _run_fleet(ec2: Any, count: int, **kwargs: Any) -> int:
    """Launch ``count`` instances in one run_instances call and return how many started."""
    reservation = ec2.run_instances(ImageId=AMI_ID, MinCount=count, MaxCount=count, **kwargs)
    return len(reservation["Instances"])


def _region_share(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` near-equal integers."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def seed_bulk(
    endpoint: str,
    resources: int = 2000,
    regions: Sequence[str] = (MAIN_REGION, SECOND_REGION),
    *,
    account: str = DEFAULT_ACCOUNT,
    workers: int = 8,
) -> int:
    """Create at least ``resources`` cheap tagged resources spread over ``regions``; return the count.

    Per region: one /16 VPC and a /20 subnet holding a share of ~100 instances (run_instances in
    batches of 100), then /24 subnets, security groups, SQS queues, SNS topics and S3 buckets.
    Names are deterministic; ids are not when ``workers > 1`` (moto draws them in arrival order).
    """
    regions = list(regions)
    instances_total = min(100, resources // 20)
    rest = max(0, resources - instances_total - 2 * len(regions))  # 2 = bulk VPC + fleet subnet
    counts = _split(rest, _BULK_WEIGHTS)
    subnet_cap = _MAX_SUBNETS_PER_REGION * len(regions)
    if counts["subnets"] > subnet_cap:
        counts["queues"] += counts["subnets"] - subnet_cap
        counts["subnets"] = subnet_cap
    shares = {kind: _region_share(total, len(regions)) for kind, total in counts.items()}
    fleet_shares = _region_share(instances_total, len(regions))

    created = 0
    tasks: list[partial[int]] = []
    for index, region in enumerate(regions):
        code = _short(region)
        ec2 = client("ec2", region, endpoint, account)
        sqs = client("sqs", region, endpoint, account)
        sns = client("sns", region, endpoint, account)
        s3 = client("s3", region, endpoint, account)
        base = {"bulk": "true", "region-code": code}

        vpc_id = ec2.create_vpc(
            CidrBlock="10.200.0.0/16", TagSpecifications=_spec("vpc", {"Name": f"bulk-{code}", **base})
        )["Vpc"]["VpcId"]
        fleet_subnet = ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock="10.200.0.0/20",
            TagSpecifications=_spec("subnet", {"Name": f"bulk-{code}-fleet", **base}),
        )["Subnet"]["SubnetId"]
        created += 2

        for batch in range(0, fleet_shares[index], 100):
            tasks.append(
                partial(
                    _run_fleet,
                    ec2,
                    min(100, fleet_shares[index] - batch),
                    InstanceType="t3.nano",
                    SubnetId=fleet_subnet,
                    ClientToken=f"bulk-{code}-fleet-{batch}",
                    TagSpecifications=_spec(
                        "instance", {"Name": f"bulk-{code}-fleet", "team": "fleet", **base}
                    ),
                )
            )
        for i in range(shares["subnets"][index]):
            tasks.append(
                partial(
                    _create_one,
                    ec2.create_subnet,
                    VpcId=vpc_id,
                    CidrBlock=f"10.200.{16 + i}.0/24",
                    TagSpecifications=_spec("subnet", {"Name": f"bulk-{code}-subnet-{i:04d}", **base}),
                )
            )
        for i in range(shares["groups"][index]):
            name = f"bulk-{code}-sg-{i:04d}"
            tasks.append(
                partial(
                    _create_one,
                    ec2.create_security_group,
                    GroupName=name,
                    Description=f"bulk group {name}",
                    VpcId=vpc_id,
                    TagSpecifications=_spec(
                        "security-group", {"Name": name, "team": f"team-{i % 8}", **base}
                    ),
                )
            )
        for i in range(shares["queues"][index]):
            tags = {"team": f"team-{i % 8}", **base}
            tasks.append(
                partial(_create_one, sqs.create_queue, QueueName=f"bulk-{code}-queue-{i:05d}", tags=tags)
            )
        for i in range(shares["topics"][index]):
            tags = {"team": f"team-{i % 8}", **base}
            tasks.append(
                partial(_create_one, sns.create_topic, Name=f"bulk-{code}-topic-{i:05d}", Tags=_tags(**tags))
            )
        for i in range(shares["buckets"][index]):
            tags = {"team": f"team-{i % 8}", **base}
            tasks.append(
                partial(
                    _create_one, _bucket, s3=s3, name=f"bulk-{code}-bucket-{i:05d}", region=region, tags=tags
                )
            )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        created += sum(pool.map(lambda task: task(), tasks))
    return created


def main(argv: list[str] | None = None) -> int:
    """Reset the moto server, seed the demo estate (plus optional bulk load) and print a summary."""
    parser = argparse.ArgumentParser(prog="python -m demo.seed", description=__doc__)
    parser.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--bulk", type=int, default=0, metavar="N", help="also create N bulk resources")
    parser.add_argument("--seed", type=int, default=42, help="moto id seed applied after the reset")
    parser.add_argument("--workers", type=int, default=8, help="client threads for --bulk")
    args = parser.parse_args(argv)

    started = time.monotonic()
    reset(args.endpoint, seed=args.seed)
    estate = seed_estate(args.endpoint)
    estate_s = time.monotonic() - started
    sizes = {
        key: len(cast(dict, estate[key])) for key in ("instance_ids", "buckets", "queue_urls", "topic_arns")
    }
    summary = (
        f"seeded demo estate at {args.endpoint}: vpc {estate['vpc_id']}, {sizes['instance_ids']} instances, "
        f"{sizes['buckets']} buckets, {sizes['queue_urls']} queues, {sizes['topic_arns']} topics "
        f"in {estate_s:.1f}s"
    )
    if args.bulk:
        bulk_started = time.monotonic()
        count = seed_bulk(args.endpoint, args.bulk, workers=args.workers)
        summary += f"; bulk: {count} resources in {time.monotonic() - bulk_started:.1f}s"
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
