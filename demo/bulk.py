"""Bulk seeder for benchmarks: thousands of tagged resources of every mapped service, created side by side.

moto is not thread-safe inside one backend: two concurrent EC2 creates in the same region can make one
of them iterate a dict the other is growing (``RuntimeError: dictionary changed size during iteration``
in ``create_security_group``, answered as an HTML 500 that botocore cannot even parse, so it never
retries). Creates are therefore grouped into *lanes*, one per moto backend (service x region; S3, IAM
and Route 53 have a single backend for all regions), and each lane runs its calls one after another.
Lanes run in parallel, which is safe because they never share a backend.

Some moto backends reach into others: ELB, ELBv2, Auto Scaling, ECS, RDS and Redshift read (Auto
Scaling also writes) the EC2 backend of their region; SNS subscriptions and Lambda event source
mappings read SQS, DynamoDB and Kinesis; Route 53 Domains and Cloud Map create Route 53 zones;
CloudFormation creates queues, topics and tables. So the lanes run in *phases*, each phase's lanes in
parallel and the next phase only when the last one is done:

1. independent creates: EC2 (instances, subnets, groups), SQS, SNS topics, DynamoDB, Kinesis, Lambda
   (functions, aliases, permissions), Step Functions, API Gateway v1 and v2, S3 buckets, Route 53
   (zones, records, registered domains);
2. what uses them: one lane per region for everything that touches EC2 (classic and v2 load
   balancers, Auto Scaling groups, ECS clusters with services and tasks, RDS, Redshift), SNS
   subscriptions (to queues and functions), Lambda event source mappings (queues, table streams,
   Kinesis streams), Firehose delivery streams (Kinesis source, S3 destination), S3 notifications;
3. CloudFormation stacks (one lane per region) and Cloud Map namespaces (one lane: Route 53 is global).

The estate has realistic proportions (see ``_SHARES``): many cheap queues, topics, tables, functions,
state machines and streams; few load balancers, clusters and databases; a few hundred instances at most,
because moto's DescribeInstances cost grows with every instance. Every task returns how many components
the scan will see for what it created (a REST API with its stage, resources and methods is six).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from demo.common import (
    AMI_ID,
    DEFAULT_ACCOUNT,
    MAIN_REGION,
    SECOND_REGION,
    bucket,
    client,
    configure_moto,
    lambda_zip,
    lower_tags,
    spec,
    tags,
    trust_policy,
)

# kind: share of the estate's components. Queues take what is left; instances are capped.
_SHARES: dict[str, float] = {
    "topics": 0.10,
    "buckets": 0.06,
    "groups": 0.07,
    "subnets": 0.05,
    "tables": 0.08,
    "stream_tables": 0.02,
    "functions": 0.08,
    "aliased_functions": 0.02,
    "state_machines": 0.06,
    "activities": 0.01,
    "kinesis_streams": 0.03,
    "delivery_streams": 0.02,
    "rest_apis": 0.03,
    "http_apis": 0.01,
    "classic_lbs": 0.004,
    "app_lbs": 0.008,
    "scaling_groups": 0.006,
    "ecs_clusters": 0.01,
    "db_instances": 0.006,
    "db_clusters": 0.002,
    "warehouses": 0.002,
    "stacks": 0.008,
}
_GLOBAL_SHARES: dict[str, float] = {"zones": 0.004, "domains": 0.002}
# kind: the components one unit of it shows up as in a scan.
_TYPES: dict[str, dict[str, int]] = {
    "queues": {"aws.sqs.queue": 1},
    "topics": {"aws.sns.topic": 1},
    "buckets": {"aws.s3.bucket": 1},
    "groups": {"aws.ec2.security-group": 1},
    "subnets": {"aws.ec2.subnet": 1},
    "fleet": {"aws.ec2.instance": 1},
    "tables": {"aws.dynamodb.table": 1},
    "stream_tables": {"aws.dynamodb.table": 1, "aws.dynamodb.streams": 1},
    "functions": {"aws.lambda.function": 1},
    "aliased_functions": {"aws.lambda.function": 1, "aws.lambda.alias": 1},
    "state_machines": {"aws.stepfunction.statemachine": 1, "aws.stepfunction.state": 3},
    "activities": {"aws.stepfunction.activity": 1},
    "kinesis_streams": {"aws.kinesis.data-stream": 1},
    "delivery_streams": {"aws.firehose.delivery-stream": 1},
    "rest_apis": {
        "aws.apigateway.rest-api": 1,
        "aws.apigateway.stage": 1,
        "aws.apigateway.resource": 2,
        "aws.apigateway.method": 2,
    },
    "http_apis": {"aws.apigatewayv2.api": 1, "aws.apigatewayv2.stage": 1},
    "classic_lbs": {"aws.elb-classic.load-balancer": 1},
    # two fleet instances as targets: fewer distinct ones when the fleet is small (see expected_types)
    "app_lbs": {
        "aws.elb-v2.application-load-balancer": 1,
        "aws.elb-v2.target-group": 1,
        "aws.elb-v2.target-group-instance": 2,
    },
    "scaling_groups": {
        "aws.autoscaling.group": 1,
        "aws.ec2.instance": 1,
        "aws.elb-v2.target-group-instance": 1,
    },
    # the EC2 host, two services of two tasks, one standalone task
    "ecs_clusters": {"aws.ecs.cluster": 1, "aws.ec2.instance": 1, "aws.ecs.service": 2, "aws.ecs.task": 5},
    "db_instances": {"aws.rds.instance": 1},
    "db_clusters": {"aws.rds.cluster": 1, "aws.rds.instance": 1},
    "warehouses": {"aws.redshift.cluster": 1},
    "stacks": {
        "aws.cloudformation.stack": 1,
        "aws.sqs.queue": 1,
        "aws.sns.topic": 1,
        "aws.dynamodb.table": 1,
    },
    "zones": {"aws.route53.hostedzone": 1},
    "domains": {"aws.route53.domain": 1, "aws.route53.hostedzone": 1},  # registering creates the zone
}
# Per region: the bulk VPC with its default security group, three subnets, the Cloud Map namespace's zone.
_SETUP_TYPES = {
    "aws.ec2.vpc": 1,
    "aws.ec2.security-group": 1,
    "aws.ec2.subnet": 3,
    "aws.route53.hostedzone": 1,
}
_SERVICES = (
    "ec2", "sqs", "sns", "dynamodb", "kinesis", "lambda", "stepfunctions", "apigateway", "apigatewayv2", "s3",
    "elb", "elbv2", "autoscaling", "ecs", "rds", "redshift", "firehose", "cloudformation", "servicediscovery",
)  # fmt: skip
_MAX_INSTANCES = 200
_MAX_SUBNETS_PER_REGION = 238  # /24s left in the bulk /16 after the /20 fleet and the two load-balancer /24s
_MAX_DELIVERY_STREAMS_PER_REGION = 50  # moto's quota (AWS's default one) of Firehose streams per region
_MAX_DOMAINS = 20  # moto's quota (AWS's default one) of registered domains per account
_PASSWORD = "MotoBulkOnly1"  # moto needs a master password and never checks it
_HANDLER = "def handler(event, context):\n    return event\n"
_ROLES = {
    "lambda": "lambda.amazonaws.com",
    "states": "states.amazonaws.com",
    "firehose": "firehose.amazonaws.com",
    "ecs-task": "ecs-tasks.amazonaws.com",
}
_CONTACT = {
    "FirstName": "Bulk",
    "LastName": "Owner",
    "ContactType": "COMPANY",
    "OrganizationName": "Bulk Estate",
    "AddressLine1": "1 Example Street",
    "City": "Amsterdam",
    "CountryCode": "NL",
    "ZipCode": "1000AA",
    "PhoneNumber": "+31.201234567",
    "Email": "hostmaster@example.com",
}

Task = Callable[[], int]
Lanes = dict[tuple[str, str], list[Task]]


def _short(region: str) -> str:
    """Return a compact region code for names, e.g. ``eu-west-1`` -> ``euw1``."""
    parts = region.split("-")
    return parts[0] + "".join(part[0] for part in parts[1:-1]) + parts[-1]


def _region_share(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` near-equal integers."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _size(kind: str) -> int:
    return sum(_TYPES[kind].values())


def plan_bulk(resources: int, regions: int) -> dict[str, list[int]]:
    """Per kind, the number of units per region (global kinds: one entry) for an estate of ``resources``.

    Every kind has at least one unit per region (one in all for global kinds), so even a small estate
    covers every service; queues take the rest, so the components add up to at least ``resources``.
    """
    instances = min(_MAX_INSTANCES, max(2 * regions, resources // 25))
    counts = {
        kind: [max(1, n) for n in _region_share(int(resources * share / _size(kind)), regions)]
        for kind, share in _SHARES.items()
    }
    counts.update(
        {kind: [max(1, int(resources * share / _size(kind)))] for kind, share in _GLOBAL_SHARES.items()}
    )
    counts["domains"] = [min(counts["domains"][0], _MAX_DOMAINS)]
    for index in range(regions):
        counts["subnets"][index] = min(counts["subnets"][index], _MAX_SUBNETS_PER_REGION)
        counts["delivery_streams"][index] = min(
            counts["delivery_streams"][index], _MAX_DELIVERY_STREAMS_PER_REGION
        )
    hosts = [sum(n) for n in zip(counts["ecs_clusters"], counts["scaling_groups"], strict=True)]
    counts["fleet"] = [max(1, n - h) for n, h in zip(_region_share(instances, regions), hosts, strict=True)]
    used = sum(sum(units) * _size(kind) for kind, units in counts.items())
    used += sum(_SETUP_TYPES.values()) * regions
    counts["queues"] = [max(1, n) for n in _region_share(resources - used, regions)]
    return counts


def expected_types(resources: int, regions: int) -> dict[str, int]:
    """The components per type that ``seed_bulk(resources)`` over ``regions`` regions must give a scan.

    A scan sees more of some types (moto's default VPCs, subnets and security groups), never fewer.
    """
    counts = plan_bulk(resources, regions)
    expected: dict[str, int] = {}

    def add(types: dict[str, int], units: int) -> None:
        for name, per_unit in types.items():
            expected[name] = expected.get(name, 0) + per_unit * units

    add(_SETUP_TYPES, regions)
    for kind, units in counts.items():
        add(_TYPES[kind], sum(units))
    for app_lbs, fleet in zip(counts["app_lbs"], counts["fleet"], strict=True):  # a small fleet repeats
        distinct = len({(2 * i + k) % fleet for i in range(app_lbs) for k in range(2)})
        add({"aws.elb-v2.target-group-instance": distinct - 2 * app_lbs}, 1)
    return expected


@dataclass
class _Site:
    """One region's share of the estate, and the ids its phase-1 lanes hand to later phases."""

    region: str
    account: str
    endpoint: str
    counts: dict[str, int]
    roles: dict[str, str]
    code: str = ""
    vpc_id: str = ""
    fleet_subnet: str = ""
    lb_subnets: list[str] = field(default_factory=list)
    fleet: list[str] = field(default_factory=list)
    hosts: list[tuple[str, str]] = field(default_factory=list)  # ECS hosts: (instance id, private IP)
    groups: list[str] = field(default_factory=list)
    target_groups: list[str] = field(default_factory=list)
    ecs_services: list[tuple[str, str]] = field(default_factory=list)  # (cluster, service)
    stream_arns: list[str] = field(default_factory=list)
    clients: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Make every client now, in the calling thread: boto3's default session is not thread-safe."""
        self.code = _short(self.region) + (
            "" if self.account == DEFAULT_ACCOUNT else self.account[-4:]
        )  # buckets: one namespace
        self.clients = {name: client(name, self.region, self.endpoint, self.account) for name in _SERVICES}

    def aws(self, service: str) -> Any:
        """This region's client for ``service`` (lanes share none: each uses its own services)."""
        return self.clients[service]

    def name(self, kind: str, i: int) -> str:
        return f"bulk-{self.code}-{kind}-{i:05d}"

    def tags(self, i: int, **extra: str) -> dict[str, str]:
        return {"team": f"team-{i % 8}", "bulk": "true", "region-code": self.code, **extra}

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def function_arn(self, i: int) -> str:
        """The ARN of plain function ``i`` (modulo the function count)."""
        return self.arn("lambda", f"function:{self.name('fn', i % self.counts['functions'])}")

    def queue_arn(self, i: int) -> str:
        return self.arn("sqs", self.name("queue", i % self.counts["queues"]))


def _ec2_setup(site: _Site) -> int:
    """The bulk /16 VPC (DNS hostnames on), its /20 fleet subnet and two load-balancer /24s in two AZs."""
    ec2, base = site.aws("ec2"), {"bulk": "true", "region-code": site.code}
    site.vpc_id = ec2.create_vpc(
        CidrBlock="10.200.0.0/16", TagSpecifications=spec("vpc", {"Name": f"bulk-{site.code}", **base})
    )["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=site.vpc_id, EnableDnsHostnames={"Value": True})
    site.fleet_subnet = ec2.create_subnet(
        VpcId=site.vpc_id,
        CidrBlock="10.200.0.0/20",
        AvailabilityZone=f"{site.region}a",
        TagSpecifications=spec("subnet", {"Name": f"bulk-{site.code}-fleet", **base}),
    )["Subnet"]["SubnetId"]
    site.lb_subnets = [
        ec2.create_subnet(
            VpcId=site.vpc_id,
            CidrBlock=f"10.200.{254 + n}.0/24",
            AvailabilityZone=f"{site.region}{zone}",
            TagSpecifications=spec("subnet", {"Name": f"bulk-{site.code}-lb-{zone}", **base}),
        )["Subnet"]["SubnetId"]
        for n, zone in enumerate("ab")
    ]
    return 5  # with the VPC's default security group


def _roles(endpoint: str, account: str) -> dict[str, str]:
    """One IAM service role per service that needs one (Lambda refuses unknown roles)."""
    iam = client("iam", SECOND_REGION, endpoint, account)
    return {
        name: iam.create_role(
            RoleName=f"bulk-{name}-role",
            AssumeRolePolicyDocument=trust_policy(service),
            Tags=tags(bulk="true"),
        )["Role"]["Arn"]
        for name, service in _ROLES.items()
    }


# Phase 1 ------------------------------------------------------------------------------------------------


def _create_one(call: Callable[..., Any], **kwargs: Any) -> int:
    """Run one create call and count it as one resource."""
    call(**kwargs)
    return 1


def _run_fleet(site: _Site, count: int, batch: int, role: str) -> int:
    """Launch ``count`` instances in the fleet subnet in one call; keep their ids; return how many started."""
    reservation = site.aws("ec2").run_instances(
        ImageId=AMI_ID,
        MinCount=count,
        MaxCount=count,
        InstanceType="t3.nano" if role == "fleet" else "t3.medium",
        SubnetId=site.fleet_subnet,
        ClientToken=f"bulk-{site.code}-{role}-{batch}",
        TagSpecifications=spec(
            "instance", {"Name": f"bulk-{site.code}-{role}", "bulk": "true", "region-code": site.code}
        ),
    )
    started = reservation["Instances"]
    if role == "fleet":
        site.fleet += [i["InstanceId"] for i in started]
    else:
        site.hosts += [(i["InstanceId"], i["PrivateIpAddress"]) for i in started]
    return len(started)


def _ec2_lane(site: _Site) -> list[Task]:
    """Instances (fleet in batches of 100, ECS hosts), /24 subnets and security groups of one region."""
    ec2, counts, base = site.aws("ec2"), site.counts, {"bulk": "true", "region-code": site.code}
    fleet = counts["fleet"]
    lane: list[Task] = [
        partial(_run_fleet, site, min(100, fleet - batch), batch, "fleet") for batch in range(0, fleet, 100)
    ]
    lane.append(partial(_run_fleet, site, counts["ecs_clusters"], 0, "ecs-host"))
    lane += [
        partial(
            _create_one,
            ec2.create_subnet,
            VpcId=site.vpc_id,
            CidrBlock=f"10.200.{16 + i}.0/24",
            AvailabilityZone=f"{site.region}{'abc'[i % 3]}",
            TagSpecifications=spec("subnet", {"Name": site.name("subnet", i), **base}),
        )
        for i in range(counts["subnets"])
    ]
    lane += [partial(_security_group, site, i) for i in range(counts["groups"])]
    return lane


def _security_group(site: _Site, i: int) -> int:
    name = site.name("sg", i)
    site.groups.append(
        site.aws("ec2").create_security_group(
            GroupName=name,
            Description=f"bulk group {name}",
            VpcId=site.vpc_id,
            TagSpecifications=spec("security-group", {"Name": name, **site.tags(i)}),
        )["GroupId"]
    )
    return 1


def _sqs_lane(site: _Site) -> list[Task]:
    sqs = site.aws("sqs")
    return [
        partial(_create_one, sqs.create_queue, QueueName=site.name("queue", i), tags=site.tags(i))
        for i in range(site.counts["queues"])
    ]


def _sns_lane(site: _Site) -> list[Task]:
    sns = site.aws("sns")
    return [
        partial(_create_one, sns.create_topic, Name=site.name("topic", i), Tags=tags(**site.tags(i)))
        for i in range(site.counts["topics"])
    ]


def _table(site: _Site, i: int, stream: bool) -> int:
    """An on-demand table; with ``stream`` a NEW_IMAGE stream (its ARN is kept for event sources)."""
    kwargs: dict[str, Any] = {
        "TableName": site.name("stream-table" if stream else "table", i),
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
        "Tags": tags(**site.tags(i)),
    }
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    table = site.aws("dynamodb").create_table(**kwargs)["TableDescription"]
    if stream:
        site.stream_arns.append(table["LatestStreamArn"])
    return 2 if stream else 1


def _dynamodb_lane(site: _Site) -> list[Task]:
    return [partial(_table, site, i, False) for i in range(site.counts["tables"])] + [
        partial(_table, site, i, True) for i in range(site.counts["stream_tables"])
    ]


def _kinesis_stream(site: _Site, i: int) -> int:
    kinesis, name = site.aws("kinesis"), site.name("stream", i)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.add_tags_to_stream(StreamName=name, Tags=site.tags(i))
    return 1


def _kinesis_lane(site: _Site) -> list[Task]:
    return [partial(_kinesis_stream, site, i) for i in range(site.counts["kinesis_streams"])]


def _rds_endpoint(site: _Site, i: int) -> str:
    """An RDS instance endpoint as AWS spells it (12-character label), for a function's environment."""
    db = site.name("db", i % site.counts["db_instances"])
    return f"{db}.abcdefghijkl.{site.region}.rds.amazonaws.com:5432"


def _function(site: _Site, i: int, aliased: bool) -> int:
    """A python3.12 function; every 10th names an RDS endpoint in its environment; aliased ones are
    published with alias ``live``. Functions that S3 or SNS invoke get the permission for it."""
    aws, name = site.aws("lambda"), site.name("afn" if aliased else "fn", i)
    variables = {"LOG_LEVEL": "info", "TABLE": site.name("table", i % site.counts["tables"])}
    if i % 10 == 0:
        variables["DB_ENDPOINT"] = _rds_endpoint(site, i)
    aws.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=site.roles["lambda"],
        Handler="index.handler",
        Code={"ZipFile": lambda_zip(_HANDLER)},
        Publish=aliased,
        Environment={"Variables": variables},
        Tags=site.tags(i),
    )
    if aliased:
        aws.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        return 2
    for principal, every in (("s3", 10), ("sns", 10)):
        if i % every == 0:
            aws.add_permission(
                FunctionName=name,
                StatementId=f"{principal}-invoke",
                Action="lambda:InvokeFunction",
                Principal=f"{principal}.amazonaws.com",
            )
    return 1


def _lambda_lane(site: _Site) -> list[Task]:
    return [partial(_function, site, i, False) for i in range(site.counts["functions"])] + [
        partial(_function, site, i, True) for i in range(site.counts["aliased_functions"])
    ]


def _definition(site: _Site, i: int) -> dict[str, Any]:
    """Three task states: invoke a function, put an item in a table, then send to a queue or a topic."""
    if i % 2:
        topic = site.arn("sns", site.name("topic", i % site.counts["topics"]))
        last = {
            "Resource": "arn:aws:states:::sns:publish",
            "Parameters": {"TopicArn": topic, "Message.$": "$"},
        }
    else:
        url = f"https://sqs.{site.region}.amazonaws.com/{site.account}/{site.name('queue', i)}"
        last = {
            "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": url, "MessageBody.$": "$"},
        }
    return {
        "StartAt": "Invoke",
        "States": {
            "Invoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": site.function_arn(i), "Payload.$": "$"},
                "Next": "Store",
            },
            "Store": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": {
                    "TableName": site.name("table", i % site.counts["tables"]),
                    "Item": {"id": {"S.$": "$.id"}},
                },
                "Next": "Send",
            },
            "Send": {"Type": "Task", "End": True, **last},
        },
    }


def _stepfunctions_lane(site: _Site) -> list[Task]:
    sfn = site.aws("stepfunctions")
    lane: list[Task] = [
        partial(
            _create_one, sfn.create_activity, name=site.name("activity", i), tags=lower_tags(site.tags(i))
        )
        for i in range(site.counts["activities"])
    ]
    return lane + [partial(_state_machine, site, i) for i in range(site.counts["state_machines"])]


def _state_machine(site: _Site, i: int) -> int:
    site.aws("stepfunctions").create_state_machine(
        name=site.name("flow", i),
        definition=json.dumps(_definition(site, i)),
        roleArn=site.roles["states"],
        tags=lower_tags(site.tags(i)),
    )
    return 4


def _rest_api(site: _Site, i: int) -> int:
    """REST API with stage ``prod``: GET /orders -> a function (AWS_PROXY), POST /items -> a queue (AWS)."""
    apigw = site.aws("apigateway")
    api = apigw.create_rest_api(
        name=site.name("api", i), endpointConfiguration={"types": ["REGIONAL"]}, tags=site.tags(i)
    )["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    function = site.function_arn(i)
    lambda_uri = f"arn:aws:apigateway:{site.region}:lambda:path/2015-03-31/functions/{function}/invocations"
    sqs_uri = f"arn:aws:apigateway:{site.region}:sqs:path/{site.account}/{site.name('queue', i)}"
    for part, verb, kind, uri in (
        ("orders", "GET", "AWS_PROXY", lambda_uri),
        ("items", "POST", "AWS", sqs_uri),
    ):
        resource = apigw.create_resource(restApiId=api, parentId=root, pathPart=part)["id"]
        apigw.put_method(restApiId=api, resourceId=resource, httpMethod=verb, authorizationType="NONE")
        apigw.put_integration(
            restApiId=api,
            resourceId=resource,
            httpMethod=verb,
            type=kind,
            integrationHttpMethod="POST",
            uri=uri,
        )
    deployment = apigw.create_deployment(restApiId=api)["id"]
    apigw.create_stage(restApiId=api, stageName="prod", deploymentId=deployment, tags=site.tags(i))
    return 6


def _http_api(site: _Site, i: int) -> int:
    apigw = site.aws("apigatewayv2")
    api = apigw.create_api(Name=site.name("http-api", i), ProtocolType="HTTP", Tags=site.tags(i))["ApiId"]
    apigw.create_stage(ApiId=api, StageName="$default", AutoDeploy=True, Tags=site.tags(i))
    return 2


def _bucket_lane(sites: list[_Site]) -> list[Task]:
    """S3 buckets of every region, in one lane (S3 has one backend)."""
    return [partial(_bucket, site, i) for site in sites for i in range(site.counts["buckets"])]


def _bucket(site: _Site, i: int) -> int:
    bucket(site.aws("s3"), site.name("bucket", i), site.region, site.tags(i))
    return 1


def _zone(route53: Any, i: int) -> int:
    """Public zone ``bulk-zone-{i}.example.com`` with a www CNAME and an MX record, tagged."""
    name = f"bulk-zone-{i:03d}.example.com"
    zone = route53.create_hosted_zone(Name=name, CallerReference=f"bulk-zone-{i:03d}")["HostedZone"]["Id"]
    zone = zone.removeprefix("/hostedzone/")
    route53.change_tags_for_resource(
        ResourceType="hostedzone", ResourceId=zone, AddTags=tags(team=f"team-{i % 8}", bulk="true")
    )
    changes = [
        {
            "Name": f"www.{name}.",
            "Type": "CNAME",
            "TTL": 300,
            "ResourceRecords": [{"Value": f"lb-{i}.example.net"}],
        },
        {"Name": f"{name}.", "Type": "MX", "TTL": 300, "ResourceRecords": [{"Value": f"10 mail.{name}."}]},
    ]
    route53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": c} for c in changes]},
    )
    return 1


def _domain(domains: Any, i: int) -> int:
    """Register ``bulk-shop-{i}.com`` (which creates its hosted zone) and tag it."""
    name = f"bulk-shop-{i:03d}.com"
    domains.register_domain(
        DomainName=name,
        DurationInYears=2,  # moto rejects 1
        AdminContact=_CONTACT,
        RegistrantContact=_CONTACT,
        TechContact=_CONTACT,
    )
    domains.update_tags_for_domain(DomainName=name, TagsToUpdate=tags(team=f"team-{i % 8}", bulk="true"))
    return 2


def _route53_lane(endpoint: str, account: str, counts: dict[str, list[int]]) -> list[Task]:
    """Hosted zones and registered domains, in one lane (Route 53 Domains creates Route 53 zones)."""
    route53 = client("route53", SECOND_REGION, endpoint, account)
    domains = client("route53domains", SECOND_REGION, endpoint, account)
    return [partial(_zone, route53, i) for i in range(counts["zones"][0])] + [
        partial(_domain, domains, i) for i in range(counts["domains"][0])
    ]


def _phase_one(sites: list[_Site], endpoint: str, account: str, counts: dict[str, list[int]]) -> Lanes:
    lanes: Lanes = {
        ("s3", "global"): _bucket_lane(sites),
        ("route53", "global"): _route53_lane(endpoint, account, counts),
    }
    for site in sites:
        n = site.counts
        lanes[("ec2", site.region)] = _ec2_lane(site)
        lanes[("sqs", site.region)] = _sqs_lane(site)
        lanes[("sns", site.region)] = _sns_lane(site)
        lanes[("dynamodb", site.region)] = _dynamodb_lane(site)
        lanes[("kinesis", site.region)] = _kinesis_lane(site)
        lanes[("lambda", site.region)] = _lambda_lane(site)
        lanes[("stepfunctions", site.region)] = _stepfunctions_lane(site)
        lanes[("apigateway", site.region)] = [partial(_rest_api, site, i) for i in range(n["rest_apis"])]
        lanes[("apigatewayv2", site.region)] = [partial(_http_api, site, i) for i in range(n["http_apis"])]
    return lanes


# Phase 2 ------------------------------------------------------------------------------------------------


def _classic_lb(site: _Site, i: int) -> int:
    """Classic ELB over the two load-balancer subnets with two fleet instances registered."""
    elb, name = site.aws("elb"), site.name("clb", i)
    elb.create_load_balancer(
        LoadBalancerName=name,
        Listeners=[
            {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}
        ],
        Subnets=site.lb_subnets,
        SecurityGroups=[site.groups[i % len(site.groups)]],
        Tags=tags(**site.tags(i)),
    )
    targets = [site.fleet[(2 * i + k) % len(site.fleet)] for k in range(2)]
    elb.register_instances_with_load_balancer(
        LoadBalancerName=name, Instances=[{"InstanceId": t} for t in dict.fromkeys(targets)]
    )
    return 1


def _app_lb(site: _Site, i: int, registered: set[str]) -> int:
    """ALB with an HTTP listener forwarding to its instance target group of two fleet instances."""
    elbv2 = site.aws("elbv2")
    lb = elbv2.create_load_balancer(
        Name=site.name("alb", i),
        Type="application",
        Subnets=site.lb_subnets,
        SecurityGroups=[site.groups[i % len(site.groups)]],
        Tags=tags(**site.tags(i)),
    )["LoadBalancers"][0]["LoadBalancerArn"]
    group = elbv2.create_target_group(
        Name=site.name("tg", i),
        Protocol="HTTP",
        Port=80,
        VpcId=site.vpc_id,
        TargetType="instance",
        Tags=tags(**site.tags(i)),
    )["TargetGroups"][0]["TargetGroupArn"]
    site.target_groups.append(group)
    elbv2.create_listener(
        LoadBalancerArn=lb,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
    )
    targets = list(dict.fromkeys(site.fleet[(2 * i + k) % len(site.fleet)] for k in range(2)))
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": t} for t in targets])
    new = set(targets) - registered
    registered |= new
    return 2 + len(new)


def _scaling_group(site: _Site, i: int, template: str) -> int:
    """A one-instance group in the fleet subnet, in a target group and behind a classic ELB."""
    site.aws("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=site.name("asg", i),
        LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
        MinSize=1,
        MaxSize=2,
        DesiredCapacity=1,
        VPCZoneIdentifier=site.fleet_subnet,
        LoadBalancerNames=[site.name("clb", i % site.counts["classic_lbs"])],
        TargetGroupARNs=[site.target_groups[i % len(site.target_groups)]],
        Tags=[
            {"Key": key, "Value": value, "PropagateAtLaunch": True}
            for key, value in {"Name": site.name("asg", i), **site.tags(i)}.items()
        ],
    )
    return 3


def _scaling_groups(site: _Site) -> int:
    template = site.aws("ec2").create_launch_template(
        LaunchTemplateName=f"bulk-{site.code}-lt",
        LaunchTemplateData={"ImageId": AMI_ID, "InstanceType": "t3.nano"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    return sum(_scaling_group(site, i, template) for i in range(site.counts["scaling_groups"]))


def _identity_document(site: _Site, instance_id: str, ip: str) -> str:
    """An EC2 instance identity document, as the ECS agent sends it on registration."""
    return json.dumps(
        {
            "accountId": site.account,
            "availabilityZone": f"{site.region}a",
            "imageId": AMI_ID,
            "instanceId": instance_id,
            "instanceType": "t3.medium",
            "privateIp": ip,
            "region": site.region,
            "version": "2017-09-30",
        }
    )


def _ecs_cluster(site: _Site, i: int, family: str) -> int:
    """Cluster with one container instance, two services (the first behind a target group) of two
    RUNNING tasks each (moto services start none: run_task with the service's group) and one
    standalone task."""
    ecs, cluster = site.aws("ecs"), site.name("cluster", i)
    ecs.create_cluster(clusterName=cluster, tags=lower_tags(site.tags(i)))
    host, ip = site.hosts[i]
    ecs.register_container_instance(
        cluster=cluster, instanceIdentityDocument=_identity_document(site, host, ip)
    )
    for k in range(2):
        service = f"svc-{k}"
        balancers = []
        if k == 0:
            group = site.target_groups[i % len(site.target_groups)]
            balancers = [{"targetGroupArn": group, "containerName": "app", "containerPort": 8080}]
        ecs.create_service(
            cluster=cluster,
            serviceName=service,
            taskDefinition=family,
            desiredCount=2,
            launchType="EC2",
            loadBalancers=balancers,
            tags=lower_tags(site.tags(i)),
        )
        ecs.run_task(
            cluster=cluster, taskDefinition=family, count=2, group=f"service:{service}", launchType="EC2"
        )
        site.ecs_services.append((cluster, service))
    ecs.run_task(cluster=cluster, taskDefinition=family, launchType="EC2")
    return 8


def _ecs_clusters(site: _Site) -> int:
    family = f"bulk-{site.code}-app"
    site.aws("ecs").register_task_definition(
        family=family,
        taskRoleArn=site.roles["ecs-task"],
        networkMode="bridge",
        containerDefinitions=[
            {
                "name": "app",
                "image": "bulk/app:1.0",
                "cpu": 128,
                "memory": 256,
                "essential": True,
                "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],  # no hostPort: none reserved
            }
        ],
    )
    return sum(_ecs_cluster(site, i, family) for i in range(site.counts["ecs_clusters"]))


def _databases(site: _Site) -> int:
    """RDS subnet group, PostgreSQL instances, Aurora clusters with one member each; Redshift clusters."""
    rds, group = site.aws("rds"), f"bulk-{site.code}-db"
    rds.create_db_subnet_group(
        DBSubnetGroupName=group, DBSubnetGroupDescription="bulk databases", SubnetIds=site.lb_subnets
    )
    created = 0
    for i in range(site.counts["db_instances"]):
        rds.create_db_instance(
            DBInstanceIdentifier=site.name("db", i),
            Engine="postgres",
            DBInstanceClass="db.t3.micro",
            AllocatedStorage=20,
            MasterUsername="bulk",
            MasterUserPassword=_PASSWORD,
            DBSubnetGroupName=group,
            VpcSecurityGroupIds=[site.groups[i % len(site.groups)]],
            Tags=tags(**site.tags(i)),
        )
        created += 1
    for i in range(site.counts["db_clusters"]):
        cluster = site.name("aurora", i)
        rds.create_db_cluster(
            DBClusterIdentifier=cluster,
            Engine="aurora-postgresql",
            MasterUsername="bulk",
            MasterUserPassword=_PASSWORD,
            DBSubnetGroupName=group,
            Tags=tags(**site.tags(i)),
        )
        rds.create_db_instance(
            DBInstanceIdentifier=f"{cluster}-1",
            DBClusterIdentifier=cluster,
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large",
            DBSubnetGroupName=group,
        )
        created += 2
    return created + _warehouses(site)


def _warehouses(site: _Site) -> int:
    redshift, group = site.aws("redshift"), f"bulk-{site.code}-dw"
    redshift.create_cluster_subnet_group(
        ClusterSubnetGroupName=group, Description="bulk warehouses", SubnetIds=site.lb_subnets
    )
    for i in range(site.counts["warehouses"]):
        redshift.create_cluster(
            ClusterIdentifier=site.name("dw", i),
            NodeType="dc2.large",
            ClusterType="single-node",
            MasterUsername="bulk",
            MasterUserPassword=_PASSWORD,
            ClusterSubnetGroupName=group,
            Tags=tags(**site.tags(i)),
        )
    return site.counts["warehouses"]


def _ec2_users_lane(site: _Site) -> list[Task]:
    """Everything that reads or writes the region's EC2 backend, in one lane."""
    registered: set[str] = set()
    lane: list[Task] = [partial(_classic_lb, site, i) for i in range(site.counts["classic_lbs"])]
    lane += [partial(_app_lb, site, i, registered) for i in range(site.counts["app_lbs"])]
    return [*lane, partial(_scaling_groups, site), partial(_ecs_clusters, site), partial(_databases, site)]


def _subscribe(site: _Site, i: int) -> int:
    """Every 4th topic delivers to a queue, every 10th to a function."""
    sns, topic = site.aws("sns"), site.arn("sns", site.name("topic", i))
    if i % 4 == 0:
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=site.queue_arn(i))
    if i % 10 == 0:
        sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=site.function_arn(i))
    return 0


def _event_sources(site: _Site) -> int:
    """Every table stream, every 3rd Kinesis stream and every 20th queue feed a function."""
    aws = site.aws("lambda")
    sources = [(arn, "LATEST") for arn in site.stream_arns]
    sources += [
        (site.arn("kinesis", f"stream/{site.name('stream', i)}"), "TRIM_HORIZON")
        for i in range(0, site.counts["kinesis_streams"], 3)
    ]
    for n, (arn, position) in enumerate(sources):
        aws.create_event_source_mapping(
            EventSourceArn=arn, FunctionName=site.function_arn(n), StartingPosition=position
        )
    for i in range(0, site.counts["queues"], 20):
        aws.create_event_source_mapping(
            EventSourceArn=site.queue_arn(i), FunctionName=site.function_arn(i), BatchSize=10
        )
    return 0


def _delivery_stream(site: _Site, i: int) -> int:
    """Every other delivery stream reads a Kinesis stream; each writes to a bucket of its region."""
    kwargs: dict[str, Any] = {"DeliveryStreamType": "DirectPut"}
    if i % 2 == 0:
        stream = site.name("stream", i % site.counts["kinesis_streams"])
        kwargs = {
            "DeliveryStreamType": "KinesisStreamAsSource",
            "KinesisStreamSourceConfiguration": {
                "KinesisStreamARN": site.arn("kinesis", f"stream/{stream}"),
                "RoleARN": site.roles["firehose"],
            },
        }
    site.aws("firehose").create_delivery_stream(
        DeliveryStreamName=site.name("firehose", i),
        ExtendedS3DestinationConfiguration={
            "RoleARN": site.roles["firehose"],
            "BucketARN": f"arn:aws:s3:::{site.name('bucket', i % site.counts['buckets'])}",
            "Prefix": f"stream-{i}/",
        },
        Tags=tags(**site.tags(i)),
        **kwargs,
    )
    return 1


def _notify(site: _Site, i: int) -> int:
    """Bucket ``i`` notifies a function of its region of new objects."""
    site.aws("s3").put_bucket_notification_configuration(
        Bucket=site.name("bucket", i),
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "Id": "new-objects",
                    "LambdaFunctionArn": site.function_arn(i),
                    "Events": ["s3:ObjectCreated:*"],
                }
            ]
        },
    )
    return 0


def _phase_two(sites: list[_Site]) -> Lanes:
    lanes: Lanes = {("s3", "global"): []}
    for site in sites:
        lanes[("ec2", site.region)] = _ec2_users_lane(site)
        lanes[("sns", site.region)] = [
            partial(_subscribe, site, i) for i in range(0, site.counts["topics"], 2)
        ]
        lanes[("lambda", site.region)] = [partial(_event_sources, site)]
        lanes[("firehose", site.region)] = [
            partial(_delivery_stream, site, i) for i in range(site.counts["delivery_streams"])
        ]
        lanes[("s3", "global")] += [partial(_notify, site, i) for i in range(0, site.counts["buckets"], 10)]
    return lanes


# Phase 3 ------------------------------------------------------------------------------------------------


def _stack(site: _Site, i: int) -> int:
    """A stack of a queue, a topic and a table (names derived from the stack's)."""
    name = site.name("stack", i)
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-queue"}},
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{name}-topic"}},
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": f"{name}-table",
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                },
            },
        },
    }
    site.aws("cloudformation").create_stack(
        StackName=name, TemplateBody=json.dumps(template), Tags=tags(**site.tags(i))
    )
    return 4


def _namespace(site: _Site) -> int:
    """Private DNS namespace ``bulk-{code}.internal`` (a Route 53 zone) in the bulk VPC; one Cloud Map
    service per ECS service, with one instance standing for it; one for the first ECS host."""
    sd = site.aws("servicediscovery")
    operation = sd.create_private_dns_namespace(
        Name=f"bulk-{site.code}.internal", Vpc=site.vpc_id, CreatorRequestId=f"bulk-{site.code}-namespace"
    )["OperationId"]
    namespace = sd.get_operation(OperationId=operation)["Operation"]["Targets"]["NAMESPACE"]
    members = [(f"{c}-{s}", {"ECS_SERVICE_NAME": s, "ECS_CLUSTER_NAME": c}) for c, s in site.ecs_services]
    members.append(("hosts", {"EC2_INSTANCE_ID": site.hosts[0][0]}))
    for n, (name, attributes) in enumerate(members):
        service = sd.create_service(
            Name=name,
            NamespaceId=namespace,
            CreatorRequestId=f"bulk-{site.code}-{name}",
            DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 60}]},
        )["Service"]["Id"]
        sd.register_instance(
            ServiceId=service,
            InstanceId=f"{name}-0",
            CreatorRequestId=f"bulk-{site.code}-{name}-0",
            Attributes={"AWS_INSTANCE_IPV4": f"10.200.0.{10 + n % 200}", **attributes},
        )
    return 1


def _phase_three(sites: list[_Site]) -> Lanes:
    lanes: Lanes = {("servicediscovery", "global"): [partial(_namespace, site) for site in sites]}
    for site in sites:
        lanes[("cloudformation", site.region)] = [
            partial(_stack, site, i) for i in range(site.counts["stacks"])
        ]
    return lanes


# Driver -------------------------------------------------------------------------------------------------


def _run_lane(tasks: list[Task]) -> int:
    """Run one lane's creates in order and return how many components they made."""
    return sum(task() for task in tasks)


def _run_phase(lanes: Lanes, workers: int) -> int:
    """Run the lanes side by side, longest first, at most ``workers`` at once."""
    ordered = sorted(lanes.values(), key=len, reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(ordered)))) as pool:
        return sum(pool.map(_run_lane, ordered))


def seed_bulk(
    endpoint: str,
    resources: int = 2000,
    regions: Sequence[str] = (MAIN_REGION, SECOND_REGION),
    *,
    account: str = DEFAULT_ACCOUNT,
    workers: int = 8,
) -> int:
    """Create at least ``resources`` tagged resources of every mapped service over ``regions``; return
    how many components they make.

    Per region: a /16 VPC with a /20 fleet subnet (instances in batches of 100) and two load-balancer
    /24s; then the kinds of ``plan_bulk`` in three phases (see the module docstring). Route 53 zones and
    registered domains are global. Names are deterministic; ids are not when ``workers > 1`` (moto draws
    them in arrival order). At most ``workers`` lanes (one per moto backend) run at once.
    """
    regions = list(regions)
    counts = plan_bulk(resources, len(regions))
    configure_moto(endpoint)  # Lambda without docker; ECS tasks stay RUNNING
    roles = _roles(endpoint, account)
    regional = {kind: units for kind, units in counts.items() if kind not in _GLOBAL_SHARES}
    sites = [
        _Site(region, account, endpoint, {kind: units[index] for kind, units in regional.items()}, roles)
        for index, region in enumerate(regions)
    ]
    created = sum(_ec2_setup(site) for site in sites)
    created += _run_phase(_phase_one(sites, endpoint, account, counts), workers)
    created += _run_phase(_phase_two(sites), workers)
    created += _run_phase(_phase_three(sites), workers)
    return created
