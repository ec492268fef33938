"""Every relation points at a component of the type its mapping names (`to:`), in the same snapshot.

The lint half reads mappings/: each relation names the type of its other end, or says why that end is
outside the topology (`outside:`), and each CloudFormation type a mapping declares is one that
cfn-lint's resource specification knows. The live half seeds the demo estate on a moto server, scans it
and resolves both ends of every relation: zero dangling relations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cfnlint
import pytest

from demo.seed import seed_estate
from engine.language.components import relations
from engine.language.loader import Mappings, load_mappings
from tests.language.test_mappings import DIMENSIONS, QUEUE, problems, write
from tests.support import ListSink, moto_server, scan_live

CFN_SPEC = Path(cfnlint.__file__).parent / "data" / "schemas" / "providers" / "us-east-1.json"


@dataclass(frozen=True)
class Declared:
    """One relation of mappings/, by what a payload relation shows of it."""

    name: str
    near: frozenset[str] | None  # the types of the mapping's own end; None: a relation-only resource
    inbound: bool
    to: frozenset[str]
    outside: str | None


def declared(mappings: Mappings) -> list[Declared]:
    return [
        Declared(
            rel.type,
            frozenset(r.types) if r.emits_component else None,
            rel.inbound,
            frozenset(rel.to),
            rel.outside,
        )
        for r in mappings.resources
        for rel in r.relations
    ]


def types_by_id(components: Iterable[dict]) -> dict[str, set[str]]:
    """Component types by external id and by each URN (StackState merges on both)."""
    found: dict[str, set[str]] = {}
    for c in components:
        for key in [c["externalId"], *c["data"].get("URN", [])]:
            found.setdefault(key, set()).add(c["type"]["name"])
    return found


def unresolved(sink: ListSink, mappings: Mappings) -> tuple[list[tuple], list[str]]:
    """(dangling relations, the `outside` reasons of those that point outside the topology).

    A relation resolves when both ends are components and one declared relation of its name joins
    their types (its own end's type, and a `to:` type at the other end); it points outside when its
    own end is a component and a declared `outside:` relation of its name starts there."""
    rules = declared(mappings)
    types = types_by_id(sink.components().values())
    dangling, outside = [], []
    for r in (r for t in sink.topologies() for r in t["relations"]):
        source, target = types.get(r["sourceId"], set()), types.get(r["targetId"], set())
        name = r["type"]["name"]
        if any(_joins(rule, name, source, target) for rule in rules):
            continue
        reasons = [rule.outside for rule in rules if _leaves(rule, name, source, target)]
        if reasons:
            outside.append(reasons[0])
        else:
            dangling.append((r["sourceId"], sorted(source), name, r["targetId"], sorted(target)))
    return dangling, outside


def _joins(rule: Declared, name: str, source: set[str], target: set[str]) -> bool:
    near, far = (target, source) if rule.inbound else (source, target)
    return (
        rule.name == name
        and bool(near)
        and (rule.near is None or bool(near & rule.near))
        and bool(far & rule.to)
    )


def _leaves(rule: Declared, name: str, source: set[str], target: set[str]) -> bool:
    near, far = (target, source) if rule.inbound else (source, target)
    return bool(rule.outside and rule.name == name and not far and rule.near and near & rule.near)


# --- mappings/ -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Mappings:
    return load_mappings()


def test_every_relation_names_its_target_type_or_why_it_points_outside(shipped: Mappings) -> None:
    component_types = {t for r in shipped.resources if r.emits_component for t in r.types}
    for resource in shipped.resources:
        for i, rel in enumerate(resource.relations):
            where = f"{resource.file}: resources.{resource.name}.relations[{i}]"
            assert bool(rel.to) != bool(rel.outside), f"{where}: needs either `to` or `outside`"
            assert set(rel.to) <= component_types, f"{where}: `to` names no component type"


def test_every_declared_cloudformation_type_is_in_the_cfn_lint_specification(shipped: Mappings) -> None:
    known = set(json.loads(CFN_SPEC.read_text()))
    declared_types = [r.cloudformation.type for r in shipped.resources if r.cloudformation]
    assert len(declared_types) >= 30
    assert [t for t in declared_types if t not in known] == []


def test_stack_edges_reach_every_type_that_declares_cloudformation(shipped: Mappings) -> None:
    stack = next(r for r in shipped.resources if r.key == "cloudformation.stack")
    [edge] = stack.relations
    declaring = {t for r in shipped.resources if r.cloudformation for t in r.types}
    assert set(edge.to) == declaring
    assert {"aws.ecs.service", "aws.ec2.vpn-gateway", "aws.ec2.nat-gateway", "aws.lambda.alias"} <= declaring
    assert {"aws.apigatewayv2.api", "aws.apigatewayv2.stage", "aws.cloudformation.stack"} <= declaring


def test_a_cloudformation_type_declared_twice_is_reported_with_both_places(tmp_path: Path) -> None:
    declaration = "    cloudformation: {type: AWS::SQS::Queue}\n"
    write(tmp_path, "a.yaml", QUEUE + declaration)
    write(
        tmp_path,
        "b.yaml",
        QUEUE.replace("queue:", "other:").replace("aws.sqs.queue", "aws.sqs.other") + declaration,
    )
    assert problems(tmp_path) == [
        "b.yaml: resources.other.cloudformation.type: AWS::SQS::Queue is already declared in "
        "a.yaml: resources.queue"
    ]


def test_sns_topic_uses_every_subscribed_supported_resource(shipped: Mappings) -> None:
    topic = next(r for r in shipped.resources if r.key == "sns.topic")
    arn = "arn:aws:{}:eu-west-1:123456789012:{}"
    endpoints = {
        "lambda": arn.format("lambda", "function:fn:live"),
        "sqs": arn.format("sqs", "jobs"),
        "firehose": arn.format("firehose", "deliverystream/archive"),
        "https": "https://hooks.example.com/sns",
        "email": "ops@example.com",
        "application": arn.format("sns", "endpoint/GCM/app/1"),
    }
    item = {
        "TopicArn": arn.format("sns", "orders"),
        "_subscriptions": [{"Protocol": p, "Endpoint": e} for p, e in endpoints.items()],
        "_account": "123456789012",
        "_region": "eu-west-1",
        "_partition": "aws",
    }
    targets = {r["targetId"] for r in relations(topic, item, item["TopicArn"])}
    assert targets == {endpoints["lambda"], endpoints["sqs"], endpoints["firehose"]}


# --- the demo estate -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[ListSink, dict]]:
    with moto_server() as endpoint:
        ids = seed_estate(endpoint)
        sink, _ = scan_live(endpoint)
        yield sink, ids


@pytest.mark.live
def test_demo_estate_has_no_dangling_relation(demo: tuple[ListSink, dict], shipped: Mappings) -> None:
    sink, _ = demo
    dangling, outside = unresolved(sink, shipped)
    assert dangling == []
    assert sorted(set(outside)) == [
        "ECS task definition: not a component type",
        "IAM role: not a component type",
    ]


@pytest.mark.live
def test_demo_lambda_function_has_its_alias(demo: tuple[ListSink, dict]) -> None:
    sink, ids = demo
    [alias] = ids["lambda_alias_arns"].values()
    function = alias.rsplit(":", 1)[0]
    assert (function, "has-resource", alias) in sink.relations()


@pytest.mark.live
def test_demo_ecs_service_uses_its_cloud_map_hosted_zone(demo: tuple[ListSink, dict]) -> None:
    sink, _ = demo
    services = {i for i, c in sink.components().items() if c["type"]["name"] == "aws.ecs.service"}
    zones = {i for i, c in sink.components().items() if c["type"]["name"] == "aws.route53.hostedzone"}
    assert {
        (s, z) for s, kind, z in sink.relations() if s in services and z in zones and kind == "uses-service"
    }


@pytest.mark.live
def test_demo_components_carry_the_cloudwatch_dimensions_of_their_namespace(
    demo: tuple[ListSink, dict],
) -> None:
    sink, _ = demo
    for ext_id, component in sink.components().items():
        expected = DIMENSIONS.get(component["type"]["name"])
        if expected is not None:
            keys = {d["Key"] for d in component["data"]["CW"]["Dimensions"]}
            assert (
                keys and keys <= expected and all(d["Value"] for d in component["data"]["CW"]["Dimensions"])
            ), ext_id
