"""Traced calls to targets: which resources a Lambda's AWS SDK call names, by the mappings' `traces:` rules.

In: call records (`engine.traces.otlp`: the calling function's ARN, the span's name, kind and kept
attributes). Out: the external ids of the resources each call names; the function gets a `uses-service`
relation to each. The called service and operation are read from whichever attribute generation the span
uses: `aws.service.identifier` / `aws.operation` (the AWS SDK v2 instrumentation, StackState's layer),
`rpc.service` / `rpc.method` (SDK v3 and the current conventions), else the span name `Service.Operation`.
Which attribute names the target is the mappings' business, never this module's.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from engine.language.dialect import parse_arn, search
from engine.language.loader import Mappings, Resource, TraceRule

RELATION_TYPE = "uses-service"
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def api_of(attributes: dict[str, Any], name: str) -> str | None:
    """The called service, lower-cased with only letters and digits (`sqs`, `stepfunctions`, `sfn`)."""
    for key in ("aws.service.identifier", "rpc.service"):
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return _NOT_ALNUM.sub("", value.lower()) or None
    method = attributes.get("rpc.method")
    for text in (method if isinstance(method, str) else "", name):
        if "." in text:
            return _NOT_ALNUM.sub("", text.split(".", 1)[0].lower()) or None
    return None


def operation_of(attributes: dict[str, Any], name: str) -> str | None:
    """The called operation in PascalCase (`SendMessage`), from `rpc.method` (`SendMessage` or
    `DynamoDB.GetItem`), `aws.operation` (`sendMessage`) or the span name `SQS.SendMessage`."""
    found = next(
        (v for k in ("rpc.method", "aws.operation") if isinstance(v := attributes.get(k), str) and v), None
    )
    if found is None and "." in name:
        found = name
    if not found:
        return None
    operation = found.rsplit(".", 1)[-1]
    return operation[:1].upper() + operation[1:] or None


def call_document(call: dict[str, Any]) -> dict[str, Any] | None:
    """What a rule's expressions see: the call's attributes as top-level keys, and the context keys `_api`,
    `_operation`, `_caller`, `_partition`, `_account` (the caller's) and `_region` (the call's: `aws.region`
    or `cloud.region`, else the caller's). None when the caller is not a function ARN."""
    caller = parse_arn(call.get("function"))
    attributes = call.get("attributes")
    if caller is None or caller["service"] != "lambda" or not isinstance(attributes, dict):
        return None
    name = call.get("name") if isinstance(call.get("name"), str) else ""
    region = next(
        (v for k in ("aws.region", "cloud.region") if isinstance(v := attributes.get(k), str) and v),
        caller["region"],
    )
    return {
        **attributes,
        "_api": api_of(attributes, name),
        "_operation": operation_of(attributes, name),
        "_caller": call["function"],
        "_partition": caller["partition"],
        "_account": caller["account"],
        "_region": region,
    }


class TraceRules:
    """The `traces:` rules of every mapped type, by the service they answer to."""

    def __init__(self, mappings: Mappings) -> None:
        self._by_api: dict[str, list[tuple[Resource, TraceRule]]] = defaultdict(list)
        for resource in mappings.resources:
            for rule in resource.trace_rules:
                for api in rule.services:
                    self._by_api[api].append((resource, rule))

    def __bool__(self) -> bool:
        return bool(self._by_api)

    def targets(self, call: dict[str, Any]) -> list[str]:
        """The external ids the call names, in rule order, each once; empty when it names nothing known."""
        document = call_document(call)
        if document is None:
            return []
        found: dict[str, None] = {}
        for _resource, rule in self._by_api.get(document["_api"] or "", ()):
            if rule.operations and document["_operation"] not in rule.operations:
                continue
            item = dict(document)
            for name, expression in rule.vars:
                item[name] = search(expression, item)
            elements = search(rule.each, item) if rule.each is not None else [None]
            for element in elements if isinstance(elements, list) else []:
                value = search(rule.id, item if rule.each is None else {**item, "_value": element})
                for target in value if isinstance(value, list) else [value]:
                    if isinstance(target, str) and target:
                        found[target] = None
        return list(found)
