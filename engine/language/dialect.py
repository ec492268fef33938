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
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

import jmespath
from jmespath import functions
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from engine.language.compiled import Getter, closure

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_VARIABLE = re.compile(r"\$\{([^{}]+)\}")


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
            found = _text(_placeholder(match.group(1)).search(value, options=OPTIONS))
            if found is None:
                return None
            parts += [template[pos : match.start()], found]
            pos = match.end()
        return "".join([*parts, template[pos:]])

    @functions.signature({"types": []}, {"types": ["string"]})
    def _func_split(self, value: Any, separator: str) -> list[str] | None:
        """`split(QueueArn, ':')`: the string cut at every separator; null (or a non-string) gives null."""
        return value.split(separator) if isinstance(value, str) else None

    @functions.signature({"types": ["string", "null"]}, {"types": ["string", "array", "null"]})
    def _func_ip_urn(self, vpc_id: str | None, ip: str | list | None) -> str | list | None:
        """`urn:vpcip:{vpc}/{ip}` for a private address (with a VPC), else `urn:host:/{ip}`; a list of
        addresses gives the list of their URNs."""
        if isinstance(ip, list):
            return [u for u in (ip_urn(vpc_id, a) for a in ip if isinstance(a, str)) if u]
        return ip_urn(vpc_id, ip)

    @functions.signature({"types": ["string", "null"]})
    def _func_resolve(self, host: str | None) -> list[str]:
        """`resolve(Endpoint.Address)`: the addresses DNS gives for a host name (each name looked up once
        per process, at most `DNS_TIMEOUT` seconds); [] when it does not resolve."""
        return resolve_host(host) if host else []

    @functions.signature({"types": ["array", "object", "null"]})
    def _func_tag_dict(self, tags: list | dict | None) -> dict:
        """AWS tags as an object: a `[{Key, Value}]` list (any key case) or an object as it is."""
        return tag_dict(tags)

    @functions.signature({"types": []})
    def _func_digest(self, value: Any) -> str:
        """SHA-256 of the canonical JSON of `value`, with every list sorted (order-insensitive).

        Top-level `_` keys (the engine's context) are left out: only the AWS data is hashed.
        """
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if not k.startswith("_")}
        return hashlib.sha256(
            json.dumps(_sorted_lists(value), sort_keys=True, default=str).encode()
        ).hexdigest()

    @functions.signature({"types": []})
    def _func_parse_json(self, text: Any) -> Any:
        """`parse_json(definition)`: the JSON value of a string; null for null or invalid JSON."""
        if not isinstance(text, str):
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    @functions.signature({"types": ["object", "null"]}, {"types": ["string", "null"]})
    def _func_lookup(self, table: dict | None, key: str | None) -> Any:
        """`lookup(table, ResourceType)`: dynamic key access; null when the key is absent."""
        return None if table is None or key is None else table.get(key)

    @functions.signature({"types": ["object", "null"]})
    def _func_entries(self, value: dict | None) -> list[dict]:
        """`entries(States)`: an object as `[{key, value}]`, in its own order; null gives []."""
        return [{"key": k, "value": v} for k, v in (value or {}).items()]

    @functions.signature({"types": []}, {"types": ["string"]})
    def _func_find_all(self, value: Any, key: str) -> list:
        """`find_all(definition, 'States')`: every value stored under `key`, at any depth."""
        found: list = []
        _find_all(value, key, found)
        return found

    @functions.signature({"types": []})
    def _func_url_host(self, uri: Any) -> str | None:
        """`url_host('https://user@api.example.com:8443/v1')` is `api.example.com`; null if none."""
        if not isinstance(uri, str) or "://" not in uri:
            return None
        try:
            return urlsplit(uri).hostname or None
        except ValueError:
            return None

    @functions.signature({"types": []}, {"types": []})
    def _func_substitute(self, template: Any, value: Any) -> str | None:
        """`substitute(uri, {stageVariables: variables})`: each `${path}` becomes `path` over `value`.

        Placeholders that resolve to nothing stay as they are.
        """
        if not isinstance(template, str):
            return None

        def one(match: re.Match) -> str:
            try:
                found = _text(_placeholder(match.group(1)).search(value, options=OPTIONS))
            except ExpressionError:
                found = None
            return match.group(0) if found is None else found

        return _VARIABLE.sub(one, template)

    @functions.signature({"types": []}, {"types": ["string"]})
    def _func_regex(self, text: Any, pattern: str) -> list[str | None] | None:
        """`regex(value, '^([a-z0-9-]+)\\.')`: `[match, group1, ...]` of the first match, or null."""
        if not isinstance(text, str):
            return None
        found = _regex(pattern).search(text)
        return [found.group(0), *found.groups()] if found else None

    @functions.signature({"types": []}, {"types": ["string"]}, {"types": ["string"]})
    def _func_replace(self, text: Any, pattern: str, replacement: str) -> str | None:
        """`replace(ref, ':(\\$LATEST|[0-9]+)$', '')`: every match replaced (`\\1` back-references)."""
        return _regex(pattern).sub(replacement, text) if isinstance(text, str) else None

    @functions.signature({"types": []})
    def _func_url_encode(self, text: Any) -> str | None:
        """`url_encode(QueueUrl)`: percent-encoded for use inside a URL (console links); null stays null."""
        return quote(text, safe="") if isinstance(text, str) else None

    @functions.signature({"types": []})
    def _func_arn(self, text: Any) -> dict | None:
        """`arn(TopicArn).resource`: an ARN's parts; null for anything that is not an ARN."""
        return parse_arn(text)

    @functions.signature({"types": ["object", "null"]})
    def _func_plain(self, value: dict | None) -> dict | None:
        """`plain(_parent)`: an item without its top-level `_` keys (the engine's context keys and vars)."""
        return None if value is None else {k: v for k, v in value.items() if not k.startswith("_")}

    @functions.signature({"types": ["array", "null"]})
    def _func_only(self, values: list | None) -> Any:
        """`only(ids)`: the one element of a list; null for an empty list, a longer one or null."""
        return values[0] if values and len(values) == 1 else None

    @functions.signature({"types": []})
    def _func_lower(self, text: Any) -> str | None:
        """`lower(Type)`: lower case; null stays null."""
        return text.lower() if isinstance(text, str) else None

    @functions.signature({"types": []})
    def _func_upper(self, text: Any) -> str | None:
        """`upper(httpMethod)`: upper case; null stays null."""
        return text.upper() if isinstance(text, str) else None


def parse_arn(text: Any) -> dict | None:
    """`arn:{partition}:{service}:{region}:{account}:{resource}` as its parts; the resource's type and id are
    split at its first `:` or `/` (no separator: the whole resource is the id, the type is null)."""
    parts = text.split(":", 5) if isinstance(text, str) else []
    if len(parts) < 6 or parts[0] != "arn" or not parts[1] or not parts[2]:
        return None
    resource = parts[5]
    cut = min((i for i in (resource.find(":"), resource.find("/")) if i >= 0), default=-1)
    return {
        "partition": parts[1], "service": parts[2], "region": parts[3], "account": parts[4],
        "resource": resource,
        "resource_type": resource[:cut] if cut >= 0 else None,
        "resource_id": resource[cut + 1 :] if cut >= 0 else resource,
    }  # fmt: skip


def ip_urn(vpc_id: str | None, ip: str | None) -> str | None:
    """`urn:vpcip:{vpc}/{ip}` for a private address (with a VPC), else `urn:host:/{ip}`."""
    if not ip:
        return None
    try:
        private = ipaddress.ip_address(ip).is_private
    except ValueError:
        return None
    return f"urn:vpcip:{vpc_id}/{ip}" if private and vpc_id else f"urn:host:/{ip}"


DNS_TIMEOUT = 2.0
_dns_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dns")
_dns_cache: dict[str, list[str]] = {}


def lookup_addresses(host: str) -> list[str]:
    """The host's addresses from the system resolver, IPv4 first; [] when it does not resolve."""
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    addresses = dict.fromkeys(str(info[4][0]) for info in found)
    return sorted(addresses, key=lambda a: (":" in a, a))


RESOLVER: Callable[[str], list[str]] = lookup_addresses  # tests put a fixed table here


def resolve_host(host: str) -> list[str]:
    """`RESOLVER(host)`, cached, given up on after `DNS_TIMEOUT` seconds (a hung resolver costs no more)."""
    resolver = RESOLVER
    if resolver is not lookup_addresses:
        return resolver(host)
    if host not in _dns_cache:
        try:
            _dns_cache[host] = _dns_pool.submit(resolver, host).result(timeout=DNS_TIMEOUT)
        except FutureTimeout:
            _dns_cache[host] = []
    return _dns_cache[host]


def _text(value: Any) -> str | None:
    """How a value appears inside a string: strings and numbers as is, booleans as JSON; else null."""
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _find_all(value: Any, key: str, found: list) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                found.append(v)
            _find_all(v, key, found)
    elif isinstance(value, list):
        for v in value:
            _find_all(v, key, found)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ExpressionError(f"invalid regular expression {pattern!r}: {exc}") from None


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
    for template in _literal_arguments(parsed.parsed, "format", 0):
        for placeholder in _PLACEHOLDER.findall(template):
            _placeholder(placeholder)
    for function in ("regex", "replace"):
        for pattern in _literal_arguments(parsed.parsed, function, 1):
            _regex(pattern)
    return parsed


_CLOSURES: dict[str, Getter | None] = {}  # expression text -> its closure, None where jmespath must search


def search(expression: ParsedResult, value: Any) -> Any:
    """Evaluate a compiled expression with the custom functions (as a closure where one can say it).

    An error keeps its type and gains `expression` (the text) and `value` (what it was evaluated on), so a
    caller can say which expression failed on which item.
    """
    try:
        fast = _CLOSURES[expression.expression]
    except KeyError:
        fast = _CLOSURES[expression.expression] = closure(expression.parsed, OPTIONS.custom_functions)
    try:
        return expression.search(value, options=OPTIONS) if fast is None else fast(value)
    except (JMESPathError, ExpressionError) as exc:
        if not hasattr(exc, "expression"):
            exc.expression, exc.value = expression.expression, value  # type: ignore[attr-defined]
        raise


@lru_cache(maxsize=1024)
def _placeholder(text: str) -> ParsedResult:
    return compile_expression(text)


def _literal_arguments(node: dict, function: str, position: int) -> list[str]:
    """Literal string arguments given at `position` to `function`, so they are checked at load too."""
    found = []
    children = [c for c in node.get("children", []) if isinstance(c, dict)]
    if node.get("type") == "function_expression" and node["value"] == function and len(children) > position:
        argument = children[position]
        if argument.get("type") == "literal" and isinstance(argument.get("value"), str):
            found.append(argument["value"])
    for child in children:
        found += _literal_arguments(child, function, position)
    return found


def format_reads(node: dict) -> list[tuple[str, set[str]]]:
    """(placeholder, the keys it reads at the top of the value) of every literal format() template applied
    to `@`, so the loader can check those keys against what the item has."""
    found = []
    for call in _calls(node, "format"):
        template, value = call["children"][0], call["children"][1]
        if (
            template.get("type") == "literal"
            and isinstance(template["value"], str)
            and value["type"] == "current"
        ):
            for placeholder in _PLACEHOLDER.findall(template["value"]):
                found.append((placeholder, top_level_fields(_placeholder(placeholder).parsed)))
    return found


def top_level_fields(node: dict) -> set[str]:
    """The field names an expression reads from the value it is applied to (not those below them)."""
    children = [c for c in node.get("children", []) if isinstance(c, dict)]
    kind = node.get("type")
    if kind == "field":
        return {node["value"]}
    if kind == "expref" or not children:
        return set()
    if kind in (
        "subexpression",
        "index_expression",
        "projection",
        "value_projection",
        "filter_projection",
        "pipe",
    ):
        return top_level_fields(children[0])
    return set().union(*(top_level_fields(c) for c in children))


def _calls(node: dict, function: str) -> list[dict]:
    """Every call of `function` (with at least two arguments) in a syntax tree."""
    children = [c for c in node.get("children", []) if isinstance(c, dict)]
    own = [node] if node.get("type") == "function_expression" and node["value"] == function else []
    return [n for n in own if len(children) >= 2] + [c for child in children for c in _calls(child, function)]


def _function_names(node: dict) -> set[str]:
    names = {node["value"]} if node.get("type") == "function_expression" else set()
    for child in node.get("children", []):
        if isinstance(child, dict):
            names |= _function_names(child)
    return names
