"""Payload builder: splitting, ordering, snapshot flags, and the intake schema."""

from __future__ import annotations

import copy
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.delivery.payload import SCHEMA_PATH, build_payloads, encode, validate_payload

ACCOUNT = "123456789012"


def component(i: int, pad: int = 0) -> dict:
    return {
        "externalId": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:queue-{i}",
        "type": {"name": "aws.sqs.queue"},
        "data": {"Name": f"queue-{i}", "Padding": "x" * ((i * 37) % 200 + pad), "Tags": {"é": "ü"}},
    }


def relation(i: int) -> dict:
    source, target, kind = f"src-{i}", f"dst-{i}", "uses-service"
    return {
        "externalId": f"{source}-{kind}-{target}",
        "sourceId": source,
        "targetId": target,
        "type": {"name": kind},
        "data": {},
    }


def event(i: int, event_type: str) -> dict:
    return {
        "msg_title": "EC2 instance state",
        "msg_text": "running",
        "timestamp": 1_700_000_000 + i,
        "host": f"i-{i:08x}",
        "tags": ["state:running"],
        "event_type": event_type,
    }


def flatten(payloads: list[dict], section: str) -> list:
    return [item for p in payloads for item in p["topologies"][0][section]]


def flatten_events(payloads: list[dict]) -> list[dict]:
    return [e for p in payloads for items in p["events"].values() for e in items]


def flags(payloads: list[dict]) -> list[tuple[bool, bool]]:
    return [(p["topologies"][0]["start_snapshot"], p["topologies"][0]["stop_snapshot"]) for p in payloads]


@pytest.fixture
def elements() -> dict[str, list]:
    return {
        "components": [component(i) for i in range(200)],
        "relations": [relation(i) for i in range(150)],
        "delete_ids": [f"gone-{i}" for i in range(20)],
        "events": [event(i, "ec2_state" if i % 3 else "target_instance_health") for i in range(12)],
    }


def test_split_respects_max_bytes_and_keeps_every_element_once_in_order(elements: dict[str, list]) -> None:
    payloads = build_payloads(
        ACCOUNT,
        iter(elements["components"]),
        iter(elements["relations"]),
        iter(elements["delete_ids"]),
        snapshot=True,
        max_bytes=4000,
        events=iter(elements["events"]),
    )

    assert len(payloads) > 5
    assert all(len(encode(p)) <= 4000 for p in payloads)
    assert flatten(payloads, "components") == elements["components"]
    assert flatten(payloads, "relations") == elements["relations"]
    assert flatten(payloads, "delete_ids") == elements["delete_ids"]
    by_type: dict[str, list] = {}
    for e in elements["events"]:
        by_type.setdefault(e["event_type"], []).append(e["timestamp"])
    for event_type, timestamps in by_type.items():
        sent = [e for p in payloads for e in p["events"].get(event_type, [])]
        assert [e["timestamp"] for e in sent] == timestamps
        assert all(e["source_type_name"] == event_type for e in sent)
    for payload in payloads:
        validate_payload(payload)


def test_split_fills_payloads_instead_of_leaving_room(elements: dict[str, list]) -> None:
    payloads = build_payloads(ACCOUNT, elements["components"], [], snapshot=False, max_bytes=3000)

    for current, following in itertools.pairwise(payloads):
        first_next = following["topologies"][0]["components"][0]
        assert len(encode(current)) + 1 + len(json.dumps(first_next, separators=(",", ":"))) > 3000


def test_size_accounting_is_exact_for_a_delta(elements: dict[str, list]) -> None:
    args: tuple[Any, ...] = (ACCOUNT, elements["components"][:30], elements["relations"][:30], ["gone-1"])
    whole = build_payloads(*args, snapshot=False, events=elements["events"])
    assert len(whole) == 1
    exact = len(encode(whole[0]))

    assert len(build_payloads(*args, snapshot=False, events=elements["events"], max_bytes=exact)) == 1
    assert len(build_payloads(*args, snapshot=False, events=elements["events"], max_bytes=exact - 1)) == 2


def test_components_come_before_relations_across_payloads(elements: dict[str, list]) -> None:
    payloads = build_payloads(
        ACCOUNT, elements["components"], elements["relations"], snapshot=True, max_bytes=3000
    )

    last_with_component = max(i for i, p in enumerate(payloads) if p["topologies"][0]["components"])
    first_with_relation = min(i for i, p in enumerate(payloads) if p["topologies"][0]["relations"])
    assert last_with_component <= first_with_relation


def test_snapshot_starts_on_first_payload_and_stops_on_last(elements: dict[str, list]) -> None:
    payloads = build_payloads(
        ACCOUNT, elements["components"], elements["relations"], snapshot=True, max_bytes=3000
    )

    assert len(payloads) >= 3
    assert flags(payloads) == [(True, False)] + [(False, False)] * (len(payloads) - 2) + [(False, True)]


def test_single_payload_snapshot_both_starts_and_stops() -> None:
    assert flags(build_payloads(ACCOUNT, [component(1)], [relation(1)], snapshot=True)) == [(True, True)]


def test_incomplete_snapshot_never_stops(elements: dict[str, list]) -> None:
    payloads = build_payloads(
        ACCOUNT, elements["components"], [], snapshot=True, complete=False, max_bytes=3000
    )

    assert flags(payloads)[0] == (True, False)
    assert not any(stop for _, stop in flags(payloads))


def test_delta_sets_no_snapshot_flags(elements: dict[str, list]) -> None:
    payloads = build_payloads(
        ACCOUNT, elements["components"], elements["relations"], ["gone"], snapshot=False, max_bytes=3000
    )

    assert len(payloads) > 1
    assert set(flags(payloads)) == {(False, False)}


def test_empty_delta_sends_nothing() -> None:
    assert build_payloads(ACCOUNT, [], [], snapshot=False) == []


@pytest.mark.parametrize(("complete", "expected"), [(True, [(True, True)]), (False, [(True, False)])])
def test_empty_snapshot_is_one_payload(complete: bool, expected: list[tuple[bool, bool]]) -> None:
    payloads = build_payloads(ACCOUNT, [], [], snapshot=True, complete=complete)

    assert flags(payloads) == expected
    topology = payloads[0]["topologies"][0]
    assert (topology["components"], topology["relations"], topology["delete_ids"]) == ([], [], [])
    assert topology["instance"] == {"type": "aws-v2", "url": ACCOUNT}
    validate_payload(payloads[0])


def test_oversized_element_travels_alone(caplog: pytest.LogCaptureFixture) -> None:
    small = [component(i) for i in range(6)]
    huge = component(99, pad=5000)
    components = [*small[:3], huge, *small[3:]]

    with caplog.at_level(logging.WARNING, logger="engine.delivery.payload"):
        payloads = build_payloads(ACCOUNT, components, [], snapshot=True, max_bytes=2000)

    alone = [p for p in payloads if huge in p["topologies"][0]["components"]]
    assert len(alone) == 1
    assert alone[0]["topologies"][0]["components"] == [huge]
    assert flatten(payloads, "components") == components
    assert all(len(encode(p)) <= 2000 for p in payloads if p is not alone[0])
    assert huge["externalId"] in caplog.text


def test_events_are_grouped_by_type_and_get_source_type_name() -> None:
    payloads = build_payloads(
        ACCOUNT, [], [], snapshot=False, events=[event(1, "ec2_state"), event(2, "target_instance_health")]
    )

    assert sorted(payloads[0]["events"]) == ["ec2_state", "target_instance_health"]
    assert payloads[0]["events"]["ec2_state"][0]["source_type_name"] == "ec2_state"
    validate_payload(payloads[0])


def test_event_without_type_is_refused() -> None:
    with pytest.raises(ValueError, match="event_type"):
        build_payloads(ACCOUNT, [], [], snapshot=False, events=[{"msg_title": "x", "timestamp": 1}])


def test_max_bytes_below_an_empty_payload_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        build_payloads(ACCOUNT, [component(1)], [], snapshot=True, max_bytes=50)


def test_inputs_are_not_modified() -> None:
    events = [event(1, "ec2_state")]
    before = copy.deepcopy(events)
    build_payloads(ACCOUNT, [], [], snapshot=False, events=events)
    assert events == before


def test_relation_external_id_must_be_source_type_target() -> None:
    payload = build_payloads(ACCOUNT, [component(1)], [relation(1)], snapshot=True)[0]
    payload["topologies"][0]["relations"][0]["externalId"] = "src-1-uses-dst-1"

    with pytest.raises(ValueError, match=r"\$\.topologies\[0\]\.relations\[0\]\.externalId"):
        validate_payload(payload)


def _set(path: list[Any], value: Any) -> Any:
    def mutate(payload: dict) -> None:
        target = payload
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (_set(["topologies", 0, "instance", "url"], "12345"), "$.topologies[0].instance.url"),
        (_set(["topologies", 0, "instance", "type"], "aws"), "$.topologies[0].instance.type"),
        (
            _set(["topologies", 0, "components", 0, "externalId"], ""),
            "$.topologies[0].components[0].externalId",
        ),
        (_set(["topologies", 0, "components", 0, "type"], {"name": ""}), "components[0].type.name"),
        (_set(["topologies", 0, "components", 0, "data"], []), "$.topologies[0].components[0].data"),
        (_set(["topologies", 0, "components", 0, "extra"], 1), "$.topologies[0].components[0]"),
        (_set(["topologies", 0, "delete_ids"], [7]), "$.topologies[0].delete_ids[0]"),
        (_set(["apiKey"], "secret"), "$"),
        (_set(["events", "ec2_state"], [{"msg_title": "x"}]), "$.events.ec2_state[0]"),
    ],
)
def test_schema_rejects_malformed_payloads(mutate: Any, where: str) -> None:
    payload = build_payloads(ACCOUNT, [component(1)], [relation(1)], snapshot=True)[0]
    mutate(payload)

    with pytest.raises(ValueError) as caught:
        validate_payload(payload)
    assert where in str(caught.value)


def test_event_map_key_must_match_source_type_name() -> None:
    payload = build_payloads(ACCOUNT, [], [], snapshot=False, events=[event(1, "ec2_state")])[0]
    payload["events"]["other"] = payload["events"].pop("ec2_state")

    with pytest.raises(ValueError, match="map key"):
        validate_payload(payload)


def _undescribed(node: Any, where: str) -> list[str]:
    missing = []
    if isinstance(node, dict):
        for section in ("properties", "$defs"):
            for name, sub in node.get(section, {}).items():
                if "description" not in sub:
                    missing.append(f"{where}.{section}.{name}")
        for key, value in node.items():
            missing += _undescribed(value, f"{where}.{key}")
    return missing


def test_schema_is_valid_2020_12_and_describes_every_property() -> None:
    schema = json.loads(Path(SCHEMA_PATH).read_text(encoding="utf-8"))

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert _undescribed(schema, "$") == []
