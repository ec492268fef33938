"""Event deltas never delete a live component, lose an event or stall (issue 15), against a live moto server:
failed calls and other accounts' envelopes change nothing, deletes are confirmed, a kept object keeps the
newer ones, the stale rule needs a delivered scan and a margin, a bad object is isolated."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from demo.seed import client
from engine.aws.fetch import Fetcher
from engine.aws.log_bucket import LogBucket
from engine.core.config import load_config
from engine.core.errors import AccessDenied, DeliveryError, Throttled
from engine.core.state import State
from engine.events import delta as delta_module
from engine.events.delta import CONFIRM_TRIES, UNCONFIRMED_KEY, apply_events
from engine.language.loader import load_mappings
from engine.scan.collect import Collector, UnitResult
from tests.events.test_events import (
    BUCKET,
    REGION,
    aws,
    cloudtrail,
    delta,
    firehose,
    put,
    remaining,
    run_events,
)
from tests.support import ACCOUNT, ListSink, live_aws

__all__ = ["aws"]  # the fixture, imported for pytest

pytestmark = pytest.mark.live

QUEUES = f"arn:aws:sqs:{REGION}:{ACCOUNT}"


def at(envelope: dict, moment: str) -> dict:
    return {**envelope, "time": moment}


def delete_queue(url: str, **extra: object) -> dict:
    return cloudtrail("sqs.amazonaws.com", "DeleteQueue", requestParameters={"queueUrl": url}, **extra)


def create_queue(url: str) -> dict:
    return cloudtrail("sqs.amazonaws.com", "CreateQueue", responseElements={"queueUrl": url})


def run_in_process(aws: dict, sink: object, state: State) -> delta_module.AccountDelta:
    config = load_config(aws["conf"])
    with live_aws(aws["env"]["AWS_ENDPOINT_URL"]):
        return apply_events(config, config.instances[0], load_mappings(), sink, state, Fetcher())  # type: ignore[arg-type]


def last_delta(aws: dict) -> dict:
    """The topology of the newest events payload written."""
    newest = max((aws["tmp"] / "out").rglob("events-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(newest.read_text())["topologies"][0]


def unconfirmed(aws: dict) -> list[dict]:
    with State(aws["tmp"] / "s.sqlite") as state:
        return state.get(UNCONFIRMED_KEY.format(account=ACCOUNT), [])


# --- point 1 and the envelope's account ---------------------------------------------------------


def test_a_refused_delete_changes_nothing_and_is_counted(aws):
    put(aws, "00-a", firehose(delete_queue(aws["kept"], errorCode="AWS.SimpleQueueService.NonEmptyQueue")))

    result = run_events(aws)

    assert result.exit_code == 0, result.output
    assert "changes=0" in result.stdout and "failed_calls=1" in result.stdout
    assert delta(aws)["delete_ids"] == [] and remaining(aws) == set()


def test_an_envelope_of_another_account_changes_nothing_here(aws):
    foreign = {**delete_queue(aws["gone"]), "account": "999999999999"}
    put(aws, "00-a", firehose(foreign))

    result = run_events(aws)

    assert "changes=0" in result.stdout and "foreign=1" in result.stdout, result.output
    assert delta(aws)["delete_ids"] == []


# --- point 3: a delete is confirmed by the mapping's get ------------------------------------------


def test_a_delete_of_a_queue_that_still_exists_is_refreshed_and_retried_a_bounded_number_of_runs(aws):
    put(aws, "00-a", firehose(delete_queue(aws["kept"])))  # nobody deleted it: a forged or refused delete

    first = run_events(aws)

    assert first.exit_code == 0 and "unconfirmed_deletes=1" in first.stdout, first.output
    topology = delta(aws)
    assert topology["delete_ids"] == [] and [c["externalId"] for c in topology["components"]] == [
        f"{QUEUES}:kept"
    ]
    assert [e["tries"] for e in unconfirmed(aws)] == [1]
    for _ in range(CONFIRM_TRIES - 1):  # asked again each run, with no object left
        assert "unconfirmed_deletes=1" in run_events(aws).stdout
    assert unconfirmed(aws) == []  # given up: the next full scan settles it


def test_a_delete_aws_confirms_on_a_later_run_is_sent_then(aws):
    put(aws, "00-a", firehose(delete_queue(aws["kept"])))
    run_events(aws)  # not gone yet (eventual consistency)
    client("sqs", REGION, aws["env"]["AWS_ENDPOINT_URL"]).delete_queue(QueueUrl=aws["kept"])

    second = run_events(aws)

    assert "unconfirmed_deletes" not in second.stdout, second.output
    assert last_delta(aws)["delete_ids"] == [f"{QUEUES}:kept"] and unconfirmed(aws) == []


# --- point 2: a kept object is never replayed after newer ones --------------------------------------


def test_an_object_kept_for_a_failed_refresh_keeps_every_newer_one(aws, monkeypatch):
    older = put(aws, "00-a", firehose(
        at(delete_queue(aws["kept"]), "2026-12-01T12:00:00Z"),
        at(cloudtrail("ec2.amazonaws.com", "StartInstances",
                      responseElements={"instancesSet": {"items": [{"instanceId": aws["running"]}]}}),
           "2026-12-01T12:00:01Z"),
    ))  # fmt: skip
    newer = put(aws, "01-b", firehose(at(create_queue(aws["kept"]), "2026-12-01T12:05:00Z")))
    run = Collector.run

    def ec2_fails(self: Collector, unit) -> list[UnitResult]:
        if unit.resource.service == "ec2":
            return [UnitResult(unit, "failed", "DescribeInstances failed")]
        return run(self, unit)

    with monkeypatch.context() as patch:
        patch.setattr(Collector, "run", ec2_fails)
        first = run_events(aws)

    assert first.exit_code == 1 and "kept_objects=2" in first.stdout, first.output
    assert remaining(aws) == {older, newer}
    again = run_events(aws)  # both read together: the newer CreateQueue wins

    assert again.exit_code == 0, again.output
    assert remaining(aws) == set()
    sent = last_delta(aws)
    assert sent["delete_ids"] == [] and f"{QUEUES}:kept" in {c["externalId"] for c in sent["components"]}


# --- point 5: the stale rule ------------------------------------------------------------------------


def record_scan(aws: dict, started: datetime, delivered: bool) -> None:
    with State(aws["tmp"] / "s.sqlite") as state:
        state.record_run(
            ACCOUNT, "scan", started, started + timedelta(seconds=5), True, {"delivered": delivered}
        )


def listed_time(aws: dict, key: str) -> datetime:
    return aws["s3"].head_object(Bucket=BUCKET, Key=key)["LastModified"].astimezone(UTC)


def test_an_object_written_in_the_second_the_scan_started_is_read(aws):
    key = put(aws, "00-a", firehose(delete_queue(aws["gone"])))
    record_scan(aws, listed_time(aws, key) + timedelta(milliseconds=900), delivered=True)

    result = run_events(aws)

    assert "stale_objects=0" in result.stdout, result.output
    assert delta(aws)["delete_ids"] == [f"{QUEUES}:gone"]


def test_objects_before_a_scan_that_was_not_delivered_are_read(aws):
    key = put(aws, "00-a", firehose(delete_queue(aws["gone"])))
    record_scan(aws, listed_time(aws, key) + timedelta(hours=1), delivered=False)

    result = run_events(aws)

    assert "stale_objects=0" in result.stdout, result.output
    assert delta(aws)["delete_ids"] == [f"{QUEUES}:gone"]


def test_objects_well_before_a_delivered_scan_are_dropped_unread_but_a_corrupt_one_stays(aws):
    bad = put(aws, "00-bad", gzip.compress(b"{"))
    run_events(aws)  # recorded as corrupt
    good = put(aws, "01-good", firehose(delete_queue(aws["gone"])))
    record_scan(aws, listed_time(aws, good) + timedelta(hours=1), delivered=True)

    result = run_events(aws)

    assert "stale_objects=1" in result.stdout and "corrupt_objects=1" in result.stdout, result.output
    assert remaining(aws) == {bad}


# --- points 7, 9, 10, 12: one bad object is isolated ----------------------------------------------


def test_deeply_nested_json_is_a_corrupt_object_and_the_others_apply(aws):
    bad = put(aws, "00-bad", gzip.compress(b'{"detail": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"))
    put(aws, "01-good", firehose(delete_queue(aws["gone"])))

    result = run_events(aws)

    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1 and "corrupt_objects=1" in result.stdout, result.output
    assert remaining(aws) == {bad} and delta(aws)["delete_ids"] == [f"{QUEUES}:gone"]


def test_an_envelope_field_of_an_unexpected_type_is_a_corrupt_object(aws):
    tag = cloudtrail("states.amazonaws.com", "TagResource", requestParameters={"resourceArn": 5})
    bad = put(aws, "00-bad", firehose(tag))  # contains() of a number: JMESPathTypeError
    put(aws, "01-good", firehose(delete_queue(aws["gone"])))

    result = run_events(aws)

    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "corrupt_objects=1" in result.stdout, result.output
    assert remaining(aws) == {bad} and delta(aws)["delete_ids"] == [f"{QUEUES}:gone"]


def test_an_object_that_cannot_be_read_is_recorded_and_the_others_apply(aws, monkeypatch):
    bad = put(aws, "00-kms", firehose(delete_queue(aws["kept"])))
    put(aws, "01-good", firehose(delete_queue(aws["gone"])))
    opened = LogBucket.open

    def kms_denied(self: LogBucket, obj: dict):
        if obj["Key"] == bad:
            raise AccessDenied(role_arn="r", action="kms:Decrypt", account=ACCOUNT, region=REGION,
                               code="AccessDenied", operation="GetObject", problem="KMS")  # fmt: skip
        return opened(self, obj)

    monkeypatch.setattr(LogBucket, "open", kms_denied)
    with State(aws["tmp"] / "s.sqlite") as state:
        first = run_in_process(aws, ListSink(), state)
        calls = []
        monkeypatch.setattr(
            LogBucket, "open", lambda self, obj: calls.append(obj["Key"]) or opened(self, obj)
        )
        second = run_in_process(aws, ListSink(), state)

    assert list(first.corrupt) == [bad] and "kms:Decrypt" in first.corrupt[bad]
    assert first.deleted and bad not in first.deleted and remaining(aws) == {bad}
    assert calls == [] and list(second.corrupt) == [bad]  # not read again while unchanged...


def test_an_object_that_could_not_be_read_is_read_again_an_hour_later(aws):
    key = put(aws, "00-a", firehose(delete_queue(aws["gone"])))
    etag = aws["s3"].head_object(Bucket=BUCKET, Key=key)["ETag"]
    problem = {"etag": etag, "problem": "role r needs kms:Decrypt", "at": 0.0}
    with State(aws["tmp"] / "s.sqlite") as state:
        state.set(f"events.corrupt.{ACCOUNT}", {key: {**problem, "retry_at": time.time() + 60}})
        waiting = run_in_process(aws, ListSink(), state)
        state.set(f"events.corrupt.{ACCOUNT}", {key: {**problem, "retry_at": time.time() - 1}})
        due = run_in_process(aws, ListSink(), state)

    assert list(waiting.corrupt) == [key] and waiting.deleted == []
    assert due.corrupt == {} and due.deleted == [key] and remaining(aws) == set()


def test_an_object_read_throttled_is_kept_with_every_newer_one(aws, monkeypatch):
    older = put(aws, "00-a", firehose(delete_queue(aws["gone"])))
    newer = put(aws, "01-b", firehose(create_queue(aws["created"])))
    opened = LogBucket.open

    def throttled(self: LogBucket, obj: dict):
        if obj["Key"] == older:
            raise Throttled(operation="GetObject", account=ACCOUNT, region=REGION, code="SlowDown")
        return opened(self, obj)

    monkeypatch.setattr(LogBucket, "open", throttled)
    with State(aws["tmp"] / "s.sqlite") as state:
        result = run_in_process(aws, ListSink(), state)

    assert result.kept == [older, newer] and result.corrupt == {} and not result.complete
    assert remaining(aws) == {older, newer}


def test_a_decompression_bomb_is_refused_as_corrupt(aws, monkeypatch):
    monkeypatch.setattr("engine.events.eventbridge.MAX_TEXT", 100_000)
    bomb = put(aws, "00-bomb", gzip.compress(b" " * 1_000_000))
    with State(aws["tmp"] / "s.sqlite") as state:
        result = run_in_process(aws, ListSink(), state)
    assert "inflates to more than 100000 bytes" in result.corrupt[bomb] and remaining(aws) == {bomb}


def test_an_object_over_the_read_bound_is_refused_as_corrupt(aws, monkeypatch):
    monkeypatch.setattr(delta_module, "MAX_OBJECT", 10)
    big = put(aws, "00-big", firehose(delete_queue(aws["gone"])))
    with State(aws["tmp"] / "s.sqlite") as state:
        result = run_in_process(aws, ListSink(), state)
    assert result.corrupt == {big: "larger than 10 bytes"} and remaining(aws) == {big}


def test_a_newer_version_written_after_the_read_survives_the_delete(aws, monkeypatch):
    key = put(aws, "00-a", firehose(delete_queue(aws["gone"])))
    read = LogBucket.read

    def read_then_rewrite(self: LogBucket, obj: dict, limit: int | None = None) -> bytes:
        body = read(self, obj, limit)
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=firehose(create_queue(aws["created"])))
        return body

    monkeypatch.setattr(LogBucket, "read", read_then_rewrite)
    with State(aws["tmp"] / "s.sqlite") as state:
        result = run_in_process(aws, ListSink(), state)

    assert result.deleted == [key] and remaining(aws) == {key}
    body = aws["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert gzip.decompress(body) == gzip.decompress(firehose(create_queue(aws["created"])))


def test_a_delta_that_is_not_delivered_deletes_no_object(aws):
    key = put(aws, "00-a", firehose(delete_queue(aws["gone"])))

    class Down:
        def send(self, payload: dict, name: str) -> None:
            raise DeliveryError(target="x", problem="down")

    with State(aws["tmp"] / "s.sqlite") as state:
        result = run_in_process(aws, Down(), state)

    assert "delta not delivered" in (result.error or "") and result.kept == [key]
    assert remaining(aws) == {key}
