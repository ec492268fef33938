"""The EventBridge input: EventBridge objects in the log bucket in, the changes they name out.

In: an account's log bucket (versioned), its configured regions, the mappings' `events:` rules. Out: the
objects to process (gzip or plain text holding concatenated JSON envelopes, as Firehose writes them) and,
per envelope, `Change`s: (resource type, region, id, refresh or delete, event time). Changes are
de-duplicated per resource, the latest event (by event time) wins. A failed call (`errorCode`) and an
envelope of another account change nothing (`Rules.dispatch` counts them). An object is inflated to at most
`MAX_TEXT` bytes. Reading never deletes anything: the caller deletes an object only after what it produced was
delivered or spooled.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, NamedTuple

import orjson
from jmespath.parser import ParsedResult

from engine.aws.sessions import GLOBAL_REGION, partition
from engine.core import gunzip
from engine.language.compiled import closure
from engine.language.components import as_list
from engine.language.dialect import OPTIONS, search
from engine.language.loader import CLOUDTRAIL, EventRule, Mappings, Resource

PREFIX = "AWSLogs/{account}/EventBridge/{region}/"
GLOBAL = "global"
REGIONAL = "regional"
MAX_TEXT = 64 << 20  # bytes an object may inflate to; past it the object is corrupt (a decompression bomb)


_SPACE = re.compile(r"\s*").match  # what may stand between two envelopes
_DECODE = json.JSONDecoder().raw_decode
_loads = orjson.loads
_at = attrgetter("at")
_new = tuple.__new__  # a Change without NamedTuple's Python-level __new__


class CorruptObject(ValueError):
    """An object that is not gzip/UTF-8 text of JSON envelopes; it is left in place and recorded."""


class Change(NamedTuple):  # a tuple: made once per matching event, 3x cheaper than a frozen dataclass
    resource: Resource
    region: str  # a configured region, or "global"
    id: str
    delete: bool
    delete_id: str | None = None  # the external id to delete
    at: str = ""  # the event time (ISO 8601, UTC); "" when the envelope has none: oldest


def prefixes(account: str, regions: tuple[str, ...]) -> list[str]:
    """The bucket prefixes to read: one per configured region; `global` reads us-east-1's, never twice."""
    names = [GLOBAL_REGION if r == GLOBAL else r for r in regions]
    return [PREFIX.format(account=account, region=r) for r in dict.fromkeys(names)]


def envelopes(body: bytes, limit: int | None = None) -> list[dict]:
    """The JSON objects of one Firehose object: gzip or plain, UTF-8, concatenated without separators;
    `CorruptObject` past `limit` bytes of text (default `MAX_TEXT`)."""
    return list(each_envelope(body, limit))


def each_envelope(body: bytes, limit: int | None = None) -> Iterator[dict]:
    """`envelopes(body, limit)` one at a time, each decoded when asked for: it can be dispatched and freed
    before the next is decoded (`CorruptObject` is raised when the iteration reaches the problem)."""
    limit = MAX_TEXT if limit is None else limit
    if body[:2] == b"\x1f\x8b":
        body = _gunzip(body, limit)
    elif len(body) > limit:
        raise CorruptObject(f"larger than {limit} bytes")
    # Firehose writes envelopes back to back: `}{` is where one ends and the next begins, or else sits in a
    # string. Each piece between is decoded by orjson (about 1.3x the stdlib's decoder here, bench.events);
    # a piece cut inside a string ends in an open string and fails, as does any other problem or separator:
    # from that piece on, the stdlib's decoder reads (`_exact`), and says what is wrong where. Pieces that all
    # decode are exactly the envelopes `_exact` reads: a JSON object ends at its closing brace.
    pieces = body.split(b"}{")  # the only copy of the text: the first and last pieces lose their brace
    first, last = pieces[0].lstrip(), pieces[-1].rstrip()
    head = len(pieces[0]) - len(first)  # the characters before the first brace
    if first[:1] != b"{" or last[-1:] != b"}":
        yield from _exact(body, 0)
        return
    if len(pieces) == 1:
        pieces[0] = first[1:-1]
    else:
        pieces[0], pieces[-1] = first[1:], last[:-1]
    done = 0
    try:
        for piece in pieces:
            envelope = _loads(b"{%b}" % piece)
            done += 1
            yield envelope
    except orjson.JSONDecodeError:
        offset = head + sum(len(p) + 2 for p in pieces[:done])
        yield from _exact(body, len(body[:offset].decode("utf-8")))


def _exact(body: bytes, start: int) -> Iterator[dict]:
    """The JSON objects of `body`'s text from character `start`: the stdlib's decoder, each error named."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptObject(f"not UTF-8 (bad byte at offset {exc.start})") from None
    pos, end = start, len(text)
    while pos < end:
        if text[pos] != "{":
            pos = _SPACE(text, pos).end()
            if pos == end:
                return
        try:
            value, pos = _DECODE(text, pos)
        except json.JSONDecodeError as exc:
            raise CorruptObject(f"bad JSON at character {exc.pos}: {exc.msg}") from None
        except RecursionError:
            raise CorruptObject(f"JSON nested too deeply at character {pos}") from None
        if isinstance(value, dict):
            yield value


def _gunzip(body: bytes, limit: int) -> bytes:
    """Every gzip member of `body`, inflated in steps; `CorruptObject` past `limit` bytes of output."""
    parts: list[bytes] = []
    size, data = 0, body
    while data:
        inflater = gunzip.inflater()
        try:
            while data and not inflater.eof:
                parts.append(inflater.decompress(data, limit + 1 - size))
                size += len(parts[-1])
                if size > limit:
                    raise CorruptObject(f"inflates to more than {limit} bytes")
                data = inflater.unconsumed_tail
        except gunzip.error as exc:
            raise CorruptObject(f"bad gzip data: {exc}") from None
        if not inflater.eof:
            raise CorruptObject("bad gzip data: truncated")
        data = inflater.unused_data
    return parts[0] if len(parts) == 1 else b"".join(parts)  # one part (one member): no copy


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while an object's envelopes are decoded and dispatched: decoded
    JSON holds no cycles (reference counting frees it), and the collector's passes over the envelopes and
    changes still alive would cost more than decoding them. Enabled again after, if it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Plan(NamedTuple):
    """One rule of one resource, ready to dispatch: its id expression as a function of the detail."""

    resource: Resource
    rule: EventRule
    scope: str  # the root's scope: "regional", "global" or "account"
    api_version: str | None
    ids: Callable[[Any], Any]
    delete: bool


class Rules:
    """The `events:` rules of every mapping, indexed by what an envelope names. A child type's change is in
    the region of its root's unit (the delta reaches the root through the child's `get` and `parent_id`)."""

    def __init__(self, mappings: Mappings) -> None:
        # CloudTrail calls by (eventSource, eventName); other detail-types by (detail-type, source)
        self._calls: dict[tuple[str, str], list[_Plan]] = {}
        self._others: dict[tuple[str, str], list[_Plan]] = {}
        self._times: dict[str, str] = {}  # event time -> `_time` of it: an object's events share few times
        for resource in mappings.resources:
            scope = mappings.root(resource).scope
            for rule in resource.event_rules:
                if scope not in (GLOBAL, "account"):
                    scope = REGIONAL  # one object: `is` tells it
                plan = _Plan(resource, rule, scope, rule.api_version, _getter(rule.ids), rule.delete)
                if rule.detail_type == CLOUDTRAIL:
                    for name in rule.names:
                        self._calls.setdefault((rule.source, name), []).append(plan)
                else:
                    self._others.setdefault((rule.detail_type, rule.source), []).append(plan)

    def changes(self, envelope: dict, account: str, regions: tuple[str, ...]) -> list[Change]:
        """The changes one envelope asks for (`dispatch` of it alone)."""
        return self.dispatch((envelope,), account, regions)[0]

    def dispatch(
        self,
        found: Iterable[dict],
        account: str,
        regions: tuple[str, ...],
        bad: Callable[[Exception], None] | None = None,
    ) -> tuple[list[Change], dict[str, int]]:
        """The changes the envelopes ask for, in configured regions only, and how many envelopes were read
        and skipped: `failed_calls` (a call AWS refused), `foreign` (another account's), `unknown` (no rule
        gives a change), `bad_events` (a rule failed on it: raised, or given to `bad` and skipped). One loop
        over all envelopes, nothing called per envelope that needs no change: this is the delta's hot path."""
        calls, others, times = self._calls.get, self._others.get, self._times
        changes: list[Change] = []
        append = changes.append
        read = failed = foreign = unknown = bad_events = 0
        for envelope in found:
            read += 1
            detail = envelope.get("detail")
            if detail.__class__ is not dict and not isinstance(detail, dict):
                owner = envelope.get("account")
                if owner is not None and owner != account and str(owner) != account:
                    foreign += 1
                else:
                    unknown += 1
                continue
            if detail.get("errorCode") or detail.get("errorMessage"):
                failed += 1
                continue
            owner = envelope.get("account") or detail.get("recipientAccountId")
            if owner is not None and owner != account and str(owner) != account:
                foreign += 1
                continue
            detail_type = envelope.get("detail-type", "")
            if detail_type.__class__ is not str:
                detail_type = str(detail_type)
            if detail_type == CLOUDTRAIL:
                source, name = detail.get("eventSource", ""), detail.get("eventName", "")
                if source.__class__ is not str or name.__class__ is not str:
                    source, name = str(source), str(name)
                plans = calls((source, name))
                region = detail.get("awsRegion") or envelope.get("region")
            else:
                plans = others((detail_type, str(envelope.get("source", ""))))
                region = envelope.get("region")
            if not plans:
                unknown += 1
                continue
            region_text = region if region.__class__ is str else str(region or "")
            at, before = None, len(changes)
            try:
                for resource, rule, scope, api_version, ids, delete in plans:
                    if api_version and api_version != detail.get("apiVersion"):
                        continue
                    if scope is REGIONAL:
                        if region_text not in regions:
                            continue
                        where = region_text
                    elif (where := _unit_region(scope, region_text, regions)) is None:
                        continue
                    try:
                        value = ids(detail)
                    except Exception:  # `search` raises it again, naming the expression and the value
                        value = search(rule.ids, detail)
                    for id_ in (value,) if value.__class__ is str else as_list(value):
                        if not isinstance(id_, str) or not id_:
                            continue
                        if at is None:
                            moment = envelope.get("time") or detail.get("eventTime")
                            at = (moment.__class__ is str and times.get(moment)) or self._time(moment)
                        delete_id = _delete_id(rule, id_, account, region) if delete else None
                        append(_new(Change, (resource, where, id_, delete, delete_id, at)))
            except Exception as exc:
                del changes[before:]
                if bad is None:
                    raise
                bad(exc)
                bad_events += 1
                continue
            if len(changes) == before:
                unknown += 1
        counts = {"envelopes": read, "failed_calls": failed, "foreign": foreign, "unknown": unknown,
                  "bad_events": bad_events}  # fmt: skip
        return changes, counts

    def _time(self, value: Any) -> str:
        """`_time(value)`, remembered for strings; "" for none."""
        if not value:
            return ""
        if value.__class__ is not str:
            return _time(value)
        found = self._times.get(value)
        if found is None:
            if len(self._times) >= 4096:
                self._times.clear()
            found = self._times[value] = _time(value)
        return found


def _getter(expression: ParsedResult) -> Callable[[Any], Any]:
    """The expression as a function of the value: its closure, or `search` where there is none."""
    fast = closure(expression.parsed, OPTIONS.custom_functions)
    return fast if fast is not None else lambda value: search(expression, value)


def _unit_region(scope: str, region: str, regions: tuple[str, ...]) -> str | None:
    """Where the change is applied: its region when configured; `global` types only with `global`."""
    if scope == GLOBAL:
        return GLOBAL if GLOBAL in regions else None
    if scope == "account":
        return "account" if any(r != GLOBAL for r in regions) else None
    return region if region in regions else None


def _delete_id(rule: EventRule, found: str, account: str, region: Any) -> str | None:
    if not rule.delete:
        return None
    if rule.delete_id is None:
        return found
    region = str(region or GLOBAL_REGION)
    context = {"_id": found, "_account": account, "_region": region, "_partition": partition(region)}
    value = search(rule.delete_id, context)
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> str:
    """An event time as sortable UTC ISO 8601; "" when it is missing or not a time."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return ""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def latest(changes: list[Change]) -> list[Change]:
    """One change per resource: the latest event wins (a create then a delete is a delete); events of the
    same time keep the order given (the objects' order, then the order within an object). The changes come
    in the order of their events: each where a stable sort by time puts it."""
    ordered = sorted(changes, key=_at)  # stable: as late, later in order, is later here
    with gc_paused():  # a key per change: tuples the collector need not walk
        last = {(c[0].key, c[1], c[2]): i for i, c in enumerate(ordered)}  # (resource.key, region, id)
    return [ordered[i] for i in sorted(last.values())]
