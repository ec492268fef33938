"""CloudTrail fallback: an account's recent write API calls in one region, as EventBridge envelopes.

Used by the event-delta phase when an account's log bucket is absent or unreadable.
In: an `Account`, a region, the `State` (the region's cursor) and `since`, the start of the last complete
full scan. Out: `Lookup`, the envelopes (`detail-type` "AWS API Call via CloudTrail", shaped as EventBridge
would have delivered them, oldest first) and the cursor to commit once the delta built from them was
delivered. Reading never moves the cursor: `commit_cursor` does, so events are applied at least once.

`LookupEvents` is paced under CloudTrail's 2 requests/s per account and region, shared by every lookup of
the process. Its `StartTime` is inclusive and CloudTrail delivers some events minutes late, so each lookup
re-reads `overlap` before the cursor and drops the events whose ids the cursor already holds. LookupEvents
answers newest first: when a window holds more than `max_events` events, the window is narrowed from its
start until its events fit, so events are read oldest first and none is skipped; the cursor then stops at
the window's end (`Cursor.resume`: the next lookup starts there, without the overlap) and `truncated`
says more remain. A client error (AccessDenied, throttling after retries, ...) propagates as botocore
raises it.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.aws.fetch import TokenBucket
from engine.aws.sessions import Account
from engine.core.state import State
from engine.language.loader import CLOUDTRAIL, Rate

log = logging.getLogger("aws_topology")

CURSOR_KEY = "cloudtrail.cursor.{account}.{region}"
RATE = Rate(per_second=2, burst=2)  # LookupEvents: 2 requests per second per account per region
OVERLAP = timedelta(minutes=15)  # CloudTrail's documented delivery delay; later events are left to a scan
MIN_WINDOW = timedelta(seconds=1)  # a window is not narrowed below this (LookupEvents has whole seconds)
NARROWINGS = 12  # windows tried per lookup before the newest `max_events` of the last one are taken
WRITES_ONLY = [{"AttributeKey": "ReadOnly", "AttributeValue": "false"}]

_buckets: dict[tuple[str, str], TokenBucket] = {}
_buckets_lock = threading.Lock()


@dataclass(frozen=True)
class Cursor:
    """How far a region was read: the newest event time and the ids of the events read near it."""

    time: datetime
    seen: dict[str, datetime] = field(default_factory=dict)  # eventID -> event time, within the overlap
    resume: bool = False  # a narrowed window ended at `time`: the next lookup starts there, no overlap

    def to_json(self) -> dict:
        stored = {"time": _iso(self.time), "seen": {i: _iso(t) for i, t in sorted(self.seen.items())}}
        return {**stored, "resume": True} if self.resume else stored

    @classmethod
    def from_json(cls, value: Any) -> Cursor:
        """From its stored form; a bare ISO-8601 time is a cursor without ids."""
        if isinstance(value, str):
            return cls(_parse(value))
        seen = {str(i): _parse(t) for i, t in (value.get("seen") or {}).items()}
        return cls(_parse(value["time"]), seen, value.get("resume") is True)

    def start(self, overlap: timedelta) -> datetime:
        """Where the next lookup starts."""
        return self.time if self.resume else self.time - overlap


@dataclass
class Lookup:
    envelopes: list[dict]
    cursor: Cursor | None  # to commit after delivery; the previous one when nothing new was read
    skipped: int = 0  # events whose CloudTrailEvent is not a JSON object
    duplicates: int = 0  # events the cursor had already seen
    truncated: bool = False  # the window was narrowed: newer events are left to the next lookup
    requests: int = 0


def lookup_envelopes(
    account: Account,
    region: str,
    state: State,
    *,
    since: datetime,
    now: datetime | None = None,
    max_events: int = 10_000,
    overlap: timedelta = OVERLAP,
) -> Lookup:
    """The write events of `region` after the stored cursor (or from `since`) up to `now`, oldest first.

    Reads from the later of `since` and the cursor's start: events before `since` are covered by that
    full scan. A window of more than `max_events` events is narrowed (`truncated`: the rest is left to the
    next lookup).
    """
    if max_events < 1:
        raise ValueError(f"max_events must be at least 1, not {max_events}")
    now = _aware(now or datetime.now(UTC), "now")
    since = _aware(since, "since")
    previous = load_cursor(state, account.id, region)
    start = since if previous is None else max(since, previous.start(overlap))
    result = Lookup(envelopes=[], cursor=previous)
    if start >= now:  # nothing can be newer yet (a cursor ahead of the local clock)
        return result

    end = now
    for _ in range(NARROWINGS):
        events, more = _read(account, region, start, end, max_events, result)
        if not more or end - start <= MIN_WINDOW:
            break
        result.truncated = True  # the events after `end` are left to the next lookup
        oldest = events[min(len(events), max_events) - 1].get("EventTime") if events else None
        part = end - oldest if isinstance(oldest, datetime) else end - start
        end = start + max(MIN_WINDOW, min((end - start) / 2, part / 2))
    if more:
        log.warning(
            "event=cloudtrail.dropped account=%s region=%s start=%s end=%s kept=%d: a window of %s holds "
            "more events than max_events", account.id, region, _iso(start), _iso(end), max_events, MIN_WINDOW,
        )  # fmt: skip

    seen = dict(previous.seen) if previous else {}
    read: list[tuple[datetime, dict]] = []
    for event in reversed(events[:max_events]):  # LookupEvents answers newest first
        event_id = event.get("EventId")
        if event_id and event_id in seen:
            result.duplicates += 1
            continue
        detail = _detail(event, account.id, region)
        moment = _event_time(event, detail)
        if event_id and moment is not None:
            seen[event_id] = moment
        if detail is None:
            result.skipped += 1
            continue
        read.append((moment or now, _envelope(detail, region, moment or now)))
    read.sort(key=lambda pair: pair[0])  # stable: same-second events keep CloudTrail's order
    result.envelopes = [envelope for _, envelope in read]
    result.cursor = _advance(previous, seen, overlap, end if result.truncated else None)
    return result


def _read(
    account: Account, region: str, start: datetime, end: datetime, max_events: int, result: Lookup
) -> tuple[list[dict], bool]:
    """The newest events of [start, end], up to `max_events` (a page more at most); whether more remain."""
    client = account.client("cloudtrail", region, "LookupEvents")
    bucket = _bucket(account.id, region)
    params: dict[str, Any] = {"LookupAttributes": WRITES_ONLY, "StartTime": start, "EndTime": end}
    events: list[dict] = []
    while True:
        bucket.take()
        page = client.lookup_events(**params)
        result.requests += 1
        events += page.get("Events", [])
        token = page.get("NextToken")
        if len(events) >= max_events or not token or token == params.get("NextToken"):
            return events, len(events) > max_events or bool(token)
        params = {**params, "NextToken": token}


def load_cursor(state: State, account_id: str, region: str) -> Cursor | None:
    """The committed cursor of (account, region); None when there is none or it cannot be read."""
    value = state.get(CURSOR_KEY.format(account=account_id, region=region))
    if value is None:
        return None
    try:
        return Cursor.from_json(value)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning(
            "event=cloudtrail.bad_cursor account=%s region=%s problem=%r", account_id, region, str(exc)
        )
        return None


def commit_cursor(state: State, account_id: str, region: str, cursor: Cursor | None) -> None:
    """Store `cursor` (from `Lookup.cursor`); call only once the delta built from the lookup was delivered."""
    if cursor is not None:
        state.set(CURSOR_KEY.format(account=account_id, region=region), cursor.to_json())


def _bucket(account_id: str, region: str) -> TokenBucket:
    with _buckets_lock:
        return _buckets.setdefault((account_id, region), TokenBucket(RATE))


def _advance(
    previous: Cursor | None, seen: dict[str, datetime], overlap: timedelta, until: datetime | None
) -> Cursor | None:
    """The newest event time read, keeping the ids a lookup starting `overlap` before it would read again;
    `until`: a narrowed window's end, where the next lookup resumes."""
    if until is not None:
        return Cursor(until, {i: t for i, t in seen.items() if t >= until - overlap}, resume=True)
    if not seen:
        return previous
    newest = max(seen.values())
    if previous is not None:
        newest = max(newest, previous.time)
    return Cursor(newest, {i: t for i, t in seen.items() if t >= newest - overlap})


def _detail(event: dict, account_id: str, region: str) -> dict | None:
    """The parsed `CloudTrailEvent`; None (logged) when it is missing or not a JSON object."""
    raw = event.get("CloudTrailEvent")
    try:
        detail = json.loads(raw) if isinstance(raw, str | bytes) else None
        problem = None if isinstance(detail, dict) else f"not a JSON object: {type(detail).__name__}"
    except ValueError as exc:
        detail, problem = None, f"bad JSON: {exc}"
    if problem is not None:
        log.warning(
            "event=cloudtrail.bad_event account=%s region=%s id=%s problem=%r",
            account_id, region, event.get("EventId"), problem[:200],
        )  # fmt: skip
        return None
    return detail


def _event_time(event: dict, detail: dict | None) -> datetime | None:
    moment = event.get("EventTime")
    if isinstance(moment, datetime):
        return moment.astimezone(UTC)
    try:
        return _parse(str((detail or {})["eventTime"]))
    except (KeyError, ValueError):
        return None


def _envelope(detail: dict, region: str, moment: datetime) -> dict:
    """What EventBridge would have delivered for this CloudTrail event."""
    prefix = str(detail.get("eventSource") or "").split(".", 1)[0] or "unknown"
    return {
        "detail-type": CLOUDTRAIL,
        "source": f"aws.{prefix}",
        "region": detail.get("awsRegion") or region,
        "time": detail.get("eventTime") or moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": detail,
    }


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} is a naive datetime ({moment.isoformat()}): give a timezone-aware one")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
