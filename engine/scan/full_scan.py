"""Full scan: every unit of every account, into one snapshot per account.

In: `Config`, `Mappings`, a sink, optionally the `State`. Out: `AccountScan` per account (the payloads
sent, unit results, permission gaps). `stop_snapshot` is true only when every unit of that account is
complete, or incomplete but carried forward: with a state, each unit's last complete result is kept, and an
incomplete unit re-sends it (for at most `max_carry_age` seconds), so one permanently denied type never keeps
an account's snapshot open forever. A unit that never completed sent nothing, so closing loses nothing.
Accounts are collected side by side (at most `accounts` at once), each at its own speed: every unit,
per-item call and join call of an account runs on the account's own `Scheduler` (at most `workers` at once,
as AWS limits each account separately), and the schedulers share one `Pool` of at most `max_threads`
threads (at most `workers` times the accounts side by side). Each account's payloads are built
and sent by the calling thread as soon as that account is collected, so sinks and the state are used from
one thread only. While an account runs, each unit's components and relations go to disk (`Spill`) as they are
shaped, 256 at a time; its payloads are then built and sent one at a time, so memory holds a batch per
running unit, not the estate.
Components come before relations in the payloads, so every relation is sent after the
components of the whole account (none is dropped for being early). A set `stop` event (SIGINT, SIGTERM)
ends the scan at the next API call; an interrupted account sends nothing. An account whose collection or
delivery raises is returned with `error` set (its type and message) and the other accounts go on; each
account's spill file is closed once its payloads are sent.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

import boto3

from engine.aws.fetch import Fetcher
from engine.aws.sessions import assume
from engine.core.config import Config, Instance
from engine.core.errors import AccessDenied, CredentialsError, Unreachable
from engine.core.phase import LIMITS, Limits, PhaseResult
from engine.core.scheduler import Pool, Scheduler
from engine.core.stackpack import check_tags
from engine.core.state import State
from engine.delivery.payload import SEPARATORS, build_payloads, iter_payloads, service_check
from engine.delivery.sinks import Sink
from engine.delivery.spool import DELIVERED, REJECTED
from engine.language.components import labels_for
from engine.language.loader import Mappings
from engine.scan.collect import Collector, UnitResult
from engine.scan.plan import Unit, plan
from engine.scan.progress import Progress

log = logging.getLogger("aws_topology")

MAX_CARRY_AGE = 7 * 24 * 3600  # a week: then the unit stops counting and the snapshot stays open
# Listed items of the units running, all accounts together, past which no new unit starts (fan-out work of
# started units goes on): their parsed responses and items are most of what a scan holds, so its peak stays
# near the same height whatever the estate (docs/benchmarks.md, "Memory").
MAX_ITEMS = 10_000
PATIENCE = 3  # extra rounds for a call still throttled after botocore's retries (2, 4, 8 s back-off)


@dataclass(frozen=True)
class Span:
    """Where a list of records lies in a `Spill`: `count` JSON lines from byte `start`, `size` bytes."""

    start: int = 0
    size: int = 0
    count: int = 0


class Spill:
    """An account's shaped records on disk (an anonymous temporary file) until its payloads are sent.

    A unit's components and relations are written while it is shaped (`AccountScan.keep`), so an account of
    50,000 resources holds in memory a batch per running unit, and payloads are then built reading one
    span (a batch) at a time.
    `put` may be called from any thread; reads use `pread`, so they never move a shared file position.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="aws-topology-")  # noqa: SIM115 (lives with the scan)
        self._size = 0
        self._lock = threading.Lock()

    def put(self, records: list[dict]) -> Span:
        if not records:
            return Span()
        data = b"".join(json.dumps(r, separators=SEPARATORS).encode() + b"\n" for r in records)
        with self._lock:
            start = self._size
            os.pwrite(self._file.fileno(), data, start)
            self._size += len(data)
        return Span(start, len(data), len(records))

    def lines(self, span: Span) -> Iterator[tuple[int, bytes]]:
        """(offset, line) of each record of the span."""
        if not span.count:
            return
        data = os.pread(self._file.fileno(), span.size, span.start)
        offset = 0
        for line in data.splitlines(keepends=True):
            yield span.start + offset, line
            offset += len(line)

    def record(self, offset: int, size: int) -> dict:
        return json.loads(os.pread(self._file.fileno(), size, offset))

    def close(self) -> None:
        self._file.close()


@dataclass
class AccountScan(PhaseResult):
    """`error`: the account could not be reached at all, or its scan failed."""

    role_arn: str
    units: list[UnitResult] = field(default_factory=list)
    payloads: int = 0
    collisions: list[str] = field(default_factory=list)
    carried: dict[str, float] = field(default_factory=dict)  # unit label -> age in seconds of its result

    @property
    def complete(self) -> bool:
        """Every unit listed now: nothing carried forward, nothing unknown."""
        return self.closes_snapshot and not self.carried

    @property
    def closes_snapshot(self) -> bool:
        """Whether the snapshot may end (`stop_snapshot`): every unit complete or carried forward."""
        if self.error is not None or self.interrupted or self.collisions:
            return False
        return all(u.complete or u.unit.label in self.carried for u in self.units)

    spill: Spill | None = field(default=None, repr=False)  # where shaped records wait, by unit (`spans`)
    spans: dict[int, tuple[list[Span], list[Span]]] = field(default_factory=dict, repr=False)
    component_types: Counter[str] = field(default_factory=Counter)  # what the payloads held, per type name
    relation_types: Counter[str] = field(default_factory=Counter)

    def __enter__(self) -> AccountScan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the spill: the account's payloads are built and sent; its records are not read again."""
        if self.spill is not None:
            self.spill.close()

    def keep(self, unit: UnitResult) -> None:
        """Move a unit's components and relations shaped so far to the spill file (from the unit's thread).

        Called while the unit is shaped (every `BATCH` records) and when it ends, so memory holds a batch
        per running unit, not its items' records; the unit's records are its spans, in order."""
        if self.spill is None:
            return
        components, relations = self.spans.setdefault(id(unit), ([], []))
        if unit.components:
            components.append(self.spill.put(unit.components))
        if unit.relations:
            relations.append(self.spill.put(unit.relations))
        unit.kept = (unit.kept[0] + len(unit.components), unit.kept[1] + len(unit.relations))
        unit.components, unit.relations = [], []

    def _records(self, unit: UnitResult, which: int) -> Iterator[tuple[int, bytes] | dict]:
        """A unit's components (0) or relations (1): (offset, line) from the spill, else the records."""
        spans = self.spans.get(id(unit))
        if spans is None or self.spill is None:
            yield from (unit.components, unit.relations)[which]
            return
        for span in spans[which]:
            yield from self.spill.lines(span)

    def unit_components(self, unit: UnitResult) -> list[dict]:
        return [_loaded(r) for r in self._records(unit, 0)]

    def unit_relations(self, unit: UnitResult) -> list[dict]:
        return [_loaded(r) for r in self._records(unit, 1)]

    def iter_components(self) -> Iterator[dict]:
        """Every unit's components, once per external id, one unit in memory at a time.

        Two units may list the same component (same type); two *types* claiming one external id
        is a mapping error: it is recorded in `collisions` (once the iteration ends) and keeps the
        snapshot open.
        """
        found: dict[str, str] = {}  # external id -> type name
        collisions: list[str] = []
        types: Counter[str] = Counter()
        for unit in self.units:
            for found_record in self._records(unit, 0):
                record = _loaded(found_record)
                name = record["type"]["name"]
                known = found.get(record["externalId"])
                if known is None:
                    found[record["externalId"]] = name
                    types[name] += 1
                    yield record
                elif known != name:
                    collisions.append(f"{record['externalId']} is both {known} and {name}")
        self.collisions[:] = collisions
        self.component_types = types

    def iter_relations(self) -> Iterator[dict]:
        """Every unit's relations, once per external id: the last one listed, where the first one was."""
        where: dict[str, tuple[int, int] | dict] = {}  # external id -> (offset, size) in the spill, or record
        for unit in self.units:
            for found in self._records(unit, 1):
                if isinstance(found, dict):
                    where[found["externalId"]] = found
                else:
                    where[json.loads(found[1])["externalId"]] = (found[0], len(found[1]))
        types: Counter[str] = Counter()
        for found in where.values():
            record = found if isinstance(found, dict) else self.spill.record(*found)  # type: ignore[union-attr]
            types[record["type"]["name"]] += 1
            yield record
        self.relation_types = types

    @property
    def component_count(self) -> int:
        """How many components the account's payloads held (0 until they are sent)."""
        return sum(self.component_types.values())

    @property
    def relation_count(self) -> int:
        return sum(self.relation_types.values())

    @property
    def components(self) -> list[dict]:
        """Every component (read back from the spill: for tests and small estates, not for the scan)."""
        return list(self.iter_components())

    @property
    def relations(self) -> list[dict]:
        return list(self.iter_relations())

    @cached_property
    def stackstate_events(self) -> list[dict]:
        """The items' declared events, and one `aws_agent_check_error` per unit that did not complete."""
        errors = [
            {
                "event_type": "aws_agent_check_error", "source_type_name": "aws_agent_check_error",
                "msg_title": f"{u.status} in api {u.unit.resource.service}", "msg_text": u.error or u.status,
                "tags": [f"aws_region:{u.unit.region}", f"account_id:{self.account}",
                         f"process:{u.unit.resource.key}"],
                "timestamp": int(self.started_at), "alert_type": "error",
            }
            for u in self.units
            if not u.complete
        ]  # fmt: skip
        return [e for u in self.units for e in u.stackstate_events] + errors

    def gaps(self) -> list[str]:
        """Permission gaps and throttled detail calls, once each: "role X needs Y"."""
        seen: Counter[str] = Counter(
            f"role {g.role_arn} needs {g.action}"
            if isinstance(g, AccessDenied)
            else f"{g.operation} throttled in {g.region} (items kept with less data)"
            for u in self.units
            for g in u.gaps
        )
        return [f"{text} ({n}x)" if n > 1 else text for text, n in seen.items()]

    def summary(self, fate: str | None = DELIVERED) -> dict[str, Any]:
        """The recorded run. `fate`: what became of the snapshot's payloads (the sink's `snapshot_fate`);
        one rejected or trimmed did not close it."""
        summary: dict[str, Any] = {
            "components": self.component_count, "relations": self.relation_count, "payloads": self.payloads,
            "snapshot_closed": self.closes_snapshot and fate != REJECTED, "carried": self.carried,
            "interrupted": self.interrupted, "gaps": self.gaps(),
            "incomplete_units": [u.unit.label for u in self.units if not u.complete],
            "delivered": self.payloads > 0 and fate == DELIVERED,
        }  # fmt: skip
        if self.error:
            summary["error"] = self.error
        return summary


def _loaded(record: tuple[int, bytes] | dict) -> dict:
    return record if isinstance(record, dict) else json.loads(record[1])


def _problems(result: AccountScan) -> str:
    lines = [f"{u.unit.label}: {u.error or u.status}" for u in result.units if not u.complete]
    lines += [f"{label}: carried forward" for label in result.carried]
    return "\n".join([*lines, *result.collisions])


def scan(
    config: Config,
    mappings: Mappings,
    sink: Sink,
    *,
    limits: Limits = LIMITS,
    state: State | None = None,
    fetcher: Fetcher | None = None,
    progress: Progress | None = None,
    endpoint_url: str | None = None,
    base: boto3.Session | None = None,
    max_carry_age: float = MAX_CARRY_AGE,
    claim: Callable[[Instance], bool] | None = None,
) -> tuple[list[AccountScan], int]:
    """Scan every configured account; return the per-account results and the number of calls.

    `fetcher` (by default one with `PATIENCE`) holds the stop event; `progress` hears of each account's plan
    and each unit's end; `claim`, asked when an account's turn comes, may pass it by (another shard has it).
    """
    fetcher = fetcher or Fetcher(patience=PATIENCE)
    progress = progress or Progress()
    lock = threading.Lock()

    def locked(fn: Callable, *args: object) -> None:
        with lock:
            fn(*args)

    workers, max_bytes = limits.workers, limits.max_bytes
    parallel, max_threads = sizes(limits, len(config.instances))
    done: dict[int, AccountScan] = {}
    with (
        Pool(max_threads, MAX_ITEMS) as threads,
        ThreadPoolExecutor(parallel, thread_name_prefix="account") as pool,
    ):
        futures: dict[Future, int] = {
            pool.submit(
                collect_account, config, instance, mappings, fetcher, threads,
                workers=workers, endpoint_url=endpoint_url, base=base,
                on_unit=partial(locked, progress.unit), on_plan=partial(locked, progress.plan), claim=claim,
            ): index
            for index, instance in enumerate(config.instances)
        }  # fmt: skip
        for future in as_completed(futures):
            instance = config.instances[futures[future]]
            try:
                result = future.result()
                if result is None:  # stopped before it started
                    continue
                with result:
                    deliver_account(
                        result, instance, sink, state=state, max_bytes=max_bytes, max_carry_age=max_carry_age
                    )
            except Exception as exc:  # one account's failure is its own: the others go on
                log.error(
                    "event=account.failed account=%s error=%r",
                    instance.account_id,
                    f"{type(exc).__name__}: {exc}",
                )
                result = AccountScan(
                    instance.account_id, instance.role_arn, error=f"{type(exc).__name__}: {exc}"
                )
            done[futures[future]] = result
    return [done[i] for i in sorted(done)], fetcher.calls


def sizes(limits: Limits, accounts: int) -> tuple[int, int]:
    """Accounts side by side and threads in all: one of each with one worker (the cassette tests)."""
    parallel = 1 if limits.workers == 1 else max(1, min(limits.accounts, accounts))
    return parallel, min(limits.max_threads, limits.workers * parallel)


def collect_account(
    config: Config,
    instance: Instance,
    mappings: Mappings,
    fetcher: Fetcher,
    threads: Pool,
    *,
    workers: int,
    endpoint_url: str | None,
    base: boto3.Session | None,
    on_unit: Callable[[UnitResult], None],
    on_plan: Callable[[str, int], None] = lambda account, units: None,
    claim: Callable[[Instance], bool] | None = None,
) -> AccountScan | None:
    """Assume the account's role and run its units, `workers` at once, on the shared threads; send nothing.
    None when stopped before it started, or passed by (`claim` said no)."""
    if fetcher.stopped or (claim is not None and not claim(instance)):
        return None
    started = time.monotonic()
    result = AccountScan(instance.account_id, instance.role_arn)
    try:
        account = assume(config, instance, base=base, endpoint_url=endpoint_url, workers=workers)
    except (CredentialsError, Unreachable) as exc:
        result.error = str(exc)
        result.bad_input = isinstance(exc, CredentialsError)
        log.error("event=account.unreachable account=%s problem=%r", instance.account_id, str(exc))
        result.seconds = time.monotonic() - started
        return result
    units = plan(instance, mappings)
    on_plan(instance.account_id, len(units))
    result.spill = Spill()
    with Scheduler(workers, threads) as scheduler:
        collector = Collector(account, mappings, fetcher, labels_for(instance), scheduler, store=result.keep)

        def run(unit: Unit) -> list[UnitResult]:
            found = collector.run(unit)
            for unit_result in found:
                on_unit(unit_result)
                result.keep(unit_result)  # to disk: memory holds only the units still running
            return found

        tasks = [scheduler.spawn(partial(run, unit), urgent=False) for unit in units]
        result.units = [r for task in tasks for r in task.result(help=False)]
    result.interrupted = fetcher.stopped
    result.seconds = time.monotonic() - started
    return result


def deliver_account(
    result: AccountScan,
    instance: Instance,
    sink: Sink,
    *,
    state: State | None,
    max_bytes: int,
    max_carry_age: float = MAX_CARRY_AGE,
) -> None:
    """Carry forward, build and send the account's payloads (in the caller's thread: sinks, state)."""
    started = time.monotonic()
    if result.error is not None:
        checks = [service_check("can_connect", False, result.error, check_tags(instance), critical=True)]
        for payload in build_payloads(instance.account_id, [], [], snapshot=False, service_checks=checks):
            sink.send(payload, f"checks-{instance.account_id}")
        return
    if result.interrupted:
        log.warning("event=scan.interrupted account=%s sent=nothing", instance.account_id)
        return
    if state is not None:
        _carry_forward(result, state, max_carry_age)
    payloads = iter_payloads(
        instance.account_id, result.iter_components(), result.iter_relations(),
        snapshot=True, complete=lambda: result.closes_snapshot, max_bytes=max_bytes,
        events=result.stackstate_events,
        service_checks=lambda: [
            service_check("can_connect", True, "", check_tags(instance)),
            service_check("can_execute", result.complete, _problems(result), check_tags(instance)),
        ],
    )  # fmt: skip
    sent = 0
    for sent, payload in enumerate(payloads, 1):  # built one at a time, from the spill
        sink.send(payload, f"scan-{instance.account_id}-{sent:04d}")
    for collision in result.collisions:
        log.error("event=component.collision account=%s problem=%r", instance.account_id, collision)
    result.payloads = sent
    result.seconds += time.monotonic() - started
    for gap in result.gaps():
        log.warning("event=permission.gap account=%s gap=%r", instance.account_id, gap)


def _carry_forward(result: AccountScan, state: State, max_age: float) -> None:
    """Keep each complete unit's result; give an incomplete unit its last complete one, if young enough."""
    now = time.time()
    for unit in result.units:
        key = f"unit.{unit.unit.label}"
        if unit.complete:
            components, relations = result.unit_components(unit), result.unit_relations(unit)
            state.set(key, {"at": now, "components": components, "relations": relations})
            continue
        kept = state.get(key)
        if kept is None or now - kept["at"] > max_age:
            continue
        unit.components, unit.relations = kept["components"], kept["relations"]
        result.spans.pop(id(unit), None)  # what it listed before failing is replaced by the kept result
        result.carried[unit.unit.label] = now - kept["at"]
        log.warning(
            "event=unit.carried unit=%s status=%s age_seconds=%d",
            unit.unit.label, unit.status, now - kept["at"],
        )  # fmt: skip
