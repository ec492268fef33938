"""Live checks that demo.seed builds the promised estate on an in-process moto server.

Every resource type of the StackState AWS StackPack is read back with boto3, together with the
fields the StackPack draws its relations from. The determinism test comes last: it re-seeds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from demo.bulk import expected_types, plan_bulk
from demo.seed import AMI_ID, client, seed_bulk, seed_estate
from demo.server import STREAM_LABEL, reset, start

pytestmark = pytest.mark.live

EU = "eu-west-1"
US = "us-east-1"
ACCOUNT = "123456789012"
# The StackPack's Lambda environment-variable detection of RDS instance endpoints.
RDS_ENDPOINT = re.compile(r"^([a-z0-9-]+)\.[a-z0-9]{12}\.([a-z0-9-]+)\.rds\.amazonaws\.com(:\d+)?$")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A warmed moto server on a free port, stopped after the module."""
    server, url = start(0)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def estate(endpoint: str) -> dict[str, Any]:
    """The demo estate, seeded once after a reset with the default id seed."""
    reset(endpoint)
    return seed_estate(endpoint)


def _tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    """Turn AWS ``[{Key, Value}]`` tags into a dict."""
    return {tag["Key"]: tag["Value"] for tag in items or []}


def _lower_tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    """Turn ECS/Step Functions ``[{key, value}]`` tags into a dict."""
    return {tag["key"]: tag["value"] for tag in items or []}


def test_vpc_subnets_and_vpn_gateway(endpoint: str, estate: dict[str, Any]) -> None:
    ec2 = client("ec2", EU, endpoint)
    vpc = ec2.describe_vpcs(VpcIds=[estate["vpc_id"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    assert _tags(vpc.get("Tags"))["Name"] == "demo-vpc"
    hostnames = ec2.describe_vpc_attribute(VpcId=estate["vpc_id"], Attribute="enableDnsHostnames")
    assert hostnames["EnableDnsHostnames"]["Value"] is True

    subnets = ec2.describe_subnets(SubnetIds=list(estate["subnet_ids"].values()))["Subnets"]
    assert {s["AvailabilityZone"]: s["SubnetId"] for s in subnets} == estate["subnet_ids"]
    assert {s["VpcId"] for s in subnets} == {estate["vpc_id"]}
    assert sorted(s["CidrBlock"] for s in subnets) == ["10.0.0.0/20", "10.0.16.0/20"]
    assert sorted("Name" in _tags(s.get("Tags")) for s in subnets) == [False, True]

    vgw = ec2.describe_vpn_gateways(VpnGatewayIds=[estate["vpn_gateway_id"]])["VpnGateways"][0]
    assert vgw["VpcAttachments"] == [{"VpcId": estate["vpc_id"], "State": "attached"}]
    assert _tags(vgw.get("Tags"))["Name"] == "demo-vgw"


def test_nat_gateway(endpoint: str, estate: dict[str, Any]) -> None:
    nat = client("ec2", EU, endpoint).describe_nat_gateways(NatGatewayIds=[estate["nat_gateway_id"]])[
        "NatGateways"
    ][0]
    assert (nat["State"], nat["SubnetId"], nat["VpcId"]) == (
        "available",
        estate["subnet_ids"][f"{EU}a"],
        estate["vpc_id"],
    )
    assert [a["AllocationId"] for a in nat["NatGatewayAddresses"]] == [estate["elastic_ip_allocation_id"]]
    assert _tags(nat["Tags"])["Name"] == "demo-nat-a"


def test_security_group_reference(endpoint: str, estate: dict[str, Any]) -> None:
    ec2 = client("ec2", EU, endpoint)
    sg_ids = estate["security_group_ids"]
    groups = {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(GroupIds=list(sg_ids.values()))["SecurityGroups"]
    }
    assert {name: g["VpcId"] for name, g in groups.items()} == {
        "web": estate["vpc_id"],
        "db": estate["vpc_id"],
        "inventory-sync": estate["vpc_id"],
    }
    db_rules = groups["db"]["IpPermissions"]
    assert [(r["FromPort"], [p["GroupId"] for p in r["UserIdGroupPairs"]]) for r in db_rules] == [
        (5432, [sg_ids["web"]])
    ]
    web_ports = {r["FromPort"] for r in groups["web"]["IpPermissions"]}
    assert web_ports == {80, 443}


def test_instances(endpoint: str, estate: dict[str, Any]) -> None:
    ids = estate["instance_ids"]
    eu_ids = [i for name, i in ids.items() if name != "ops-1"]
    ec2 = client("ec2", EU, endpoint)
    pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=eu_ids)
    found = {i["InstanceId"]: i for page in pages for r in page["Reservations"] for i in r["Instances"]}
    assert set(found) == set(eu_ids)
    by_name = {name: found[i] for name, i in ids.items() if i in found}

    sg_ids = estate["security_group_ids"]
    subnet_a, subnet_b = estate["subnet_ids"][f"{EU}a"], estate["subnet_ids"][f"{EU}b"]
    expected = {
        "web-1": (subnet_a, sg_ids["web"]),
        "web-2": (subnet_b, sg_ids["web"]),
        "db-1": (subnet_b, sg_ids["db"]),
        "ecs-1": (subnet_a, sg_ids["web"]),
    }
    for name, (subnet, sg) in expected.items():
        inst = by_name[name]
        assert inst["State"]["Name"] == "running"
        assert inst["ImageId"] == AMI_ID
        assert (inst["SubnetId"], inst["VpcId"]) == (subnet, estate["vpc_id"])
        assert [g["GroupId"] for g in inst["SecurityGroups"]] == [sg]
        assert _tags(inst["Tags"])["Name"] == name
        assert "team" in _tags(inst["Tags"])

    web1 = _tags(by_name["web-1"]["Tags"])
    assert web1["stackstate-identifier"] == "urn:host:/web-1.demo.internal"
    assert web1["stackstate-environment"] == "production"
    assert by_name["web-1"]["PrivateIpAddress"] == "10.0.0.10"
    for name in ("demo-web-asg-0", "demo-web-asg-1"):
        assert _tags(by_name[name]["Tags"])["Name"] == "demo-web-asg"
        assert by_name[name]["SubnetId"] in (subnet_a, subnet_b)

    us = client("ec2", US, endpoint)
    ops = us.describe_instances(InstanceIds=[ids["ops-1"]])["Reservations"][0]["Instances"][0]
    assert _tags(ops["Tags"])["Name"] == "ops-1"
    default_vpc = us.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    assert ops["VpcId"] == default_vpc["VpcId"] == estate["default_vpc_id_us"]


def test_buckets_and_lambda_notification(endpoint: str, estate: dict[str, Any]) -> None:
    s3 = client("s3", EU, endpoint)
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert names == set(estate["buckets"])
    locations = {name: s3.get_bucket_location(Bucket=name)["LocationConstraint"] for name in sorted(names)}
    assert locations == {
        name: (None if region == US else region) for name, region in estate["buckets"].items()
    }
    assert _tags(s3.get_bucket_tagging(Bucket="demo-assets-eu")["TagSet"])["team"] == "storefront"
    notification = s3.get_bucket_notification_configuration(Bucket="demo-assets-eu")
    assert [(c["LambdaFunctionArn"], c["Events"]) for c in notification["LambdaFunctionConfigurations"]] == [
        (estate["lambda_function_arns"]["event-router"], ["s3:ObjectCreated:*"])
    ]


def test_queues_and_topics(endpoint: str, estate: dict[str, Any]) -> None:
    urls, arns, topics = estate["queue_urls"], estate["queue_arns"], estate["topic_arns"]
    sqs = client("sqs", EU, endpoint)
    eu_queues = [urls[name] for name, arn in arns.items() if f":{EU}:" in arn]
    assert sorted(sqs.list_queues()["QueueUrls"]) == sorted(eu_queues)
    attrs = sqs.get_queue_attributes(QueueUrl=urls["orders"], AttributeNames=["All"])["Attributes"]
    assert attrs["QueueArn"] == arns["orders"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == arns["orders-dlq"]
    assert sqs.list_dead_letter_source_queues(QueueUrl=urls["orders-dlq"])["queueUrls"] == [urls["orders"]]
    assert sqs.list_queue_tags(QueueUrl=urls["orders"])["Tags"]["team"] == "storefront"

    sns = client("sns", EU, endpoint)
    assert {t["TopicArn"] for t in sns.list_topics()["Topics"]} == {
        arn for arn in topics.values() if f":{EU}:" in arn
    }
    assert (
        _tags(sns.list_tags_for_resource(ResourceArn=topics["order-events"])["Tags"])["team"] == "storefront"
    )
    forwarder = estate["lambda_function_arns"]["audit-forwarder"]
    subs = sns.list_subscriptions_by_topic(TopicArn=topics["order-events"])["Subscriptions"]
    assert sorted((s["Protocol"], s["Endpoint"], s["SubscriptionArn"]) for s in subs) == sorted(
        [
            ("sqs", arns["orders"], estate["subscription_arns"]["order-events"]),
            ("lambda", forwarder, estate["subscription_arns"]["order-events-lambda"]),
        ]
    )
    assert f":{US}:" in forwarder  # the eu-west-1 topic delivers across regions

    us_sqs = client("sqs", US, endpoint)
    assert us_sqs.list_queues()["QueueUrls"] == [urls["audit"]]
    assert arns["audit"] == f"arn:aws:sqs:{US}:{ACCOUNT}:audit"
    us_subs = client("sns", US, endpoint).list_subscriptions_by_topic(TopicArn=topics["alerts"])[
        "Subscriptions"
    ]
    assert sorted((s["Protocol"], s["Endpoint"]) for s in us_subs) == [
        ("lambda", forwarder),
        ("sqs", arns["audit"]),
    ]


def test_dynamodb_tables_and_stream(endpoint: str, estate: dict[str, Any]) -> None:
    tables = estate["dynamodb_table_arns"]
    dynamodb = client("dynamodb", EU, endpoint)
    assert sorted(dynamodb.list_tables()["TableNames"]) == ["inventory", "orders", "sessions"]
    orders = dynamodb.describe_table(TableName="orders")["Table"]
    assert orders["TableArn"] == tables["orders"]
    assert orders["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert orders["LatestStreamArn"] == estate["dynamodb_stream_arns"]["orders"]
    assert orders["LatestStreamLabel"] == STREAM_LABEL
    sessions = dynamodb.describe_table(TableName="sessions")["Table"]
    assert "LatestStreamArn" not in sessions
    assert _tags(dynamodb.list_tags_of_resource(ResourceArn=tables["orders"])["Tags"]) == {
        "team": "storefront"
    }
    streams = client("dynamodbstreams", EU, endpoint).list_streams()["Streams"]
    assert [(s["TableName"], s["StreamArn"]) for s in streams] == [("orders", orders["LatestStreamArn"])]

    us_tables = client("dynamodb", US, endpoint).list_tables()["TableNames"]
    assert us_tables == ["audit-events"] and f":{US}:" in tables["audit-events"]


def test_kinesis_and_firehose(endpoint: str, estate: dict[str, Any]) -> None:
    kinesis = client("kinesis", EU, endpoint)
    summary = kinesis.describe_stream_summary(StreamName="clickstream")["StreamDescriptionSummary"]
    assert summary["StreamARN"] == estate["kinesis_stream_arns"]["clickstream"]
    assert _tags(kinesis.list_tags_for_stream(StreamName="clickstream")["Tags"]) == {"team": "analytics"}

    firehose = client("firehose", EU, endpoint)
    assert sorted(firehose.list_delivery_streams()["DeliveryStreamNames"]) == sorted(
        estate["firehose_stream_arns"]
    )
    archive = firehose.describe_delivery_stream(DeliveryStreamName="clickstream-archive")[
        "DeliveryStreamDescription"
    ]
    assert archive["DeliveryStreamARN"] == estate["firehose_stream_arns"]["clickstream-archive"]
    assert archive["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert archive["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == summary["StreamARN"]
    buckets = [d["ExtendedS3DestinationDescription"]["BucketARN"] for d in archive["Destinations"]]
    assert buckets == ["arn:aws:s3:::demo-clickstream-archive-eu"]
    export = firehose.describe_delivery_stream(DeliveryStreamName="orders-export")[
        "DeliveryStreamDescription"
    ]
    assert export["DeliveryStreamType"] == "DirectPut"
    assert [d["ExtendedS3DestinationDescription"]["BucketARN"] for d in export["Destinations"]] == [
        "arn:aws:s3:::demo-logs-eu"
    ]


def test_lambda_functions_alias_and_event_sources(endpoint: str, estate: dict[str, Any]) -> None:
    functions = estate["lambda_function_arns"]
    aws = client("lambda", EU, endpoint)
    listed = {f["FunctionName"]: f for f in aws.list_functions()["Functions"]}
    assert {name: f["FunctionArn"] for name, f in listed.items()} == {
        name: arn for name, arn in functions.items() if f":{EU}:" in arn
    }
    processor = listed["order-processor"]
    assert processor["Role"] == estate["iam_role_arns"]["lambda"]
    assert sorted(processor["VpcConfig"]["SubnetIds"]) == sorted(estate["subnet_ids"].values())
    assert processor["VpcConfig"]["SecurityGroupIds"] == [estate["security_group_ids"]["web"]]
    db_endpoint = processor["Environment"]["Variables"]["DB_ENDPOINT"]
    assert db_endpoint == estate["rds_env_endpoint"]
    match = RDS_ENDPOINT.match(db_endpoint)
    assert match and match.group(2) == EU and match.group(1) in estate["rds_instance_arns"]
    assert "VpcConfig" not in listed["event-router"] or not listed["event-router"]["VpcConfig"].get(
        "SubnetIds"
    )

    aliases = aws.list_aliases(FunctionName="order-processor")["Aliases"]
    assert [(a["Name"], a["AliasArn"], a["FunctionVersion"]) for a in aliases] == [
        ("live", estate["lambda_alias_arns"]["order-processor:live"], "1")
    ]
    mappings = {m["UUID"]: m for m in aws.list_event_source_mappings()["EventSourceMappings"]}
    assert set(mappings) == set(estate["event_source_mapping_uuids"].values())
    edges = {(m["EventSourceArn"], m["FunctionArn"], m["State"]) for m in mappings.values()}
    assert edges == {
        (estate["queue_arns"]["orders"], functions["order-processor"], "Enabled"),
        (estate["dynamodb_stream_arns"]["orders"], functions["order-processor"], "Enabled"),
        (estate["kinesis_stream_arns"]["clickstream"], functions["event-router"], "Enabled"),
    }
    us = client("lambda", US, endpoint).list_functions()["Functions"]
    assert [f["FunctionArn"] for f in us] == [functions["audit-forwarder"]]


def test_rds_cluster_and_instances(endpoint: str, estate: dict[str, Any]) -> None:
    rds = client("rds", EU, endpoint)
    cluster = rds.describe_db_clusters()["DBClusters"][0]
    assert (cluster["DBClusterArn"], cluster["Engine"]) == (
        estate["rds_cluster_arns"]["orders-aurora"],
        "aurora-postgresql",
    )
    assert [m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"]] == ["orders-aurora-1"]
    instances = {i["DBInstanceIdentifier"]: i for i in rds.describe_db_instances()["DBInstances"]}
    assert {name: i["DBInstanceArn"] for name, i in instances.items()} == estate["rds_instance_arns"]
    assert instances["orders-aurora-1"]["DBClusterIdentifier"] == "orders-aurora"
    standalone = instances["inventory-db"]
    assert standalone["DBSubnetGroup"]["VpcId"] == estate["vpc_id"]
    assert standalone["DBSubnetGroup"]["DBSubnetGroupName"] == estate["db_subnet_group"]
    assert [g["VpcSecurityGroupId"] for g in standalone["VpcSecurityGroups"]] == [
        estate["security_group_ids"]["db"]
    ]
    assert standalone["Endpoint"]["Address"] == estate["rds_endpoints"]["inventory-db"]
    assert _tags(standalone["TagList"])["team"] == "data"


def test_redshift_cluster_in_the_vpc(endpoint: str, estate: dict[str, Any]) -> None:
    cluster = client("redshift", EU, endpoint).describe_clusters()["Clusters"][0]
    assert cluster["ClusterIdentifier"] == "analytics"
    assert estate["redshift_cluster_arns"] == {
        "analytics": f"arn:aws:redshift:{EU}:{ACCOUNT}:cluster:analytics"
    }
    assert cluster["VpcId"] == estate["vpc_id"]
    assert cluster["ClusterSubnetGroupName"] == "demo-redshift"
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == [
        estate["security_group_ids"]["db"]
    ]


def test_classic_elb(endpoint: str, estate: dict[str, Any]) -> None:
    lb = client("elb", EU, endpoint).describe_load_balancers()["LoadBalancerDescriptions"][0]
    ids = estate["instance_ids"]
    assert lb["LoadBalancerName"] == "demo-classic"
    assert lb["VPCId"] == estate["vpc_id"]
    assert lb["SecurityGroups"] == [estate["security_group_ids"]["web"]]
    assert sorted(lb["Subnets"]) == sorted(estate["subnet_ids"].values())
    registered = {i["InstanceId"] for i in lb["Instances"]}
    assert registered == {ids["web-1"], ids["web-2"], *estate["autoscaling_instance_ids"]["demo-web-asg"]}


def test_elbv2_load_balancers_target_groups_and_listeners(endpoint: str, estate: dict[str, Any]) -> None:
    elbv2 = client("elbv2", EU, endpoint)
    lbs = {lb["LoadBalancerName"]: lb for lb in elbv2.describe_load_balancers()["LoadBalancers"]}
    assert {name: (lb["LoadBalancerArn"], lb["Type"]) for name, lb in lbs.items()} == {
        "demo-alb": (estate["load_balancer_arns"]["demo-alb"], "application"),
        "demo-nlb": (estate["load_balancer_arns"]["demo-nlb"], "network"),
        "demo-gwlb": (estate["load_balancer_arns"]["demo-gwlb"], "gateway"),
    }
    assert {lb["VpcId"] for lb in lbs.values()} == {estate["vpc_id"]}
    assert lbs["demo-alb"]["SecurityGroups"] == [estate["security_group_ids"]["web"]]

    tgs, ids, lb_arns = estate["target_group_arns"], estate["instance_ids"], estate["load_balancer_arns"]
    described = {tg["TargetGroupName"]: tg for tg in elbv2.describe_target_groups()["TargetGroups"]}
    assert {name: tg["TargetGroupArn"] for name, tg in described.items()} == tgs
    assert described["demo-lambda-tg"]["TargetType"] == "lambda"
    assert described["demo-ecs-tg"]["TargetType"] == "ip"
    expected_lb = {
        "demo-web-tg": "demo-alb",
        "demo-asg-tg": "demo-alb",
        "demo-ecs-tg": "demo-alb",
        "demo-lambda-tg": "demo-alb",
        "demo-nlb-tg": "demo-nlb",
        "demo-gwlb-tg": "demo-gwlb",
    }
    assert {name: tg["LoadBalancerArns"] for name, tg in described.items()} == {
        name: [lb_arns[lb]] for name, lb in expected_lb.items()
    }

    def targets(name: str) -> set[str]:
        health = elbv2.describe_target_health(TargetGroupArn=tgs[name])["TargetHealthDescriptions"]
        return {h["Target"]["Id"] for h in health}

    assert targets("demo-web-tg") == {ids["web-1"], ids["web-2"]}
    assert targets("demo-asg-tg") == set(estate["autoscaling_instance_ids"]["demo-web-asg"])
    assert targets("demo-lambda-tg") == {estate["lambda_function_arns"]["event-router"]}
    assert targets("demo-nlb-tg") == {ids["ecs-1"]}
    assert targets("demo-gwlb-tg") == {ids["db-1"]}

    listeners = estate["listener_arns"]
    for key, lb_name, default_tg in (
        ("demo-alb:80", "demo-alb", "demo-web-tg"),
        ("demo-nlb:443", "demo-nlb", "demo-nlb-tg"),
        ("demo-gwlb", "demo-gwlb", "demo-gwlb-tg"),
    ):
        listener = elbv2.describe_listeners(ListenerArns=[listeners[key]])["Listeners"][0]
        assert listener["LoadBalancerArn"] == lb_arns[lb_name]
        assert [a["TargetGroupArn"] for a in listener["DefaultActions"]] == [tgs[default_tg]]
    rules = elbv2.describe_rules(ListenerArn=listeners["demo-alb:80"])["Rules"]
    forwarded = {a["TargetGroupArn"] for r in rules for a in r["Actions"]}
    assert forwarded == {tgs[n] for n in ("demo-web-tg", "demo-asg-tg", "demo-ecs-tg", "demo-lambda-tg")}


def test_auto_scaling_group(endpoint: str, estate: dict[str, Any]) -> None:
    group = client("autoscaling", EU, endpoint).describe_auto_scaling_groups()["AutoScalingGroups"][0]
    assert group["AutoScalingGroupARN"] == estate["autoscaling_group_arns"]["demo-web-asg"]
    assert group["LoadBalancerNames"] == ["demo-classic"]
    assert group["TargetGroupARNs"] == [estate["target_group_arns"]["demo-asg-tg"]]
    assert group["LaunchTemplate"]["LaunchTemplateId"] == estate["launch_template_id"]
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(estate["subnet_ids"].values())
    launched = sorted(i["InstanceId"] for i in group["Instances"])
    assert launched == estate["autoscaling_instance_ids"]["demo-web-asg"]
    assert {estate["instance_ids"][f"demo-web-asg-{i}"] for i in (0, 1)} == set(launched)


def test_ecs_cluster_service_and_tasks(endpoint: str, estate: dict[str, Any]) -> None:
    ecs = client("ecs", EU, endpoint)
    cluster_arn = estate["ecs_cluster_arns"]["demo-cluster"]
    cluster = ecs.describe_clusters(clusters=[cluster_arn], include=["TAGS"])["clusters"][0]
    assert _lower_tags(cluster["tags"])["team"] == "platform"
    hosts = ecs.describe_container_instances(
        cluster="demo-cluster",
        containerInstances=ecs.list_container_instances(cluster="demo-cluster")["containerInstanceArns"],
    )["containerInstances"]
    assert [(h["containerInstanceArn"], h["ec2InstanceId"]) for h in hosts] == [
        (estate["ecs_container_instance_arns"]["ecs-1"], estate["instance_ids"]["ecs-1"])
    ]
    web_app = ecs.describe_task_definition(taskDefinition="web-app")["taskDefinition"]
    assert web_app["taskDefinitionArn"] == estate["ecs_task_definition_arns"]["web-app"]
    assert [c["name"] for c in web_app["containerDefinitions"]] == ["nginx", "app"]

    service = ecs.describe_services(cluster="demo-cluster", services=["web"])["services"][0]
    assert service["serviceArn"] == estate["ecs_service_arns"]["web"]
    assert [lb["targetGroupArn"] for lb in service["loadBalancers"]] == [
        estate["target_group_arns"]["demo-ecs-tg"]
    ]

    task_arns = estate["ecs_task_arns"]
    assert sorted(ecs.list_tasks(cluster="demo-cluster")["taskArns"]) == sorted(task_arns.values())
    for _ in range(3):  # the state-manager override keeps them RUNNING however often they are described
        tasks = {
            t["taskArn"]: t
            for t in ecs.describe_tasks(cluster="demo-cluster", tasks=list(task_arns.values()))["tasks"]
        }
        assert {t["lastStatus"] for t in tasks.values()} == {"RUNNING"}
    groups = {name: tasks[arn]["group"] for name, arn in task_arns.items()}
    assert groups == {"web-0": "service:web", "web-1": "service:web", "report-job": "family:report-job"}
    assert {tasks[task_arns[n]]["taskDefinitionArn"] for n in ("web-0", "web-1")} == {
        web_app["taskDefinitionArn"]
    }


def test_cloud_map_namespace_service_and_instances(endpoint: str, estate: dict[str, Any]) -> None:
    found = estate["service_discovery"]
    sd = client("servicediscovery", EU, endpoint)
    namespace = sd.get_namespace(Id=found["namespace_id"])["Namespace"]
    assert namespace["Name"] == "demo.internal"
    zone_id = namespace["Properties"]["DnsProperties"]["HostedZoneId"]
    assert (
        zone_id.removeprefix("/hostedzone/")
        == found["hosted_zone_id"]
        == estate["hosted_zone_ids"]["demo.internal"]
    )
    zone = client("route53", US, endpoint).get_hosted_zone(Id=found["hosted_zone_id"])
    assert zone["HostedZone"]["Config"]["PrivateZone"] is True  # (moto does not associate the VPC)

    service = sd.get_service(Id=found["service_id"])["Service"]
    assert service["NamespaceId"] == found["namespace_id"]
    instances = {
        i["Id"]: i["Attributes"] for i in sd.list_instances(ServiceId=found["service_id"])["Instances"]
    }
    assert sorted(instances) == found["instance_ids"]
    task_id = estate["ecs_task_arns"]["web-0"].rsplit("/", 1)[-1]
    assert instances[task_id]["ECS_SERVICE_NAME"] == "web"
    assert instances["ecs-1"]["EC2_INSTANCE_ID"] == estate["instance_ids"]["ecs-1"]


def test_rest_api_stage_and_integrations(endpoint: str, estate: dict[str, Any]) -> None:
    apigw = client("apigateway", EU, endpoint)
    api_id = estate["rest_api_ids"]["demo-shop-api"]
    api = apigw.get_rest_api(restApiId=api_id)
    assert (api["name"], api["tags"]["team"]) == ("demo-shop-api", "storefront")
    stages = apigw.get_stages(restApiId=api_id)["item"]
    assert [(s["stageName"], s["deploymentId"], s["variables"]) for s in stages] == [
        ("prod", estate["rest_api_deployment_ids"]["demo-shop-api"], {"backend": "backend.example.com"})
    ]
    assert (
        estate["rest_api_stage_arns"]["demo-shop-api/prod"]
        == f"arn:aws:execute-api:{EU}:{ACCOUNT}:{api_id}/prod"
    )

    resources = {r["path"]: r["id"] for r in apigw.get_resources(restApiId=api_id)["items"]}
    assert {p: resources[p] for p in ("/orders", "/items", "/partner")} == estate["rest_api_resource_ids"][
        "demo-shop-api"
    ]

    def integration(path: str, method: str) -> tuple[str, str]:
        found = apigw.get_method(restApiId=api_id, resourceId=resources[path], httpMethod=method)[
            "methodIntegration"
        ]
        return found["type"], found["uri"]

    function_arn = estate["lambda_function_arns"]["order-processor"]
    assert integration("/orders", "GET") == (
        "AWS_PROXY",
        f"arn:aws:apigateway:{EU}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
    )
    assert integration("/orders", "POST") == ("AWS", f"arn:aws:apigateway:{EU}:sqs:path/{ACCOUNT}/orders")
    assert integration("/items", "GET") == ("HTTP_PROXY", "http://${stageVariables.backend}:8080/items")
    assert integration("/partner", "POST") == ("HTTP_PROXY", "https://api.partner.example.com/v1/orders")

    http_api = client("apigatewayv2", US, endpoint)
    api_v2 = estate["http_api_ids"]["demo-edge-api"]
    assert http_api.get_api(ApiId=api_v2)["ProtocolType"] == "HTTP"
    assert [s["StageName"] for s in http_api.get_stages(ApiId=api_v2)["Items"]] == ["$default"]


def _states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of a definition, nested ones (Parallel branches, Map Iterator/ItemProcessor) included."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in definition["States"].items():
        found[name] = state
        for block in [*state.get("Branches", []), state.get("Iterator"), state.get("ItemProcessor")]:
            if block:
                found.update(_states(block))
    return found


def test_step_functions_definition_reaches_every_integration(endpoint: str, estate: dict[str, Any]) -> None:
    sfn = client("stepfunctions", EU, endpoint)
    machines = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    assert machines == estate["state_machine_arns"]
    activities = {a["name"]: a["activityArn"] for a in sfn.list_activities()["activities"]}
    assert activities == estate["activity_arns"]
    described = sfn.describe_state_machine(stateMachineArn=machines["order-fulfilment"])
    assert described["roleArn"] == estate["iam_role_arns"]["states"]
    states = _states(json.loads(described["definition"]))
    resources = {name: s.get("Resource") for name, s in states.items()}
    params = {name: s.get("Parameters", {}) for name, s in states.items()}

    functions = estate["lambda_function_arns"]
    assert resources["Validate"] == "arn:aws:states:::lambda:invoke"
    assert params["Validate"]["FunctionName"] == estate["lambda_alias_arns"]["order-processor:live"]
    assert (
        resources["NotifyLine"] == functions["event-router"]
    )  # direct Lambda ARN, inside the legacy Iterator
    assert (resources["Store"], params["Store"]["TableName"]) == (
        "arn:aws:states:::dynamodb:putItem",
        "orders",
    )
    assert params["Enqueue"]["QueueUrl"] == f"https://sqs.{EU}.amazonaws.com/{ACCOUNT}/orders"
    assert params["Announce"]["TopicArn"] == estate["topic_arns"]["order-events"]
    assert resources["Express"].startswith("arn:aws:states:::ecs:runTask")
    assert params["Express"]["Cluster"] == estate["ecs_cluster_arns"]["demo-cluster"]
    assert params["Express"]["TaskDefinition"] == estate["ecs_task_definition_arns"]["report-job"]
    api_id = estate["rest_api_ids"]["demo-shop-api"]
    assert params["CallApi"]["ApiEndpoint"] == f"{api_id}.execute-api.{EU}.amazonaws.com"
    assert params["CallApi"]["Stage"] == "prod"
    assert resources["Approve"] == estate["activity_arns"]["manual-approval"]
    assert params["Notify"]["StateMachineArn"] == machines["order-notify"]
    route = states["Route"]
    assert (route["Type"], [c["Next"] for c in route["Choices"]], route["Default"]) == (
        "Choice",
        ["Express", "Approve"],
        "Store",
    )
    assert [b["StartAt"] for b in states["Fanout"]["Branches"]] == ["Enqueue", "Announce"]
    assert states["NotifyLines"]["Iterator"]["StartAt"] == "NotifyLine"
    assert states["PriceLines"]["ItemProcessor"]["StartAt"] == "PriceLine"
    tags = _lower_tags(sfn.list_tags_for_resource(resourceArn=machines["order-fulfilment"])["tags"])
    assert tags["stackstate-environment"] == "production"


def test_cloudformation_stack_with_nested_stack(endpoint: str, estate: dict[str, Any]) -> None:
    cfn = client("cloudformation", EU, endpoint)
    stacks = {s["StackName"]: s for s in cfn.describe_stacks()["Stacks"]}
    assert {name: s["StackId"] for name, s in stacks.items()} == estate["stack_ids"]
    assert {s["StackStatus"] for s in stacks.values()} == {"CREATE_COMPLETE"}
    resources = {
        r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"])
        for r in cfn.list_stack_resources(StackName="demo-inventory")["StackResourceSummaries"]
    }
    nested_name = next(name for name, arn in estate["stack_ids"].items() if arn == resources["AuditStack"][1])
    assert resources["AuditStack"][0] == "AWS::CloudFormation::Stack"  # its physical id is its ARN, as on AWS
    assert {logical: physical for logical, (_, physical) in resources.items()} == estate["stack_resources"][
        "demo-inventory"
    ]
    assert {kind for kind, _ in resources.values()} == {
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::S3::Bucket",
        "AWS::EC2::SecurityGroup",
        "AWS::CloudFormation::Stack",
    }
    nested = cfn.list_stack_resources(StackName=nested_name)["StackResourceSummaries"]
    assert {r["ResourceType"] for r in nested} == {"AWS::SQS::Queue", "AWS::SNS::Topic"}
    # what the stacks created is in the per-type maps
    assert {"inventory-updates", "inventory-audit"} <= set(estate["queue_arns"])
    assert {"inventory-events", "inventory-alerts"} <= set(estate["topic_arns"])
    assert "inventory" in estate["dynamodb_table_arns"] and "inventory-sync" in estate["lambda_function_arns"]
    assert estate["security_group_ids"]["inventory-sync"] == resources["SyncSecurityGroup"][1]


def test_route53_zone_records_and_domain(endpoint: str, estate: dict[str, Any]) -> None:
    route53 = client("route53", US, endpoint)
    zone_id = estate["hosted_zone_ids"]["demo-shop.com"]
    zone = route53.get_hosted_zone(Id=zone_id)["HostedZone"]
    assert (zone["Name"].rstrip("."), zone["Config"]["PrivateZone"]) == ("demo-shop.com", False)
    records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    assert {(r["Name"], r["Type"]) for r in records} >= {
        ("www.demo-shop.com.", "A"),
        ("api.demo-shop.com.", "CNAME"),
        ("demo-shop.com.", "MX"),
        ("demo-shop.com.", "TXT"),
    }
    tags = route53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id)["ResourceTagSet"][
        "Tags"
    ]
    assert _tags(tags) == {"team": "storefront"}
    domains = client("route53domains", US, endpoint).list_domains()["Domains"]
    assert [d["DomainName"] for d in domains] == estate["domains"] == ["demo-shop.com"]


def test_bulk_in_separate_account(endpoint: str, estate: dict[str, Any]) -> None:
    account = "210987654321"
    created = seed_bulk(endpoint, resources=150, account=account)
    expected = expected_types(150, 2)
    assert created == sum(expected.values()) >= 150
    plan = plan_bulk(150, 2)

    bulk = [{"Name": "tag:bulk", "Values": ["true"]}]
    assert len(client("s3", EU, endpoint, account).list_buckets()["Buckets"]) == sum(plan["buckets"])
    instances = 0
    for index, region in enumerate((EU, US)):
        ec2 = client("ec2", region, endpoint, account)
        pages = ec2.get_paginator("describe_instances").paginate(Filters=bulk)
        instances += sum(len(r["Instances"]) for page in pages for r in page["Reservations"])
        queues = client("sqs", region, endpoint, account).list_queues(MaxResults=1000)["QueueUrls"]
        assert len(queues) == plan["queues"][index] + plan["stacks"][index]  # stacks hold one queue each
        functions = client("lambda", region, endpoint, account).list_functions()["Functions"]
        assert len(functions) == plan["functions"][index] + plan["aliased_functions"][index]
    assert instances == expected["aws.ec2.instance"]
    # the default account still holds only the demo estate
    assert len(client("s3", EU, endpoint).list_buckets()["Buckets"]) == len(estate["buckets"])


def test_bulk_plan_keeps_to_quotas() -> None:
    """A large estate stays within moto's quotas (AWS's defaults): 20 registered domains per account, 50
    delivery streams per region."""
    plan = plan_bulk(50_000, 2)
    assert plan["domains"] == [20]
    assert plan["delivery_streams"] == [50, 50]
    assert plan_bulk(150, 2)["domains"] == [1]


def test_seed_is_deterministic(endpoint: str, estate: dict[str, Any]) -> None:
    """A second seed on the same server, whose moto apps and backends all exist by now, gives the same ids.

    This is the sharp check: a service missing from demo.server's warm-up, or a backend surviving the
    reset, makes the first seed differ from later ones (on a fresh server both builds happen mid-seed).
    """
    reset(endpoint)
    assert seed_estate(endpoint) == estate
