"""README.md and docs/*.md: the README is short and starts with the two commands, every relative link (and
its `#anchor`, GitHub style) resolves, and the README's command table names exactly the CLI's commands.
Each check is a small function over text; the `*_fails` tests show each one catching a broken page."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from engine import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

MAX_README_LINES = 90  # two screens; today's README has about 75
MAX_LINE = 200  # any line, table rows included (they cannot be wrapped)
MAX_PROSE_LINE = 120  # prose is wrapped (the code's line length is 110)
FIRST_BLOCK_BY = 10  # the two commands' code block closes within the README's first lines
TWO_COMMANDS = ["./run.sh", "./run.sh test"]

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks, fences included as code."""
    lines, in_code = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code:
            lines.append((number, line))
    return lines


def first_code_block(text: str) -> tuple[int, list[str]]:
    """The line number closing the first fenced block, and its lines without `#` comments."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if FENCE.match(line))
    end = next(i for i in range(start + 1, len(lines)) if FENCE.match(lines[i]))
    return end + 1, [line.split("#", 1)[0].strip() for line in lines[start + 1 : end]]


def length_problems(text: str) -> list[str]:
    """Lines over MAX_LINE, and prose lines (not table rows, not code) over MAX_PROSE_LINE."""
    problems = [
        f"line {n}: {len(line)} > {MAX_LINE}"
        for n, line in enumerate(text.splitlines(), 1)
        if len(line) > MAX_LINE
    ]
    problems += [
        f"line {n}: prose {len(line)} > {MAX_PROSE_LINE}"
        for n, line in prose_lines(text)
        if len(line) > MAX_PROSE_LINE and not line.startswith("|")
    ]
    return problems


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets `-1`, `-2`, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(text):
        if match := HEADING.match(line):
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[str]:
    """Link and image targets outside code blocks and code spans."""
    return [target for _, line in prose_lines(text) for target in LINK.findall(CODE_SPAN.sub("", line))]


def broken_links(page: Path, text: str, root: Path = ROOT) -> list[str]:
    """Relative links of `page` whose file is missing or whose `#anchor` is no heading of it."""
    broken = []
    for target in links(text):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        name = file.relative_to(root).as_posix()
        if path and not file.is_file():
            broken.append(f"{target}: no file {name}")
            continue
        if anchor and anchor not in anchors(file.read_text(encoding="utf-8") if path else text):
            broken.append(f"{target}: no heading #{anchor} in {name}")
    return broken


def table_commands(text: str) -> set[str]:
    """The commands of the README's `## Commands` table: the first cell's words up to its first option."""
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    commands = set()
    for line in section.splitlines():
        cell = line.split("|")[1].strip() if line.startswith("|") else ""
        if cell.startswith("`"):
            words = cell.strip("`").split()
            commands.add(" ".join(w for w in _until_option(words)))
    return commands


def _until_option(words: list[str]) -> list[str]:
    names = []
    for word in words:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        names.append(word)
    return names


def cli_commands(group: click.Group) -> set[str]:
    """Every command of the CLI; a group counts as its sub-commands (`spool list`, ...), and as a command
    too when it runs without one (`traces`)."""
    names = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names |= {f"{name} {sub}" for sub in cli_commands(command)}
            if command.invoke_without_command:
                names.add(name)
        else:
            names.add(name)
    return names


def documented_modules(text: str) -> dict[str, set[str]]:
    """The module tables of docs/architecture.md: per `engine/X/` section (`""` for "Top level"), the file
    names in the first column."""
    tables: dict[str, set[str]] = {}
    for section in ("\n" + text).split("\n### ")[1:]:
        heading, _, body = section.partition("\n")
        package = re.match(r"`engine/(\w+)/`", heading)
        if package is None and not heading.startswith("Top level"):
            continue
        cells = (
            line.split("|")[1].strip() for line in body.split("\n## ")[0].splitlines() if line[:1] == "|"
        )
        tables[package.group(1) if package else ""] = {c.strip("`") for c in cells if c.endswith(".py`")}
    return tables


def engine_modules(engine: Path) -> dict[str, set[str]]:
    """The engine's modules on disk, as `documented_modules` names them (no `__init__.py`)."""
    found = {"": {p.name for p in engine.glob("*.py") if p.name != "__init__.py"}}
    for package in (p for p in engine.iterdir() if (p / "__init__.py").is_file()):
        found[package.name] = {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    return found


def test_readme_starts_with_the_two_commands() -> None:
    closed_at, commands = first_code_block(README.read_text(encoding="utf-8"))
    assert closed_at <= FIRST_BLOCK_BY
    assert commands == TWO_COMMANDS


def test_readme_is_short_and_wrapped() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES
    assert length_problems(text) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page, page.read_text(encoding="utf-8")) == []


def test_readme_command_table_is_the_cli() -> None:
    table, commands = table_commands(README.read_text(encoding="utf-8")), cli_commands(cli.main)
    assert sorted(commands - table) == [], "CLI commands missing from the README's table"
    assert sorted(table - commands) == [], "README commands the CLI does not have"
    assert {"scan", "run", "spool list", "spool resend", "spool requeue", "spool drop", "traces"} <= commands


def test_two_commands_check_fails() -> None:
    late = "# t\n" + "text\n" * 8 + "```sh\n./run.sh\n./run.sh test\n```\n"
    assert first_code_block(late)[0] > FIRST_BLOCK_BY
    swapped = "```sh\n./run.sh test   # tests\n./run.sh   # demo\n```\n"
    assert first_code_block(swapped) == (4, ["./run.sh test", "./run.sh"])


def test_length_check_fails() -> None:
    assert length_problems("x" * (MAX_PROSE_LINE + 1)) == [
        f"line 1: prose {MAX_PROSE_LINE + 1} > {MAX_PROSE_LINE}"
    ]
    assert length_problems("|" + "x" * MAX_LINE) == [f"line 1: {MAX_LINE + 1} > {MAX_LINE}"]
    assert length_problems("```\n" + "x" * MAX_PROSE_LINE * 2 + "\n```") == ["line 2: 240 > 200"]
    assert length_problems("| " + "x" * 150 + " |\n" + "x" * MAX_PROSE_LINE) == []


def test_link_check_fails(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "a.md"
    (tmp_path / "docs" / "b.md").write_text(
        "# B\n\n## Known `gaps`\n\n## Known gaps\n\n```\n# not a heading\n```\n"
    )
    text = (
        "[ok](b.md#known-gaps) [ok](b.md#known-gaps-1) ![img](b.md) [web](https://example.com/x.md)\n"
        "`[code](nowhere.md)`\n```\n[code](nowhere.md)\n```\n"
        "[gone](c.md) [bad](b.md#not-a-heading) [self](#b) [up](../README.md)\n"
    )
    assert broken_links(page, text, root=tmp_path) == [
        "c.md: no file docs/c.md",
        "b.md#not-a-heading: no heading #not-a-heading in docs/b.md",
        "#b: no heading #b in docs/a.md",
        "../README.md: no file README.md",
    ]


def test_slugs_are_github_style() -> None:
    assert slug("`apis_to_run`") == "apis_to_run"
    assert slug("Flow logs (§5, §11)") == "flow-logs-5-11"
    assert slug("The predecessor's bugs, as a checklist") == "the-predecessors-bugs-as-a-checklist"
    assert slug("See [the docs](x.md)") == "see-the-docs"


def test_command_table_check_fails() -> None:
    readme = (
        "# t\n\n## Commands\n\n| command | what |\n|---|---|\n"
        "| `scan -c conf.yaml` | x |\n| `spool list` | y |\n\n## Next\n| `plan` | z |\n"
    )
    assert table_commands(readme) == {"scan", "spool list"}

    @click.group()
    def main() -> None: ...

    @main.group("spool")
    def spool() -> None: ...

    main.command("scan")(lambda: None)
    main.command("status")(lambda: None)
    spool.command("list")(lambda: None)
    spool.command("drop")(lambda: None)
    assert cli_commands(main) - table_commands(readme) == {"status", "spool drop"}
    assert table_commands(readme.replace("| `plan` |", "| `status` |")) == {
        "scan",
        "spool list",
    }  # next section
    assert table_commands(readme.replace("`spool list`", "`spool lists`")) - cli_commands(main) == {
        "spool lists"
    }


def test_the_architecture_names_every_engine_module_in_its_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert documented_modules(text) == engine_modules(ROOT / "engine")


def test_module_table_check_fails(tmp_path: Path) -> None:
    text = "### `engine/core/`: x\n| module | owns |\n|---|---|\n| `a.py` | A |\n\n### Top level\n"
    text += "| `run.py` | r |\n\n## The run cycle\n| `not.py` | a table of another section |\n"
    assert documented_modules(text) == {"core": {"a.py"}, "": {"run.py"}}
    (tmp_path / "core").mkdir()
    for name in ("core/__init__.py", "core/a.py", "core/b.py", "run.py", "__init__.py"):
        (tmp_path / name).touch()
    assert engine_modules(tmp_path) == {"core": {"a.py", "b.py"}, "": {"run.py"}}  # b.py: not documented
