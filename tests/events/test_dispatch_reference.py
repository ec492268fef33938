"""The fast event dispatch answers exactly as the plain one it replaced: `Rules.changes` against a reference
matcher (one index by detail-type, source and name, `search` per rule, `_time` per envelope) and `latest`
against a stable sort by time, over every shipped sample, envelopes with any value in any field, odd key
order, escaped characters and spacing, and change lists with ties; and `each_envelope` reads lazily what
`envelopes` reads, with the collector paused only while asked."""

from __future__ import annotations

import gc
import gzip
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.events.eventbridge import (
    Change,
    CorruptObject,
    Rules,
    _delete_id,
    _time,
    _unit_region,
    each_envelope,
    envelopes,
    gc_paused,
    latest,
)
from engine.language.components import as_list
from engine.language.dialect import search
from engine.language.loader import CLOUDTRAIL, Mappings, load_mappings
from tests.events.test_event_rules import FILE_SAMPLES, SAMPLES
from tests.events.test_event_rules import envelope as sample_envelope
from tests.events.test_fuzz_events import cloudtrail_envelope, other_envelope
from tests.fuzz import FUZZ, JSON

ACCOUNT = "123456789012"
MAPPINGS = load_mappings()
RULES = Rules(MAPPINGS)
REGIONS = [("eu-west-1",), ("eu-west-1", "us-east-1", "global"), ("global",), ("us-east-1", "global")]


def reference_index(mappings: Mappings) -> dict[tuple[str, str, str], list]:
    index: dict[tuple[str, str, str], list] = {}
    for resource in mappings.resources:
        scope = mappings.root(resource).scope
        for rule in resource.event_rules:
            for name in rule.names if rule.detail_type == CLOUDTRAIL else {""}:
                index.setdefault((rule.detail_type, rule.source, name), []).append((resource, rule, scope))
    return index


INDEX = reference_index(MAPPINGS)


def reference_changes(envelope: dict, account: str, regions: tuple[str, ...]) -> list:
    """What `Rules.changes` answered before it was made fast (the code of commit 458ee89)."""
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        return []
    detail_type = str(envelope.get("detail-type", ""))
    if detail_type == CLOUDTRAIL:
        key = (detail_type, str(detail.get("eventSource", "")), str(detail.get("eventName", "")))
        region = detail.get("awsRegion") or envelope.get("region")
    else:
        key = (detail_type, str(envelope.get("source", "")), "")
        region = envelope.get("region")
    matching = INDEX.get(key)
    if not matching:
        return []
    at, found_changes = _time(envelope.get("time") or detail.get("eventTime")), []
    for resource, rule, scope in matching:
        if rule.api_version and rule.api_version != detail.get("apiVersion"):
            continue
        where = _unit_region(scope, str(region or ""), regions)
        if where is None:
            continue
        for found in as_list(search(rule.ids, detail)):
            if not isinstance(found, str) or not found:
                continue
            delete_id = _delete_id(rule, found, account, region)
            found_changes.append(Change(resource, where, found, rule.delete, delete_id, at))
    return found_changes


def reference_latest(changes: list[Change]) -> list[Change]:
    """What `latest` answered before: a stable sort by time, each resource's last change moved to the end."""
    last: dict[tuple[str, str, str], Change] = {}
    for change in sorted(changes, key=lambda c: c.at):
        key = (change.resource.key, change.region, change.id)
        last.pop(key, None)
        last[key] = change
    return list(last.values())


def same(envelope: dict) -> None:
    for regions in REGIONS:
        assert RULES.changes(envelope, ACCOUNT, regions) == reference_changes(envelope, ACCOUNT, regions)


def variants(envelope: dict) -> list[dict]:
    """The envelope with a time of each form, another API version, its region only outside, and a nested
    `eventSource`."""
    detail = envelope["detail"]
    outer = {k: v for k, v in envelope.items() if k != "detail"}
    return [
        envelope,
        {**envelope, "time": "2024-05-02T10:15:00Z"},
        {**envelope, "time": "2024-05-02T12:15:00+02:00", "detail": {**detail, "eventTime": "garbage"}},
        {**envelope, "detail": {**detail, "eventTime": "2024-05-02T10:15:00"}},
        {**envelope, "time": 20240502},
        {**envelope, "detail": {**detail, "apiVersion": "1999-01-01"}},
        {**outer, "region": "us-east-1", "detail": {k: v for k, v in detail.items() if k != "awsRegion"}},
        {**envelope, "detail": {**detail, "requestParameters": {"eventSource": "x", **(
            detail.get("requestParameters") if isinstance(detail.get("requestParameters"), dict) else {})}}},
    ]  # fmt: skip


@pytest.mark.parametrize("s", SAMPLES + FILE_SAMPLES, ids=[s.label for s in SAMPLES + FILE_SAMPLES])
def test_each_sample_dispatches_as_the_reference_matcher_does(s) -> None:
    for each in variants(sample_envelope(s)):
        same(each)


@FUZZ
@given(cloudtrail_envelope() | other_envelope() | st.dictionaries(st.text(max_size=12), JSON, max_size=4))
def test_any_envelope_dispatches_as_the_reference_matcher_does(envelope):
    same(envelope)


def test_odd_key_order_escapes_and_spacing_read_back_into_the_same_changes() -> None:
    """An object as a writer other than Firehose may lay it out: keys in any order, escaped characters
    (`\\u0065` for `e`, `\\/`), spaces and newlines between tokens and envelopes, a nested `eventSource`."""
    sqs = '"sqs.amaz\\u006fnaws.com"'
    texts = [
        '{"detail":{"requestParameters":{"queueUrl":"https:\\/\\/q\\/1","eventSource":"x"},'
        f'"eventName":"SetQueueAttributes","awsRegion":"eu-west-1","eventSource":{sqs}}},'
        '"detail-type":"AWS API Call via CloudTrail"}',
        '\n { "detail-type" : "AWS API Call via CloudTrail" ,\t"detail" : { "eventSource" :'
        ' "sqs.amazonaws.com" , "eventName" : "Delete\\u0051ueue" , "awsRegion" : "eu-west-1" ,'
        ' "requestParameters" : { "queueUrl" : "https://q/2" } } }\r\n',
        '{"detail-type":"AWS API Call via CloudTrail","detail":{"eventSource":"sqs.amazonaws.com",'
        '"eventName":"TagQueue","awsRegion":"eu-west-1","requestParameters":{"queueUrl":"\\ud83d\\ude00"}}}',
    ]
    body = gzip.compress("".join(texts).encode())
    found = list(each_envelope(body))
    assert found == [json.loads(t) for t in texts] == envelopes(body)
    changes = [c for e in found for c in RULES.changes(e, ACCOUNT, ("eu-west-1",))]
    assert [(c.resource.key, c.id, c.delete) for c in changes] == [
        ("sqs.queue", "https://q/1", False),
        ("sqs.queue", "https://q/2", True),
        ("sqs.queue", "\U0001f600", False),
    ]
    for each in found:
        same(each)


@pytest.mark.parametrize("seed", range(20))
def test_latest_keeps_what_a_stable_sort_by_time_keeps(seed: int) -> None:
    rng = random.Random(seed)
    types = [r for r in MAPPINGS.resources if r.event_rules][:3]
    times = ["", "", "2024-05-02T10:14:00+00:00", "2024-05-02T10:15:00+00:00", "2024-05-02T10:16:00+00:00"]
    changes = [
        Change(rng.choice(types), rng.choice(["eu-west-1", "global"]), rng.choice("abcd"), rng.random() < 0.5,
               at=rng.choice(times))
        for _ in range(rng.randint(0, 60))
    ]  # fmt: skip
    assert latest(changes) == reference_latest(changes)


def test_envelopes_are_read_one_at_a_time_and_a_corrupt_one_raises_when_reached() -> None:
    body = b'{"a": 1} {"b": 2}{"c": '
    read = each_envelope(body)
    assert next(read) == {"a": 1}
    assert next(read) == {"b": 2}
    with pytest.raises(CorruptObject, match="bad JSON at character 23"):
        next(read)
    with pytest.raises(CorruptObject, match="bad JSON at character 23"):
        envelopes(body)


def test_the_collector_is_paused_only_inside_and_left_as_it_was() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # paused by someone else: left paused
    finally:
        gc.enable()
