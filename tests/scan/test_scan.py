"""Full scans of the demo estate, replayed from cassettes recorded against a moto server.

The estate (demo/seed.py) holds every component type and relation type of the StackPack table, in
eu-west-1 and us-east-1 plus `global`. Assertions compare sets of external ids and (source, type, target)
triples with the ids the seeder reported, so a cassette that replays the wrong answer fails.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from engine.core.phase import Limits
from engine.delivery.payload import validate_payload
from engine.scan.full_scan import scan
from tests.language.test_mappings import STACKPACK_TYPES
from tests.language.test_relations_resolve import unresolved
from tests.support import ACCOUNT, CASSETTES, ListSink, make_config, recording, shared_mappings

pytestmark = pytest.mark.vcr

EU, US = "eu-west-1", "us-east-1"
RELATION_TYPES = {"uses-service", "has-resource", "has_cluster_node", "uses-ec2-host"}  # flowlog: flow logs


SCANS: list[int] = []  # the scans the running test made


@pytest.fixture(autouse=True)
def calls_pinned(vcr, request: pytest.FixtureRequest) -> Iterator[None]:
    """Each recorded request is played once per scan of the test, none more: repeats are allowed in
    playback, so a doubled call would otherwise replay unnoticed (nothing is played while recording)."""
    SCANS.clear()
    yield
    if recording(request.config):
        return
    counts = [vcr.play_counts[i] for i in range(len(vcr))]
    assert len(SCANS) > 0 and counts == [len(SCANS)] * len(vcr), sorted(Counter(counts).items())


def run_scan(endpoint: str, **kwargs) -> tuple[ListSink, list]:
    SCANS.append(1)
    sink = ListSink()
    max_bytes = kwargs.pop("max_bytes", 1_000_000)
    results, _calls = scan(
        make_config(**kwargs),
        shared_mappings(),
        sink,
        limits=Limits(workers=1, max_bytes=max_bytes),
        endpoint_url=endpoint,
    )
    return sink, results


def by_type(sink: ListSink, type_name: str) -> set[str]:
    return {i for i, c in sink.components().items() if c["type"]["name"] == type_name}


def test_full_scan_yields_every_stackpack_type_and_relation_type_with_no_failed_unit(aws_env, estate):
    sink, [result] = run_scan(aws_env)

    assert [u.unit.label for u in result.units if not u.complete] == []
    assert result.complete and result.collisions == [] and result.gaps() == []
    types = {c["type"]["name"] for c in sink.components().values()}
    assert types >= STACKPACK_TYPES
    assert {"aws.apigatewayv2.api", "aws.apigatewayv2.stage", "aws.ec2.nat-gateway"} <= types  # beyond
    assert {t for _, t, _ in sink.relations()} == RELATION_TYPES
    topologies = sink.topologies()
    assert topologies[0]["start_snapshot"] is True and topologies[-1]["stop_snapshot"] is True
    for payload in (p for _, p in sink.payloads):
        validate_payload(payload)


def test_every_component_links_to_its_console_page_and_carries_its_layer(aws_env, estate):
    sink, _ = run_scan(aws_env)

    for component in sink.components().values():
        data = component["data"]
        assert data["layer"] and data["domain"] == "AWS"
        if component["type"]["name"] == "aws.apigateway.method.http.integration":
            continue  # a placeholder for a service outside AWS
        region = data["Location"]["AwsRegion"]
        assert data["ConsoleUrl"].startswith(f"https://{region}.console.aws.amazon.com/"), component


def test_full_scan_lists_every_seeded_resource(aws_env, estate):
    sink, _ = run_scan(aws_env)

    assert by_type(sink, "aws.ec2.instance") == set(estate["instance_ids"].values())
    assert by_type(sink, "aws.s3.bucket") == {f"arn:aws:s3:::{b}" for b in estate["buckets"]}
    assert by_type(sink, "aws.sqs.queue") == set(estate["queue_arns"].values())
    assert by_type(sink, "aws.sns.topic") == set(estate["topic_arns"].values())
    assert by_type(sink, "aws.lambda.function") == set(estate["lambda_function_arns"].values())
    assert by_type(sink, "aws.lambda.alias") == set(estate["lambda_alias_arns"].values())
    assert by_type(sink, "aws.dynamodb.table") == set(estate["dynamodb_table_arns"].values())
    assert by_type(sink, "aws.dynamodb.streams") == set(estate["dynamodb_stream_arns"].values())
    assert by_type(sink, "aws.kinesis.data-stream") == set(estate["kinesis_stream_arns"].values())
    assert by_type(sink, "aws.firehose.delivery-stream") == set(estate["firehose_stream_arns"].values())
    assert by_type(sink, "aws.rds.cluster") == set(estate["rds_cluster_arns"].values())
    assert by_type(sink, "aws.rds.instance") == set(estate["rds_instance_arns"].values())
    assert by_type(sink, "aws.redshift.cluster") == set(estate["redshift_cluster_arns"].values())
    assert by_type(sink, "aws.elb-classic.load-balancer") == set(estate["elb_classic_arns"].values())
    assert by_type(sink, "aws.elb-v2.target-group") == set(estate["target_group_arns"].values())
    assert by_type(sink, "aws.autoscaling.group") == set(estate["autoscaling_group_arns"])  # by name
    assert by_type(sink, "aws.ecs.cluster") == set(estate["ecs_cluster_arns"].values())
    assert by_type(sink, "aws.ecs.service") == set(estate["ecs_service_arns"].values())
    assert by_type(sink, "aws.ecs.task") == set(estate["ecs_task_arns"].values())
    assert by_type(sink, "aws.stepfunction.statemachine") == set(estate["state_machine_arns"].values())
    assert by_type(sink, "aws.stepfunction.activity") == set(estate["activity_arns"].values())
    assert by_type(sink, "aws.cloudformation.stack") == set(estate["stack_ids"].values())
    assert by_type(sink, "aws.apigateway.stage") == set(estate["rest_api_stage_arns"].values())
    assert by_type(sink, "aws.route53.hostedzone") == set(estate["hosted_zone_ids"].values())
    assert by_type(sink, "aws.route53.domain") == set(estate["domains"])
    assert by_type(sink, "aws.ec2.vpn-gateway") == {estate["vpn_gateway_id"]}
    assert by_type(sink, "aws.ec2.nat-gateway") == {estate["nat_gateway_id"]}
    assert {estate["vpc_id"], estate["default_vpc_id_us"]} <= by_type(sink, "aws.ec2.vpc")
    assert set(estate["subnet_ids"].values()) <= by_type(sink, "aws.ec2.subnet")
    assert set(estate["security_group_ids"].values()) <= by_type(sink, "aws.ec2.security-group")


def test_instance_component_carries_stackpack_identifiers_tags_and_labels(aws_env, estate):
    sink, _ = run_scan(aws_env)
    web1 = estate["instance_ids"]["web-1"]
    data = sink.components()[web1]["data"]

    assert sink.components()[web1]["type"] == {"name": "aws.ec2.instance"}
    assert data["Name"] == "web-1"
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": EU}
    ip = data["PrivateIpAddress"]
    assert data["URN"][:3] == [
        f"urn:host:/{web1}",
        f"arn:aws:ec2:{EU}:{ACCOUNT}:instance/{web1}",
        f"urn:vpcip:{estate['vpc_id']}/{ip}",
    ]
    assert data["Tags"]["instance-id"] == web1 and data["Tags"]["private-ip"] == ip
    assert "stackpack:aws-v2" in data["labels"] and "Name:web-1" in data["labels"]
    assert data["Tags"]["stackstate-identifier"] in data["identifiers"]
    assert sorted(data["tags"]) == ["integration-type:aws-v2", f"integration-url:{ACCOUNT}"]


def test_bucket_tags_and_notifications_come_from_their_own_answers(aws_env, estate):
    """S3 sub-resources (?location, ?tagging, ?notification) share a path: a cassette that replayed one
    answer for all three would give every bucket no tags and no notification edge."""
    sink, _ = run_scan(aws_env)
    assets = sink.components()["arn:aws:s3:::demo-assets-eu"]["data"]

    assert assets["Tags"] == {"team": "storefront", "data-class": "public"}
    assert assets["Location"]["AwsRegion"] == EU
    assert sink.components()["arn:aws:s3:::demo-assets-us"]["data"]["Location"]["AwsRegion"] == US
    notified = {(s, t) for s, kind, t in sink.relations() if s.startswith("arn:aws:s3:::")}
    assert ("arn:aws:s3:::demo-assets-eu", estate["lambda_function_arns"]["event-router"]) in notified


def test_relations_follow_the_reference_directions(aws_env, estate):
    sink, _ = run_scan(aws_env)
    ids, sgs, subnets = estate["instance_ids"], estate["security_group_ids"], estate["subnet_ids"]
    vpc, fn, queues = estate["vpc_id"], estate["lambda_function_arns"], estate["queue_arns"]
    relations = sink.relations()

    expected = {
        # EC2
        (ids["web-1"], "uses-service", sgs["web"]),
        (ids["db-1"], "uses-service", sgs["db"]),
        (vpc, "has-resource", sgs["web"]),
        (estate["vpn_gateway_id"], "uses-service", vpc),
        *((s, "uses-service", vpc) for s in subnets.values()),
        # SNS -> SQS and Lambda subscriptions
        (estate["topic_arns"]["order-events"], "uses-service", queues["orders"]),
        (estate["topic_arns"]["alerts"], "uses-service", queues["audit"]),
        # Lambda: event sources (a queue is the parent of its function), RDS found in the environment
        (queues["orders"], "uses-service", fn["order-processor"]),
        (fn["order-processor"], "uses-service", estate["dynamodb_stream_arns"]["orders"]),
        (fn["event-router"], "uses-service", estate["kinesis_stream_arns"]["clickstream"]),
        (fn["order-processor"], "uses-service", estate["rds_instance_arns"]["inventory-db"]),
        # DynamoDB, Kinesis -> Firehose -> S3
        (estate["dynamodb_table_arns"]["orders"], "uses-service", estate["dynamodb_stream_arns"]["orders"]),
        (
            estate["kinesis_stream_arns"]["clickstream"],
            "uses-service",
            estate["firehose_stream_arns"]["clickstream-archive"],
        ),
        (
            estate["firehose_stream_arns"]["clickstream-archive"],
            "uses-service",
            "arn:aws:s3:::demo-clickstream-archive-eu",
        ),
        # RDS cluster -> member
        (
            estate["rds_cluster_arns"]["orders-aurora"],
            "has_cluster_node",
            estate["rds_instance_arns"]["orders-aurora-1"],
        ),
        # ECS
        (estate["ecs_cluster_arns"]["demo-cluster"], "uses-ec2-host", ids["ecs-1"]),
        (estate["ecs_cluster_arns"]["demo-cluster"], "has_cluster_node", estate["ecs_service_arns"]["web"]),
        (
            estate["ecs_cluster_arns"]["demo-cluster"],
            "has_cluster_node",
            estate["ecs_task_arns"]["report-job"],
        ),
        *(
            (estate["ecs_service_arns"]["web"], "has_cluster_node", estate["ecs_task_arns"][t])
            for t in ("web-0", "web-1")
        ),
        (estate["ecs_service_arns"]["web"], "uses-service", estate["target_group_arns"]["demo-ecs-tg"]),
        # Auto Scaling, via the group ARN
        *(
            (estate["autoscaling_group_arns"]["demo-web-asg"], "uses-service", i)
            for i in estate["autoscaling_instance_ids"]["demo-web-asg"]
        ),
        (
            estate["target_group_arns"]["demo-asg-tg"],
            "uses-service",
            estate["autoscaling_group_arns"]["demo-web-asg"],
        ),
        # ELBv2
        (
            estate["load_balancer_arns"]["demo-alb"],
            "uses-service",
            estate["target_group_arns"]["demo-web-tg"],
        ),
        # CloudFormation stack -> its resources
        *(
            (estate["stack_ids"]["demo-inventory"], "has-resource", target)
            for target in (
                queues["inventory-updates"],
                estate["topic_arns"]["inventory-events"],
                estate["dynamodb_table_arns"]["inventory"],
                fn["inventory-sync"],
                "arn:aws:s3:::demo-inventory-exports-eu",
                sgs["inventory-sync"],
            )
        ),
        # API Gateway
        (
            f"arn:aws:execute-api:{EU}:{ACCOUNT}:{estate['rest_api_ids']['demo-shop-api']}",
            "has-resource",
            estate["rest_api_stage_arns"]["demo-shop-api/prod"],
        ),
    }
    alb, tgs = estate["load_balancer_arns"]["demo-alb"], estate["target_group_arns"]
    asg_tg, stack = tgs["demo-asg-tg"], estate["stack_ids"]["demo-inventory"]
    topics = (estate["topic_arns"]["order-events"], estate["topic_arns"]["alerts"])
    default_sg = {  # the VPC's default group, which the seeder does not report
        i for i, c in sink.components().items()
        if c["type"]["name"] == "aws.ec2.security-group" and c["data"].get("GroupName") == "default"
        and c["data"].get("VpcId") == vpc
    }  # fmt: skip
    also = {  # the other edges of the same (source, type) pairs
        (stack, "has-resource", estate["stack_resources"]["demo-inventory"]["AuditStack"]),
        *((alb, "uses-service", tgs[t]) for t in ("demo-asg-tg", "demo-ecs-tg", "demo-lambda-tg")),
        (alb, "uses-service", sgs["web"]),
        (alb, "uses-service", vpc),
        *((asg_tg, "uses-service", f"urn:aws/target-group-instance/{i}")
          for i in estate["autoscaling_instance_ids"]["demo-web-asg"]),
        (asg_tg, "uses-service", vpc),
        (fn["order-processor"], "uses-service", sgs["web"]),
        (fn["order-processor"], "uses-service", vpc),  # its subnets' VPC (demo.server corrects moto's)
        *((topic, "uses-service", fn["audit-forwarder"]) for topic in topics),
        (ids["db-1"], "uses-service", subnets["eu-west-1b"]),
        (ids["web-1"], "uses-service", subnets["eu-west-1a"]),
        *((vpc, "has-resource", sg) for sg in {sgs["db"], sgs["inventory-sync"], *default_sg}),
        (estate["ecs_service_arns"]["web"], "uses-service", estate["service_discovery"]["hosted_zone_id"]),
    }  # fmt: skip
    assert len(default_sg) == 1
    pairs = {(source, kind) for source, kind, _ in expected}
    assert {r for r in relations if r[:2] in pairs} == expected | also  # exactly these, nothing more
    assert {(t, kind, s) for s, kind, t in expected} & relations == set()  # and none reversed
    dangling, _ = unresolved(sink, shared_mappings())
    assert dangling == []  # every relation resolves (test_relations_resolve)
    for _, payload in sink.payloads:
        for rel in payload["topologies"][0]["relations"]:
            assert rel["externalId"] == f"{rel['sourceId']}-{rel['type']['name']}-{rel['targetId']}"


def test_api_gateway_methods_reach_lambda_sqs_and_http_services(aws_env, estate):
    sink, _ = run_scan(aws_env)
    stage = estate["rest_api_stage_arns"]["demo-shop-api/prod"]
    targets = {t for s, kind, t in sink.relations() if s.startswith(f"{stage}/") and kind == "uses-service"}

    assert estate["lambda_function_arns"]["order-processor"] in targets
    assert estate["queue_arns"]["orders"] in targets
    http = by_type(sink, "aws.apigateway.method.http.integration")
    assert http and http <= targets
    assert all(h.startswith("urn:service:/") and ":" not in h.removeprefix("urn:service:/") for h in http)


def test_state_machine_states_reach_their_integrations(aws_env, estate):
    sink, _ = run_scan(aws_env)
    machine = estate["state_machine_arns"]["order-fulfilment"]
    states = {i for i in by_type(sink, "aws.stepfunction.state") if i.startswith(f"{machine}:state/")}
    targets = {t for s, _, t in sink.relations() if s in states}

    assert len(states) >= 10
    assert {
        estate["lambda_alias_arns"]["order-processor:live"],  # invoked as order-processor:live
        estate["dynamodb_table_arns"]["orders"],
        estate["queue_arns"]["orders"],
        estate["topic_arns"]["order-events"],
        estate["activity_arns"]["manual-approval"],
        estate["state_machine_arns"]["order-notify"],
    } <= targets


def test_apis_to_run_word_filter_selects_resource_types(aws_env, estate):
    sink, results = run_scan(aws_env, apis_to_run=("ec2|instances vpcs", "sqs"))

    assert {c["type"]["name"] for c in sink.components().values()} == {
        "aws.ec2.instance",
        "aws.ec2.vpc",
        "aws.sqs.queue",
    }
    assert {u.unit.resource.key for u in results[0].units} == {"ec2.instance", "ec2.vpc", "sqs.queue"}


def test_global_only_config_scans_only_the_global_types(aws_env, estate):
    sink, [result] = run_scan(aws_env, regions=("global",))

    assert result.complete
    assert {u.unit.label for u in result.units} == {
        f"{ACCOUNT}/global/route53.hostedzone",
        f"{ACCOUNT}/global/route53domains.domain",
    }
    assert {c["type"]["name"] for c in sink.components().values()} == {
        "aws.route53.hostedzone",
        "aws.route53.domain",
    }
    assert {c["data"]["Location"]["AwsRegion"] for c in sink.components().values()} == {US}


def test_small_payload_limit_splits_the_snapshot_and_keeps_every_element(aws_env, estate):
    whole, _ = run_scan(aws_env)
    split, _ = run_scan(aws_env, max_bytes=20_000)

    flags = [(t["start_snapshot"], t["stop_snapshot"]) for t in split.topologies()]
    assert len(flags) > 2
    assert flags[0] == (True, False) and flags[-1] == (False, True)
    assert set(flags[1:-1]) == {(False, False)}
    assert split.components().keys() == whole.components().keys()
    assert split.relations() == whole.relations()


@pytest.mark.vcr(str(CASSETTES / "test_scan" / "test_full_scan_lists_every_seeded_resource.yaml"))
def test_instances_and_targets_report_their_state_as_events(aws_env, estate):
    sink, _ = run_scan(aws_env)
    events = [e for _, p in sink.payloads for kind in p["events"].values() for e in kind]
    states: dict[str, list[tuple]] = {}
    for e in events:
        if e["event_type"] == "ec2_state":
            states.setdefault(e["host"], []).append((e["msg_text"], e["tags"], e["source_type_name"]))

    assert set(estate["instance_ids"].values()) <= set(states)
    assert ("running", ["state:running"], "ec2_state") in states[estate["instance_ids"]["web-1"]]
    elb = [s for s in states[estate["instance_ids"]["web-1"]] if s[0] == "InService"]  # via the classic ELB
    assert elb and elb[0][1][0] == "state:InService" and elb[0][1][1].startswith("description:")
    health = [e for e in events if e["event_type"] == "target_instance_health"]
    assert health and all(e["tags"][0].startswith("state:") for e in health)
    assert not [e for e in events if e["event_type"] == "aws_agent_check_error"]


@pytest.mark.vcr(str(CASSETTES / "test_scan" / "test_full_scan_lists_every_seeded_resource.yaml"))
def test_the_last_payload_carries_the_service_checks_with_the_instance_tags(aws_env, estate):
    sink, _ = run_scan(aws_env, tags=("env:demo",))
    *_, (_, last) = sink.payloads

    checks = {c["check"]: (c["status"], c["message"], c["tags"]) for c in last["service_checks"]}
    tags = ["env:demo", "integration-type:aws-v2", f"integration-url:{ACCOUNT}"]
    assert checks == {"aws_topology.can_connect": (0, "", tags), "aws_topology.can_execute": (0, "", tags)}
    assert all("service_checks" not in p for _, p in sink.payloads[:-1])
