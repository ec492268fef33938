"""Try one resource of one mapping file on saved (or live) responses: the mapping author's loop.

In: the mappings, one resource, and either saved responses by operation (`Replay`: no AWS call) or a live
`Account` and `Fetcher`. Out: a `Trial`: that resource's components, relations and V1 events, and the calls
not made for want of a saved response. The shaping is the collector's own (`Collector.collect`), run on the
resource's ancestors and on the resources it joins first, as a scan runs them, so what `try` shows is what a
scan emits. An expression that fails is explained by `explain`: its text, its keys in the file, the item.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from jmespath.exceptions import JMESPathError

from engine.aws.sessions import GLOBAL_REGION, Account, known_regions
from engine.core.errors import AccessDenied, BadInput
from engine.language.components import Labels, ShapeError, as_list
from engine.language.dialect import ExpressionError, search
from engine.language.loader import Call, Mappings, Resource
from engine.scan.collect import Collector
from engine.scan.plan import ACCOUNT_WIDE, GLOBAL, Unit

SHORT = 160  # characters of an item shown in an error
SHAPING_ERRORS = (JMESPathError, ExpressionError, ShapeError)  # raised by run_trial with `resource` set


class TrialError(BadInput):
    fmt = "{problem}"


class NotSupplied(AccessDenied):
    """A call no saved response was given for. It is not made; the collector takes it as a gap (the item
    keeps the data it has), and a listing without one stops the trial."""

    fmt = "{operation}: no saved response; give one with --response {operation}=FILE"


class Replay:
    """A fetcher that answers each operation with its saved response, and records those it lacks."""

    def __init__(self, responses: dict[str, Any]) -> None:
        self.responses = responses
        self.skipped: dict[str, None] = {}  # operations asked for without a response, in order

    def call(self, account: Account, region: str, service: str, call: Call, params: dict[str, Any]) -> dict:
        if call.operation not in self.responses:
            self.skipped[call.operation] = None
            raise NotSupplied(
                operation=call.operation, account=account.id, region=region, code="NotSupplied",
                role_arn="-", action=call.iam_action,
            )  # fmt: skip
        return copy.deepcopy(self.responses[call.operation])


class Recorder:
    """A live fetcher that keeps the last response of each operation (to find a failing item in it)."""

    def __init__(self, fetcher: Any) -> None:
        self.fetcher = fetcher
        self.responses: dict[str, Any] = {}
        self.skipped: dict[str, None] = {}

    def call(self, account: Account, region: str, service: str, call: Call, params: dict[str, Any]) -> dict:
        response = self.fetcher.call(account, region, service, call, params)
        self.responses[call.operation] = response
        return response


@dataclass
class Trial:
    resource: Resource
    components: list[dict] = field(default_factory=list)
    relations: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (operation, keys in the file)


def find_resource(mappings: Mappings, file: str, name: str) -> Resource:
    """The resource of `file` named `name` (its short name or its component type)."""
    own = [r for r in mappings.resources if r.file == file]
    if not own:
        raise TrialError(problem=f"{file}: no such mapping file among the loaded mappings")
    for r in own:
        if name in (r.name, r.type, *r.types):
            return r
    known = ", ".join(f"{r.name} ({r.type})" for r in own)
    raise TrialError(problem=f"{file}: no resource {name!r}; it declares {known}")


def needed(mappings: Mappings, resource: Resource) -> list[Resource]:
    """`resource`, its ancestors and the resources it (or they) join, parents first, as a unit runs them."""
    own = {r.name: r for r in mappings.resources if r.file == resource.file}
    wanted: set[str] = set()
    todo = [resource.name]
    while todo:
        name = todo.pop()
        if name in wanted or name not in own:
            continue
        wanted.add(name)
        todo += [own[name].parent or ""] + [j.resource for j in own[name].joins if j.resource]
    return [r for r in own.values() if r.name in wanted]


def _lineage(mappings: Mappings, resource: Resource) -> set[str]:
    """The short names of `resource` and its ancestors."""
    own = {r.name: r for r in mappings.resources if r.file == resource.file}
    names, r = set(), resource
    while r is not None:
        names.add(r.name)
        r = own.get(r.parent or "")
    return names


def run_trial(
    mappings: Mappings, resource: Resource, fetcher: Replay | Recorder, account: Account, region: str
) -> Trial:
    """Collect `resource` (after what it needs) through `fetcher`; expression and shape errors raise."""
    collector = Collector(account, mappings, fetcher, Labels(account.id))  # type: ignore[arg-type]
    items: dict[str, list[dict]] = {}
    seen: dict[str, list[dict]] = {}
    trial = Trial(resource)
    lineage = _lineage(mappings, resource)
    for r in needed(mappings, resource):
        parents = items[r.parent] if r.parent else None
        try:
            result, items[r.name] = collector.collect(_unit(account.id, region, r), parents, seen)
        except NotSupplied as exc:
            if r.name in lineage:
                raise TrialError(problem=f"{r.file}: resources.{r.name}.list: {exc}") from None
            items[r.name] = seen[r.name] = []  # a joined resource without its listing joins nothing
        except SHAPING_ERRORS as exc:
            exc.resource, exc.parents = r, parents  # type: ignore[union-attr]
            raise
    trial.components, trial.relations = result.components, result.relations
    trial.events = result.stackstate_events
    calls = _calls(needed(mappings, resource))
    trial.skipped = [(op, tuple(calls.get(op, ()))) for op in fetcher.skipped]
    return trial


def _unit(account: str, region: str, resource: Resource) -> Unit:
    if resource.scope == ACCOUNT_WIDE:  # every item keeps its own region
        return Unit(account, ACCOUNT_WIDE, GLOBAL_REGION, resource, tuple(sorted(known_regions())))
    if resource.scope == GLOBAL:
        return Unit(account, GLOBAL, GLOBAL_REGION, resource, (GLOBAL_REGION,))
    return Unit(account, region, region, resource, (region,))


def _calls(resources: list[Resource]) -> dict[str, list[str]]:
    """Operation -> the keys of the file that declare a call of it."""
    found: dict[str, list[str]] = {}
    for r in resources:
        key = f"resources.{r.name}"
        calls = [(f"{key}.list", r.listing.call)]
        calls += [(f"{key}.details[{i}]", d.call) for i, d in enumerate(r.details)]
        calls += [(f"{key}.joins[{i}].call", j.call) for i, j in enumerate(r.joins)]
        for where, call in calls:
            if call is not None:
                found.setdefault(call.operation, []).append(where)
    return found


def explain(exc: Exception, mappings: Mappings, responses: dict[str, Any]) -> str:
    """What failed, where in the file, and on which item: the expression, its keys and the item's index."""
    resource: Resource | None = getattr(exc, "resource", None)
    if resource is None:
        return str(exc)
    lines = [f"{resource.file}: resources.{resource.name}: {type(exc).__name__}: {exc}"]
    expression = getattr(exc, "expression", None)
    if expression is not None:
        same_file = [r for r in mappings.resources if r.file == resource.file]
        keys = resource.expressions.get(expression) or [
            k for r in same_file for k in r.expressions.get(expression, ())
        ]
        lines.append(f"  expression: {expression}")
        lines.append(f"  key: {', '.join(keys) or '(a placeholder or an engine default)'}")
    value = getattr(exc, "value", None) if expression is not None else getattr(exc, "item", None)
    if value is not None:
        lines.append(f"  {_which(value, resource, getattr(exc, 'parents', None), responses)}")
    return "\n".join(lines)


def _which(value: Any, resource: Resource, parents: list[dict] | None, responses: dict[str, Any]) -> str:
    """ "item 3 of ListQueues: {...}" for the failing item, matched back to its listing; else the value."""
    item = value.get("_item", value) if isinstance(value, dict) else value
    listing = resource.listing
    if listing.call is not None:
        source, sources = listing.call.operation, [responses.get(listing.call.operation)]
    else:
        source, sources = f"{resource.parent} items", list(parents or [])
    listed = [e for s in sources if s is not None for e in as_list(_search(listing.items, s))]
    for index, element in enumerate(listed):
        if _is_listed(element, item):
            return f"item {index} of {source}: {_short(element)}"
    return f"on: {_short(item)}"


def _search(expression: Any, value: Any) -> Any:
    try:
        return search(expression, value)
    except (JMESPathError, ExpressionError):
        return None


def _is_listed(element: Any, item: Any) -> bool:
    """Whether a listed element is the one this (context-carrying, detailed) item grew from."""
    if not isinstance(item, dict):
        return False
    if not isinstance(element, dict):
        return item.get("_value") == element
    return bool(element) and all(k in item and item[k] == v for k, v in element.items())


def _short(value: Any) -> str:
    plain = {k: v for k, v in value.items() if not k.startswith("_")} if isinstance(value, dict) else value
    text = json.dumps(plain, default=str, sort_keys=True)
    return text if len(text) <= SHORT else text[: SHORT - 3] + "..."


def as_text(trial: Trial) -> str:
    """A readable listing: each component with its identifiers, each relation, the calls not made."""
    r = trial.resource
    lines = [
        f"{r.file}: resources.{r.name} ({', '.join(r.types)}): {len(trial.components)} component(s), "
        f"{len(trial.relations)} relation(s), {len(trial.events)} event(s)"
    ]
    for c in trial.components:
        data = c["data"]
        lines.append(f"{c['type']['name']}  {c['externalId']}")
        lines += [f"    name: {data['Name']}"] if data.get("Name") else []
        lines += [f"    identifier: {i}" for i in data.get("identifiers", ())]
        lines += [f"    console: {data['ConsoleUrl']}"] if data.get("ConsoleUrl") else []
    if trial.relations:
        lines.append("relations:")
        lines += [f"    {x['sourceId']} -[{x['type']['name']}]-> {x['targetId']}" for x in trial.relations]
    if trial.skipped:
        lines.append("not called (no saved response; the scan would add what they give):")
        lines += [f"    {op} ({', '.join(keys)}): --response {op}=FILE" for op, keys in trial.skipped]
    return "\n".join(lines)


def as_json(trial: Trial) -> str:
    r = trial.resource
    return json.dumps(
        {
            "file": r.file, "resource": r.name, "types": list(r.types),
            "components": trial.components, "relations": trial.relations, "events": trial.events,
            "not_called": [{"operation": op, "keys": list(keys)} for op, keys in trial.skipped],
        },
        indent=2,
    )  # fmt: skip


def saved_responses(mappings: Mappings, resource: Resource, specs: tuple[str, ...]) -> dict[str, Any]:
    """Operation -> saved response, from `--response` values: `OP=FILE`, or a bare `FILE` for the list call
    of the resource (of its nearest ancestor that has one, when its items are derived)."""
    own = {r.name: r for r in mappings.resources if r.file == resource.file}
    lister: Resource | None = resource
    while lister is not None and lister.listing.call is None:
        lister = own.get(lister.parent or "")
    found: dict[str, Any] = {}
    for spec in specs:
        operation, _, path = spec.partition("=") if _OPERATION.match(spec) else ("", "", spec)
        if not operation:
            assert lister is not None and lister.listing.call is not None  # a derived resource has a parent
            operation = lister.listing.call.operation
        try:
            with open(path, encoding="utf-8") as file:
                response = json.load(file)
        except (OSError, ValueError) as exc:
            raise TrialError(problem=f"--response {spec}: cannot read JSON: {exc}") from None
        if isinstance(response, dict):
            response.pop("ResponseMetadata", None)
        found[operation] = response
    return found


_OPERATION = re.compile(r"^[A-Z][A-Za-z0-9]*=")
