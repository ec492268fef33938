"""Delta: apply an account's new EventBridge objects as delta payloads, then delete what was delivered.

In: `Config`, one `Instance`, `Mappings`, a sink, the `State`. Out: `AccountDelta` (counts, the objects
deleted, kept, corrupt). Steps: refuse an unversioned bucket; list each configured region's prefix; drop
unread the objects written well before the last complete snapshot whose payloads all reached the receiver
(`STALE_MARGIN` before its start: their effect is in it); read the rest (`AHEAD` of them downloaded on threads
while one is read), turn them into changes (`eventbridge.Rules`; failed calls and other accounts' envelopes
change nothing), keep the latest change per resource, re-describe refreshed *and deleted* resources by id
through their mapping's `get` (children included): a delete is sent only for ids the get reports gone; one
still found is refreshed instead and tried again next run, at most `CONFIRM_TRIES` runs. One delta is sent
(components, relations, `delete_ids`; no snapshot flags), then the objects are deleted, exactly the version
read. An object whose changes did not all apply is kept and read again next run, and so is every newer one, so
that its events are never applied after newer ones. Any problem reading or deriving changes from one object
(corrupt, too large, unreadable, an unexpected JSON type) records it as corrupt: left in place, not read again
while unchanged (one that could not be read: not before `UNREADABLE_RETRY`), shown by `status`; the other
objects go on. When the bucket is missing or denied (its versioning or its listing), CloudTrail `LookupEvents`
is read instead (`engine.events.cloudtrail`), from a cursor that moves, like an object's deletion, only once
the delta is delivered.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from engine.aws.fetch import Fetcher
from engine.aws.log_bucket import LogBucket, TooLarge, Unversioned
from engine.aws.sessions import GLOBAL_REGION, Account, assume
from engine.core.ahead import in_order
from engine.core.config import Config, Instance
from engine.core.errors import (
    AccessDenied,
    CallFailed,
    CredentialsError,
    DeliveryError,
    Interrupted,
    Throttled,
    Unreachable,
)
from engine.core.phase import LIMITS, Limits, PhaseResult
from engine.core.stackpack import check_tags
from engine.core.state import State
from engine.delivery.payload import build_payloads, service_check
from engine.delivery.sinks import Sink
from engine.events.cloudtrail import commit_cursor, lookup_envelopes
from engine.events.eventbridge import (
    GLOBAL,
    Change,
    CorruptObject,
    Rules,
    each_envelope,
    gc_paused,
    latest,
    prefixes,
)
from engine.language.components import labels_for
from engine.language.loader import Mappings, Resource
from engine.scan.collect import Collector, UnitResult
from engine.scan.plan import Unit

log = logging.getLogger("aws_topology")

STALE_MARGIN = timedelta(minutes=5)  # clock skew, S3's whole seconds, Firehose buffering
CONFIRM_TRIES = 5  # runs a delete that AWS does not confirm yet is tried again
UNCONFIRMED_KEY = "events.unconfirmed.{account}"
UNREADABLE_RETRY = 3600.0  # seconds before an object that could not be read (KMS, archived) is read again
MAX_OBJECT = 16 << 20  # compressed bytes read of one object (Firehose writes at most 5 MB)
AHEAD = 2  # objects downloaded (each at most `MAX_OBJECT`) while the one before is read and dispatched


@dataclass
class AccountDelta(PhaseResult):
    bucket: str
    objects: int = 0
    envelopes: int = 0
    unknown: int = 0  # envelopes no rule matches
    failed_calls: int = 0  # envelopes of calls AWS refused (errorCode): they change nothing
    foreign: int = 0  # envelopes of another account
    bad_events: int = 0  # CloudTrail events the rules fail on (an unexpected JSON type): skipped
    changes: int = 0
    components: int = 0
    deletes: int = 0
    unconfirmed_deletes: int = 0  # the get still finds the resource: refreshed, tried again next run
    payloads: int = 0
    deleted: list[str] = field(default_factory=list)
    not_deleted: dict[str, str] = field(default_factory=dict)  # key -> S3 error code: applied again next run
    stale: int = 0  # older than the last complete, delivered snapshot: dropped unread
    kept: list[str] = field(default_factory=list)  # their changes did not all apply: read again next run
    source: str = "bucket"
    truncated: bool = False  # CloudTrail had more events than one run reads
    corrupt: dict[str, str] = field(default_factory=dict)
    failed_units: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (
            self.error or self.kept or self.failed_units or self.corrupt or self.truncated or self.not_deleted
        )

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "status": "complete" if self.complete else "INCOMPLETE", "source": repr(self.source),
            "objects": self.objects, "envelopes": self.envelopes, "unknown": self.unknown,
            "changes": self.changes, "components": self.components, "deletes": self.deletes,
            "payloads": self.payloads, "deleted_objects": len(self.deleted), "stale_objects": self.stale,
            "kept_objects": len(self.kept), "corrupt_objects": len(self.corrupt), **self.counts(),
        }  # fmt: skip
        if self.failed_units:
            summary["failed_units"] = ",".join(self.failed_units)
        if self.error:
            summary["error"] = repr(self.error)
        if self.interrupted:
            summary["interrupted"] = True
        return summary

    def counts(self) -> dict[str, Any]:
        """The summary fields beyond the basic ones, only when they say something."""
        found = {"failed_calls": self.failed_calls, "foreign": self.foreign, "bad_events": self.bad_events,
                 "unconfirmed_deletes": self.unconfirmed_deletes}  # fmt: skip
        summary: dict[str, Any] = {k: v for k, v in found.items() if v}
        if self.not_deleted:
            summary["not_deleted"] = ",".join(f"{k}({c})" for k, c in sorted(self.not_deleted.items()))
        return summary


def apply_events(
    config: Config,
    instance: Instance,
    mappings: Mappings,
    sink: Sink,
    state: State,
    fetcher: Fetcher,
    *,
    limits: Limits = LIMITS,
    endpoint_url: str | None = None,
    base: boto3.Session | None = None,
) -> AccountDelta:
    started = time.monotonic()
    result = AccountDelta(instance.account_id, instance.log_bucket_name)
    try:
        account = assume(config, instance, base=base, endpoint_url=endpoint_url, workers=limits.workers)
    except (CredentialsError, Unreachable) as exc:
        result.error, result.bad_input = str(exc), isinstance(exc, CredentialsError)
        return result
    rules = Rules(mappings)
    bucket = LogBucket(account, result.bucket, fetcher, state, "events")
    try:
        bucket.check_versioned()
        sources = _from_bucket(bucket, instance, rules, state, result)
    except Unversioned as exc:
        result.error, result.bad_input = str(exc), True
        return result
    except CallFailed as exc:  # a denied or missing bucket: CloudTrail instead
        result.source = f"cloudtrail (bucket {result.bucket}: {problem(exc)})"
        log.warning("event=events.fallback bucket=%s problem=%r", result.bucket, problem(exc))
        sources = _from_cloudtrail(account, instance, rules, state, result)
    if result.error is None:
        _apply(account, instance, mappings, sink, fetcher, state, sources, result, limits.max_bytes)
    result.seconds = time.monotonic() - started
    return result


@dataclass
class Source:
    """Where changes came from (a bucket object, one region's CloudTrail lookup) and how to retire it."""

    name: str
    changes: list[Change]
    retire: Callable[[], None]  # delete the object / move the cursor: only once the delta is delivered
    ordered: bool = True  # False: retiring it says nothing about the order of events (stale, delete)


def _from_bucket(
    bucket: LogBucket,
    instance: Instance,
    rules: Rules,
    state: State,
    result: AccountDelta,
    ahead: int = AHEAD,
) -> list[Source]:
    """One source per readable object, oldest first, `ahead` of them downloaded while one is read. A bucket
    whose listing is denied raises `AccessDenied` (CloudTrail is read instead); any other listing failure is
    the run's error."""
    try:
        objects = bucket.objects(prefixes(instance.account_id, instance.regions))
    except AccessDenied:
        raise
    except CallFailed as exc:
        result.error = f"cannot list bucket {bucket.name}: {exc}"
        return []
    result.objects = len(objects)
    corrupt = bucket.known_corrupt()
    readable = []
    for obj in objects:
        if known := bucket.corrupt_problem(obj, corrupt):
            result.corrupt[obj["Key"]] = known  # never read, never deleted while unchanged
        else:
            readable.append(obj)
    stale, fresh = split_stale(readable, state, instance.account_id)
    result.stale = len(stale)
    retired: list[dict] = []
    sources = [Source("stale", [], lambda: retired.extend(stale), ordered=False)] if stale else []

    def download(obj: dict) -> bytes:  # on a reading thread: waiting on S3 releases the GIL
        return bucket.read(obj, MAX_OBJECT)

    with closing(in_order(fresh, download, workers=max(ahead, 1), ahead=ahead, name="events")) as reads:
        for obj, read in reads:
            try:
                if isinstance(read, Exception):
                    raise read
                with gc_paused():  # each envelope decoded, dispatched and freed before the next
                    changes = _changes(each_envelope(read), rules, instance, result)
            except Throttled as exc:  # read again next run, like a kept object
                sources.append(Source(obj["Key"], [], lambda: None))
                result.kept.append(obj["Key"])
                log.warning("event=events.read_throttled key=%s problem=%r", obj["Key"], str(exc))
                continue
            except Interrupted:
                raise
            except Exception as exc:  # corrupt, too large, unreadable (KMS, archived), JSON of a wrong type
                why = str(exc) if isinstance(exc, CorruptObject | TooLarge | CallFailed) else _crash(exc)
                result.corrupt[obj["Key"]] = why
                unreadable = isinstance(exc, CallFailed)  # the cause may be fixed: tried again later
                bucket.record_corrupt(corrupt, obj, why, UNREADABLE_RETRY if unreadable else None)
                continue
            sources.append(Source(obj["Key"], changes, lambda o=obj: retired.append(o)))
    bucket.save_corrupt(corrupt, {o["Key"] for o in objects})

    def delete() -> None:
        done = bucket.delete(retired)
        result.deleted.extend(done.deleted)
        result.not_deleted.update(done.failed)

    if sources:  # deletes run after every source of this run was retired
        sources.append(Source("delete", [], delete, ordered=False))
    return sources


def _crash(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _from_cloudtrail(
    account: Account, instance: Instance, rules: Rules, state: State, result: AccountDelta
) -> list[Source]:
    """LookupEvents per configured region, from a cursor that moves only once the delta is delivered."""
    last = state.last_run(instance.account_id, "scan", complete_only=True)
    since = last["started_at"] if last else datetime.now(UTC)
    sources = []
    for region in dict.fromkeys(GLOBAL_REGION if r == GLOBAL else r for r in instance.regions):
        try:
            lookup = lookup_envelopes(account, region, state, since=since)
            changes = _changes(lookup.envelopes, rules, instance, result, strict=False)
        except Interrupted:
            raise
        except Exception as exc:
            result.error = f"cannot read events from CloudTrail in {region} either: {problem(exc)}"
            return []
        result.truncated |= lookup.truncated

        def retire(region: str = region, cursor: Any = lookup.cursor) -> None:
            commit_cursor(state, instance.account_id, region, cursor)

        sources.append(Source(f"cloudtrail:{region}", changes, retire))
    return sources


def _changes(
    found: Iterable[dict], rules: Rules, instance: Instance, result: AccountDelta, strict: bool = True
) -> list[Change]:
    """The changes of one object's (or lookup's) envelopes; counts go to `result` only once all derived.
    An envelope the rules fail on raises (`strict`: its object is corrupt) or is skipped and counted."""
    changes, counts = rules.dispatch(found, instance.account_id, instance.regions, None if strict else _bad)
    for name, count in counts.items():
        setattr(result, name, getattr(result, name) + count)
    return changes


def _bad(exc: Exception) -> None:
    log.warning("event=events.bad_event problem=%r", _crash(exc))


def _apply(
    account: Account, instance: Instance, mappings: Mappings, sink: Sink, fetcher: Fetcher, state: State,
    sources: list[Source], result: AccountDelta, max_bytes: int,
) -> None:  # fmt: skip
    """Refresh and confirm deletes as the changes say, send one delta, then retire the sources that fully
    applied (none newer than a kept one)."""
    retries = _unconfirmed(state, instance.account_id, mappings)
    changes = latest([c for c, _ in retries.values()] + [c for s in sources for c in s.changes])
    result.changes = len(changes)
    refreshed, lifted = _refresh(account, instance, mappings, fetcher, changes)
    units = [u for us in refreshed.values() for u in us]
    failed = {key for key, us in refreshed.items() if not all(u.complete for u in us)}
    failed |= {key for key, lift in lifted.items() if lift.found and lift.root in failed}  # its root's did
    result.failed_units = [u.unit.label for u in units if not u.complete]
    deletes, unconfirmed = _confirm(changes, refreshed, failed, lifted)
    components = [c for u in units for c in u.components]
    relations = [r for u in units for r in u.relations]
    result.components, result.deletes = len(components), len(deletes)
    result.unconfirmed_deletes = len(unconfirmed)
    problems = [f"{u.unit.label}: {u.error or u.status}" for u in units if not u.complete]
    problems += [f"corrupt object {key}: {why}" for key, why in result.corrupt.items()]
    check = service_check("can_update", not problems, "\n".join(problems), check_tags(instance))
    payloads = build_payloads(
        instance.account_id, components, relations, deletes, snapshot=False, max_bytes=max_bytes,
        events=[e for u in units for e in u.stackstate_events], service_checks=[check],
    )  # fmt: skip
    try:
        for number, payload in enumerate(payloads, 1):
            sink.send(payload, f"events-{instance.account_id}-{number:04d}")
    except DeliveryError as exc:
        result.error = f"delta not delivered, nothing retired: {exc}"
        result.kept = [s.name for s in sources if s.changes]
        return
    result.payloads = len(payloads)
    _save_unconfirmed(state, instance.account_id, retries, unconfirmed, failed)
    keeping = False  # once one source is kept, every newer one is kept too
    for source in sources:
        if source.ordered and source.name in result.kept:  # not read (throttled)
            keeping = True
        elif source.ordered and (keeping or _failed(source, failed)):
            keeping = True
            result.kept.append(source.name)  # read again next run
        else:
            source.retire()


def _confirm(
    changes: list[Change],
    refreshed: dict[tuple[str, str], list[UnitResult]],
    failed: set,
    lifted: dict[tuple[str, str], Lift] | None = None,
) -> tuple[list[str], list[Change]]:
    """The external ids to delete (the get no longer finds them, or the type has no get) and the delete
    changes whose resource the get still found. Deletes of failed units are neither."""
    found = {c["externalId"] for us in refreshed.values() for c in us[0].components}
    still = {(key, i) for key, lift in (lifted or {}).items() for i in lift.found}  # children get finds
    deletes, unconfirmed = [], []
    for change in changes:
        key = (change.resource.key, change.region)
        if not change.delete or not change.delete_id or key in failed:
            continue
        if change.delete_id in found or (key, change.id) in still:  # still there: refreshed, asked again
            unconfirmed.append(change)
        else:
            deletes.append(change.delete_id)
    return list(dict.fromkeys(deletes)), unconfirmed


def _failed(source: Source, failed: set) -> bool:
    return any((c.resource.key, c.region) in failed for c in source.changes)


def _retry_key(change: Change) -> str:
    return f"{change.resource.key}|{change.region}|{change.id}"


def _unconfirmed(state: State, account: str, mappings: Mappings) -> dict[str, tuple[Change, int]]:
    """The deletes AWS had not confirmed yet, as changes older than any event, with the runs tried."""
    by_key = {r.key: r for r in mappings.resources}
    found: dict[str, tuple[Change, int]] = {}
    for entry in state.get(UNCONFIRMED_KEY.format(account=account)) or []:
        try:
            change = Change(by_key[entry["resource"]], entry["region"], entry["id"], True, entry["delete_id"])
            found[_retry_key(change)] = (change, int(entry["tries"]))
        except (KeyError, TypeError, ValueError) as exc:  # a type no longer mapped, a hand-edited state
            log.warning("event=events.bad_unconfirmed entry=%r problem=%r", entry, _crash(exc))
    return found


def _save_unconfirmed(
    state: State, account: str, before: dict[str, tuple[Change, int]], now: list[Change], failed: set
) -> None:
    """Record the deletes still unconfirmed (one more try each); those of failed units stay as they were;
    past `CONFIRM_TRIES` runs a delete is given up (the next full scan settles it)."""
    record = {k: v for k, v in before.items() if (v[0].resource.key, v[0].region) in failed}
    for change in now:
        tries = before.get(_retry_key(change), (change, 0))[1] + 1
        if tries >= CONFIRM_TRIES:
            log.warning("event=events.delete_unconfirmed resource=%s id=%s tries=%d: given up",
                        change.resource.key, change.id, tries)  # fmt: skip
            continue
        record[_retry_key(change)] = (change, tries)
    entries = [{"resource": c.resource.key, "region": c.region, "id": c.id, "delete_id": c.delete_id,
                "tries": tries} for c, tries in record.values()]  # fmt: skip
    state.set(UNCONFIRMED_KEY.format(account=account), entries)


def split_stale(objects: list[dict], state: State, account: str) -> tuple[list[dict], list[dict]]:
    """Objects written `STALE_MARGIN` before the start of the last complete snapshot, when every payload
    of it reached the receiver (`summary.delivered`) and nothing waits in the spool; the rest."""
    last = state.last_run(account, "scan", complete_only=True)
    if last is None or last["summary"].get("delivered") is not True or state.spool_count() > 0:
        return [], objects
    before: datetime = last["started_at"] - STALE_MARGIN
    stale = [o for o in objects if o["LastModified"] < before]
    return stale, [o for o in objects if o["LastModified"] >= before]


@dataclass(frozen=True)
class Lift:
    """The changes of one (child type, region), lifted to its root: the child ids its `get` still found."""

    root: tuple[str, str]  # (root type, region): the unit refreshed in their stead
    found: frozenset[str] = frozenset()


def _refresh(
    account: Account, instance: Instance, mappings: Mappings, fetcher: Fetcher, changes: list[Change]
) -> tuple[dict[tuple[str, str], list[UnitResult]], dict[tuple[str, str], Lift]]:
    """Re-describe the changed resources: one unit per (type, region) with all of its ids, children too.
    Deleted ids are asked as well, to confirm them; types without `get` cannot be (their deletes go as is).
    A child type's ids are found by its `get` and refresh their root's ids instead (`Collector.lift`)."""
    ids: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_key = {r.key: r for r in mappings.resources}
    for change in changes:
        ids[(change.resource.key, change.region)].append(change.id)
    collector = Collector(account, mappings, fetcher, labels_for(instance))
    configured = tuple(r for r in instance.regions if r != GLOBAL)
    results: dict[tuple[str, str], list[UnitResult]] = {}
    lifted: dict[tuple[str, str], Lift] = {}

    def unit(resource: Resource, region: str, wanted: list[str]) -> Unit:
        client_region = GLOBAL_REGION if region in (GLOBAL, "account") else region
        regions = configured if region == "account" else (client_region,)
        return Unit(account.id, region, client_region, resource, regions, tuple(dict.fromkeys(wanted)))

    for (key, region), wanted in list(ids.items()):
        resource = by_key[key]
        if resource.parent is None or resource.get is None:  # a child without get: delete rules only
            continue
        outcome, found = collector.lift(unit(resource, region, wanted))
        results[(key, region)] = [outcome]
        root = (mappings.root(resource).key, region)
        lifted[(key, region)] = Lift(root, frozenset(found))
        ids[root] += [i for i in found.values() if i]
    for (key, region), wanted in ids.items():
        resource = by_key[key]
        if resource.parent is None and resource.get is not None and wanted:
            results[(key, region)] = collector.run(unit(resource, region, wanted))
    return results, lifted


def problem(exc: Exception) -> str:
    """One line on a failed call, whichever layer raised it: a bare failure by its AWS error code."""
    if type(exc) is CallFailed and not exc.problem:
        return str(exc.code)
    if isinstance(exc, CallFailed):
        return str(exc)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return f"{type(exc).__name__}: {str(exc)[:200]}"
