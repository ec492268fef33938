"""The traces phase: received calls in, each account's trace relations out, in their own topology instance.

In: the rows of call records the receiver (or the log bucket's trace objects) left in the state, the
mappings' `traces:` rules, the TTL. Out, per configured account: when its set of live relations changed (a
new one, or one not seen for the TTL), one snapshot of the instance `{"type": "aws-v2", "url":
"{account}/traces"}` holding every live relation, function -> target, `uses-service`. Hourly snapshots of the
account's own instance never delete them, and they go when their calls stop. A relation's last seen time is
its latest call's end time (not the run's), so applying the same rows twice changes nothing; the rows are
deleted (`consume`) only after every account's snapshot was delivered or spooled. Calls that name no known
resource, whose caller is in no configured account, or that are not a function's are counted, not kept.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from engine.core.config import Instance
from engine.core.errors import DeliveryError
from engine.core.phase import PhaseResult
from engine.core.stackpack import TRACE_SOURCE
from engine.core.state import RelationKey, State
from engine.delivery.payload import build_payloads
from engine.delivery.sinks import Sink
from engine.language.components import relation
from engine.language.dialect import parse_arn
from engine.language.loader import Mappings
from engine.traces.objects import TraceObjects
from engine.traces.relations import RELATION_TYPE, TraceRules

MAX_ROWS = 10_000  # rows of received calls applied per run; the rest wait for the next
RELATION_DATA = {"Source": TRACE_SOURCE}  # marks a relation seen only in traces


def instance_url(account: str) -> str:
    """The topology instance of an account's trace relations."""
    return f"{account}/traces"


class Calls:
    """Call records reduced to relation sightings per account (the latest call time of each relation), and
    the spans applied and dropped. Identical calls (function, span name, attributes) are mapped once."""

    def __init__(self, rules: TraceRules, accounts: set[str], targets: dict | None = None) -> None:
        self.rules, self.accounts = rules, accounts
        self.targets: dict[Any, list[str]] = {} if targets is None else targets
        self.seen: dict[str, dict[RelationKey, float]] = defaultdict(dict)
        self.applied = 0
        self.dropped: Counter[str] = Counter()

    def like(self, accounts: set[str]) -> Calls:
        """An empty reducer with the same rules and mapped calls."""
        return Calls(self.rules, accounts, self.targets)

    def add(self, call: Any) -> None:
        count = call.get("count", 1) if isinstance(call, dict) else 1
        count = count if isinstance(count, int) and count > 0 else 1
        caller = parse_arn(call.get("function")) if isinstance(call, dict) else None
        if caller is None or caller["service"] != "lambda":
            self.dropped["not_a_function"] += count
            return
        if caller["account"] not in self.accounts:
            self.dropped["unknown_account"] += count
            return
        targets = self._targets(call)
        if not targets:
            self.dropped["names_nothing_known"] += count
            return
        self.applied += count
        last = call.get("last")
        seen_at = min(last / 1e9, time.time()) if isinstance(last, int | float) and last > 0 else time.time()
        relations = self.seen[caller["account"]]
        for target in targets:
            key = (call["function"], target, RELATION_TYPE)
            relations[key] = max(relations.get(key, 0.0), seen_at)

    def _targets(self, call: dict) -> list[str]:
        key = _key(call)
        found = self.targets.get(key) if key is not None else None
        if found is None:
            found = self.rules.targets(call)
            if key is not None:
                self.targets[key] = found
        return found


def _key(call: dict) -> Any:
    attributes = call.get("attributes")
    if not isinstance(attributes, dict):
        return None
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in attributes.items()))
    try:
        hash(items)
    except TypeError:  # a nested object: not cached
        return None
    return (call.get("function"), call.get("name"), items)


@dataclass
class Pending:
    """The rows of received calls this run applies, reduced."""

    calls: Calls
    rows: list[int] = field(default_factory=list)
    spans: int = 0  # the rows stand for these spans

    def consume(self, state: State) -> None:
        """Delete the applied rows and count their spans: applied, but for the dropped calls."""
        if self.rows:
            dropped = dict(self.calls.dropped)
            state.traces_consume(self.rows, self.spans - sum(dropped.values()), dropped)


def read_pending(state: State, mappings: Mappings, accounts: set[str], max_rows: int = MAX_ROWS) -> Pending:
    """Map the oldest rows of received calls to relations of the configured `accounts`."""
    pending = Pending(Calls(TraceRules(mappings), accounts))
    for row_id, spans, calls in state.traces_pending(max_rows):
        pending.rows.append(row_id)
        pending.spans += spans
        for call in calls if isinstance(calls, list) else []:
            pending.calls.add(call)
    return pending


@dataclass
class TraceResult(PhaseResult):
    """One account's traces phase."""

    calls: int = 0  # relation sightings of this run
    relations: int = 0  # live after the run
    new: int = 0
    expired: int = 0
    payloads: int = 0
    objects: int | None = None  # trace objects read from the log bucket (None: not asked to read them)
    corrupt_objects: int = 0
    deleted_objects: int = 0
    bucket_problem: str | None = None  # the bucket could not be read: the received calls still apply

    def summary(self) -> dict[str, Any]:
        status = "complete" if self.complete else ("interrupted" if self.interrupted else "INCOMPLETE")
        found = {
            "status": status, "calls": self.calls, "relations": self.relations, "new": self.new,
            "expired": self.expired, "payloads": self.payloads,
        }  # fmt: skip
        if self.objects is not None:
            found |= {
                "objects": self.objects, "corrupt_objects": self.corrupt_objects,
                "deleted_objects": self.deleted_objects, "bucket_problem": self.bucket_problem,
            }  # fmt: skip
        return found | {"error": self.error}


def apply_traces(
    instance: Instance, pending: Pending, sink: Sink, state: State, *, ttl: float, max_bytes: int,
    objects: TraceObjects | None = None,
) -> TraceResult:  # fmt: skip
    """Merge the account's sightings (of the received calls, and of its trace `objects` when it reads
    them) into its relations, drop those older than `ttl`, and send the account's trace snapshot when its
    set of relations changed; then delete the objects read."""
    account, now = instance.account_id, time.time()
    result = TraceResult(account)
    known = state.trace_relations(account)
    seen = dict(pending.calls.seen.get(account, {}))
    from_objects = pending.calls.like({account})
    if objects is not None:
        result.objects, result.corrupt_objects = len(objects.read), objects.corrupt
        result.bucket_problem = objects.error
        for call in objects.calls:
            from_objects.add(call)
        for key, at in from_objects.seen.get(account, {}).items():
            seen[key] = max(seen.get(key, 0.0), at)
    result.calls = len(seen)
    merged = dict(known)
    for key, at in seen.items():
        first, last = merged.get(key, (at, at))
        merged[key] = (min(first, at), max(last, at))
    live = {key: times for key, times in merged.items() if now - times[1] <= ttl}
    result.new = len(live.keys() - known.keys())
    result.expired = len(known.keys() - live.keys())
    result.relations = len(live)
    if live != known:
        if live.keys() != known.keys():
            try:
                result.payloads = _send(account, live, sink, max_bytes)
            except DeliveryError as exc:
                result.error = f"trace relations not delivered, nothing applied: {exc}"
                result.seconds = time.time() - result.started_at
                return result
        state.trace_relations_save(account, live)
    if objects is not None and objects.bucket is not None and objects.read:
        done = objects.bucket.delete(objects.read)
        result.deleted_objects = len(done.deleted)
        dropped = dict(from_objects.dropped + objects.dropped)
        applied = objects.spans - sum(dropped.values())
        state.traces_consume([], applied, dropped, received=objects.spans)
    result.seconds = time.time() - result.started_at
    return result


def _send(account: str, live: dict[RelationKey, tuple[float, float]], sink: Sink, max_bytes: int) -> int:
    relations = [relation(source, target, kind, RELATION_DATA) for source, target, kind in sorted(live)]
    payloads = build_payloads(instance_url(account), [], relations, snapshot=True, max_bytes=max_bytes)
    for number, payload in enumerate(payloads, 1):
        sink.send(payload, f"traces-{account}-{number:04d}")
    return len(payloads)
