"""A scan's finished units wait on disk (the spill) and payloads are built one at a time from it.

Same results as holding everything in memory: components once per external id (first wins), relations
once per external id (last wins, where the first was), collisions found, snapshot flags and service checks
on the right payloads.
"""

from __future__ import annotations

import copy

import pytest

from engine.core.config import Instance
from engine.delivery.payload import build_payloads, iter_payloads, validate_payload
from engine.language.loader import load_mappings
from engine.scan.collect import UnitResult
from engine.scan.full_scan import AccountScan, Spill, deliver_account
from engine.scan.plan import Unit

ACCOUNT = "123456789012"
INSTANCE = Instance(role_arn=f"arn:aws:iam::{ACCOUNT}:role/Integration", regions=("eu-west-1",))


def _component(ext: str, kind: str = "aws.sqs.queue", size: int = 10) -> dict:
    return {"externalId": ext, "type": {"name": kind}, "data": {"Name": ext, "Padding": "x" * size}}


def _relation(source: str, target: str, note: str = "") -> dict:
    data = {"Note": note} if note else {}
    return {
        "externalId": f"{source}-uses-service-{target}", "type": {"name": "uses-service"},
        "sourceId": source, "targetId": target, "data": data,
    }  # fmt: skip


def _units(status: str = "complete") -> list[UnitResult]:
    resource = load_mappings().resources[0]
    unit = Unit(ACCOUNT, "eu-west-1", "eu-west-1", resource, ("eu-west-1",))
    first = UnitResult(
        unit,
        components=[_component(f"q{i}") for i in range(50)],
        relations=[_relation(f"q{i}", "t1") for i in range(30)],
    )
    second = UnitResult(
        unit,
        status=status,
        components=[_component("q3"), _component("q60"), _component("q7", "aws.sns.topic")],
        relations=[_relation("q2", "t1", "later"), _relation("q60", "t1")],
    )
    return [first, second]


def _scan(spill: bool, status: str = "complete", collide: bool = True) -> AccountScan:
    """Two units of results kept in a scan; the second with `status`, and without its colliding
    component unless `collide`."""
    result = AccountScan(ACCOUNT, INSTANCE.role_arn, spill=Spill() if spill else None)
    result.units = _units(status)
    if not collide:
        result.units[1].components.pop()
    for unit in result.units:
        result.keep(unit)
    return result


def test_spilled_units_read_back_like_memory():
    spilled, held = _scan(True), _scan(False)
    assert all(u.components == [] and u.relations == [] for u in spilled.units)  # memory let go
    assert spilled.components == held.components
    assert [c["externalId"] for c in spilled.components] == [f"q{i}" for i in range(50)] + ["q60"]
    assert spilled.collisions == held.collisions == ["q7 is both aws.sqs.queue and aws.sns.topic"]
    relations = spilled.relations
    assert relations == held.relations
    assert [r["sourceId"] for r in relations] == [f"q{i}" for i in range(30)] + ["q60"]
    assert relations[2]["data"] == {"Note": "later"}  # the last one listed, where the first one was
    assert spilled.component_count == 51 and spilled.relation_count == 31
    assert not spilled.closes_snapshot  # the collision keeps it open


class _Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send(self, payload: dict, name: str) -> None:
        self.sent.append((name, copy.deepcopy(payload)))


def _delivered(result: AccountScan) -> list[dict]:
    sink = _Sink()
    deliver_account(result, INSTANCE, sink, state=None, max_bytes=2_000)
    assert [name for name, _ in sink.sent] == [
        f"scan-{ACCOUNT}-{i:04d}" for i in range(1, len(sink.sent) + 1)
    ]
    assert result.payloads == len(sink.sent)
    return [payload for _, payload in sink.sent]


def test_delivery_streams_many_payloads_with_snapshot_flags_on_the_ends():
    payloads = _delivered(_scan(True, collide=False))
    assert len(payloads) > 3
    for payload in payloads:
        validate_payload(payload)
    flags = [(p["topologies"][0]["start_snapshot"], p["topologies"][0]["stop_snapshot"]) for p in payloads]
    assert flags == [(True, False)] + [(False, False)] * (len(payloads) - 2) + [(False, True)]
    assert [bool(p.get("service_checks")) for p in payloads] == [False] * (len(payloads) - 1) + [True]
    sections = [s for p in payloads for s in ("components", "relations") if p["topologies"][0][s]]
    assert sections == sorted(sections)  # every component before any relation
    held = _scan(False, collide=False)
    expected = build_payloads(
        ACCOUNT,
        held.components,
        held.relations,
        snapshot=True,
        max_bytes=2_000,
        events=held.stackstate_events,
    )
    assert [p["topologies"] for p in payloads] == [p["topologies"] for p in expected]


@pytest.mark.parametrize(
    ("status", "collide"), [("complete", True), ("denied", False), ("throttled", False)],
    ids=["collision", "denied", "throttled"],
)  # fmt: skip
def test_incomplete_or_colliding_account_never_closes_the_snapshot(status, collide):
    payloads = _delivered(_scan(True, status=status, collide=collide))
    assert payloads[0]["topologies"][0]["start_snapshot"]
    assert not any(p["topologies"][0]["stop_snapshot"] for p in payloads)
    checks = payloads[-1]["service_checks"]
    assert [c["status"] for c in checks] == [0, 1]


def test_iter_payloads_asks_complete_and_checks_only_after_the_last_element():
    asked: list[str] = []

    def components():
        for i in range(20):
            yield _component(f"c{i}", size=200)
        asked.append("elements done")

    def complete() -> bool:
        asked.append("complete")
        return True

    def checks() -> list[dict]:
        asked.append("checks")
        return [{"check": "aws_topology.can_execute"}]

    payloads = list(
        iter_payloads(ACCOUNT, components(), [], snapshot=True, complete=complete, max_bytes=1_000,
                      service_checks=checks)
    )  # fmt: skip
    assert asked[0] == "elements done"
    assert payloads[-1]["topologies"][0]["stop_snapshot"] and payloads[-1]["service_checks"]
    assert len(payloads) > 1 and not any("service_checks" in p for p in payloads[:-1])
    assert list(iter_payloads(ACCOUNT, [], [], snapshot=False)) == []
    [empty] = iter_payloads(ACCOUNT, [], [], snapshot=True, complete=False)
    assert empty["topologies"][0]["start_snapshot"] and not empty["topologies"][0]["stop_snapshot"]
