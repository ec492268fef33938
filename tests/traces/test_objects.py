"""Trace objects in the log bucket (an OpenTelemetry Collector's S3 exporter), read by the traces phase on a
live moto server: their calls become relations, the objects read are deleted once delivered (never before),
corrupt ones stay and are not read again, and a missing or unversioned bucket never stops the received
calls from applying."""

from __future__ import annotations

import dataclasses
import gzip
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import engine.run as run_module
from engine.core.config import Instance
from engine.core.errors import EXIT_INCOMPLETE, EXIT_OK, DeliveryError
from engine.core.state import State
from engine.language.loader import load_mappings
from engine.run import TRACES, RunSettings, run_cycle
from tests.support import ListSink, live_aws, make_config, moto_server
from tests.traces.spans import ACCOUNT, FUNCTION, otlp, otlp_json
from tests.traces.test_otlp import current_conventions, stackstate_layer

pytestmark = pytest.mark.live

BUCKET = f"stackstate-logs-{ACCOUNT}"
PREFIX = f"AWSLogs/{ACCOUNT}/traces/year=2026/month=12/day=07/hour=03/"
QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:orders"
EXPECTED = [
    (FUNCTION, "uses-service", "arn:aws:s3:::orders"),  # current conventions: aws.s3.bucket
    (FUNCTION, "uses-service", "arn:aws:s3:::orders-archive"),  # StackState's layer: aws.request.bucket
    (FUNCTION, "uses-service", QUEUE),  # both: messaging.url / aws.sqs.queue.url
]
TEN_YEARS = 10 * 365 * 86400  # the recorded spans are of 2025


class FailingSink(ListSink):
    def send(self, payload: dict, name: str) -> None:
        raise DeliveryError(target="receiver", problem="receiver down")


@pytest.fixture
def s3() -> Iterator:
    with moto_server() as endpoint, live_aws(endpoint):
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    with State(tmp_path / "state.sqlite") as opened:
        yield opened.lock()


def put_objects(s3) -> None:
    s3.put_object(
        Bucket=BUCKET, Key=PREFIX + "a.binpb.gz", Body=gzip.compress(otlp(stackstate_layer().spans()))
    )
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "b.json", Body=otlp_json(current_conventions().spans()))
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "c.binpb", Body=b"\xff not protobuf")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "d.txt", Body=b"text")


def keys(s3) -> list[str]:
    return sorted(
        o["Key"].removeprefix(PREFIX) for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    )


def run_traces(
    state: State, sink: ListSink, monkeypatch: pytest.MonkeyPatch, trace_objects: bool = True
) -> tuple[int, list[str]]:
    monkeypatch.setattr(run_module, "_sink", lambda *args: sink)
    instance = Instance(
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/R", regions=("eu-west-1",), trace_objects=trace_objects
    )
    config = dataclasses.replace(make_config(), instances=(instance,), trace_relation_ttl=TEN_YEARS)
    lines: list[str] = []
    code = run_cycle(
        RunSettings(config, load_mappings(), TRACES, out="x"), state, threading.Event(), lines.append
    )
    return code, lines


def test_objects_become_relations_and_are_deleted_once_delivered(s3, state, monkeypatch) -> None:
    put_objects(s3)
    sink = ListSink()
    code, lines = run_traces(state, sink, monkeypatch)
    assert code == EXIT_OK, lines
    assert sorted(sink.relations()) == EXPECTED
    assert lines == [
        f"traces account={ACCOUNT} status=complete calls=3 relations=3 new=3 expired=0 payloads=1 objects=2"
        " corrupt_objects=2 deleted_objects=2 bucket_problem=None error=None"
    ]
    assert keys(s3) == ["c.binpb", "d.txt"]  # the corrupt ones stay for a person to look at
    counts = state.traces_counts()
    # every span of the two objects: 4 of StackState's layer (entry, two calls, an HTTPS child), 3 of the
    # current conventions (entry, two calls); none dropped
    assert counts == {"received": 7, "applied": 7, "pending_rows": 0, "pending_spans": 0, "dropped": {}}
    corrupt = state.get(f"traces.corrupt.{ACCOUNT}")
    assert sorted(corrupt) == [PREFIX + "c.binpb", PREFIX + "d.txt"]
    assert "neither .json nor .binpb" in corrupt[PREFIX + "d.txt"]["problem"]
    sink = ListSink()
    code, lines = run_traces(state, sink, monkeypatch)  # the corrupt ones are not read again while unchanged
    assert (code, sink.payloads) == (EXIT_OK, [])
    assert "objects=0 corrupt_objects=2 deleted_objects=0" in lines[0]


def test_an_undelivered_snapshot_deletes_no_object(s3, state, monkeypatch) -> None:
    put_objects(s3)
    code, lines = run_traces(state, FailingSink(), monkeypatch)
    assert code == EXIT_INCOMPLETE
    assert "deleted_objects=0" in lines[0] and "receiver down" in lines[0]
    assert keys(s3) == ["a.binpb.gz", "b.json", "c.binpb", "d.txt"]
    assert state.trace_relations(ACCOUNT) == {}
    sink = ListSink()
    assert run_traces(state, sink, monkeypatch)[0] == EXIT_OK
    assert sorted(sink.relations()) == EXPECTED
    assert keys(s3) == ["c.binpb", "d.txt"]


def test_without_trace_objects_the_bucket_is_not_read(s3, state, monkeypatch) -> None:
    put_objects(s3)
    code, lines = run_traces(state, ListSink(), monkeypatch, trace_objects=False)
    assert code == EXIT_OK
    assert "objects=" not in lines[0]
    assert keys(s3) == ["a.binpb.gz", "b.json", "c.binpb", "d.txt"]


def test_an_unversioned_or_missing_bucket_leaves_the_received_calls_applying(s3, state, monkeypatch) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    put_objects(s3)
    state.traces_append(
        [{"function": FUNCTION, "name": "S3.PutObject", "kind": 3, "count": 1, "last": time.time_ns(),
          "attributes": {"rpc.service": "S3", "aws.s3.bucket": "received"}}],
        1, {}, 1000,
    )  # fmt: skip
    sink = ListSink()
    code, lines = run_traces(state, sink, monkeypatch)
    assert code == EXIT_OK
    assert sorted(sink.relations()) == [(FUNCTION, "uses-service", "arn:aws:s3:::received")]
    assert f"bucket_problem=bucket {BUCKET} is not versioned (Suspended): enable versioning" in lines[0]
    assert keys(s3) == ["a.binpb.gz", "b.json", "c.binpb", "d.txt"]  # nothing read, nothing deleted
    assert state.traces_pending(10) == []
    for version in s3.list_object_versions(Bucket=BUCKET).get("Versions", []):
        s3.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
    s3.delete_bucket(Bucket=BUCKET)
    code, lines = run_traces(state, ListSink(), monkeypatch)
    assert code == EXIT_OK
    assert "objects=0 corrupt_objects=0 deleted_objects=0 bucket_problem=None" in lines[0]
