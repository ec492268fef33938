"""Payload builder: component/relation records, delete ids and events in, receiver intake payloads out.

Elements go out in a fixed order (components, relations, delete ids, events) and are split into payloads whose
compact JSON encoding stays within `max_bytes`. Each element is serialised once to learn its size; the payload
size is then tracked by arithmetic. `validate_payload` checks a payload against `schemas/payload.schema.json`
plus the rules a schema cannot express.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jsonschema import Draft202012Validator

from engine.core.paths import SCHEMAS
from engine.core.stackpack import INSTANCE_TYPE

log = logging.getLogger(__name__)

SCHEMA_PATH = SCHEMAS / "payload.schema.json"
SEPARATORS = (",", ":")
_LISTS = ("components", "relations", "delete_ids")


def encode(payload: dict) -> bytes:
    """The compact wire encoding whose length `max_bytes` limits."""
    return json.dumps(payload, separators=SEPARATORS).encode()


def _size(obj: object) -> int:
    # ensure_ascii (the default) makes every character one byte, so len(str) is the encoded length.
    return len(json.dumps(obj, separators=SEPARATORS))


def _skeleton(hostname: str, account: str, start: bool, stop: bool) -> dict:
    topology = {
        "start_snapshot": start,
        "stop_snapshot": stop,
        "instance": {"type": INSTANCE_TYPE, "url": account},
        "components": [],
        "relations": [],
        "delete_ids": [],
    }
    return {"internalHostname": hostname, "topologies": [topology], "health": [], "metrics": [], "events": {}}


class _Batch:
    """The elements of one payload and the size of its encoding (an upper bound, exact up to the flags)."""

    def __init__(self, base_size: int) -> None:
        self.size = base_size
        self.count = 0
        self.lists: dict[str, list] = {name: [] for name in (*_LISTS, "metrics")}
        self.events: dict[str, list[dict]] = {}

    def cost(self, section: str, key: str, n: int) -> int:
        """Bytes that adding an element of encoded size `n` adds (its comma, or a new events key)."""
        if section != "events":
            return n + (1 if self.lists[section] else 0)
        if key in self.events:
            return n + 1
        # ,"key":[element]
        return (1 if self.events else 0) + _size(key) + 1 + 2 + n

    def add(self, section: str, key: str, element: Any, cost: int) -> None:
        if section == "events":
            self.events.setdefault(key, []).append(element)
        else:
            self.lists[section].append(element)
        self.size += cost
        self.count += 1


def _elements(
    components: Iterable[dict],
    relations: Iterable[dict],
    delete_ids: Iterable[str],
    events: Iterable[dict],
    metrics: Iterable[list] = (),
) -> Iterator[tuple[str, str, Any]]:
    """(section, events key, element) in wire order."""
    for component in components:
        yield "components", "", component
    for relation in relations:
        yield "relations", "", relation
    for external_id in delete_ids:
        yield "delete_ids", "", external_id
    for event in events:
        if not event.get("event_type"):
            raise ValueError(f"event without event_type: {event.get('msg_title')!r}")
        event = {"source_type_name": event["event_type"], **event}
        yield "events", event["source_type_name"], event
    for metric in metrics:
        yield "metrics", "", metric


def _describe(section: str, element: Any) -> str:
    if section == "delete_ids":
        return str(element)
    if section == "events":
        return str(element.get("event_type"))
    if section == "metrics":
        return str(element[0])
    return str(element.get("externalId"))


def build_payloads(
    account: str,
    components: Iterable[dict],
    relations: Iterable[dict],
    delete_ids: Iterable[str] = (),
    *,
    snapshot: bool,
    complete: bool = True,
    max_bytes: int = 1_000_000,
    hostname: str = "aws-topology",
    events: Iterable[dict] = (),
    service_checks: list[dict] | None = None,
    metrics: Iterable[list] = (),
) -> list[dict]:
    """Split one run's output into intake payloads of at most `max_bytes` (compact JSON) each.

    A snapshot opens on the first payload and closes (`stop_snapshot`) on the last only when `complete`;
    an empty snapshot is one payload. A delta sets no flags and yields no payload when there is nothing
    to send. An element larger than `max_bytes` travels alone in its own payload. `metrics` are raw intake
    metrics, `[name, epoch seconds, value, {"hostname", "tags", "type"}]`.
    """
    return list(
        iter_payloads(
            account, components, relations, delete_ids, snapshot=snapshot, complete=complete,
            max_bytes=max_bytes, hostname=hostname, events=events, service_checks=service_checks,
            metrics=metrics,
        )
    )  # fmt: skip


def iter_payloads(
    account: str,
    components: Iterable[dict],
    relations: Iterable[dict],
    delete_ids: Iterable[str] = (),
    *,
    snapshot: bool,
    complete: bool | Callable[[], bool] = True,
    max_bytes: int = 1_000_000,
    hostname: str = "aws-topology",
    events: Iterable[dict] = (),
    service_checks: list[dict] | Callable[[], list[dict]] | None = None,
    metrics: Iterable[list] = (),
) -> Iterator[dict]:
    """`build_payloads`, one payload at a time: at most two payloads' elements are held at once.

    The elements may be generators (read from disk as they are needed). A payload is yielded as soon as the
    next one starts, so which payload is the last is known only when the elements are exhausted; `complete`
    and `service_checks` may therefore be callables, asked then (after every element went through).
    """
    base_size = _size(_skeleton(hostname, account, False, False))
    if max_bytes < base_size:
        raise ValueError(f"max_bytes {max_bytes} is below the size of an empty payload ({base_size})")

    def finish(batch: _Batch, first: bool, last: bool) -> dict:
        stop = snapshot and last and (complete() if callable(complete) else complete)
        payload = _skeleton(hostname, account, snapshot and first, stop)
        payload["metrics"] = batch.lists.pop("metrics")
        payload["topologies"][0].update(batch.lists)
        payload["events"] = batch.events
        return payload

    sent = 0
    batch = _Batch(base_size)
    for section, key, element in _elements(components, relations, delete_ids, events, metrics):
        n = _size(element)
        cost = batch.cost(section, key, n)
        if batch.count and batch.size + cost > max_bytes:
            yield finish(batch, sent == 0, False)
            sent += 1
            batch = _Batch(base_size)
            cost = batch.cost(section, key, n)
        if batch.size + cost > max_bytes:
            log.warning(
                "event=payload.oversized section=%s id=%r bytes=%d max_bytes=%d (sent alone)",
                section,
                _describe(section, element),
                n,
                max_bytes,
            )
        batch.add(section, key, element, cost)
    checks = service_checks() if callable(service_checks) else service_checks
    if batch.count or (snapshot and not sent) or (checks and not sent):
        payload = finish(batch, sent == 0, True)
        if checks:
            payload["service_checks"] = checks
        yield payload


def service_check(check: str, ok: bool, message: str, tags: Iterable[str], *, critical: bool = False) -> dict:
    """One `aws_topology.*` service check: OK, or WARNING (CRITICAL when `critical`) with its reason."""
    status = 0 if ok else (2 if critical else 1)
    return {
        "check": f"aws_topology.{check}", "status": status, "message": "" if ok else message[:2000],
        "tags": sorted(set(tags)), "timestamp": int(time.time()),
    }  # fmt: skip


def _inline_refs(node: Any, defs: dict) -> Any:
    """Replace local `#/$defs/x` references by their targets: validation runs about twice as fast."""
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"{SCHEMA_PATH.name}: unsupported $ref {ref!r}")
        merged = {**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline_refs(merged, defs)
    return {key: _inline_refs(value, defs) for key, value in node.items()}


@functools.cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    defs = schema.pop("$defs", {})
    return Draft202012Validator(_inline_refs(schema, defs))


def _rule_problems(payload: dict) -> list[str]:
    """Rules the schema cannot state; only run on a schema-valid payload."""
    problems = []
    for t, topology in enumerate(payload["topologies"]):
        for r, relation in enumerate(topology["relations"]):
            expected = f"{relation['sourceId']}-{relation['type']['name']}-{relation['targetId']}"
            if relation["externalId"] != expected:
                problems.append(
                    f"$.topologies[{t}].relations[{r}].externalId: "
                    f"{relation['externalId']!r} is not {{sourceId}}-{{type.name}}-{{targetId}}"
                    f" ({expected!r})"
                )
    for key, items in payload["events"].items():
        for i, event in enumerate(items):
            if event["source_type_name"] != key:
                problems.append(
                    f"$.events.{key}[{i}].source_type_name: {event['source_type_name']!r} "
                    f"differs from its map key {key!r}"
                )
    return problems


def _shorten(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def validate_payload(payload: dict) -> None:
    """Raise ValueError listing every problem, each with its JSON path, if `payload` is not valid."""
    errors = sorted(_validator().iter_errors(payload), key=lambda e: list(map(str, e.absolute_path)))
    problems = [f"{e.json_path}: {_shorten(e.message)}" for e in errors]
    if not problems:
        problems = _rule_problems(payload)
    if problems:
        raise ValueError("invalid intake payload:\n  " + "\n  ".join(problems))
