"""Compute side of the demo estate: NAT gateway, Lambda, ELB classic, ELBv2, Auto Scaling, ECS, Cloud Map."""

from __future__ import annotations

import json
from typing import Any

from demo.common import (
    AMI_ID,
    MAIN_REGION,
    SECOND_REGION,
    client,
    instance,
    lambda_zip,
    lower_tags,
    spec,
    tags,
)

_HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
# moto's DB instance address is '{id}.aaaaaaaaaa.{region}.rds.amazonaws.com' (10 letters); the StackPack's
# environment-variable detection wants a 12-character label, as real AWS endpoints have.
_RDS_ENDPOINT_LABEL = "abcdefghijkl"


def _subnets(out: dict[str, Any]) -> list[str]:
    """The demo VPC's two subnets, in AZ order."""
    return [out["subnet_ids"][az] for az in sorted(out["subnet_ids"])]


def seed_nat_gateway(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """An Elastic IP and a NAT gateway using it in subnet ``eu-west-1a``."""
    ec2 = client("ec2", MAIN_REGION, endpoint, account)
    allocation = ec2.allocate_address(
        Domain="vpc", TagSpecifications=spec("elastic-ip", {"Name": "demo-nat-eip", "team": "network"})
    )["AllocationId"]
    nat = ec2.create_nat_gateway(
        SubnetId=out["subnet_ids"][f"{MAIN_REGION}a"],
        AllocationId=allocation,
        ClientToken="demo-nat-a",
        TagSpecifications=spec("natgateway", {"Name": "demo-nat-a", "team": "network"}),
    )["NatGateway"]["NatGatewayId"]
    out["elastic_ip_allocation_id"] = allocation
    out["nat_gateway_id"] = nat


def seed_ecs_host(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """The EC2 instance ``ecs-1`` that registers as the ECS container instance; DNS hostnames on.

    moto's run_task with ``awsvpc`` networking fails unless the VPC has EnableDnsHostnames.
    """
    ec2 = client("ec2", MAIN_REGION, endpoint, account)
    ec2.modify_vpc_attribute(VpcId=out["vpc_id"], EnableDnsHostnames={"Value": True})
    out["instance_ids"]["ecs-1"] = instance(
        ec2,
        "ecs-1",
        "demo-ecs-1",
        InstanceType="t3.medium",
        SubnetId=out["subnet_ids"][f"{MAIN_REGION}a"],
        PrivateIpAddress="10.0.0.20",
        SecurityGroupIds=[out["security_group_ids"]["web"]],
        Tags={"team": "platform", "stackstate-environment": "production"},
    )


def _function(aws: Any, name: str, role: str, team: str, **kwargs: Any) -> dict[str, Any]:
    """Create a python3.12 function (published as version 1) from a fixed zip."""
    return aws.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": lambda_zip(_HANDLER)},
        Publish=True,
        Tags={"team": team},
        **kwargs,
    )


def rds_env_endpoint(db_id: str, region: str = MAIN_REGION) -> str:
    """The RDS endpoint (with port) put in a Lambda environment variable: ``{id}.{12 chars}.{region}...``."""
    return f"{db_id}.{_RDS_ENDPOINT_LABEL}.{region}.rds.amazonaws.com:5432"


def seed_lambda(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Functions ``order-processor`` (in the VPC, alias ``live``, RDS endpoint in its environment),
    ``event-router`` (eu-west-1) and ``audit-forwarder`` (us-east-1); event source mappings
    SQS ``orders`` and DynamoDB stream ``orders`` -> order-processor, Kinesis ``clickstream`` ->
    event-router; S3 ``demo-assets-eu`` notifies event-router; SNS topics ``order-events`` and
    ``alerts`` deliver to audit-forwarder (protocol lambda; the first one across regions).
    """
    role = out["iam_role_arns"]["lambda"]
    aws = client("lambda", MAIN_REGION, endpoint, account)
    processor = _function(
        aws,
        "order-processor",
        role,
        "storefront",
        VpcConfig={"SubnetIds": _subnets(out), "SecurityGroupIds": [out["security_group_ids"]["web"]]},
        Environment={
            "Variables": {
                "DB_ENDPOINT": rds_env_endpoint("inventory-db"),
                "ORDERS_TABLE": "orders",
                "LOG_LEVEL": "info",
            }
        },
    )
    router = _function(aws, "event-router", role, "analytics", Environment={"Variables": {"MODE": "fanout"}})
    alias = aws.create_alias(FunctionName="order-processor", Name="live", FunctionVersion="1")["AliasArn"]
    mappings = _event_source_mappings(aws, out)
    _notify_lambda(endpoint, account, aws, router["FunctionArn"])

    us = client("lambda", SECOND_REGION, endpoint, account)
    forwarder = _function(
        us, "audit-forwarder", role, "platform", Environment={"Variables": {"SINK": "audit"}}
    )
    out["lambda_function_arns"] = {
        "order-processor": processor["FunctionArn"],
        "event-router": router["FunctionArn"],
        "audit-forwarder": forwarder["FunctionArn"],
    }
    out["lambda_alias_arns"] = {"order-processor:live": alias}
    out["event_source_mapping_uuids"] = mappings
    _subscribe_lambda(endpoint, account, us, forwarder["FunctionArn"], out)


def _event_source_mappings(aws: Any, out: dict[str, Any]) -> dict[str, str]:
    """SQS ``orders`` and the ``orders`` table stream -> order-processor, Kinesis ``clickstream`` ->
    event-router; return the mapping UUIDs by source.
    """
    return {
        "orders-queue": aws.create_event_source_mapping(
            EventSourceArn=out["queue_arns"]["orders"], FunctionName="order-processor", BatchSize=10
        )["UUID"],
        "orders-stream": aws.create_event_source_mapping(
            EventSourceArn=out["dynamodb_stream_arns"]["orders"],
            FunctionName="order-processor",
            StartingPosition="LATEST",
        )["UUID"],
        "clickstream": aws.create_event_source_mapping(
            EventSourceArn=out["kinesis_stream_arns"]["clickstream"],
            FunctionName="event-router",
            StartingPosition="TRIM_HORIZON",
        )["UUID"],
    }


def _notify_lambda(endpoint: str, account: str, aws: Any, function_arn: str) -> None:
    """Let S3 invoke the function and make bucket ``demo-assets-eu`` notify it of new objects."""
    aws.add_permission(
        FunctionName=function_arn,
        StatementId="s3-demo-assets-eu",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::demo-assets-eu",
    )
    client("s3", MAIN_REGION, endpoint, account).put_bucket_notification_configuration(
        Bucket="demo-assets-eu",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "Id": "new-assets",
                    "LambdaFunctionArn": function_arn,
                    "Events": ["s3:ObjectCreated:*"],
                }
            ]
        },
    )


def _subscribe_lambda(endpoint: str, account: str, aws: Any, function_arn: str, out: dict[str, Any]) -> None:
    """Subscribe the function to ``order-events`` (eu-west-1) and ``alerts`` (us-east-1)."""
    for key, topic, region in (
        ("order-events-lambda", "order-events", MAIN_REGION),
        ("alerts-lambda", "alerts", SECOND_REGION),
    ):
        topic_arn = out["topic_arns"][topic]
        aws.add_permission(
            FunctionName=function_arn,
            StatementId=f"sns-{topic}",
            Action="lambda:InvokeFunction",
            Principal="sns.amazonaws.com",
            SourceArn=topic_arn,
        )
        sns = client("sns", region, endpoint, account)
        out["subscription_arns"][key] = sns.subscribe(
            TopicArn=topic_arn, Protocol="lambda", Endpoint=function_arn
        )["SubscriptionArn"]


def seed_elb_classic(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Classic ELB ``demo-classic`` over both subnets, web security group, web-1 and web-2 registered."""
    region = MAIN_REGION
    elb = client("elb", region, endpoint, account)
    name = "demo-classic"
    elb.create_load_balancer(
        LoadBalancerName=name,
        Listeners=[
            {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}
        ],
        Subnets=_subnets(out),
        SecurityGroups=[out["security_group_ids"]["web"]],
        Tags=tags(team="storefront", Name=name),
    )
    ids = out["instance_ids"]
    elb.register_instances_with_load_balancer(
        LoadBalancerName=name, Instances=[{"InstanceId": ids["web-1"]}, {"InstanceId": ids["web-2"]}]
    )
    out["elb_classic_arns"] = {name: f"arn:aws:elasticloadbalancing:{region}:{account}:loadbalancer/{name}"}


def _target_group(elbv2: Any, name: str, vpc: str | None, **kwargs: Any) -> str:
    """Create a target group (``vpc`` None for Lambda targets) and return its ARN."""
    if vpc:
        kwargs["VpcId"] = vpc
    return elbv2.create_target_group(Name=name, Tags=tags(team="storefront"), **kwargs)["TargetGroups"][0][
        "TargetGroupArn"
    ]


def _forward(target_group: str) -> list[dict[str, str]]:
    """A listener/rule action forwarding to one target group."""
    return [{"Type": "forward", "TargetGroupArn": target_group}]


def _load_balancers(elbv2: Any, out: dict[str, Any]) -> dict[str, str]:
    """Create demo-alb (application), demo-nlb (network) and demo-gwlb (gateway); return their ARNs.

    Their DNS names and zones go to ``out["load_balancer_dns"]`` (for the Route 53 alias record).
    """
    subnets = _subnets(out)
    lbs = {
        "demo-alb": elbv2.create_load_balancer(
            Name="demo-alb",
            Type="application",
            Subnets=subnets,
            SecurityGroups=[out["security_group_ids"]["web"]],
            Tags=tags(team="storefront", **{"stackstate-environment": "production"}),
        ),
        "demo-nlb": elbv2.create_load_balancer(
            Name="demo-nlb", Type="network", Subnets=subnets, Tags=tags(team="platform")
        ),
        "demo-gwlb": elbv2.create_load_balancer(
            Name="demo-gwlb", Type="gateway", Subnets=subnets[:1], Tags=tags(team="network")
        ),
    }
    described = {name: answer["LoadBalancers"][0] for name, answer in lbs.items()}
    out["load_balancer_dns"] = {
        name: {"DNSName": lb["DNSName"], "CanonicalHostedZoneId": lb["CanonicalHostedZoneId"]}
        for name, lb in described.items()
    }
    return {name: lb["LoadBalancerArn"] for name, lb in described.items()}


def _target_groups(elbv2: Any, vpc: str) -> dict[str, str]:
    """Create the six target groups (instance, ip, lambda, TCP and GENEVE); return their ARNs."""
    http = {"Protocol": "HTTP", "Port": 80}
    return {
        "demo-web-tg": _target_group(elbv2, "demo-web-tg", vpc, TargetType="instance", **http),
        "demo-asg-tg": _target_group(elbv2, "demo-asg-tg", vpc, TargetType="instance", **http),
        "demo-ecs-tg": _target_group(elbv2, "demo-ecs-tg", vpc, TargetType="ip", **http),
        "demo-lambda-tg": _target_group(elbv2, "demo-lambda-tg", None, TargetType="lambda"),
        "demo-nlb-tg": _target_group(
            elbv2, "demo-nlb-tg", vpc, TargetType="instance", Protocol="TCP", Port=443
        ),
        "demo-gwlb-tg": _target_group(
            elbv2, "demo-gwlb-tg", vpc, TargetType="instance", Protocol="GENEVE", Port=6081
        ),
    }


def _listeners(elbv2: Any, lb_arns: dict[str, str], tgs: dict[str, str]) -> dict[str, str]:
    """One listener per load balancer, three path rules on demo-alb; return the ARNs by ``lb:port``."""
    listeners = {
        "demo-alb:80": elbv2.create_listener(
            LoadBalancerArn=lb_arns["demo-alb"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=_forward(tgs["demo-web-tg"]),
        ),
        "demo-nlb:443": elbv2.create_listener(
            LoadBalancerArn=lb_arns["demo-nlb"],
            Protocol="TCP",
            Port=443,
            DefaultActions=_forward(tgs["demo-nlb-tg"]),
        ),
        "demo-gwlb": elbv2.create_listener(
            LoadBalancerArn=lb_arns["demo-gwlb"], DefaultActions=_forward(tgs["demo-gwlb-tg"])
        ),
    }
    arns = {key: answer["Listeners"][0]["ListenerArn"] for key, answer in listeners.items()}
    for priority, (path, group) in enumerate(
        (("/shop/*", "demo-asg-tg"), ("/api/*", "demo-ecs-tg"), ("/fn/*", "demo-lambda-tg")), start=10
    ):
        elbv2.create_rule(
            ListenerArn=arns["demo-alb:80"],
            Priority=priority,
            Conditions=[{"Field": "path-pattern", "Values": [path]}],
            Actions=_forward(tgs[group]),
        )
    return arns


def seed_elbv2(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Application, network and gateway load balancers, their target groups and listeners.

    demo-alb :80 -> demo-web-tg (web-1, web-2), rules /shop/* -> demo-asg-tg (Auto Scaling),
    /api/* -> demo-ecs-tg (ECS service, ip targets), /fn/* -> demo-lambda-tg (event-router);
    demo-nlb :443 TCP -> demo-nlb-tg (ecs-1); demo-gwlb (GENEVE) -> demo-gwlb-tg (db-1).
    """
    elbv2 = client("elbv2", MAIN_REGION, endpoint, account)
    ids = out["instance_ids"]
    lb_arns = _load_balancers(elbv2, out)
    tgs = _target_groups(elbv2, out["vpc_id"])
    for group, names in (
        ("demo-web-tg", ("web-1", "web-2")),
        ("demo-nlb-tg", ("ecs-1",)),
        ("demo-gwlb-tg", ("db-1",)),
    ):
        elbv2.register_targets(TargetGroupArn=tgs[group], Targets=[{"Id": ids[name]} for name in names])
    _register_lambda_target(endpoint, account, elbv2, tgs["demo-lambda-tg"], out)
    out["load_balancer_arns"] = lb_arns
    out["target_group_arns"] = tgs
    out["listener_arns"] = _listeners(elbv2, lb_arns, tgs)


def _register_lambda_target(
    endpoint: str, account: str, elbv2: Any, target_group: str, out: dict[str, Any]
) -> None:
    """Allow ELB to invoke ``event-router`` and register it in the Lambda target group."""
    function_arn = out["lambda_function_arns"]["event-router"]
    client("lambda", MAIN_REGION, endpoint, account).add_permission(
        FunctionName=function_arn,
        StatementId="elb-demo-lambda-tg",
        Action="lambda:InvokeFunction",
        Principal="elasticloadbalancing.amazonaws.com",
        SourceArn=target_group,
    )
    elbv2.register_targets(TargetGroupArn=target_group, Targets=[{"Id": function_arn}])


def seed_autoscaling(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Launch template ``demo-web-lt`` and group ``demo-web-asg`` (2 instances over both subnets),
    attached to classic ELB ``demo-classic`` and target group ``demo-asg-tg``.

    The launched instances are added to ``instance_ids`` as ``demo-web-asg-0``/``-1`` (by instance id).
    """
    ec2 = client("ec2", MAIN_REGION, endpoint, account)
    template = ec2.create_launch_template(
        LaunchTemplateName="demo-web-lt",
        ClientToken="demo-web-lt",
        LaunchTemplateData={
            "ImageId": AMI_ID,
            "InstanceType": "t3.micro",
            "SecurityGroupIds": [out["security_group_ids"]["web"]],
        },
        TagSpecifications=spec("launch-template", {"team": "storefront"}),
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling = client("autoscaling", MAIN_REGION, endpoint, account)
    name = "demo-web-asg"
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
        MinSize=2,
        MaxSize=4,
        DesiredCapacity=2,
        VPCZoneIdentifier=",".join(_subnets(out)),
        LoadBalancerNames=["demo-classic"],
        TargetGroupARNs=[out["target_group_arns"]["demo-asg-tg"]],
        Tags=[
            {"Key": key, "Value": value, "PropagateAtLaunch": True}
            for key, value in (("Name", "demo-web-asg"), ("team", "storefront"))
        ],
    )
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    launched = sorted(i["InstanceId"] for i in group["Instances"])
    out["launch_template_id"] = template
    out["autoscaling_group_arns"] = {name: group["AutoScalingGroupARN"]}
    out["autoscaling_instance_ids"] = {name: launched}
    out["instance_ids"].update({f"{name}-{i}": instance_id for i, instance_id in enumerate(launched)})


def _identity_document(instance_id: str, region: str, account: str, ip: str) -> str:
    """An EC2 instance identity document as the ECS agent sends it on registration."""
    return json.dumps(
        {
            "accountId": account,
            "architecture": "x86_64",
            "availabilityZone": f"{region}a",
            "imageId": AMI_ID,
            "instanceId": instance_id,
            "instanceType": "t3.medium",
            "privateIp": ip,
            "region": region,
            "version": "2017-09-30",
        }
    )


def _container(name: str, image: str, port: int, host_port: bool = True) -> dict[str, Any]:
    """An essential container definition with one TCP port mapping.

    awsvpc containers leave hostPort out (it defaults to the container port): moto would otherwise
    reserve the port on the container instance and place only one task of the family.
    """
    mapping: dict[str, Any] = {"containerPort": port, "protocol": "tcp"}
    if host_port:
        mapping["hostPort"] = port
    return {
        "name": name,
        "image": image,
        "cpu": 128,
        "memory": 256,
        "essential": True,
        "portMappings": [mapping],
    }


def _task_definitions(ecs: Any, task_role: str) -> dict[str, str]:
    """Register ``web-app`` (containers nginx and app, awsvpc) and ``report-job`` (bridge); return ARNs."""
    web_app = ecs.register_task_definition(
        family="web-app",
        taskRoleArn=task_role,
        networkMode="awsvpc",
        requiresCompatibilities=["EC2"],
        containerDefinitions=[
            _container("nginx", "nginx:1.27", 80, host_port=False),
            _container("app", "demo/app:1.0", 8080, host_port=False),
        ],
        tags=lower_tags({"team": "storefront"}),
    )["taskDefinition"]["taskDefinitionArn"]
    report = ecs.register_task_definition(
        family="report-job",
        taskRoleArn=task_role,
        networkMode="bridge",
        containerDefinitions=[_container("report", "demo/report:1.0", 9000)],
    )["taskDefinition"]["taskDefinitionArn"]
    return {"web-app": web_app, "report-job": report}


def _web_service(ecs: Any, network: dict[str, Any], target_group: str) -> str:
    """Create service ``web`` (2 x web-app behind ``target_group``) and return its ARN."""
    return ecs.create_service(
        cluster="demo-cluster",
        serviceName="web",
        taskDefinition="web-app",
        desiredCount=2,
        launchType="EC2",
        clientToken="demo-web-service",
        loadBalancers=[{"targetGroupArn": target_group, "containerName": "nginx", "containerPort": 80}],
        networkConfiguration=network,
        tags=lower_tags({"team": "storefront"}),
    )["service"]["serviceArn"]


def _run_tasks(ecs: Any, network: dict[str, Any]) -> dict[str, str]:
    """Run the service's two tasks (moto services start none) and one standalone task; return ARNs.

    Service tasks are keyed ``web-0``/``web-1`` in ARN order, the standalone one ``report-job``.
    """
    service_tasks = ecs.run_task(
        cluster="demo-cluster",
        taskDefinition="web-app",
        count=2,
        group="service:web",
        startedBy="ecs-svc/demo-web",
        launchType="EC2",
        networkConfiguration=network,
        clientToken="demo-web-tasks",
    )["tasks"]
    standalone = ecs.run_task(
        cluster="demo-cluster", taskDefinition="report-job", launchType="EC2", clientToken="demo-report-task"
    )["tasks"]
    arns = sorted(task["taskArn"] for task in service_tasks)
    return {**{f"web-{i}": arn for i, arn in enumerate(arns)}, "report-job": standalone[0]["taskArn"]}


def seed_ecs(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Cluster ``demo-cluster`` with container instance ``ecs-1``; task definitions ``web-app``
    (containers nginx + app, awsvpc) and ``report-job``; service ``web`` behind ``demo-ecs-tg``;
    two RUNNING service tasks (group ``service:web``) and one standalone ``report-job`` task.
    """
    region = MAIN_REGION
    ecs = client("ecs", region, endpoint, account)
    cluster = ecs.create_cluster(
        clusterName="demo-cluster",
        tags=lower_tags({"team": "platform", "stackstate-environment": "production"}),
    )["cluster"]["clusterArn"]
    document = _identity_document(out["instance_ids"]["ecs-1"], region, account, "10.0.0.20")
    host = ecs.register_container_instance(cluster="demo-cluster", instanceIdentityDocument=document)[
        "containerInstance"
    ]["containerInstanceArn"]
    out["ecs_cluster_arns"] = {"demo-cluster": cluster}
    out["ecs_container_instance_arns"] = {"ecs-1": host}
    out["ecs_task_definition_arns"] = _task_definitions(ecs, out["iam_role_arns"]["ecs-task"])
    network = {
        "awsvpcConfiguration": {
            "subnets": _subnets(out),
            "securityGroups": [out["security_group_ids"]["web"]],
        }
    }
    out["ecs_service_arns"] = {"web": _web_service(ecs, network, out["target_group_arns"]["demo-ecs-tg"])}
    out["ecs_task_arns"] = _run_tasks(ecs, network)


def _task_ip(endpoint: str, account: str, task_arn: str) -> str:
    """The private IPv4 address of an awsvpc task's network interface attachment."""
    ecs = client("ecs", MAIN_REGION, endpoint, account)
    task = ecs.describe_tasks(cluster="demo-cluster", tasks=[task_arn])["tasks"][0]
    details = {d["name"]: d["value"] for a in task["attachments"] for d in a["details"]}
    return details["privateIPv4Address"]


def seed_service_discovery(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Private DNS namespace ``demo.internal`` (a Route53 private zone) in the demo VPC, service ``web``
    and two instances, as ECS and the EC2 agent register them: service task ``web-0`` (instance id =
    task id, attribute ECS_SERVICE_NAME) and ``ecs-1`` (attribute EC2_INSTANCE_ID).

    moto returns the namespace's HostedZoneId with a ``/hostedzone/`` prefix; the id maps hold it bare.
    """
    sd = client("servicediscovery", MAIN_REGION, endpoint, account)
    operation = sd.create_private_dns_namespace(
        Name="demo.internal",
        Vpc=out["vpc_id"],
        CreatorRequestId="demo-internal-namespace",
        Tags=tags(team="platform"),
    )["OperationId"]
    namespace = sd.get_operation(OperationId=operation)["Operation"]["Targets"]["NAMESPACE"]
    zone = sd.get_namespace(Id=namespace)["Namespace"]["Properties"]["DnsProperties"]["HostedZoneId"]
    zone = zone.removeprefix("/hostedzone/")
    service = sd.create_service(
        Name="web",
        NamespaceId=namespace,
        CreatorRequestId="demo-internal-web",
        DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 60}]},
        Tags=tags(team="storefront"),
    )["Service"]["Id"]
    task_arn = out["ecs_task_arns"]["web-0"]
    instances = {
        task_arn.rsplit("/", 1)[-1]: {
            "AWS_INSTANCE_IPV4": _task_ip(endpoint, account, task_arn),
            "ECS_SERVICE_NAME": "web",
            "ECS_CLUSTER_NAME": "demo-cluster",
            "ECS_TASK_DEFINITION_FAMILY": "web-app",
        },
        "ecs-1": {"AWS_INSTANCE_IPV4": "10.0.0.20", "EC2_INSTANCE_ID": out["instance_ids"]["ecs-1"]},
    }
    for instance_id, attributes in instances.items():
        sd.register_instance(
            ServiceId=service,
            InstanceId=instance_id,
            CreatorRequestId=f"demo-internal-{instance_id}",
            Attributes=attributes,
        )
    out["service_discovery"] = {
        "namespace_id": namespace,
        "service_id": service,
        "hosted_zone_id": zone,
        "instance_ids": sorted(instances),
    }
    out["hosted_zone_ids"]["demo.internal"] = zone
