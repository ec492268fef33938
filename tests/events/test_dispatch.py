"""The fast event dispatch: odd key order, escaped characters and spacing read back into the same changes;
`latest` keeps each resource's last change, ties to the later one, in the order of the events; and
`each_envelope` reads lazily what `envelopes` reads, with the collector paused only while asked. (Each
sample's exact changes: tests/events/test_event_rules.py.)"""

from __future__ import annotations

import gc
import gzip
import json
import math

import pytest

from engine.events.eventbridge import (
    Change,
    CorruptObject,
    Rules,
    each_envelope,
    envelopes,
    gc_paused,
    latest,
)
from engine.language.loader import load_mappings

ACCOUNT = "123456789012"
MAPPINGS = load_mappings()
RULES = Rules(MAPPINGS)
REGIONS = [("eu-west-1",), ("eu-west-1", "us-east-1", "global"), ("global",), ("us-east-1", "global")]


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


def test_latest_keeps_each_resources_last_change_in_the_order_of_the_events() -> None:
    queue, topic = (next(r for r in MAPPINGS.resources if r.key == k) for k in ("sqs.queue", "sns.topic"))
    t1, t2, t3 = "2024-05-02T10:14:00+00:00", "2024-05-02T10:15:00+00:00", "2024-05-02T10:16:00+00:00"
    changes = [
        Change(queue, "eu-west-1", "a", True, at=t3),  # the latest event for a: kept though it came first
        Change(queue, "eu-west-1", "a", False, at=t1),
        Change(topic, "eu-west-1", "a", False, at=t2),  # another type, the same id: its own resource
        Change(queue, "us-east-1", "a", False, at=t1),  # another region: its own resource
        Change(queue, "eu-west-1", "b", False, at=t2),
        Change(queue, "eu-west-1", "b", True, at=t2),  # as late, later in order: wins
        Change(queue, "eu-west-1", "c", False, at=""),  # no time: before any timed event
        Change(queue, "eu-west-1", "c", True, at=""),
    ]
    kept = [(c.resource.key, c.region, c.id, c.delete, c.at) for c in latest(changes)]
    assert kept == [
        ("sqs.queue", "eu-west-1", "c", True, ""),
        ("sqs.queue", "us-east-1", "a", False, t1),
        ("sns.topic", "eu-west-1", "a", False, t2),
        ("sqs.queue", "eu-west-1", "b", True, t2),
        ("sqs.queue", "eu-west-1", "a", True, t3),
    ]
    assert latest([]) == []


def test_envelopes_are_read_one_at_a_time_and_a_corrupt_one_raises_when_reached() -> None:
    body = b'{"a": 1} {"b": 2}{"c": '
    read = each_envelope(body)
    assert next(read) == {"a": 1}
    assert next(read) == {"b": 2}
    with pytest.raises(CorruptObject, match="bad JSON at character 23"):
        next(read)
    with pytest.raises(CorruptObject, match="bad JSON at character 23"):
        envelopes(body)


BRACES = [  # `}{` in strings: where a piece would end inside a string, and so fail to decode alone
    {"s": "}{"},
    {"s": "x}{", "t": {"u": "}{}{"}},
    {"s": '"}{"', "list": [{}, {"v": "\\"}, "}{"]},
    {"s": "é}{é", "n": {"m": {}}},
    {},
]


def test_braces_inside_strings_read_back_as_written() -> None:
    """Firehose writes envelopes back to back, `}{` between them; the same two characters in a string
    must not split an envelope."""
    text = "".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in BRACES)
    assert text.count("}{") > len(BRACES)
    assert list(each_envelope(gzip.compress(text.encode()))) == BRACES
    assert list(each_envelope(text.encode())) == BRACES


def test_what_the_fast_decoder_refuses_is_read_as_the_stdlib_reads_it() -> None:
    """A lone surrogate, NaN: the stdlib's decoder reads them, and so do we. (An integer is exact up to 64
    bits unsigned; past that orjson gives a float: no rule reads a number as an id.)"""
    text = '{"a":1}{"big":18446744073709551615}{"lone":"\\ud800"}{"n":NaN}{"z":2}'
    found = list(each_envelope(text.encode()))
    assert found[:3] == [{"a": 1}, {"big": 2**64 - 1}, {"lone": "\ud800"}]
    assert math.isnan(found[3]["n"]) and found[4] == {"z": 2} and len(found) == 5


def test_a_broken_envelope_after_good_ones_is_named_by_its_character_not_its_byte() -> None:
    """The good envelopes before it are read; the error names the character where the text breaks
    (the spaces before the first envelope count; each `é` is two bytes, one character)."""
    good = ' \n{"é":"é"}{"b":"}{"}'
    body = (good + '{"c":}{"d":1}').encode()
    read = each_envelope(body)
    assert [next(read), next(read)] == [{"é": "é"}, {"b": "}{"}]
    with pytest.raises(CorruptObject, match=f"bad JSON at character {len(good) + 5}: Expecting value"):
        next(read)


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
