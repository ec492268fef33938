"""Event rules: one realistic event per rule of the shipped mappings, and exactly what each one asks for.

Each `detail` is built from the botocore shapes of its call: CloudTrail's requestParameters are the input
members and responseElements the output members, first letter lower-cased. The service-specific forms are
CloudTrail's own: EC2 uses its XML names (`vpcId`, `instancesSet: {items: [...]}`) and logs newer calls
wrapped (`CreateNatGatewayResponse`); RDS and Redshift log the answer's single member unwrapped; S3 logs
`bucketName`; Lambda event names carry the API version (`UpdateFunctionCode20150331v2`).

Each sample goes through the engine's own matcher, `engine.events.eventbridge.Rules`, as an EventBridge
envelope: an envelope of detail-type "AWS API Call via CloudTrail" matches a rule on eventSource, eventName
and, when the rule sets one, apiVersion; any other detail-type matches on the envelope's source. `ids` gives
one id or a list, in the form of the resource's `id`; a delete removes `delete_id` (default: the id), which
must be the external id the same resource gives an item of that id; a change lands in the unit of its type's
scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import botocore.session
import pytest

from engine.events.eventbridge import Change, Rules, latest, prefixes
from engine.language.dialect import search
from engine.language.loader import CLOUDTRAIL, Mappings, load_mappings
from engine.language.samples import SampleEvent
from tests.language.test_mappings import add_to_queue, problems, write
from tests.support import shipped_samples

ACCOUNT = "123456789012"
REGION = "eu-west-1"
REGIONS = (REGION, "us-east-1", "global")  # the configured regions
STATE_CHANGE = "EC2 Instance State-change Notification"

# Root types that are not components: their edges come from a listing, they have no `get` and no rules.
RELATION_ONLY = {
    "lambda.event-source-mapping": "relation-only; a change to a mapping refreshes its function",
    "servicediscovery.service": "relation-only; no Cloud Map event reaches the collector",
}


@pytest.fixture(scope="module")
def shipped() -> Mappings:
    return load_mappings()


@dataclass(frozen=True)
class Sample:
    label: str
    detail: dict
    expected: dict[tuple[str, str], list[str]]  # (resource key, refresh|delete) -> the ids, in order
    detail_type: str = CLOUDTRAIL
    source: str = ""  # the envelope's source, for detail-types other than CloudTrail's


def call(source: str, name: str, request: Any = None, response: Any = None, **extra: Any) -> dict:
    """A CloudTrail record as EventBridge delivers it under `detail`."""
    return {
        "eventVersion": "1.09",
        "eventTime": "2024-05-02T10:15:00Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": extra.pop("awsRegion", REGION),
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": request,
        "responseElements": response,
        "eventType": "AwsApiCall",
        "recipientAccountId": ACCOUNT,
        **extra,
    }


def ref(key: str, *ids: str) -> tuple[tuple[str, str], list[str]]:
    return (key, "refresh"), list(ids)


def delete(key: str, *ids: str) -> tuple[tuple[str, str], list[str]]:
    return (key, "delete"), list(ids)


def sample(label: str, detail: dict, *expected: tuple[tuple[str, str], list[str]], **kw: str) -> Sample:
    return Sample(label, detail, dict(expected), **kw)


def items(*values: dict) -> dict:
    """An EC2 list as CloudTrail writes it: `{items: [...]}`."""
    return {"items": list(values)}


# --- ids used across samples ---------------------------------------------------------------------

ARN = f"{REGION}:{ACCOUNT}"
I1, I2 = "i-0a1b2c3d4e5f60718", "i-0fedcba9876543210"
SG, VPC, SUBNET = "sg-0123456789abcdef0", "vpc-0a1b2c3d4e5f67890", "subnet-0f1e2d3c4b5a69788"
VGW, NAT, VOL = "vgw-0e1d2c3b4a5968776", "nat-0a9b8c7d6e5f40312", "vol-0a1b2c3d4e5f67890"
CLUSTER = f"arn:aws:ecs:{ARN}:cluster/shop"
LB = f"arn:aws:elasticloadbalancing:{ARN}:loadbalancer/app/web/50dc6c495c0c9188"
LISTENER = f"arn:aws:elasticloadbalancing:{ARN}:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
TG = f"arn:aws:elasticloadbalancing:{ARN}:targetgroup/web/73e2d6bc24d8a067"
DB = f"arn:aws:rds:{ARN}:db:orders-1"
DB_CLUSTER = f"arn:aws:rds:{ARN}:cluster:orders"
STACK = f"arn:aws:cloudformation:{ARN}:stack/shop/7f59c500-0869-11ef-9c1d-0a2b3c4d5e6f"
TOPIC = f"arn:aws:sns:{ARN}:orders"
SUBSCRIPTION = f"{TOPIC}:8a21d249-4329-4871-acc6-7be709c6ea7f"
QUEUE = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/orders"
MACHINE = f"arn:aws:states:{ARN}:stateMachine:checkout"
ACTIVITY = f"arn:aws:states:{ARN}:activity:approve"
FUNCTION = f"arn:aws:lambda:{ARN}:function:resize"
ESM = "14e0db71-1d8c-4d8e-8f3e-0a1b2c3d4e5f"
ZONE = "Z1D633PJN98FT9"
DATE = "May 2, 2024, 10:15:00 AM"

EC2, ECS, ELB = "ec2.amazonaws.com", "ecs.amazonaws.com", "elasticloadbalancing.amazonaws.com"
RDS, LAMBDA, STATES = "rds.amazonaws.com", "lambda.amazonaws.com", "states.amazonaws.com"
APIGW, R53, R53D = "apigateway.amazonaws.com", "route53.amazonaws.com", "route53domains.amazonaws.com"
ASG, CFN, DDB = "autoscaling.amazonaws.com", "cloudformation.amazonaws.com", "dynamodb.amazonaws.com"
FIREHOSE, KINESIS, REDSHIFT = "firehose.amazonaws.com", "kinesis.amazonaws.com", "redshift.amazonaws.com"
S3, SNS, SQS = "s3.amazonaws.com", "sns.amazonaws.com", "sqs.amazonaws.com"
CLASSIC, V2, GLOBAL = {"apiVersion": "2012-06-01"}, {"apiVersion": "2015-12-01"}, {"awsRegion": "us-east-1"}
SG_RULE = {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "ipRanges": items({"cidrIp": "0.0.0.0/0"})}
TAGS = [{"key": "team", "value": "web"}]

SAMPLES = [
    # EC2 instances
    sample(
        "ec2-run-instances",
        call(EC2, "RunInstances", {"instancesSet": items({"imageId": "ami-0abc", "minCount": 2})},
             {"reservationId": "r-0123456789abcdef0", "ownerId": ACCOUNT,
              "instancesSet": items({"instanceId": I1, "instanceState": {"code": 0, "name": "pending"}},
                                    {"instanceId": I2, "instanceState": {"code": 0, "name": "pending"}})}),
        ref("ec2.instance", I1, I2)),
    sample(
        "ec2-attach-volume",
        call(EC2, "AttachVolume", {"volumeId": VOL, "instanceId": I1, "device": "/dev/sdf"},
             {"volumeId": VOL, "instanceId": I1, "device": "/dev/sdf", "status": "attaching"}),
        ref("ec2.instance", I1)),
    sample(
        "ec2-modify-instance-attribute",
        call(EC2, "ModifyInstanceAttribute", {"instanceId": I1, "instanceType": {"value": "t3.large"}},
             {"_return": True}),
        ref("ec2.instance", I1)),
    sample(
        "ec2-monitor-instances",
        call(EC2, "MonitorInstances", {"instancesSet": items({"instanceId": I2})},
             {"instancesSet": items({"instanceId": I2, "monitoring": {"state": "pending"}})}),
        ref("ec2.instance", I2)),
    sample(
        "ec2-state-change-running",  {"instance-id": I1, "state": "running"},
        ref("ec2.instance", I1), detail_type=STATE_CHANGE, source="aws.ec2"),
    sample(
        "ec2-state-change-terminated",  {"instance-id": I2, "state": "terminated"},
        delete("ec2.instance", I2), detail_type=STATE_CHANGE, source="aws.ec2"),
    # One CreateTags call names resources of every type: each type takes the ids with its own prefix.
    sample(
        "ec2-create-tags-on-every-type",
        call(EC2, "CreateTags",
             {"resourcesSet": items(*({"resourceId": r}
                                      for r in (I1, SG, VPC, SUBNET, VGW, NAT, "igw-0c1d2e3f4a5b6c7d8"))),
              "tagSet": items({"key": "team", "value": "payments"})},
             {"_return": True}),
        ref("ec2.instance", I1), ref("ec2.security-group", SG), ref("ec2.vpc", VPC),
        ref("ec2.subnet", SUBNET), ref("ec2.vpn-gateway", VGW), ref("ec2.nat-gateway", NAT)),
    # Security groups. A default-VPC group may be named by groupName only: the answer has the id.
    sample(
        "ec2-authorize-ingress-by-group-name",
        call(EC2, "AuthorizeSecurityGroupIngress", {"groupName": "default", "ipPermissions": items(SG_RULE)},
             {"_return": True, "securityGroupRuleSet": items({"groupId": SG, "groupOwnerId": ACCOUNT,
                                                              "securityGroupRuleId": "sgr-0b1c2d3e4f5a6b7c8",
                                                              "isEgress": False, "ipProtocol": "tcp"})}),
        ref("ec2.security-group", SG)),
    sample(
        "ec2-revoke-egress",
        call(EC2, "RevokeSecurityGroupEgress", {"groupId": SG, "ipPermissions": items(SG_RULE)},
             {"_return": True, "revokedSecurityGroupRuleSet": items({"groupId": SG, "isEgress": True})}),
        ref("ec2.security-group", SG)),
    sample(
        "ec2-modify-security-group-rules",
        call(EC2, "ModifySecurityGroupRules",
             {"ModifySecurityGroupRulesRequest": {"GroupId": SG, "SecurityGroupRule": {
                 "SecurityGroupRuleId": "sgr-0b1c2d3e4f5a6b7c8", "tag": 1,
                 "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                       "CidrIpv4": "10.0.0.0/8"}}}},
             {"ModifySecurityGroupRulesResponse": {"requestId": "7d9b4d4a-1c9e-4a2e-9b7e-000000000001",
                                                   "return": True}}),
        ref("ec2.security-group", SG)),
    sample(
        "ec2-create-security-group",
        call(EC2, "CreateSecurityGroup", {"groupName": "web", "groupDescription": "web tier", "vpcId": VPC},
             {"_return": True, "groupId": SG, "securityGroupArn": f"arn:aws:ec2:{ARN}:security-group/{SG}"}),
        ref("ec2.security-group", SG)),
    sample(
        "ec2-delete-security-group",
        call(EC2, "DeleteSecurityGroup", {"groupId": SG}, {"_return": True, "groupId": SG}),
        delete("ec2.security-group", SG)),
    # VPCs
    sample(
        "ec2-create-vpc",
        call(EC2, "CreateVpc", {"cidrBlock": "10.0.0.0/16", "instanceTenancy": "default",
                                "amazonProvidedIpv6CidrBlock": False},
             {"vpc": {"vpcId": VPC, "state": "pending", "ownerId": ACCOUNT, "cidrBlock": "10.0.0.0/16",
                      "dhcpOptionsId": "dopt-0a1b2c3d", "instanceTenancy": "default", "isDefault": False,
                      "tagSet": {}}}),
        ref("ec2.vpc", VPC)),
    sample(
        "ec2-modify-vpc-attribute",
        call(EC2, "ModifyVpcAttribute", {"vpcId": VPC, "enableDnsHostnames": {"value": True}},
             {"_return": True}),
        ref("ec2.vpc", VPC)),
    sample(
        "ec2-delete-vpc",
        call(EC2, "DeleteVpc", {"vpcId": VPC}, {"_return": True}),
        delete("ec2.vpc", VPC)),
    # Subnets
    sample(
        "ec2-create-subnet",
        call(EC2, "CreateSubnet", {"vpcId": VPC, "cidrBlock": "10.0.1.0/24", "availabilityZoneId": "euw1"},
             {"subnet": {"subnetId": SUBNET, "state": "available", "vpcId": VPC, "cidrBlock": "10.0.1.0/24",
                         "availabilityZone": "eu-west-1a", "availableIpAddressCount": 251,
                         "subnetArn": f"arn:aws:ec2:{ARN}:subnet/{SUBNET}"}}),
        ref("ec2.subnet", SUBNET)),
    sample(
        "ec2-modify-subnet-attribute",
        call(EC2, "ModifySubnetAttribute", {"subnetId": SUBNET, "mapPublicIpOnLaunch": {"value": True}},
             {"_return": True}),
        ref("ec2.subnet", SUBNET)),
    sample(
        "ec2-delete-tags-on-a-subnet",
        call(EC2, "DeleteTags",
             {"resourcesSet": items({"resourceId": SUBNET}), "tagSet": items({"key": "env"})},
             {"_return": True}),
        ref("ec2.subnet", SUBNET)),
    sample(
        "ec2-delete-subnet",
        call(EC2, "DeleteSubnet", {"subnetId": SUBNET}, {"_return": True}),
        delete("ec2.subnet", SUBNET)),
    # VPN gateways
    sample(
        "ec2-create-vpn-gateway",
        call(EC2, "CreateVpnGateway", {"type": "ipsec.1", "amazonSideAsn": 64512},
             {"vpnGateway": {"vpnGatewayId": VGW, "state": "available", "type": "ipsec.1",
                             "attachments": {}, "amazonSideAsn": 64512}}),
        ref("ec2.vpn-gateway", VGW)),
    sample(
        "ec2-attach-vpn-gateway",
        call(EC2, "AttachVpnGateway", {"vpcId": VPC, "vpnGatewayId": VGW},
             {"attachment": {"vpcId": VPC, "state": "attaching"}}),
        ref("ec2.vpn-gateway", VGW)),
    sample(
        "ec2-delete-vpn-gateway",
        call(EC2, "DeleteVpnGateway", {"vpnGatewayId": VGW}, {"_return": True}),
        delete("ec2.vpn-gateway", VGW)),
    # NAT gateways: logged wrapped in {Operation}Request / {Operation}Response.
    sample(
        "ec2-create-nat-gateway",
        call(EC2, "CreateNatGateway",
             {"CreateNatGatewayRequest": {"SubnetId": SUBNET, "AllocationId": "eipalloc-0a1b2c3d4e5f67890",
                                          "ConnectivityType": "public"}},
             {"CreateNatGatewayResponse": {
                 "xmlns": "http://ec2.amazonaws.com/doc/2016-11-15/",
                 "requestId": "d615c5f3-4ad2-40ba-97d7-951d050607f6",
                 "natGateway": {"natGatewayId": NAT, "subnetId": SUBNET, "vpcId": VPC, "state": "pending",
                                "createTime": "2024-05-02T10:15:00.000Z"}}}),
        ref("ec2.nat-gateway", NAT)),
    sample(
        "ec2-delete-nat-gateway",
        call(EC2, "DeleteNatGateway", {"DeleteNatGatewayRequest": {"NatGatewayId": NAT}},
             {"DeleteNatGatewayResponse": {"xmlns": "http://ec2.amazonaws.com/doc/2016-11-15/",
                                           "requestId": "5d3e1e0a-6b53-4a1f-8f0b-000000000002",
                                           "natGatewayId": NAT}}),
        delete("ec2.nat-gateway", NAT)),
    # ECS: every service or task change re-collects its cluster.
    sample(
        "ecs-create-cluster",
        call(ECS, "CreateCluster", {"clusterName": "shop"},
             {"cluster": {"clusterArn": CLUSTER, "clusterName": "shop", "status": "ACTIVE"}}),
        ref("ecs.cluster", CLUSTER)),
    sample(
        "ecs-update-service",
        call(ECS, "UpdateService", {"cluster": "shop", "service": "front", "desiredCount": 3},
             {"service": {"serviceArn": f"arn:aws:ecs:{ARN}:service/shop/front", "serviceName": "front",
                          "clusterArn": CLUSTER, "desiredCount": 3, "status": "ACTIVE"}}),
        ref("ecs.cluster", CLUSTER)),
    sample(
        "ecs-run-task",
        call(ECS, "RunTask", {"cluster": "shop", "taskDefinition": "batch:4", "count": 2},
             {"tasks": [{"taskArn": f"arn:aws:ecs:{ARN}:task/shop/{n}", "clusterArn": CLUSTER,
                         "lastStatus": "PROVISIONING"} for n in ("a1b2c3", "d4e5f6")], "failures": []}),
        ref("ecs.cluster", CLUSTER)),
    sample(
        "ecs-stop-task",
        call(ECS, "StopTask", {"cluster": CLUSTER, "task": "a1b2c3", "reason": "scale in"},
             {"task": {"taskArn": f"arn:aws:ecs:{ARN}:task/shop/a1b2c3", "clusterArn": CLUSTER,
                       "desiredStatus": "STOPPED"}}),
        ref("ecs.cluster", CLUSTER)),
    sample(
        "ecs-tag-service-long-arn-format",
        call(ECS, "TagResource", {"resourceArn": f"arn:aws:ecs:{ARN}:service/shop/front", "tags": TAGS}, {}),
        ref("ecs.cluster", CLUSTER)),
    sample(
        "ecs-tag-service-short-arn-format",  # the old short format does not name the cluster
        call(ECS, "TagResource", {"resourceArn": f"arn:aws:ecs:{ARN}:service/front", "tags": TAGS}, {})),
    sample(
        "ecs-delete-cluster",
        call(ECS, "DeleteCluster", {"cluster": "shop"},
             {"cluster": {"clusterArn": CLUSTER, "clusterName": "shop", "status": "INACTIVE"}}),
        delete("ecs.cluster", CLUSTER)),
    # Classic and v2 load balancers share a source and names: apiVersion tells them apart.
    sample(
        "elb-classic-create-load-balancer",
        call(ELB, "CreateLoadBalancer",
             {"loadBalancerName": "legacy-web", "subnets": [SUBNET], "securityGroups": [SG],
              "listeners": [{"protocol": "HTTP", "loadBalancerPort": 80, "instanceProtocol": "HTTP",
                             "instancePort": 80}]},
             {"dNSName": f"legacy-web-1234567890.{REGION}.elb.amazonaws.com"}, **CLASSIC),
        ref("elb.load-balancer", "legacy-web")),
    sample(
        "elb-classic-add-tags",
        call(ELB, "AddTags", {"loadBalancerNames": ["legacy-web", "legacy-api"], "tags": TAGS}, **CLASSIC),
        ref("elb.load-balancer", "legacy-web", "legacy-api")),
    sample(
        "elb-classic-delete-load-balancer",
        call(ELB, "DeleteLoadBalancer", {"loadBalancerName": "legacy-web"}, None, **CLASSIC),
        delete("elb.load-balancer", "legacy-web")),
    sample(
        "elbv2-create-load-balancer",
        call(ELB, "CreateLoadBalancer", {"name": "web", "subnets": [SUBNET], "type": "application"},
             {"loadBalancers": [{"loadBalancerArn": LB, "loadBalancerName": "web", "type": "application",
                                 "scheme": "internet-facing", "vpcId": VPC,
                                 "state": {"code": "provisioning"}}]}, **V2),
        ref("elbv2.load-balancer", LB)),
    # A listener belongs to its load balancer, and attaches the target group it forwards to.
    sample(
        "elbv2-create-listener",
        call(ELB, "CreateListener",
             {"loadBalancerArn": LB, "protocol": "HTTP", "port": 80,
              "defaultActions": [{"type": "forward", "targetGroupArn": TG}]},
             {"listeners": [{"listenerArn": LISTENER, "loadBalancerArn": LB, "port": 80, "protocol": "HTTP",
                             "defaultActions": [{"type": "forward", "targetGroupArn": TG}]}]}, **V2),
        ref("elbv2.load-balancer", LB), ref("elbv2.target-group", TG)),
    sample(
        "elbv2-delete-listener",
        call(ELB, "DeleteListener", {"listenerArn": LISTENER}, None, **V2),
        ref("elbv2.load-balancer", LB)),
    sample(
        "elbv2-set-security-groups",
        call(ELB, "SetSecurityGroups", {"loadBalancerArn": LB, "securityGroups": [SG]},
             {"securityGroupIds": [SG]}, **V2),
        ref("elbv2.load-balancer", LB)),
    sample(
        "elbv2-add-tags-to-both-kinds",
        call(ELB, "AddTags", {"resourceArns": [LB, TG], "tags": TAGS}, None, **V2),
        ref("elbv2.load-balancer", LB), ref("elbv2.target-group", TG)),
    sample(
        "elbv2-delete-load-balancer",
        call(ELB, "DeleteLoadBalancer", {"loadBalancerArn": LB}, None, **V2),
        delete("elbv2.load-balancer", LB)),
    sample(
        "elbv2-create-target-group",
        call(ELB, "CreateTargetGroup", {"name": "web", "protocol": "HTTP", "port": 80, "vpcId": VPC},
             {"targetGroups": [{"targetGroupArn": TG, "targetGroupName": "web", "protocol": "HTTP",
                                "port": 80, "vpcId": VPC, "targetType": "instance"}]}, **V2),
        ref("elbv2.target-group", TG)),
    sample(
        "elbv2-register-targets",
        call(ELB, "RegisterTargets", {"targetGroupArn": TG, "targets": [{"id": I1, "port": 80}]}, None, **V2),
        ref("elbv2.target-group", TG)),
    sample(
        "elbv2-delete-target-group",
        call(ELB, "DeleteTargetGroup", {"targetGroupArn": TG}, None, **V2),
        delete("elbv2.target-group", TG)),
    # Streams
    sample(
        "firehose-update-destination",
        call(FIREHOSE, "UpdateDestination",
             {"deliveryStreamName": "clicks-to-s3", "currentDeliveryStreamVersionId": "1",
              "destinationId": "destinationId-000000000001",
              "extendedS3DestinationUpdate": {"bucketARN": "arn:aws:s3:::clicks-archive"}}, None),
        ref("firehose.delivery-stream", "clicks-to-s3")),
    sample(
        "firehose-delete-delivery-stream",
        call(FIREHOSE, "DeleteDeliveryStream", {"deliveryStreamName": "clicks-to-s3"}, None),
        delete("firehose.delivery-stream", "clicks-to-s3")),
    sample(
        "kinesis-create-stream",
        call(KINESIS, "CreateStream", {"streamName": "clicks", "shardCount": 2}, None),
        ref("kinesis.data-stream", "clicks")),
    sample(
        "kinesis-update-stream-mode",  # names the stream by ARN only
        call(KINESIS, "UpdateStreamMode", {"streamARN": f"arn:aws:kinesis:{ARN}:stream/clicks",
                                           "streamModeDetails": {"streamMode": "ON_DEMAND"}}, None),
        ref("kinesis.data-stream", "clicks")),
    sample(
        "kinesis-delete-stream",
        call(KINESIS, "DeleteStream", {"streamName": "clicks", "enforceConsumerDeletion": True}, None),
        delete("kinesis.data-stream", "clicks")),
    # Lambda: the id is the function NAME.
    sample(
        "lambda-update-function-code",
        call(LAMBDA, "UpdateFunctionCode20150331v2", {"functionName": "resize", "publish": True},
             {"functionName": "resize", "functionArn": f"{FUNCTION}:7", "runtime": "python3.12",
              "version": "7", "lastUpdateStatus": "InProgress"}),
        ref("lambda.function", "resize")),
    sample(
        "lambda-publish-version",
        call(LAMBDA, "PublishVersion20150331", {"functionName": FUNCTION},
             {"functionName": "resize", "functionArn": f"{FUNCTION}:8", "version": "8"}),
        ref("lambda.function", "resize")),
    sample(
        "lambda-create-alias",  # functionName as the caller gave it: here a qualified ARN
        call(LAMBDA, "CreateAlias20150331", {"functionName": f"{FUNCTION}:8", "name": "live",
                                             "functionVersion": "8"},
             {"aliasArn": f"{FUNCTION}:live", "name": "live", "functionVersion": "8"}),
        ref("lambda.function", "resize")),
    sample(
        "lambda-delete-event-source-mapping",
        call(LAMBDA, "DeleteEventSourceMapping20150331", {"uUID": ESM},
             {"uUID": ESM, "functionArn": FUNCTION, "state": "Deleting",
              "eventSourceArn": f"arn:aws:sqs:{ARN}:orders"}),
        ref("lambda.function", "resize")),
    sample(
        "lambda-tag-function",
        call(LAMBDA, "TagResource20170331v2", {"resource": FUNCTION, "tags": {"team": "media"}}, None),
        ref("lambda.function", "resize")),
    sample(
        "lambda-untag-event-source-mapping",  # tagged through the same call, but not a function
        call(LAMBDA, "UntagResource20170331v2",
             {"resource": f"arn:aws:lambda:{ARN}:event-source-mapping:{ESM}", "tagKeys": ["team"]}, None)),
    sample(
        "lambda-delete-function",
        call(LAMBDA, "DeleteFunction20150331", {"functionName": "resize"}, None),
        delete("lambda.function", "resize")),
    # RDS: responseElements is the DB instance / cluster itself.
    sample(
        "rds-modify-db-instance",
        call(RDS, "ModifyDBInstance", {"dBInstanceIdentifier": "orders-1", "dBInstanceClass": "db.r6g.large",
                                       "applyImmediately": True},
             {"dBInstanceIdentifier": "orders-1", "dBInstanceArn": DB, "dBInstanceStatus": "modifying",
              "engine": "postgres"}),
        ref("rds.instance", DB)),
    sample(
        "rds-create-db-instance-in-a-cluster",  # a new member also changes its cluster
        call(RDS, "CreateDBInstance", {"dBInstanceIdentifier": "orders-1", "dBClusterIdentifier": "orders",
                                       "engine": "aurora-postgresql", "dBInstanceClass": "db.r6g.large"},
             {"dBInstanceIdentifier": "orders-1", "dBInstanceArn": DB, "dBClusterIdentifier": "orders",
              "dBInstanceStatus": "creating", "engine": "aurora-postgresql"}),
        ref("rds.instance", DB), ref("rds.cluster", DB_CLUSTER)),
    sample(
        "rds-add-tags-to-instance",
        call(RDS, "AddTagsToResource", {"resourceName": DB, "tags": TAGS}, None),
        ref("rds.instance", DB)),
    sample(
        "rds-remove-tags-from-cluster",
        call(RDS, "RemoveTagsFromResource", {"resourceName": DB_CLUSTER, "tagKeys": ["team"]}, None),
        ref("rds.cluster", DB_CLUSTER)),
    sample(
        "rds-delete-db-instance",  # a standalone instance: no cluster to refresh
        call(RDS, "DeleteDBInstance", {"dBInstanceIdentifier": "orders-1", "skipFinalSnapshot": True},
             {"dBInstanceIdentifier": "orders-1", "dBInstanceArn": DB, "dBInstanceStatus": "deleting"}),
        delete("rds.instance", DB)),
    sample(
        "rds-modify-db-cluster",
        call(RDS, "ModifyDBCluster", {"dBClusterIdentifier": "orders", "backupRetentionPeriod": 14},
             {"dBClusterIdentifier": "orders", "dBClusterArn": DB_CLUSTER, "status": "available"}),
        ref("rds.cluster", DB_CLUSTER)),
    sample(
        "rds-delete-db-cluster",
        call(RDS, "DeleteDBCluster", {"dBClusterIdentifier": "orders", "skipFinalSnapshot": True},
             {"dBClusterIdentifier": "orders", "dBClusterArn": DB_CLUSTER, "status": "deleting"}),
        delete("rds.cluster", DB_CLUSTER)),
    # Redshift
    sample(
        "redshift-create-cluster",
        call(REDSHIFT, "CreateCluster",
             {"clusterIdentifier": "analytics", "nodeType": "ra3.xlplus", "masterUsername": "admin",
              "masterUserPassword": "HIDDEN_DUE_TO_SECURITY_REASONS"},
             {"clusterIdentifier": "analytics", "nodeType": "ra3.xlplus", "clusterStatus": "creating"}),
        ref("redshift.cluster", "analytics")),
    sample(
        "redshift-modify-cluster",
        call(REDSHIFT, "ModifyCluster", {"clusterIdentifier": "analytics", "numberOfNodes": 4},
             {"clusterIdentifier": "analytics", "clusterStatus": "available"}),
        ref("redshift.cluster", "analytics")),
    sample(
        "redshift-create-tags",
        call(REDSHIFT, "CreateTags", {"resourceName": f"arn:aws:redshift:{ARN}:cluster:analytics",
                                      "tags": TAGS}, None),
        ref("redshift.cluster", "analytics")),
    sample(
        "redshift-delete-cluster",
        call(REDSHIFT, "DeleteCluster", {"clusterIdentifier": "analytics", "skipFinalClusterSnapshot": True},
             {"clusterIdentifier": "analytics", "clusterStatus": "deleting"}),
        delete("redshift.cluster", "analytics")),
    # Route 53 is global: its calls are logged in us-east-1.
    sample(
        "route53-create-hosted-zone",
        call(R53, "CreateHostedZone", {"name": "shop.example.com", "callerReference": "2024-05-02-1"},
             {"hostedZone": {"id": f"/hostedzone/{ZONE}", "name": "shop.example.com.",
                             "callerReference": "2024-05-02-1", "config": {"privateZone": False}},
              "changeInfo": {"id": "/change/C2682N5HXP0BZ4", "status": "PENDING"},
              "location": f"https://route53.amazonaws.com/2013-04-01/hostedzone/{ZONE}"}, **GLOBAL),
        ref("route53.hostedzone", ZONE)),
    sample(
        "route53-change-resource-record-sets",
        call(R53, "ChangeResourceRecordSets",
             {"hostedZoneId": ZONE, "changeBatch": {"changes": [{"action": "UPSERT", "resourceRecordSet": {
                 "name": "www.shop.example.com", "type": "A", "tTL": 300,
                 "resourceRecords": [{"value": "192.0.2.44"}]}}]}},
             {"changeInfo": {"id": "/change/C2682N5HXP0BZ5", "status": "PENDING"}}, **GLOBAL),
        ref("route53.hostedzone", ZONE)),
    sample(
        "route53-update-hosted-zone-comment",
        call(R53, "UpdateHostedZoneComment", {"id": ZONE, "comment": "shop"},
             {"hostedZone": {"id": f"/hostedzone/{ZONE}", "name": "shop.example.com."}}, **GLOBAL),
        ref("route53.hostedzone", ZONE)),
    sample(
        "route53-change-tags-for-hosted-zone",
        call(R53, "ChangeTagsForResource",
             {"resourceType": "hostedzone", "resourceId": ZONE, "addTags": TAGS}, None, **GLOBAL),
        ref("route53.hostedzone", ZONE)),
    sample(
        "route53-change-tags-for-health-check",  # health checks are tagged through the same call
        call(R53, "ChangeTagsForResource", {"resourceType": "healthcheck", "removeTagKeys": ["team"],
                                            "resourceId": "abcdef11-2222-3333-4444-555555fedcba"},
             None, **GLOBAL)),
    sample(
        "route53-delete-hosted-zone",
        call(R53, "DeleteHostedZone", {"id": ZONE}, {"changeInfo": {"id": "/change/C1", "status": "PENDING"}},
             **GLOBAL),
        delete("route53.hostedzone", ZONE)),
    sample(
        "route53domains-update-domain-nameservers",
        call(R53D, "UpdateDomainNameservers",
             {"domainName": "example.com", "nameservers": [{"name": "ns-1.awsdns-01.org"}]},
             {"operationId": "0b370c79-faa4-40fe-94c8-000000000003"}, **GLOBAL),
        ref("route53domains.domain", "example.com")),
    sample(
        "route53domains-delete-domain",
        call(R53D, "DeleteDomain", {"domainName": "example.com"},
             {"operationId": "0b370c79-faa4-40fe-94c8-000000000004"}, **GLOBAL),
        delete("route53domains.domain", "example.com")),
    # S3, SNS, SQS
    sample(
        "s3-put-bucket-tagging",
        call(S3, "PutBucketTagging", {"bucketName": "clicks-archive", "tagging": "",
                                      "Host": "clicks-archive.s3.eu-west-1.amazonaws.com"}, None),
        ref("s3.bucket", "clicks-archive")),
    sample(
        "s3-delete-bucket",
        call(S3, "DeleteBucket", {"bucketName": "clicks-archive",
                                  "Host": "clicks-archive.s3.eu-west-1.amazonaws.com"}, None),
        delete("s3.bucket", "clicks-archive")),
    sample(
        "sns-create-topic",
        call(SNS, "CreateTopic", {"name": "orders"}, {"topicArn": TOPIC}),
        ref("sns.topic", TOPIC)),
    sample(
        "sns-subscribe",
        call(SNS, "Subscribe",
             {"topicArn": TOPIC, "protocol": "sqs", "endpoint": f"arn:aws:sqs:{ARN}:orders"},
             {"subscriptionArn": SUBSCRIPTION}),
        ref("sns.topic", TOPIC)),
    sample(
        "sns-unsubscribe",
        call(SNS, "Unsubscribe", {"subscriptionArn": SUBSCRIPTION}, None),
        ref("sns.topic", TOPIC)),
    sample(
        "sns-tag-resource",
        call(SNS, "TagResource", {"resourceArn": TOPIC, "tags": TAGS}, None),
        ref("sns.topic", TOPIC)),
    sample(
        "sns-delete-topic",
        call(SNS, "DeleteTopic", {"topicArn": TOPIC}, None),
        delete("sns.topic", TOPIC)),
    sample(
        "sqs-create-queue",
        call(SQS, "CreateQueue", {"queueName": "orders"}, {"queueUrl": QUEUE}),
        ref("sqs.queue", QUEUE)),
    sample(
        "sqs-tag-queue",
        call(SQS, "TagQueue", {"queueUrl": QUEUE, "tags": {"team": "orders"}}, None),
        ref("sqs.queue", QUEUE)),
    sample(
        "sqs-delete-queue",
        call(SQS, "DeleteQueue", {"queueUrl": QUEUE}, None),
        delete("sqs.queue", QUEUE)),
    # Step Functions: TagResource refreshes what its ARN names (the predecessor's bug sent state machines
    # to the activity handler).
    sample(
        "sfn-create-state-machine",
        call(STATES, "CreateStateMachine", {"name": "checkout", "roleArn": f"arn:aws:iam::{ACCOUNT}:role/s"},
             {"stateMachineArn": MACHINE, "creationDate": DATE}),
        ref("stepfunctions.state-machine", MACHINE)),
    sample(
        "sfn-update-state-machine",
        call(STATES, "UpdateStateMachine", {"stateMachineArn": MACHINE, "definition": "HIDDEN"},
             {"updateDate": DATE}),
        ref("stepfunctions.state-machine", MACHINE)),
    sample(
        "sfn-tag-state-machine",
        call(STATES, "TagResource", {"resourceArn": MACHINE, "tags": TAGS}, None),
        ref("stepfunctions.state-machine", MACHINE)),
    sample(
        "sfn-untag-activity",
        call(STATES, "UntagResource", {"resourceArn": ACTIVITY, "tagKeys": ["team"]}, None),
        ref("stepfunctions.activity", ACTIVITY)),
    sample(
        "sfn-delete-state-machine",
        call(STATES, "DeleteStateMachine", {"stateMachineArn": MACHINE}, None),
        delete("stepfunctions.state-machine", MACHINE)),
    sample(
        "sfn-create-activity",
        call(STATES, "CreateActivity", {"name": "approve"}, {"activityArn": ACTIVITY, "creationDate": DATE}),
        ref("stepfunctions.activity", ACTIVITY)),
    sample(
        "sfn-delete-activity",
        call(STATES, "DeleteActivity", {"activityArn": ACTIVITY}, None),
        delete("stepfunctions.activity", ACTIVITY)),
    # API Gateway: REST (v1) and HTTP/WebSocket (v2) APIs share a source and some names; v1 requests name
    # restApiId, v2 ones apiId.
    sample(
        "apigateway-create-rest-api",
        call(APIGW, "CreateRestApi", {"name": "shop", "endpointConfiguration": {"types": ["REGIONAL"]}},
             {"id": "a1b2c3d4e5", "name": "shop", "rootResourceId": "r00t1d", "createdDate": DATE,
              "apiKeySource": "HEADER"}),
        ref("apigateway.rest-api", "a1b2c3d4e5")),
    sample(
        "apigateway-create-deployment",
        call(APIGW, "CreateDeployment", {"restApiId": "a1b2c3d4e5", "stageName": "prod"},
             {"id": "dep123", "createdDate": DATE}),
        ref("apigateway.rest-api", "a1b2c3d4e5")),
    sample(
        "apigateway-tag-rest-api-stage",
        call(APIGW, "TagResource",
             {"resourceArn": f"arn:aws:apigateway:{REGION}::/restapis/a1b2c3d4e5/stages/prod",
              "tags": {"team": "web"}}),
        ref("apigateway.rest-api", "a1b2c3d4e5")),
    sample(
        "apigateway-delete-rest-api",
        call(APIGW, "DeleteRestApi", {"restApiId": "a1b2c3d4e5"}, None),
        delete("apigateway.rest-api", "a1b2c3d4e5")),
    sample(
        "apigatewayv2-create-api",
        call(APIGW, "CreateApi", {"name": "chat", "protocolType": "WEBSOCKET",
                                  "routeSelectionExpression": "$request.body.action"},
             {"apiId": "f6g7h8i9j0", "name": "chat", "protocolType": "WEBSOCKET",
              "apiEndpoint": f"wss://f6g7h8i9j0.execute-api.{REGION}.amazonaws.com"}),
        ref("apigatewayv2.api", "f6g7h8i9j0")),
    sample(
        "apigatewayv2-create-stage",
        call(APIGW, "CreateStage", {"apiId": "f6g7h8i9j0", "stageName": "prod", "autoDeploy": True},
             {"stageName": "prod", "autoDeploy": True, "createdDate": "2024-05-02T10:16:00Z"}),
        ref("apigatewayv2.api", "f6g7h8i9j0")),
    sample(
        "apigatewayv2-untag-api",
        call(APIGW, "UntagResource", {"resourceArn": f"arn:aws:apigateway:{REGION}::/apis/f6g7h8i9j0",
                                      "tagKeys": ["team"]}, None),
        ref("apigatewayv2.api", "f6g7h8i9j0")),
    sample(
        "apigatewayv2-delete-api",
        call(APIGW, "DeleteApi", {"apiId": "f6g7h8i9j0"}, None),
        delete("apigatewayv2.api", "f6g7h8i9j0")),
    # Auto Scaling
    sample(
        "autoscaling-attach-target-groups",
        call(ASG, "AttachLoadBalancerTargetGroups",
             {"autoScalingGroupName": "web-asg", "targetGroupARNs": [TG]}),
        ref("autoscaling.group", "web-asg")),
    sample(
        "autoscaling-create-or-update-tags",
        call(ASG, "CreateOrUpdateTags",
             {"tags": [{"resourceId": "web-asg", "resourceType": "auto-scaling-group", "key": "env",
                        "value": "prod", "propagateAtLaunch": True}]}, None),
        ref("autoscaling.group", "web-asg")),
    sample(
        "autoscaling-delete-group",
        call(ASG, "DeleteAutoScalingGroup", {"autoScalingGroupName": "web-asg", "forceDelete": True}, None),
        delete("autoscaling.group", "web-asg")),
    # CloudFormation: the id is the StackId; a bare stack name cannot be turned into one.
    sample(
        "cloudformation-create-stack",
        call(CFN, "CreateStack", {"stackName": "shop", "templateURL": "https://s3.amazonaws.com/t/shop.yaml"},
             {"stackId": STACK}),
        ref("cloudformation.stack", STACK)),
    sample(
        "cloudformation-update-stack",
        call(CFN, "UpdateStack", {"stackName": "shop", "usePreviousTemplate": True}, {"stackId": STACK}),
        ref("cloudformation.stack", STACK)),
    sample(
        "cloudformation-execute-change-set",
        call(CFN, "ExecuteChangeSet", {"changeSetName": "cdk-deploy-change-set", "stackName": STACK}, None),
        ref("cloudformation.stack", STACK)),
    sample(
        "cloudformation-delete-stack-by-id",
        call(CFN, "DeleteStack", {"stackName": STACK}, None),
        delete("cloudformation.stack", STACK)),
    sample(
        "cloudformation-delete-stack-by-name",  # nothing to delete by: the next full scan removes it
        call(CFN, "DeleteStack", {"stackName": "shop"}, None)),
    # DynamoDB
    sample(
        "dynamodb-update-table",  # tableName may be the table's ARN
        call(DDB, "UpdateTable",
             {"tableName": f"arn:aws:dynamodb:{ARN}:table/orders",
              "streamSpecification": {"streamEnabled": True, "streamViewType": "NEW_IMAGE"}},
             {"tableDescription": {"tableName": "orders", "tableStatus": "UPDATING"}}),
        ref("dynamodb.table", "orders")),
    sample(
        "dynamodb-tag-resource",
        call(DDB, "TagResource", {"resourceArn": f"arn:aws:dynamodb:{ARN}:table/orders", "tags": TAGS}, None),
        ref("dynamodb.table", "orders")),
    sample(
        "dynamodb-delete-table",
        call(DDB, "DeleteTable", {"tableName": "orders"},
             {"tableDescription": {"tableName": "orders", "tableStatus": "DELETING"}}),
        delete("dynamodb.table", "orders")),
]  # fmt: skip

# An item of each type as its listing and details give it (ARNs as AWS returns them, not as the mapping
# builds them), to check that a delete removes the external id the full scan emitted.
ITEMS = {
    "apigateway.rest-api": lambda i: {"id": i, "name": "shop"},
    "apigatewayv2.api": lambda i: {"ApiId": i, "Name": "chat"},
    "autoscaling.group": lambda i: {"AutoScalingGroupName": i},
    "cloudformation.stack": lambda i: {"StackId": i, "StackName": i.split("/")[1]},
    "dynamodb.table": lambda i: {"TableName": i, "TableArn": f"arn:aws:dynamodb:{ARN}:table/{i}"},
    "ec2.instance": lambda i: {"InstanceId": i},
    "ec2.security-group": lambda i: {"GroupId": i},
    "ec2.vpc": lambda i: {"VpcId": i},
    "ec2.subnet": lambda i: {"SubnetId": i},
    "ec2.vpn-gateway": lambda i: {"VpnGatewayId": i},
    "ec2.nat-gateway": lambda i: {"NatGatewayId": i},
    "ecs.cluster": lambda i: {"clusterArn": i},
    "elb.load-balancer": lambda i: {"LoadBalancerName": i},
    "elbv2.load-balancer": lambda i: {"LoadBalancerArn": i, "Type": "application"},
    "elbv2.target-group": lambda i: {"TargetGroupArn": i},
    "firehose.delivery-stream": lambda i: {"DeliveryStreamName": i,
                                           "DeliveryStreamARN": f"arn:aws:firehose:{ARN}:deliverystream/{i}"},
    "kinesis.data-stream": lambda i: {
        "StreamName": i, "StreamDescriptionSummary": {"StreamARN": f"arn:aws:kinesis:{ARN}:stream/{i}"}},
    "lambda.function": lambda i: {"FunctionName": i, "FunctionArn": f"arn:aws:lambda:{ARN}:function:{i}"},
    "rds.cluster": lambda i: {"DBClusterArn": i},
    "rds.instance": lambda i: {"DBInstanceArn": i},
    "redshift.cluster": lambda i: {"ClusterIdentifier": i},
    "route53.hostedzone": lambda i: {"HostedZone": {"Id": f"/hostedzone/{i}"}},
    "route53domains.domain": lambda i: {"DomainName": i},
    "s3.bucket": lambda i: {"Name": i},
    "sns.topic": lambda i: {"TopicArn": i},
    "sqs.queue": lambda i: {"QueueUrl": i, "QueueArn": f"arn:aws:sqs:{ARN}:{i.rsplit('/', 1)[-1]}"},
    "stepfunctions.state-machine": lambda i: {"stateMachineArn": i},
    "stepfunctions.activity": lambda i: {"activityArn": i},
}  # fmt: skip


def from_file(event: SampleEvent) -> Sample:
    """A sample event of a samples file (mappings/samples/*.yaml) as a `Sample`."""
    expected = {(key, "refresh"): list(ids) for key, ids in event.refresh.items()}
    expected |= {(key, "delete"): list(ids) for key, ids in event.delete.items()}
    return Sample(event.label, dict(event.detail), expected, event.detail_type, event.source)


# The samples of the services that bring their own (tests/mappings/test_samples.py checks each one).
FILE_SAMPLES = [from_file(event) for samples in shipped_samples() for event in samples.events]


def envelope(s: Sample) -> dict:
    """The sample as EventBridge delivers it."""
    source = s.source or "aws." + s.detail["eventSource"].split(".")[0]
    region = s.detail.get("awsRegion", REGION)
    return {"detail-type": s.detail_type, "source": source, "region": region, "detail": s.detail}


def fired(mappings: Mappings, s: Sample) -> list[Change]:
    """What the engine's rules ask for on the sample."""
    return list(Rules(mappings).changes(envelope(s), ACCOUNT, REGIONS))


@pytest.mark.parametrize("s", SAMPLES, ids=[s.label for s in SAMPLES])
def test_each_event_refreshes_or_deletes_exactly_the_resources_it_names(shipped: Mappings, s: Sample) -> None:
    got: dict[tuple[str, str], list[str]] = {}
    for change in fired(shipped, s):
        got.setdefault((change.resource.key, "delete" if change.delete else "refresh"), []).append(change.id)
    assert got == s.expected


@pytest.mark.parametrize("s", SAMPLES, ids=[s.label for s in SAMPLES])
def test_each_change_lands_in_the_unit_of_its_types_scope(shipped: Mappings, s: Sample) -> None:
    """A global type in the `global` unit, an account-wide one in `account`, others in the event's region."""
    event_region = s.detail.get("awsRegion", REGION)
    for change in fired(shipped, s):
        expected = {"global": "global", "account": "account"}.get(change.resource.scope, event_region)
        assert change.region == expected, change.resource.key


DELETES = [s for s in SAMPLES if any(action == "delete" for _, action in s.expected)]


@pytest.mark.parametrize("s", DELETES, ids=[s.label for s in DELETES])
def test_a_delete_removes_the_external_id_of_the_same_resource(shipped: Mappings, s: Sample) -> None:
    region = s.detail.get("awsRegion", REGION)
    context = {"_account": ACCOUNT, "_region": region, "_partition": "aws"}
    for change in fired(shipped, s):
        if change.delete:
            item = {**ITEMS[change.resource.key](change.id), **context}
            assert search(change.resource.id, item) == change.id
            assert search(change.resource.external_id, item) == change.delete_id


def test_every_rule_has_a_sample(shipped: Mappings) -> None:
    """Each rule alone, in the engine's matcher, fires on at least one sample: of SAMPLES, or of its
    mapping file's samples file."""
    missing = []
    for resource in shipped.resources:
        for index, rule in enumerate(resource.event_rules):
            alone = Mappings((replace(resource, event_rules=(rule,)),))
            if not any(fired(alone, s) for s in (*SAMPLES, *FILE_SAMPLES)):
                missing.append(f"{resource.key}.events[{index}]")
    assert missing == []


def test_every_root_component_type_can_be_refreshed_and_has_rules(shipped: Mappings) -> None:
    roots = [r for r in shipped.resources if r.parent is None]
    assert {r.key for r in roots if not r.emits_component} == set(RELATION_ONLY)
    assert [r.key for r in roots if r.emits_component and (r.get is None or not r.event_rules)] == []
    assert [r.key for r in roots if not r.emits_component and (r.get or r.event_rules)] == []
    # A child is shaped under its parent: its `get` serves only to reach its root (`parent_id`).
    assert [r.key for r in shipped.resources if r.parent and r.get and r.parent_id is None] == []


def test_a_refresh_rule_on_a_type_without_get_is_refused(tmp_path) -> None:
    rule = "events: [{source: sqs.amazonaws.com, names: [CreateQueue], ids: responseElements.queueUrl}]\n"
    write(tmp_path, "sqs.yaml", add_to_queue(rule))
    assert problems(tmp_path) == [
        "sqs.yaml: resources.queue.events[0]: a refresh rule needs the resource's `get`"
    ]


def test_a_delete_rule_on_a_type_without_get_loads_unconfirmed(tmp_path) -> None:
    rule = "events: [{source: sqs.amazonaws.com, names: [DeleteQueue], ids: x, action: delete}]\n"
    write(tmp_path, "sqs.yaml", add_to_queue(rule))
    [queue] = load_mappings(tmp_path).resources
    assert queue.get is None and queue.event_rules[0].delete


def test_every_cloudtrail_rule_names_operations_of_its_own_service(shipped: Mappings) -> None:
    """eventSource is the service's signing name (ECR's endpoint is api.ecr), each eventName one of its
    operations (Lambda's carry the API version: `UpdateFunctionCode20150331v2`), and apiVersion, when set,
    the service's."""
    session = botocore.session.get_session()
    wrong = []
    for resource in shipped.resources:
        model = session.get_service_model(resource.service)
        for index, rule in enumerate(resource.event_rules):
            where = f"{resource.key}.events[{index}]"
            if rule.detail_type != CLOUDTRAIL:
                wrong += [f"{where}.source"] if rule.source != f"aws.{model.signing_name}" else []
                continue
            wrong += [f"{where}.source"] if rule.source != f"{model.signing_name}.amazonaws.com" else []
            wrong += [f"{where}.api_version"] if rule.api_version not in (None, model.api_version) else []
            operations = {re.sub(r"20[0-9]{6}(v[0-9])?$", "", name) for name in rule.names}
            wrong += [f"{where}: {name}" for name in sorted(operations - set(model.operation_names))]
    assert wrong == []


def test_a_source_two_services_share_is_told_apart_by_api_version(shipped: Mappings) -> None:
    """Classic and v2 load balancers both log as elasticloadbalancing, with some of the same names."""
    rules = [rule for r in shipped.resources if r.service in ("elb", "elbv2") for rule in r.event_rules]
    assert rules and all(rule.api_version for rule in rules)


def _envelope(detail: dict, **outer: str) -> dict:
    return {"detail-type": CLOUDTRAIL, "source": "aws." + detail["eventSource"].split(".")[0], **outer,
            "detail": detail}  # fmt: skip


def test_a_change_is_placed_by_the_details_region_else_the_envelopes(shipped: Mappings) -> None:
    rules = Rules(shipped)
    delete = {"eventSource": SQS, "eventName": "DeleteQueue", "requestParameters": {"queueUrl": QUEUE}}

    [change] = rules.changes(_envelope(delete, region=REGION), ACCOUNT, REGIONS)
    assert (change.resource.key, change.region, change.id) == ("sqs.queue", REGION, QUEUE)
    assert change.delete
    elsewhere = {**delete, "awsRegion": "ap-south-1"}  # the detail's region wins, and is not configured
    assert list(rules.changes(_envelope(elsewhere, region=REGION), ACCOUNT, REGIONS)) == []
    assert list(rules.changes(_envelope(delete), ACCOUNT, REGIONS)) == []  # no region at all
    assert list(rules.changes(_envelope(delete, region=REGION), ACCOUNT, ("us-east-1",))) == []


@pytest.mark.parametrize(
    ("outer", "event_time", "at"),
    [
        ({"time": "2024-05-02T10:15:00Z"}, "2024-05-02T09:00:00Z", "2024-05-02T10:15:00+00:00"),
        ({}, "2024-05-02T12:15:00+02:00", "2024-05-02T10:15:00+00:00"),  # an offset, converted
        ({}, "2024-05-02T10:15:00", "2024-05-02T10:15:00+00:00"),  # no offset: UTC
        ({}, None, ""),  # no time: sorts before every timed change
        ({"time": "yesterday"}, None, ""),
    ],
)
def test_a_change_carries_the_envelopes_time_else_the_details_in_utc(
    shipped: Mappings, outer: dict, event_time: str | None, at: str
) -> None:
    detail = {"eventSource": SQS, "eventName": "DeleteQueue", "awsRegion": REGION,
              "requestParameters": {"queueUrl": QUEUE}}  # fmt: skip
    if event_time:
        detail["eventTime"] = event_time
    [change] = Rules(shipped).changes(_envelope(detail, **outer), ACCOUNT, REGIONS)
    assert change.at == at


def test_ids_that_are_not_strings_are_skipped_and_the_others_still_change(shipped: Mappings) -> None:
    found = items({"instanceId": 7}, {"instanceId": ""}, {"instanceId": "i-1"}, {"instanceId": "i-2"})
    detail = {"eventSource": "ec2.amazonaws.com", "eventName": "TerminateInstances", "awsRegion": REGION,
              "responseElements": {"instancesSet": found}}  # fmt: skip
    changes = list(Rules(shipped).changes(_envelope(detail), ACCOUNT, REGIONS))
    assert [(c.resource.key, c.id) for c in changes] == [("ec2.instance", "i-1"), ("ec2.instance", "i-2")]


def test_global_and_account_wide_types_need_a_region_of_their_own_kind(shipped: Mappings) -> None:
    zone = {"eventSource": "route53.amazonaws.com", "eventName": "UpdateHostedZoneComment",
            "awsRegion": "us-east-1", "requestParameters": {"id": "/hostedzone/Z1"}}  # fmt: skip
    bucket = {"eventSource": S3, "eventName": "PutBucketTagging", "awsRegion": REGION,
              "requestParameters": {"bucketName": "b1"}}  # fmt: skip
    rules = Rules(shipped)
    assert [c.region for c in rules.changes(_envelope(zone), ACCOUNT, REGIONS)] == ["global"]
    assert list(rules.changes(_envelope(zone), ACCOUNT, ("us-east-1",))) == []
    assert [c.region for c in rules.changes(_envelope(bucket), ACCOUNT, REGIONS)] == ["account"]
    assert list(rules.changes(_envelope(bucket), ACCOUNT, ("global",))) == []


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"account": ACCOUNT, "detail": {"errorCode": "BucketNotEmpty"}}, "failed_calls"),
        ({"detail": {"errorMessage": "The bucket you tried to delete is not empty"}}, "failed_calls"),
        ({"account": "999999999999", "detail": {}}, "foreign"),
        ({"detail": {"recipientAccountId": "999999999999"}}, "foreign"),
        ({"account": ACCOUNT, "detail": {"recipientAccountId": "999999999999"}}, None),  # the envelope's wins
        ({"account": int(ACCOUNT), "detail": {}}, None),
        ({"account": ACCOUNT, "detail": {"errorCode": ""}}, None),
        ({"detail": "not an object"}, None),
        ({}, None),
    ],
)
def test_what_changes_nothing_is_counted_by_its_reason(
    shipped: Mappings, envelope: dict, reason: str | None
) -> None:
    changes, counts = Rules(shipped).dispatch([envelope], ACCOUNT, REGIONS)
    assert changes == []
    assert {name for name, count in counts.items() if count} == {"envelopes", reason or "unknown"}


def test_the_latest_change_per_resource_wins_and_changes_come_in_time_order(shipped: Mappings) -> None:
    queue = next(r for r in shipped.resources if r.key == "sqs.queue")
    create = Change(queue, REGION, "q1", False, at="2024-05-02T10:15:00+00:00")
    delete = Change(queue, REGION, "q1", True, "arn-q1", at="2024-05-02T10:14:00+00:00")
    other = Change(queue, REGION, "q2", False, at="2024-05-02T10:14:30+00:00")
    untimed = Change(queue, REGION, "q3", True, "arn-q3")
    again = Change(queue, REGION, "q3", False)
    elsewhere = Change(queue, "us-east-1", "q1", True, "arn-q1-east", at="2024-05-02T10:00:00+00:00")
    # in the order of each resource's latest event
    assert latest([create, delete, other, untimed, again, elsewhere]) == [again, elsewhere, other, create]


def test_each_configured_region_has_one_prefix_and_global_reads_us_east_1_once() -> None:
    assert prefixes(ACCOUNT, (REGION, "global", "us-east-1")) == [
        f"AWSLogs/{ACCOUNT}/EventBridge/{REGION}/",
        f"AWSLogs/{ACCOUNT}/EventBridge/us-east-1/",
    ]
