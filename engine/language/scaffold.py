"""A first mapping file for a service not mapped yet (`aws-topology new SERVICE`), from botocore's model.

Each listing operation that needs no input (`List*`, `Describe*`) and answers with one list becomes a
resource: its items (`Output.List[]`, or `{Name: @}` for a list of names), an `id` (the item's `...Id`, else
`...Name`, else `...Arn`), the `external_id` (its `...Arn` where it has one) and a `name`. The file passes
`validate`; it is a start, not a mapping: the author keeps the resources that are real, adds details, joins,
relations and events (docs/mappings.md), and checks it with `aws-topology try`.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import UnknownServiceError

from engine.core import botocore_data
from engine.core.errors import BadInput

VERBS = ("List", "Describe")


class ScaffoldError(BadInput):
    fmt = "{service}: {problem}"


def scaffold(service: str) -> str:
    """The text of `mappings/{service}.yaml` for a first try."""
    try:
        model = botocore_data.service_model(service)
    except UnknownServiceError:
        raise ScaffoldError(
            service=service, problem="not a boto3 client name (e.g. efs, elasticache, eks)"
        ) from None
    resources = [r for op in model.operation_names if (r := _resource(service, model, op))]
    if not resources:
        raise ScaffoldError(
            service=service, problem="no List* or Describe* operation lists anything without input"
        )
    seen: set[str] = set()
    lines = [
        "# yaml-language-server: $schema=../schemas/mapping.schema.json",
        f"# {model.metadata.get('serviceFullName', service)}: a first mapping, from `aws-topology new`.",
        "# Keep the resources that are real, give each its details, joins, relations and events",
        "# (docs/mappings.md), then check it: aws-topology validate; aws-topology try.",
        "version: 1",
        f"service: {service}",
        "resources:",
    ]
    for name, block in resources:
        if name not in seen:
            seen.add(name)
            lines += [f"  {name}:", *(f"    {line}" for line in block)]
    return "\n".join(lines) + "\n"


def _resource(service: str, model: Any, operation: str) -> tuple[str, list[str]] | None:
    """(short name, lines) of the resource `operation` lists; None when it is not a plain listing."""
    if not operation.startswith(VERBS):
        return None
    op = model.operation_model(operation)
    if op.input_shape is not None and op.input_shape.required_members:
        return None
    output = op.output_shape
    lists = {k: v for k, v in (output.members.items() if output is not None else []) if v.type_name == "list"}
    if len(lists) != 1:
        return None
    ((member, shape),) = lists.items()
    name = _kebab(_singular(member))
    item = shape.member
    if item.type_name == "string":
        items, fields = f'"{member}[].{{Name: @}}"', ["Name"]
    elif item.type_name == "structure":
        items, fields = f'"{member}[]"', list(item.members)
    else:
        return None
    own = _singular(member)
    ident = _field(fields, "Id", own) or _field(fields, "Name", own) or _field(fields, "Arn", own)
    if ident is None:
        return None
    arn = _field(fields, "Arn", own)
    block = [
        f"type: aws.{service}.{name}",
        "list:",
        f"  operation: {operation}",
        f"  items: {items}",
        f"id: {ident}",
    ]
    if arn:
        block.append(f"external_id: {arn}")
    if label := _field(fields, "Name", own):
        block.append(f"name: {label}")
    return name, block


def _field(fields: list[str], suffix: str, own: str) -> str | None:
    """The field ending in `suffix` (any case): the item's own (`FileSystemId` of a FileSystem) before
    another's (`OwnerId`), then the shortest."""
    found = [f for f in fields if f.lower().endswith(suffix.lower())]
    found.sort(key=lambda f: (not f.lower().startswith(own.lower()), len(f)))
    return found[0] if found else None


def _singular(word: str) -> str:
    for plural, single in (("ies", "y"), ("sses", "ss"), ("s", "")):
        if word.endswith(plural) and len(word) > len(plural) + 1:
            return word[: -len(plural)] + single
    return word


def _kebab(word: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", word).lower()
