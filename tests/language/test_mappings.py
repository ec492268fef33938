"""Mapping loader: the shipped files load, and every broken file is reported as `file: key: problem`."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from jmespath.parser import ParsedResult

from engine.core.errors import BadInput, MappingErrors
from engine.core.paths import MAPPINGS, SCHEMAS
from engine.language.dialect import KNOWN
from engine.language.loader import Mappings, Resource, load_mappings
from tests.support import shared_mappings

# The component types of the StackPack table (stackstate-aws-topology-behaviour.md §2.4), row 19 per LB type.
STACKPACK_TYPES = {
    *("aws.apigateway.rest-api", "aws.apigateway.stage", "aws.apigateway.resource", "aws.apigateway.method"),
    "aws.apigateway.method.http.integration",
    "aws.autoscaling.group",
    "aws.cloudformation.stack",
    *("aws.dynamodb.table", "aws.dynamodb.streams"),
    *("aws.ec2.instance", "aws.ec2.security-group", "aws.ec2.vpc", "aws.ec2.subnet", "aws.ec2.vpn-gateway"),
    *("aws.ecs.cluster", "aws.ecs.service", "aws.ecs.task"),
    "aws.elb-classic.load-balancer",
    *(f"aws.elb-v2.{kind}-load-balancer" for kind in ("application", "network", "gateway")),
    *("aws.elb-v2.target-group", "aws.elb-v2.target-group-instance"),
    "aws.firehose.delivery-stream",
    "aws.kinesis.data-stream",
    *("aws.lambda.function", "aws.lambda.alias"),
    *("aws.rds.instance", "aws.rds.cluster"),
    "aws.redshift.cluster",
    *("aws.route53.domain", "aws.route53.hostedzone"),
    "aws.s3.bucket",
    "aws.sns.topic",
    "aws.sqs.queue",
    *("aws.stepfunction.statemachine", "aws.stepfunction.state", "aws.stepfunction.activity"),
}

# A minimal valid file; each broken case below changes one thing in it.
QUEUE = """\
version: 1
service: sqs
resources:
  queue:
    type: aws.sqs.queue
    list: {operation: ListQueues, items: "QueueUrls[].{QueueUrl: @}"}
    id: QueueUrl
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(directory: Path) -> list[str]:
    """The lines of the MappingErrors that loading `directory` raises."""
    with pytest.raises(MappingErrors) as caught:
        load_mappings(directory)
    return str(caught.value).splitlines()


def add_to_queue(extra: str) -> str:
    """QUEUE with `extra` (indented as a key of resources.queue) appended."""
    return QUEUE + textwrap.indent(textwrap.dedent(extra), "    ")


# --- the shipped mappings ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Mappings:
    return load_mappings()


def test_shipped_mappings_declare_every_stackpack_type_once(shipped: Mappings) -> None:
    declared = [t for r in shipped.resources if r.emits_component for t in r.types]
    assert len(declared) == len(set(declared))
    assert set(declared) >= STACKPACK_TYPES
    assert all(r.layer for r in shipped.resources if r.emits_component)


# Types without CloudWatch metrics of their own, and why; every other type carries CW.Dimensions.
WITHOUT_METRICS = {
    "aws.apigateway.method.http.integration": "a service outside AWS",
    "aws.cloudformation.stack": "CloudFormation publishes no metrics",
    "aws.ec2.security-group": "no CloudWatch namespace",
    "aws.ec2.vpc": "no CloudWatch namespace",
    "aws.ec2.subnet": "no CloudWatch namespace",
    "aws.ec2.vpn-gateway": "AWS/VPN metrics are per VPN connection (VpnId vpn-...), not per gateway",
    "aws.ecs.task": "AWS/ECS metrics are per cluster and service",
    "aws.elb-v2.target-group-instance": "per target group; the instance's own are AWS/EC2 InstanceId",
    "aws.route53.domain": "Route 53 Domains publishes no metrics",
    "aws.stepfunction.state": "AWS/States metrics are per state machine, activity or integration",
}
# The dimensions of each type's namespace (AWS/ELB, AWS/Lambda, ...), the StackPack's own among them.
DIMENSIONS = {
    "aws.apigateway.rest-api": {"ApiName"},
    "aws.apigateway.stage": {"ApiName", "Stage"},
    "aws.apigateway.resource": {"ApiName", "Stage"},
    "aws.apigateway.method": {"ApiName", "Stage", "Resource", "Method"},
    "aws.apigatewayv2.api": {"ApiId"},
    "aws.apigatewayv2.stage": {"ApiId", "Stage"},
    "aws.autoscaling.group": {"AutoScalingGroupName"},
    "aws.dynamodb.table": {"TableName"},
    "aws.dynamodb.streams": {"TableName", "StreamLabel"},
    "aws.ec2.instance": {"InstanceId"},
    "aws.ec2.nat-gateway": {"NatGatewayId"},
    "aws.ecs.cluster": {"ClusterName"},
    "aws.ecs.service": {"ClusterName", "ServiceName"},
    "aws.elb-classic.load-balancer": {"LoadBalancerName"},
    "aws.elb-v2.application-load-balancer": {"LoadBalancer"},
    "aws.elb-v2.network-load-balancer": {"LoadBalancer"},
    "aws.elb-v2.gateway-load-balancer": {"LoadBalancer"},
    "aws.elb-v2.target-group": {"TargetGroup", "LoadBalancer"},
    "aws.firehose.delivery-stream": {"DeliveryStreamName"},
    "aws.kinesis.data-stream": {"StreamName"},
    "aws.lambda.function": {"FunctionName"},
    "aws.lambda.alias": {"FunctionName", "Resource"},
    "aws.rds.instance": {"DBInstanceIdentifier"},
    "aws.rds.cluster": {"DBClusterIdentifier"},
    "aws.redshift.cluster": {"ClusterIdentifier"},
    "aws.route53.hostedzone": {"HostedZoneId"},
    "aws.s3.bucket": {"BucketName"},
    "aws.sns.topic": {"TopicName"},
    "aws.sqs.queue": {"QueueName"},
    "aws.stepfunction.statemachine": {"StateMachineArn"},
    "aws.stepfunction.activity": {"ActivityArn"},
}


def test_every_type_with_cloudwatch_metrics_declares_its_dimensions(shipped: Mappings) -> None:
    """Of the types the shared cassettes cover (a service added with its own cassette is not listed here)."""
    core = shared_mappings(shipped)
    declared = {t: r.cw_dimensions is not None for r in core.resources if r.emits_component for t in r.types}
    assert set(declared) == set(WITHOUT_METRICS) | set(DIMENSIONS)
    assert {t for t, has in declared.items() if has} == set(DIMENSIONS)


_PAGE_TOKEN = re.compile(
    r"^(NextToken|nextToken|NextMarker|Marker|NextPageToken|position|HasMore\w*|IsTruncated)$"
)


def test_every_call_that_can_page_reads_every_page(shipped: Mappings) -> None:
    """The predecessor read only the first page of several calls (Firehose streams, stack resources,
    record sets, tags). A call whose answer can carry a page token is paginated or declares `next`."""
    session = botocore.session.get_session()
    first_page_only = []
    for resource in shipped.resources:
        for call in (c for c in [resource.listing.call, *(d.call for d in resource.details)] if c):
            output = session.get_service_model(resource.service).operation_model(call.operation).output_shape
            tokens = [m for m in (output.members if output else {}) if _PAGE_TOKEN.match(m)]
            if (
                tokens
                and not call.paginate
                and call.next is None
                and call is not getattr(resource.get, "call", None)
            ):
                first_page_only.append(f"{resource.key}: {call.operation} ({', '.join(tokens)})")
    assert first_page_only == []


def _check_compiled(value: Any, hint: Any, where: str, seen: list[str]) -> None:
    """Fail when `value` holds anything but a ParsedResult where `hint` says an expression goes."""
    if hint is ParsedResult:
        assert isinstance(value, ParsedResult), f"{where} is {type(value).__name__}, not compiled"
        seen.append(where)
        return
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            assert type(None) in args, f"{where} is None"
            return
        (hint,) = [a for a in args if a is not type(None)]
        _check_compiled(value, hint, where, seen)
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        for i, element in enumerate(value):
            _check_compiled(element, args[0], f"{where}[{i}]", seen)
    elif origin is tuple:
        for i, (element, element_hint) in enumerate(zip(value, args, strict=True)):
            _check_compiled(element, element_hint, f"{where}[{i}]", seen)
    elif dataclasses.is_dataclass(hint):
        assert isinstance(value, hint), f"{where} is {type(value).__name__}, not {hint.__name__}"
        hints = typing.get_type_hints(hint)
        for spec in dataclasses.fields(hint):
            _check_compiled(getattr(value, spec.name), hints[spec.name], f"{where}.{spec.name}", seen)


def test_every_expression_of_the_shipped_mappings_is_compiled(shipped: Mappings) -> None:
    seen: list[str] = []
    for resource in shipped.resources:
        _check_compiled(resource, Resource, resource.key, seen)
    # The walk reached the nested specs, not only the top-level fields.
    for where in (
        "ec2.instance.listing.items",
        "ec2.instance.details[0].batch.match",
        "ec2.instance.get.items",
        "ec2.instance.relations[1].target",
        "ec2.instance.event_rules[4].ids",
        "s3.bucket.details[0].call.args[0][1]",
        "s3.bucket.relations[0].each",
        "s3.bucket.relations[0].data",
        "s3.bucket.region",
        "sqs.queue.event_rules[2].delete_id",
        "lambda.function.get.call.args[0][1]",
    ):
        assert where in seen
    by_key = {r.key: r for r in shipped.resources}
    assert by_key["sqs.queue"].get.call is None  # built from the queue URL, no call
    assert by_key["ec2.vpc"].external_id.expression == "VpcId"  # the default: id
    assert by_key["ec2.vpc"].tags.expression == "Tags"  # the default tags location


# --- a minimal file and its defaults -------------------------------------------------------------


def test_minimal_file_loads_with_documented_defaults(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", QUEUE)
    (queue,) = load_mappings(tmp_path).resources
    assert (queue.key, queue.type, queue.file) == ("sqs.queue", "aws.sqs.queue", "sqs.yaml")
    assert (queue.scope, queue.domain, queue.layer, queue.parent, queue.filter) == (
        "regional",
        "AWS",
        None,
        None,
        None,
    )
    assert queue.listing.call is not None
    assert (queue.listing.call.operation, queue.listing.call.method) == ("ListQueues", "list_queues")
    assert queue.listing.call.paginate is True  # botocore has a ListQueues paginator
    assert queue.external_id.expression == "QueueUrl"
    assert queue.display_name is None and queue.urns == () and queue.relations == ()


def test_file_scope_is_the_default_of_its_resources(tmp_path: Path) -> None:
    text = QUEUE.replace("resources:", "scope: global\nresources:")
    write(tmp_path, "sqs.yaml", text)
    assert load_mappings(tmp_path).resources[0].scope == "global"


def test_derived_child_is_listed_under_its_parent(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sqs.yaml",
        QUEUE
        + """\
  dead-letter-source:
    type: aws.sqs.dead-letter-source
    parent: queue
    list: {items: "_sources[]"}
    id: "@"
""",
    )
    mappings = load_mappings(tmp_path)
    queue, child = mappings.resources
    assert child.parent == "queue" and child.listing.call is None
    assert mappings.children(queue) == (child,)
    assert mappings.children(child) == ()


# --- broken files: one problem each, named by file and key ---------------------------------------


BROKEN: list[tuple[str, str, str]] = [
    (
        "unknown_key",
        add_to_queue("lisst: {operation: ListQueues}\n"),
        "sqs.yaml: resources.queue: unknown key(s) 'lisst'; expected one of: cloudformation, component, "
        "console, console_name, cw_dimensions, data, details, domain, emit, events, external_id, filter, "
        "get, id, joins, layer, list, name, parent, parent_id, region, relations, scope, tags, traces, type, "
        "types, urns, vars",
    ),
    (
        "missing_id",
        QUEUE.replace("    id: QueueUrl\n", ""),
        "sqs.yaml: resources.queue: 'id' is a required property",
    ),
    (
        "wrong_version",
        QUEUE.replace("version: 1", "version: 2"),
        "sqs.yaml: version: 1 was expected",
    ),
    (
        "invalid_jmespath",
        add_to_queue('name: "QueueUrls[?"\n'),
        "sqs.yaml: resources.queue.name: invalid JMESPath 'QueueUrls[?': "
        "Invalid jmespath expression: Incomplete expression:",
    ),
    (
        "bad_placeholder_in_format_template",
        add_to_queue("name: \"format('queue-{a[}-x', @)\"\n"),
        "sqs.yaml: resources.queue.name: invalid JMESPath 'a[': "
        "Invalid jmespath expression: Incomplete expression:",
    ),
    (
        "unknown_operation",
        QUEUE.replace("ListQueues", "ListQueuez"),
        "sqs.yaml: resources.queue.list.operation: sqs has no operation 'ListQueuez'",
    ),
    (
        "unknown_parameter",
        QUEUE.replace("{operation: ListQueues,", "{operation: ListQueues, params: {MaxResultz: 5},"),
        "sqs.yaml: resources.queue.list: ListQueues has no parameter 'MaxResultz'; "
        "known: MaxResults, NextToken, QueueNamePrefix",
    ),
    (
        "unknown_detail_argument",
        add_to_queue("details: [{operation: GetQueueAttributes, args: {Url: QueueUrl}}]\n"),
        "sqs.yaml: resources.queue.details[0]: GetQueueAttributes has no parameter 'Url'; "
        "known: AttributeNames, QueueUrl",
    ),
    (
        "detail_operation_not_in_its_service",
        add_to_queue(
            "details: [{service: sns, operation: GetQueueAttributes, args: {QueueUrl: QueueUrl}}]\n"
        ),
        "sqs.yaml: resources.queue.details[0].operation: sns has no operation 'GetQueueAttributes'",
    ),
    (
        "detail_argument_not_in_its_services_input",
        add_to_queue(
            "details: [{service: sns, operation: GetTopicAttributes, args: {QueueUrl: QueueUrl}}]\n"
        ),
        "sqs.yaml: resources.queue.details[0]: GetTopicAttributes has no parameter 'QueueUrl'; "
        "known: TopicArn",
    ),
    (
        "detail_of_an_unknown_service",
        add_to_queue("details: [{service: sns2, operation: GetTopicAttributes}]\n"),
        "sqs.yaml: resources.queue.details[0].service: 'sns2' is not a boto3 client name",
    ),
    (
        "paginate_without_paginator",
        add_to_queue(
            "details: [{operation: GetQueueAttributes, args: {QueueUrl: QueueUrl}, paginate: true}]\n"
        ),
        "sqs.yaml: resources.queue.details[0].paginate: botocore has no paginator for GetQueueAttributes",
    ),
    (
        "parent_declared_later",
        QUEUE.replace(
            "resources:\n",
            'resources:\n  source:\n    type: aws.sqs.source\n    parent: queue\n    list: {items: "@"}\n'
            '    id: "@"\n',
        ),
        "sqs.yaml: resources.source.parent: 'queue' must be a resource declared earlier in this file",
    ),
    (
        "account_scope_without_region",
        add_to_queue("scope: account\n"),
        "sqs.yaml: resources.queue.region: required for scope 'account'",
    ),
    (
        "derived_list_without_parent",
        QUEUE.replace("{operation: ListQueues, items:", "{items:"),
        "sqs.yaml: resources.queue.list: needs an operation (only a resource with a parent can be derived)",
    ),
    (
        "unknown_boto3_service",
        QUEUE.replace("service: sqs", "service: sqs2"),
        "sqs.yaml: service: 'sqs2' is not a boto3 client name",
    ),
    (
        "yaml_syntax_error",
        QUEUE.replace("    list:", "      list:"),
        "sqs.yaml: line 6, column 11: invalid YAML: mapping values are not allowed here",
    ),
    (
        "unknown_relation_type",
        add_to_queue("relations: [{type: uses_service, target: QueueUrl}]\n"),
        "sqs.yaml: resources.queue.relations[0].type: 'uses_service' is not one of "
        "['uses-service', 'has-resource', 'has_cluster_node', 'uses-ec2-host', 'flowlog']",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_file_gives_one_line_naming_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "sqs.yaml", text)
    assert problems(tmp_path) == [expected]


def test_unknown_function_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", add_to_queue('name: "parse_jsn(Attributes.Policy)"\n'))
    known = ", ".join(sorted(KNOWN))
    assert problems(tmp_path) == [
        "sqs.yaml: resources.queue.name: unknown function parse_jsn() in 'parse_jsn(Attributes.Policy)'; "
        f"known: {known}"
    ]
    assert {"format", "split", "ip_urn", "tag_dict", "digest", "merge", "join"} <= KNOWN


def test_mapping_errors_are_bad_input(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", QUEUE.replace("version: 1", "version: 2"))
    with pytest.raises(BadInput):
        load_mappings(tmp_path)


def test_every_problem_of_every_file_is_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", QUEUE.replace("version: 1", "version: 3"))
    write(
        tmp_path,
        "sns.yaml",
        """\
        version: 1
        service: sns
        resources:
          topic:
            type: aws.sns.topic
            list: {operation: ListTopicz, items: "Topics[]"}
            id: TopicArn
            name: "parse_jsn(@)"
            relations:
              - {type: uses-service, target: "split(TopicArn, ':'"}
        """,
    )
    write(
        tmp_path,
        "ec2.yaml",
        """\
        version: 1
        service: ec2
        resources:
          vpc:
            type: aws.ec2.vpc
            list: {operation: DescribeVpcs, params: {VpcIdz: [vpc-1]}, items: "Vpcs[]"}
            id: VpcId
        """,
    )
    lines = problems(tmp_path)
    files = [line.split(":")[0] for line in lines]
    assert files == ["ec2.yaml", "sns.yaml", "sns.yaml", "sns.yaml", "sqs.yaml"]
    assert lines[0].startswith(
        "ec2.yaml: resources.vpc.list: DescribeVpcs has no parameter 'VpcIdz'; known: "
    )
    assert lines[1] == "sns.yaml: resources.topic.list.operation: sns has no operation 'ListTopicz'"
    assert lines[2].startswith(
        "sns.yaml: resources.topic.name: unknown function parse_jsn() in 'parse_jsn(@)'"
    )
    assert lines[3] == (
        "sns.yaml: resources.topic.relations[0].target: invalid JMESPath \"split(TopicArn, ':'\": "
        "Invalid jmespath expression: Incomplete expression:"
    )
    assert lines[4] == "sqs.yaml: version: 1 was expected"


def test_one_type_declared_twice_is_reported_with_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", QUEUE)
    write(tmp_path, "b.yaml", QUEUE)
    assert problems(tmp_path) == [
        "b.yaml: resources.queue.type: aws.sqs.queue is already declared in a.yaml: resources.queue"
    ]


def test_folder_without_mapping_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a mapping")
    assert problems(tmp_path) == [f"{tmp_path}: -: no mapping files (*.yaml) found"]


# --- known engine defects, kept visible (strict: they fail once fixed, so drop the marker then) ----


def test_bad_id_is_reported_once(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", QUEUE.replace("id: QueueUrl", 'id: "QueueUrl["'))
    assert len(problems(tmp_path)) == 1


def test_child_of_a_broken_parent_gets_no_misleading_parent_error(tmp_path: Path) -> None:
    text = QUEUE.replace("id: QueueUrl", 'id: "QueueUrl["') + (
        '  source:\n    type: aws.sqs.source\n    parent: queue\n    list: {items: "@"}\n    id: "@"\n'
    )
    write(tmp_path, "sqs.yaml", text)
    assert not any("resources.source.parent" in line for line in problems(tmp_path))


def test_unknown_key_in_list_names_only_that_key(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", QUEUE.replace("items:", "itemz: x, items:"))
    assert problems(tmp_path)[0].startswith("sqs.yaml: resources.queue.list: unknown key(s) 'itemz';")


def test_a_binary_file_is_one_problem_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "sqs.yaml").write_bytes(b"version: 1\n\xff\xfe\x00binary")
    assert problems(tmp_path) == ["sqs.yaml: -: not UTF-8 text (bad byte at offset 11)"]


def test_a_repeated_key_is_refused_instead_of_replacing_the_first(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", add_to_queue("id: QueueArn\n"))
    [problem] = problems(tmp_path)
    assert problem.startswith("sqs.yaml: line 8, column 5: invalid YAML: duplicate key 'id'")


# --- console names -------------------------------------------------------------------------------


def test_a_console_link_is_named_by_the_file_by_its_resource_or_else_after_the_service(
    tmp_path: Path,
) -> None:
    linked = add_to_queue("console: \"format('{_console}/sqs/v3/home#/queues/{QueueUrl}', @)\"\n")
    write(tmp_path / "default", "sqs.yaml", linked)
    write(tmp_path / "default", "elasticache.yaml", ELASTICACHE)
    by_key = {r.key: r for r in load_mappings(tmp_path / "default").resources}
    assert by_key["sqs.queue"].console_name == "SQS"  # botocore: "Amazon SQS"
    assert by_key["elasticache.cluster"].console_name == "ElastiCache"  # a new service: no Python, no key
    write(tmp_path / "file", "sqs.yaml", linked.replace("resources:", "console_name: Queues\nresources:"))
    assert load_mappings(tmp_path / "file").resources[0].console_name == "Queues"
    write(
        tmp_path / "own",
        "sqs.yaml",
        linked.replace("resources:", "console_name: Queues\nresources:") + "    console_name: Q\n",
    )
    assert load_mappings(tmp_path / "own").resources[0].console_name == "Q"
    write(tmp_path / "none", "sqs.yaml", QUEUE)
    assert load_mappings(tmp_path / "none").resources[0].console_name is None


def test_a_console_name_without_a_console_link_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", add_to_queue("console_name: SQS\n"))
    assert problems(tmp_path) == [
        "sqs.yaml: resources.queue.console_name: names the console of `console`: add the link, or remove it"
    ]


ELASTICACHE = """\
version: 1
service: elasticache
resources:
  cluster:
    type: aws.elasticache.cluster
    list: {operation: DescribeCacheClusters, items: "CacheClusters[]"}
    id: CacheClusterId
    console: "format('{_console}/elasticache/home?region={_region}#/redis/{CacheClusterId}', @)"
"""


# --- editor support ------------------------------------------------------------------------------

SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/mapping.schema.json"


def test_every_mapping_file_names_its_schema_for_the_yaml_language_server() -> None:
    files = sorted(MAPPINGS.glob("*.yaml"))
    assert files
    first_lines = {path.name: path.read_text(encoding="utf-8").splitlines()[0] for path in files}
    assert {name: line for name, line in first_lines.items() if line != SCHEMA_LINE} == {}
    assert (MAPPINGS / SCHEMA_LINE.split("$schema=")[1]).resolve() == (
        SCHEMAS / "mapping.schema.json"
    ).resolve()


def _undescribed(node: Any, where: str) -> list[str]:
    """Every property (at any depth of the schema) without a `description`."""
    found: list[str] = []
    if isinstance(node, dict):
        for name, spec in node.get("properties", {}).items():
            if not (isinstance(spec, dict) and spec.get("description")):
                found.append(f"{where}.properties.{name}")
        for key, value in node.items():
            found += _undescribed(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _undescribed(value, f"{where}[{i}]")
    return found


def test_every_property_of_the_mapping_schema_has_a_description() -> None:
    schema = json.loads((SCHEMAS / "mapping.schema.json").read_text(encoding="utf-8"))
    assert _undescribed(schema, "$") == []
    assert _undescribed({"properties": {"x": {"$ref": "#/y"}}}, "$") == ["$.properties.x"]  # the check works


# --- checks that say what to change --------------------------------------------------------------


def test_a_context_key_typo_in_a_format_placeholder_names_file_key_and_placeholder(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sqs.yaml",
        add_to_queue("external_id: \"format('arn:{_partition}:sqs:{_regoin}:{QueueUrl}', @)\"\n"),
    )
    (line,) = problems(tmp_path)
    assert line.startswith(
        "sqs.yaml: resources.queue.external_id: format() placeholder {_regoin} reads _regoin, which the item "
        "does not have; did you mean _region? it has: _account, "
    )


def test_a_format_placeholder_may_read_vars_and_detail_keys_of_its_item(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sqs.yaml",
        add_to_queue("""\
            vars: {_name: "split(QueueUrl, '/')[-1]"}
            details:
              - operation: GetQueueAttributes
                args: {QueueUrl: QueueUrl}
                into: _attributes
            name: "format('{_name}/{_attributes.QueueArn}/{_region}/{_parent._x}', @)"
            urns: ["format('{h}', {h: _typo_in_an_object_is_not_the_item})"]
        """),
    )
    assert len(load_mappings(tmp_path).resources) == 1


def test_a_detail_of_another_service_is_checked_against_and_called_on_that_service(tmp_path: Path) -> None:
    details = """\
        details:
          - {service: sns, operation: ListSubscriptionsByTopic, args: {TopicArn: _topic}, into: _subs}
          - {service: sns, operation: GetTopicAttributes, args: {TopicArn: _topic}, iam_action: sns:Get}
          - {operation: GetQueueAttributes, args: {QueueUrl: QueueUrl}}
    """
    write(tmp_path, "sqs.yaml", add_to_queue(details))
    [queue] = load_mappings(tmp_path).resources
    calls = [(d.call.service, d.call.iam_action, d.call.paginate) for d in queue.details]
    assert calls == [
        ("sns", "sns:ListSubscriptionsByTopic", True),  # sns's signing name and paginator
        ("sns", "sns:Get", False),
        (None, "sqs:GetQueueAttributes", False),  # the file's service
    ]


def test_a_detail_of_another_service_gives_the_item_that_services_output_shape(tmp_path: Path) -> None:
    detail = "details: [{service: sns, operation: GetTopicAttributes, args: {TopicArn: QueueUrl}}]\n"
    write(tmp_path, "sqs.yaml", add_to_queue(detail + "name: \"format('{Atributes.DisplayName}', @)\"\n"))
    [line] = problems(tmp_path)
    assert line.startswith("sqs.yaml: resources.queue.name: ") and "did you mean Attributes?" in line
    write(tmp_path, "sqs.yaml", add_to_queue(detail + "name: \"format('{Attributes.DisplayName}', @)\"\n"))
    assert load_mappings(tmp_path).resources[0].details[0].call.service == "sns"


# An SQS queue with a child type; each case below adds to the child (and maybe the queue).
CHILD = """\
  attributes:
    type: aws.sqs.attributes
    parent: queue
    list: {operation: GetQueueAttributes, args: {QueueUrl: QueueUrl}, items: "[Attributes]"}
    id: QueueArn
"""
CHILD_GET = "get: {operation: GetQueueAttributes, args: {QueueUrl: _id}, items: '[Attributes]'}\n"
REFRESH = (
    "events: [{source: sqs.amazonaws.com, names: [SetQueueAttributes], ids: requestParameters.queueUrl}]\n"
)
DELETE = "events: [{source: sqs.amazonaws.com, names: [DeleteQueue], ids: x, action: delete}]\n"
QUEUE_GET = "get: {items: '[{QueueUrl: _id}]'}\n"
ADD = "sqs.yaml: resources.attributes.events: an event on a child type refreshes its root: add "
WHAT = (
    " (`get`: the attributes by the id its event names; `parent_id`: the queue's id, over the item `get` "
    "returns)"
)
NEEDS_GET = "the parent's id over what `get` gives: add `parent` and `get`"
CHILD_EVENTS = [
    ("refresh_without_get", "", REFRESH, [ADD + "`get` and `parent_id`" + WHAT]),
    ("get_without_parent_id", "", CHILD_GET + DELETE, [ADD + "`parent_id`" + WHAT]),
    (
        "root_without_get",
        "",
        CHILD_GET + "parent_id: QueueUrl\n" + REFRESH,
        ["sqs.yaml: resources.attributes.events: reach the root through resources.queue: add its `get`"],
    ),
    (
        "parent_id_without_get",
        QUEUE_GET,
        "parent_id: QueueUrl\n",
        [f"sqs.yaml: resources.attributes.parent_id: {NEEDS_GET}"],
    ),
]


@pytest.mark.parametrize(
    ("queue", "child", "expected"), [c[1:] for c in CHILD_EVENTS], ids=[c[0] for c in CHILD_EVENTS]
)
def test_events_on_a_child_type_without_a_way_to_its_root_say_what_to_add(
    tmp_path: Path, queue: str, child: str, expected: list[str]
) -> None:
    write(tmp_path, "sqs.yaml", add_to_queue(queue) + CHILD + textwrap.indent(child, "    "))
    assert problems(tmp_path) == expected


def test_a_child_type_with_get_and_parent_id_loads_its_events(tmp_path: Path) -> None:
    child = CHILD_GET + "parent_id: QueueUrl\n" + REFRESH
    write(tmp_path, "sqs.yaml", add_to_queue(QUEUE_GET) + CHILD + textwrap.indent(child, "    "))
    queue, attributes = (mappings := load_mappings(tmp_path)).resources
    assert attributes.parent_id is not None and attributes.event_rules[0].names == {"SetQueueAttributes"}
    assert mappings.parent_of(attributes) == queue and mappings.root(attributes) == queue
    assert mappings.parent_of(queue) is None and mappings.root(queue) == queue


def test_a_delete_rule_on_a_child_without_get_loads_unconfirmed(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", QUEUE + CHILD + textwrap.indent(DELETE, "    "))
    _, attributes = load_mappings(tmp_path).resources
    assert attributes.get is None and attributes.event_rules[0].delete


def test_a_parent_id_on_a_root_type_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", add_to_queue(QUEUE_GET + "parent_id: QueueUrl\n"))
    assert problems(tmp_path) == [f"sqs.yaml: resources.queue.parent_id: {NEEDS_GET}"]


def test_a_misspelt_cloudtrail_event_name_is_refused_with_the_operation_meant(tmp_path: Path) -> None:
    events = """\
        events:
          - {source: sqs.amazonaws.com, names: [DeleteQueue, DeleteQeue, PurgeQueue20121105v2, Nothing],
             ids: requestParameters.queueUrl, action: delete}
          - {source: aws.sqs, detail_type: Some Notification, ids: detail.queue, action: delete}
    """
    write(tmp_path, "sqs.yaml", QUEUE + textwrap.indent(textwrap.dedent(events), "    "))
    assert problems(tmp_path) == [
        "sqs.yaml: resources.queue.events[0].names: 'DeleteQeue' is not an operation of sqs (botocore's "
        "model); did you mean DeleteQueue?",
        "sqs.yaml: resources.queue.events[0].names: 'Nothing' is not an operation of sqs (botocore's model)",
    ]  # a name with CloudTrail's API version is the operation's; an EventBridge event has no names to check


def test_a_cloudtrail_event_source_must_be_the_services_signing_name(tmp_path: Path) -> None:
    events = """\
        events:
          - {source: sqs.amazonaws.com, names: [DeleteQueue], ids: requestParameters.queueUrl, action: delete}
          - {source: queue.amazonaws.com, names: [PurgeQueue], ids: requestParameters.q, action: delete}
    """
    write(tmp_path, "sqs.yaml", QUEUE + textwrap.indent(textwrap.dedent(events), "    "))
    assert problems(tmp_path) == [
        "sqs.yaml: resources.queue.events[1].source: CloudTrail names this service 'sqs.amazonaws.com'"
    ]
