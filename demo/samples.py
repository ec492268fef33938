"""Seed a moto server from the samples files (mappings/samples/*.yaml): each file's `seed` steps, with boto3.

A step's parameters may hold `${expr}`: JMESPath (with the mappings' functions) over the context, the core
estate's ids (what `demo.seed.seed_estate` returns) plus every earlier step's `save`. A string that is
exactly one `${...}` takes the value as is; otherwise each `${...}` is replaced by its text. An expression
that finds nothing is a `SeedError` naming the file, the step and the expression.
"""

from __future__ import annotations

from typing import Any

from botocore import xform_name

from demo.common import client
from engine.core import botocore_data
from engine.language.dialect import compile_expression, search
from engine.language.loader import load_mappings
from engine.language.samples import PLACEHOLDER, SAMPLES, Samples, SeedStep, load_samples


class SeedError(ValueError):
    """A seed step that cannot be made: an expression that names nothing, a call that failed."""


def shipped() -> tuple[Samples, ...]:
    """The shipped samples files, sorted by name (the mappings are loaded only when there is one)."""
    return load_samples(load_mappings()) if any(SAMPLES.glob("*.yaml")) else ()


def seed_samples(endpoint: str, samples: Samples, estate: dict[str, Any]) -> dict[str, Any]:
    """Make the file's seed steps in order against `endpoint`; return the context (estate plus saves)."""
    context = dict(estate)
    for index, step in enumerate(samples.seed):
        where = f"{samples.file}: seed[{index}] ({step.service}.{step.operation})"
        params = resolve(step.params, context, where)
        try:
            response = getattr(_client(step, endpoint), xform_name(step.operation))(**params)
        except Exception as exc:  # boto3's errors are many types: name the step whatever failed
            raise SeedError(f"{where}: {type(exc).__name__}: {exc}") from exc
        for name, expression in step.save.items():
            context[name] = search(compile_expression(expression), response)
    return context


def _client(step: SeedStep, endpoint: str) -> Any:
    return client(step.service, step.region, endpoint)


def resolve(value: Any, context: dict[str, Any], where: str) -> Any:
    """`value` with every `${expr}` in its strings (at any depth) replaced by expr over `context`."""
    if isinstance(value, dict):
        return {k: resolve(v, context, where) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, context, where) for v in value]
    if not isinstance(value, str):
        return value
    whole = PLACEHOLDER.fullmatch(value)
    if whole:
        return _value(whole.group(1), context, where)
    return PLACEHOLDER.sub(lambda m: str(_value(m.group(1), context, where)), value)


def _value(expression: str, context: dict[str, Any], where: str) -> Any:
    found = search(compile_expression(expression), context)
    if found is None:
        known = ", ".join(sorted(context))
        raise SeedError(f"{where}: ${{{expression}}} names nothing in the context (known: {known})")
    return found


def warm_calls(known: set[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """One cheap read-only call (boto3 method, params) per service that a samples file's seed steps call and
    `known` lacks: the first root listing of that service's mapping file, else the first input-free
    List*/Describe* operation of botocore's model (see `demo.server.warm`)."""
    files = shipped()
    if not files:
        return {}
    listings = {}
    for resource in load_mappings().resources:
        if resource.parent is None and resource.listing.call is not None:
            listings.setdefault(
                resource.service, (resource.listing.call.method, dict(resource.listing.call.params))
            )
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    for service in dict.fromkeys(step.service for samples in files for step in samples.seed):
        if service not in known and service not in calls:
            calls[service] = listings.get(service) or (_input_free_read(service), {})
    return calls


def _input_free_read(service: str) -> str:
    model = botocore_data.service_model(service)
    for name in sorted(model.operation_names):
        shape = model.operation_model(name).input_shape
        if name.startswith(("List", "Describe")) and not (shape is not None and shape.required_members):
            return xform_name(name)
    raise SeedError(f"{service}: no input-free List*/Describe* operation to warm moto with")
