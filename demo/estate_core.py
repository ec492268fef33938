"""The original core of the demo estate: EC2 network, instances and VPN gateway, S3, SQS, SNS.

These run first, in this order, so their ids stay what earlier recordings (``cassettes/estate.json``) hold.
"""

from __future__ import annotations

import json
from typing import Any

from demo.common import (
    MAIN_REGION,
    SECOND_REGION,
    allow_topic,
    bucket,
    client,
    instance,
    queue,
    spec,
    tags,
)


def seed_main_region(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Create the eu-west-1 part of the estate: VPC, subnets, SGs, instances, VGW, S3, SQS, SNS."""
    region = MAIN_REGION
    ec2 = client("ec2", region, endpoint, account)
    vpc_id = ec2.create_vpc(
        CidrBlock="10.0.0.0/16", TagSpecifications=spec("vpc", {"Name": "demo-vpc", "team": "platform"})
    )["Vpc"]["VpcId"]
    subnet_a = ec2.create_subnet(
        VpcId=vpc_id,
        CidrBlock="10.0.0.0/20",
        AvailabilityZone=f"{region}a",
        TagSpecifications=spec("subnet", {"Name": "demo-web-a", "tier": "web"}),
    )["Subnet"]["SubnetId"]
    subnet_b = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.16.0/20", AvailabilityZone=f"{region}b")[
        "Subnet"
    ]["SubnetId"]

    web_sg = ec2.create_security_group(
        GroupName="web",
        Description="Web tier: HTTP(S) from anywhere",
        VpcId=vpc_id,
        TagSpecifications=spec("security-group", {"Name": "web", "team": "storefront"}),
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
        TagSpecifications=spec("security-group", {"Name": "db", "team": "data"}),
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
        "web-1": instance(
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
        "web-2": instance(
            ec2,
            "web-2",
            "demo-web-2",
            InstanceType="t3.small",
            SubnetId=subnet_b,
            PrivateIpAddress="10.0.16.10",
            SecurityGroupIds=[web_sg],
            Tags={"stackstate-environment": "production", "team": "storefront"},
        ),
        "db-1": instance(
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
        Type="ipsec.1", TagSpecifications=spec("vpn-gateway", {"Name": "demo-vgw", "team": "network"})
    )["VpnGateway"]["VpnGatewayId"]
    ec2.attach_vpn_gateway(VpcId=vpc_id, VpnGatewayId=vgw_id)

    s3 = client("s3", region, endpoint, account)
    bucket(s3, "demo-assets-eu", region, {"team": "storefront", "data-class": "public"})
    bucket(s3, "demo-logs-eu", region)

    sqs = client("sqs", region, endpoint, account)
    dlq_url, dlq_arn = queue(sqs, "orders-dlq", MessageRetentionPeriod="1209600")
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    orders_url, orders_arn = queue(
        sqs,
        "orders",
        {"team": "storefront", "tier": "backend"},
        RedrivePolicy=redrive,
        VisibilityTimeout="60",
    )

    sns = client("sns", region, endpoint, account)
    topic_arn = sns.create_topic(Name="order-events", Tags=tags(team="storefront", tier="backend"))[
        "TopicArn"
    ]
    allow_topic(sqs, orders_url, orders_arn, topic_arn)
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


def seed_second_region(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Create the us-east-1 part of the estate: S3 bucket, audit queue, alerts topic, one instance."""
    region = SECOND_REGION
    s3 = client("s3", region, endpoint, account)
    bucket(s3, "demo-assets-us", region, {"team": "storefront"})

    sqs = client("sqs", region, endpoint, account)
    audit_url, audit_arn = queue(sqs, "audit")
    sns = client("sns", region, endpoint, account)
    topic_arn = sns.create_topic(Name="alerts")["TopicArn"]
    allow_topic(sqs, audit_url, audit_arn, topic_arn)
    sub_arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=audit_arn)["SubscriptionArn"]

    ec2 = client("ec2", region, endpoint, account)
    ops_id = instance(ec2, "ops-1", "demo-ops-1", InstanceType="t3.micro", Tags={"team": "platform"})
    default_vpc = ec2.describe_instances(InstanceIds=[ops_id])["Reservations"][0]["Instances"][0]["VpcId"]

    out["default_vpc_id_us"] = default_vpc
    out["instance_ids"]["ops-1"] = ops_id
    out["buckets"]["demo-assets-us"] = region
    out["queue_urls"]["audit"] = audit_url
    out["queue_arns"]["audit"] = audit_arn
    out["topic_arns"]["alerts"] = topic_arn
    out["subscription_arns"]["alerts"] = sub_arn
