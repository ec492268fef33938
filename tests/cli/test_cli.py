"""Command line: bad input is one `error:` line and exit code 2, never a traceback or a secret."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from engine import cli, run
from engine.core.state import State
from tests.support import ACCOUNT, make_config

ROLE = "arn:aws:iam::123456789012:role/StackStateAwsIntegrationRole"
SECRET = "SUPERSECRET123"
GOOD: dict[str, Any] = {
    "init_config": {"aws_access_key_id": "", "aws_secret_access_key": "", "external_id": "uniquesecret!1"},
    "instances": [{"role_arn": ROLE, "regions": ["global", "eu-west-1"]}],
}


@pytest.fixture(autouse=True)
def _no_root_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """`scan` configures root logging for the process; keep the test process's logging untouched."""
    monkeypatch.setattr(cli, "_logging", lambda interactive: None)


def write_config(tmp_path: Path, data: dict[str, Any] | str, name: str = "conf.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def assert_bad_input(result: Result) -> None:
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr


def test_validate_good_config_and_shipped_mappings(tmp_path: Path) -> None:
    result = invoke("validate", "-c", write_config(tmp_path, GOOD))
    assert result.exit_code == 0
    assert re.fullmatch(r"ok: 1 account\(s\), \d+ resource types in \d+ services\n", result.stdout)
    assert result.stderr == ""


def test_validate_bad_config_is_one_error_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, {**GOOD, "instances": [{"role_arn": ROLE, "regions": "eu-west-1"}]})
    result = invoke("validate", "-c", config)
    assert_bad_input(result)
    assert result.stdout == ""
    assert result.stderr == f"error: {config}: instances[0].regions: must be a list, got string\n"


def test_validate_missing_config_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.yaml")
    result = invoke("validate", "-c", missing)
    assert_bad_input(result)
    assert result.stderr == f"error: {missing}: -: file not found\n"


@pytest.mark.parametrize("command", ["validate", "scan"])
def test_bad_mapping_folder_names_the_file_and_key(tmp_path: Path, command: str) -> None:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "sqs.yaml").write_text(
        "version: 2\nservice: sqs\nresources:\n  queue:\n    type: aws.sqs.queue\n"
        '    list: {operation: ListQueues, items: "QueueUrls[]"}\n    id: "@"\n',
        encoding="utf-8",
    )
    extra = ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite")]
    args = ["-c", write_config(tmp_path, GOOD), "--mappings", str(mappings)]
    result = invoke(command, *args, *(extra if command == "scan" else []))
    assert_bad_input(result)
    assert result.stderr == "error: sqs.yaml: version: 1 was expected\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "state.sqlite").exists()


def test_scan_needs_exactly_one_destination(tmp_path: Path) -> None:
    result = invoke("scan", "-c", write_config(tmp_path, GOOD), "--state", str(tmp_path / "state.sqlite"))
    assert result.exit_code == 2
    assert "Usage: main scan [OPTIONS]" in result.stderr
    assert "Error: give exactly one of --out DIR or --receiver URL" in result.stderr
    assert not (tmp_path / "state.sqlite").exists()


def test_scan_with_both_destinations_is_a_usage_error(tmp_path: Path) -> None:
    args = ["-c", write_config(tmp_path, GOOD), "--out", str(tmp_path / "o"), "--receiver", "http://x"]
    result = invoke("scan", *args, "--state", str(tmp_path / "state.sqlite"))
    assert result.exit_code == 2
    assert "Error: give exactly one of --out DIR or --receiver URL" in result.stderr


def _with_secret(instance: dict[str, Any], **init: Any) -> dict[str, Any]:
    base = {"aws_access_key_id": "AKIAEXAMPLEKEY", "aws_secret_access_key": SECRET, "external_id": "x1"}
    return {"init_config": {**base, **init}, "instances": [instance]}


BROKEN_NEXT_TO_SECRET: dict[str, tuple[dict[str, Any] | str, str]] = {
    "regions-not-a-list": (
        _with_secret({"role_arn": ROLE, "regions": "eu-west-1"}),
        "instances[0].regions: must be a list, got string",
    ),
    "unknown-init-key": (
        _with_secret({"role_arn": ROLE, "regions": ["eu-west-1"]}, full_run_intervall=600),
        "init_config: unknown key 'full_run_intervall' (did you mean 'full_run_interval'?); "
        "expected one of: allow_role_without_external_id, aws_access_key_id, aws_secret_access_key, "
        "external_id, full_run_interval, proxy, trace_relation_ttl",
    ),
    "interval-too-small": (
        _with_secret({"role_arn": ROLE, "regions": ["eu-west-1"]}, full_run_interval=5),
        "init_config.full_run_interval: must be at least 60, got 5",
    ),
    "yaml-error-on-another-line": (
        f"init_config:\n  aws_access_key_id: AKIAEXAMPLEKEY\n  aws_secret_access_key: {SECRET}\n"
        "  external_id: x1\ninstances:\n  - role_arn: [oops\n",
        "-: invalid YAML at line 7, column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence started at line 6, column 15)",
    ),
}


@pytest.mark.parametrize("command", ["validate", "scan"])
@pytest.mark.parametrize(
    ("content", "problem"), BROKEN_NEXT_TO_SECRET.values(), ids=list(BROKEN_NEXT_TO_SECRET)
)
def test_secret_is_never_printed(
    tmp_path: Path, command: str, content: dict[str, Any] | str, problem: str
) -> None:
    config = write_config(tmp_path, content)
    extra = (
        ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "s.sqlite")] if command == "scan" else []
    )
    result = invoke(command, "-c", config, *extra)
    assert_bad_input(result)
    assert SECRET not in result.output and SECRET not in result.stderr
    assert result.stderr.startswith(f"error: {config}: ")
    assert result.stderr.count("\n") == 1
    assert result.stderr == f"error: {config}: {problem}\n"


def test_validate_warns_about_apis_that_no_mapping_provides(tmp_path):
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: x1}\n"
        "instances: [{role_arn: 'arn:aws:iam::123456789012:role/R', regions: [eu-west-1], "
        "apis_to_run: [ec2, cloudfront, 'iam|roles']}]\n"
    )
    result = CliRunner().invoke(cli.main, ["validate", "-c", str(conf)])

    assert result.exit_code == 0
    assert result.stderr.startswith(
        "warning: arn:aws:iam::123456789012:role/R: apis_to_run names cloudfront, iam, which no mapping "
        "provides (skipped); known: "
    )
    assert "ec2, " in result.stderr and result.stderr.count("\n") == 1


def test_scan_without_any_credentials_is_bad_input_naming_the_role(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    conf = write_config(tmp_path, GOOD)

    result = invoke("scan", "-c", conf, "--out", str(tmp_path / "out"), "--state", str(tmp_path / "s.sqlite"))

    assert result.exit_code == 2
    assert result.stdout.startswith("scan account=123456789012 status=unreachable components=0")
    assert f"error='cannot get credentials for {ROLE}: NoCredentialsError: no static keys" in result.stdout
    assert list((tmp_path / "out").rglob("scan-*.json")) == []
    [checks] = (tmp_path / "out").rglob("checks-*.json")
    [check] = json.loads(checks.read_text())["service_checks"]
    assert (check["check"], check["status"]) == ("aws_topology.can_connect", 2)
    assert check["message"].startswith("cannot get credentials for")


def test_validate_warns_about_regions_that_no_aws_partition_knows(tmp_path):
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: x1}\n"
        "instances: [{role_arn: 'arn:aws:iam::123456789012:role/R', regions: [global, eu-west-9]}]\n"
    )
    result = CliRunner().invoke(cli.main, ["validate", "-c", str(conf)])

    assert result.exit_code == 0
    assert result.stderr == (
        "warning: arn:aws:iam::123456789012:role/R: no AWS partition knows the region(s) eu-west-9; "
        "they are scanned as partition 'aws'\n"
    )


def _recorded_scan(tmp_path: Path, minutes_ago: float, complete: bool, **summary: Any) -> State:
    state = State(tmp_path / "state.sqlite")
    started = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    state.record_run(ACCOUNT, "scan", started, started + timedelta(seconds=30), complete, summary)
    return state


def test_a_scan_that_closed_its_snapshot_with_a_type_carried_forward_is_not_due_again(tmp_path: Path) -> None:
    """One permanently denied type must not make a full scan every minute."""
    config = replace(make_config(), full_run_interval=3600)
    with _recorded_scan(tmp_path, 5, complete=False, snapshot_closed=True, carried={"x": 60}) as state:
        assert run.due(config, state) == []


@pytest.mark.parametrize(
    "summary", [{"snapshot_closed": False, "interrupted": True}, {"error": "unreachable"}]
)
def test_a_scan_that_was_interrupted_or_unreachable_does_not_count_for_due(
    tmp_path: Path, summary: dict[str, Any]
) -> None:
    config = replace(make_config(), full_run_interval=3600)
    with _recorded_scan(tmp_path, 5, complete=False, **summary) as state:
        assert run.due(config, state) == list(config.instances)


ORGANIZATION = {
    "organization": {"role_name": "StackStateAwsIntegrationRole"},
    "regions": ["eu-west-1", "xx-west-9"],
    "apis_to_run": ["sqs", "cloudfront"],
}


def test_an_organization_instance_in_validate_plan_and_views(tmp_path: Path) -> None:
    """Without calling AWS: validate counts it, plan shows each discovered account's plan, views says its
    accounts are not listed; warnings name the instance."""
    conf = write_config(tmp_path, {**GOOD, "instances": [*GOOD["instances"], ORGANIZATION]})

    checked = invoke("validate", "-c", conf)
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith("ok: 1 account(s) and 1 organization(s), ")
    assert (
        "warning: instances[1].organization: no AWS partition knows the region(s) xx-west-9" in checked.stderr
    )
    assert "warning: instances[1].organization: apis_to_run names cloudfront" in checked.stderr

    planned = invoke("plan", "-c", conf)
    assert planned.exit_code == 0, planned.output
    explicit, _, template = planned.stdout.partition(
        "instances[1].organization: each discovered account (000000000000 below):\n"
    )
    assert "ListQueues" in template and "000000000000/eu-west-1" in template, planned.stdout
    assert f"{ACCOUNT}/eu-west-1" in explicit and "000000000000" not in explicit

    views = invoke("views", "-c", conf)
    assert views.exit_code == 0, views.output
    assert "note: instances[1].organization: its accounts are discovered by a run; not listed" in views.stderr
