"""engine/ imports in one direction: a module imports only from its own package or a layer below it, and
never a private name (`_x`) of another module. docs/architecture.md describes the layers.

Every import is checked, also those inside functions and under `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"

# Lowest first. Packages of the same rank (aws and deploy; events, flowlogs and view) do not import each
# other; `run` and `cli` are the top-level modules engine/run.py and engine/cli.py.
RANKS = {
    "core": 0,
    "language": 1,
    "aws": 2,
    "deploy": 2,
    "delivery": 3,
    "scan": 4,
    "events": 5,
    "flowlogs": 5,
    "view": 5,
    "traces": 5,
    "metrics": 6,
    "run": 7,
    "cli": 8,
}


def layer(module: str) -> str:
    """The layer of a dotted engine module name: its sub-package, or the top-level module's own name."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_imports(tree: ast.Module) -> Iterator[tuple[int, str, list[str], set[str]]]:
    """(line, imported engine module, names taken from it, names bound to the module) of every import.

    A relative import is reported as the module `engine.<relative>`, which is in no layer: use absolute ones.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("engine."):
                    yield node.lineno, alias.name, [], {alias.asname} if alias.asname else set()
        elif isinstance(node, ast.ImportFrom):
            base = "engine.<relative>" if node.level else node.module or ""
            if base != "engine" and not base.startswith("engine."):
                continue
            if base == "engine" or _is_package(base):  # `from engine.core import stackpack`: modules
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}", [], {alias.asname or alias.name}
            else:
                yield node.lineno, base, [a.name for a in node.names], set()


def _is_package(module: str) -> bool:
    return (ENGINE.parent / module.replace(".", "/") / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def violations(path: Path) -> list[str]:
    """Every upward or sideways import and every private name taken from another module, one line each."""
    own = module_name(path)
    where = path.relative_to(ENGINE.parent)
    found = []
    if layer(own) not in RANKS:
        return [f"{where}: {own} is in no layer (add it to RANKS and docs/architecture.md)"]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    aliases: set[str] = set()
    for line, target, names, bound in engine_imports(tree):
        if layer(target) not in RANKS:
            found.append(f"{where}:{line}: imports {target}, which is in no layer")
        elif layer(target) != layer(own) and RANKS[layer(target)] >= RANKS[layer(own)]:
            found.append(
                f"{where}:{line}: {layer(own)} imports {target} ({layer(target)} is not below {layer(own)})"
            )
        if target != own:
            found += [
                f"{where}:{line}: imports the private name {n} of {target}" for n in names if _private(n)
            ]
            aliases |= bound
    attributes = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)]
    found += [  # `module._name` through a module imported by name
        f"{where}:{n.lineno}: uses the private name {n.attr} of {n.value.id}"  # type: ignore[attr-defined]
        for n in attributes
        if n.value.id in aliases and _private(n.attr)  # type: ignore[attr-defined]
    ]
    return found


MODULES = sorted(ENGINE.rglob("*.py"))


def test_every_engine_package_has_a_layer() -> None:
    packages = {p.parent.name for p in ENGINE.glob("*/__init__.py")}
    assert packages == {name for name in RANKS if not (ENGINE / f"{name}.py").is_file()}, packages
    assert len(MODULES) > 30


def test_imports_go_down_the_layers_and_take_no_private_name() -> None:
    problems = [problem for path in MODULES for problem in violations(path)]
    assert not problems, "\n".join(problems)
