"""format() placeholders (and the plain field references of id, name, external_id) checked at load against the
keys the item can have, from botocore's output shapes: exact messages, and nothing checked where the shape is
unknown."""

from __future__ import annotations

import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from engine.core.botocore_data import service_model
from engine.core.errors import MappingErrors
from engine.language import shapes
from engine.language.loader import load_mappings
from engine.language.shapes import SCALAR, Array, Dict, Struct, Walk, botocore_shape, element, union
from tests.language import test_mappings

TOPICS = {"list": {"operation": "ListTopics", "items": "Topics[]"}, "id": "TopicArn"}
HAS_TOPIC_ARN = "which the item does not have; did you mean TopicArn? it has: TopicArn"


def missing(key: str, placeholder: str, name: str, lacking: str = "the item") -> str:
    """The start of the problem line of a placeholder that reads a key its value does not have."""
    where = f"resources.{key}: format() placeholder {{{placeholder}}}"
    return f"{where} reads {name}, which {lacking} does not have; "


def check(service: str, resources: dict[str, dict], name: str, keys: dict[str, str]) -> shapes.Checked:
    """`shapes.check` of resource `name`, each expression given by its key after `resources.NAME.`."""
    where: dict[str, list[str]] = {}
    for key, text in keys.items():
        where.setdefault(text, []).append(f"resources.{name}.{key}")
    return shapes.check(resources, name, where, service_model(service))


def problems(service: str, resources: dict[str, dict], name: str, keys: dict[str, str]) -> list[str]:
    return [f"{key}: {text}" for key, text in check(service, resources, name, keys).problems]


# --- end to end, through the loader --------------------------------------------------------------------


def write(directory: Path, text: str) -> Path:
    (directory / "sns.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def test_a_typo_in_a_placeholder_is_refused_naming_file_key_placeholder_and_the_key_meant(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        """\
        version: 1
        service: sns
        resources:
          topic:
            type: aws.sns.topic
            list: {operation: ListTopics, items: "Topics[]"}
            id: TopicArn
            console: "format('{_console}/sns/v3/home?region={_region}#/topic/{TopicArm}', @)"
    """,
    )
    with pytest.raises(MappingErrors) as caught:
        load_mappings(tmp_path)
    assert str(caught.value).splitlines() == [
        "sns.yaml: "
        + missing("topic.console", "TopicArm", "TopicArm")
        + "did you mean TopicArn? it has: TopicArn"
    ]


def test_the_shipped_mappings_load_clean_and_most_placeholders_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found: list[shapes.Checked] = []
    real = shapes.check
    monkeypatch.setattr(shapes, "check", lambda *args: found.append(real(*args)) or found[-1])
    load_mappings()
    assert [p for c in found for p in c.problems] == []
    checked, unchecked = sum(c.checked for c in found), sum(c.unchecked for c in found)
    assert checked >= 180 and checked > 2 * unchecked, (checked, unchecked)


# --- the item's shape ----------------------------------------------------------------------------------


def test_a_placeholder_is_checked_against_the_list_operations_output_shape() -> None:
    assert problems("sns", {"topic": TOPICS}, "topic", {"console": "format('{TopicArn}/{TopicArm}', @)"}) == [
        f"resources.topic.console: format() placeholder {{TopicArm}} reads TopicArm, {HAS_TOPIC_ARN}"
    ]
    found = check(
        "sns", {"topic": TOPICS}, "topic", {"console": "format('{TopicArn}/{_region}/{_regoin}', @)"}
    )
    assert (found.problems, found.checked, found.unchecked) == ([], 3, 0)  # `_` keys: the loader's check


def test_a_plain_field_of_id_name_or_external_id_is_checked_but_not_of_other_keys() -> None:
    spec = {**TOPICS, "id": "TopicArm"}
    assert problems(
        "sns", {"topic": spec}, "topic", {"id": "TopicArm", "data": "Nothing", "external_id": "TopicAr"}
    ) == [
        f"resources.topic.id: reads TopicArm, {HAS_TOPIC_ARN}",
        f"resources.topic.external_id: reads TopicAr, {HAS_TOPIC_ARN}",
    ]
    assert problems("sns", {"topic": spec}, "topic", {"name": "TopicArm || _x"}) == [
        f"resources.topic.name: reads TopicArm, {HAS_TOPIC_ARN}"
    ]


def test_items_follow_flattened_projections_renames_and_merges() -> None:
    instances = {"list": {"operation": "DescribeInstances", "items": "Reservations[].Instances[]"}}
    (line,) = problems("ec2", {"i": instances}, "i", {"console": "format('{InstanceId}{Placement.Zone}', @)"})
    assert line.startswith(
        missing("i.console", "Placement.Zone", "Zone", "Placement") + "it has: Affinity, AvailabilityZone"
    )
    (line,) = problems("ec2", {"i": instances}, "i", {"name": "format('{Reservations}', @)"})
    assert line.startswith(
        "resources.i.name: format() placeholder {Reservations} reads Reservations, which the item"
    )
    assert (
        " it has: AmiLaunchIndex, Architecture, " in line
        and "VpcId" in line
        and "_" not in line.split(":")[-1]
    )
    renamed = {"list": {"operation": "ListQueues", "items": "QueueUrls[].{Queue: @}"}}
    assert problems("sqs", {"q": renamed}, "q", {"console": "format('{Queue}{QueueUrl}', @)"}) == [
        missing("q.console", "QueueUrl", "QueueUrl") + "did you mean Queue? it has: Queue"
    ]
    merged = {"list": {"operation": "ListTopics", "items": "Topics[].merge(@, {Name: TopicArn})"}}
    assert problems("sns", {"t": merged}, "t", {"console": "format('{Name}{TopicArn}{Nam}', @)"}) == [
        missing("t.console", "Nam", "Nam") + "did you mean Name? it has: Name, TopicArn"
    ]


def test_a_list_of_strings_gives_items_with_value() -> None:
    strings = {"list": {"operation": "ListQueues", "items": "QueueUrls"}}
    assert shapes.item_shape({"q": strings}, "q", service_model("sqs")).keys() == {"_value"}
    assert problems("sqs", {"q": strings}, "q", {"console": "format('{_value}{QueueUrl}', @)"}) == [
        missing("q.console", "QueueUrl", "QueueUrl") + "it has: no other key"
    ]


def test_details_add_their_into_key_their_result_or_the_whole_response() -> None:
    details = [
        {"operation": "GetTopicAttributes", "args": {"TopicArn": "TopicArn"}},  # the response: Attributes
        {"operation": "ListTagsForResource", "args": {"ResourceArn": "TopicArn"}, "into": "Labels"},
        {"operation": "ListSubscriptionsByTopic", "result": "{Subs: Subscriptions}"},
    ]
    spec = {**TOPICS, "details": details, "joins": [{"into": "Joined"}]}
    assert problems(
        "sns", {"t": spec}, "t",
        {"console": "format('{Attributes.TopicArn}{Labels.x}{Subs[0].Endpoint}{Joined}{Subs[0].Endpont}', @)"
                    " || format('{Tags}', @)"},
    ) == [
        missing("t.console", "Subs[0].Endpont", "Endpont", "Subscription")
        + "did you mean Endpoint? it has: Endpoint, Owner, Protocol, SubscriptionArn, TopicArn",
        missing("t.console", "Tags", "Tags") + "it has: Attributes, Joined, Labels, Subs, TopicArn",
    ]  # fmt: skip


def test_a_batch_detail_adds_the_result_over_each_element() -> None:
    batch = {
        "param": "ResourceArns",
        "key": "A",
        "size": 20,
        "items": "TagDescriptions[]",
        "match": "ResourceArn",
    }
    spec = {
        "list": {"operation": "DescribeLoadBalancers", "items": "LoadBalancers[]"},
        "details": [{"operation": "DescribeTags", "batch": batch}],
    }
    (line,) = problems("elbv2", {"lb": spec}, "lb", {"console": "format('{ResourceArn}{Tags}{Tag}', @)"})
    assert line.startswith(
        missing("lb.console", "Tag", "Tag") + "did you mean Tags? it has: AvailabilityZones,"
    )


def test_a_get_operation_adds_the_keys_of_an_item_fetched_by_id() -> None:
    spec = {
        "list": {"operation": "ListQueues", "items": "QueueUrls[].{QueueUrl: @}"},
        "get": {"operation": "GetQueueUrl", "items": "[@]"},
    }
    assert check("sqs", {"q": spec}, "q", {"console": "format('{QueueUrl}', @)"}).checked == 1
    more = {**TOPICS, "get": {"operation": "GetTopicAttributes", "items": "[@]"}}
    assert problems(
        "sns", {"t": more}, "t", {"console": "format('{TopicArn}{Attributes}{Atributes}', @)"}
    ) == [
        missing("t.console", "Atributes", "Atributes")
        + "did you mean Attributes? it has: Attributes, TopicArn"
    ]
    unknown = {**TOPICS, "get": {"operation": "GetTopicAttributes", "items": "values(Attributes)"}}
    assert problems("sns", {"t": unknown}, "t", {"console": "format('{X}', @)"})[0].endswith(
        "it has: TopicArn"
    )
    unlisted = {**more, "list": {"operation": "ListTopics", "items": "values(@)"}}
    assert check("sns", {"t": unlisted}, "t", {"console": "format('{X}', @)"}).unchecked == 1
    without = {**spec, "get": {"items": "[{Other: _id}]"}}  # no call: not followed
    assert problems("sqs", {"q": without}, "q", {"console": "format('{Other}', @)"})[0].endswith(
        "it has: QueueUrl"
    )


def test_a_child_reads_its_parent_root_and_ancestors_by_their_shapes() -> None:
    resources = {
        "topic": TOPICS,
        "sub": {
            "parent": "topic",
            "list": {"operation": "ListSubscriptionsByTopic", "items": "Subscriptions[]"},
        },
        "leaf": {"parent": "sub", "list": {"items": "[{Arn: SubscriptionArn}]"}},
    }
    text = (
        "format('{_parent.SubscriptionArn}{_root.TopicArn}{_ancestors.topic.TopicArn}{_parent._x}{Arn}', @)"
    )
    found = check("sns", resources, "leaf", {"console": text})
    assert (found.problems, found.checked) == ([], 5)
    assert problems(
        "sns", resources, "leaf", {"console": "format('{_root.TopicArm}{_ancestors.sub.Endpont}', @)"}
    ) == [
        missing("leaf.console", "_root.TopicArm", "TopicArm", "_root")
        + "did you mean TopicArn? it has: TopicArn",
        "resources.leaf.console: format() placeholder {_ancestors.sub.Endpont} reads Endpont, which "
        "_ancestors.sub does not have; did you mean Endpoint? it has: Endpoint, Owner, Protocol, "
        "SubscriptionArn, TopicArn",
    ]
    assert problems("sns", resources, "sub", {"console": "format('{_parent.Arn}', @)"}) == [
        missing("sub.console", "_parent.Arn", "Arn", "_parent") + "it has: TopicArn"
    ]
    assert problems("sns", resources, "leaf", {"console": "format('{_root._x}{_ancestors.nothing}', @)"}) == [
        missing("leaf.console", "_ancestors.nothing", "nothing", "_ancestors") + "it has: sub, topic"
    ]
    unknown = {
        "topic": TOPICS,
        "sub": {"parent": "topic", "list": {"operation": "ListSubscriptionsByTopic", "items": "values(@)"}},
        "leaf": {"parent": "sub", "list": {"items": "[@]"}},
    }
    assert check("sns", unknown, "leaf", {"console": "format('{x}', @)"}).unchecked == 1
    own = {**unknown, "leaf": {"parent": "sub", "list": {"operation": "ListTopics", "items": "Topics"}}}
    found = check(
        "sns", own, "leaf", {"console": "format('{_parent.x}{_root.TopicArm}{_ancestors.sub.x}', @)"}
    )
    assert [p for _, p in found.problems] == [
        "format() placeholder {_root.TopicArm} reads TopicArm, which _root does not have; "
        "did you mean TopicArn? it has: TopicArn"
    ]
    orphan = {"leaf": {"parent": "nowhere", "list": {"items": "[@]"}}}
    assert check("sns", orphan, "leaf", {"console": "format('{x}', @)"}).unchecked == 1


def test_relations_and_emits_see_each_element_with_the_item() -> None:
    spec = {
        **TOPICS,
        "details": [{"operation": "ListSubscriptionsByTopic", "into": "_subs", "result": "Subscriptions"}],
        "relations": [{"each": "Topics", "target": "t"}, {"target": "t"}],
        "emit": [{"each": "[{Sub: TopicArn}]"}],
    }
    assert problems(
        "sns", {"t": spec}, "t",
        {
            "relations[0].target": "format('{x}', @)",
            "relations[1].target": "format('{TopicArn}{Sub}', @)",
            "emit[0].text": "format('{Sub}{_item.TopicArn}{_region}{TopicArn}{_item.TopicArm}', @)",
            "emit[0].each": "format('{Sub}', @)",
        },
    ) == [
        missing("t.relations[1].target", "Sub", "Sub") + "it has: TopicArn",
        missing("t.emit[0].text", "TopicArn", "TopicArn", "the element") + "it has: Sub",
        missing("t.emit[0].text", "_item.TopicArm", "TopicArm") + "did you mean TopicArn? it has: TopicArn",
        missing("t.emit[0].each", "Sub", "Sub") + "it has: TopicArn",
    ]  # fmt: skip


def test_expressions_not_over_the_item_are_not_checked() -> None:
    found = check(
        "sns", {"t": TOPICS}, "t",
        {"events[0].ids": "format('{x}', @)", "list.items": "format('{y}', @)",
         "traces[0].id": "format('{z}', @)", "cloudformation.physical_id": "format('{w}', @)",
         "details[0].result": "format('{v}', @)"},
    )  # fmt: skip
    assert (found.problems, found.checked, found.unchecked) == ([], 0, 0)


def test_an_expression_at_two_keys_is_reported_at_the_first_only() -> None:
    keys = ["resources.t.events[0].ids", "resources.t.console", "resources.t.urns[0]", "resources.t.data"]
    found = shapes.check({"t": TOPICS}, "t", {"format('{X}', @)": keys}, service_model("sns"))
    assert [key for key, _ in found.problems] == ["resources.t.console"]
    assert found.checked == 3


# --- unknown shapes: nothing is checked ----------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"list": {"operation": "ListTopics", "items": "sort_by(Topics, &TopicArn)"}},  # a function
        {"list": {"operation": "NoSuchOperation", "items": "Topics[]"}},
        {"list": {"operation": "ListTopics", "items": "Topics[0].TopicArn"}},  # one string: as_list of it
        {**TOPICS, "details": [{"operation": "GetTopicAttributes", "result": "Attributes"}]},  # a map
        {**TOPICS, "details": [{"operation": "GetTopicAttributes", "result": "Attributes.Policy"}]},
        {"parent": "later", "list": {"items": "[@]"}},  # a derived child of no known parent
        {**TOPICS, "details": [{"operation": "DeleteTopic"}]},  # no output shape
    ],
)
def test_an_item_of_unknown_shape_is_not_checked(spec: dict) -> None:
    text = "format('{Nothing}{Else}', @)"
    found = check("sns", {"t": spec, "later": TOPICS}, "t", {"console": text, "id": "Nothing"})
    assert (found.problems, found.checked, found.unchecked) == ([], 0, 2)


def test_without_a_service_model_nothing_is_checked() -> None:
    found = shapes.check({"t": TOPICS}, "t", {"format('{X}', @)": ["resources.t.console"]}, None)
    assert (found.problems, found.checked, found.unchecked) == ([], 0, 1)


@pytest.mark.parametrize(
    "text",
    [
        "format('{X}', Topics)",  # a field of the item that it does not have: null, unknown
        "format('{X}', `{}`)",  # a literal
        "format('{X}', tag_dict(@))",  # a function's result
        "format('{X}', TopicArn)",  # a string
        "format('{X}', [@][0] || `1`)",  # either of two kinds
        "Labels[*].format('{X}', @)",  # elements of what the item does not have
    ],
)
def test_a_placeholder_over_a_value_of_unknown_shape_is_not_checked(text: str) -> None:
    spec = {**TOPICS, "details": [{"operation": "ListTagsForResource", "into": "Labels"}]}
    found = check("sns", {"t": spec}, "t", {"console": text})
    assert (found.problems, found.checked, found.unchecked) == ([], 0, 1)


# --- the walk over shapes ------------------------------------------------------------------------------


def reads(text: str, current: Any) -> list[str]:
    walk = Walk(key="k")
    walk.over(text, current)
    return [problem for _, problem in walk.problems]


AB = Struct(({"A": SCALAR, "B": Array(Struct(({"C": SCALAR},), "the B"))},), "the item")


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("format('{A}{B[0].C}{B[-1].C}{B[].C}{B[*].C}{B[1:].C}{B[?C].C}{B[?C=='x'] | [0].C}', @)", []),
        ("format('{B[0].D}', @)", ["D"]),
        ("format('{B[1:].D}', @)", ["D"]),
        ("format('{Z}', B | [0])", ["Z"]),
        ("format('{Q[*].C}{Q[]}{Q[?C].C}{Q.*}', @)", ["Q", "Q", "Q", "Q"]),
        ("format('{B[].D}', @)", ["D"]),
        ("format('{B[?D].C}', @)", ["D"]),
        ("format('{B[?!D].C}', @)", ["D"]),
        ("format('{B[?C==`1`].D}', @)", ["D"]),
        ("format('{B[?C==A].C}', @)", ["A"]),  # over the element
        ("format('{[B][][].D}', @)", ["D"]),
        ("format('{A || Z}', @)", ["Z"]),
        ("format('{A && Z}', @)", ["Z"]),
        ("format('{length(Z)}', @)", ["Z"]),
        ("format('{format(`\"{Y}\"`, @)}', @)", ["Y"]),
        ("format('{sort_by(B, &D)[0].C}', @)", []),  # an expression argument: not followed
        ("format('{A.Z}{B.Z}{Z.Z}', @)", ["Z"]),  # a field of a string or a list is null: only the first
        ("B[0].format('{Z}', @)", ["Z"]),
        ("{x: format('{Z}', @)}", ["Z"]),
        ("[format('{Z}', @), format('{A}', @)]", ["Z"]),
        ("format('{Y}', merge(@, {Y: A}))", []),
        ("format('{Z}', B[0] && B[1])", ["Z"]),
        ("format('{Z}', merge(@, A))", []),  # merge of a string: unknown
        ("format('{Z}', B[0] || A)", []),
        ("format('{Z}', B[0] || B[1])", ["Z"]),
        ("format('{Z}', [A, B][0])", []),
        ("format('{Z}', [B, B][0][0])", ["Z"]),
        ("format('{Z}', {x: B}.x[0])", ["Z"]),
        ("format('{Z}', *.B)", []),
        ("Z", []),  # outside a placeholder, not strict
    ],
)
def test_the_walk_checks_what_placeholders_read(text: str, missing: list[str]) -> None:
    assert [problem.split(" reads ")[1].split(",")[0] for problem in reads(text, AB)] == missing


def test_a_missing_key_names_what_lacks_it_and_what_it_has() -> None:
    assert reads("format('{B[0].D}', @)", AB) == [
        "format() placeholder {B[0].D} reads D, which the B does not have; it has: C"
    ]
    lenient = Struct(({"Ab": SCALAR, "_x": SCALAR},), "the item", lenient=True)
    assert reads("format('{Abc}{_y}', @)", lenient) == [
        "format() placeholder {Abc} reads Abc, which the item does not have; did you mean Ab? it has: Ab"
    ]
    strict = Struct(({"_x": SCALAR},), "an object")
    assert reads("format('{_xy}', @)", strict) == [
        "format() placeholder {_xy} reads _xy, which an object does not have; did you mean _x? it has: _x"
    ]


def test_objects_built_by_an_expression_are_named_as_objects() -> None:
    assert reads("format('{Z}', {x: A})", AB) == [
        "format() placeholder {Z} reads Z, which an object does not have; it has: x"
    ]
    item = Struct(AB.sources, "the item", lenient=True)
    assert reads("format('{Y}{_z}{Z}', merge(@, {Y: A}))", item) == [
        "format() placeholder {Z} reads Z, which an object does not have; it has: A, B, Y"
    ]
    assert reads("format('{Z}', merge({x: A}, {y: A}))", AB) == [
        "format() placeholder {Z} reads Z, which an object does not have; it has: x, y"
    ]


def test_plain_references_are_checked_inside_multiselects_but_not_after_a_placeholder_is_done() -> None:
    for text in ("{a: Z}.a", "[Z][0]", "format('{A}', @) || Z"):
        walk = Walk(key="k")
        walk.over(text, AB, strict=True)
        assert walk.problems == [("k", "reads Z, which the item does not have; it has: A, B")]


def test_botocore_maps_give_any_key_and_their_values() -> None:
    tags = Struct(({"T": Dict(Struct(({"V": SCALAR},), "V"))},), "the item")
    assert reads("format('{T.anything.V}{T.x.W}{values(T)}', @)", tags)[0].startswith(
        "format() placeholder {T.x.W} reads W, which V does not have; it has: V"
    )
    assert reads("format('{Z}', T.*)", tags) == []  # an array: unknown
    assert reads("format('{Z}', T.*.W)", tags) == []
    assert reads("T.*.format('{Z}{V}', @)", tags) == [
        "format() placeholder {Z} reads Z, which V does not have; it has: V"
    ]
    assert reads("format('{Z}', A.*)", AB) == []
    assert reads("format('{T.*.W}', @)", tags) == [
        "format() placeholder {T.*.W} reads W, which V does not have; it has: V"
    ]
    assert reads("format('{Z}', T.* | [0])", tags) == [
        "format() placeholder {Z} reads Z, which V does not have; it has: V"
    ]


def test_an_unparsable_expression_is_left_to_the_loader() -> None:
    assert Walk().over("format('{A', @", AB) is None


def test_botocore_shapes_and_unions() -> None:
    model = service_model("sns")
    topics = botocore_shape(model.operation_model("ListTopics").output_shape)
    assert isinstance(topics, Struct) and topics.keys() == {"Topics", "NextToken"}
    assert topics.member("NextToken") == SCALAR
    assert isinstance(topics.member("Topics"), Array)
    attributes = botocore_shape(model.operation_model("GetTopicAttributes").output_shape)
    assert isinstance(attributes, Struct) and attributes.member("Attributes") == Dict(SCALAR)
    document = types.SimpleNamespace(type_name="structure", metadata={"document": True}, name="D")
    assert botocore_shape(document) is None
    a, b = Struct(({"A": SCALAR},), "a"), Struct(({"A": Array(SCALAR), "B": SCALAR},), "b", lenient=True)
    assert union(a, b) == Struct(a.sources + b.sources, "a", True)
    assert union(a, b).member("A") is None and union(a, b).member("B") == SCALAR
    assert union(Array(a), Array(a)).element.keys() == {"A"}
    assert union(Dict(SCALAR), Dict(SCALAR)) == Dict(SCALAR)
    assert union(SCALAR, SCALAR) == SCALAR
    assert union(SCALAR, a) is None and union(None, None) is None and union(Array(a), Dict(a)) is None
    assert element(Array(SCALAR)) == SCALAR and element(a) is a and element(SCALAR) is None
    assert element(None) is None


def test_the_checked_lines_name_the_file() -> None:
    assert shapes.Checked([("k", "text")], 1, 0).lines("f.yaml") == ["f.yaml: k: text"]


# --- the external id does not need a detail ------------------------------------------------------------

QUEUE = (
    test_mappings.QUEUE
    + """\
    details:
      - {operation: GetQueueAttributes, args: {QueueUrl: QueueUrl}, params: {AttributeNames: [All]},
         result: Attributes}
    external_id: EXTERNAL_ID
"""
)


def load_queue(directory: Path, external_id: str) -> None:
    (directory / "sqs.yaml").write_text(QUEUE.replace("EXTERNAL_ID", external_id), encoding="utf-8")
    load_mappings(directory)


def test_an_external_id_that_only_a_detail_gives_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MappingErrors) as caught:
        load_queue(tmp_path, "QueueArn")
    assert str(caught.value).splitlines() == [
        "sqs.yaml: resources.queue.external_id: reads QueueArn, which the item before its details (a role "
        "may be denied a detail: add `|| ` what the listing gives) does not have; did you mean QueueUrl? it "
        "has: QueueUrl"
    ]
    with pytest.raises(MappingErrors, match=r"\{QueueName\} reads QueueName, which the item before"):
        load_queue(tmp_path, "format('arn:{_partition}:sqs:{_region}:{_account}:{QueueName}', @)")


def test_an_external_id_from_a_detail_with_a_fallback_from_the_listing_loads(tmp_path: Path) -> None:
    load_queue(tmp_path, "QueueArn || format('arn:{_partition}:sqs:{_region}:{_account}:{QueueUrl}', @)")
    load_queue(tmp_path, "QueueUrl")
    with pytest.raises(MappingErrors, match="reads QueueArn, which the item before its details"):
        load_queue(tmp_path, "QueueUrl || QueueArn")  # the last alternative is what a denied detail leaves


# --- a join's fallback needs another IAM action ---------------------------------------------------------

TABLE = """\
version: 1
service: dynamodb
resources:
  table:
    type: aws.dynamodb.table
    list: {operation: ListTables, items: "TableNames[].{TableName: @}"}
    details:
      - {operation: ListTagsOfResource, args: {ResourceArn: TableName}, result: Tags, into: Tags,
         fallback: true}
    joins:
      - call: {service: resourcegroupstaggingapi, operation: GetResources, iam_action: IAM_ACTION,
               items: "ResourceTagMappingList[]"}
        key: ResourceARN
        match: TableName
        result: "[0].Tags"
        into: Tags
    id: TableName
"""


def test_a_fallback_that_needs_the_joins_own_iam_action_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dynamodb.yaml").write_text(TABLE.replace("IAM_ACTION", "dynamodb:ListTagsOfResource"))
    with pytest.raises(MappingErrors) as caught:
        load_mappings(tmp_path)
    assert str(caught.value).splitlines() == [
        "dynamodb.yaml: resources.table.details[0].fallback: needs dynamodb:ListTagsOfResource, as the join "
        "it stands in for (GetResources) does: a role denied one is denied both; fall back on a call of "
        "another action"
    ]
    (tmp_path / "dynamodb.yaml").write_text(TABLE.replace("IAM_ACTION", "tag:GetResources"))
    load_mappings(tmp_path)
