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
from engine.traces.relations import RELATION_TYPE, TraceRules

MAX_ROWS = 10_000  # rows of received calls applied per run; the rest wait for the next
RELATION_DATA = {"Source": TRACE_SOURCE}  # marks a relation seen only in traces


def instance_url(account: str) -> str:
    """The topology instance of an account's trace relations."""
    return f"{account}/traces"


@dataclass
class Pending:
    """The received calls of one run, reduced to relations per account, and what was counted."""

    rows: list[int] = field(default_factory=list)
    seen: dict[str, dict[RelationKey, float]] = field(default_factory=lambda: defaultdict(dict))
    spans: int = 0
    applied: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def consume(self, state: State) -> None:
        """Delete the applied rows and count their spans."""
        if self.rows:
            state.traces_consume(self.rows, self.applied, dict(self.dropped))


def read_pending(state: State, mappings: Mappings, accounts: set[str], max_rows: int = MAX_ROWS) -> Pending:
    """Map the oldest rows of received calls to relations of the configured `accounts`."""
    rules, pending = TraceRules(mappings), Pending()
    targets: dict[Any, list[str]] = {}  # the same (function, span name, attributes): the same targets
    for row_id, spans, calls in state.traces_pending(max_rows):
        pending.rows.append(row_id)
        pending.spans += spans
        for call in calls if isinstance(calls, list) else []:
            _reduce(rules, call, accounts, pending, targets)
    return pending


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


def _reduce(rules: TraceRules, call: Any, accounts: set[str], pending: Pending, cache: dict) -> None:
    count = call.get("count", 1) if isinstance(call, dict) else 1
    count = count if isinstance(count, int) and count > 0 else 1
    caller = parse_arn(call.get("function")) if isinstance(call, dict) else None
    if caller is None or caller["service"] != "lambda":
        pending.dropped["not_a_function"] += count
        return
    if caller["account"] not in accounts:
        pending.dropped["unknown_account"] += count
        return
    key = _key(call)
    targets = cache.get(key) if key is not None else None
    if targets is None:
        targets = rules.targets(call)
        if key is not None:
            cache[key] = targets
    if not targets:
        pending.dropped["names_nothing_known"] += count
        return
    pending.applied += count
    last = call.get("last")
    seen_at = min(last / 1e9, time.time()) if isinstance(last, int | float) and last > 0 else time.time()
    relations = pending.seen[caller["account"]]
    for target in targets:
        key = (call["function"], target, RELATION_TYPE)
        relations[key] = max(relations.get(key, 0.0), seen_at)


@dataclass
class TraceResult(PhaseResult):
    """One account's traces phase."""

    calls: int = 0  # relation sightings of this run
    relations: int = 0  # live after the run
    new: int = 0
    expired: int = 0
    payloads: int = 0

    def summary(self) -> dict[str, Any]:
        status = "complete" if self.complete else ("interrupted" if self.interrupted else "INCOMPLETE")
        return {
            "status": status, "calls": self.calls, "relations": self.relations, "new": self.new,
            "expired": self.expired, "payloads": self.payloads, "error": self.error,
        }  # fmt: skip


def apply_traces(
    instance: Instance, pending: Pending, sink: Sink, state: State, *, ttl: float, max_bytes: int
) -> TraceResult:
    """Merge the account's sightings into its relations, drop those older than `ttl`, and send the
    account's trace snapshot when its set of relations changed."""
    account, now = instance.account_id, time.time()
    result = TraceResult(account)
    known = state.trace_relations(account)
    seen = pending.seen.get(account, {})
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
    result.seconds = time.time() - result.started_at
    return result


def _send(account: str, live: dict[RelationKey, tuple[float, float]], sink: Sink, max_bytes: int) -> int:
    relations = [relation(source, target, kind, RELATION_DATA) for source, target, kind in sorted(live)]
    payloads = build_payloads(instance_url(account), [], relations, snapshot=True, max_bytes=max_bytes)
    for number, payload in enumerate(payloads, 1):
        sink.send(payload, f"traces-{account}-{number:04d}")
    return len(payloads)
