"""Components: pure functions from a collected item to StackState component and relation records.

In: a `Resource` spec and one item (raw AWS data plus the `_` context keys).
Out: `{"externalId", "type": {"name"}, "data"}` and relation records `{"externalId", "sourceId",
"targetId", "type": {"name"}, "data"}`. The common post-processing of every component happens here,
once: JSON-safe values, capitalised keys (not inside Tags), Tags as an object, Name, URN,
CW.Dimensions, Location, labels, identifiers and environments.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.core.config import Instance
from engine.core.stackpack import ENVIRONMENT_TAG, IDENTIFIER_TAG, STACKPACK_LABEL, integration_tags
from engine.language.dialect import search, tag_dict
from engine.language.loader import Emit, Relation, Resource, Vars


class ShapeError(ValueError):
    """An item lacks what its mapping requires (e.g. an external id); `item` is that item."""

    def __init__(self, message: str, item: Any = None) -> None:
        super().__init__(message)
        self.item = item


@dataclass(frozen=True)
class Labels:
    """What the account's config adds to every component."""

    account: str
    tags: tuple[str, ...] = ()
    identifier: str | None = None
    environment: str | None = None
    layer: str | None = None
    domain: str | None = None


def labels_for(instance: Instance) -> Labels:
    """What `instance`'s config adds to every component of its account."""
    return Labels(
        account=instance.account_id,
        tags=tuple(instance.tags),
        identifier=instance.identifier,
        environment=instance.environment,
        layer=instance.layer,
        domain=instance.domain,
    )


def context(item: Any, account: str, region: str, partition: str = "aws", **extra: Any) -> dict:
    """The item with the context keys every expression may use."""
    base = item if isinstance(item, dict) else {"_value": item}
    return {**base, "_account": account, "_region": region, "_partition": partition, **extra}


def with_vars(bound: Vars, item: dict) -> dict:
    """Set each var on the item, in declaration order (a later one sees the earlier ones)."""
    for name, expression in bound:
        item[name] = search(expression, item)
    return item


CONSOLES = {"aws-cn": "https://console.amazonaws.cn", "aws-us-gov": "https://console.amazonaws-us-gov.com"}


def console_base(item: dict) -> str:
    """The AWS console's base URL for the item's partition and region (`_console` in `console`)."""
    return CONSOLES.get(item.get("_partition", "aws"), f"https://{item['_region']}.console.aws.amazon.com")


def external_id(resource: Resource, item: dict) -> str:
    value = search(resource.external_id, item)
    if not isinstance(value, str) or not value:
        raise ShapeError(
            f"{resource.file}: resources.{resource.name}.external_id gave {value!r} for an item", item
        )
    return value


def component(resource: Resource, item: dict, labels: Labels) -> dict:
    """The component record of one item."""
    ext_id = external_id(resource, item)
    raw = search(resource.data, item) if resource.data is not None else item
    if not isinstance(raw, dict):
        raise ShapeError(f"{resource.file}: resources.{resource.name}.data gave {type(raw).__name__}", item)
    data = capitalise(jsonable({k: v for k, v in raw.items() if not k.startswith("_")}))
    tags = {str(k): str(v) for k, v in tag_dict(search(resource.tags, item)).items() if v is not None}
    data["Tags"] = tags
    if resource.display_name is not None:
        data["Name"] = search(resource.display_name, item)
    urns = list(dict.fromkeys(u for e in resource.urns for u in _ids(search(e, item))))
    if urns:
        data["URN"] = urns
    if resource.cw_dimensions is not None:
        dims = search(resource.cw_dimensions, item) or {}
        data["CW"] = {"Dimensions": [{"Key": k, "Value": v} for k, v in dims.items() if v not in (None, "")]}
    if resource.console is not None:
        data["ConsoleUrl"] = search(resource.console, {**item, "_console": console_base(item)})
    data["Location"] = {"AwsAccount": labels.account, "AwsRegion": item["_region"]}
    _label(data, tags, urns, resource, labels)
    return {"externalId": ext_id, "type": {"name": type_name(resource, item)}, "data": prune(data)}


def type_name(resource: Resource, item: dict) -> str:
    """The component type: the declared name, or the templated one (which must be one of `types`)."""
    if resource.type_template is None:
        return resource.type
    name = search(resource.type_template, item)
    if name not in resource.types:
        raise ShapeError(
            f"{resource.file}: resources.{resource.name}.type gave {name!r}; expected one of "
            f"{', '.join(resource.types)}",
            item,
        )
    return name


def _label(data: dict, tags: dict, urns: list[str], resource: Resource, labels: Labels) -> None:
    """Agent-side equivalent of the StackPack's tag handling."""
    aws_labels = [k if v == "" else f"{k}:{v}" for k, v in tags.items()]
    data["labels"] = sorted({STACKPACK_LABEL, *labels.tags, *aws_labels})
    data["tags"] = integration_tags(labels.account, labels.tags)
    identifiers = [*urns, tags.get(IDENTIFIER_TAG), labels.identifier]
    data["identifiers"] = list(dict.fromkeys(i for i in identifiers if i))
    environment = tags.get(ENVIRONMENT_TAG) or labels.environment
    if environment:
        data["environments"] = [environment]
    data["layer"] = labels.layer or resource.layer
    data["domain"] = labels.domain or resource.domain


def relations(resource: Resource, item: dict, ext_id: str) -> Iterator[dict]:
    """Every relation the mapping declares for one item."""
    for rel in resource.relations:
        for element in _elements(rel, item):
            data = search(rel.data, element) if rel.data is not None else None
            for target in _ids(search(rel.target, element)):
                yield (
                    relation(target, ext_id, rel.type, data)
                    if rel.inbound
                    else relation(ext_id, target, rel.type, data)
                )


def relation(source: str, target: str, type_name: str, data: Any = None) -> dict:
    return {
        "externalId": f"{source}-{type_name}-{target}",
        "sourceId": source,
        "targetId": target,
        "type": {"name": type_name},
        "data": prune(jsonable(data)) if isinstance(data, dict) else {},
    }


def stackstate_events(resource: Resource, item: dict, now: float) -> Iterator[dict]:
    """The V1 events the mapping declares for one item (`emit`)."""
    for emit in resource.emits:
        for element in _elements(emit, item):
            text, host = search(emit.text, element), search(emit.host, element)
            if not isinstance(host, str) or not host:
                continue
            tags = [
                t for t in as_list(search(emit.tags, element) if emit.tags else None) if isinstance(t, str)
            ]
            yield {
                "event_type": emit.type, "source_type_name": emit.type, "msg_title": emit.title,
                "msg_text": "" if text is None else str(text), "host": host, "tags": tags,
                "timestamp": int(now),
            }  # fmt: skip


def _elements(rel: Relation | Emit, item: dict) -> list:
    if isinstance(rel, Relation) and rel.table is not None:
        item = {**item, "_table": rel.table}
    if rel.each is None:
        return [item]
    found = search(rel.each, item) or []
    ctx = {k: v for k, v in item.items() if k.startswith("_")}
    return [{**e, **ctx, "_item": item} if isinstance(e, dict) else e for e in as_list(found)]


def _ids(value: Any) -> list[str]:
    return [v for v in as_list(value) if isinstance(v, str) and v]


def as_list(value: Any) -> list:
    """None as [], a list as it is, anything else as a one-element list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def jsonable(value: Any) -> Any:
    """Dates as ISO-8601, bytes as base64, anything else non-JSON as its string form."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def capitalise(value: Any) -> Any:
    """Upper-case the first letter of every key, recursively, except inside `Tags`."""
    if isinstance(value, dict):
        return {
            k[:1].upper() + k[1:]: v if k in ("Tags", "tags") else capitalise(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [capitalise(v) for v in value]
    return value


def prune(value: Any) -> Any:
    """Drop None and empty-string entries from objects and lists, recursively."""
    if isinstance(value, dict):
        return {k: prune(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list):
        return [prune(v) for v in value if v is not None and v != ""]
    return value
