"""Load `mappings/samples/*.yaml`: per mapping file, its seed data, what a scan finds, its sample events.

In: the samples folder and the loaded mappings. Out: `Samples` per file (its stem is the mapping file's).
Each file is checked against `schemas/samples.schema.json`; each seed `call` must be a botocore service and
operation, its parameters the operation's; each `refresh`/`delete` key a resource of the mapping file and
each `expect.components` type one of its types. Every problem is reported together, as
`samples/file: key: problem`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from botocore.exceptions import UnknownServiceError

from engine.core import botocore_data
from engine.core.config import StrictLoader
from engine.core.errors import MappingErrors
from engine.core.paths import MAPPINGS, SCHEMAS
from engine.language.dialect import ExpressionError, compile_expression
from engine.language.loader import CLOUDTRAIL, Mappings

SAMPLES = MAPPINGS / "samples"
DEFAULT_REGIONS = ("eu-west-1",)
GLOBAL, GLOBAL_CALLS = "global", "us-east-1"  # the region of a global type's calls
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class SeedStep:
    service: str  # botocore's service name (a boto3 client name)
    operation: str  # botocore's operation name (CreateFileSystem)
    region: str
    params: Mapping[str, Any]
    save: Mapping[str, str]  # name -> JMESPath over the response


@dataclass(frozen=True)
class SampleEvent:
    label: str
    detail: Mapping[str, Any]
    detail_type: str
    source: str
    refresh: Mapping[str, tuple[str, ...]]  # resource key -> ids
    delete: Mapping[str, tuple[str, ...]]

    def envelope(self, region: str = DEFAULT_REGIONS[0]) -> dict:
        """The sample as EventBridge delivers it."""
        return {"detail-type": self.detail_type, "source": self.source,
                "region": self.detail.get("awsRegion", region), "detail": dict(self.detail)}  # fmt: skip


@dataclass(frozen=True)
class Samples:
    name: str  # the mapping file's stem
    file: str  # `samples/{name}.yaml`
    regions: tuple[str, ...]
    seed: tuple[SeedStep, ...]
    components: Mapping[str, int]
    relations: Mapping[str, int]
    events: tuple[SampleEvent, ...]


def load_samples(mappings: Mappings, directory: Path | str = SAMPLES) -> tuple[Samples, ...]:
    """Load and check every `*.yaml` in `directory` (none when it does not exist), sorted by name, against
    `mappings`; raise `MappingErrors` listing every problem."""
    found, problems = [], []
    for path in sorted(Path(directory).glob("*.yaml")):
        loader = _SamplesLoader(path, mappings)
        samples = loader.load()
        problems += loader.problems
        found += [samples] if samples is not None else []
    if problems:
        raise MappingErrors(details="\n".join(problems))
    return tuple(found)


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / "samples.schema.json").read_text()))


class _SamplesLoader:
    def __init__(self, path: Path, mappings: Mappings) -> None:
        self.path, self.mappings = path, mappings
        self.file = f"samples/{path.name}"
        self.problems: list[str] = []

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.file}: {key}: {text}")

    def load(self) -> Samples | None:
        try:
            raw = yaml.load(self.path.read_text(encoding="utf-8"), Loader=StrictLoader)
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
            self.problem("-", f"cannot read: {exc}")
            return None
        for error in sorted(_validator().iter_errors(raw), key=lambda e: list(map(str, e.absolute_path))):
            self.problem(_dotted(error.absolute_path) or "-", error.message)
        if self.problems:
            return None
        name = self.path.stem
        resources = [r for r in self.mappings.resources if r.file == f"{name}.yaml"]
        if not resources:
            self.problem(
                "-", f"no mapping file {name}.yaml declares resources (a samples file is named after one)"
            )
        keys = {r.key for r in resources}
        types = {t for r in resources if r.emits_component for t in r.types}
        regions = tuple(raw.get("regions", DEFAULT_REGIONS))
        default_region = next((r for r in regions if r != GLOBAL), GLOBAL_CALLS)
        seed = tuple(self.step(i, s, default_region) for i, s in enumerate(raw.get("seed", [])))
        expect = raw.get("expect", {})
        for kind in sorted(set(expect.get("components", {})) - types):
            self.problem(
                f"expect.components.{kind}", f"not a component type of {name}.yaml: {_one_of(types)}"
            )
        events = tuple(self.event(i, e, keys) for i, e in enumerate(raw.get("events", [])))
        labels = [e.label for e in events]
        for label in sorted({x for x in labels if labels.count(x) > 1}):
            self.problem("events", f"label {label!r} is used twice")
        return Samples(
            name=name,
            file=self.file,
            regions=regions,
            seed=seed,
            components=dict(expect.get("components", {})),
            relations=dict(expect.get("relations", {})),
            events=events,
        )

    def step(self, index: int, raw: dict, default_region: str) -> SeedStep:
        key = f"seed[{index}]"
        service, operation = raw["call"].split(".", 1)
        params = raw.get("params", {})
        try:
            model = botocore_data.service_model(service)
        except UnknownServiceError:
            self.problem(f"{key}.call", f"{service!r} is not a botocore service name")
        else:
            if operation not in model.operation_names:
                self.problem(f"{key}.call", f"{service} has no operation {operation!r}")
            else:
                self.check_params(key, model.operation_model(operation).input_shape, params)
        for text in _placeholders(params):
            try:
                compile_expression(text)
            except ExpressionError as exc:
                self.problem(f"{key}.params", f"${{{text}}}: {exc}")
        for name, text in raw.get("save", {}).items():
            try:
                compile_expression(text)
            except ExpressionError as exc:
                self.problem(f"{key}.save.{name}", str(exc))
        region = raw.get("region", default_region)
        return SeedStep(service, operation, region, params, dict(raw.get("save", {})))

    def check_params(self, key: str, shape: Any, params: dict) -> None:
        members = shape.members if shape is not None else {}
        for name in sorted(set(params) - set(members)):
            self.problem(f"{key}.params.{name}", f"not a parameter of the operation: {_one_of(members)}")
        required = shape.required_members if shape is not None else []
        filled = {m for m in required if members[m].metadata.get("idempotencyToken")}  # botocore fills them
        for name in [m for m in required if m not in params and m not in filled]:
            self.problem(f"{key}.params", f"misses the required parameter {name!r}")

    def event(self, index: int, raw: dict, keys: set[str]) -> SampleEvent:
        where = f"events[{index}]"
        for action in ("refresh", "delete"):
            for name in sorted(set(raw.get(action, {})) - keys):
                self.problem(
                    f"{where}.{action}.{name}", f"not a resource of {self.path.stem}.yaml: {_one_of(keys)}"
                )
        detail = raw["detail"]
        source = raw.get("source") or "aws." + str(detail.get("eventSource", "")).split(".")[0]
        return SampleEvent(
            label=raw["label"],
            detail=detail,
            detail_type=raw.get("detail_type", CLOUDTRAIL),
            source=source,
            refresh={k: tuple(v) for k, v in raw.get("refresh", {}).items()},
            delete={k: tuple(v) for k, v in raw.get("delete", {}).items()},
        )


def _placeholders(value: Any) -> list[str]:
    """The expressions of every `${...}` in the strings of `value`, at any depth."""
    if isinstance(value, str):
        return PLACEHOLDER.findall(value)
    if isinstance(value, dict):
        return [p for v in value.values() for p in _placeholders(v)]
    if isinstance(value, list):
        return [p for v in value for p in _placeholders(v)]
    return []


def _one_of(names: Any) -> str:
    return "one of " + ", ".join(sorted(names)) if names else "there is none"


def _dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
