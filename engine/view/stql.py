"""The StackPack's three views per account, as StackState topology queries (STQL), and console actions.

In: the mappings and one configured instance. Out: `View`s named `AWS - {account} - All|Infrastructure|
Serverless`, each with its STQL and a `matches(component)` that applies the same filter to a component record
(the topology page uses it, so page and query agree). The layer and type sets come from the mappings'
declared `layer`, `domain` and `types`; only the StackPack's own wording is kept here: Infrastructure is the
Networking, Storage and Machines layers; Serverless is S3 buckets, Lambdas and application load balancers.
Console action names come from the mappings' `console_name`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.core.config import Instance
from engine.core.errors import BadInput
from engine.core.stackpack import STACKPACK_LABEL, integration_url
from engine.language.loader import Mappings, Resource

INFRASTRUCTURE_LAYERS = ("Networking", "Storage", "Machines")
# (boto3 service, a word of the type name or None for every type of the service): "S3 buckets, lambdas
# and application load balancers".
SERVERLESS_KINDS = (("s3", None), ("lambda", None), ("elbv2", "application-load-balancer"))


class ViewError(BadInput):
    """The mappings do not provide what a view needs."""

    fmt = "views: {problem}"


@dataclass(frozen=True)
class View:
    """One StackState view: components with every label of `labels` and, where set, a layer of `layers`,
    a domain of `domains` and a type of `types`."""

    account: str
    title: str  # All, Infrastructure, Serverless
    description: str
    labels: tuple[str, ...]
    layers: tuple[str, ...] | None = None
    domains: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return f"AWS - {self.account} - {self.title}"

    @property
    def query(self) -> str:
        """The view's STQL."""
        parts = [f"label IN ({_quoted([label])})" for label in self.labels]
        for field, values in (("layer", self.layers), ("domain", self.domains), ("type", self.types)):
            if values is not None:
                parts.append(f"{field} IN ({_quoted(values)})")
        return " AND ".join(parts)

    def matches(self, component: dict) -> bool:
        """Whether StackState would show this intake component record in the view.

        StackState makes both `data.labels` and the agent's `data.tags` (`integration-url:{account}`) labels.
        """
        data = component.get("data", {})
        labels = set(data.get("labels", ())) | set(data.get("tags", ()))
        return (
            all(label in labels for label in self.labels)
            and (self.layers is None or data.get("layer") in self.layers)
            and (self.domains is None or data.get("domain") in self.domains)
            and (self.types is None or component["type"]["name"] in self.types)
        )


def _quoted(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)


def _emitted(mappings: Mappings) -> list[Resource]:
    return [r for r in mappings.resources if r.emits_component]


def views_for(instance: Instance, mappings: Mappings) -> list[View]:
    """All, Infrastructure and Serverless of one account; raise `ViewError` when the mappings lack a part."""
    account = instance.account_id
    labels = (STACKPACK_LABEL, integration_url(account))
    resources = _emitted(mappings)
    declared = {r.layer for r in resources}
    missing = [layer for layer in INFRASTRUCTURE_LAYERS if layer not in declared]
    if missing:
        raise ViewError(
            problem=f"no mapping declares the layer(s) {', '.join(missing)} of the Infrastructure view"
        )
    infra = [r for r in resources if r.layer in INFRASTRUCTURE_LAYERS]
    if instance.layer:  # every component of this instance is in one layer: select the same types instead
        layers, infra_types = None, _types(infra)
    else:
        layers, infra_types = tuple(sorted(INFRASTRUCTURE_LAYERS)), None
    domains = (instance.domain,) if instance.domain else tuple(sorted({r.domain for r in infra}))
    return [
        View(account, "All", f"All resources retrieved from AWS account {account}.", labels),
        View(
            account, "Infrastructure",
            f"Networking, Storage and Machines resources of AWS account {account}.",
            labels, layers=layers, domains=domains, types=infra_types,
        ),
        View(
            account, "Serverless",
            f"S3 buckets, Lambdas and application load balancers of AWS account {account}.",
            labels, types=serverless_types(mappings),
        ),
    ]  # fmt: skip


def serverless_types(mappings: Mappings) -> tuple[str, ...]:
    """The component types of SERVERLESS_KINDS, as the mappings declare them."""
    found: list[str] = []
    for service, word in SERVERLESS_KINDS:
        types = [
            t
            for r in _emitted(mappings)
            if r.service == service
            for t in r.types
            if word is None or word in t
        ]
        if not types:
            raise ViewError(
                problem=f"no mapping of service {service!r} declares a type for the Serverless view"
            )
        found += types
    return tuple(sorted(set(found)))


def _types(resources: list[Resource]) -> tuple[str, ...]:
    return tuple(sorted({t for r in resources for t in r.types}))


def console_actions(mappings: Mappings) -> dict[str, str]:
    """Component type -> its console link's action name, after the console the mapping names: "Go to EC2
    console" (`console_name`, as the StackPack words it)."""
    return {
        t: f"Go to {r.console_name} console" for r in _emitted(mappings) if r.console_name for t in r.types
    }


def as_text(views: list[View]) -> str:
    """Each view's name, then its STQL indented on the next line."""
    return "\n".join(f"{v.name}\n    {v.query}" for v in views)


def as_json(views: list[View]) -> str:
    """The views as a JSON list of {name, description, query}."""
    return json.dumps(
        [{"name": v.name, "description": v.description, "query": v.query} for v in views], indent=2
    )
