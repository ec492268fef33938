"""Delta: apply an account's new EventBridge objects as delta payloads, then delete what was delivered.

In: `Config`, one `Instance`, `Mappings`, a sink, the `State`. Out: `AccountDelta` (counts, the objects
deleted, kept, corrupt). Steps: refuse an unversioned bucket; list each configured region's prefix; drop
objects older than the last complete snapshot (its payloads were delivered: their effect is in it); read
the rest (`events.envelopes`), turn them into changes (`events.Rules`), keep the last change per resource,
re-describe refreshed resources by id through their mapping's `get` (children included), send one delta
(components, relations, `delete_ids`; no snapshot flags) and only then delete the objects whose changes
all applied. A corrupt object is left in place, recorded in the state and not read again while unchanged.
When the bucket is missing or denied, CloudTrail `LookupEvents` is read instead (`engine.cloudtrail`), from a
cursor that moves, like an object's deletion, only once the delta is delivered.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3

from engine.auth import GLOBAL_REGION, Account, assume
from engine.bucket import LogBucket, Unversioned
from engine.cloudtrail import commit_cursor, lookup_envelopes
from engine.collect import Collector, UnitResult
from engine.config import Config, Instance
from engine.errors import CallFailed, CredentialsError, DeliveryError, Unreachable
from engine.events import GLOBAL, Change, CorruptObject, Rules, envelopes, latest, prefixes
from engine.fetch import Fetcher
from engine.mappings import Mappings
from engine.payload import build_payloads, service_check
from engine.plan import Unit
from engine.scan import check_tags, labels_for
from engine.sink import Sink
from engine.state import State

log = logging.getLogger("aws_topology")



@dataclass
class AccountDelta:
    account: str
    bucket: str
    error: str | None = None
    bad_input: bool = False
    objects: int = 0
    envelopes: int = 0
    unknown: int = 0  # envelopes no rule matches
    changes: int = 0
    components: int = 0
    deletes: int = 0
    payloads: int = 0
    deleted: list[str] = field(default_factory=list)
    stale: int = 0  # older than the last complete snapshot: dropped unread
    kept: list[str] = field(default_factory=list)  # their changes did not all apply: read again next run
    source: str = "bucket"
    truncated: bool = False  # CloudTrail had more events than one run reads
    corrupt: dict[str, str] = field(default_factory=dict)
    failed_units: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not (self.error or self.kept or self.failed_units or self.corrupt or self.truncated)


def apply_events(
    config: Config,
    instance: Instance,
    mappings: Mappings,
    sink: Sink,
    state: State,
    fetcher: Fetcher,
    *,
    workers: int = 8,
    max_bytes: int = 1_000_000,
    endpoint_url: str | None = None,
    base: boto3.Session | None = None,
) -> AccountDelta:
    started = time.monotonic()
    result = AccountDelta(instance.account_id, instance.log_bucket_name)
    try:
        account = assume(config, instance, base=base, endpoint_url=endpoint_url, workers=workers)
    except (CredentialsError, Unreachable) as exc:
        result.error, result.bad_input = str(exc), isinstance(exc, CredentialsError)
        return result
    rules = Rules(mappings)
    bucket = LogBucket(account, result.bucket, fetcher, state, "events")
    try:
        bucket.check_versioned()
    except Unversioned as exc:
        result.error, result.bad_input = str(exc), True
        return result
    except CallFailed as exc:  # a denied or missing bucket: CloudTrail instead
        result.source = f"cloudtrail (bucket {result.bucket}: {problem(exc)})"
        log.warning("event=events.fallback bucket=%s problem=%r", result.bucket, problem(exc))
        sources = _from_cloudtrail(account, instance, rules, state, result)
    else:
        sources = _from_bucket(bucket, instance, rules, state, result)
    if result.error is None:
        _apply(account, instance, mappings, sink, fetcher, sources, result, max_bytes)
    result.seconds = time.monotonic() - started
    return result


@dataclass
class Source:
    """Where changes came from (a bucket object, one region's CloudTrail lookup) and how to retire it."""

    name: str
    changes: list[Change]
    retire: Callable[[], None]  # delete the object / move the cursor: only once the delta is delivered


def _from_bucket(
    bucket: LogBucket, instance: Instance, rules: Rules, state: State, result: AccountDelta
) -> list[Source]:
    try:
        objects = bucket.objects(prefixes(instance.account_id, instance.regions))
    except CallFailed as exc:
        result.error = f"cannot list bucket {bucket.name}: {exc}"
        return []
    result.objects = len(objects)
    stale, fresh = split_stale(objects, state, instance.account_id)
    result.stale = len(stale)
    retired: list[str] = []
    sources = [Source("stale", [], lambda: retired.extend(o["Key"] for o in stale))] if stale else []
    corrupt = bucket.known_corrupt()
    for obj in fresh:
        key = obj["Key"]
        if problem := bucket.corrupt_problem(obj, corrupt):
            result.corrupt[key] = problem
            continue
        try:
            found = envelopes(bucket.read(key))
        except CorruptObject as exc:
            result.corrupt[key] = str(exc)
            bucket.record_corrupt(corrupt, obj, str(exc))
            continue
        except CallFailed as exc:  # gone or denied since the listing: read again next run
            result.error = f"cannot read {key}: {exc}"
            return []
        sources.append(Source(key, _changes(found, rules, instance, result), lambda k=key: retired.append(k)))
    bucket.save_corrupt(corrupt, {o["Key"] for o in objects})
    if sources:  # deletes run after every source of this run was retired
        sources.append(Source("delete", [], lambda: result.deleted.extend(bucket.delete(retired))))
    return sources


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
        except Exception as exc:
            result.error = f"cannot read events from CloudTrail in {region} either: {problem(exc)}"
            return []
        result.truncated |= lookup.truncated
        changes = _changes(lookup.envelopes, rules, instance, result)

        def retire(region: str = region, cursor: Any = lookup.cursor) -> None:
            commit_cursor(state, instance.account_id, region, cursor)

        sources.append(Source(f"cloudtrail:{region}", changes, retire))
    return sources


def _changes(found: list[dict], rules: Rules, instance: Instance, result: AccountDelta) -> list[Change]:
    result.envelopes += len(found)
    per_envelope = [list(rules.changes(e, instance.account_id, instance.regions)) for e in found]
    result.unknown += sum(1 for cs in per_envelope if not cs)
    return [c for cs in per_envelope for c in cs]


def _apply(
    account: Account, instance: Instance, mappings: Mappings, sink: Sink, fetcher: Fetcher,
    sources: list[Source], result: AccountDelta, max_bytes: int,
) -> None:  # fmt: skip
    """Refresh and delete as the changes say, send one delta, then retire the sources that fully applied."""
    changes = latest([c for source in sources for c in source.changes])
    result.changes = len(changes)
    refreshed = _refresh(account, instance, mappings, fetcher, changes)
    units = [u for us in refreshed.values() for u in us]
    failed = {key for key, us in refreshed.items() if not all(u.complete for u in us)}
    result.failed_units = [u.unit.label for u in units if not u.complete]
    components = [c for u in units for c in u.components]
    relations = [r for u in units for r in u.relations]
    deletes = list(dict.fromkeys(c.delete_id for c in changes if c.delete and c.delete_id))
    result.components, result.deletes = len(components), len(deletes)
    problems = [f"{u.unit.label}: {u.error or u.status}" for u in units if not u.complete]
    problems += [f"corrupt object {key}: {why}" for key, why in result.corrupt.items()]
    check = service_check("can_update", not problems, "\n".join(problems), check_tags(instance))
    payloads = build_payloads(
        instance.account_id, components, relations, deletes, snapshot=False, max_bytes=max_bytes,
        events=[e for u in units for e in u.events], service_checks=[check],
    )  # fmt: skip
    try:
        for number, payload in enumerate(payloads, 1):
            sink.send(payload, f"events-{instance.account_id}-{number:04d}")
    except DeliveryError as exc:
        result.error = f"delta not delivered, nothing retired: {exc}"
        result.kept = [s.name for s in sources if s.changes]
        return
    result.payloads = len(payloads)
    for source in sources:
        if any((c.resource.key, c.region) in failed for c in source.changes):
            result.kept.append(source.name)  # read again next run
        else:
            source.retire()


def split_stale(objects: list[dict], state: State, account: str) -> tuple[list[dict], list[dict]]:
    """Objects older than the start of the last complete snapshot (once nothing of it waits in the spool)."""
    last = state.last_run(account, "scan", complete_only=True)
    if last is None or state.spool_count() > 0:
        return [], objects
    since: datetime = last["started_at"]
    return [o for o in objects if o["LastModified"] < since], [
        o for o in objects if o["LastModified"] >= since
    ]


def _refresh(
    account: Account, instance: Instance, mappings: Mappings, fetcher: Fetcher, changes: list[Change]
) -> dict[tuple[str, str], list[UnitResult]]:
    """Re-describe the refreshed resources: one unit per (type, region) with all of its ids, children too."""
    ids: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_key = {r.key: r for r in mappings.resources}
    for change in changes:
        if not change.delete:
            ids[(change.resource.key, change.region)].append(change.id)
    collector = Collector(account, mappings, fetcher, labels_for(instance))
    configured = tuple(r for r in instance.regions if r != GLOBAL)
    results: dict[tuple[str, str], list[UnitResult]] = {}
    for (key, region), wanted in ids.items():
        resource = by_key[key]
        if resource.get is None:
            log.warning("event=events.no_get resource=%s ids=%d", key, len(wanted))
            continue
        client_region = GLOBAL_REGION if region in (GLOBAL, "account") else region
        regions = configured if region == "account" else (client_region,)
        unit = Unit(account.id, region, client_region, resource, regions, tuple(dict.fromkeys(wanted)))
        results[(key, region)] = collector.run(unit)
    return results


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
