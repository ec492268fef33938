"""Collect: execute one unit (list, details, children) and shape its items.

In: a `Unit`, its `Account`, the `Fetcher`. Out: `UnitResult` with components, relations and a
status: `complete`, or `denied` / `throttled` / `failed` when the listing could not be finished
(unknown is not empty). A denied or throttled *detail* call keeps the item with less data and is
reported as a permission gap, as the StackPack did.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from jmespath.exceptions import JMESPathError

from engine.auth import Account
from engine.errors import AccessDenied, CallFailed, Throttled
from engine.fetch import Fetcher
from engine.functions import search
from engine.mappings import Call, Detail, Mappings, Resource
from engine.plan import Unit
from engine.shape import Labels, ShapeError, as_list, component, context, relations

log = logging.getLogger("aws_topology")


@dataclass
class UnitResult:
    unit: Unit
    status: str = "complete"
    error: str | None = None
    components: list[dict] = field(default_factory=list)
    relations: list[dict] = field(default_factory=list)
    gaps: list[AccessDenied] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.status == "complete"


class _Gone(Exception):
    """The item disappeared between listing and describing it."""


class Collector:
    """Runs units for one account."""

    def __init__(self, account: Account, mappings: Mappings, fetcher: Fetcher, labels: Labels) -> None:
        self.account = account
        self.mappings = mappings
        self.fetcher = fetcher
        self.labels = labels

    def run(self, unit: Unit) -> UnitResult:
        result = UnitResult(unit)
        started = time.monotonic()
        try:
            self._collect(unit, unit.resource, None, result)
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
            log.exception("event=unit.crashed unit=%s", unit.label)
            result.status, result.error = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
        result.seconds = time.monotonic() - started
        return result

    def _collect(
        self, unit: Unit, resource: Resource, parents: list[dict] | None, result: UnitResult
    ) -> None:
        items = self._list(unit, resource, parents)
        for detail in resource.details:
            items = self._detail(unit, resource, detail, items, result)
        if resource.region is not None:
            items = [
                {**item, "_region": region}
                for item in items
                if (region := search(resource.region, item)) in unit.regions
            ]
        for item in items:
            record = component(resource, item, self.labels)
            result.components.append(record)
            result.relations.extend(relations(resource, item, record["externalId"]))
        for child in self.mappings.children(resource):
            self._collect(unit, child, items, result)

    def _context(self, unit: Unit, item: Any, **extra: Any) -> dict:
        return context(item, self.account.id, unit.client_region, **extra)

    def _list(self, unit: Unit, resource: Resource, parents: list[dict] | None) -> list[dict]:
        listing = resource.listing
        if parents is None:
            response = self._call(unit, resource, listing.call, self._context(unit, {}))
            return [self._context(unit, i) for i in as_list(search(listing.items, response))]
        items = []
        for parent in parents:
            source = parent if listing.call is None else self._call(unit, resource, listing.call, parent)
            found = as_list(search(listing.items, source))
            items += [self._context(unit, i, _parent=parent) for i in found]
        return items

    def _call(self, unit: Unit, resource: Resource, call: Call | None, item: dict, **extra: Any) -> dict:
        assert call is not None
        params = {**call.params, **extra}
        for name, expression in call.args:
            value = search(expression, item)
            if value is not None:
                params[name] = value
        return self.fetcher.call(self.account, unit.client_region, resource.service, call, params)

    def _detail(
        self, unit: Unit, resource: Resource, detail: Detail, items: list[dict], result: UnitResult
    ) -> list[dict]:
        todo = [i for i in items if detail.when is None or search(detail.when, i)]
        if detail.batch is not None:
            self._batch(unit, resource, detail, todo, result)
            return items
        gone: set[int] = set()
        for item in todo:
            try:
                response = self._detail_call(unit, resource, detail, item, result)
            except _Gone:
                gone.add(id(item))
                continue
            if response is not None:
                _merge(item, detail, search(detail.result, response) if detail.result else response)
        return [i for i in items if id(i) not in gone]

    def _detail_call(
        self, unit: Unit, resource: Resource, detail: Detail, item: dict, result: UnitResult, **extra: Any
    ) -> dict | None:
        try:
            return self._call(unit, resource, detail.call, item, **extra)
        except AccessDenied as exc:
            result.gaps.append(exc)
        except Throttled:
            pass  # botocore retried already; the item keeps the data it has
        except CallFailed as exc:
            if exc.code in detail.gone:
                raise _Gone from None
            if exc.code not in detail.ignore:
                raise
        return None

    def _batch(
        self, unit: Unit, resource: Resource, detail: Detail, items: list[dict], result: UnitResult
    ) -> None:
        """Describe distinct keys `size` at a time, per group of items sharing the same `args`."""
        batch = detail.batch
        assert batch is not None
        groups: dict[str, list[dict]] = {}
        for item in items:
            args = {name: search(expression, item) for name, expression in detail.call.args}
            groups.setdefault(json.dumps(args, sort_keys=True, default=str), []).append(item)
        for members in groups.values():
            keys = list(dict.fromkeys(k for i in members if (k := search(batch.key, i)) is not None))
            found: dict[Any, Any] = {}
            for start in range(0, len(keys), batch.size):
                chunk = {batch.param: keys[start : start + batch.size]}
                try:
                    response = self._detail_call(unit, resource, detail, members[0], result, **chunk)
                except _Gone:
                    continue
                for element in as_list(search(batch.items, response) if response else None):
                    found[search(batch.match, element)] = (
                        search(detail.result, element) if detail.result else element
                    )
            for item in members:
                key = search(batch.key, item)
                if key in found:
                    _merge(item, detail, found[key])


def _merge(item: dict, detail: Detail, value: Any) -> None:
    if detail.into:
        item[detail.into] = value
    elif isinstance(value, dict):
        item.update({k: v for k, v in value.items() if not k.startswith("_")})
