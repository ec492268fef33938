"""Event deltas in-process (`engine.events.delta`): exact counts, summaries, what is kept, retired, deleted.

No moto server: the one fake is `FakeAws`, a `Fetcher` (the engine's only door to AWS) over an in-memory
versioned bucket and DynamoDB tables. Everything behind it is real: `LogBucket`, `Collector`, `State`,
`Rules`, the shipped mappings, the payload builder. The live runs are in test_events.py,
test_delta_safety.py and test_delta_faults.py.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from engine.aws.log_bucket import LogBucket
from engine.aws.sessions import Account, client_config
from engine.core.errors import (
    AccessDenied,
    CallFailed,
    CredentialsError,
    DeliveryError,
    Interrupted,
    Throttled,
    Unreachable,
)
from engine.core.phase import Limits
from engine.core.stackpack import check_tags
from engine.core.state import State
from engine.events import delta as delta_module
from engine.events.cloudtrail import Cursor, Lookup
from engine.events.delta import (
    CONFIRM_TRIES,
    MAX_OBJECT,
    STALE_MARGIN,
    UNCONFIRMED_KEY,
    UNREADABLE_RETRY,
    AccountDelta,
    Source,
    _changes,
    _confirm,
    _crash,
    _failed,
    _from_bucket,
    _retry_key,
    _save_unconfirmed,
    _unconfirmed,
    apply_events,
    problem,
    split_stale,
)
from engine.events.eventbridge import Change, Rules
from engine.language.loader import CLOUDTRAIL, Mappings, load_mappings
from engine.scan.collect import Collector, UnitResult
from engine.scan.plan import Unit
from tests.support import ACCOUNT, ROLE, ListSink, make_config

REGION = "eu-west-1"
BUCKET = f"stackstate-logs-{ACCOUNT}"
PREFIX = f"AWSLogs/{ACCOUNT}/EventBridge/{REGION}/"
TABLES = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


# --- the fake and the fixtures -----------------------------------------------------------------------------


class FakeAws:
    """The `Fetcher` contract, `call(account, region, service, call, params) -> dict` or a typed error (the
    responses without ResponseMetadata, pages merged), over one versioned bucket, DynamoDB tables and EC2
    instances.

    S3 answers as S3 does: `Contents` only when something is listed, sorted by key; GetObject gives a
    stream and the version read; DeleteObjects removes the version named (a delete marker without one) and
    reports `Deleted` and `Errors`. DescribeTable of a missing table fails with ResourceNotFoundException;
    DescribeInstances leaves out the ids it does not know.
    `errors` maps an operation, or (operation, key or table name), to the error it raises."""

    def __init__(self) -> None:
        self.versioning: str | None = "Enabled"
        self.objects: dict[str, dict] = {}
        self.tables: set[str] = set()
        self.streams: set[str] = set()  # tables with a stream
        self.instances: dict[str, str] = {}  # EC2 instance id -> its state
        self.errors: dict[Any, Exception] = {}
        self.undeletable: dict[str, str] = {}  # key -> the S3 error code DeleteObjects gives it
        self.calls: list[tuple[str, str, str, dict]] = []  # (region, service, operation, params)
        self.removed: list[dict] = []  # the DeleteObjects entries, in order
        self._version = 0

    def put(self, name: str, body: bytes, modified: datetime = T0) -> str:
        key = PREFIX + name
        self._version += 1
        self.objects[key] = {"Body": body, "LastModified": modified, "ETag": f'"e{self._version}"',
                             "VersionId": f"v{self._version}"}  # fmt: skip
        return key

    def call(self, account: Account, region: str, service: str, call: Any, params: dict) -> dict:
        self.calls.append((region, service, call.operation, params))
        target = params.get("Key") or params.get("TableName")
        error = self.errors.get((call.operation, target)) or self.errors.get(call.operation)
        if error is not None:
            raise error
        return getattr(self, call.operation)(**params)

    def operations(self, operation: str) -> list[dict]:
        return [p for _, _, o, p in self.calls if o == operation]

    def GetBucketVersioning(self, Bucket: str) -> dict:
        return {"Status": self.versioning} if self.versioning else {}

    def ListObjectsV2(self, Bucket: str, Prefix: str) -> dict:
        found = [{"Key": k, "LastModified": o["LastModified"], "ETag": o["ETag"], "Size": len(o["Body"]),
                  "StorageClass": "STANDARD"}
                 for k, o in sorted(self.objects.items()) if k.startswith(Prefix)]  # fmt: skip
        return {"Contents": found, "KeyCount": len(found)} if found else {"KeyCount": 0}

    def GetObject(self, Bucket: str, Key: str) -> dict:
        obj = self.objects[Key]
        return {"Body": io.BytesIO(obj["Body"]), "VersionId": obj["VersionId"], "ETag": obj["ETag"]}

    def DeleteObjects(self, Bucket: str, Delete: dict) -> dict:
        deleted, errors = [], []
        for entry in Delete["Objects"]:
            self.removed.append(entry)
            key = entry["Key"]
            if key in self.undeletable:
                errors.append({"Key": key, "Code": self.undeletable[key], "Message": "no"})
                continue
            if key in self.objects and entry.get("VersionId") in (None, self.objects[key]["VersionId"]):
                del self.objects[key]  # the version read, or the current one behind a delete marker
            deleted.append(entry)
        return {"Deleted": deleted, "Errors": errors} if errors else {"Deleted": deleted}

    def DescribeTable(self, TableName: str) -> dict:
        if TableName not in self.tables:
            raise failed("DescribeTable", "ResourceNotFoundException", f"Table {TableName} not found")
        found = {"TableName": TableName, "TableArn": f"{TABLES}/{TableName}", "TableStatus": "ACTIVE"}
        if TableName in self.streams:
            label = "2026-12-01T00:00:00.000"
            found |= {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
                      "LatestStreamArn": f"{TABLES}/{TableName}/stream/{label}",
                      "LatestStreamLabel": label}  # fmt: skip
        return {"Table": found}

    def DescribeInstances(self, InstanceIds: list[str]) -> dict:
        found = [{"InstanceId": i, "InstanceType": "t3.micro", "State": {"Name": self.instances[i]}}
                 for i in InstanceIds if i in self.instances]  # fmt: skip
        return {"Reservations": [{"Instances": found}] if found else []}

    def DescribeInstanceTypes(self, InstanceTypes: list[str]) -> dict:
        return {"InstanceTypes": [{"InstanceType": t, "Hypervisor": "nitro"} for t in InstanceTypes]}

    def ListTagsOfResource(self, ResourceArn: str) -> dict:
        return {"Tags": []}


def failed(operation: str, code: str, why: str = "") -> CallFailed:
    return CallFailed(operation=operation, account=ACCOUNT, region=REGION, code=code, problem=why)


def denied(action: str) -> AccessDenied:
    return AccessDenied(
        role_arn=ROLE, action=action, account=ACCOUNT, region="us-east-1", code="AccessDenied"
    )


def envelope(name: str, table: Any, at: str = "2026-12-01T12:00:00Z", **detail: Any) -> dict:
    """A DynamoDB call as EventBridge delivers it."""
    return {
        "detail-type": CLOUDTRAIL, "source": "aws.dynamodb", "region": REGION, "time": at,
        "detail": {"eventSource": "dynamodb.amazonaws.com", "eventName": name, "awsRegion": REGION,
                   "requestParameters": {"tableName": table}, **detail},
    }  # fmt: skip


def state_change(instance: str, state: str, at: str = "2026-12-01T12:00:00Z") -> dict:
    return {"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "region": REGION,
            "time": at, "detail": {"instance-id": instance, "state": state}}  # fmt: skip


def firehose(*events: dict) -> bytes:
    return gzip.compress("".join(json.dumps(e) for e in events).encode())


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings()


@pytest.fixture(scope="module")
def rules(mappings: Mappings) -> Rules:
    return Rules(mappings)


@pytest.fixture
def state(tmp_path) -> Iterator[State]:
    with State(tmp_path / "s.sqlite") as opened:
        yield opened


@pytest.fixture
def account() -> Account:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION)
    return Account(ACCOUNT, ROLE, session, client_config(1))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, account: Account) -> FakeAws:
    monkeypatch.setattr(delta_module, "assume", lambda *args, **kwargs: account)
    return FakeAws()


CONFIG = make_config(regions=(REGION,))
INSTANCE = CONFIG.instances[0]


def run(fake: FakeAws, state: State, mappings: Mappings, sink: Any = None, **instance: Any) -> AccountDelta:
    config = make_config(**instance) if instance else CONFIG
    sink = ListSink() if sink is None else sink
    return apply_events(config, config.instances[0], mappings, sink, state, fake)  # type: ignore[arg-type]


def scanned(state: State, started: datetime, delivered: Any = True, complete: bool = True, **kw: Any) -> None:
    finished = started + timedelta(minutes=1)
    state.record_run(kw.get("account", ACCOUNT), kw.get("kind", "scan"), started, finished, complete,
                     {"delivered": delivered})  # fmt: skip


def table(mappings: Mappings) -> Any:
    return next(r for r in mappings.resources if r.key == "dynamodb.table")


def gone(mappings: Mappings, name: str, region: str = REGION) -> Change:
    return Change(table(mappings), region, name, True, f"{TABLES}/{name}")


def made(mappings: Mappings, name: str) -> Change:
    return Change(table(mappings), REGION, name, False)


# --- AccountDelta ----------------------------------------------------------------------------------------


def test_a_summary_has_every_field_in_order_and_the_counts_only_when_they_say_something() -> None:
    result = AccountDelta(ACCOUNT, BUCKET, objects=1, envelopes=2, unknown=3, changes=4, components=5,
                          deletes=6, payloads=7, deleted=["d"] * 8, stale=9, kept=["k"] * 10,
                          corrupt={str(i): "bad" for i in range(11)}, source="cloudtrail",
                          failed_units=["u1", "u2"], error="boom", interrupted=True)  # fmt: skip

    assert result.summary() == {
        "status": "INCOMPLETE", "source": "'cloudtrail'", "objects": 1, "envelopes": 2, "unknown": 3,
        "changes": 4, "components": 5, "deletes": 6, "payloads": 7, "deleted_objects": 8, "stale_objects": 9,
        "kept_objects": 10, "corrupt_objects": 11, "failed_units": "u1,u2", "error": "'boom'",
        "interrupted": True,
    }  # fmt: skip
    assert list(result.summary())[-3:] == ["failed_units", "error", "interrupted"]
    assert AccountDelta(ACCOUNT, BUCKET).summary() == {
        "status": "complete", "source": "'bucket'", "objects": 0, "envelopes": 0, "unknown": 0, "changes": 0,
        "components": 0, "deletes": 0, "payloads": 0, "deleted_objects": 0, "stale_objects": 0,
        "kept_objects": 0, "corrupt_objects": 0,
    }  # fmt: skip


def test_the_counts_beyond_the_basic_ones_appear_when_not_zero_and_not_deleted_keys_sorted() -> None:
    result = AccountDelta(ACCOUNT, BUCKET, failed_calls=1, foreign=2, bad_events=3, unconfirmed_deletes=4,
                          not_deleted={"b": "AccessDenied", "a": "InternalError"})  # fmt: skip

    assert result.counts() == {"failed_calls": 1, "foreign": 2, "bad_events": 3, "unconfirmed_deletes": 4,
                               "not_deleted": "a(InternalError),b(AccessDenied)"}  # fmt: skip
    assert list(result.summary())[-5:] == list(result.counts())
    assert AccountDelta(ACCOUNT, BUCKET, foreign=1).counts() == {"foreign": 1}
    assert AccountDelta(ACCOUNT, BUCKET).counts() == {}


@pytest.mark.parametrize(
    "field",
    [
        {"error": "x"},
        {"kept": ["k"]},
        {"failed_units": ["u"]},
        {"corrupt": {"k": "bad"}},
        {"truncated": True},
        {"not_deleted": {"k": "AccessDenied"}},
    ],
)
def test_a_run_is_incomplete_when_anything_is_left_for_the_next_one(field: dict) -> None:
    assert AccountDelta(ACCOUNT, BUCKET).complete
    result = AccountDelta(ACCOUNT, BUCKET, **field)
    assert not result.complete and result.summary()["status"] == "INCOMPLETE"


# --- split_stale -----------------------------------------------------------------------------------------


def objects_at(*minutes: float) -> list[dict]:
    return [{"Key": f"k{i}", "LastModified": T0 + timedelta(minutes=m)} for i, m in enumerate(minutes)]


def test_objects_written_the_margin_before_a_delivered_complete_scan_are_stale(state: State) -> None:
    scanned(state, T0)
    margin = STALE_MARGIN.total_seconds() / 60
    objects = objects_at(-margin - 1, 0, -margin, -margin - 1 / 60_000, 30)

    stale, fresh = split_stale(objects, state, ACCOUNT)

    assert [o["Key"] for o in stale] == ["k0", "k3"]  # strictly before the margin
    assert [o["Key"] for o in fresh] == ["k1", "k2", "k4"]


def test_the_latest_complete_scan_counts_and_only_of_this_account(state: State) -> None:
    scanned(state, T0)
    scanned(state, T0 + timedelta(hours=1), complete=False)  # incomplete: says nothing
    scanned(state, T0 + timedelta(hours=2), account="999999999999")
    scanned(state, T0 + timedelta(hours=3), kind="events")
    objects = objects_at(-10, 30)

    assert split_stale(objects, state, ACCOUNT) == (objects[:1], objects[1:])


@pytest.mark.parametrize("delivered", [False, None, "true", 1])
def test_nothing_is_stale_unless_the_scan_was_delivered(state: State, delivered: Any) -> None:
    scanned(state, T0, delivered=delivered)
    objects = objects_at(-60)
    assert split_stale(objects, state, ACCOUNT) == ([], objects)


def test_nothing_is_stale_without_a_scan_or_while_the_spool_holds_a_payload(state: State) -> None:
    objects = objects_at(-60)
    assert split_stale(objects, state, ACCOUNT) == ([], objects)
    scanned(state, T0)
    state.spool_put("p", {"topologies": []})
    assert split_stale(objects, state, ACCOUNT) == ([], objects)


# --- _changes --------------------------------------------------------------------------------------------


def test_changes_count_every_envelope_and_why_it_changes_nothing(mappings: Mappings, rules: Rules) -> None:
    result = AccountDelta(ACCOUNT, BUCKET, envelopes=10, unknown=10, failed_calls=10, foreign=10)
    found = [
        {**envelope("CreateTable", "t1"), "account": ACCOUNT},
        envelope("DeleteTable", "t2", errorCode="ResourceInUseException"),
        envelope("DeleteTable", "t2", errorMessage="in use"),
        {**envelope("DeleteTable", "t3"), "account": "999999999999"},
        envelope("DeleteTable", "t3", recipientAccountId="999999999999"),
        envelope("DescribeTable", "t1"),  # no rule
        envelope("DeleteTable", "t4", at="2026-12-01T12:05:00+00:00"),
        envelope("DescribeLimits", "t1"),
    ]

    changes = _changes(found, rules, INSTANCE, result)

    assert changes == [
        Change(table(mappings), REGION, "t1", False, None, "2026-12-01T12:00:00+00:00"),
        Change(table(mappings), REGION, "t4", True, f"{TABLES}/t4", "2026-12-01T12:05:00+00:00"),
    ]
    assert (result.envelopes, result.unknown, result.failed_calls, result.foreign) == (18, 12, 12, 12)
    assert result.bad_events == 0


def bad_event() -> dict:
    """An envelope the shipped rules fail on: contains() of a number (a JMESPath type error)."""
    return {"detail-type": CLOUDTRAIL, "region": REGION,
            "detail": {"eventSource": "states.amazonaws.com", "eventName": "TagResource", "awsRegion": REGION,
                       "requestParameters": {"resourceArn": 5}}}  # fmt: skip


def test_an_envelope_the_rules_fail_on_makes_a_strict_read_raise_and_counts_nothing(rules: Rules) -> None:
    result = AccountDelta(ACCOUNT, BUCKET)
    with pytest.raises(Exception, match="contains"):
        _changes([envelope("DescribeTable", "t"), bad_event()], rules, INSTANCE, result)
    assert (result.envelopes, result.unknown, result.bad_events) == (0, 0, 0)


def test_a_lenient_read_skips_it_counts_it_and_says_why(
    rules: Rules, caplog: pytest.LogCaptureFixture
) -> None:
    result = AccountDelta(ACCOUNT, BUCKET, bad_events=1)
    with caplog.at_level(logging.WARNING, "aws_topology"):
        changes = _changes(
            [bad_event(), envelope("CreateTable", "t1"), bad_event()], rules, INSTANCE, result, strict=False
        )

    assert [c.id for c in changes] == ["t1"]
    assert (result.envelopes, result.bad_events, result.unknown) == (3, 3, 0)
    lines = [r.getMessage() for r in caplog.records if "events.bad_event" in r.getMessage()]
    assert len(lines) == 2 and lines[0] == lines[1]
    assert lines[0].startswith("event=events.bad_event problem='JMESPathTypeError: In function contains()")


# --- _confirm, _failed, _retry_key -----------------------------------------------------------------------


def unit_result(mappings: Mappings, *external_ids: str, key: str = "dynamodb.table") -> UnitResult:
    resource = next(r for r in mappings.resources if r.key == key)
    unit = Unit(ACCOUNT, REGION, REGION, resource, (REGION,))
    return UnitResult(unit, components=[{"externalId": e} for e in external_ids])


def test_a_delete_goes_out_only_when_the_get_no_longer_finds_it(mappings: Mappings) -> None:
    other = Change(table(mappings), "us-east-1", "t5", True, f"{TABLES}/t5")
    no_delete_id = gone(mappings, "t4")._replace(delete_id=None)
    changes = [gone(mappings, "t1"), made(mappings, "t2"), gone(mappings, "t3"), no_delete_id,
               gone(mappings, "t1"), other, gone(mappings, "t6")]  # fmt: skip
    root = unit_result(mappings, f"{TABLES}/t3", f"{TABLES}/t2")
    child = unit_result(mappings, f"{TABLES}/t6", key="dynamodb.stream")
    refreshed = {("dynamodb.table", REGION): [root, child]}

    deletes, unconfirmed = _confirm(changes, refreshed, {("dynamodb.table", "us-east-1")})

    assert deletes == [f"{TABLES}/t1", f"{TABLES}/t6"]  # once each; only the root type's components confirm
    assert unconfirmed == [gone(mappings, "t3")]
    assert _confirm(changes, refreshed, {("dynamodb.table", REGION)}) == ([f"{TABLES}/t5"], [])


def test_a_source_failed_when_one_of_its_changes_is_of_a_failed_unit(mappings: Mappings) -> None:
    source = Source("k", [made(mappings, "t1"), gone(mappings, "t2", "us-east-1")], lambda: None)
    assert _failed(source, {("dynamodb.table", "us-east-1")})
    assert not _failed(source, {("dynamodb.table", "eu-west-2"), ("sqs.queue", REGION)})
    assert _retry_key(gone(mappings, "t2", "us-east-1")) == "dynamodb.table|us-east-1|t2"


# --- unconfirmed deletes in the state --------------------------------------------------------------------


def test_an_unconfirmed_delete_is_stored_and_read_back_with_its_tries(
    state: State, mappings: Mappings
) -> None:
    t1, t2 = gone(mappings, "t1"), gone(mappings, "t2", "us-east-1")
    _save_unconfirmed(state, ACCOUNT, {_retry_key(t2): (t2, 2)}, [t1, t2], set())

    assert state.get(f"events.unconfirmed.{ACCOUNT}") == [
        {"resource": "dynamodb.table", "region": REGION, "id": "t1", "delete_id": f"{TABLES}/t1", "tries": 1},
        {"resource": "dynamodb.table", "region": "us-east-1", "id": "t2", "delete_id": f"{TABLES}/t2",
         "tries": 3},
    ]  # fmt: skip
    assert _unconfirmed(state, ACCOUNT, mappings) == {_retry_key(t1): (t1, 1), _retry_key(t2): (t2, 3)}
    assert _unconfirmed(state, "999999999999", mappings) == {}


def test_a_delete_is_given_up_after_its_tries_and_one_of_a_failed_unit_stays_as_it_was(
    state: State, mappings: Mappings, caplog: pytest.LogCaptureFixture
) -> None:
    t1, t2, t3 = (gone(mappings, n) for n in ("t1", "t2", "t3"))
    t4 = gone(mappings, "t4", "us-east-1")
    before = {_retry_key(t1): (t1, CONFIRM_TRIES - 1), _retry_key(t2): (t2, CONFIRM_TRIES - 2),
              _retry_key(t3): (t3, 2), _retry_key(t4): (t4, 1)}  # fmt: skip
    with caplog.at_level(logging.WARNING, "aws_topology"):
        _save_unconfirmed(state, ACCOUNT, before, [t1, t2], {("dynamodb.table", "us-east-1")})

    assert [(e["id"], e["tries"]) for e in state.get(UNCONFIRMED_KEY.format(account=ACCOUNT))] == [
        ("t4", 1),
        ("t2", CONFIRM_TRIES - 1),
    ]  # t3 was confirmed (or refreshed as gone), t1 given up
    assert [r.getMessage() for r in caplog.records] == [
        f"event=events.delete_unconfirmed resource=dynamodb.table id=t1 tries={CONFIRM_TRIES}: given up"
    ]


def test_unusable_entries_are_skipped_with_a_warning(
    state: State, mappings: Mappings, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"resource": "dynamodb.table", "region": REGION, "id": "t1", "delete_id": "d", "tries": "2"}
    state.set(UNCONFIRMED_KEY.format(account=ACCOUNT), [
        {**good, "resource": "gone.type"}, {**good, "tries": "x"}, {**good, "tries": None}, None,
        {k: v for k, v in good.items() if k != "region"}, good,
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING, "aws_topology"):
        found = _unconfirmed(state, ACCOUNT, mappings)

    assert found == {f"dynamodb.table|{REGION}|t1": (Change(table(mappings), REGION, "t1", True, "d"), 2)}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and all(line.startswith("event=events.bad_unconfirmed entry=") for line in lines)
    assert lines[0] == (
        "event=events.bad_unconfirmed entry={'delete_id': 'd', 'id': 't1', 'region': 'eu-west-1', "
        "'resource': 'gone.type', 'tries': '2'} problem=\"KeyError: 'gone.type'\""
    )


# --- problem, _crash -------------------------------------------------------------------------------------


def test_a_problem_is_one_line_whichever_layer_raised_it() -> None:
    assert problem(failed("GetBucketVersioning", "NoSuchBucket")) == "NoSuchBucket"
    assert problem(failed("GetBucketVersioning", "NoSuchBucket", "gone")) == (
        f"GetBucketVersioning in {ACCOUNT}/{REGION} failed: NoSuchBucket: gone"
    )
    assert problem(denied("s3:GetBucketVersioning")) == (
        f"role {ROLE} needs s3:GetBucketVersioning ({ACCOUNT}/us-east-1: AccessDenied)"
    )
    error = ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "LookupEvents")
    assert problem(error) == "Throttling"
    assert problem(ClientError({}, "LookupEvents")) == "ClientError"
    assert problem(ValueError("x" * 300)) == "ValueError: " + "x" * 200
    assert _crash(KeyError("k" * 300)) == "KeyError: '" + "k" * 199


# --- reading the bucket ----------------------------------------------------------------------------------


def read_bucket(
    fake: FakeAws, state: State, rules: Rules, account: Account
) -> tuple[list[Source], AccountDelta]:
    result = AccountDelta(ACCOUNT, BUCKET)
    bucket = LogBucket(account, BUCKET, fake, state, "events")  # type: ignore[arg-type]
    return _from_bucket(bucket, INSTANCE, rules, state, result), result


def test_an_empty_bucket_gives_no_source(fake: FakeAws, state: State, rules: Rules, account: Account) -> None:
    sources, result = read_bucket(fake, state, rules, account)
    assert sources == [] and result.objects == 0 and result.error is None
    assert fake.operations("ListObjectsV2")[-1] == {"Bucket": BUCKET, "Prefix": PREFIX}


def test_objects_are_sources_oldest_first_then_one_delete_of_what_was_retired(
    fake: FakeAws, state: State, rules: Rules, account: Account
) -> None:
    scanned(state, T0)
    new = fake.put("b-new", firehose(envelope("CreateTable", "t2")), T0 + timedelta(minutes=2))
    old = fake.put("c-old", firehose(envelope("CreateTable", "t1"), envelope("DeleteTable", "t3")), T0)
    stale = fake.put("a-stale", firehose(envelope("CreateTable", "t9")), T0 - timedelta(hours=1))
    fake.put("z-other-account", b"", T0)
    fake.objects[f"AWSLogs/999999999999/EventBridge/{REGION}/x"] = fake.objects.pop(
        PREFIX + "z-other-account"
    )

    sources, result = read_bucket(fake, state, rules, account)

    assert [(s.name, s.ordered, [c.id for c in s.changes]) for s in sources] == [
        ("stale", False, []), (old, True, ["t1", "t3"]), (new, True, ["t2"]), ("delete", False, []),
    ]  # fmt: skip
    assert (result.objects, result.stale, result.envelopes) == (3, 1, 3)
    assert [p["Key"] for p in fake.operations("GetObject")] == [old, new]  # the stale one is not read
    sources[2].retire()
    sources[0].retire()
    assert fake.removed == []  # nothing is deleted before the delete source
    sources[3].retire()
    assert fake.removed == [{"Key": new, "VersionId": "v1"}, {"Key": stale}]  # unread: a delete marker
    assert result.deleted == [new, stale] and result.not_deleted == {}
    assert set(fake.objects) == {old, f"AWSLogs/999999999999/EventBridge/{REGION}/x"}


def test_objects_are_downloaded_two_at_once_and_their_changes_kept_in_order(
    fake: FakeAws, state: State, rules: Rules, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [fake.put(name, firehose(envelope("CreateTable", f"t{n}"))) for n, name in enumerate("abc")]
    both = threading.Barrier(2, timeout=10)  # the reads of a and b meet here, or neither goes on
    get = fake.GetObject

    def meeting(Bucket: str, Key: str) -> dict:
        if Key != keys[2]:
            both.wait()
        return get(Bucket=Bucket, Key=Key)

    monkeypatch.setattr(fake, "GetObject", meeting)
    sources, result = read_bucket(fake, state, rules, account)

    assert result.corrupt == {}
    assert [(s.name, [c.id for c in s.changes]) for s in sources] == [
        (keys[0], ["t0"]), (keys[1], ["t1"]), (keys[2], ["t2"]), ("delete", []),
    ]  # fmt: skip


def test_a_key_s3_did_not_delete_is_reported_and_the_deleted_ones_extend(
    fake: FakeAws, state: State, rules: Rules, account: Account
) -> None:
    first = fake.put("a", firehose(envelope("CreateTable", "t1")))
    second = fake.put("b", firehose(envelope("CreateTable", "t2")))
    fake.undeletable[second] = "AccessDenied"
    sources, result = read_bucket(fake, state, rules, account)
    result.deleted, result.not_deleted = ["earlier"], {"older": "InternalError"}

    for source in sources:
        source.retire()

    assert result.deleted == ["earlier", first]
    assert result.not_deleted == {"older": "InternalError", second: "AccessDenied"}


def test_a_throttled_read_is_kept_as_a_source_without_changes(
    fake: FakeAws, state: State, rules: Rules, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    key = fake.put("a", firehose(envelope("CreateTable", "t1")))
    fake.errors[("GetObject", key)] = Throttled(operation="GetObject", account=ACCOUNT, region="us-east-1",
                                                code="SlowDown")  # fmt: skip
    with caplog.at_level(logging.WARNING, "aws_topology"):
        sources, result = read_bucket(fake, state, rules, account)

    assert [(s.name, s.changes, s.ordered) for s in sources] == [(key, [], True), ("delete", [], False)]
    assert result.kept == [key] and result.corrupt == {}
    sources[0].retire()
    sources[1].retire()
    assert fake.removed == [] and result.deleted == []
    assert [r.getMessage() for r in caplog.records] == [
        f"event=events.read_throttled key={key} problem='GetObject throttled in {ACCOUNT}/us-east-1 after "
        "retries (SlowDown)'"
    ]


def test_an_interrupted_read_stops_the_run(
    fake: FakeAws, state: State, rules: Rules, account: Account
) -> None:
    key = fake.put("a", firehose(envelope("CreateTable", "t1")))
    fake.errors[("GetObject", key)] = Interrupted(operation="GetObject")
    with pytest.raises(Interrupted):
        read_bucket(fake, state, rules, account)


def test_a_bad_object_is_corrupt_and_only_an_unreadable_one_is_tried_again_later(
    fake: FakeAws, state: State, rules: Rules, account: Account
) -> None:
    bad = fake.put("a-bad", b"\x1f\x8b" + b"\x00" * 20)
    kms = fake.put("b-kms", firehose(envelope("CreateTable", "t1")))
    crash = fake.put("c-crash", firehose(bad_event()))
    large = fake.put("d-large", b" " * (MAX_OBJECT + 1))
    good = fake.put("e-good", firehose(envelope("CreateTable", "t2")))
    fake.errors[("GetObject", kms)] = failed("GetObject", "KMS.DisabledException")

    sources, result = read_bucket(fake, state, rules, account)

    assert [s.name for s in sources] == [good, "delete"]
    assert result.corrupt == {
        bad: "bad gzip data: Error -5 Gzip/zlib wrapper specifies unsupported compress method",
        kms: f"GetObject in {ACCOUNT}/{REGION} failed: KMS.DisabledException: ",
        crash: result.corrupt[crash],
        large: f"larger than {MAX_OBJECT} bytes",
    }
    assert result.corrupt[crash].startswith("JMESPathTypeError: In function contains()")
    recorded = state.get(f"events.corrupt.{ACCOUNT}")
    assert {k: "retry_at" in v for k, v in recorded.items()} == {
        bad: False,
        kms: True,
        crash: False,
        large: False,
    }
    assert recorded[kms]["retry_at"] - recorded[kms]["at"] == pytest.approx(UNREADABLE_RETRY)


def test_an_object_of_exactly_the_bound_is_read(
    fake: FakeAws, state: State, rules: Rules, account: Account
) -> None:
    text = json.dumps(envelope("CreateTable", "t1")).encode()
    key = fake.put("a", text + b" " * (MAX_OBJECT - len(text)))

    sources, result = read_bucket(fake, state, rules, account)

    assert result.corrupt == {} and [s.name for s in sources] == [key, "delete"]


def test_a_known_corrupt_object_is_not_read_again_and_a_vanished_one_is_forgotten(
    fake: FakeAws, state: State, rules: Rules, account: Account
) -> None:
    key = fake.put("a", b"\x1f\x8b")
    read_bucket(fake, state, rules, account)
    recorded = state.get(f"events.corrupt.{ACCOUNT}")
    state.set(f"events.corrupt.{ACCOUNT}", {**recorded, PREFIX + "vanished": recorded[key]})
    fake.calls.clear()

    sources, result = read_bucket(fake, state, rules, account)

    assert sources == [] and result.corrupt == {key: "bad gzip data: truncated"} and result.objects == 1
    assert fake.operations("GetObject") == []
    assert set(state.get(f"events.corrupt.{ACCOUNT}")) == {key}


def test_a_denied_listing_raises_and_any_other_failure_is_the_run_error(
    fake: FakeAws, state: State, rules: Rules, account: Account
) -> None:
    fake.errors["ListObjectsV2"] = denied("s3:ListBucket")
    with pytest.raises(AccessDenied):
        read_bucket(fake, state, rules, account)
    fake.errors["ListObjectsV2"] = failed("ListObjectsV2", "InternalError", "try later")

    sources, result = read_bucket(fake, state, rules, account)

    assert sources == [] and result.objects == 0
    assert result.error == (
        f"cannot list bucket {BUCKET}: ListObjectsV2 in {ACCOUNT}/{REGION} failed: InternalError: try later"
    )


# --- a whole run in-process ------------------------------------------------------------------------------


def topology(sink: ListSink) -> dict:
    [only] = sink.topologies()
    return only


def test_a_run_sends_one_delta_then_deletes_what_it_read(
    fake: FakeAws, state: State, mappings: Mappings
) -> None:
    fake.tables, fake.streams = {"t1", "t2"}, {"t2"}
    first = fake.put("a", firehose(envelope("CreateTable", "t1"), envelope("DeleteTable", "t3"),
                                   envelope("CreateRole", "x")))  # fmt: skip
    second = fake.put("b", firehose(envelope("UpdateTable", "t2")), T0 + timedelta(minutes=1))
    sink = ListSink()

    result = run(fake, state, mappings, sink)

    assert result.summary() == {
        "status": "complete", "source": "'bucket'", "objects": 2, "envelopes": 4, "unknown": 1, "changes": 3,
        "components": 3, "deletes": 1, "payloads": 1, "deleted_objects": 2, "stale_objects": 0,
        "kept_objects": 0, "corrupt_objects": 0,
    }  # fmt: skip
    assert result.deleted == [first, second] and fake.objects == {}
    assert [name for name, _ in sink.payloads] == [f"events-{ACCOUNT}-0001"]
    delta = topology(sink)
    assert (delta["start_snapshot"], delta["stop_snapshot"]) == (False, False)
    assert delta["instance"]["url"] == ACCOUNT and result.account == ACCOUNT
    stream = f"{TABLES}/t2/stream/2026-12-01T00:00:00.000"
    assert sorted(sink.components()) == [f"{TABLES}/t1", f"{TABLES}/t2", stream]
    assert sink.relations() == {(f"{TABLES}/t2", "uses-service", stream)}
    assert delta["delete_ids"] == [f"{TABLES}/t3"]
    [check] = sink.payloads[0][1]["service_checks"]
    assert (check["check"], check["status"], check["message"]) == ("aws_topology.can_update", 0, "")
    assert check["tags"] == sorted(check_tags(INSTANCE))
    assert {p["TableName"] for p in fake.operations("DescribeTable")} == {"t1", "t2", "t3"}
    assert state.get(UNCONFIRMED_KEY.format(account=ACCOUNT)) == []
    assert 0 <= result.seconds < 60 and result.error is None and result.code == 0


def test_a_payload_per_max_bytes_and_each_named_in_order(
    fake: FakeAws, state: State, mappings: Mappings
) -> None:
    fake.tables = {f"t{i}" for i in range(3)}
    fake.put("a", firehose(*(envelope("CreateTable", f"t{i}") for i in range(3))))
    sink = ListSink()
    config = make_config(regions=(REGION,))

    limits = Limits(max_bytes=1500)
    result = apply_events(config, config.instances[0], mappings, sink, state, fake, limits=limits)  # type: ignore[arg-type]

    assert result.payloads == len(sink.payloads) > 1
    assert [n for n, _ in sink.payloads] == [
        f"events-{ACCOUNT}-{i:04d}" for i in range(1, result.payloads + 1)
    ]


def test_a_failed_unit_keeps_its_object_and_every_newer_one(
    fake: FakeAws, state: State, mappings: Mappings
) -> None:
    scanned(state, T0)
    fake.tables = {"t1", "t2", "t3"}
    stale = fake.put("0-stale", firehose(envelope("CreateTable", "t0")), T0 - timedelta(hours=1))
    older = fake.put("1-older", firehose(envelope("CreateTable", "t1")), T0)
    failing = fake.put("2-failing", firehose(envelope("UpdateTable", "t2", awsRegion="us-east-1")), T0)
    newer = fake.put("3-newer", firehose(envelope("CreateTable", "t3")), T0 + timedelta(minutes=1))
    fake.errors[("DescribeTable", "t2")] = failed("DescribeTable", "InternalServerError", "oops")
    sink = ListSink()

    result = run(fake, state, mappings, sink, regions=(REGION, "us-east-1"))

    assert result.failed_units == [
        f"{ACCOUNT}/us-east-1/dynamodb.table",
        f"{ACCOUNT}/us-east-1/dynamodb.stream",
    ]
    assert result.kept == [failing, newer] and result.deleted == [stale, older]
    assert set(fake.objects) == {failing, newer}
    [check] = sink.payloads[0][1]["service_checks"]
    assert check["status"] == 1 and check["message"] == (
        f"{ACCOUNT}/us-east-1/dynamodb.table: DescribeTable in {ACCOUNT}/{REGION} failed: "
        f"InternalServerError: oops\n{ACCOUNT}/us-east-1/dynamodb.stream: not listed: "
        "dynamodb.table is failed"
    )
    assert sorted(sink.components()) == [f"{TABLES}/t1", f"{TABLES}/t3"]
    assert result.summary()["failed_units"] == ",".join(result.failed_units)


def test_a_throttled_object_keeps_the_newer_ones_but_not_the_older(
    fake: FakeAws, state: State, mappings: Mappings
) -> None:
    fake.tables = {"t1", "t2", "t3"}
    older = fake.put("1", firehose(envelope("CreateTable", "t1")), T0)
    slow = fake.put("2", firehose(envelope("CreateTable", "t2")), T0 + timedelta(minutes=1))
    newer = fake.put("3", firehose(envelope("CreateTable", "t3")), T0 + timedelta(minutes=2))
    fake.errors[("GetObject", slow)] = Throttled(
        operation="GetObject", account=ACCOUNT, region=REGION, code="x"
    )

    result = run(fake, state, mappings)

    assert result.kept == [slow, newer] and result.deleted == [older]
    assert set(fake.objects) == {slow, newer} and not result.complete


def test_corrupt_objects_make_the_check_warn_and_the_others_apply(
    fake: FakeAws, state: State, mappings: Mappings
) -> None:
    fake.tables = {"t1"}
    bad = fake.put("1", b"{")
    good = fake.put("2", firehose(envelope("CreateTable", "t1")))
    sink = ListSink()

    result = run(fake, state, mappings, sink)

    assert result.corrupt == {
        bad: "bad JSON at character 1: Expecting property name enclosed in double quotes"
    }
    assert list(state.get(f"events.corrupt.{ACCOUNT}")) == [bad]
    assert result.deleted == [good] and set(fake.objects) == {bad}
    [check] = sink.payloads[0][1]["service_checks"]
    assert check["status"] == 1 and check["message"] == f"corrupt object {bad}: {result.corrupt[bad]}"


def test_an_undelivered_delta_retires_nothing(fake: FakeAws, state: State, mappings: Mappings) -> None:
    class Down:
        def send(self, payload: dict, name: str) -> None:
            raise DeliveryError(target="receiver", problem="503")

    scanned(state, T0)
    fake.tables = {"t1"}
    stale = fake.put("0", firehose(envelope("CreateTable", "t0")), T0 - timedelta(hours=1))
    key = fake.put("1", firehose(envelope("DeleteTable", "t1")))
    state.set(UNCONFIRMED_KEY.format(account=ACCOUNT), [])

    result = run(fake, state, mappings, Down())

    assert result.error == "delta not delivered, nothing retired: delivery to receiver failed: 503"
    assert result.kept == [key] and result.payloads == 0 and result.deleted == []
    assert set(fake.objects) == {stale, key} and fake.removed == []
    assert state.get(UNCONFIRMED_KEY.format(account=ACCOUNT)) == []  # not counted as a try


def test_an_unconfirmed_delete_is_refreshed_and_asked_again_until_given_up(
    fake: FakeAws, state: State, mappings: Mappings
) -> None:
    fake.tables = {"t1"}
    fake.put("1", firehose(envelope("DeleteTable", "t1")))
    sink = ListSink()

    first = run(fake, state, mappings, sink)

    assert (first.changes, first.deletes, first.unconfirmed_deletes, first.components) == (1, 0, 1, 1)
    assert first.summary()["unconfirmed_deletes"] == 1 and first.complete
    assert topology(sink)["delete_ids"] == [] and sorted(sink.components()) == [f"{TABLES}/t1"]
    assert [e["tries"] for e in state.get(UNCONFIRMED_KEY.format(account=ACCOUNT))] == [1]
    for tries in range(2, CONFIRM_TRIES):
        again = run(fake, state, mappings)
        assert (again.changes, again.unconfirmed_deletes, again.objects) == (1, 1, 0)
        assert [e["tries"] for e in state.get(UNCONFIRMED_KEY.format(account=ACCOUNT))] == [tries]
    fake.tables = set()  # AWS confirms it at last
    sink = ListSink()

    last = run(fake, state, mappings, sink)

    assert (last.deletes, last.unconfirmed_deletes) == (1, 0)
    assert topology(sink)["delete_ids"] == [f"{TABLES}/t1"]
    assert state.get(UNCONFIRMED_KEY.format(account=ACCOUNT)) == []


def test_an_unconfirmed_delete_is_older_than_any_event(
    fake: FakeAws, state: State, mappings: Mappings
) -> None:
    fake.tables = {"t1"}
    state.set(UNCONFIRMED_KEY.format(account=ACCOUNT), [
        {"resource": "dynamodb.table", "region": REGION, "id": "t1", "delete_id": f"{TABLES}/t1", "tries": 1}
    ])  # fmt: skip
    fake.put("1", firehose(envelope("CreateTable", "t1", at="")))  # created again: the create wins

    result = run(fake, state, mappings)

    assert (result.changes, result.deletes, result.unconfirmed_deletes, result.components) == (1, 0, 0, 1)
    assert state.get(UNCONFIRMED_KEY.format(account=ACCOUNT)) == []


def test_without_a_get_a_delete_goes_as_is_and_nothing_is_described(
    fake: FakeAws, state: State, mappings: Mappings
) -> None:
    no_get = replace(mappings, resources=tuple(replace(r, get=None) if r.key == "dynamodb.table" else r
                                                for r in mappings.resources))  # fmt: skip
    fake.tables = {"t1"}
    fake.instances = {"i-1": "running"}
    fake.put(
        "1", firehose(envelope("DeleteTable", "t1"), state_change("i-1", "running", "2026-12-01T12:01:00Z"))
    )
    sink = ListSink()

    result = run(fake, state, no_get, sink)

    assert (result.deletes, result.unconfirmed_deletes, result.components) == (1, 0, 1)
    assert topology(sink)["delete_ids"] == [f"{TABLES}/t1"] and fake.operations("DescribeTable") == []
    assert sorted(sink.components()) == ["i-1"]  # the types after it are still refreshed


def test_units_are_one_per_type_and_region_with_each_id_once(
    fake: FakeAws, state: State, mappings: Mappings, monkeypatch: pytest.MonkeyPatch
) -> None:
    units: list[Unit] = []

    class Recording(Collector):
        def run(self, unit: Unit) -> list[UnitResult]:
            units.append(unit)
            return super().run(unit)

    monkeypatch.setattr(delta_module, "Collector", Recording)
    fake.tables = {"t1", "t2"}
    zone = {"detail-type": CLOUDTRAIL, "region": "us-east-1", "time": "2026-12-01T12:00:00Z", "detail": {
        "eventSource": "route53.amazonaws.com", "eventName": "CreateHostedZone", "awsRegion": "us-east-1",
        "responseElements": {"hostedZone": {"id": "/hostedzone/Z1"}}}}  # fmt: skip
    bucket = {"detail-type": CLOUDTRAIL, "region": REGION, "time": "2026-12-01T12:00:00Z", "detail": {
        "eventSource": "s3.amazonaws.com", "eventName": "CreateBucket", "awsRegion": REGION,
        "requestParameters": {"bucketName": "b1"}}}  # fmt: skip
    tag = envelope("TagResource", "t1", requestParameters={"resourceArn": f"{TABLES}/t1"})
    fake.put("1", firehose(envelope("CreateTable", "t1"), envelope("UpdateTable", "t2"), zone, bucket, tag))
    fake.errors["GetHostedZone"] = failed("GetHostedZone", "x")
    fake.errors["ListBuckets"] = failed("ListBuckets", "x")

    run(fake, state, mappings, regions=("global", REGION, "us-west-2"))

    assert [(u.resource.key, u.region, u.client_region, u.regions, u.ids) for u in units] == [
        ("dynamodb.table", REGION, REGION, (REGION,), ("t2", "t1")),  # t1's latest event is the last
        ("route53.hostedzone", "global", "us-east-1", ("us-east-1",), ("Z1",)),
        ("s3.bucket", "account", "us-east-1", (REGION, "us-west-2"), ("b1",)),
    ]  # fmt: skip
    assert all(u.account == ACCOUNT for u in units)


# --- before reading: credentials, versioning, CloudTrail ---------------------------------------------------


@pytest.mark.parametrize(
    ("error", "bad_input"),
    [
        (CredentialsError(role_arn=ROLE, problem="no"), True),
        (Unreachable(role_arn=ROLE, problem="down"), False),
    ],
)
def test_an_account_that_cannot_be_reached_reads_nothing(
    state: State, mappings: Mappings, monkeypatch: pytest.MonkeyPatch, error: Exception, bad_input: bool
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Account:
        raise error

    monkeypatch.setattr(delta_module, "assume", refuse)
    fake = FakeAws()

    result = run(fake, state, mappings)

    assert result.error == str(error) and result.bad_input is bad_input and fake.calls == []
    assert result.code == (2 if bad_input else 1)


@pytest.mark.parametrize(("status", "said"), [(None, "never enabled"), ("Suspended", "Suspended")])
def test_an_unversioned_bucket_is_refused_before_anything_is_read(
    fake: FakeAws, state: State, mappings: Mappings, status: str | None, said: str
) -> None:
    fake.versioning = status
    fake.put("1", firehose(envelope("CreateTable", "t1")))
    sink = ListSink()

    result = run(fake, state, mappings, sink)

    assert result.error == (
        f"bucket {BUCKET} is not versioned ({said}): enable versioning on it, since processed objects are "
        "deleted; no object was read or deleted"
    )
    assert (
        result.bad_input
        and sink.payloads == []
        and [o for _, _, o, _ in fake.calls] == ["GetBucketVersioning"]
    )


def test_assume_gets_the_run_limits_endpoint_and_session(
    fake: FakeAws, state: State, mappings: Mappings, monkeypatch: pytest.MonkeyPatch, account: Account
) -> None:
    seen: list[tuple] = []

    def assume(config: Any, instance: Any, **kwargs: Any) -> Account:
        seen.append((config, instance, kwargs))
        return account

    monkeypatch.setattr(delta_module, "assume", assume)
    base = boto3.Session(region_name=REGION)
    apply_events(CONFIG, INSTANCE, mappings, ListSink(), state, fake, limits=Limits(workers=3),  # type: ignore[arg-type]
                 endpoint_url="http://x", base=base)  # fmt: skip

    assert seen == [(CONFIG, INSTANCE, {"base": base, "endpoint_url": "http://x", "workers": 3})]


class FakeLookups:
    """`lookup_envelopes`: one `Lookup` per region, or an error; it reads with the run's account and state."""

    def __init__(self, found: dict[str, Lookup | Exception], account: Account, state: State) -> None:
        self.found, self.account, self.state = found, account, state
        self.asked: list[tuple[str, datetime]] = []

    def __call__(self, account: Account, region: str, state: State, *, since: datetime) -> Lookup:
        assert account is self.account and state is self.state
        self.asked.append((region, since))
        answer = self.found[region]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def cloudtrail(
    monkeypatch: pytest.MonkeyPatch, account: Account, state: State
) -> Callable[[dict], FakeLookups]:
    """Installs a `FakeLookups` answering per region as given."""

    def install(found: dict) -> FakeLookups:
        lookups = FakeLookups(found, account, state)
        monkeypatch.setattr(delta_module, "lookup_envelopes", lookups)
        return lookups

    return install


def cursor(minute: int) -> Cursor:
    return Cursor(T0 + timedelta(minutes=minute), {f"id{minute}": T0 + timedelta(minutes=minute)})


def test_without_the_bucket_cloudtrail_is_read_and_its_cursors_move_once_delivered(
    fake: FakeAws, state: State, mappings: Mappings, cloudtrail: Callable[[dict], FakeLookups],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    scanned(state, T0 - timedelta(hours=2))
    scanned(state, T0 - timedelta(hours=1), complete=False)
    fake.errors["GetBucketVersioning"] = failed("GetBucketVersioning", "NoSuchBucket")
    fake.tables = {"t1"}
    lookups = cloudtrail({
        "us-east-1": Lookup(
            [envelope("CreateTable", "t1", awsRegion="us-east-1")], cursor(1), truncated=True
        ),
        REGION: Lookup([envelope("DeleteTable", "t2"), bad_event()], cursor(2)),  # truncated stays
    })  # fmt: skip
    sink = ListSink()
    with caplog.at_level(logging.WARNING, "aws_topology"):
        result = run(fake, state, mappings, sink, regions=("global", "us-east-1", REGION))

    assert result.source == f"cloudtrail (bucket {BUCKET}: NoSuchBucket)"
    assert result.summary()["source"] == repr(result.source)
    assert f"event=events.fallback bucket={BUCKET} problem='NoSuchBucket'" in caplog.messages
    assert lookups.asked == [("us-east-1", T0 - timedelta(hours=2)), (REGION, T0 - timedelta(hours=2))]
    assert (result.envelopes, result.bad_events, result.changes, result.deletes) == (3, 1, 2, 1)
    assert result.truncated and not result.complete and result.error is None
    assert topology(sink)["delete_ids"] == [f"{TABLES}/t2"]
    assert state.get(f"cloudtrail.cursor.{ACCOUNT}.us-east-1") == cursor(1).to_json()
    assert state.get(f"cloudtrail.cursor.{ACCOUNT}.{REGION}") == cursor(2).to_json()


def test_a_cloudtrail_delta_not_delivered_moves_no_cursor_and_keeps_the_lookups(
    fake: FakeAws, state: State, mappings: Mappings, cloudtrail: Callable[[dict], FakeLookups]
) -> None:
    class Down:
        def send(self, payload: dict, name: str) -> None:
            raise DeliveryError(target="receiver", problem="503")

    fake.errors["GetBucketVersioning"] = denied("s3:GetBucketVersioning")
    lookups = cloudtrail({REGION: Lookup([envelope("CreateTable", "t1")], cursor(1)),
                           "us-east-1": Lookup([], cursor(2))})  # fmt: skip

    result = run(fake, state, mappings, Down(), regions=(REGION, "us-east-1"))

    assert [region for region, _ in lookups.asked] == [REGION, "us-east-1"]
    assert result.kept == [f"cloudtrail:{REGION}"]
    assert state.get(f"cloudtrail.cursor.{ACCOUNT}.{REGION}") is None
    assert state.get(f"cloudtrail.cursor.{ACCOUNT}.us-east-1") is None


def test_without_a_complete_scan_cloudtrail_is_read_from_now(
    fake: FakeAws, state: State, mappings: Mappings, cloudtrail: Callable[[dict], FakeLookups]
) -> None:
    fake.errors["GetBucketVersioning"] = failed("GetBucketVersioning", "NoSuchBucket")
    lookups = cloudtrail({REGION: Lookup([], None)})
    before = datetime.now(UTC)

    result = run(fake, state, mappings)

    [(region, since)] = lookups.asked
    assert region == REGION and before <= since <= datetime.now(UTC) and since.tzinfo is not None
    assert result.complete and state.get(f"cloudtrail.cursor.{ACCOUNT}.{REGION}") is None


def test_a_region_cloudtrail_cannot_be_read_in_is_the_run_error_and_nothing_is_sent(
    fake: FakeAws, state: State, mappings: Mappings, cloudtrail: Callable[[dict], FakeLookups]
) -> None:
    fake.errors["ListObjectsV2"] = denied("s3:ListBucket")
    error = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "LookupEvents")
    lookups = cloudtrail({REGION: Lookup([envelope("CreateTable", "t1")], cursor(1)), "us-east-1": error})
    sink = ListSink()

    result = run(fake, state, mappings, sink, regions=(REGION, "us-east-1"))

    assert result.source == f"cloudtrail (bucket {BUCKET}: {denied('s3:ListBucket')})"
    assert result.error == "cannot read events from CloudTrail in us-east-1 either: AccessDeniedException"
    assert sink.payloads == [] and result.payloads == 0 and len(lookups.asked) == 2
    assert state.get(f"cloudtrail.cursor.{ACCOUNT}.{REGION}") is None


def test_an_interrupted_lookup_stops_the_run(
    fake: FakeAws, state: State, mappings: Mappings, cloudtrail: Callable[[dict], FakeLookups]
) -> None:
    fake.errors["GetBucketVersioning"] = failed("GetBucketVersioning", "NoSuchBucket")
    cloudtrail({REGION: Interrupted(operation="x")})
    with pytest.raises(Interrupted):
        run(fake, state, mappings)


def test_the_v1_events_of_refreshed_items_travel_in_the_delta(
    fake: FakeAws, state: State, mappings: Mappings
) -> None:
    fake.instances = {"i-1": "stopped"}
    fake.put("1", firehose(state_change("i-1", "stopped")))
    sink = ListSink()

    result = run(fake, state, mappings, sink)

    assert result.components == 1 and sorted(sink.components()) == ["i-1"]
    [[event]] = sink.payloads[0][1]["events"].values()  # events by type
    assert (event["event_type"], event["host"], event["msg_text"]) == ("ec2_state", "i-1", "stopped")
