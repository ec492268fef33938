"""Load `mappings/*.yaml` into frozen, compiled resource specs.

In: a folder of mapping files. Out: `Mappings`, the resource specs with every JMESPath compiled.
Each file is checked against `schemas/mapping.schema.json`, every expression is compiled, and each
operation and parameter is checked against botocore's service model; all problems are reported
together, each as `file: key: problem`. Nothing after this module reads raw YAML.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from botocore import xform_name
from botocore.exceptions import UnknownServiceError
from jmespath.parser import ParsedResult

from engine.core import botocore_data
from engine.core.config import StrictLoader
from engine.core.errors import MappingErrors
from engine.core.paths import MAPPINGS, SCHEMAS
from engine.language import shapes
from engine.language.dialect import ExpressionError, compile_expression, format_reads

_API_VERSION = re.compile(r"(?<=[a-z])20[0-9]{6}(v[0-9]+)?$")  # CloudTrail's suffix: CreateFunction20150331v2


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int


@dataclass(frozen=True)
class NextPage:
    """Manual pagination: `token` over a response gives `param` of the next call, or null."""

    param: str
    token: ParsedResult


@dataclass(frozen=True)
class Call:
    """One AWS operation with its literal and per-item parameters."""

    operation: str
    method: str
    iam_action: str
    params: Mapping[str, Any] = field(default_factory=dict)
    args: tuple[tuple[str, ParsedResult], ...] = ()
    paginate: bool = False
    rate: Rate | None = None
    next: NextPage | None = None
    service: str | None = None  # the boto3 client when not the resource's: a detail's or join's `service`


@dataclass(frozen=True)
class Batch:
    param: str
    key: ParsedResult
    size: int
    items: ParsedResult
    match: ParsedResult


@dataclass(frozen=True)
class Detail:
    call: Call
    result: ParsedResult | None
    into: str | None
    when: ParsedResult | None
    ignore: frozenset[str]
    gone: frozenset[str]
    batch: Batch | None
    chunk: tuple[str, int] | None = None  # (list parameter, size)
    fallback: bool = False  # made only when the call of the join with the same `into` failed
    locates: bool = False  # after it, items of regions that are not configured are dropped


@dataclass(frozen=True)
class Listing:
    call: Call | None  # None: derived from the parent item
    items: ParsedResult
    ignore: frozenset[str] = frozenset()
    gone: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Emit:
    type: str
    title: str
    text: ParsedResult
    host: ParsedResult
    tags: ParsedResult | None
    each: ParsedResult | None


@dataclass(frozen=True)
class Join:
    """Elements joined into each item: another resource's items, or a call's made once per region."""

    resource: str | None
    key: ParsedResult
    match: ParsedResult
    into: str
    call: Call | None = None  # made once per region of the unit, not per item
    items: ParsedResult | None = None  # the call's elements
    result: ParsedResult | None = None  # over the matched elements; default: the list


@dataclass(frozen=True)
class Get:
    call: Call | None  # None: the item is built from the id alone
    param: str | None
    items: ParsedResult
    gone: frozenset[str] = frozenset()
    size: int = 20
    gone_when: ParsedResult | None = None  # over a described item: true when it no longer exists


@dataclass(frozen=True)
class Relation:
    type: str
    target: ParsedResult
    each: ParsedResult | None
    inbound: bool
    data: ParsedResult | None
    to: tuple[str, ...] = ()  # the component types the other end may be
    outside: str | None = None  # why the other end is not a component of the topology
    table: Mapping[str, str] | None = None  # `table: cloudformation`: every declaration, seen as `_table`


@dataclass(frozen=True)
class CloudFormation:
    """How a CloudFormation resource of `type` becomes this component's external id."""

    type: str
    physical_id: str  # format() template over a stack resource (PhysicalResourceId, _region, ...)


CLOUDTRAIL = "AWS API Call via CloudTrail"
# The keys the engine puts into items: a `vars` name may not be one of them.
CONTEXT_KEYS = frozenset(
    {"_account", "_region", "_partition", "_external_id", "_parent", "_root", "_ancestors", "_id"}
    | {"_item", "_table", "_console", "_value", "_api", "_operation", "_caller"}
)
Vars = tuple[tuple[str, ParsedResult], ...]  # (name, expression), in declaration order


@dataclass(frozen=True)
class EventRule:
    source: str
    api_version: str | None
    names: frozenset[str]  # CloudTrail eventName values; empty for other detail-types
    ids: ParsedResult
    delete: bool
    delete_id: ParsedResult | None
    detail_type: str = CLOUDTRAIL


@dataclass(frozen=True)
class TraceRule:
    """How a traced call names a resource of this type: the called `services` (as the engine normalises them),
    optionally only some `operations`, and `id`: the called resource's external id (or ids) over the call."""

    services: frozenset[str]
    operations: frozenset[str]
    id: ParsedResult
    vars: Vars = ()
    each: ParsedResult | None = None  # then `id` is evaluated per element, as `_value`


@dataclass(frozen=True)
class Resource:
    """One component type, as declared in a mapping file."""

    service: str
    name: str
    type: str  # a type name, or a format() template when `types` is set
    types: tuple[str, ...]  # every type name this resource can produce
    type_template: ParsedResult | None
    emits_component: bool
    filter: str | None
    layer: str | None
    domain: str
    scope: str
    parent: str | None
    listing: Listing
    details: tuple[Detail, ...]
    get: Get | None
    region: ParsedResult | None
    id: ParsedResult
    external_id: ParsedResult
    display_name: ParsedResult | None
    urns: tuple[ParsedResult, ...]
    tags: ParsedResult
    cw_dimensions: ParsedResult | None
    console: ParsedResult | None
    data: ParsedResult | None
    relations: tuple[Relation, ...]
    event_rules: tuple[EventRule, ...]
    file: str
    joins: tuple[Join, ...] = ()
    emits: tuple[Emit, ...] = ()
    cloudformation: CloudFormation | None = None
    vars: Vars = ()  # named sub-expressions, set on each item in order
    trace_rules: tuple[TraceRule, ...] = ()
    console_name: str | None = None  # the console `console` opens ("Step Functions"); None without one
    parent_id: ParsedResult | None = None  # a child's: its parent's id, over the item its `get` returns
    # expression text -> the keys of the file that hold it, to name the key when it fails on an item
    expressions: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)
    key: str = field(init=False, compare=False, hash=False, repr=False)  # "service.name", made once

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.service}.{self.name}")


@dataclass(frozen=True)
class Interfaces:
    """How the flow-log reader lists a region's network interfaces and reads each (file key `interfaces`)."""

    service: str
    listing: Listing
    id: ParsedResult
    vpc: ParsedResult
    addresses: ParsedResult
    public_ips: ParsedResult | None
    owner: ParsedResult | None
    exclude: ParsedResult | None
    describe: ParsedResult | None
    file: str
    vars: Vars = ()


@dataclass(frozen=True)
class Mappings:
    resources: tuple[Resource, ...]
    interfaces: tuple[Interfaces, ...] = ()

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.service for r in self.resources))

    def calls(self) -> Iterator[tuple[str, Call]]:
        """(boto3 client name, call) of every call of every mapping: list, details, get, joins, interfaces.
        A detail or a join may call another client than its resource's (`service`)."""
        for resource in self.resources:
            calls = [resource.listing.call, *(d.call for d in resource.details)]
            calls += [resource.get.call if resource.get else None, *(j.call for j in resource.joins)]
            for call in calls:
                if call is not None:
                    yield call.service or resource.service, call
        for interfaces in self.interfaces:  # the flow-log reader's network interfaces
            if interfaces.listing.call is not None:
                yield interfaces.service, interfaces.listing.call

    def children(self, parent: Resource) -> tuple[Resource, ...]:
        return tuple(r for r in self.resources if r.service == parent.service and r.parent == parent.name)

    def parent_of(self, child: Resource) -> Resource | None:
        found = (r for r in self.resources if r.service == child.service and r.name == child.parent)
        return next(found, None)

    def root(self, resource: Resource) -> Resource:
        while (parent := self.parent_of(resource)) is not None:
            resource = parent
        return resource


def load_mappings(directory: Path | str = MAPPINGS) -> Mappings:
    """Load and check every `*.yaml` in `directory`; raise `MappingErrors` listing every problem.
    The clients of this process will then carry the operations the mappings call (`NarrowLoader`)."""
    problems: list[str] = []
    resources: list[Resource] = []
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise MappingErrors(details=f"{directory}: -: no mapping files (*.yaml) found")
    declared: dict[str, str] = {}  # a component type or a CloudFormation type -> where it is declared
    interfaces: list[Interfaces] = []
    for path in files:
        loader = _FileLoader(path)
        resources += loader.load()
        problems += loader.problems
        interfaces += [loader.interfaces] if loader.interfaces else []
        for resource in loader.resources:
            problems += _declared_twice(f"{path.name}: resources.{resource.name}", resource, declared)
    if problems:
        raise MappingErrors(details="\n".join(problems))
    mappings = Mappings(_with_tables(resources), tuple(interfaces))
    for service, call in mappings.calls():
        botocore_data.client_loader().want(service, [call.operation])
    return mappings


def _declared_twice(where: str, resource: Resource, declared: dict[str, str]) -> list[str]:
    """Problems for each component type or CloudFormation type of `resource` that is in `declared`
    (name -> where) from another place; records the others."""
    names = [("type", t) for t in (resource.types if resource.emits_component else ())]
    names += [("cloudformation.type", resource.cloudformation.type)] if resource.cloudformation else []
    found = []
    for key, name in names:
        if declared.setdefault(name, where) != where:
            found.append(f"{where}.{key}: {name} is already declared in {declared[name]}")
    return found


def _with_tables(resources: list[Resource]) -> tuple[Resource, ...]:
    """Fill each `table: cloudformation` relation with every resource's `cloudformation` declaration
    (CloudFormation type -> format() template of the external id); its `to` are the declaring types."""
    declared = [r for r in resources if r.cloudformation is not None]
    table = {r.cloudformation.type: r.cloudformation.physical_id for r in declared if r.cloudformation}
    types = tuple(t for r in declared for t in r.types)

    def filled(rel: Relation) -> Relation:
        return rel if rel.table is None else replace(rel, table=table, to=rel.to or types)

    return tuple(replace(r, relations=tuple(map(filled, r.relations))) for r in resources)


@cache
def _schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / "mapping.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


class _FileLoader:
    """Turns one mapping file into `Resource`s, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.resources: list[Resource] = []
        self.model: Any = None
        self.paginators: dict[str, Any] = {}
        self.iam_actions: dict[tuple[str, str], str] = {}
        self.interfaces: Interfaces | None = None
        self.where: dict[str, list[str]] = {}  # expression text -> keys, of the resource being loaded

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.path.name}: {key or '-'}: {text}")

    def load(self) -> list[Resource]:
        try:
            raw = yaml.load(self.path.read_text(encoding="utf-8"), Loader=StrictLoader)
        except UnicodeDecodeError as exc:
            self.problem("-", f"not UTF-8 text (bad byte at offset {exc.start})")
            return []
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "-"
            self.problem(where, f"invalid YAML: {getattr(exc, 'problem', exc)}")
            return []
        except OSError as exc:
            self.problem("-", f"cannot read: {exc.strerror}")
            return []
        errors = sorted(_schema_validator().iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
        for error in errors:
            self.problem(_dotted(error.absolute_path), _schema_problem(error))
        if errors:
            return []
        service = raw["service"]
        self.iam_actions = _declared_iam_actions(raw)
        session = botocore_data.session()
        try:
            self.model = session.get_service_model(service)
            self.paginators = session.get_paginator_model(service)._paginator_config
        except UnknownServiceError:
            self.problem("service", f"{service!r} is not a boto3 client name")
        for name, spec in raw["resources"].items():
            resource = self.resource(raw, name, spec)
            if resource is not None:
                self.resources.append(resource)
        if "interfaces" in raw:
            self.interfaces = self.interface_spec(raw["service"], raw["interfaces"])
        return self.resources

    def interface_spec(self, service: str, spec: dict) -> Interfaces | None:
        before = len(self.problems)
        opt = lambda sub: self.expression(f"interfaces.{sub}", spec[sub]) if sub in spec else None  # noqa: E731
        if "operation" not in spec["list"]:
            self.problem("interfaces.list", "needs an operation")
        interfaces = Interfaces(
            service=service,
            listing=Listing(
                call=self.call("interfaces.list", spec["list"]),
                items=self.expression("interfaces.list.items", spec["list"]["items"]),
                ignore=frozenset(spec["list"].get("ignore", ())),
                gone=frozenset(spec["list"].get("gone", ())),
            ),
            id=self.expression("interfaces.id", spec["id"]),
            vpc=self.expression("interfaces.vpc", spec["vpc"]),
            addresses=self.expression("interfaces.addresses", spec["addresses"]),
            public_ips=opt("public_ips"),
            owner=opt("owner"),
            exclude=opt("exclude"),
            describe=opt("describe"),
            file=self.path.name,
            vars=self.vars("interfaces.vars", spec.get("vars", {})),
        )
        return interfaces if len(self.problems) == before else None

    def resource(self, raw: dict, name: str, spec: dict) -> Resource | None:
        key = f"resources.{name}"
        before = len(self.problems)
        self.where = {}
        parent = spec.get("parent")
        earlier = list(raw["resources"])[: list(raw["resources"]).index(name)]
        if parent is not None and parent not in earlier:
            self.problem(f"{key}.parent", f"{parent!r} must be a resource declared earlier in this file")
        if "operation" not in spec["list"] and parent is None:
            self.problem(f"{key}.list", "needs an operation (only a resource with a parent can be derived)")
        expr = lambda sub, text: self.expression(f"{key}.{sub}", text)  # noqa: E731
        opt = lambda sub: expr(sub, spec[sub]) if sub in spec else None  # noqa: E731
        listing = spec["list"]
        templated = "{" in spec["type"]
        if templated != ("types" in spec):
            self.problem(f"{key}.types", "a templated `type` needs `types`, and only it may have them")
        for i, join in enumerate(spec.get("joins", [])):
            if "resource" in join and join["resource"] not in earlier:
                self.problem(f"{key}.joins[{i}].resource", f"{join['resource']!r} must be declared earlier")
            if "resource" in join and not join["into"].startswith("_"):
                self.problem(f"{key}.joins[{i}].into", "a resource join's key starts with '_'")
        into = {j["into"] for j in spec.get("joins", []) if "call" in j}
        for i, detail in enumerate(spec.get("details", [])):
            if detail.get("fallback") and detail.get("into") not in into:
                self.problem(f"{key}.details[{i}].fallback", "needs a join with a call and the same `into`")
        resource = Resource(
            service=raw["service"],
            name=name,
            type=spec["type"],
            types=tuple(spec.get("types", [spec["type"]])),
            type_template=expr("type", f"format({_literal(spec['type'])}, @)") if templated else None,
            emits_component=spec.get("component", True),
            filter=spec.get("filter"),
            layer=spec.get("layer"),
            domain=spec.get("domain", "AWS"),
            scope=spec.get("scope", raw.get("scope", "regional")),
            parent=parent,
            listing=Listing(
                call=self.call(f"{key}.list", listing) if "operation" in listing else None,
                items=expr("list.items", listing["items"]),
                ignore=frozenset(listing.get("ignore", ())),
                gone=frozenset(listing.get("gone", ())),
            ),
            details=tuple(
                self.detail(f"{key}.details[{i}]", d) for i, d in enumerate(spec.get("details", []))
            ),
            get=self.get(f"{key}.get", spec["get"]) if "get" in spec else None,
            parent_id=opt("parent_id"),
            region=opt("region"),
            id=(id_ := expr("id", spec["id"])),
            external_id=expr("external_id", spec["external_id"]) if "external_id" in spec else id_,
            display_name=opt("name"),
            urns=tuple(expr(f"urns[{i}]", u) for i, u in enumerate(spec.get("urns", []))),
            tags=expr("tags", spec.get("tags", "Tags")),
            cw_dimensions=opt("cw_dimensions"),
            cloudformation=self.cloudformation(f"{key}.cloudformation", spec.get("cloudformation")),
            console=opt("console"),
            console_name=(spec.get("console_name") or self.console_name(raw)) if "console" in spec else None,
            data=opt("data"),
            relations=tuple(
                Relation(
                    type=r["type"],
                    target=expr(f"relations[{i}].target", r["target"]),
                    each=expr(f"relations[{i}].each", r["each"]) if "each" in r else None,
                    inbound=r.get("direction", "out") == "in",
                    data=expr(f"relations[{i}].data", r["data"]) if "data" in r else None,
                    to=(r["to"],) if isinstance(r.get("to"), str) else tuple(r.get("to", ())),
                    outside=r.get("outside"),
                    table={} if "table" in r else None,
                )
                for i, r in enumerate(spec.get("relations", []))
            ),
            event_rules=tuple(
                EventRule(
                    source=e["source"],
                    api_version=e.get("api_version"),
                    names=frozenset(e.get("names", ())),
                    detail_type=e.get("detail_type", CLOUDTRAIL),
                    ids=expr(f"events[{i}].ids", e["ids"]),
                    delete=e.get("action", "refresh") == "delete",
                    delete_id=expr(f"events[{i}].delete_id", e["delete_id"]) if "delete_id" in e else None,
                )
                for i, e in enumerate(spec.get("events", []))
            ),
            file=self.path.name,
            vars=self.vars(f"{key}.vars", spec.get("vars", {})),
            trace_rules=tuple(
                TraceRule(
                    services=frozenset(t["services"]),
                    operations=frozenset(t.get("operations", ())),
                    id=expr(f"traces[{i}].id", t["id"]),
                    vars=self.vars(f"{key}.traces[{i}].vars", t.get("vars", {})),
                    each=expr(f"traces[{i}].each", t["each"]) if "each" in t else None,
                )
                for i, t in enumerate(spec.get("traces", []))
            ),
            joins=tuple(self.join(f"{key}.joins[{i}]", j) for i, j in enumerate(spec.get("joins", []))),
            emits=tuple(
                Emit(
                    type=e["type"],
                    title=e["title"],
                    text=expr(f"emit[{i}].text", e["text"]),
                    host=expr(f"emit[{i}].host", e["host"]),
                    tags=expr(f"emit[{i}].tags", e["tags"]) if "tags" in e else None,
                    each=expr(f"emit[{i}].each", e["each"]) if "each" in e else None,
                )
                for i, e in enumerate(spec.get("emit", []))
            ),
            expressions={text: tuple(keys) for text, keys in self.where.items()},
        )
        for i, event in enumerate(spec.get("events", [])):
            if event.get("action", "refresh") != "delete" and "get" not in spec and parent is None:
                self.problem(f"{key}.events[{i}]", "a refresh rule needs the resource's `get`")
            self.check_event_names(f"{key}.events[{i}].names", event)
        if "parent_id" in spec and ("get" not in spec or parent is None):
            self.problem(f"{key}.parent_id", "the parent's id over what `get` gives: add `parent` and `get`")
        if parent is not None and spec.get("events"):
            self.check_child_events(raw["resources"], name)
        self.check_placeholders(resource, spec)
        self.problems += shapes.check(raw["resources"], name, self.where, self.model).lines(self.path.name)
        for sub, text in shapes.check_identity(raw["resources"], name, self.model):
            self.problem(sub, text)
        self.check_fallbacks(key, resource)
        if "console_name" in spec and "console" not in spec:
            self.problem(f"{key}.console_name", "names the console of `console`: add the link, or remove it")
        if resource.scope == "account" and resource.region is None:
            self.problem(f"{key}.region", "required for scope 'account'")
        return resource if len(self.problems) == before else None

    def check_fallbacks(self, key: str, resource: Resource) -> None:
        """A join's per-item fallback must need another IAM action: a role denied the join is denied a
        fallback of the same action too, and the data would be lost instead of read item by item."""
        joins = {j.into: j.call for j in resource.joins if j.call is not None}
        for i, detail in enumerate(resource.details):
            join = joins.get(detail.into) if detail.fallback else None
            if join is not None and join.iam_action == detail.call.iam_action:
                self.problem(
                    f"{key}.details[{i}].fallback",
                    f"needs {detail.call.iam_action}, as the join it stands in for ({join.operation}) does: "
                    "a role denied one is denied both; fall back on a call of another action",
                )

    def check_child_events(self, resources: dict, name: str) -> None:
        """A child's events reach its root: its `get` finds it by the event's id, its `parent_id` names its
        parent, and so on up to the root, whose `get` refreshes it. Delete rules alone need neither (their
        deletes then go unconfirmed)."""
        spec, parent = resources[name], resources[name]["parent"]
        refresh = any(e.get("action", "refresh") != "delete" for e in spec["events"])
        missing = [k for k in ("get", "parent_id") if k not in spec] if refresh or "get" in spec else []
        if missing:
            self.problem(
                f"resources.{name}.events",
                f"an event on a child type refreshes its root: add {' and '.join(f'`{k}`' for k in missing)} "
                f"(`get`: the {name} by the id its event names; `parent_id`: the {parent}'s id, over the "
                "item `get` returns)",
            )
        seen = {name}
        while not missing and (refresh or "get" in spec) and parent in resources and parent not in seen:
            seen.add(parent)
            above = resources[parent]
            needs = ("get", "parent_id") if "parent" in above else ("get",)
            if lacks := [k for k in needs if k not in above]:
                self.problem(
                    f"resources.{name}.events",
                    f"reach the root through resources.{parent}: add its "
                    + " and ".join(f"`{k}`" for k in lacks),
                )
            parent = above.get("parent")

    def check_placeholders(self, resource: Resource, spec: dict) -> None:
        """Each `_` key a format() placeholder reads from the item must be one the item has: a context key, a
        var, or the `into` of a detail or join (a typo would give null at run time, silently)."""
        known = set(CONTEXT_KEYS) | {name for name, _ in resource.vars}
        known |= {d["into"] for d in [*spec.get("details", []), *spec.get("joins", [])] if "into" in d}
        known |= {name for rule in resource.trace_rules for name, _ in rule.vars}
        for text, keys in self.where.items():
            for placeholder, names in format_reads(jmespath_ast(text)):
                for name in sorted(n for n in names if n.startswith("_") and n not in known):
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f"did you mean {close[0]}? " if close else ""
                    self.problem(
                        keys[0],
                        f"format() placeholder {{{placeholder}}} reads {name}, which the item does not have; "
                        f"{hint}it has: {', '.join(sorted(known))}",
                    )

    def console_name(self, raw: dict) -> str:
        """The file's `console_name`, else botocore's short name of the service ("Amazon EFS" -> "EFS")."""
        if "console_name" in raw:
            return raw["console_name"]
        meta = self.model.metadata if self.model is not None else {}
        name = meta.get("serviceAbbreviation") or meta.get("serviceFullName") or raw["service"].upper()
        return name.removeprefix("Amazon ").removeprefix("AWS ").strip() or raw["service"].upper()

    def vars(self, key: str, spec: dict[str, str]) -> Vars:
        """Compile `vars`; a var may use only those declared before it."""
        names = list(spec)
        for i, name in enumerate(names):
            if name in CONTEXT_KEYS:
                self.problem(f"{key}.{name}", f"{name} is a context key the engine sets")
            later = sorted(_field_names(jmespath_ast(spec[name])) & set(names[i:]))
            if later:
                self.problem(f"{key}.{name}", f"uses {', '.join(later)}, declared at or after it")
        return tuple((name, self.expression(f"{key}.{name}", text)) for name, text in spec.items())

    def cloudformation(self, key: str, spec: dict | None) -> CloudFormation | None:
        if spec is None:
            return None
        physical_id = spec.get("physical_id", "{PhysicalResourceId}")
        self.expression(f"{key}.physical_id", f"format({_literal(physical_id)}, @)")
        return CloudFormation(type=spec["type"], physical_id=physical_id)

    def expression(self, key: str, text: str) -> ParsedResult:
        self.where.setdefault(text, []).append(key)
        try:
            return compile_expression(text)
        except ExpressionError as exc:
            self.problem(key, str(exc))
            return compile_expression("@")

    def check_event_names(self, key: str, event: dict) -> None:
        """A CloudTrail event's source is the service's signing name (`ecr.amazonaws.com`), and each name an
        operation of the file's service (botocore's model), maybe with the API version CloudTrail adds
        (`CreateFunction20150331v2`): a misspelt one would never match."""
        if self.model is None or event.get("detail_type", CLOUDTRAIL) != CLOUDTRAIL:
            return
        source = f"{self.model.signing_name}.amazonaws.com"  # CloudTrail's eventSource (not the endpoint)
        if event.get("source", source) != source:
            self.problem(key.removesuffix(".names") + ".source", f"CloudTrail names this service {source!r}")
        operations = self.model.operation_names
        for name in event.get("names", ()):
            if _API_VERSION.sub("", name) not in operations:
                close = difflib.get_close_matches(_API_VERSION.sub("", name), operations, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                self.problem(
                    key, f"{name!r} is not an operation of {self.model.service_name} (botocore's model){hint}"
                )

    def call(self, key: str, spec: dict, extra_params: Iterable[str] = ()) -> Call:
        operation = spec["operation"]
        params = spec.get("params", {})
        args = spec.get("args", {})
        if self.model is not None:
            if operation not in self.model.operation_names:
                self.problem(f"{key}.operation", f"{self.model.service_name} has no operation {operation!r}")
            else:
                members = self.model.operation_model(operation).input_shape
                known = set(members.members) if members is not None else set()
                for param in [*params, *args, *extra_params]:
                    if param not in known:
                        self.problem(
                            f"{key}",
                            f"{operation} has no parameter {param!r}; known: {', '.join(sorted(known))}",
                        )
        has_paginator = operation in self.paginators
        paginate = spec.get("paginate", has_paginator)
        if paginate and not has_paginator and self.model is not None:
            self.problem(f"{key}.paginate", f"botocore has no paginator for {operation}")
        if paginate and "next" in spec:
            self.problem(f"{key}.next", f"{operation} has a paginator; next needs paginate: false")
        rate = spec.get("rate")
        prefix = self.model.signing_name if self.model is not None else "?"
        next_page = spec.get("next")
        return Call(
            operation=operation,
            method=xform_name(operation),
            iam_action=spec.get("iam_action")
            or self.iam_actions.get((getattr(self.model, "service_name", None), operation))
            or f"{prefix}:{operation}",
            params=params,
            args=tuple((p, self.expression(f"{key}.args.{p}", e)) for p, e in args.items()),
            paginate=paginate,
            rate=Rate(rate["per_second"], rate.get("burst", max(1, int(rate["per_second"]))))
            if rate
            else None,
            next=NextPage(next_page["param"], self.expression(f"{key}.next.token", next_page["token"]))
            if next_page
            else None,
        )

    def join(self, key: str, spec: dict) -> Join:
        call = spec.get("call")
        return Join(
            resource=spec.get("resource"),
            key=self.expression(f"{key}.key", spec["key"]),
            match=self.expression(f"{key}.match", spec["match"]),
            into=spec["into"],
            call=self.other_call(f"{key}.call", call) if call else None,
            items=self.expression(f"{key}.call.items", call["items"]) if call else None,
            result=self.expression(f"{key}.result", spec["result"]) if "result" in spec else None,
        )

    def other_call(self, key: str, spec: dict, extra_params: Iterable[str] = ()) -> Call:
        """A call of the service its `service` names (checked against that model), else of this file's."""
        service = spec.get("service")
        if service is None:
            return self.call(key, spec, extra_params)
        model, paginators = self.model, self.paginators
        try:
            session = botocore_data.session()
            self.model = session.get_service_model(service)
            self.paginators = session.get_paginator_model(service)._paginator_config
        except UnknownServiceError:
            self.problem(f"{key}.service", f"{service!r} is not a boto3 client name")
            self.model, self.paginators = None, {}
        try:
            return replace(self.call(key, spec, extra_params), service=service)
        finally:
            self.model, self.paginators = model, paginators

    def detail(self, key: str, spec: dict) -> Detail:
        batch = spec.get("batch")
        chunk = spec.get("chunk")
        if chunk and chunk["param"] not in spec.get("args", {}):
            self.problem(f"{key}.chunk.param", f"{chunk['param']!r} must be one of this call's args")
        if chunk and batch:
            self.problem(f"{key}.chunk", "use either batch or chunk")
        return Detail(
            chunk=(chunk["param"], chunk["size"]) if chunk else None,
            call=self.other_call(key, spec, [batch["param"]] if batch else []),
            result=self.expression(f"{key}.result", spec["result"]) if "result" in spec else None,
            into=spec.get("into"),
            when=self.expression(f"{key}.when", spec["when"]) if "when" in spec else None,
            fallback=spec.get("fallback", False),
            locates=spec.get("locates", False),
            ignore=frozenset(spec.get("ignore", ())),
            gone=frozenset(spec.get("gone", ())),
            batch=Batch(
                param=batch["param"],
                key=self.expression(f"{key}.batch.key", batch["key"]),
                size=batch["size"],
                items=self.expression(f"{key}.batch.items", batch["items"]),
                match=self.expression(f"{key}.batch.match", batch["match"]),
            )
            if batch
            else None,
        )

    def get(self, key: str, spec: dict) -> Get:
        return Get(
            call=self.call(key, spec, [spec["param"]] if "param" in spec else [])
            if "operation" in spec
            else None,
            param=spec.get("param"),
            items=self.expression(f"{key}.items", spec["items"]),
            gone=frozenset(spec.get("gone", ())),
            size=spec.get("size", 20),
            gone_when=self.expression(f"{key}.gone_when", spec["gone_when"]) if "gone_when" in spec else None,
        )


def _declared_iam_actions(raw: dict) -> dict[tuple[str, str], str]:
    """(boto3 client, operation) -> `iam_action`, as declared on any call of the file: declared once, it
    holds for every call of that operation (S3 ListBuckets: s3:ListAllMyBuckets in `list` and `get`)."""
    found: dict[tuple[str, str], str] = {}
    for spec in raw["resources"].values():
        calls = [spec["list"], *spec.get("details", []), *([spec["get"]] if "get" in spec else [])]
        calls += [join["call"] for join in spec.get("joins", []) if "call" in join]
        for call in calls:
            if "operation" in call and "iam_action" in call:
                found.setdefault((call.get("service", raw["service"]), call["operation"]), call["iam_action"])
    return found


def jmespath_ast(text: str) -> dict:
    """The syntax tree of an expression; an empty one when it does not compile (reported elsewhere)."""
    try:
        return compile_expression(text).parsed
    except ExpressionError:
        return {}


def _field_names(node: dict) -> set[str]:
    """Every field name an expression reads, at any depth."""
    names = {node["value"]} if node.get("type") == "field" else set()
    for child in node.get("children", []):
        names |= _field_names(child) if isinstance(child, dict) else set()
    return names


def _literal(text: str) -> str:
    """A string as a JMESPath raw string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_problem(error: jsonschema.ValidationError) -> str:
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        allowed = sorted(_properties(error.schema))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        return f"unknown key(s) {', '.join(map(repr, extra))}; expected one of: {', '.join(allowed)}"
    return error.message


def _properties(schema: dict) -> set[str]:
    """Property names a schema allows, including those of the `#/$defs/...` it extends with allOf."""
    names = set(schema.get("properties", {}))
    defs = _schema_validator().schema["$defs"]
    for part in schema.get("allOf", []):
        ref = part.get("$ref", "")
        names |= _properties(defs[ref.rsplit("/", 1)[-1]]) if ref.startswith("#/$defs/") else set()
    return names
