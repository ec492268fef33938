"""`pip install .` gives a working `aws-topology`: the wheel carries the mappings and schemas.

The wheel is built from a copy of the project files (so no build/ or egg-info lands in the work tree),
installed without dependencies into a fresh venv that borrows this venv's site-packages for them, and run
from a folder outside the source tree with no PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml

from engine.deploy.policy import role_policy
from engine.language.loader import MAPPINGS, load_mappings
from tests.language.test_mappings import QUEUE

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("pyproject.toml", "README.md", "engine", "mappings", "schemas", "demo", "web")
CONFIG = {
    "init_config": {"external_id": "uniquesecret!1"},
    "instances": [
        {"role_arn": "arn:aws:iam::123456789012:role/StackStateAwsIntegrationRole", "regions": ["eu-west-1"]}
    ],
}


def build_wheel(workdir: Path) -> Path:
    source = workdir / "src"
    source.mkdir()
    for name in PROJECT_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, source / name)
    dist = workdir / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(dist), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("aws_topology-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed; dependencies come from this venv's site-packages."""
    workdir = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(workdir)
    target = workdir / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", where], text=True).strip())
    # A path listed in a .pth file is added after the venv's own site-packages, and its own .pth files
    # (this venv's editable-install finder) are not run: only the wheel's `engine` can be imported.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return target


def run(venv_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(venv_dir / "bin" / "aws-topology"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_wheel_ships_the_mappings_and_schemas(installed: Path, tmp_path: Path) -> None:
    code = (
        "import engine.core.paths as d, engine.language.loader as m; print(d.MAPPINGS, d.SCHEMAS, m.__file__)"
    )
    out = subprocess.run(
        [str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, check=True,
    ).stdout.split()  # fmt: skip
    for path in out:
        assert str(installed) in path and str(ROOT) not in path, path
    shipped = sorted(p.name for p in Path(out[0]).glob("*.yaml"))
    assert shipped == sorted(p.name for p in MAPPINGS.glob("*.yaml"))
    assert (Path(out[1]) / "config.schema.json").is_file()
    assert (Path(out[1]) / "mapping.schema.json").is_file()


def test_installed_validate_runs_outside_the_source_tree(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump(CONFIG))
    result = run(installed, tmp_path, "validate", "-c", "conf.yaml")
    assert result.returncode == 0, result.stderr
    mappings = load_mappings()
    assert result.stdout == (
        f"ok: 1 account(s), {len(mappings.resources)} resource types in {len(mappings.services)} services\n"
    )


def test_installed_policy_matches_the_source_and_mappings_override(installed: Path, tmp_path: Path) -> None:
    result = run(installed, tmp_path, "policy")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == role_policy(load_mappings())
    own = tmp_path / "own"
    own.mkdir()
    (own / "sqs.yaml").write_text(QUEUE)
    result = run(installed, tmp_path, "policy", "--mappings", str(own))
    assert result.returncode == 0, result.stderr
    assert "sqs:ListQueues" in json.loads(result.stdout)["Statement"][0]["Action"]
    assert "ec2:DescribeInstances" not in result.stdout
