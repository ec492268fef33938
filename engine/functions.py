"""The JMESPath dialect of mapping files: built-ins plus a few small, generic functions.

Every expression in `mappings/` is compiled once by `compile_expression`, which also rejects unknown
function names at load time (plain jmespath only notices them when a search reaches the call).
Each function here is documented in `schemas/mapping.schema.json` and `docs/mappings.md`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from functools import lru_cache
from typing import Any

import jmespath
from jmespath import functions
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


class Functions(functions.Functions):
    """Custom functions, available to every mapping expression."""

    @functions.signature({"types": ["string"]}, {"types": []})
    def _func_format(self, template: str, value: Any) -> str | None:
        """`format('arn:{_partition}:s3:::{Name}', @)`: each `{expr}` is a JMESPath over `value`.

        Returns null when any placeholder is null or empty, so optional identifiers drop out.
        """
        parts: list[str] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(template):
            found = _placeholder(match.group(1)).search(value, options=OPTIONS)
            if found is None or found == "":
                return None
            parts += [template[pos : match.start()], str(found)]
            pos = match.end()
        return "".join([*parts, template[pos:]])

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_split(self, value: str | None, separator: str) -> list[str] | None:
        """`split(QueueArn, ':')`: the string cut at every separator; null stays null."""
        return None if value is None else value.split(separator)

    @functions.signature({"types": ["string", "null"]}, {"types": ["string", "null"]})
    def _func_ip_urn(self, vpc_id: str | None, ip: str | None) -> str | None:
        """`urn:vpcip:{vpc}/{ip}` for a private address (with a VPC), else `urn:host:/{ip}`."""
        if not ip:
            return None
        try:
            private = ipaddress.ip_address(ip).is_private
        except ValueError:
            return None
        return f"urn:vpcip:{vpc_id}/{ip}" if private and vpc_id else f"urn:host:/{ip}"

    @functions.signature({"types": ["array", "object", "null"]})
    def _func_tag_dict(self, tags: list | dict | None) -> dict:
        """AWS tags as an object: a `[{Key, Value}]` list (any key case) or an object as it is."""
        return tag_dict(tags)

    @functions.signature({"types": []})
    def _func_digest(self, value: Any) -> str:
        """SHA-256 of the canonical JSON of `value`, with every list sorted (order-insensitive)."""
        return hashlib.sha256(
            json.dumps(_sorted_lists(value), sort_keys=True, default=str).encode()
        ).hexdigest()


def tag_dict(tags: list | dict | None) -> dict:
    """Normalise AWS tags, which come as `[{Key, Value}]`, `[{key, value}]` or an object."""
    if not tags:
        return {}
    if isinstance(tags, dict):
        return dict(tags)
    result = {}
    for tag in tags:
        if isinstance(tag, dict):
            key = tag.get("Key", tag.get("key"))
            if key is not None:
                result[str(key)] = tag.get("Value", tag.get("value"))
    return result


def _sorted_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted_lists(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
    return value


OPTIONS = jmespath.Options(custom_functions=Functions())
KNOWN = frozenset(OPTIONS.custom_functions.FUNCTION_TABLE)


class ExpressionError(ValueError):
    """A mapping expression that does not compile or names an unknown function."""


def compile_expression(text: str) -> ParsedResult:
    """Compile once; unknown functions are an error now, not at the first search that reaches them."""
    try:
        parsed = jmespath.compile(text)
    except JMESPathError as exc:
        raise ExpressionError(f"invalid JMESPath {text!r}: {str(exc).splitlines()[0]}") from None
    unknown = sorted(_function_names(parsed.parsed) - KNOWN)
    if unknown:
        raise ExpressionError(
            f"unknown function {unknown[0]}() in {text!r}; known: {', '.join(sorted(KNOWN))}"
        )
    for template in _format_templates(parsed.parsed):
        for placeholder in _PLACEHOLDER.findall(template):
            _placeholder(placeholder)
    return parsed


def search(expression: ParsedResult, value: Any) -> Any:
    """Evaluate a compiled expression with the custom functions."""
    return expression.search(value, options=OPTIONS)


@lru_cache(maxsize=1024)
def _placeholder(text: str) -> ParsedResult:
    return compile_expression(text)


def _format_templates(node: dict) -> list[str]:
    """Literal templates given to format(), so their placeholders are checked at load too."""
    found = []
    children = [c for c in node.get("children", []) if isinstance(c, dict)]
    first = children[0] if children else {}
    is_format = node.get("type") == "function_expression" and node["value"] == "format"
    if is_format and first.get("type") == "literal" and isinstance(first.get("value"), str):
        found.append(first["value"])
    for child in children:
        found += _format_templates(child)
    return found


def _function_names(node: dict) -> set[str]:
    names = {node["value"]} if node.get("type") == "function_expression" else set()
    for child in node.get("children", []):
        if isinstance(child, dict):
            names |= _function_names(child)
    return names
