"""Load and validate the StackState `aws_topology` check `conf.yaml` into frozen dataclasses.

The schema (`schemas/config.schema.json`) states the shape; this module turns the first validation
failure into one `ConfigError` naming the dotted key, and checks the cross-field rules the schema
cannot state. No message ever contains a credential or external id value.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine.core.errors import ConfigError
from engine.core.paths import SCHEMAS

SCHEMA_PATH = SCHEMAS / "config.schema.json"
DEFAULT_FULL_RUN_INTERVAL = 3600
DEFAULT_TRACE_RELATION_TTL = 2 * 86400  # a function called daily keeps its traced relations
DEFAULT_COLLECTION_INTERVAL = 60
ACCOUNT_ID = "{account_id}"  # the placeholder a bucket name or role template may hold
# A proxy URL may carry user:password.
_SECRET_KEYS = ("aws_access_key_id", "aws_secret_access_key", "external_id", "proxy")
_NO_KEY = "-"
# Order among errors on the same path: a wrong type makes every other complaint noise.
_PRIORITY = {"type": 0, "additionalProperties": 1, "required": 2}
_EXPECTED = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
}


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One target account; `apis_to_run` None means every API."""

    role_arn: str
    account_id: str = ""  # derived from role_arn when empty
    regions: tuple[str, ...]
    collection_interval: int = DEFAULT_COLLECTION_INTERVAL
    apis_to_run: tuple[str, ...] | None = None
    log_bucket_name: str = ""  # empty: stackstate-logs-{account_id}
    flowlog_bucket_name: str = ""  # empty: stackstate-logs-{account_id}
    trace_objects: bool = False  # read a Collector's OTLP objects from the log bucket (engine.traces.objects)
    tags: tuple[str, ...] = ()
    identifier: str | None = None
    environment: str | None = None
    layer: str | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        parts = self.role_arn.split(":")
        if len(parts) < 6 or not parts[4]:
            raise ValueError(f"not an IAM role ARN: {self.role_arn!r}")
        account = self.account_id or parts[4]
        default_bucket = f"stackstate-logs-{account}"
        fixed = {
            "account_id": account,
            "regions": tuple(self.regions),
            "apis_to_run": None if self.apis_to_run is None else tuple(self.apis_to_run),
            "tags": tuple(self.tags),
            "log_bucket_name": self.log_bucket_name.replace(ACCOUNT_ID, account) or default_bucket,
            "flowlog_bucket_name": self.flowlog_bucket_name.replace(ACCOUNT_ID, account) or default_bucket,
        }
        for name, value in fixed.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which accounts of an organization a filter matches: OUs (or any OU below them), tags, account ids."""

    ous: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    accounts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Organization:
    """An instance that discovers its accounts from AWS Organizations (`engine.aws.organizations`).

    `template` is the instance's other keys, the same for every discovered account; `role_arn` (None: the
    base credentials) is what the Organizations calls are made with; `where` names the instance in messages.
    """

    where: str
    role_name: str
    role_arn: str | None = None
    include: Selection = Selection()
    exclude: Selection = Selection()
    template: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        """Names this discovery in the state: its settings, not the template (a new region keeps the list)."""
        settings = [self.role_arn, self.role_name, repr(self.include), repr(self.exclude)]
        return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]

    def role_for(self, account_id: str, partition: str = "aws") -> str:
        """The role ARN to assume in `account_id`: `role_name` as a name or as an ARN template."""
        if not self.role_name.startswith("arn:"):
            return f"arn:{partition}:iam::{account_id}:role/{self.role_name}"
        return self.role_name.replace("{partition}", partition).replace(ACCOUNT_ID, account_id)

    def instance(self, account_id: str, partition: str = "aws") -> Instance:
        """The instance of one discovered account."""
        return _instance({**self.template, "role_arn": self.role_for(account_id, partition)})


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole file; credentials are None when empty (default credential chain) and never in repr."""

    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    external_id: str = field(repr=False)
    full_run_interval: int = DEFAULT_FULL_RUN_INTERVAL
    trace_relation_ttl: int = DEFAULT_TRACE_RELATION_TTL
    instances: tuple[Instance, ...]
    organizations: tuple[Organization, ...] = ()  # expanded into instances by engine.aws.organizations
    path: str = ""
    allow_role_without_external_id: bool = False  # skip the confused-deputy check (engine.aws.sessions)
    proxy: Mapping[str, Any] | None = field(default=None, repr=False)  # {http, https, no_proxy}


def load_config(path: str | Path) -> Config:
    """Read, validate and convert `path`; raise one `ConfigError` describing the first problem."""
    file = str(path)
    data = _read_yaml(Path(path), file)
    problems = sorted(p for error in _validator().iter_errors(data) for p in _problems(error))
    if problems:
        _, key, problem = problems[0]
        raise ConfigError(file=file, key=key, problem=problem)
    init = data["init_config"]
    access_key = init.get("aws_access_key_id") or None
    secret_key = init.get("aws_secret_access_key") or None
    if (access_key is None) != (secret_key is None):
        given, missing = "aws_access_key_id", "aws_secret_access_key"
        if secret_key:
            given, missing = missing, given
        raise ConfigError(
            file=file,
            key=f"init_config.{missing}",
            problem=f"must be set when {given} is set (leave both empty to use the default credential chain)",
        )
    raws = list(enumerate(data["instances"]))
    organizations = tuple(
        _organization(f"instances[{i}]", raw, file) for i, raw in raws if "organization" in raw
    )
    instances = tuple(_instance(raw) for _, raw in raws if "organization" not in raw)
    for index, raw in raws:
        _check_placeholders(f"instances[{index}]", raw, file)
    _check_one_instance_per_account(instances, [i for i, raw in raws if "organization" not in raw], file)
    return Config(
        access_key_id=access_key,
        secret_access_key=secret_key,
        external_id=init["external_id"],
        full_run_interval=int(init.get("full_run_interval", DEFAULT_FULL_RUN_INTERVAL)),
        trace_relation_ttl=int(init.get("trace_relation_ttl", DEFAULT_TRACE_RELATION_TTL)),
        instances=instances,
        organizations=organizations,
        path=file,
        allow_role_without_external_id=bool(init.get("allow_role_without_external_id", False)),
        proxy=init.get("proxy") or None,
    )


def api_filter(instance: Instance) -> dict[str, frozenset[str] | None] | None:
    """Parse `apis_to_run` into {api: part words, or None for the whole API}; None means all APIs."""
    if instance.apis_to_run is None:
        return None
    result: dict[str, frozenset[str] | None] = {}
    for entry in instance.apis_to_run:
        name, _, rest = entry.partition("|")
        words = frozenset(rest.split()) or None
        if name in result:
            previous = result[name]
            words = None if previous is None or words is None else previous | words
        result[name] = words
    return result


@cache
def _validator() -> Draft202012Validator:
    """The config schema validator, built once."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a repeated mapping key instead of silently keeping the last value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # unhashable key: the base class reports it
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path, file: str) -> dict[Any, Any]:
    """Parse the file into a mapping, or raise a ConfigError that never quotes file content."""

    def fail(problem: str) -> ConfigError:
        return ConfigError(file=file, key=_NO_KEY, problem=problem)

    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise fail(f"cannot read file: {exc.strerror or type(exc).__name__}") from None
    try:
        data = yaml.load(text, Loader=StrictLoader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as exc:
        # str(exc) would quote the offending source line, which may hold a secret.
        problem = f"invalid YAML{_at(exc.problem_mark)}: {exc.problem}"
        if exc.context:
            problem += f" ({exc.context}{_at(exc.context_mark, ' started')})"
        raise fail(problem) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise fail(f"invalid YAML at line {line}, column {column}: unacceptable character") from None
    except yaml.YAMLError:
        raise fail("invalid YAML") from None
    if data is None:
        raise fail("file is empty")
    if not isinstance(data, dict):
        raise fail(f"top level must be a mapping with init_config and instances, got {_kind(data)}")
    return data


def _at(mark: yaml.Mark | None, verb: str = "") -> str:
    """` at line L, column C` (1-based) for a YAML mark, or nothing."""
    return f"{verb} at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _problems(error: ValidationError) -> Iterator[tuple[tuple[Any, ...], str, str]]:
    """Yield (sort key, dotted key, problem) for one schema error, never quoting a secret value."""
    path = tuple(error.absolute_path)
    secret = any(part in _SECRET_KEYS for part in path)
    value = error.instance
    kind = error.validator

    def item(at: tuple[Any, ...], problem: str) -> tuple[tuple[Any, ...], str, str]:
        order = tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in at)
        return (order, _PRIORITY.get(str(kind), 9), problem), _dotted(at), problem

    if kind == "type":
        expected = error.validator_value
        names = [expected] if isinstance(expected, str) else [t for t in expected if t != "null"]
        problem = f"must be {' or '.join(_EXPECTED[n] for n in names)}, got {_kind(value)}"
        if names == ["string"] and isinstance(value, int | float):
            problem += " (put the value in quotes)"
        yield item(path, problem)
    elif kind == "required":
        for name in error.validator_value:
            if name not in value:
                yield item((*path, name), "required key missing")
    elif kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        for extra in sorted(set(value) - set(allowed), key=str):
            yield item(path, _unknown_key(extra, allowed))
    elif kind in ("minItems", "minLength", "minProperties") and (error.validator_value <= 1 or not value):
        yield item(path, "must not be empty")
    elif kind == "minLength":
        yield item(path, f"must be at least {error.validator_value} characters")
    elif kind == "minimum":
        shown = "" if secret else f", got {value}"
        yield item(path, f"must be at least {error.validator_value}{shown}")
    elif kind == "maxLength":
        yield item(path, f"is longer than {error.validator_value} characters ({len(value)})")
    elif kind == "pattern" and not secret:
        yield item(path, f"{_short(value)} {error.schema.get('x-invalid', 'has an invalid format')}")
    elif kind == "uniqueItems":
        index = next((i for i, v in enumerate(value) if v in value[:i]), None)
        if index is None:
            yield item(path, "contains duplicates")
        else:
            yield item((*path, index), f"{value[index]!r} is listed twice")
    else:
        yield item(path, f"is invalid ({kind})")


def _short(value: Any, limit: int = 80) -> str:
    """A value as quoted in a message, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...' ({len(value)} characters)"


def _unknown_key(extra: Any, allowed: list[str]) -> str:
    """Problem text for an unexpected key, with a suggestion where one is likely."""
    expected = f"expected one of: {', '.join(allowed)}"
    name = str(extra)
    if any(secret in name and secret != name for secret in _SECRET_KEYS):
        return f"unknown key (name hidden, it may contain a credential); {expected}"
    hint = ""
    schema = _validator().schema
    if name in schema["properties"]["init_config"]["properties"]:
        hint = " (it belongs in init_config)"
    elif name in schema["$defs"]["instance"]["properties"]:
        hint = " (it belongs in each entry of instances)"
    elif close := difflib.get_close_matches(name, allowed, n=1):
        hint = f" (did you mean {close[0]!r}?)"
    return f"unknown key {extra!r}{hint}; {expected}"


def _dotted(path: tuple[Any, ...]) -> str:
    """`('instances', 0, 'regions', 1)` -> `instances[0].regions[1]`; the root is `-`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or _NO_KEY


def _kind(value: Any) -> str:
    """The YAML-level name of a value's type, for 'got ...' messages."""
    if value is None:
        return "an empty value"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}
    return names.get(type(value), type(value).__name__)


def _instance(raw: Mapping[str, Any]) -> Instance:
    """Convert one schema-valid instance mapping."""
    interval = raw.get("collection_interval", raw.get("min_collection_interval", DEFAULT_COLLECTION_INTERVAL))
    apis = raw.get("apis_to_run")
    return Instance(
        role_arn=raw["role_arn"],
        regions=tuple(raw["regions"]),
        collection_interval=int(interval),
        apis_to_run=None if apis is None else tuple(apis),
        log_bucket_name=raw.get("log_bucket_name", ""),
        flowlog_bucket_name=raw.get("flowlog_bucket_name", ""),
        trace_objects=bool(raw.get("trace_objects", False)),
        tags=tuple(raw.get("tags", ())),
        identifier=raw.get("stackstate-identifier"),
        environment=raw.get("stackstate-environment"),
        layer=raw.get("stackstate-layer"),
        domain=raw.get("stackstate-domain"),
    )


def _organization(where: str, raw: Mapping[str, Any], file: str) -> Organization:
    """Convert one schema-valid instance that has `organization` (and so no `role_arn`)."""
    if "role_arn" in raw:
        raise ConfigError(
            file=file, key=f"{where}.organization",
            problem="give either role_arn (one account) or organization (its accounts discovered), not both",
        )  # fmt: skip
    settings = raw["organization"]

    def selection(name: str) -> Selection:
        given = settings.get(name, {})
        tags = tuple(sorted(given.get("tags", {}).items()))
        ous, accounts = tuple(given.get("ous", ())), tuple(given.get("accounts", ()))
        return Selection(ous=ous, tags=tags, accounts=accounts)

    template = {k: v for k, v in raw.items() if k != "organization"}
    return Organization(
        where=where, role_name=settings["role_name"], role_arn=settings.get("role_arn"),
        include=selection("include"), exclude=selection("exclude"), template=template,
    )  # fmt: skip


def _check_placeholders(where: str, raw: Mapping[str, Any], file: str) -> None:
    """A bucket name may hold `{account_id}` and no other placeholder (a bucket name has no braces)."""
    for key in ("log_bucket_name", "flowlog_bucket_name"):
        if any(c in str(raw.get(key, "")).replace(ACCOUNT_ID, "") for c in "{}"):
            problem = "may use only the placeholder {account_id}"
            raise ConfigError(file=file, key=f"{where}.{key}", problem=problem)


def _check_one_instance_per_account(instances: tuple[Instance, ...], indices: list[int], file: str) -> None:
    """The account id is the topology instance, so two instances of one account would wipe each other;
    `indices`: each instance's position in the file's `instances`."""
    first: dict[str, int] = {}
    for index, instance in enumerate(instances):
        earlier = first.setdefault(instance.account_id, index)
        if earlier == index:
            continue
        other, key = instances[earlier].role_arn, f"instances[{indices[earlier]}].role_arn"
        problem = (
            f"duplicate of {key}"
            if other == instance.role_arn
            else f"account {instance.account_id} is already configured by {key}"
        )
        raise ConfigError(file=file, key=f"instances[{indices[index]}].role_arn", problem=problem)
