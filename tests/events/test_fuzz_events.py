"""Property-based tests of the event-object reader: `envelopes(bytes)` gives dicts or raises CorruptObject;
`Rules.changes` gives Changes (or nothing) for any envelope, whatever the type of each field."""

from __future__ import annotations

import gzip
import json

from hypothesis import given
from hypothesis import strategies as st

from engine.events.eventbridge import Change, CorruptObject, Rules, envelopes
from engine.language.loader import CLOUDTRAIL, load_mappings
from tests.fuzz import FUZZ, JSON, bounded

ACCOUNT = "123456789012"
MAPPINGS = load_mappings()
RULES = Rules(MAPPINGS)
CLOUDTRAIL_RULES = sorted(
    {(rule.source, name) for r in MAPPINGS.resources for rule in r.event_rules
     if rule.detail_type == CLOUDTRAIL for name in rule.names}
)  # fmt: skip
OTHER_RULES = sorted(
    {(rule.detail_type, rule.source) for r in MAPPINGS.resources for rule in r.event_rules
     if rule.detail_type != CLOUDTRAIL}
)  # fmt: skip
OBJECTS = st.dictionaries(st.text(max_size=12), JSON, max_size=4)
REGIONS = st.sampled_from(["eu-west-1", "us-east-1", "global"]) | JSON


def read(body: bytes) -> list[dict] | None:
    """The envelopes of `body`, or None when the reader refused it as corrupt."""
    try:
        found = bounded(lambda: envelopes(body))
    except CorruptObject as exc:
        assert str(exc)
        return None
    assert all(isinstance(e, dict) for e in found)
    return found


@FUZZ
@given(st.binary(max_size=2_000))
def test_any_bytes_give_envelopes_or_a_corrupt_object(body):
    read(body)
    read(gzip.compress(body))


@FUZZ
@given(st.lists(OBJECTS, max_size=6), st.sampled_from(["", " ", "\n", "\r\n\t"]), st.booleans())
def test_concatenated_json_objects_read_back_as_they_were(values, separator, compress):
    body = separator.join(json.dumps(v) for v in values).encode()
    found = read(gzip.compress(body) if compress else body)
    assert found == values


@FUZZ
@given(st.lists(JSON, min_size=1, max_size=4), st.integers(min_value=1, max_value=40))
def test_a_cut_object_is_corrupt_or_reads_a_prefix(values, cut):
    body = "".join(json.dumps(v) for v in values).encode()
    whole = gzip.compress(body)
    assert read(whole[: max(2, len(whole) - cut)]) is None  # a truncated gzip stream is corrupt
    read(body[: max(0, len(body) - cut)])


@FUZZ
@given(st.integers(min_value=2_000, max_value=100_000), st.sampled_from([b"[", b'{"a":']))
def test_deeply_nested_json_is_corrupt_not_a_crash(depth, opener):
    read(opener * depth)


def cloudtrail_envelope() -> st.SearchStrategy[dict]:
    """EventBridge envelopes of CloudTrail records that the rules know, with any value in any field."""
    known = st.sampled_from(CLOUDTRAIL_RULES)
    detail = st.builds(
        lambda rule, region, request, response, version, extra: {
            "eventSource": rule[0], "eventName": rule[1], "awsRegion": region, "requestParameters": request,
            "responseElements": response, "apiVersion": version, **extra,
        },
        known, REGIONS, JSON, JSON, JSON, OBJECTS,
    )  # fmt: skip
    return st.fixed_dictionaries(
        {"detail-type": st.just(CLOUDTRAIL), "detail": detail | JSON},
        optional={"region": REGIONS, "source": JSON},
    )


def other_envelope() -> st.SearchStrategy[dict]:
    """Envelopes of the other event kinds the rules know (state changes), with any values."""
    return st.sampled_from(OTHER_RULES).flatmap(
        lambda rule: st.fixed_dictionaries(
            {"detail-type": st.just(rule[0]), "source": st.just(rule[1]), "detail": JSON, "region": REGIONS}
        )
    )


@FUZZ
@given(
    cloudtrail_envelope() | other_envelope() | OBJECTS,
    st.lists(st.sampled_from(["eu-west-1", "us-east-1", "global"]), min_size=1, max_size=3, unique=True),
)
def test_any_envelope_gives_changes_or_nothing(envelope, regions):
    changes = bounded(lambda: list(RULES.changes(envelope, ACCOUNT, tuple(regions))))
    for change in changes:
        assert isinstance(change, Change) and isinstance(change.id, str) and change.id
        assert change.region in (*regions, "account")
        assert change.delete_id is None or isinstance(change.delete_id, str)


@FUZZ
@given(st.lists(cloudtrail_envelope(), min_size=1, max_size=5))
def test_envelopes_written_as_an_object_read_back_into_the_same_changes(found):
    body = gzip.compress("".join(json.dumps(e) for e in found).encode())
    regions = ("eu-west-1", "us-east-1", "global")
    read_back = read(body)
    assert read_back is not None
    assert [list(RULES.changes(e, ACCOUNT, regions)) for e in read_back] == [
        list(RULES.changes(e, ACCOUNT, regions)) for e in found
    ]
