"""The traces phase: received calls become each account's trace relations, sent in their own instance when
the set changes, kept for their TTL, and the calls are deleted only once every account's were delivered."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import engine.run as run_module
from engine.cli import main
from engine.core.config import Instance
from engine.core.errors import EXIT_INCOMPLETE, EXIT_OK, DeliveryError
from engine.core.state import State
from engine.delivery.payload import validate_payload
from engine.language.loader import load_mappings
from engine.run import TRACES, RunSettings, run_cycle
from engine.traces.apply import apply_traces, read_pending
from tests.support import ACCOUNT, ROLE, ListSink, make_config

OTHER = "210987654321"
CALLER = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:orders"
QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:jobs"
BUCKET = "arn:aws:s3:::invoices"
MAPPINGS = load_mappings()


def sqs_call(caller: str = CALLER, at: float | None = None, count: int = 2) -> dict:
    return {
        "function": caller, "name": "SQS.SendMessage", "kind": 3, "count": count,
        "attributes": {"rpc.service": "SQS", "aws.sqs.queue.url": f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/jobs"},
        "last": int((time.time() if at is None else at) * 1e9),
    }  # fmt: skip


def s3_call(caller: str = CALLER, at: float | None = None) -> dict:
    return {
        "function": caller, "name": "S3.PutObject", "kind": 3, "count": 1,
        "attributes": {"rpc.service": "S3", "aws.s3.bucket": "invoices"},
        "last": int((time.time() if at is None else at) * 1e9),
    }  # fmt: skip


class FailingSink(ListSink):
    def send(self, payload: dict, name: str) -> None:
        raise DeliveryError(target="receiver", problem="receiver down")


@pytest.fixture
def state(tmp_path: Path) -> State:
    with State(tmp_path / "state.sqlite") as opened:
        yield opened.lock()


def receive(state: State, *calls: dict) -> None:
    assert state.traces_append(list(calls), sum(c["count"] for c in calls), {}, 1_000_000)


@pytest.fixture(autouse=True)
def sink_of_the_run(monkeypatch: pytest.MonkeyPatch) -> list[ListSink]:
    """The run's sink is the one `run_traces` was given."""
    given: list[ListSink] = []
    monkeypatch.setattr(run_module, "_sink", lambda *args: given[-1])
    return given


@pytest.fixture
def run_traces(sink_of_the_run: list[ListSink]):
    def run(state: State, sink: ListSink, *accounts: str, ttl: int = 3600) -> tuple[int, list[str]]:
        """The traces phase of `run` for `accounts` (default: ACCOUNT); its exit code and lines."""
        instances = tuple(
            Instance(role_arn=f"arn:aws:iam::{a}:role/StackStateAwsIntegrationRole", regions=("eu-west-1",))
            for a in accounts or (ACCOUNT,)
        )
        config = dataclasses.replace(make_config(), instances=instances, trace_relation_ttl=ttl)
        sink_of_the_run.append(sink)
        lines: list[str] = []
        code = run_cycle(
            RunSettings(config, MAPPINGS, TRACES, out="unused"), state, threading.Event(), lines.append
        )
        return code, lines

    return run


def relations(sink: ListSink) -> list[tuple[str, str, str]]:
    return sorted(
        (r["sourceId"], r["type"]["name"], r["targetId"]) for t in sink.topologies() for r in t["relations"]
    )


def test_calls_become_one_snapshot_of_the_accounts_trace_instance(state: State, run_traces) -> None:
    receive(state, sqs_call(), s3_call(), sqs_call())
    sink = ListSink()
    code, lines = run_traces(state, sink)
    assert code == EXIT_OK
    assert lines == [
        f"traces account={ACCOUNT} status=complete calls=2 relations=2 new=2 expired=0 payloads=1 error=None"
    ]
    assert [name for name, _ in sink.payloads] == [f"traces-{ACCOUNT}-0001"]
    payload = sink.payloads[0][1]
    validate_payload(payload)
    (topology,) = payload["topologies"]
    assert topology["instance"] == {"type": "aws-v2", "url": f"{ACCOUNT}/traces"}
    assert (topology["start_snapshot"], topology["stop_snapshot"], topology["components"]) == (True, True, [])
    assert relations(sink) == [(CALLER, "uses-service", BUCKET), (CALLER, "uses-service", QUEUE)]
    assert {r["data"]["Source"] for r in topology["relations"]} == {"OpenTelemetry traces"}
    assert state.traces_pending(10) == []  # consumed
    assert state.get("traces.applied") == 5


def test_the_same_relations_again_send_nothing(state: State, run_traces) -> None:
    receive(state, sqs_call())
    run_traces(state, ListSink())
    receive(state, sqs_call())
    sink = ListSink()
    code, lines = run_traces(state, sink)
    assert (code, sink.payloads) == (EXIT_OK, [])
    assert "relations=1 new=0 expired=0 payloads=0" in lines[0]
    assert list(state.trace_relations(ACCOUNT)) == [(CALLER, QUEUE, "uses-service")]


def test_a_relation_not_seen_for_the_ttl_is_left_out_which_deletes_it(state: State, run_traces) -> None:
    receive(state, sqs_call(at=time.time() - 3000), s3_call())
    run_traces(state, ListSink(), ttl=3600)
    first, last = state.trace_relations(ACCOUNT)[(CALLER, QUEUE, "uses-service")]
    assert first == last == pytest.approx(time.time() - 3000, rel=0, abs=5)
    sink = ListSink()
    code, lines = run_traces(state, sink, ttl=600)  # now the queue's call is too old
    assert code == EXIT_OK
    assert "relations=1 new=0 expired=1 payloads=1" in lines[0]
    assert relations(sink) == [(CALLER, "uses-service", BUCKET)]
    assert sink.topologies()[0]["stop_snapshot"] is True
    sink = ListSink()
    run_traces(state, sink, ttl=60 * 60 * 24 * 365)
    assert sink.payloads == []  # expired for good: it is not back, and nothing changed
    assert list(state.trace_relations(ACCOUNT)) == [(CALLER, BUCKET, "uses-service")]


def test_when_every_relation_expired_an_empty_snapshot_deletes_them(state: State, run_traces) -> None:
    receive(state, sqs_call(at=time.time() - 700))
    run_traces(state, ListSink(), ttl=3600)
    sink = ListSink()
    run_traces(state, sink, ttl=600)
    (topology,) = sink.topologies()
    assert (topology["start_snapshot"], topology["stop_snapshot"], topology["relations"]) == (True, True, [])
    assert state.trace_relations(ACCOUNT) == {}


def test_an_undelivered_snapshot_keeps_the_calls_and_applies_nothing(state: State, run_traces) -> None:
    receive(state, sqs_call())
    code, lines = run_traces(state, FailingSink())
    assert code == EXIT_INCOMPLETE
    assert "status=INCOMPLETE" in lines[0] and "receiver down" in lines[0]
    assert state.trace_relations(ACCOUNT) == {}
    assert len(state.traces_pending(10)) == 1
    assert state.get("traces.applied") is None
    sink = ListSink()
    assert run_traces(state, sink)[0] == EXIT_OK
    assert relations(sink) == [(CALLER, "uses-service", QUEUE)]
    assert state.traces_pending(10) == []


def test_one_accounts_failure_keeps_the_calls_and_the_other_is_not_sent_twice(
    state: State, run_traces
) -> None:
    other_caller = f"arn:aws:lambda:eu-west-1:{OTHER}:function:pay"

    class FailsForOther(ListSink):
        def send(self, payload: dict, name: str) -> None:
            if OTHER in name:
                raise DeliveryError(target="receiver", problem="receiver down")
            super().send(payload, name)

    receive(state, sqs_call(), s3_call(caller=other_caller))
    sink = FailsForOther()
    assert run_traces(state, sink, ACCOUNT, OTHER)[0] == EXIT_INCOMPLETE
    assert relations(sink) == [(CALLER, "uses-service", QUEUE)]
    assert len(state.traces_pending(10)) == 1  # kept: the other account's relations were not delivered
    sink = ListSink()
    assert run_traces(state, sink, ACCOUNT, OTHER)[0] == EXIT_OK
    assert relations(sink) == [(other_caller, "uses-service", BUCKET)]  # the first account's again: no change
    assert state.traces_pending(10) == []


def test_calls_that_name_nothing_known_are_counted_not_kept(state: State, run_traces) -> None:
    stranger = "arn:aws:lambda:eu-west-1:999999999999:function:x"
    unknown = {**s3_call(), "name": "EC2.DescribeInstances", "attributes": {"rpc.service": "EC2"}, "count": 4}
    receive(
        state,
        unknown,
        s3_call(caller=stranger),
        {**s3_call(), "function": "arn:aws:iam::1:role/r"},
        sqs_call(),
    )
    run_traces(state, ListSink())
    dropped = {"names_nothing_known": 4, "unknown_account": 1, "not_a_function": 1}
    assert state.get("traces.dropped") == dropped
    assert state.get("traces.applied") == 2
    assert list(state.trace_relations(ACCOUNT)) == [(CALLER, QUEUE, "uses-service")]


def test_a_call_time_in_the_future_counts_as_now(state: State, run_traces) -> None:
    receive(state, sqs_call(at=time.time() + 10 * 86400))
    run_traces(state, ListSink())
    _, last = state.trace_relations(ACCOUNT)[(CALLER, QUEUE, "uses-service")]
    assert last == pytest.approx(time.time(), rel=0, abs=5)


def test_an_older_call_never_moves_a_relation_back_in_time(state: State, run_traces) -> None:
    now = time.time()
    receive(state, sqs_call(at=now - 100), sqs_call(at=now - 10), sqs_call(at=now - 200))
    run_traces(state, ListSink())
    key = (CALLER, QUEUE, "uses-service")
    assert state.trace_relations(ACCOUNT)[key] == pytest.approx((now - 10, now - 10), rel=0, abs=1)
    receive(state, sqs_call(at=now - 500))  # a late export of an earlier call
    run_traces(state, ListSink())
    assert state.trace_relations(ACCOUNT)[key] == pytest.approx((now - 500, now - 10), rel=0, abs=1)
    receive(state, sqs_call(at=now))
    run_traces(state, ListSink())
    assert state.trace_relations(ACCOUNT)[key] == pytest.approx((now - 500, now), rel=0, abs=1)


def test_status_shows_the_traces_run_and_the_span_counters(state: State, run_traces) -> None:
    unknown = {**s3_call(), "name": "EC2.DescribeInstances", "attributes": {"rpc.service": "EC2"}, "count": 4}
    assert state.traces_append([sqs_call(), unknown], 9, {"no_function": 3}, 1_000_000)
    receive(state, s3_call())  # 1 span, waiting for the next run
    pending = read_pending(state, MAPPINGS, {ACCOUNT}, max_rows=1)
    result = apply_traces(Instance(role_arn=ROLE, regions=("eu-west-1",)), pending, ListSink(), state,
                          ttl=3600, max_bytes=1_000_000)  # fmt: skip
    state.record_run(ACCOUNT, "traces", result.started_at, result.started_at + 1, True, result.summary())
    pending.consume(state)
    status = CliRunner().invoke(main, ["status", "--state", str(state.path)])
    assert status.exception is None, status.output
    lines = status.output.splitlines()
    assert lines[0] == f"account {ACCOUNT}:"
    (traces,) = [line for line in lines if line.startswith("  traces")]
    assert traces == "  traces   complete   0s ago, took 1.0s; calls=1 expired=0 new=1 payloads=1 relations=1"
    assert lines[-1] == (
        "traces: received=10 applied=2 pending=1 dropped=7"
        " dropped.names_nothing_known=4 dropped.no_function=3 (spans)"
    )
