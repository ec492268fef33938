"""The custom JMESPath functions of mapping files, compiled and searched as the engine does."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

import pytest
from jmespath.exceptions import JMESPathTypeError

from engine.language import dialect as functions
from engine.language.dialect import KNOWN, ExpressionError, compile_expression, search


def run(expression: str, data: Any = None) -> Any:
    return search(compile_expression(expression), {} if data is None else data)


QUEUE = {
    "QueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/orders",
    "_partition": "aws",
    "_region": "eu-west-1",
    "_account": "123456789012",
    "Placement": {"AvailabilityZone": "eu-west-1a"},
    "Count": 5,
    "Empty": "",
}

# --- format ----------------------------------------------------------------------------------------


def test_format_fills_context_keys() -> None:
    assert (
        run("format('arn:{_partition}:s3:::{Name}', @)", {"Name": "logs", "_partition": "aws-cn"})
        == "arn:aws-cn:s3:::logs"
    )


def test_format_placeholders_are_expressions_with_paths_and_functions() -> None:
    expression = "format('arn:{_partition}:sqs:{_region}:{_account}:{split(QueueUrl, `\"/\"`)[-1]}', @)"
    assert run(expression, QUEUE) == "arn:aws:sqs:eu-west-1:123456789012:orders"
    assert run("format('{Placement.AvailabilityZone}/{Count}', @)", QUEUE) == "eu-west-1a/5"


def test_format_of_a_missing_or_empty_placeholder_is_null() -> None:
    assert run("format('urn:host:/{PublicDnsName}', @)", QUEUE) is None
    assert run("format('urn:host:/{Empty}', @)", QUEUE) is None
    assert run("format('{_region}-{Missing.Deeper}', @)", QUEUE) is None


def test_format_null_lets_an_or_fall_back() -> None:
    assert run("format('urn:host:/{PublicIpAddress}', @) || 'none'", QUEUE) == "none"


def test_format_without_placeholders_returns_the_template() -> None:
    assert run("format('arn:aws:s3:::fixed', @)", QUEUE) == "arn:aws:s3:::fixed"


def test_format_template_must_be_a_string() -> None:
    with pytest.raises(JMESPathTypeError):
        run("format(Count, @)", QUEUE)


# --- split ----------------------------------------------------------------------------------------


def test_split_cuts_at_every_separator() -> None:
    arn = "arn:aws:sns:eu-west-1:123456789012:alerts"
    assert run("split(@, ':')", arn) == ["arn", "aws", "sns", "eu-west-1", "123456789012", "alerts"]
    assert run("split(@, ':')[-1]", arn) == "alerts"
    assert run("split(@, '/')", arn) == [arn]


def test_split_of_null_is_null_so_an_or_can_fall_back() -> None:
    assert run("split(QueueArn, ':')", QUEUE) is None
    assert run("split(QueueArn, ':')[-1] || split(QueueUrl, '/')[-1]", QUEUE) == "orders"


# --- ip_urn ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vpc", "ip", "expected"),
    [
        ("vpc-1", "10.0.1.5", "urn:vpcip:vpc-1/10.0.1.5"),
        ("vpc-1", "172.31.7.9", "urn:vpcip:vpc-1/172.31.7.9"),
        ("vpc-1", "54.1.2.3", "urn:host:/54.1.2.3"),
        ("vpc-1", "2600:1f18:abcd::1", "urn:host:/2600:1f18:abcd::1"),
        ("vpc-1", "fd00:ec2::5", "urn:vpcip:vpc-1/fd00:ec2::5"),
        (None, "10.0.1.5", "urn:host:/10.0.1.5"),
        ("vpc-1", "not-an-ip", None),
        ("vpc-1", None, None),
        ("vpc-1", "", None),
    ],
    ids=[
        "private",
        "private-172",
        "public",
        "ipv6-public",
        "ipv6-unique-local",
        "private-without-vpc",
        "invalid",
        "null",
        "empty",
    ],
)
def test_ip_urn(vpc: str | None, ip: str | None, expected: str | None) -> None:
    assert run("ip_urn(VpcId, Ip)", {"VpcId": vpc, "Ip": ip}) == expected


# --- tag_dict -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (
            [{"Key": "Name", "Value": "web"}, {"Key": "team", "Value": "core"}],
            {"Name": "web", "team": "core"},
        ),
        ([{"key": "Name", "value": "web"}], {"Name": "web"}),
        ({"Name": "web", "team": "core"}, {"Name": "web", "team": "core"}),
        (None, {}),
        ([], {}),
        ([{"Key": "flag"}], {"flag": None}),
    ],
    ids=["Key-Value-list", "key-value-list", "object", "null", "empty-list", "key-without-value"],
)
def test_tag_dict(tags: Any, expected: dict) -> None:
    assert run("tag_dict(Tags)", {"Tags": tags}) == expected


def test_tag_dict_merges_with_synthetic_tags() -> None:
    item = {"InstanceId": "i-1", "Tags": [{"Key": "Name", "Value": "web"}]}
    assert run("merge(tag_dict(Tags), {host: InstanceId})", item) == {"Name": "web", "host": "i-1"}


# --- digest ---------------------------------------------------------------------------------------


def test_digest_is_sha256_of_canonical_json() -> None:
    assert run("digest(@)", {"b": 1, "a": "x"}) == hashlib.sha256(b'{"a": "x", "b": 1}').hexdigest()


def test_digest_ignores_the_order_of_lists_at_any_depth() -> None:
    one = {
        "GroupId": "sg-1",
        "IpPermissions": [
            {"FromPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "0.0.0.0/0"}]},
            {"FromPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        ],
    }
    two = {
        "IpPermissions": [
            {"IpRanges": [{"CidrIp": "10.0.0.0/8"}], "FromPort": 22},
            {"IpRanges": [{"CidrIp": "0.0.0.0/0"}, {"CidrIp": "10.0.0.0/8"}], "FromPort": 443},
        ],
        "GroupId": "sg-1",
    }
    assert run("digest(@)", one) == run("digest(@)", two)


def test_digest_differs_for_different_values() -> None:
    base = {"GroupId": "sg-1", "IpPermissions": [{"FromPort": 22}]}
    assert run("digest(@)", base) != run("digest(@)", {**base, "IpPermissions": [{"FromPort": 23}]})
    assert run("digest(@)", [1, 2]) != run("digest(@)", [1, 2, 2])
    assert run("digest(@)", "1") != run("digest(@)", 1)


# --- compile time ---------------------------------------------------------------------------------


def test_unknown_function_is_rejected_at_compile_time() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("merge(@, {Policy: parse_jsn(Attributes.Policy)})")
    assert str(caught.value) == (
        "unknown function parse_jsn() in 'merge(@, {Policy: parse_jsn(Attributes.Policy)})'; "
        f"known: {', '.join(sorted(KNOWN))}"
    )


def test_unknown_function_inside_a_format_placeholder_is_rejected_at_compile_time() -> None:
    with pytest.raises(
        ExpressionError, match=r"^unknown function parse_jsn\(\) in 'parse_jsn\(a\)'; known: "
    ):
        compile_expression("format('x-{parse_jsn(a)}', @)")


def test_invalid_expression_is_rejected_with_its_text() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("Tags[?Key=='Name'")
    assert str(caught.value) == (
        "invalid JMESPath \"Tags[?Key=='Name'\": Invalid jmespath expression: Incomplete expression:"
    )


def test_builtins_and_custom_functions_are_all_known() -> None:
    assert {"format", "split", "ip_urn", "tag_dict", "digest"} <= KNOWN
    assert {"merge", "join", "keys", "values", "to_string", "not_null", "starts_with"} <= KNOWN
    assert run("join('-', [Name, Az])", {"Name": "a", "Az": "b"}) == "a-b"


def test_digest_accepts_dates_as_boto3_returns_them() -> None:
    first = run("digest(@)", {"CreateTime": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)})
    second = run("digest(@)", {"CreateTime": dt.datetime(2024, 5, 2, 12, 0, tzinfo=dt.UTC)})
    assert len(first) == 64 and first != second


def test_digest_hashes_the_aws_data_only_not_the_engine_context() -> None:
    group = {"GroupId": "sg-1", "IpPermissions": []}
    expected = hashlib.sha256(b'{"GroupId": "sg-1", "IpPermissions": []}').hexdigest()
    assert (
        run("digest(@)", {**group, "_account": "1", "_region": "eu-west-1", "_partition": "aws"}) == expected
    )


def test_format_renders_numbers_and_booleans_as_json_and_refuses_objects() -> None:
    assert run("format('{Port}/{Enabled}', @)", {"Port": 8080, "Enabled": False}) == "8080/false"
    assert run("format('x-{Obj}', @)", {"Obj": {"a": 1}}) is None
    assert run("format('x-{List}', @)", {"List": [1]}) is None


# --- parsing and lookups ----------------------------------------------------------------------------


def test_parse_json_of_a_string_and_null_for_invalid_or_null() -> None:
    assert run("parse_json(d).StartAt", {"d": '{"StartAt": "A"}'}) == "A"
    assert run("parse_json(d)", {"d": "{broken"}) is None
    assert run("parse_json(d)", {}) is None


def test_lookup_reads_a_dynamic_key_of_a_literal_table() -> None:
    table = (
        '`{"AWS::SNS::Topic": "{PhysicalResourceId}", '
        '"AWS::S3::Bucket": "arn:{_partition}:s3:::{PhysicalResourceId}"}`'
    )
    expression = f"format(lookup({table}, ResourceType), @)"
    bucket = {"ResourceType": "AWS::S3::Bucket", "PhysicalResourceId": "logs", "_partition": "aws-cn"}
    assert run(expression, bucket) == "arn:aws-cn:s3:::logs"
    assert run(f"lookup({table}, ResourceType)", {"ResourceType": "AWS::IAM::Role"}) is None


def test_entries_pairs_keys_with_values_in_order() -> None:
    assert run("entries(s)", {"s": {"B": 1, "A": 2}}) == [{"key": "B", "value": 1}, {"key": "A", "value": 2}]
    assert run("entries(missing)", {}) == []


def test_find_all_collects_nested_objects_under_a_key_at_any_depth() -> None:
    definition = {
        "StartAt": "P",
        "States": {
            "P": {"Type": "Parallel", "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass"}}}]},
            "M": {"Type": "Map", "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass"}}}},
            "L": {"Type": "Map", "Iterator": {"StartAt": "J", "States": {"J": {"Type": "Pass"}}}},
        },
    }
    names = run("find_all(@, 'States')[].entries(@)[].key", definition)
    assert sorted(names) == ["B", "I", "J", "L", "M", "P"]


@pytest.mark.parametrize(
    ("uri", "host"),
    [
        ("https://api.partner.example.com/v1/orders", "api.partner.example.com"),
        ("http://user:pw@backend.example.com:8443/x", "backend.example.com"),
        ("arn:aws:apigateway:eu-west-1:sqs:path/1/q", None),
        (None, None),
    ],
)
def test_url_host_is_the_bare_host_name(uri: str | None, host: str | None) -> None:
    assert run("url_host(u)", {"u": uri}) == host


def test_substitute_fills_placeholders_and_keeps_unknown_ones() -> None:
    item = {
        "uri": "http://${stageVariables.backend}:8080/${stageVariables.none}",
        "v": {"backend": "b.internal"},
    }
    assert (
        run("substitute(uri, {stageVariables: v})", item) == "http://b.internal:8080/${stageVariables.none}"
    )


def test_regex_gives_the_match_and_its_groups_or_null() -> None:
    pattern = r"'^([a-z0-9-]+)\.[a-z0-9]{12}\.([a-z0-9-]+)\.rds\.amazonaws\.com(:[0-9]+)?$'"
    found = run(f"regex(v, {pattern})", {"v": "orders.abcdefghijkl.eu-west-1.rds.amazonaws.com:5432"})
    assert found[1:] == ["orders", "eu-west-1", ":5432"]
    assert (
        run(f"regex(v, {pattern})", {"v": "orders.cluster-abcdefghijkl.eu-west-1.rds.amazonaws.com"}) is None
    )
    assert run(f"regex(v, {pattern})", {}) is None


def test_replace_uses_back_references_and_keeps_null() -> None:
    assert run(r"replace(f, ':(\$LATEST|[0-9]+)$', '')", {"f": "arn:aws:lambda:r:1:function:f:$LATEST"}) == (
        "arn:aws:lambda:r:1:function:f"
    )
    assert run(r"replace(v, '^(\w+)-(\w+)$', '\2-\1')", {"v": "a-b"}) == "b-a"
    assert run("replace(v, 'x', 'y')", {}) is None


def test_lower_and_upper_keep_null() -> None:
    assert run("[lower(t), upper(m), lower(n)]", {"t": "Application", "m": "get"}) == [
        "application",
        "GET",
        None,
    ]


def test_an_invalid_literal_regular_expression_is_a_load_error() -> None:
    with pytest.raises(ExpressionError, match="invalid regular expression"):
        compile_expression("regex(v, '([a-z')")


@pytest.mark.parametrize(
    "expression",
    ["regex(v, 'a')", "replace(v, 'a', 'b')", "url_host(v)", "substitute(v, @)", "lower(v)", "split(v, ':')"],
)
def test_string_functions_give_null_for_a_non_string_instead_of_failing_the_unit(expression: str) -> None:
    assert run(expression, {"v": 123}) is None
    assert run(expression, {"v": {"a": 1}}) is None


def test_resolve_gives_the_addresses_of_a_name_and_ip_urn_takes_them(dns_table: dict) -> None:
    dns_table["db.example.internal"] = ["10.0.16.50", "fd00::5"]
    expression = compile_expression("ip_urn('vpc-1', resolve(host))")
    urns = ["urn:vpcip:vpc-1/10.0.16.50", "urn:vpcip:vpc-1/fd00::5"]
    assert search(expression, {"host": "db.example.internal"}) == urns
    assert search(expression, {"host": "unknown.example.internal"}) == []
    assert search(expression, {"host": None}) == []


def test_the_system_resolver_is_asked_once_per_name_and_given_up_on_when_slow(monkeypatch) -> None:
    assert "127.0.0.1" in functions.lookup_addresses("localhost")
    asked: list[str] = []

    def slow(host: str) -> list[str]:
        asked.append(host)
        time.sleep(0.5)
        return ["10.0.0.1"]

    monkeypatch.setattr(functions, "lookup_addresses", slow)
    monkeypatch.setattr(functions, "RESOLVER", slow)  # the real resolver's path: cached, bounded
    monkeypatch.setattr(functions, "DNS_TIMEOUT", 0.05)
    monkeypatch.setattr(functions, "_dns_cache", {})
    assert functions.resolve_host("slow.example") == []
    assert functions.resolve_host("slow.example") == []
    assert asked == ["slow.example"]


@pytest.mark.parametrize(
    ("arn", "parts"),
    [
        ("arn:aws:ecs:eu-west-1:123456789012:cluster/web", ("ecs", "eu-west-1", "cluster", "web")),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:f:live",
            ("lambda", "eu-west-1", "function", "f:live"),
        ),
        ("arn:aws:states:::lambda:invoke", ("states", "", "lambda", "invoke")),
        ("arn:aws-cn:s3:::logs", ("s3", "", None, "logs")),  # no resource type
    ],
)
def test_arn_gives_the_parts_with_the_resource_type_split_at_the_first_colon_or_slash(arn, parts) -> None:
    found = run("arn(@)", arn)
    assert (found["service"], found["region"], found["resource_type"], found["resource_id"]) == parts
    assert found["resource"] == arn.split(":", 5)[5] and found["partition"] in ("aws", "aws-cn")


@pytest.mark.parametrize("text", [None, "", "arn:aws:sqs", "urn:aws:s3:::b", "arn::s3:::b", 12])
def test_arn_of_anything_else_is_null(text) -> None:
    assert run("arn(@)", text) is None


def test_only_gives_the_single_element_and_plain_drops_context_keys() -> None:
    assert [run("only(v)", {"v": v}) for v in (["a"], [], ["a", "b"], None)] == ["a", None, None, None]
    assert run("plain(@)", {"Name": "q", "_region": "r", "_vars": 1}) == {"Name": "q"}
    assert run("plain(missing)", {}) is None
