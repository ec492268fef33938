"""The keys a resource's items can have (botocore's output shapes), to check `format()` placeholders at load.

An item's shape starts from the output shape of its `list` operation (or, for a derived child, its parent's
item), followed through `list.items` (paths, projections, flattens, filters, multiselects and `merge()`), then
gains each detail's keys (its `into`, or the members of its `result` or of the whole response), each join's
`into`, and for a child `_parent`, `_root` and `_ancestors` as the shapes of those items. Whatever cannot be
followed (another function, a botocore map, a literal) is unknown, and nothing is checked against it.
Keys starting with `_` of an item are left to the loader's context-key check.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from botocore.exceptions import UnknownServiceError

from engine.core import botocore_data
from engine.language.dialect import ExpressionError, compile_expression

PLACEHOLDER = re.compile(r"\{([^{}]+)\}")  # as format() reads its template
# Keys of a resource (after `resources.NAME.`) whose expression is evaluated over the described item.
OVER_ITEM = re.compile(
    r"id|external_id|name|tags|cw_dimensions|console|data|region|type|urns\[\d+\]|vars\.[^.]+"
    r"|details\[\d+\]\.(args\.[^.]+|when|batch\.key)|joins\[\d+\]\.match|(relations|emit)\[\d+\]\.each"
)
PER_ELEMENT = re.compile(r"(relations|emit)\[(\d+)\]\.(target|data|text|host|tags)")  # over `each`'s elements
PLAIN = ("id", "name", "external_id")  # keys whose plain field references are checked too


@dataclass(frozen=True)
class Struct:
    """An object with known keys: the union of its sources (dicts of shapes, or botocore structure shapes)."""

    sources: tuple[Any, ...]
    label: str  # how a problem names it: "the item", "_parent", botocore's shape name
    lenient: bool = False  # keys starting with `_` are not checked (the item's context keys, vars, ...)

    def keys(self) -> set[str]:
        return {k for s in self.sources for k in _members(s)}

    def member(self, name: str) -> Shape:
        """The shape of a key it has: the union of every source's that has it."""
        found = [s for s in self.sources if name in _members(s)]
        return reduce(
            union, [s[name] if isinstance(s, dict) else botocore_shape(s.members[name]) for s in found]
        )


@dataclass(frozen=True)
class Array:
    element: Shape


@dataclass(frozen=True)
class Dict:
    """A botocore map: any key."""

    value: Shape


SCALAR = "scalar"
Shape = Struct | Array | Dict | str | None  # None: unknown


def _members(source: Any) -> Mapping[str, Any]:
    return source if isinstance(source, dict) else source.members


def botocore_shape(shape: Any) -> Shape:
    """A botocore shape as a `Shape` (structures are read lazily: models are recursive)."""
    kind = shape.type_name
    if kind == "structure":
        return None if shape.metadata.get("document") else Struct((shape,), shape.name)
    if kind == "list":
        return Array(botocore_shape(shape.member))
    if kind == "map":
        return Dict(botocore_shape(shape.value))
    return SCALAR


def union(a: Shape, b: Shape) -> Shape:
    """A shape that may be either: the keys of both objects; unknown when the kinds differ."""
    if isinstance(a, Struct) and isinstance(b, Struct):
        return Struct(a.sources + b.sources, a.label, a.lenient or b.lenient)
    if isinstance(a, Array) and isinstance(b, Array):
        return Array(union(a.element, b.element))
    if isinstance(a, Dict) and isinstance(b, Dict):
        return Dict(union(a.value, b.value))
    return SCALAR if a == b == SCALAR else None


def element(shape: Shape) -> Shape:
    """The shape of each element `as_list` gives of a value of `shape`."""
    return shape.element if isinstance(shape, Array) else shape if isinstance(shape, Struct) else None


@dataclass
class Walk:
    """Evaluates a syntax tree over shapes instead of values, checking what format() placeholders read."""

    key: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)
    checked: int = 0
    unchecked: int = 0
    placeholder: str | None = None

    def over(self, text: str, current: Shape, strict: bool = False) -> Shape:
        try:
            return self.shape(compile_expression(text).parsed, current, strict)
        except ExpressionError:  # reported by the loader
            return None

    def shape(self, node: dict, current: Shape, strict: bool) -> Shape:
        kind, children = node["type"], node["children"]
        if kind == "field":
            return self.field(node["value"], current, strict)
        if kind in ("subexpression", "index_expression", "pipe"):
            for child in children:
                current = self.shape(child, current, strict)
            return current
        if kind in ("current", "identity", "key_val_pair"):
            return self.shape(children[0], current, strict) if children else current
        if kind == "slice":
            return current if isinstance(current, Array) else None
        if kind == "index":
            return current.element if isinstance(current, Array) else None
        if kind == "flatten":
            base = self.shape(children[0], current, strict)
            inner = base.element if isinstance(base, Array) else None
            return (
                Array(inner.element if isinstance(inner, Array) else inner)
                if isinstance(base, Array)
                else None
            )
        if kind in ("projection", "filter_projection"):
            base = self.shape(children[0], current, strict)
            each = base.element if isinstance(base, Array) else None
            for condition in children[2:]:
                self.shape(condition, each, strict)
            found = self.shape(children[1], each, strict)
            return Array(found) if isinstance(base, Array) else None
        if kind in ("or_expression", "and_expression"):
            return union(*(self.shape(child, current, strict) for child in children))
        if kind == "multi_select_list":
            return Array(reduce(union, [self.shape(child, current, strict) for child in children]))
        if kind == "multi_select_dict":
            return Struct(({c["value"]: self.shape(c, current, strict) for c in children},), "an object")
        if kind == "function_expression":
            return self.function(node["value"], children, current, strict)
        if kind == "value_projection":
            base = self.shape(children[0], current, strict)
            each = self.shape(children[1], base.value if isinstance(base, Dict) else None, strict)
            return Array(each) if isinstance(base, Dict) else None
        for child in children if kind != "expref" else ():  # comparators, not: checked, of no known shape
            self.shape(child, current, strict)
        return None

    def field(self, name: str, current: Shape, strict: bool) -> Shape:
        if isinstance(current, Dict):
            return current.value
        if not isinstance(current, Struct):
            return None
        keys = current.keys()
        if name in keys:
            return current.member(name)
        if strict and not (current.lenient and name.startswith("_")):
            self.missing(name, current, keys)
        return None

    def function(self, name: str, children: list[dict], current: Shape, strict: bool) -> Shape:
        args = [self.shape(child, current, strict) for child in children]
        if name == "format" and len(args) == 2 and isinstance(children[0].get("value"), str):
            for placeholder in PLACEHOLDER.findall(children[0]["value"]):
                self.read(placeholder, args[1])
        if name == "merge" and args and all(isinstance(a, Struct) for a in args):
            sources = tuple(s for a in args for s in a.sources)
            return Struct(sources, "an object", any(a.lenient for a in args))
        return None

    def read(self, placeholder: str, value: Shape) -> None:
        if not isinstance(value, Struct):
            self.unchecked += 1
            return
        self.checked += 1
        self.placeholder = (
            placeholder  # a placeholder holds no format() template with placeholders of its own
        )
        self.over(placeholder, value, strict=True)
        self.placeholder = None

    def missing(self, name: str, struct: Struct, keys: set[str]) -> None:
        shown = sorted(k for k in keys if not (struct.lenient and k.startswith("_")))
        close = difflib.get_close_matches(name, shown)
        hint = f"did you mean {close[0]}? " if close else ""
        what = "reads" if self.placeholder is None else f"format() placeholder {{{self.placeholder}}} reads"
        has = ", ".join(shown) or "no other key"
        self.problems.append(
            (self.key, f"{what} {name}, which {struct.label} does not have; {hint}it has: {has}")
        )


def output(model: Any, operation: str | None) -> Shape:
    """The shape of an operation's response (botocore's output shape); unknown without one."""
    if model is None or operation not in model.operation_names:
        return None
    shape = model.operation_model(operation).output_shape
    return botocore_shape(shape) if shape is not None else None


def _model(service: str | None) -> Any:
    """botocore's model of a detail's own `service`; None without one, or for an unknown name (reported)."""
    try:
        return botocore_data.service_model(service) if service else None
    except UnknownServiceError:
        return None


def item_shape(resources: Mapping[str, dict], name: str, model: Any) -> Shape:
    """The shape of `name`'s items once described; unknown when it cannot be followed."""
    spec, chain = resources[name], _ancestors(resources, name)
    above = {n: item_shape(resources, n, model) for n in chain}
    listing, get = spec["list"], spec.get("get")
    parent = above[chain[0]] if chain else None
    source = output(model, listing["operation"]) if "operation" in listing else parent
    listed = element(Walk().over(listing["items"], source))
    if get is not None and "operation" in get:  # an item fetched by id may have more keys
        got = element(Walk().over(get["items"], output(model, get["operation"])))
        listed = union(listed, got) if isinstance(got, Struct) and isinstance(listed, Struct) else listed
    if isinstance(listed, Struct):
        sources = list(listed.sources)
    elif listed == SCALAR:  # `context()` puts a string (or number) under `_value`
        sources = [{"_value": SCALAR}]
    else:
        return None
    if chain:
        ancestors = Struct(({n: _as(s, f"_ancestors.{n}") for n, s in above.items()},), "_ancestors")
        root = _as(above[chain[-1]], "_root")
        sources.append({"_parent": _as(parent, "_parent"), "_root": root, "_ancestors": ancestors})
    for detail in spec.get("details", []):
        response = output(_model(detail.get("service")) or model, detail["operation"])
        if "batch" in detail:
            response = element(Walk().over(detail["batch"]["items"], response))
        value = Walk().over(detail["result"], response) if "result" in detail else response
        if "into" in detail:
            sources.append({detail["into"]: None})
        elif isinstance(value, Struct):
            sources += value.sources
        else:  # a map, or what cannot be followed: any key
            return None
    sources += [{join["into"]: None} for join in spec.get("joins", [])]
    return Struct(tuple(sources), "the item", lenient=True)


def _ancestors(resources: Mapping[str, dict], name: str) -> list[str]:
    """The short names of `name`'s ancestors, its parent first (each declared before its child)."""
    found: list[str] = []
    while (parent := resources[name].get("parent")) in list(resources)[: list(resources).index(name)]:
        found.append(parent)
        name = parent
    return found


def _as(shape: Shape, label: str) -> Shape:
    """An ancestor item's shape as a context key names it."""
    return Struct(shape.sources, label, lenient=True) if isinstance(shape, Struct) else None


@dataclass
class Checked:
    """What the check found for one resource: problems (key, text), and how many placeholders it could check
    (over an item of known shape) or could not."""

    problems: list[tuple[str, str]]
    checked: int
    unchecked: int

    def lines(self, file: str) -> list[str]:
        return [f"{file}: {key}: {text}" for key, text in self.problems]


def check(
    resources: Mapping[str, dict], name: str, where: Mapping[str, Sequence[str]], model: Any
) -> Checked:
    """Check every format() placeholder of resource `name` (and the plain field references of its `id`,
    `name` and `external_id`) over the item it is evaluated on; `where`: expression text -> its keys."""
    spec, prefix = resources[name], f"resources.{name}."
    item = item_shape(resources, name, model)
    walk, seen = Walk(), set()
    for text, keys in where.items():
        for key in keys:
            sub = key.removeprefix(prefix)
            if OVER_ITEM.fullmatch(sub):
                current = item
            elif per := PER_ELEMENT.fullmatch(sub):
                current = _element(spec[per[1]][int(per[2])].get("each"), item)
            else:  # not evaluated over the item (events, traces, a call's response)
                continue
            before, walk.key = len(walk.problems), key
            walk.over(text, current, strict=sub in PLAIN)
            fresh = [(k, p) for k, p in walk.problems[before:] if (text, p) not in seen]
            seen |= {(text, p) for _, p in fresh}
            walk.problems[before:] = fresh
    return Checked(walk.problems, walk.checked, walk.unchecked)


def check_identity(resources: Mapping[str, dict], name: str, model: Any) -> list[tuple[str, str]]:
    """The external id (else the id) of resource `name` read from its item before any detail: a role may be
    denied a detail, and the component must keep its identity then. `detail || listed` is fine: only the last
    alternative of an `||` is checked. Problems as (key, text)."""
    spec = resources[name]
    if not spec.get("details"):
        return []
    key = "external_id" if "external_id" in spec else "id"
    listed = item_shape({**resources, name: {k: v for k, v in spec.items() if k != "details"}}, name, model)
    if not isinstance(listed, Struct):
        return []
    try:
        node = compile_expression(spec[key]).parsed
    except ExpressionError:  # reported by the loader
        return []
    while node["type"] == "or_expression":
        node = node["children"][-1]
    label = "the item before its details (a role may be denied a detail: add `|| ` what the listing gives)"
    walk = Walk(key=f"resources.{name}.{key}")
    walk.shape(node, Struct(listed.sources, label, lenient=True), strict=True)
    return walk.problems


def _element(each: str | None, item: Shape) -> Shape:
    """What a relation's or emit's expressions see: the item, or each element of `each` with `_item`."""
    if each is None:
        return item
    found = element(Walk().over(each, item))
    if not isinstance(found, Struct):
        return None
    return Struct((*found.sources, {"_item": item}), "the element", lenient=True)
