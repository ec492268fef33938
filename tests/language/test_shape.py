"""Shaping with the shipped mappings: boto3-like items in, exact component and relation records out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from engine.language.components import Labels, ShapeError, component, context, relations, with_vars
from engine.language.dialect import search
from engine.language.loader import Mappings, Resource, load_mappings

ACCOUNT = "123456789012"
REGION = "eu-west-1"
LABELS = Labels(account=ACCOUNT)
LAUNCHED = dt.datetime(2024, 5, 1, 12, 30, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings()


def resource(mappings: Mappings, type_name: str) -> Resource:
    (found,) = [r for r in mappings.resources if r.type == type_name]
    return found


def shape(
    spec: Resource, raw: dict, labels: Labels = LABELS, region: str = REGION
) -> tuple[dict, list[dict]]:
    """Component and relations of one item, with the context keys and vars the collector adds."""
    item = with_vars(spec.vars, context(raw, ACCOUNT, region))
    record = component(spec, item, labels)
    return record, list(relations(spec, item, record["externalId"]))


def edges(rels: list[dict]) -> set[tuple[str, str, str]]:
    return {(r["sourceId"], r["type"]["name"], r["targetId"]) for r in rels}


# --- EC2 instance --------------------------------------------------------------------------------


def instance_item(**changes: Any) -> dict:
    """One element of DescribeInstances' Reservations[].Instances[], plus IsNitro from the batch detail."""
    item = {
        "InstanceId": "i-0abc1234def567890",
        "InstanceType": "t3.micro",
        "ImageId": "ami-0123456789abcdef0",
        "LaunchTime": LAUNCHED,
        "State": {"Code": 16, "Name": "running"},
        "PrivateIpAddress": "10.0.1.5",
        "PrivateDnsName": "ip-10-0-1-5.eu-west-1.compute.internal",
        "PublicDnsName": "ec2-54-1-2-3.eu-west-1.compute.amazonaws.com",
        "PublicIpAddress": "54.1.2.3",
        "SubnetId": "subnet-0aaa",
        "VpcId": "vpc-0bbb",
        "KernelId": "",
        "RamdiskId": None,
        "Placement": {"availabilityZone": "eu-west-1a", "tenancy": "default", "groupName": ""},
        "NetworkInterfaces": [
            {"networkInterfaceId": "eni-1", "attachment": {"attachTime": LAUNCHED, "deviceIndex": 0}}
        ],
        "SecurityGroups": [
            {"GroupId": "sg-0111", "GroupName": "web"},
            {"GroupId": "sg-0222", "GroupName": "ssh"},
        ],
        "Tags": [
            {"Key": "Name", "Value": "web-1"},
            {"Key": "team", "Value": "core"},
            {"Key": "stackstate-identifier", "Value": "urn:custom:web-1"},
            {"Key": "stackstate-environment", "Value": "production"},
        ],
        "IsNitro": True,
    }
    item.update(changes)
    return item


@pytest.fixture
def instance(mappings: Mappings) -> tuple[dict, list[dict]]:
    return shape(resource(mappings, "aws.ec2.instance"), instance_item())


def test_instance_external_id_type_and_name_from_the_name_tag(instance: tuple[dict, list[dict]]) -> None:
    record, _ = instance
    assert record["externalId"] == "i-0abc1234def567890"
    assert record["type"] == {"name": "aws.ec2.instance"}
    assert record["data"]["Name"] == "web-1"


def test_instance_without_name_tag_is_named_by_its_id(mappings: Mappings) -> None:
    record, _ = shape(resource(mappings, "aws.ec2.instance"), instance_item(Tags=[]))
    assert record["data"]["Name"] == "i-0abc1234def567890"


def test_instance_urns(instance: tuple[dict, list[dict]]) -> None:
    record, _ = instance
    assert record["data"]["URN"] == [
        "urn:host:/i-0abc1234def567890",
        "arn:aws:ec2:eu-west-1:123456789012:instance/i-0abc1234def567890",
        "urn:vpcip:vpc-0bbb/10.0.1.5",
        "urn:host:/ec2-54-1-2-3.eu-west-1.compute.amazonaws.com",
        "urn:host:/54.1.2.3",
    ]


def test_private_instance_has_no_public_urns(mappings: Mappings) -> None:
    raw = instance_item(PublicDnsName="", PublicIpAddress=None)
    record, _ = shape(resource(mappings, "aws.ec2.instance"), raw)
    assert record["data"]["URN"] == [
        "urn:host:/i-0abc1234def567890",
        "arn:aws:ec2:eu-west-1:123456789012:instance/i-0abc1234def567890",
        "urn:vpcip:vpc-0bbb/10.0.1.5",
    ]


def test_instance_tags_get_the_synthetic_keys(instance: tuple[dict, list[dict]]) -> None:
    record, _ = instance
    assert record["data"]["Tags"] == {
        "Name": "web-1",
        "team": "core",
        "stackstate-identifier": "urn:custom:web-1",
        "stackstate-environment": "production",
        "host": "i-0abc1234def567890",
        "instance-id": "i-0abc1234def567890",
        "private-ip": "10.0.1.5",
        "fqdn": "ec2-54-1-2-3.eu-west-1.compute.amazonaws.com",
        "public-ip": "54.1.2.3",
    }


def test_instance_labels_are_the_stackpack_label_and_one_per_tag(instance: tuple[dict, list[dict]]) -> None:
    record, _ = instance
    assert record["data"]["labels"] == [
        "Name:web-1",
        "fqdn:ec2-54-1-2-3.eu-west-1.compute.amazonaws.com",
        "host:i-0abc1234def567890",
        "instance-id:i-0abc1234def567890",
        "private-ip:10.0.1.5",
        "public-ip:54.1.2.3",
        "stackpack:aws-v2",
        "stackstate-environment:production",
        "stackstate-identifier:urn:custom:web-1",
        "team:core",
    ]
    assert record["data"]["tags"] == ["integration-type:aws-v2", "integration-url:123456789012"]


def test_stackstate_tags_become_identifier_and_environment(instance: tuple[dict, list[dict]]) -> None:
    data = instance[0]["data"]
    assert data["identifiers"] == [*data["URN"], "urn:custom:web-1"]
    assert data["environments"] == ["production"]


def test_instance_location_layer_and_domain(instance: tuple[dict, list[dict]]) -> None:
    data = instance[0]["data"]
    assert data["Location"] == {"AwsAccount": "123456789012", "AwsRegion": "eu-west-1"}
    assert (data["layer"], data["domain"]) == ("Machines", "AWS")


def test_dates_become_iso_strings_at_any_depth(instance: tuple[dict, list[dict]]) -> None:
    data = instance[0]["data"]
    assert data["LaunchTime"] == "2024-05-01T12:30:05+00:00"
    assert data["NetworkInterfaces"][0]["Attachment"]["AttachTime"] == "2024-05-01T12:30:05+00:00"


def test_keys_are_capitalised_recursively_but_not_inside_tags(instance: tuple[dict, list[dict]]) -> None:
    data = instance[0]["data"]
    assert data["Placement"] == {"AvailabilityZone": "eu-west-1a", "Tenancy": "default"}
    assert data["NetworkInterfaces"] == [
        {
            "NetworkInterfaceId": "eni-1",
            "Attachment": {"AttachTime": "2024-05-01T12:30:05+00:00", "DeviceIndex": 0},
        }
    ]
    assert "team" in data["Tags"] and "Team" not in data["Tags"]
    assert data["IsNitro"] is True


def test_none_and_empty_strings_are_pruned(instance: tuple[dict, list[dict]]) -> None:
    data = instance[0]["data"]
    assert "KernelId" not in data and "RamdiskId" not in data
    assert "GroupName" not in data["Placement"]


def test_context_keys_are_never_emitted(instance: tuple[dict, list[dict]]) -> None:
    assert not [k for k in instance[0]["data"] if k.startswith("_")]


def test_instance_uses_its_subnet_and_each_security_group(instance: tuple[dict, list[dict]]) -> None:
    _, rels = instance
    assert rels == [
        {
            "externalId": "i-0abc1234def567890-uses-service-subnet-0aaa",
            "sourceId": "i-0abc1234def567890",
            "targetId": "subnet-0aaa",
            "type": {"name": "uses-service"},
            "data": {},
        },
        {
            "externalId": "i-0abc1234def567890-uses-service-sg-0111",
            "sourceId": "i-0abc1234def567890",
            "targetId": "sg-0111",
            "type": {"name": "uses-service"},
            "data": {},
        },
        {
            "externalId": "i-0abc1234def567890-uses-service-sg-0222",
            "sourceId": "i-0abc1234def567890",
            "targetId": "sg-0222",
            "type": {"name": "uses-service"},
            "data": {},
        },
    ]


def test_instance_without_subnet_uses_its_vpc(mappings: Mappings) -> None:
    _, rels = shape(resource(mappings, "aws.ec2.instance"), instance_item(SubnetId=None, SecurityGroups=[]))
    assert edges(rels) == {("i-0abc1234def567890", "uses-service", "vpc-0bbb")}


def test_account_labels_are_added_and_tags_win_over_instance_settings(mappings: Mappings) -> None:
    labels = Labels(
        account=ACCOUNT,
        tags=("owner:ops",),
        identifier="urn:config:acct",
        environment="staging",
        layer="Custom Layer",
        domain="Cloud",
    )
    spec = resource(mappings, "aws.ec2.instance")
    data = shape(spec, instance_item(), labels)[0]["data"]
    assert "owner:ops" in data["labels"]
    assert data["tags"] == ["integration-type:aws-v2", "integration-url:123456789012", "owner:ops"]
    assert data["identifiers"][-2:] == ["urn:custom:web-1", "urn:config:acct"]
    assert data["environments"] == ["production"]  # the resource's own tag wins
    assert (data["layer"], data["domain"]) == ("Custom Layer", "Cloud")
    untagged = shape(spec, instance_item(Tags=[]), labels)[0]["data"]
    assert untagged["environments"] == ["staging"]


def test_item_without_external_id_fails_loudly(mappings: Mappings) -> None:
    with pytest.raises(ShapeError) as caught:
        shape(resource(mappings, "aws.ec2.instance"), instance_item(InstanceId=None))
    assert str(caught.value) == "ec2.yaml: resources.instance.external_id gave None for an item"


def test_private_instance_gets_no_bare_public_labels(mappings: Mappings) -> None:
    raw = instance_item(PublicDnsName="", PublicIpAddress=None)
    labels = shape(resource(mappings, "aws.ec2.instance"), raw)[0]["data"]["labels"]
    assert "fqdn" not in labels and "public-ip" not in labels


# --- EC2 security group, VPC, subnet, VPN gateway ------------------------------------------------


def security_group(permissions: list[dict]) -> dict:
    return {
        "GroupId": "sg-0111",
        "GroupName": "web",
        "Description": "web servers",
        "OwnerId": ACCOUNT,
        "VpcId": "vpc-0bbb",
        "IpPermissions": permissions,
        "IpPermissionsEgress": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    }


HTTPS = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
SSH = {
    "IpProtocol": "tcp",
    "FromPort": 22,
    "ToPort": 22,
    "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "192.168.0.0/16"}],
}
SSH_REORDERED = {**SSH, "IpRanges": [{"CidrIp": "192.168.0.0/16"}, {"CidrIp": "10.0.0.0/8"}]}


def test_security_group_component_and_inbound_relation_from_its_vpc(mappings: Mappings) -> None:
    record, rels = shape(resource(mappings, "aws.ec2.security-group"), security_group([HTTPS]))
    assert record["externalId"] == "sg-0111"
    assert record["data"]["Name"] == "web"
    assert record["data"]["URN"] == ["arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0111"]
    assert (record["data"]["layer"], record["data"]["Tags"]) == ("Networking", {})
    assert rels == [
        {
            "externalId": "vpc-0bbb-has-resource-sg-0111",
            "sourceId": "vpc-0bbb",
            "targetId": "sg-0111",
            "type": {"name": "has-resource"},
            "data": {},
        }
    ]


def test_security_group_version_ignores_list_order_and_tracks_changes(mappings: Mappings) -> None:
    spec = resource(mappings, "aws.ec2.security-group")
    one = shape(spec, security_group([HTTPS, SSH]))[0]["data"]["Version"]
    two = shape(spec, security_group([SSH_REORDERED, HTTPS]))[0]["data"]["Version"]
    changed = shape(spec, security_group([HTTPS]))[0]["data"]["Version"]
    assert len(one) == 64
    assert one == two
    assert one != changed


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ({"IsDefault": True, "Tags": [{"Key": "Name", "Value": "main"}]}, "default"),
        ({"IsDefault": False, "Tags": [{"Key": "Name", "Value": "main"}]}, "main"),
        ({"IsDefault": False}, "vpc-0bbb"),
    ],
    ids=["default", "name-tag", "id"],
)
def test_vpc_name(mappings: Mappings, raw: dict, name: str) -> None:
    raw = {"VpcId": "vpc-0bbb", "CidrBlock": "10.0.0.0/16", "State": "available", **raw}
    record, rels = shape(resource(mappings, "aws.ec2.vpc"), raw)
    assert record["externalId"] == "vpc-0bbb"
    assert record["data"]["Name"] == name
    assert record["data"]["URN"] == ["arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-0bbb"]
    assert rels == []


@pytest.mark.parametrize(
    ("tags", "name"),
    [([{"Key": "Name", "Value": "private-a"}], "private-a-eu-west-1a"), ([], "subnet-0aaa-eu-west-1a")],
    ids=["name-tag", "id"],
)
def test_subnet_name_and_relation_to_its_vpc(mappings: Mappings, tags: list, name: str) -> None:
    raw = {"SubnetId": "subnet-0aaa", "VpcId": "vpc-0bbb", "AvailabilityZone": "eu-west-1a", "Tags": tags}
    record, rels = shape(resource(mappings, "aws.ec2.subnet"), raw)
    assert record["data"]["Name"] == name
    assert record["data"]["URN"] == ["arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-0aaa"]
    assert edges(rels) == {("subnet-0aaa", "uses-service", "vpc-0bbb")}


def test_vpn_gateway_uses_only_attached_vpcs(mappings: Mappings) -> None:
    raw = {
        "VpnGatewayId": "vgw-0ccc",
        "State": "available",
        "Type": "ipsec.1",
        "VpcAttachments": [
            {"VpcId": "vpc-0bbb", "State": "attached"},
            {"VpcId": "vpc-0ddd", "State": "detached"},
            {"VpcId": "vpc-0eee", "State": "attaching"},
        ],
    }
    record, rels = shape(resource(mappings, "aws.ec2.vpn-gateway"), raw)
    assert (record["externalId"], record["data"]["Name"]) == ("vgw-0ccc", "vgw-0ccc")
    assert edges(rels) == {("vgw-0ccc", "uses-service", "vpc-0bbb")}


# --- SQS, SNS, S3 ---------------------------------------------------------------------------------


QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"


def test_queue_external_id_is_its_arn_and_dimensions_name_the_queue(mappings: Mappings) -> None:
    raw = {
        "QueueUrl": QUEUE_URL,
        "QueueArn": "arn:aws:sqs:eu-west-1:123456789012:orders",
        "VisibilityTimeout": "30",
        "Tags": {"team": "core"},
    }
    record, rels = shape(resource(mappings, "aws.sqs.queue"), raw)
    assert record["externalId"] == "arn:aws:sqs:eu-west-1:123456789012:orders"
    assert record["data"]["Name"] == "orders"
    assert record["data"]["URN"] == [QUEUE_URL]
    assert record["data"]["CW"] == {"Dimensions": [{"Key": "QueueName", "Value": "orders"}]}
    assert record["data"]["Tags"] == {"team": "core"}
    assert "team:core" in record["data"]["labels"]
    assert rels == []


def test_queue_without_attributes_derives_its_arn_from_the_url(mappings: Mappings) -> None:
    record, _ = shape(resource(mappings, "aws.sqs.queue"), {"QueueUrl": QUEUE_URL})
    assert record["externalId"] == "arn:aws:sqs:eu-west-1:123456789012:orders"
    assert record["data"]["Name"] == "orders"
    assert record["data"]["CW"] == {"Dimensions": [{"Key": "QueueName", "Value": "orders"}]}


def test_topic_uses_only_its_lambda_and_sqs_subscribers(mappings: Mappings) -> None:
    topic = "arn:aws:sns:eu-west-1:123456789012:alerts"
    raw = {
        "TopicArn": topic,
        "DisplayName": "",
        "Tags": [{"Key": "team", "Value": "core"}],
        "_subscriptions": [
            {"Protocol": "lambda", "Endpoint": "arn:aws:lambda:eu-west-1:123456789012:function:notify"},
            {"Protocol": "sqs", "Endpoint": "arn:aws:sqs:eu-west-1:123456789012:orders"},
            {"Protocol": "email", "Endpoint": "ops@example.com"},
            {"Protocol": "https", "Endpoint": "https://hooks.example.com/x"},
        ],
    }
    record, rels = shape(resource(mappings, "aws.sns.topic"), raw)
    assert record["externalId"] == topic
    assert record["data"]["Name"] == "alerts"
    assert record["data"]["CW"] == {"Dimensions": [{"Key": "TopicName", "Value": "alerts"}]}
    assert "Subscriptions" not in record["data"] and "DisplayName" not in record["data"]
    assert edges(rels) == {
        (topic, "uses-service", "arn:aws:lambda:eu-west-1:123456789012:function:notify"),
        (topic, "uses-service", "arn:aws:sqs:eu-west-1:123456789012:orders"),
    }


@pytest.mark.parametrize(
    ("location", "region"),
    [(None, "us-east-1"), ("EU", "eu-west-1"), ("eu-central-1", "eu-central-1")],
    ids=["none-is-us-east-1", "EU-is-eu-west-1", "named"],
)
def test_bucket_region_attribution(mappings: Mappings, location: str | None, region: str) -> None:
    spec = resource(mappings, "aws.s3.bucket")
    assert spec.region is not None
    item = context({"Name": "logs", "BucketLocation": location}, ACCOUNT, "us-east-1")
    assert search(spec.region, item) == region


def test_bucket_external_id_and_notification_relation(mappings: Mappings) -> None:
    function = "arn:aws:lambda:eu-west-1:123456789012:function:on-upload"
    raw = {
        "Name": "logs",
        "CreationDate": LAUNCHED,
        "BucketLocation": "eu-west-1",
        "Tags": [{"Key": "team", "Value": "core"}],
        "_notifications": {
            "LambdaFunctionConfigurations": [
                {"Id": "n1", "LambdaFunctionArn": function, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    }
    record, rels = shape(resource(mappings, "aws.s3.bucket"), raw)
    assert record["externalId"] == "arn:aws:s3:::logs"
    assert record["data"]["Name"] == "logs"
    assert record["data"]["CreationDate"] == "2024-05-01T12:30:05+00:00"
    assert record["data"]["Tags"] == {"team": "core"}
    assert record["data"]["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": "eu-west-1"}
    assert "_notifications" not in record["data"] and "Notifications" not in record["data"]
    assert rels == [
        {
            "externalId": f"arn:aws:s3:::logs-uses-service-{function}",
            "sourceId": "arn:aws:s3:::logs",
            "targetId": function,
            "type": {"name": "uses-service"},
            "data": {"event_type": "s3:ObjectCreated:*"},
        }
    ]


def test_console_link_follows_the_partition_and_region(mappings: Mappings) -> None:
    spec = resource(mappings, "aws.ec2.instance")
    for region, partition, base in [
        ("eu-west-1", "aws", "https://eu-west-1.console.aws.amazon.com"),
        ("cn-north-1", "aws-cn", "https://console.amazonaws.cn"),
        ("us-gov-west-1", "aws-us-gov", "https://console.amazonaws-us-gov.com"),
    ]:
        record = component(
            spec, with_vars(spec.vars, context(instance_item(), ACCOUNT, region, partition)), LABELS
        )
        assert record["data"]["ConsoleUrl"] == (
            f"{base}/ec2/home?region={region}#InstanceDetails:instanceId=i-0abc1234def567890"
        )


def test_queue_console_link_carries_the_encoded_queue_url(mappings: Mappings) -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    record, _ = shape(resource(mappings, "aws.sqs.queue"), {"QueueUrl": url})
    assert record["data"]["ConsoleUrl"].endswith(
        "#/queues/https%3A%2F%2Fsqs.eu-west-1.amazonaws.com%2F123456789012%2Forders"
    )
