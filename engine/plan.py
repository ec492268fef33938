"""Plan: the units of work of one account, from its config and the mappings.

In: an `Instance` (regions, apis_to_run) and `Mappings`. Out: `Unit`s, one per (region, root
resource type); child resources are collected inside their root's unit. Each unit ends complete
or not, and only an account whose units are all complete closes its snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.auth import GLOBAL_REGION
from engine.config import Instance, api_filter
from engine.mappings import Mappings, Resource

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
