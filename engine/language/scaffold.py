"""A first mapping file for a service not mapped yet (`aws-topology new SERVICE`), from botocore's model.

Each listing operation that needs no input (`List*`, `Describe*`) and answers with one list becomes a
resource: its items (`Output.List[]`, or `{Name: @}` for a list of names), an `id` (the item's `...Id`, else
`...Name`, else `...Arn`), the `external_id` (its `...Arn` where it has one) and a `name`. The file passes
`validate`; it is a start, not a mapping: the author keeps the resources that are real, adds details, joins,
relations and events (docs/mappings.md), and checks it with `aws-topology try`.

Beside it, `scaffold_samples` writes its first samples file (`mappings/samples/{service}.yaml`): a seed
step per resource whose `Create{Item}` operation botocore knows, its required parameters as `TODO`
placeholders, and `expect` with zero counts to fill in after the first `./run.sh record SERVICE`. It passes
`validate` too.
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
    model, resources = _resources(service)
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


def scaffold_samples(service: str) -> str:
    """The text of `mappings/samples/{service}.yaml` that goes with `scaffold(service)`."""
    model, resources = _resources(service)
    steps, types = [], []
    for name, block in dict(resources).items():
        types.append(block[0].removeprefix("type: "))
        create = "Create" + "".join(part.capitalize() for part in name.split("-"))
        if create in model.operation_names:
            shape = model.operation_model(create).input_shape
            required = _required(shape)
            params = ", ".join(f"{member}: TODO" for member in required)
            steps += [f"  - call: {service}.{create}", f"    params: {{{params}}}"]
    lines = [
        "# yaml-language-server: $schema=../../schemas/samples.schema.json",
        f"# Seed data, expected scan and sample events of mappings/{service}.yaml, from `aws-topology new`.",
        "# Replace each TODO (values may use ${...}: the core demo estate's ids, e.g. ${vpc_id}, and earlier",
        "# `save`s), run ./run.sh record " + service + ", then set `expect` to what the scan finds; add one",
        "# sample event per event rule (docs/mappings.md#the-samples-file).",
        "version: 1",
        "regions: [eu-west-1]",
        *(["seed:", *steps] if steps else ["seed: []"]),
        "expect:",
        "  # TODO: how many of each type and relation type the scan of the seed finds",
        "  components:",
        *(f"    {t}: 0" for t in types),
        "  relations: {}",
        "events: []",
    ]
    return "\n".join(lines) + "\n"


def _required(shape: Any) -> list[str]:
    """The required members of an input shape, but those botocore fills itself (idempotency tokens)."""
    members = shape.members if shape is not None else {}
    return [
        m
        for m in (shape.required_members if shape is not None else [])
        if not members[m].metadata.get("idempotencyToken")
    ]


def _resources(service: str) -> tuple[Any, list[tuple[str, list[str]]]]:
    """botocore's model of `service` and (short name, lines) of each resource it lists."""
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
    return model, resources


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
    # The item's own id, name or ARN (`repositoryName`) before another's id (`registryId`).
    found = [f for f in (_field(fields, s, own) for s in ("Id", "Name", "Arn")) if f]
    ident = next((f for f in found if f.lower().startswith(own.lower())), found[0] if found else None)
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
