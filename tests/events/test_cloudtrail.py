"""CloudTrail fallback (`engine.events.cloudtrail`): LookupEvents via botocore's Stubber (moto answers it
500)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from engine.aws import fetch
from engine.aws.sessions import Account, client_config
from engine.core.state import State
from engine.events import cloudtrail
from engine.events.cloudtrail import (
    CURSOR_KEY,
    WRITES_ONLY,
    Cursor,
    commit_cursor,
    load_cursor,
    lookup_envelopes,
)
from tests.support import ACCOUNT, ROLE, FakeClock

REGION = "eu-west-1"
SINCE = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
NOW = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 10, 5, 0, tzinfo=UTC)
T2 = datetime(2024, 5, 1, 10, 10, 0, tzinfo=UTC)
T3 = datetime(2024, 5, 1, 10, 20, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> FakeClock:
    """No test really sleeps, and each starts with fresh rate buckets."""
    fake = FakeClock()
    monkeypatch.setattr(fetch.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(fetch.time, "sleep", fake.sleep)
    monkeypatch.setattr(cloudtrail, "_buckets", {})
    return fake


@pytest.fixture
def account() -> Account:
    session = boto3.Session(aws_access_key_id="stub", aws_secret_access_key="stub", region_name=REGION)
    return Account(id=ACCOUNT, role_arn=ROLE, session=session, config=client_config(1))


@pytest.fixture
def state(tmp_path) -> Iterator[State]:
    with State(tmp_path / "state.db") as opened:
        yield opened


@pytest.fixture
def stub(account) -> Iterator[Stubber]:
    with Stubber(account.client("cloudtrail", REGION)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def detail(
    event_id: str, when: datetime, name: str = "CreateQueue", source: str = "sqs.amazonaws.com"
) -> dict:
    return {
        "eventVersion": "1.08",
        "eventID": event_id,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": source,
        "eventName": name,
        "awsRegion": REGION,
        "requestParameters": {"queueName": event_id},
        "responseElements": None,
    }


def event(event_id: str, when: datetime, raw: str | None = None, **kwargs: str) -> dict:
    return {
        "EventId": event_id,
        "EventName": kwargs.get("name", "CreateQueue"),
        "ReadOnly": "false",
        "EventTime": when,
        "EventSource": kwargs.get("source", "sqs.amazonaws.com"),
        "CloudTrailEvent": json.dumps(detail(event_id, when, **kwargs)) if raw is None else raw,
    }


def params(start: datetime, token: str | None = None) -> dict:
    expected = {"LookupAttributes": WRITES_ONLY, "StartTime": start, "EndTime": NOW}
    return expected if token is None else {**expected, "NextToken": token}


def ids(lookup: cloudtrail.Lookup) -> list[str]:
    return [e["detail"]["eventID"] for e in lookup.envelopes]


def test_first_lookup_starts_at_since_follows_pages_and_returns_envelopes_oldest_first(account, state, stub):
    assert WRITES_ONLY == [{"AttributeKey": "ReadOnly", "AttributeValue": "false"}]
    newest_first = [
        event("e4", T3, source="ec2.amazonaws.com", name="RunInstances"),
        event("e3", T2),
        event("e2", T2, source="elasticloadbalancing.amazonaws.com", name="CreateLoadBalancer"),
        event("e1", T1),
    ]
    stub.add_response("lookup_events", {"Events": newest_first[:2], "NextToken": "t1"}, params(SINCE))
    stub.add_response("lookup_events", {"Events": newest_first[2:]}, params(SINCE, "t1"))

    lookup = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)

    assert ids(lookup) == ["e1", "e2", "e3", "e4"]
    assert (lookup.requests, lookup.skipped, lookup.duplicates, lookup.truncated) == (2, 0, 0, False)
    assert lookup.envelopes[1] == {
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.elasticloadbalancing",
        "region": REGION,
        "time": "2024-05-01T10:10:00Z",
        "detail": detail("e2", T2, source="elasticloadbalancing.amazonaws.com", name="CreateLoadBalancer"),
    }
    assert [e["source"] for e in lookup.envelopes] == [
        "aws.sqs",
        "aws.elasticloadbalancing",
        "aws.sqs",
        "aws.ec2",
    ]
    assert lookup.cursor == Cursor(T3, {"e4": T3, "e3": T2, "e2": T2, "e1": T1})


def test_bad_cloudtrail_event_is_skipped_counted_and_logged(account, state, stub, caplog):
    events = [
        event("e3", T3),
        event("bad", T2, raw="{not json"),
        event("list", T2, raw="[1]"),
        event("e1", T1),
    ]
    stub.add_response("lookup_events", {"Events": events}, params(SINCE))

    with caplog.at_level(logging.WARNING, logger="aws_topology"):
        lookup = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)

    assert ids(lookup) == ["e1", "e3"]
    assert lookup.skipped == 2
    logged = [r.getMessage() for r in caplog.records if "event=cloudtrail.bad_event" in r.getMessage()]
    assert logged == [  # oldest first (the lookup reads CloudTrail's newest-first answer backwards)
        f"event=cloudtrail.bad_event account={ACCOUNT} region={REGION} id=list "
        "problem='not a JSON object: list'",
        f"event=cloudtrail.bad_event account={ACCOUNT} region={REGION} id=bad problem='bad JSON: Expecting "
        "property name enclosed in double quotes: line 1 column 2 (char 1)'",
    ]
    assert set(lookup.cursor.seen) == {"e1", "bad", "list", "e3"}  # not counted again when re-read


def test_cursor_moves_only_on_commit(account, state, stub):
    stub.add_response("lookup_events", {"Events": [event("e1", T1)]}, params(SINCE))
    stub.add_response("lookup_events", {"Events": [event("e1", T1)]}, params(SINCE))

    first = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)
    again = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)  # not delivered: read again

    assert ids(first) == ids(again) == ["e1"]
    assert load_cursor(state, ACCOUNT, REGION) is None
    assert state.get(CURSOR_KEY.format(account=ACCOUNT, region=REGION)) is None

    commit_cursor(state, ACCOUNT, REGION, again.cursor)

    assert load_cursor(state, ACCOUNT, REGION) == Cursor(T1, {"e1": T1})
    assert state.get(f"cloudtrail.cursor.{ACCOUNT}.{REGION}") == {
        "time": "2024-05-01T10:05:00.000000+00:00",
        "seen": {"e1": "2024-05-01T10:05:00.000000+00:00"},
    }


def test_after_commit_lookup_starts_at_the_cursor_and_drops_only_the_events_already_seen(
    account, state, stub
):
    no_overlap = timedelta(0)
    stub.add_response("lookup_events", {"Events": [event("e2", T2), event("e1", T1)]}, params(SINCE))
    first = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW, overlap=no_overlap)
    commit_cursor(state, ACCOUNT, REGION, first.cursor)
    assert first.cursor == Cursor(T2, {"e2": T2})

    # StartTime is inclusive: e2 comes again; e2b happened in the same second and is new
    stub.add_response(
        "lookup_events", {"Events": [event("e3", T3), event("e2b", T2), event("e2", T2)]}, params(T2)
    )
    second = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW, overlap=no_overlap)

    assert ids(second) == ["e2b", "e3"]
    assert second.duplicates == 1
    assert second.cursor == Cursor(T3, {"e3": T3})


def test_an_event_delivered_late_within_the_overlap_is_read_once(account, state, stub):
    early = SINCE + timedelta(minutes=1)
    stub.add_response("lookup_events", {"Events": [event("e3", T3), event("e0", early)]}, params(SINCE))
    first = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)
    commit_cursor(state, ACCOUNT, REGION, first.cursor)
    assert first.cursor == Cursor(T3, {"e3": T3})  # e0 is more than the overlap before the cursor

    late = event("late", T2)  # happened before e3, visible only now
    start = T3 - cloudtrail.OVERLAP
    stub.add_response("lookup_events", {"Events": [event("e3", T3), late]}, params(start))
    second = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)
    commit_cursor(state, ACCOUNT, REGION, second.cursor)

    stub.add_response("lookup_events", {"Events": [event("e3", T3), late]}, params(start))
    third = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)

    assert (ids(second), second.duplicates) == (["late"], 1)
    assert (ids(third), third.duplicates) == ([], 2)
    assert third.cursor == Cursor(T3, {"e3": T3, "late": T2})


def test_a_cursor_older_than_the_last_full_scan_starts_at_the_scan(account, state, stub):
    commit_cursor(
        state, ACCOUNT, REGION, Cursor(SINCE - timedelta(days=3), {"old": SINCE - timedelta(days=3)})
    )
    stub.add_response("lookup_events", {"Events": []}, params(SINCE))

    lookup = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)

    assert lookup.envelopes == []
    assert lookup.cursor == load_cursor(state, ACCOUNT, REGION)  # nothing read: unchanged


def test_five_pages_are_paced_under_two_requests_a_second_shared_across_lookups(account, state, stub, clock):
    pages = [event(f"e{n}", T1 + timedelta(minutes=n)) for n in range(5, 0, -1)]
    for n, page in enumerate(pages):
        token = {"NextToken": f"t{n + 1}"} if n < 4 else {}
        stub.add_response("lookup_events", {"Events": [page], **token}, params(SINCE, f"t{n}" if n else None))

    lookup = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)

    assert ids(lookup) == ["e1", "e2", "e3", "e4", "e5"]
    assert sum(clock.slept) >= 1.5  # 2 at once, then one every 1/2 s
    assert clock.slept == pytest.approx([0.5, 0.5, 0.5])

    stub.add_response("lookup_events", {"Events": []}, params(SINCE))
    lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)  # same process, same bucket
    assert clock.slept == pytest.approx([0.5, 0.5, 0.5, 0.5])


def test_more_events_than_max_events_are_read_oldest_first_in_narrowed_windows(account, state, stub):
    page = [event("e3", T3), event("e2", T2), event("e1", T1)]
    stub.add_response("lookup_events", {"Events": page, "NextToken": "t1"}, params(SINCE))
    # the part read (newest 2: 10:10 to 11:00) halves the estimate: a window up to 10:25, then 10:07:30
    narrowed = {**params(SINCE), "EndTime": datetime(2024, 5, 1, 10, 25, tzinfo=UTC)}
    stub.add_response("lookup_events", {"Events": page}, narrowed)
    oldest = {**params(SINCE), "EndTime": datetime(2024, 5, 1, 10, 7, 30, tzinfo=UTC)}
    stub.add_response("lookup_events", {"Events": [event("e1", T1)]}, oldest)

    first = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW, max_events=2)

    assert (first.requests, first.truncated, ids(first)) == (3, True, ["e1"])
    assert first.cursor == Cursor(oldest["EndTime"], {"e1": T1}, resume=True)
    commit_cursor(state, ACCOUNT, REGION, first.cursor)
    # the next lookup resumes at that window's end, without the overlap, and reads the rest
    stub.add_response("lookup_events", {"Events": page[:2]}, params(oldest["EndTime"]))

    rest = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW, max_events=2)

    assert (rest.truncated, ids(rest)) == (False, ["e2", "e3"])
    assert rest.cursor is not None and (rest.cursor.time, rest.cursor.resume) == (T3, False)


def test_access_denied_propagates_and_leaves_the_cursor(account, state, stub):
    stub.add_client_error("lookup_events", service_error_code="AccessDeniedException", http_status_code=400)

    with pytest.raises(ClientError) as raised:
        lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)

    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    assert load_cursor(state, ACCOUNT, REGION) is None


def test_unreadable_cursor_falls_back_to_since_and_naive_times_are_refused(account, state, stub, caplog):
    state.set(CURSOR_KEY.format(account=ACCOUNT, region=REGION), {"no": "time"})
    stub.add_response("lookup_events", {"Events": []}, params(SINCE))

    with caplog.at_level(logging.WARNING, logger="aws_topology"):
        lookup = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)

    assert (lookup.envelopes, lookup.cursor) == ([], None)
    assert caplog.messages == [
        f"event=cloudtrail.bad_cursor account={ACCOUNT} region={REGION} problem=\"'time'\""
    ]
    with pytest.raises(ValueError, match="naive"):
        lookup_envelopes(account, REGION, state, since=SINCE.replace(tzinfo=None), now=NOW)


def test_events_missing_fields_get_envelopes_from_what_the_lookup_knows(account, state, stub):
    """No EventTime: the detail's eventTime (an offset, or none: UTC) orders the event; no eventSource,
    awsRegion or eventTime: the envelope says `aws.unknown`, the lookup's region and the read time."""
    bare = {"eventID": "bare", "eventName": "CreateQueue"}
    sqs = {**bare, "eventSource": "sqs.amazonaws.com"}
    offset = {**sqs, "eventID": "offset", "eventTime": "2024-05-01T12:03:00+02:00"}
    naive = {**sqs, "eventID": "naive", "eventTime": "2024-05-01T10:07:00", "awsRegion": "us-east-1"}
    newest_first = [
        {"EventId": "offset", "CloudTrailEvent": json.dumps(offset)},  # 10:03 UTC, listed as the newest
        {"EventId": "naive", "CloudTrailEvent": json.dumps(naive)},
        event("e2", T2),
        {"EventId": "bare", "CloudTrailEvent": json.dumps(bare)},  # no time at all: read now
    ]
    stub.add_response("lookup_events", {"Events": newest_first}, params(SINCE))

    lookup = lookup_envelopes(account, REGION, state, since=SINCE, now=NOW)

    assert ids(lookup) == ["offset", "naive", "e2", "bare"]
    assert lookup.envelopes[0]["time"] == "2024-05-01T12:03:00+02:00"
    assert [e["region"] for e in lookup.envelopes] == [REGION, "us-east-1", REGION, REGION]
    assert lookup.envelopes[3] == {
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.unknown",
        "region": REGION,
        "time": "2024-05-01T11:00:00Z",
        "detail": bare,
    }
    offset_time = datetime(2024, 5, 1, 10, 3, tzinfo=UTC)
    assert lookup.cursor == Cursor(T2, {"offset": offset_time, "naive": T1 + timedelta(minutes=2), "e2": T2})


def test_a_one_second_window_over_max_events_keeps_the_newest_and_says_what_it_dropped(
    account, state, stub, caplog
):
    now = SINCE + timedelta(seconds=1)
    same_second = [event(f"s{n}", SINCE + timedelta(milliseconds=900 - 100 * n)) for n in range(3)]
    stub.add_response("lookup_events", {"Events": same_second}, {**params(SINCE), "EndTime": now})

    with caplog.at_level(logging.WARNING, logger="aws_topology"):
        lookup = lookup_envelopes(account, REGION, state, since=SINCE, now=now, max_events=2)

    assert (ids(lookup), lookup.requests) == (["s1", "s0"], 1)
    assert caplog.messages == [
        f"event=cloudtrail.dropped account={ACCOUNT} region={REGION} start=2024-05-01T10:00:00.000000+00:00 "
        "end=2024-05-01T10:00:01.000000+00:00 kept=2: a window of 0:00:01 holds more events than max_events"
    ]


def test_bounds_and_times_are_checked_by_name(account, state, stub):
    with pytest.raises(ValueError, match=r"^max_events must be at least 1, not 0$"):
        lookup_envelopes(account, REGION, state, since=SINCE, now=NOW, max_events=0)
    with pytest.raises(ValueError, match=r"^now is a naive datetime"):
        lookup_envelopes(account, REGION, state, since=SINCE, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match=r"^since is a naive datetime"):
        lookup_envelopes(account, REGION, state, since=SINCE.replace(tzinfo=None), now=NOW)
    stub.add_response("lookup_events", {"Events": [event("e1", T1)]}, params(SINCE))
    assert ids(lookup_envelopes(account, REGION, state, since=SINCE, now=NOW, max_events=1)) == ["e1"]


def test_a_cursor_stored_as_a_bare_time_is_read_as_one(state):
    state.set(CURSOR_KEY.format(account=ACCOUNT, region=REGION), "2024-05-01T10:05:00Z")
    assert load_cursor(state, ACCOUNT, REGION) == Cursor(T1)
