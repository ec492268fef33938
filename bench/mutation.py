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


def report(target: Path, seconds: float) -> float:
    """Print the counts, the score and the survivors' diffs; return the score (0-100)."""
    found = statuses(target)
    counts = Counter(found.values())
    tested = len(found) - counts["no tests"]
    score = 100.0 * (counts["killed"] + counts["timeout"]) / tested if tested else 0.0
    other = len(found) - sum(counts[k] for k in ("killed", "survived", "timeout", "no tests"))
    print(f"mutants {len(found)}  killed {counts['killed']}  survived {counts['survived']}  "
          f"timeouts {counts['timeout']}  without tests {counts['no tests']}  other {other}")  # fmt: skip
    print(f"score {score:.1f}%  ({seconds:.0f} s, {seconds / max(len(found), 1):.2f} s per mutant)")
    for name, status in sorted(found.items()):
        if status in ("survived", "no tests"):
            print(mutmut(target, "show", name, quiet=True))
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
