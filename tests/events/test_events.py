"""Event deltas end to end against a live moto server: EventBridge objects in a versioned bucket become one
delta payload, and objects are deleted only after it was delivered."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from demo.seed import client
from engine.aws.log_bucket import LogBucket
from engine.cli import main
from engine.events.eventbridge import CorruptObject, Rules, envelopes, latest
from engine.language.loader import load_mappings
from tests.support import ACCOUNT, moto_env

pytestmark = pytest.mark.live

REGION = "eu-west-1"
BUCKET = f"stackstate-logs-{ACCOUNT}"
PREFIX = f"AWSLogs/{ACCOUNT}/EventBridge/{REGION}/"


def cloudtrail(source: str, name: str, **detail: object) -> dict:
    return {
        "detail-type": "AWS API Call via CloudTrail", "source": f"aws.{source.split('.')[0]}",
        "region": REGION, "detail": {"eventSource": source, "eventName": name, "awsRegion": REGION, **detail},
    }  # fmt: skip


def state_change(instance: str, state: str) -> dict:
    return {
        "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "region": REGION,
        "detail": {"instance-id": instance, "state": state},
    }  # fmt: skip


def firehose(*events: dict) -> bytes:
    """As Firehose writes them: JSON objects back to back, gzip."""
    return gzip.compress("".join(json.dumps(e, ensure_ascii=False) for e in events).encode())


@pytest.fixture
def aws(tmp_path) -> Iterator[dict]:
    from demo.server import reset, start

    server, endpoint = start(0)
    reset(endpoint)
    s3, sqs, ec2 = (client(s, REGION, endpoint) for s in ("s3", "sqs", "ec2"))
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    kept = sqs.create_queue(QueueName="kept")["QueueUrl"]
    created = sqs.create_queue(QueueName="created")["QueueUrl"]
    gone = sqs.create_queue(QueueName="gone")["QueueUrl"]
    sqs.delete_queue(QueueUrl=gone)
    image = "ami-04681a1dbd79675a5"
    running, stopped = (
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        for _ in range(2)
    )
    ec2.terminate_instances(InstanceIds=[stopped])  # described as `terminated` for a while: gone
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: ext-id}\n"
        f"instances: [{{role_arn: 'arn:aws:iam::{ACCOUNT}:role/R', regions: [{REGION}], "
        "apis_to_run: [sqs, ec2]}]\n"
    )
    env = moto_env(endpoint)
    yield {
        "s3": s3, "env": env, "conf": conf, "tmp": tmp_path, "created": created, "gone": gone, "kept": kept,
        "running": running, "stopped": stopped,
    }  # fmt: skip
    server.stop()


def put(aws: dict, name: str, body: bytes) -> str:
    key = f"{PREFIX}2026/12/01/12/stackstate-eventbridge-stream-1-2026-12-01-12-{name}"
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)
    return key


def run_events(aws: dict, *extra: str) -> Result:
    """The `events` command (the EventBridge input) against the test estate."""
    args = ["events", "-c", str(aws["conf"]), "--state", str(aws["tmp"] / "s.sqlite"), *extra]
    if "--receiver" not in extra:
        args += ["--out", str(aws["tmp"] / "out")]
    return CliRunner().invoke(main, args, env=aws["env"])


def remaining(aws: dict) -> set[str]:
    return {o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def delta(aws: dict) -> dict:
    [path] = (aws["tmp"] / "out").rglob("events-*.json")
    [topology] = json.loads(path.read_text())["topologies"]
    return topology


def test_events_become_one_delta_and_their_objects_are_deleted_after_delivery(aws):
    queues = f"arn:aws:sqs:{REGION}:{ACCOUNT}"
    first = put(
        aws, "00-a",
        firehose(
            cloudtrail("sqs.amazonaws.com", "CreateQueue", responseElements={"queueUrl": aws["created"]}),
            cloudtrail("sqs.amazonaws.com", "DeleteQueue", requestParameters={"queueUrl": aws["gone"]}),
            state_change(aws["running"], "running"),
        ),
    )  # fmt: skip
    second = put(
        aws, "01-b",
        firehose(
            state_change(aws["stopped"], "terminated"),
            cloudtrail(
                "sqs.amazonaws.com", "SetQueueAttributes", requestParameters={"queueUrl": aws["created"]},
                userIdentity={"userName": "zoë.müller"},  # non-ASCII content
            ),
            cloudtrail("iam.amazonaws.com", "CreateRole", requestParameters={"roleName": "x"}),  # unknown
        ),
    )  # fmt: skip

    result = run_events(aws)

    assert result.exit_code == 0, result.output
    assert "envelopes=6 unknown=1 changes=4" in result.stdout
    topology = delta(aws)
    assert topology["start_snapshot"] is False and topology["stop_snapshot"] is False
    assert {c["externalId"] for c in topology["components"]} == {f"{queues}:created", aws["running"]}
    assert set(topology["delete_ids"]) == {f"{queues}:gone", aws["stopped"]}
    assert remaining(aws) == set()
    assert {first, second}.isdisjoint(remaining(aws))


def test_a_corrupt_object_is_left_in_place_recorded_and_not_read_again(aws):
    bad = put(aws, "00-bad", gzip.compress(b'{"detail-type": "AWS API Call via CloudTrail", "detail": {'))
    good = put(aws, "01-good", firehose(state_change(aws["running"], "running")))

    first = run_events(aws)
    second = run_events(aws)

    assert first.exit_code == 1 and "corrupt_objects=1" in first.stdout, first.output
    assert remaining(aws) == {bad} and good not in remaining(aws)
    [check] = json.loads(next((aws["tmp"] / "out").rglob("events-*.json")).read_text())["service_checks"]
    assert (check["check"], check["status"]) == ("aws_topology.can_update", 1)
    assert check["message"].startswith(f"corrupt object {bad}: bad JSON")
    assert "objects=1 envelopes=0" in second.stdout and "corrupt_objects=1" in second.stdout


def test_an_unversioned_bucket_is_refused_and_nothing_is_read_or_deleted(aws):
    aws["s3"].put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    key = put(aws, "00-a", firehose(state_change(aws["running"], "running")))

    result = run_events(aws)

    assert result.exit_code == 2
    assert f"bucket {BUCKET} is not versioned (Suspended): enable versioning" in result.stdout
    assert remaining(aws) == {key}


def test_a_receiver_that_is_down_spools_the_delta_durably_before_objects_go(aws):
    key = put(aws, "00-a", firehose(state_change(aws["running"], "running")))

    result = run_events(aws, "--receiver", "http://127.0.0.1:9")

    assert result.exit_code == 1 and "spooled=1" in result.stdout, result.output
    assert remaining(aws) == set()  # the delta is in the spool: the object's content is not lost
    listed = CliRunner().invoke(main, ["spool", "list", "--state", str(aws["tmp"] / "s.sqlite")])
    assert f"events-{ACCOUNT}-0001" in listed.stdout and key not in listed.stdout


def test_run_does_a_full_scan_first_then_only_deltas_until_the_interval_passed(aws):
    args = [
        "run",
        "-c",
        str(aws["conf"]),
        "--state",
        str(aws["tmp"] / "s.sqlite"),
        "--out",
        str(aws["tmp"] / "o"),
    ]
    first = CliRunner().invoke(main, args, env=aws["env"])
    second = CliRunner().invoke(main, args, env=aws["env"])

    assert first.exit_code == 0 and "scan account=" in first.stdout and "events account=" in first.stdout
    assert (
        second.exit_code == 0 and "scan account=" not in second.stdout and "events account=" in second.stdout
    )


def test_the_last_change_per_resource_wins_and_non_ascii_content_is_read():
    rules = Rules(load_mappings())
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/q"
    body = firehose(
        cloudtrail(
            "sqs.amazonaws.com", "CreateQueue", responseElements={"queueUrl": url}, userAgent="ünïcødé"
        ),
        cloudtrail("sqs.amazonaws.com", "DeleteQueue", requestParameters={"queueUrl": url}),
    )
    changes = latest([c for e in envelopes(body) for c in rules.changes(e, ACCOUNT, (REGION,))])

    assert [(c.resource.key, c.id, c.delete, c.delete_id) for c in changes] == [
        ("sqs.queue", url, True, f"arn:aws:sqs:{REGION}:{ACCOUNT}:q")
    ]


def test_the_latest_event_wins_whatever_order_it_was_read_in():
    rules = Rules(load_mappings())
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/q"
    create = cloudtrail("sqs.amazonaws.com", "CreateQueue", responseElements={"queueUrl": url})
    delete = cloudtrail("sqs.amazonaws.com", "DeleteQueue", requestParameters={"queueUrl": url})
    read = [{**create, "time": "2026-12-01T12:05:00Z"}, {**delete, "time": "2026-12-01T12:00:00Z"}]

    [change] = latest([c for e in read for c in rules.changes(e, ACCOUNT, (REGION,))])

    assert not change.delete  # the queue was deleted, then created again


def test_gzip_members_are_read_in_turn_and_a_truncated_one_is_corrupt():
    one, two = state_change("i-1", "running"), state_change("i-2", "stopped")
    body = firehose(one) + firehose(two)
    assert envelopes(body) == [one, two]
    with pytest.raises(CorruptObject, match="truncated"):
        envelopes(body[:-5])
    with pytest.raises(CorruptObject, match="inflates to more than 100 bytes"):
        envelopes(gzip.compress(b" " * 1000), limit=100)


def test_plain_text_objects_are_read_like_gzip_ones():
    event = state_change("i-1", "running")
    assert envelopes(json.dumps(event).encode() * 2) == [event, event]


# --- CloudTrail fallback (moto has no LookupEvents: botocore's Stubber) ------------------------------


def _stubbed_account(monkeypatch):
    import boto3

    from engine.aws.sessions import Account, client_config
    from engine.events import delta

    session = boto3.Session(aws_access_key_id="stub", aws_secret_access_key="stub", region_name=REGION)
    account = Account(
        id=ACCOUNT, role_arn="arn:aws:iam::123456789012:role/R", session=session, config=client_config(1)
    )
    monkeypatch.setattr(delta, "assume", lambda *args, **kwargs: account)
    return account


def _fallback(monkeypatch, sink, *extra: dict):
    import datetime as dt

    from botocore.stub import Stubber

    from engine.aws.fetch import Fetcher
    from engine.core.config import Config, Instance
    from engine.core.state import State
    from engine.events.delta import apply_events

    account = _stubbed_account(monkeypatch)
    queue = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/gone"
    event = cloudtrail("sqs.amazonaws.com", "DeleteQueue", requestParameters={"queueUrl": queue})["detail"]
    event.update(eventID="e-1", eventTime="2026-12-01T12:00:00Z")
    state = State(":memory:")
    instance = Instance(role_arn=f"arn:aws:iam::{ACCOUNT}:role/R", regions=(REGION,))
    with (
        Stubber(account.client("s3", "us-east-1")) as s3,
        Stubber(account.client("cloudtrail", REGION)) as trail,
        Stubber(account.client("sqs", REGION)) as sqs,
    ):
        s3.add_client_error("get_bucket_versioning", "NoSuchBucket", http_status_code=404)
        sqs.add_client_error("get_queue_attributes", "QueueDoesNotExist", http_status_code=400)  # confirmed
        when = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
        raw = [json.dumps({**d, "eventID": f"e-{n}"}) for n, d in enumerate([*extra, event], 1)]
        found = [{"EventId": f"e-{n}", "EventTime": when, "CloudTrailEvent": r} for n, r in enumerate(raw, 1)]
        trail.add_response("lookup_events", {"Events": found[::-1]})  # newest first
        result = apply_events(
            Config(external_id="x1", instances=(instance,)), instance, load_mappings(), sink, state, Fetcher()
        )
    return result, state


def test_without_the_bucket_cloudtrail_events_apply_and_the_cursor_moves_after_delivery(monkeypatch):
    from tests.support import ListSink

    sink = ListSink()
    result, state = _fallback(monkeypatch, sink)

    assert result.source.startswith(f"cloudtrail (bucket {BUCKET}: NoSuchBucket")
    assert result.complete, result.error
    [topology] = sink.topologies()
    assert topology["delete_ids"] == [f"arn:aws:sqs:{REGION}:{ACCOUNT}:gone"]
    assert state.get(f"cloudtrail.cursor.{ACCOUNT}.{REGION}") is not None


def test_a_cloudtrail_event_the_rules_fail_on_is_skipped_and_the_others_apply(monkeypatch):
    from tests.support import ListSink

    sink = ListSink()
    tag = cloudtrail("states.amazonaws.com", "TagResource", requestParameters={"resourceArn": 5})["detail"]
    result, state = _fallback(monkeypatch, sink, tag)  # contains() of a number: JMESPathTypeError

    assert result.error is None and result.bad_events == 1 and result.counts()["bad_events"] == 1
    assert sink.topologies()[0]["delete_ids"] == [f"arn:aws:sqs:{REGION}:{ACCOUNT}:gone"]
    assert state.get(f"cloudtrail.cursor.{ACCOUNT}.{REGION}") is not None


def test_a_cloudtrail_delta_that_is_not_delivered_leaves_the_cursor(monkeypatch):
    from engine.core.errors import DeliveryError

    class Down:
        def send(self, payload: dict, name: str) -> None:
            raise DeliveryError(target="x", problem="down")

    result, state = _fallback(monkeypatch, Down())

    assert not result.complete and "delta not delivered" in (result.error or "")
    assert state.get(f"cloudtrail.cursor.{ACCOUNT}.{REGION}") is None


def test_a_crash_between_delivery_and_delete_is_redone_idempotently(aws, monkeypatch):
    key = put(aws, "00-a", firehose(state_change(aws["running"], "running")))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the delta left, before the delete

    with monkeypatch.context() as patch:
        patch.setattr(LogBucket, "delete", crash)
        died = CliRunner().invoke(
            main, ["events", "-c", str(aws["conf"]), "--state", str(aws["tmp"] / "s.sqlite"),
                   "--out", str(aws["tmp"] / "first")], env=aws["env"],
        )  # fmt: skip
    assert died.exit_code != 0 and remaining(aws) == {key}
    again = run_events(aws)

    assert again.exit_code == 0 and remaining(aws) == set()
    first = json.loads(next((aws["tmp"] / "first").rglob("events-*.json")).read_text())["topologies"][0]
    second = delta(aws)
    assert [c["externalId"] for c in first["components"]] == [c["externalId"] for c in second["components"]]
