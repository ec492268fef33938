"""Closures of JMESPath expressions answer exactly as jmespath's interpreter: for every expression of the
shipped mappings and a set of hand-picked ones, over generated values that hit each expression's fields
with every JSON type (and missing keys, empty lists, nesting), the results (or the error types) agree."""

from __future__ import annotations

import dataclasses
import random
from functools import partial
from typing import Any

import jmespath
import pytest
from jmespath.parser import ParsedResult

from engine.language.compiled import closure
from engine.language.dialect import OPTIONS, compile_expression, search
from engine.language.loader import _field_names, load_mappings

HAND_PICKED = [
    "a.b.c", "a[].b", "a[*].b", "a[][]", "a[0].b", "a[-1]", "a || b", "a && b", "a | b", "@", "a.[b, c]",
    "[a, b]", "`\"x\"`", "'lit'", "length(a)", "a[].b[].c", "a.b || `[]`", "join(',', a[])", "to_string(a)",
    "split(a, '/')[-1]", "a.*.b", "a[?b == 'x'].c", "sort_by(a, &b)[].c", "a[1:2]", "!a", "a == b",
    "a < b", "a <= `1`", "a > 'x'", "a >= b", "a != b", "a[?c > `0`].b", "{x: a, y: b.c}", "a.{x: b}",
]  # fmt: skip
TYPES_OF_VALUE = [None, True, False, 0, 1, -1, "", "x", "a/b", [], {}, 2.5]
SHAPES = [lambda v: v, lambda v: [v], lambda v: {"b": v, "c": v}]  # each value alone, in a list, below b, c


def expressions() -> list[ParsedResult]:
    """Every compiled expression the shipped mappings hold, plus HAND_PICKED."""
    found: dict[str, ParsedResult] = {}

    def walk(value: Any) -> None:
        if isinstance(value, ParsedResult):
            found[value.expression] = value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for field in dataclasses.fields(value):
                walk(getattr(value, field.name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item)

    walk(load_mappings())
    for text in HAND_PICKED:
        found[text] = jmespath.compile(text)
    return list(found.values())


def values(names: list[str], rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value whose objects use `names` as keys."""
    roll = rng.random()
    if depth > 3 or roll < 0.25:
        return rng.choice(TYPES_OF_VALUE)
    if roll < 0.55:
        return [values(names, rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {name: values(names, rng, depth + 1) for name in rng.sample(names, rng.randint(0, len(names)))}


def outcome(run: Any) -> Any:
    try:
        return ("value", run())
    except Exception as exc:  # the same error type either way
        return ("error", type(exc).__name__)


def test_the_mappings_hold_many_expressions_and_most_become_closures() -> None:
    found = expressions()
    closed = [e for e in found if closure(e.parsed, OPTIONS.custom_functions) is not None]
    assert len(found) > 300
    assert len(closed) / len(found) > 0.95  # slices and &expressions stay jmespath's


@pytest.mark.parametrize("seed", range(4))
def test_closures_answer_as_jmespath_does(seed: int) -> None:
    rng = random.Random(seed)
    checked = 0
    for expression in expressions():
        fast = closure(expression.parsed, OPTIONS.custom_functions)
        if fast is None:
            continue
        names = sorted(_field_names(expression.parsed) | {"b", "c"}) or ["a"]
        edges = [{name: shape(v)} for name in names for v in TYPES_OF_VALUE for shape in SHAPES]
        for value in [values(names, rng) for _ in range(60)] + edges:
            expected = outcome(partial(expression.search, value, options=OPTIONS))
            assert outcome(partial(fast, value)) == expected, (expression.expression, value)
            checked += 1
    assert checked > 10_000


def test_search_uses_the_closure_and_falls_back_to_jmespath_for_the_rest() -> None:
    data = {"a": [{"b": "x", "c": 1}, {"b": "y", "c": 2}]}
    assert search(compile_expression("a[].c"), data) == [1, 2]
    assert search(compile_expression("a[?b == 'y'].c"), data) == [2]
    assert search(compile_expression("a[1:].c"), data) == [2]  # a slice: jmespath's own search
    assert closure(compile_expression("a[1:].c").parsed, OPTIONS.custom_functions) is None
