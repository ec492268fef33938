"""JMESPath expressions as plain Python closures: the same answers as jmespath's tree interpreter, faster.

Mapping expressions are mostly paths (`requestParameters.queueUrl`, `Reservations[].Instances[]`), or small
function calls on paths; jmespath walks the parsed tree on every search, node by node. `closure(tree)` turns
a tree built only of the node types below into nested closures once (`functions` called as the interpreter
calls them); any other node type (slices, `&expression` arguments) gives None and the caller keeps
jmespath's own search. Each closure mirrors `jmespath.visitor.TreeInterpreter`'s method of
that node type; tests/language/test_compiled.py checks the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Number
from typing import Any

from jmespath.visitor import TreeInterpreter

Getter = Callable[[Any], Any]


def closure(node: dict, functions: Any) -> Getter | None:
    """`node` (a jmespath parse tree) as a function of the current value; None where unsupported."""
    build = _BUILDERS.get(node["type"])
    if build is None:
        return None
    children = [closure(child, functions) for child in node.get("children", [])]
    return None if any(child is None for child in children) else build(node, children, functions)


def _field(node: dict, children: list, functions: Any) -> Getter:
    name = node["value"]

    def field(value: Any) -> Any:
        try:
            return value.get(name)
        except AttributeError:
            return None

    return field


def _chain(node: dict, children: list, functions: Any) -> Getter:
    """subexpression, index_expression and pipe: each child on the result of the one before."""
    if len(children) == 2:
        first, second = children
        return lambda value: second(first(value))

    def chain(value: Any) -> Any:
        for child in children:
            value = child(value)
        return value

    return chain


def _subexpression(node: dict, children: list, functions: Any) -> Getter:
    """`a.b.c`: a path of plain fields is one function (the common case); anything else chains."""
    if any(child["type"] != "field" for child in node["children"]):
        return _chain(node, children, functions)
    names = tuple(child["value"] for child in node["children"])
    if len(names) == 2:
        first, second = names

        def pair(value: Any) -> Any:
            try:
                return value.get(first).get(second)
            except AttributeError:  # not an object at some step: null, as `field` gives
                return None

        return pair

    def path(value: Any) -> Any:
        try:
            for name in names:
                value = value.get(name)
        except AttributeError:
            return None
        return value

    return path


def _index(node: dict, children: list, functions: Any) -> Getter:
    position = node["value"]

    def index(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[position]
        except IndexError:
            return None

    return index


def _projection(node: dict, children: list, functions: Any) -> Getter:
    base, each = children
    left, right = node["children"]
    if right["type"] == "field":  # `a[].b`, the common case: the field read inline
        name = right["value"]
        # `a[]` flattens nested lists: read `a` itself, and flatten only where an element is a list
        items = closure(left["children"][0], functions) if left["type"] == "flatten" else base

        def fields(value: Any) -> Any:
            found = items(value)
            if not isinstance(found, list):
                return None
            try:
                return [current for element in found if (current := element.get(name)) is not None]
            except AttributeError:  # an element that is not an object (a list to flatten, null, ...)
                return [current for element in base(value) if (current := each(element)) is not None]

        return fields

    def projection(value: Any) -> Any:
        found = base(value)
        if not isinstance(found, list):
            return None
        return [current for element in found if (current := each(element)) is not None]

    return projection


def _flatten(node: dict, children: list, functions: Any) -> Getter:
    (base,) = children

    def flatten(value: Any) -> Any:
        found = base(value)
        if not isinstance(found, list):
            return None
        merged: list = []
        for element in found:
            if isinstance(element, list):
                merged.extend(element)
            else:
                merged.append(element)
        return merged

    return flatten


def _is_false(value: Any) -> bool:
    return value == "" or value == [] or value == {} or value is None or value is False


def _or(node: dict, children: list, functions: Any) -> Getter:
    left, right = children

    def either(value: Any) -> Any:
        matched = left(value)
        return right(value) if _is_false(matched) else matched

    return either


def _and(node: dict, children: list, functions: Any) -> Getter:
    left, right = children

    def both(value: Any) -> Any:
        matched = left(value)
        return matched if _is_false(matched) else right(value)

    return both


def _literal(node: dict, children: list, functions: Any) -> Getter:
    constant = node["value"]
    return lambda value: constant


def _current(node: dict, children: list, functions: Any) -> Getter:
    return lambda value: value


def _multi_select_list(node: dict, children: list, functions: Any) -> Getter:
    return lambda value: None if value is None else [child(value) for child in children]


def _multi_select_dict(node: dict, children: list, functions: Any) -> Getter:
    pairs = [(child["value"], getter) for child, getter in zip(node["children"], children, strict=True)]
    return lambda value: None if value is None else {key: getter(value) for key, getter in pairs}


def _filter_projection(node: dict, children: list, functions: Any) -> Getter:
    base, each, condition = children

    def filtered(value: Any) -> Any:
        found = base(value)
        if not isinstance(found, list):
            return None
        return [
            current
            for element in found
            if not _is_false(condition(element)) and (current := each(element)) is not None
        ]

    return filtered


def _value_projection(node: dict, children: list, functions: Any) -> Getter:
    base, each = children

    def projection(value: Any) -> Any:
        try:
            found = base(value).values()
        except AttributeError:
            return None
        return [current for element in found if (current := each(element)) is not None]

    return projection


def _comparable(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, Number) and not isinstance(value, bool))


def _comparator(node: dict, children: list, functions: Any) -> Getter:
    left, right = children
    compare = TreeInterpreter.COMPARATOR_FUNC[node["value"]]
    if node["value"] in TreeInterpreter._EQUALITY_OPS:
        return lambda value: compare(left(value), right(value))

    def ordered(value: Any) -> Any:  # only numbers and strings are ordered; anything else gives null
        a, b = left(value), right(value)
        return compare(a, b) if _comparable(a) and _comparable(b) else None

    return ordered


def _not(node: dict, children: list, functions: Any) -> Getter:
    (child,) = children

    def negated(value: Any) -> Any:
        found = child(value)
        if isinstance(found, Number) and not isinstance(found, bool) and found == 0:
            return False  # !0 is false: 0 is not a false value in JMESPath
        return not found

    return negated


def _function(node: dict, children: list, functions: Any) -> Getter:
    name, call = node["value"], functions.call_function
    return lambda value: call(name, [child(value) for child in children])


_BUILDERS: dict[str, Callable[[dict, list, Any], Getter]] = {
    "field": _field,
    "subexpression": _subexpression,
    "index_expression": _chain,
    "pipe": _chain,
    "index": _index,
    "projection": _projection,
    "flatten": _flatten,
    "or_expression": _or,
    "and_expression": _and,
    "literal": _literal,
    "identity": _current,
    "current": _current,
    "multi_select_list": _multi_select_list,
    "multi_select_dict": _multi_select_dict,
    "key_val_pair": _chain,
    "filter_projection": _filter_projection,
    "value_projection": _value_projection,
    "comparator": _comparator,
    "not_expression": _not,
    "function_expression": _function,
}
