"""Collect: execute one unit (list, details, children) and shape its items.

In: a root `Unit`, its `Account`, the `Fetcher`. Out: one `UnitResult` per resource type of the
unit's tree (the root and each child type), each with its components, relations and a status:
`complete`, or `denied` / `throttled` / `failed` when its listing could not be finished (unknown is
not empty). A child type fails on its own: its root and its siblings keep their status. A parent
deleted between listing and describing drops only its own children (`gone` codes). A denied or
throttled *detail* call keeps the item with less data and is reported as a permission gap.

Per-item calls (details, child listings) fan out over the account's `Scheduler`, so a unit of 2,000 queues
does not make its 4,000 calls one after another. A join with a `call` is started once the unit's listing has
items (an empty listing makes no join call), once per region of the unit; when it fails, its `fallback`
details are made per item instead and the gap is reported. Items of regions that are not configured are
dropped as soon as their region is known (after the detail marked `locates`), before the later details are
made for them.

With a `store` (the full scan's spill), memory does not grow with a unit: its listed items are detailed,
joined and shaped `CHUNK` at a time, their records handed to the store every `BATCH`, and only the items
that children or joins read are kept; a join call's elements are kept packed.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from jmespath.exceptions import JMESPathError

from engine.aws.fetch import Fetcher
from engine.aws.sessions import Account, partition
from engine.core.errors import AccessDenied, CallFailed, Interrupted, Throttled
from engine.core.scheduler import Scheduler, Serial, Task
from engine.language.components import (
    Labels,
    ShapeError,
    as_list,
    component,
    context,
    external_id,
    relations,
    stackstate_events,
    with_vars,
)
from engine.language.dialect import search
from engine.language.loader import Call, Detail, Join, Mappings
from engine.scan.plan import Unit

log = logging.getLogger("aws_topology")
T = TypeVar("T")
Index = dict[str, list] | dict[str, bytes]  # a join's elements by key (`_index`)

BATCH = 256  # shaped records handed to the collector's `store` at once
CHUNK = 500  # listed items detailed and shaped at once when the records are stored as they are shaped


@dataclass
class UnitResult:
    unit: Unit
    status: str = "complete"
    error: str | None = None
    components: list[dict] = field(default_factory=list)
    relations: list[dict] = field(default_factory=list)
    stackstate_events: list[dict] = field(default_factory=list)  # the V1 events of the payloads
    gaps: list[CallFailed] = field(default_factory=list)  # denied or throttled detail calls
    seconds: float = 0.0
    kept: tuple[int, int] = (0, 0)  # components and relations already moved out of the lists (to a spill)
    listed: int = 0  # items listed, held against the pool's budget while the unit runs

    @property
    def counts(self) -> tuple[int, int]:
        """How many components and relations the unit shaped."""
        return self.kept[0] + len(self.components), self.kept[1] + len(self.relations)

    @property
    def complete(self) -> bool:
        return self.status == "complete"


class _Gone(Exception):
    """The item disappeared between listing and describing it."""


class Collector:
    """Runs units for one account."""

    def __init__(
        self,
        account: Account,
        mappings: Mappings,
        fetcher: Fetcher,
        labels: Labels,
        scheduler: Scheduler | None = None,
        store: Callable[[UnitResult], None] | None = None,
    ) -> None:
        """`store`, if given, gets a result every `BATCH` shaped records (to move them out of memory)."""
        self.account = account
        self.mappings = mappings
        self.fetcher = fetcher
        self.labels = labels
        self.scheduler = scheduler or Serial()
        self.store = store
        self._joined = {j.resource for r in mappings.resources for j in r.joins if j.resource}

    def run(self, unit: Unit) -> list[UnitResult]:
        """The results of the unit's root type and of each of its child types, root first."""
        results: list[UnitResult] = []
        try:
            self._run(unit, None, results, {})
        finally:
            self.scheduler.release(sum(r.listed for r in results))
        return results

    def collect(
        self, unit: Unit, parents: list[dict] | None = None, seen: dict[str, list[dict]] | None = None
    ) -> tuple[UnitResult, list[dict]]:
        """One resource type of `unit`, without its children: its result and its shaped items. `parents`: the
        parent type's items; `seen`: earlier types' items by short name (for joins), updated. Errors raise."""
        result = UnitResult(unit)
        try:
            return result, self._collect(unit, parents, result, {} if seen is None else seen)
        finally:
            self.scheduler.release(result.listed)

    def _run(
        self, unit: Unit, parents: list[dict] | None, results: list[UnitResult], seen: dict[str, list[dict]]
    ) -> None:
        result = UnitResult(unit)
        results.append(result)
        items = _settled(result, lambda: self._collect(unit, parents, result, seen))
        for child in self.mappings.children(unit.resource):
            child_unit = replace(unit, resource=child)
            if items is None:  # the parent listing is unknown, so is everything under it
                self._unknown(
                    child_unit, result.status, f"not listed: {unit.resource.key} is {result.status}", results
                )
            else:
                self._run(child_unit, items, results, seen)

    def lift(self, unit: Unit) -> tuple[UnitResult, dict[str, str | None]]:
        """Each of `unit.ids` (of a child type) that its `get` still finds, with its root's id: through its
        `parent_id`, then its parent's `get` and `parent_id`, up to the root (None where the chain breaks).
        Nothing is shaped; the result says whether the calls completed."""
        result = UnitResult(unit)
        found = _settled(result, lambda: self._lift(unit))
        return result, found or {}

    def _lift(self, unit: Unit) -> dict[str, str | None]:
        resource, parent = unit.resource, self.mappings.parent_of(unit.resource)
        assert parent is not None and resource.parent_id is not None, f"{resource.key} has no parent_id"
        found = {search(resource.id, i): search(resource.parent_id, i) for i in self._get(unit)}
        found = {child: above if isinstance(above, str) and above else None for child, above in found.items()}
        wanted = tuple(dict.fromkeys(above for above in found.values() if above))
        if parent.parent is None or not wanted:
            return found
        roots = self._lift(replace(unit, resource=parent, ids=wanted))
        return {child: roots.get(above) if above else None for child, above in found.items()}

    def _unknown(self, unit: Unit, status: str, why: str, results: list[UnitResult]) -> None:
        results.append(UnitResult(unit, status, why))
        for child in self.mappings.children(unit.resource):
            self._unknown(replace(unit, resource=child), status, why, results)

    def _collect(
        self, unit: Unit, parents: list[dict] | None, result: UnitResult, seen: dict[str, list[dict]]
    ) -> list[dict]:
        bulk: dict[str, Task[Index | None]] = {}  # the region-wide join calls, started once items are listed
        try:
            return self._collect_items(unit, parents, result, seen, bulk)
        finally:
            for task in bulk.values():
                task.cancel()  # the unit failed before the join was needed: no wasted call

    def _collect_items(
        self,
        unit: Unit,
        parents: list[dict] | None,
        result: UnitResult,
        seen: dict[str, list[dict]],
        bulk: dict[str, Task[Index | None]],
    ) -> list[dict]:
        """The listed items, detailed, joined and shaped `CHUNK` at a time when the records are stored as
        they are shaped (`store`); then only the items children or joins read are kept (others: [])."""
        resource = unit.resource
        listed = self._list(unit, parents)
        result.listed = len(listed)
        self.scheduler.hold(result.listed)  # new units wait while the run holds too many (`Pool.hold`)
        if listed and not unit.ids:  # nothing listed, nothing to join; a refresh of a few ids: per-item calls
            bulk.update(
                (j.into, self.scheduler.spawn(lambda j=j: self._join_elements(unit, j, result)))
                for j in resource.joins
                if j.call is not None
            )
        size = CHUNK if self.store is not None else max(1, len(listed))
        kept = self.store is None or resource.name in self._joined or bool(self.mappings.children(resource))
        indexes: dict[str, Index | None] = {}
        items: list[dict] = []
        while listed:
            chunk, listed[:size] = listed[:size], []  # the chunk's items are let go once shaped
            chunk = self._shape(unit, chunk, result, seen, bulk, indexes)
            if kept:
                items += chunk
        seen[resource.name] = items
        return items

    def _shape(
        self,
        unit: Unit,
        items: list[dict],
        result: UnitResult,
        seen: dict[str, list[dict]],
        bulk: dict[str, Task[Index | None]],
        indexes: dict[str, Index | None],
    ) -> list[dict]:
        """Details, joins and records of listed items (`indexes`: each join's elements by key, built once)."""
        resource = unit.resource
        bind = lambda found: [with_vars(resource.vars, i) for i in found]  # noqa: E731
        joins = {j.into: j for j in resource.joins}

        def index_of(join: Join) -> Index | None:
            if join.into not in indexes:
                if join.call is None:
                    indexes[join.into] = _index(join, seen.get(join.resource or "", []))
                else:
                    indexes[join.into] = bulk[join.into].result() if join.into in bulk else None
            return indexes[join.into]

        items = bind(items)
        located, joined = resource.region is None, set()
        for detail in resource.details:
            join = joins.get(detail.into or "") if detail.fallback and detail.into in bulk else None
            if join is not None and (index := index_of(join)) is not None:
                _join(join, items, index)  # the region-wide call answered: joined here, no call per item,
                joined.add(join.into)  # so later details, `when` and `locates` see it as they see the call's
                items = bind(items)
            else:
                items = bind(self._detail(unit, detail, items, result))
            if detail.locates and not located:
                items, located = bind(self._locate(unit, items)), True
        if not located:
            items = self._locate(unit, items)
        for join in resource.joins:
            if join.into not in joined and (index := index_of(join)) is not None:
                _join(join, items, index)
        items = bind(items)
        for item in items:
            if resource.emits_component:
                record = component(resource, item, self.labels)
                result.components.append(record)
                ext_id = record["externalId"]
            else:
                ext_id = external_id(resource, item)
            item["_external_id"] = ext_id
            result.relations.extend(relations(resource, item, ext_id))
            result.stackstate_events.extend(stackstate_events(resource, item, time.time()))
            if self.store is not None and len(result.components) + len(result.relations) >= BATCH:
                self.store(result)
        return items

    def _locate(self, unit: Unit, items: list[dict]) -> list[dict]:
        """Account-wide items get their own region; those of regions that are not configured are dropped."""
        assert unit.resource.region is not None
        return [
            {**item, "_region": region, "_partition": partition(region)}
            for item in items
            if (region := search(unit.resource.region, item)) in unit.regions
        ]

    def _join_elements(self, unit: Unit, join: Join, result: UnitResult) -> Index | None:
        """The elements of a join's call, made once per region of the unit, indexed (`_index`, packed: a
        region's tags are one small bytes object per key, not thousands of dicts); None when a call failed.

        A denied or throttled call is a gap (its fallback details then run per item); any other failure
        fails the unit unless the join has fallback details. The call's `args` are evaluated over the region's
        context keys; for an account-wide resource, each object element gets `_region`: the region it was
        read in.
        """
        assert join.call is not None
        service = join.call.service or unit.resource.service
        fallback = any(d.fallback and d.into == join.into for d in unit.resource.details)
        elements: list = []
        for region in unit.regions:
            params = dict(join.call.params)
            for name, expression in join.call.args:  # over the region's context keys: no item here
                value = search(expression, context({}, self.account.id, region, partition(region)))
                if value is not None:
                    params.setdefault(name, value)
            try:
                response = self.fetcher.call(self.account, region, service, join.call, params)
            except (AccessDenied, Throttled) as exc:
                result.gaps.append(exc)
                return None
            except CallFailed as exc:
                if not fallback:
                    raise
                log.warning(
                    "event=join.fallback unit=%s operation=%s problem=%r", unit.label, exc.operation, str(exc)
                )
                return None
            found = as_list(search(join.items, response))
            if unit.resource.region is not None:  # account-wide: which region's call gave it says where it is
                found = [{**e, "_region": region} if isinstance(e, dict) else e for e in found]
            elements += found
        return _index(join, elements, packed=True)

    def _context(self, unit: Unit, item: Any, **extra: Any) -> dict:
        region = unit.client_region
        return context(item, self.account.id, region, partition(region), **extra)

    def _list(self, unit: Unit, parents: list[dict] | None) -> list[dict]:
        listing = unit.resource.listing
        if parents is None and unit.ids:
            return self._get(unit)
        if parents is None:
            response = self._call(unit, listing.call, self._context(unit, {}))
            return [self._context(unit, i) for i in as_list(search(listing.items, response))]

        def children(parent: dict) -> list[dict]:
            if listing.call is None:
                source = parent
            else:
                try:
                    source = self._call(unit, listing.call, parent)
                except CallFailed as exc:
                    if exc.code in listing.gone or exc.code in listing.ignore:
                        return []  # the parent vanished (or has nothing to list): only its children go
                    raise
            found = as_list(search(listing.items, source))
            return [self._context(unit, i, **ancestry(unit.resource.parent, parent)) for i in found]

        fan_out = self.scheduler.map if listing.call is not None else _serial_map
        return [child for found in fan_out(children, parents) for child in found]

    def _get(self, unit: Unit) -> list[dict]:
        """The resources of `unit.ids`, fetched by id (`get`), as items like a listing gives them."""
        get = unit.resource.get
        assert get is not None, f"{unit.resource.key} has no get"
        wanted = set(unit.ids)
        if get.call is None:
            return [
                self._context(unit, i)
                for id_ in unit.ids
                for i in as_list(search(get.items, self._context(unit, {"_id": id_})))
            ]
        ids = list(unit.ids)
        batches = (
            [ids[i : i + get.size] for i in range(0, len(ids), get.size)] if get.param else [[i] for i in ids]
        )
        found: list[dict] = []
        while batches:
            ids = batches.pop()
            extra = {get.param: ids} if get.param else {}
            try:
                response = self._call(unit, get.call, self._context(unit, {"_id": ids[0]}), **extra)
            except CallFailed as exc:
                if exc.code not in get.gone:
                    raise
                if len(ids) > 1:  # one of them is gone: ask one by one
                    batches += [[i] for i in ids]
                continue
            found += [self._context(unit, i) for i in as_list(search(get.items, response))]
        found = [i for i in found if not (get.gone_when and search(get.gone_when, i))]
        return [i for i in found if search(unit.resource.id, i) in wanted]

    def _call(self, unit: Unit, call: Call | None, item: dict, **extra: Any) -> dict:
        assert call is not None
        params = {**call.params, **extra}
        for name, expression in call.args:
            value = search(expression, item)
            if value is not None:
                params.setdefault(name, value)
        service = call.service or unit.resource.service
        return self.fetcher.call(self.account, unit.client_region, service, call, params)

    def _detail(self, unit: Unit, detail: Detail, items: list[dict], result: UnitResult) -> list[dict]:
        todo = [i for i in items if detail.when is None or search(detail.when, i)]
        if detail.batch is not None:
            return self._batch(unit, detail, todo, items, result)

        def describe(item: dict) -> bool:
            """Merge the detail into the item; False when the item is gone."""
            try:
                value = self._detail_value(unit, detail, item, result)
            except _Gone:
                return False
            if value is not None:
                _merge(item, detail, value)
            return True

        kept = self.scheduler.map(describe, todo)
        gone = {id(item) for item, ok in zip(todo, kept, strict=True) if not ok}
        return [i for i in items if id(i) not in gone]

    def _detail_value(self, unit: Unit, detail: Detail, item: dict, result: UnitResult) -> Any:
        """The detail's result for one item: one call, or one call per chunk of a list parameter."""
        if detail.chunk is None:
            response = self._detail_call(unit, detail, item, result)
            return None if response is None else _result(detail, response)
        param, size = detail.chunk
        values = as_list(search(dict(detail.call.args)[param], item))
        merged: list = []
        for start in range(0, len(values), size):
            response = self._detail_call(unit, detail, item, result, **{param: values[start : start + size]})
            if response is not None:
                merged += as_list(_result(detail, response))
        return merged

    def _detail_call(
        self, unit: Unit, detail: Detail, item: dict, result: UnitResult, **extra: Any
    ) -> dict | None:
        try:
            return self._call(unit, detail.call, item, **extra)
        except (AccessDenied, Throttled) as exc:
            result.gaps.append(exc)  # the item keeps the data it has; the gap is reported
        except CallFailed as exc:
            if exc.code in detail.gone:
                raise _Gone from None
            if exc.code not in detail.ignore:
                raise
        return None

    def _batch(
        self, unit: Unit, detail: Detail, todo: list[dict], items: list[dict], result: UnitResult
    ) -> list[dict]:
        """Describe distinct keys `size` at a time, per group of items sharing the same `args`.

        A group whose call answers with a `gone` code (its parent vanished) drops its items.
        """
        batch = detail.batch
        assert batch is not None
        groups: dict[str, list[dict]] = {}
        for item in todo:
            args = {name: search(expression, item) for name, expression in detail.call.args}
            groups.setdefault(_key(args), []).append(item)

        def describe(members: list[dict]) -> set[int]:
            """Merge the batch results into the group's items; the ids of the items gone."""
            gone: set[int] = set()
            keys = list(dict.fromkeys(k for i in members if (k := search(batch.key, i)) is not None))
            found: dict[Any, Any] = {}
            for start in range(0, len(keys), batch.size):
                chunk = {batch.param: keys[start : start + batch.size]}
                try:
                    response = self._detail_call(unit, detail, members[0], result, **chunk)
                except _Gone:
                    gone.update(id(i) for i in members if search(batch.key, i) in chunk[batch.param])
                    continue
                for element in as_list(search(batch.items, response) if response else None):
                    found[search(batch.match, element)] = _result(detail, element)
            for item in members:
                key = search(batch.key, item)
                if key in found:
                    _merge(item, detail, found[key])
            return gone

        gone = set().union(*self.scheduler.map(describe, list(groups.values())))
        return [i for i in items if id(i) not in gone]


def _settled(result: UnitResult, work: Callable[[], T]) -> T | None:
    """`work()`, or None with the unit's status and error set from what it raised; its time is recorded."""
    started = time.monotonic()
    try:
        return work()
    except Interrupted as exc:
        result.status, result.error = "interrupted", str(exc)
    except AccessDenied as exc:
        result.status, result.error = "denied", str(exc)
        result.gaps.append(exc)
    except Throttled as exc:
        result.status, result.error = "throttled", str(exc)
    except (CallFailed, ShapeError) as exc:
        result.status, result.error = "failed", str(exc)
    except JMESPathError as exc:
        result.status, result.error = "failed", f"a mapping expression failed on an item: {exc}"
    except Exception as exc:  # a unit's bug or an unparsable response must not stop the others
        log.exception("event=unit.crashed unit=%s", result.unit.label)
        result.status, result.error = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        result.seconds = time.monotonic() - started
    return None


def ancestry(name: str | None, parent: dict) -> dict:
    """A child's context keys from its parent item: region, partition, `_parent`, `_root` (the top
    ancestor) and `_ancestors` (every ancestor by its resource's short name)."""
    return {
        "_region": parent["_region"],
        "_partition": parent["_partition"],
        "_parent": parent,
        "_root": parent.get("_root", parent),
        "_ancestors": {**parent.get("_ancestors", {}), name: parent},
    }


def _serial_map(fn: Any, items: list) -> list:
    return [fn(item) for item in items]


def _index(join: Join, elements: list, packed: bool = False) -> Index:
    """A join's elements by their `key`; `packed`: each key's elements pickled (unpickled per item)."""
    index: dict[str, list] = {}
    for element in elements:
        index.setdefault(_key(search(join.key, element)), []).append(element)
    if not packed:
        return index
    return {key: pickle.dumps(found, pickle.HIGHEST_PROTOCOL) for key, found in index.items()}


def _join(join: Join, items: list[dict], index: Index) -> None:
    """Each item gets the elements whose `key` equals its `match` (or `result` over them) under `into`."""
    for item in items:
        matched = index.get(_key(search(join.match, item)), [])
        if isinstance(matched, bytes):
            matched = pickle.loads(matched)  # pickled by `_index`, in this process
        value = search(join.result, matched) if join.result is not None else matched
        if value is not None:
            item[join.into] = value


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _result(detail: Detail, response: Any) -> Any:
    return search(detail.result, response) if detail.result else response


def _merge(item: dict, detail: Detail, value: Any) -> None:
    if detail.into:
        item[detail.into] = value
    elif isinstance(value, dict):
        item.update({k: v for k, v in value.items() if not k.startswith("_")})
    elif value is not None:  # a list or a scalar has no keys to merge: the mapping needs `into`
        raise ShapeError(
            f"{detail.call.operation}: the detail result is {type(value).__name__}, not an object; "
            "give the detail an `into` key",
            item,
        )
