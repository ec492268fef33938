"""`aws-topology record SERVICE...`: the pytest run that re-records each service's own cassette, or one clear
error (a service without a samples file, the test extras missing). The recording itself is what
tests/mappings/test_samples.py does in record mode; here its node ids are checked to exist."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from engine import cli
from engine.core.paths import SOURCE_TREE


def test_record_runs_each_services_scan_test_in_record_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], object]] = []
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, cwd: calls.append((argv, cwd)) or 0)
    result = CliRunner().invoke(cli.main, ["record", "efs", "eks"])
    assert result.exception is None and result.exit_code == 0, result.output
    [(argv, cwd)] = calls
    assert cwd == SOURCE_TREE and argv[:3] == [sys.executable, "-m", "pytest"]
    assert "--record-mode=rewrite" in argv
    nodes = [a for a in argv if "::" in a]
    assert [n.rsplit("[", 1)[1] for n in nodes] == ["efs]", "eks]"]
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:randomly", *nodes],
        cwd=SOURCE_TREE, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert collected.returncode == 0 and "2 tests collected" in collected.stdout, collected.stdout[-2000:]


def test_record_passes_on_the_exit_code_of_the_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, cwd: 1)
    assert CliRunner().invoke(cli.main, ["record", "efs"]).exit_code == 1


def test_a_service_without_a_samples_file_is_one_error_and_records_nothing(monkeypatch) -> None:
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, cwd: pytest.fail("recorded"))
    result = CliRunner().invoke(cli.main, ["record", "efs", "glacier"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2
    assert result.stderr == "error: no mappings/samples/glacier.yaml (aws-topology new glacier writes one)\n"


def test_missing_test_extras_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    found = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None if name == "vcr" else found(name))
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, cwd: pytest.fail("recorded"))
    result = CliRunner().invoke(cli.main, ["record", "efs"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2
    assert result.stderr == (
        "error: record needs the test extras (pip install -e '.[test]'; ./run.sh record installs them): "
        "vcr not installed\n"
    )


def test_record_needs_a_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(cli, "SOURCE_TREE", tmp_path)
    result = CliRunner().invoke(cli.main, ["record", "efs"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: record runs in a checkout of the repository: no ")
