"""The mapping language stays readable: short expressions, no `_parent._parent`, no lookup tables inside
expressions; vars, ancestors and the docs (schema fields, functions, the types catalogue) are checked too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from jmespath import functions as builtin

from engine import cli
from engine.core.errors import MappingErrors
from engine.core.paths import MAPPINGS, SCHEMAS
from engine.language import loader
from engine.language.catalogue import catalogue
from engine.language.components import with_vars
from engine.language.dialect import OPTIONS, compile_expression
from engine.scan.collect import ancestry

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "mappings.md"
LONGEST = 160  # characters of one expression
TABLE_KEYS = 6  # constant keys an object literal may have inside an expression


def expressions(directory: Path = MAPPINGS) -> dict[str, str]:
    """`file: key` -> the string value the loader compiles as JMESPath (a template: the template itself)."""
    found: list[tuple[str, str]] = []
    original = loader._FileLoader.expression

    def record(self: Any, key: str, text: str) -> Any:
        found.append((self.path.name, key))
        return original(self, key, text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader._FileLoader, "expression", record)
        loader.load_mappings(directory)
    raw = {path.name: yaml.safe_load(path.read_text()) for path in Path(directory).glob("*.yaml")}
    return {f"{name}: {key}": text for name, key in found if (text := _at(raw[name], key)) is not None}


def _at(value: Any, key: str) -> str | None:
    """The value at a loader key (`resources.state.relations[2].target`); None for a default."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        index = int(part[1:-1]) if part.startswith("[") else part
        try:
            value = value[index]
        except (KeyError, IndexError, TypeError):
            return None
    return value if isinstance(value, str) else None


def too_long(found: dict[str, str]) -> list[str]:
    return [f"{where} ({len(text)})" for where, text in found.items() if len(text) > LONGEST]


def deep_parent(found: dict[str, str]) -> list[str]:
    return [where for where, text in found.items() if re.search(r"_parent\s*\.\s*_parent", text)]


def lookup_tables(found: dict[str, str]) -> list[str]:
    return [where for where, text in found.items() if _tables(_tree(text))]


def _tree(text: str) -> dict:
    try:
        return compile_expression(text).parsed
    except ValueError:  # a format() template (`type`, `physical_id`): its placeholders are
        return {}  # short and compiled by the loader; the template is measured, not searched


def _tables(node: Any) -> bool:
    """True when the tree holds an object literal (JSON, or `{k: 'v', ...}` of constants) of more than
    TABLE_KEYS keys."""
    if not isinstance(node, dict):
        return False
    if node.get("type") == "literal" and isinstance(node.get("value"), dict):
        return len(node["value"]) > TABLE_KEYS
    pairs = node.get("children", []) if node.get("type") == "multi_select_dict" else []
    if len(pairs) > TABLE_KEYS and all(p["children"][0].get("type") == "literal" for p in pairs):
        return True
    return any(_tables(child) for child in node.get("children", []))


@pytest.fixture(scope="module")
def shipped() -> dict[str, str]:
    return expressions()


def test_no_expression_is_longer_than_160_characters(shipped):
    assert len(shipped) > 600  # every compiled string of every file was found
    assert too_long(shipped) == []
    assert too_long({"x.yaml: resources.a.id": "a" * 161}) == ["x.yaml: resources.a.id (161)"]


def test_no_parent_chain_deeper_than_one_level(shipped):
    assert deep_parent(shipped) == []
    assert deep_parent({"x.yaml: k": "format('{_parent._parent.id}', @)"}) == ["x.yaml: k"]


def test_no_lookup_table_inside_an_expression(shipped):
    assert lookup_tables(shipped) == []
    table = json.dumps({f"k{i}": f"v{i}" for i in range(7)})
    assert lookup_tables({"x.yaml: a": f"lookup(`{table}`, key)"}) == ["x.yaml: a"]
    consts = ", ".join(f"k{i}: 'v{i}'" for i in range(7))
    assert lookup_tables({"x.yaml: b": f"{{{consts}}}"}) == ["x.yaml: b"]
    assert lookup_tables({"x.yaml: c": "{a: x, b: y, c: z, d: w, e: v, f: u, g: t}"}) == []  # not constants


# vars and ancestors


def _file(tmp_path: Path, resource: str) -> Path:
    body = "version: 1\nservice: sqs\nresources:\n  queue:\n" + resource
    (tmp_path / "sqs.yaml").write_text(body)
    return tmp_path


QUEUE = (
    "    type: aws.sqs.queue\n    list: {operation: ListQueues, items: 'QueueUrls[].{QueueUrl: @}'}\n"
    "    id: QueueUrl\n"
)


def test_vars_are_compiled_in_order_and_read_as_fields(tmp_path):
    spec = QUEUE + "    vars:\n      _name: \"split(QueueUrl, '/')[-1]\"\n      _upper: upper(_name)\n"
    (resource,) = loader.load_mappings(_file(tmp_path, spec + "    name: _upper\n")).resources
    item = with_vars(resource.vars, {"QueueUrl": "https://q/1/jobs"})
    assert item["_name"] == "jobs" and item["_upper"] == "JOBS"


@pytest.mark.parametrize(
    ("vars_", "problem"),
    [
        (
            "      _a: _b\n      _b: QueueUrl\n",
            "sqs.yaml: resources.queue.vars._a: uses _b, declared at or after it",
        ),
        ("      _a: _a\n", "sqs.yaml: resources.queue.vars._a: uses _a, declared at or after it"),
        ("      _parent: QueueUrl\n", "sqs.yaml: resources.queue.vars._parent: _parent is a context key"),
        ("      _a: nope(QueueUrl)\n", "sqs.yaml: resources.queue.vars._a: unknown function nope()"),
        ("      name: QueueUrl\n", "sqs.yaml: resources.queue.vars: 'name' does not match"),
    ],
)
def test_a_bad_var_names_file_and_key(tmp_path, vars_, problem):
    with pytest.raises(MappingErrors) as raised:
        loader.load_mappings(_file(tmp_path, QUEUE + "    vars:\n" + vars_))
    assert problem in str(raised.value)


def test_children_see_their_root_and_every_ancestor_by_name():
    api = {"id": "a", "_region": "r", "_partition": "aws"}
    stage = {"stageName": "s", **ancestry("rest-api", api)}
    resource = {"path": "/", **ancestry("stage", stage)}
    method = ancestry("resource", resource)
    assert method["_parent"] is resource and method["_root"] is api and stage["_root"] is api
    assert method["_ancestors"] == {"rest-api": api, "stage": stage, "resource": resource}
    assert (method["_region"], method["_partition"]) == ("r", "aws")


# docs


def _schema_properties() -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.update(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads((SCHEMAS / "mapping.schema.json").read_text()))
    return found


def _section(title: str) -> str:
    text = DOCS.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_every_schema_field_is_documented_and_every_documented_field_exists():
    text = DOCS.read_text()
    quoted = {p for p in _schema_properties() if re.search(rf"[`{{, ]{p}[`}}, :\[]", text)}  # `p`, {p, q}, p:
    assert sorted(_schema_properties() - quoted) == []
    rows = re.findall(r"^\| `([a-z_]+)`", _section("Field reference"), re.MULTILINE)
    assert len(rows) > 50
    assert sorted(set(rows) - _schema_properties()) == []


def test_every_function_is_documented_with_its_signature_and_every_documented_one_exists():
    table = OPTIONS.custom_functions.FUNCTION_TABLE
    custom = set(table) - set(builtin.Functions().FUNCTION_TABLE)
    cells = re.findall(r"^\| (`.+?`) \|", _section("Functions"), re.MULTILINE)
    documented = {
        name: [a for a in args.split(",") if a.strip()]
        for cell in cells
        for name, args in re.findall(r"`([a-z_]+)\(([^)]*)\)`", cell)
    }
    assert sorted(custom - set(documented)) == []
    assert sorted(set(documented) - custom) == []
    assert {n: len(a) for n, a in documented.items()} == {n: len(table[n]["signature"]) for n in documented}


def test_the_types_command_prints_one_catalogue_row_per_component_type(tmp_path: Path):
    result = CliRunner().invoke(cli.main, ["types"])
    assert result.exception is None and result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `aws.")]
    types = {t for r in loader.load_mappings().resources if r.emits_component for t in r.types}
    assert sorted(row.split("`")[1] for row in rows) == sorted(types)
    row = "| `aws.efs.mount-target` | Storage | efs.yaml `mount-target` (under `file-system`) | list: "
    assert row in result.stdout
    out = tmp_path / "types.md"
    result = CliRunner().invoke(cli.main, ["types", "--out", str(out)])
    assert result.exit_code == 0 and result.stdout == f"wrote {out}\n"
    assert out.read_text() == catalogue(loader.load_mappings())
