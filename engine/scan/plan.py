"""Plan: the units of work of one account, from its config and the mappings.

In: an `Instance` (regions, apis_to_run) and `Mappings`. Out: `Unit`s, one per (region, root
resource type); child resources are collected inside their root's unit. Each unit ends complete
or not, and only an account whose units are all complete closes its snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.aws.sessions import GLOBAL_REGION
from engine.core.config import Instance, api_filter
from engine.language.loader import Call, Mappings, Resource

GLOBAL = "global"
ACCOUNT_WIDE = "account"


@dataclass(frozen=True)
class Unit:
    """One (account, region, resource type) piece of a scan."""

    account: str
    region: str  # a region name, "global", or "account" for account-wide lists
    client_region: str
    resource: Resource
    regions: tuple[str, ...]  # regions whose items are kept (account-wide lists)
    ids: tuple[str, ...] = ()  # a refresh (event delta): only these resources, fetched with `get`

    @property
    def label(self) -> str:
        return f"{self.account}/{self.region}/{self.resource.key}"


def selected(resource: Resource, filters: dict[str, frozenset[str] | None] | None) -> bool:
    """apis_to_run: the client name, optionally with words matched as substrings (`ec2|instances`)."""
    if filters is None:
        return True
    if resource.service not in filters:
        return False
    words = filters[resource.service]
    return words is None or resource.filter is None or resource.filter in " ".join(sorted(words))


def plan(instance: Instance, mappings: Mappings) -> list[Unit]:
    filters = api_filter(instance)
    regions = tuple(r for r in instance.regions if r != GLOBAL)
    units: list[Unit] = []
    for resource in mappings.resources:
        if resource.parent is not None or not selected(resource, filters):
            continue
        if resource.scope == "regional":
            units += [Unit(instance.account_id, r, r, resource, (r,)) for r in regions]
        elif resource.scope == ACCOUNT_WIDE and regions:
            units.append(Unit(instance.account_id, ACCOUNT_WIDE, GLOBAL_REGION, resource, regions))
        elif resource.scope == GLOBAL and GLOBAL in instance.regions:
            units.append(Unit(instance.account_id, GLOBAL, GLOBAL_REGION, resource, (GLOBAL_REGION,)))
    return units


def per_item(mappings: Mappings) -> Mappings:
    """The naive plan of the same mappings: no region-wide join calls, every `fallback` detail per item.

    It yields the same components and relations as the bulk plan (tests/scan/test_plan_equivalence.py).
    """
    resources = tuple(
        replace(
            r,
            joins=tuple(j for j in r.joins if j.call is None),
            details=tuple(replace(d, fallback=False) for d in r.details),
        )
        for r in mappings.resources
    )
    return replace(mappings, resources=resources)


per_item_plan = per_item  # for callers with a `per_item` flag of their own


@dataclass(frozen=True)
class PlannedCall:
    """One call of a unit's plan: what is called, how often, and how fast."""

    resource: str
    service: str
    operation: str
    count: str  # "once", "per item", "per 20 items", "per parent item", "once per region", ...
    paged: bool
    rate: str  # "20/s burst 100", or "-" (botocore's adaptive retries only)
    when: str = ""  # a condition: "if GetResources fails", "items with a condition"


def call_plan(unit: Unit, mappings: Mappings) -> list[PlannedCall]:
    """The calls a unit makes, root first then each child type, without calling AWS."""
    planned: list[PlannedCall] = []
    _plan_resource(unit, unit.resource, mappings, planned)
    return planned


def _rate(call: Call) -> str:
    return f"{call.rate.per_second:g}/s burst {call.rate.burst}" if call.rate else "-"


def _plan_resource(unit: Unit, resource: Resource, mappings: Mappings, planned: list[PlannedCall]) -> None:
    def add(call: Call, count: str, when: str = "") -> None:
        paged = call.paginate or call.next is not None
        service = call.service or resource.service
        planned.append(PlannedCall(resource.key, service, call.operation, count, paged, _rate(call), when))

    listing = resource.listing
    if listing.call is not None:
        add(listing.call, "per parent item" if resource.parent else "once")
    regions = len(unit.regions)
    bulk = {j.into: j for j in resource.joins if j.call is not None}
    for join in bulk.values():
        assert join.call is not None
        add(join.call, "once" if regions == 1 else f"once in each of {regions} regions")
    for detail in resource.details:
        if detail.batch is not None:
            count = f"per {detail.batch.size} items"
        elif detail.chunk is not None:
            count = f"per item, per {detail.chunk[1]} ids"
        else:
            count = "per item"
        when = ""
        if detail.fallback and detail.into in bulk:
            join_call = bulk[detail.into].call
            when = f"only if {join_call.operation if join_call else '?'} fails"
        elif detail.when is not None:
            when = "items matching `when`"
        add(detail.call, count, when=when)
    for child in mappings.children(resource):
        _plan_resource(unit, child, mappings, planned)


def format_plan(units: list[Unit], mappings: Mappings) -> list[str]:
    """`aws-topology plan`: per unit, its calls, how many per item or per page, and their pacing."""
    lines: list[str] = []
    for unit in units:
        lines.append(f"{unit.label}")
        for c in call_plan(unit, mappings):
            service = "" if c.service == unit.resource.service else f" ({c.service})"
            how = c.count + (", every page" if c.paged else "")
            when = f"  [{c.when}]" if c.when else ""
            lines.append(f"  {c.resource:<28} {c.operation + service:<52} {how:<34} rate {c.rate}{when}")
    return lines
