"""Mutation score of engine modules against a test selection, with mutmut.

    .venv/bin/python -m bench.mutation engine/events/cloudtrail.py --tests tests/events/test_cloudtrail.py
    .venv/bin/python -m bench.mutation engine/events/eventbridge.py engine/events/delta.py \
        --tests tests/events/test_events.py --tests tests/events/test_event_rules.py --children 2

The repository's tracked and unignored files are copied to a scratch directory (the work tree is left alone),
a `[tool.mutmut]` section naming the modules and tests is added to the copy's pyproject.toml, and `mutmut run`
mutates only those modules and runs only those tests. Prints the mutants, killed, survived, timeouts, the
score (killed and timed out over those with tests) and the seconds per mutant, then each survivor's diff. The
run-cycle modules: engine/events/ (delta, eventbridge, cloudtrail), engine/aws/log_bucket.py,
engine/flowlogs/ (connections, records), engine/delivery/ (sinks, http, spool), engine/core/state.py.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALSO_COPY = ["mappings", "schemas", "cassettes", "demo", "web", "bench", "tests"]


def copy_repository(target: Path) -> None:
    """The tracked and unignored files of the work tree, as they are now, into `target`."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    names = [n for n in listed.decode().split("\0") if n and (ROOT / n).is_file()]
    tar = subprocess.run(["tar", "-cf", "-", "--null", "-T", "-"], cwd=ROOT, input="\0".join(names).encode(),
                         capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-xf", "-"], cwd=target, input=tar, check=True)


def configure(target: Path, modules: list[str], tests: list[str]) -> None:
    """Add the mutmut section: mutate `modules` only, run `tests` only."""
    section = "\n".join([
        "", "[tool.mutmut]",
        'source_paths = ["engine"]',
        f"only_mutate = {json.dumps(modules)}",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        f"also_copy = {json.dumps(ALSO_COPY)}",
        "",
    ])  # fmt: skip
    with (target / "pyproject.toml").open("a") as out:
        out.write(section)


def mutmut(target: Path, *args: str, quiet: bool = False) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "mutmut", *args], cwd=target, text=True,
        stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None,
    )  # fmt: skip
    return run.stdout or ""


def statuses(target: Path) -> dict[str, str]:
    """Every mutant of the run and its status (killed, survived, timeout, no tests, ...)."""
    found = {}
    for line in mutmut(target, "results", "--all", "true", quiet=True).splitlines():
        name, _, status = line.strip().partition(": ")
        if status:
            found[name] = status
    return found


_SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|BEGIN|COMMIT|ROLLBACK|PRAGMA|WHERE|VALUES)\b", re.I)
_QUOTED = re.compile(r"'[^']*'")


def sql_case_only(diff: str) -> bool:
    """The mutant only changes the letter case of SQL outside its quoted literals: SQLite reads keywords,
    table and column names case-insensitively, so such a mutant cannot change what the program does."""
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return (
        len(removed) == len(added) > 0
        and all(_SQL.search(old) for old in removed)
        and all(old.lower() == new.lower() and _QUOTED.findall(old) == _QUOTED.findall(new)
                for old, new in zip(removed, added, strict=True))
    )  # fmt: skip


def report(target: Path, seconds: float) -> float:
    """Print the counts, the score and the survivors' diffs; return the score (0-100).

    Survivors that only change the case of SQL are equivalent mutants: counted apart and left out of the
    score's denominator (and listed by name only)."""
    found = statuses(target)
    shown = ("survived", "no tests")
    diffs = {n: mutmut(target, "show", n, quiet=True) for n, s in found.items() if s in shown}
    equivalent = {n for n, s in found.items() if s == "survived" and sql_case_only(diffs[n])}
    counts = Counter(found.values())
    tested = len(found) - counts["no tests"] - len(equivalent)
    score = 100.0 * (counts["killed"] + counts["timeout"]) / tested if tested else 0.0
    other = len(found) - sum(counts[k] for k in ("killed", "survived", "timeout", "no tests"))
    print(f"mutants {len(found)}  killed {counts['killed']}  survived {counts['survived']} "
          f"(of which SQL case only: {len(equivalent)})  timeouts {counts['timeout']}  "
          f"without tests {counts['no tests']}  other {other}")  # fmt: skip
    print(f"score {score:.1f}%  ({seconds:.0f} s, {seconds / max(len(found), 1):.2f} s per mutant)")
    if equivalent:
        print("equivalent (SQL case only): " + " ".join(sorted(equivalent)))
    for name in sorted(set(diffs) - equivalent):
        print(diffs[name])
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "modules", nargs="+", help="engine modules to mutate, e.g. engine/events/cloudtrail.py"
    )
    parser.add_argument("--tests", action="append", required=True, help="a test file or node id to run")
    parser.add_argument("--children", type=int, default=2, help="mutants run in parallel (default 2)")
    parser.add_argument("--keep", type=Path, help="run here and keep it (default: a scratch dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        target = args.keep or Path(scratch)
        target.mkdir(parents=True, exist_ok=True)
        copy_repository(target)
        configure(target, args.modules, args.tests)
        started = time.monotonic()
        mutmut(target, "run", "--max-children", str(args.children), quiet=True)
        report(target, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
