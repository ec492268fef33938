"""The catalogue of component types, generated from the mappings (`aws-topology types`).

In: the loaded `Mappings`. Out: one markdown table row per component type: type, layer, where it is declared,
the API calls that collect it, its relations and its event rules. Generated on demand, never committed: adding
a mapping file changes no generated file.
"""

from __future__ import annotations

from engine.language.loader import Mappings, Resource

HEADER = """# Component types

Generated from `mappings/*.yaml` by `aws-topology types`. Calls: `list` (how items are enumerated; *derived*
when read from the parent item), `details`, `get` (by id, for event deltas). Relations: `type → target type`
(`←` for `direction: in`; *outside* when the other end is not a component type). Events: the CloudTrail event
names (or EventBridge detail-types) that refresh the type, and those that delete it (*delete*).

| Type | Layer | Mapping | Calls | Relations | Events |
|---|---|---|---|---|---|
"""


def catalogue(mappings: Mappings) -> str:
    """The markdown page: one row per component type, sorted by type."""
    rows = [(t, _row(t, r)) for r in mappings.resources if r.emits_component for t in r.types]
    return HEADER + "".join(row for _, row in sorted(rows))


def _row(type_name: str, resource: Resource) -> str:
    where = f"{resource.file} `{resource.name}`" + (
        f" (under `{resource.parent}`)" if resource.parent else ""
    )
    cells = [f"`{type_name}`", resource.layer or "", where, _calls(resource), _relations(resource)]
    return "| " + " | ".join([*cells, _events(resource)]).replace("\n", " ") + " |\n"


def _calls(resource: Resource) -> str:
    listing = resource.listing.call
    calls = [f"list: {listing.operation if listing else '*derived*'}"]
    calls += [f"details: {', '.join(d.call.operation for d in resource.details)}"] if resource.details else []
    get = resource.get
    calls += [f"get: {get.call.operation if get.call else '*from the id*'}"] if get else []
    return "<br>".join(calls)


def _relations(resource: Resource) -> str:
    found = []
    for rel in resource.relations:
        arrow = "←" if rel.inbound else "→"
        ends = "*outside*" if rel.outside else ", ".join(f"`{t}`" for t in rel.to)
        ends = "every type that declares `cloudformation`" if rel.table is not None else ends
        found.append(f"{rel.type} {arrow} {ends}")
    return "<br>".join(dict.fromkeys(found))


def _events(resource: Resource) -> str:
    found = []
    for rule in resource.event_rules:
        names = ", ".join(sorted(rule.names)) or rule.detail_type
        found.append(f"{names}{' (*delete*)' if rule.delete else ''}")
    return "<br>".join(found)
