"""Against a live in-process moto server: what cassettes cannot show (IAM denials, concurrency)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import moto.settings
import pytest
from click.testing import CliRunner
from moto.core.authorization import ActionAuthenticatorMixin

from engine.cli import main
from engine.mappings import load_mappings
from engine.scan import scan
from tests.conftest import ACCOUNT, ListSink, make_config

pytestmark = pytest.mark.live

DENY_LIST_QUEUES = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "sqs:ListQueues", "Resource": "*"},
    ],
}


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, dict]]:
    from demo.seed import seed_estate
    from demo.server import reset, start

    server, endpoint = start(0)
    reset(endpoint)
    ids = seed_estate(endpoint)
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(RoleName="LimitedScan", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName="LimitedScan", PolicyName="scan", PolicyDocument=json.dumps(DENY_LIST_QUEUES)
    )
    yield endpoint, ids
    server.stop()


@pytest.fixture
def live_env(live, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict]:
    endpoint, ids = live
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    return endpoint, ids


@pytest.fixture
def iam_enforced_after_next_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto enforces IAM policies from the request after the next one (the AssumeRole)."""
    monkeypatch.setattr(
        moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", ActionAuthenticatorMixin.request_count + 1
    )


def test_denied_list_keeps_snapshot_open_and_reports_the_permission_gap(
    live_env, iam_enforced_after_next_request, tmp_path, caplog
):
    role = f"arn:aws:iam::{ACCOUNT}:role/LimitedScan"
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: live-test}\n"
        f"instances: [{{role_arn: '{role}', regions: [eu-west-1, us-east-1]}}]\n"
    )

    result = CliRunner().invoke(
        main,
        [
            "scan",
            "-c",
            str(conf),
            "--out",
            str(tmp_path / "out"),
            "--state",
            str(tmp_path / "state.sqlite"),
            "--workers",
            "4",
        ],
    )

    assert result.exit_code == 1, result.output
    summary = result.stdout.strip().splitlines()[-1]
    assert "status=INCOMPLETE" in summary
    assert f"incomplete_units={ACCOUNT}/eu-west-1/sqs.queue,{ACCOUNT}/us-east-1/sqs.queue" in summary
    payloads = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*.json"))]
    topologies = [t for p in payloads for t in p["topologies"]]
    assert topologies[0]["start_snapshot"] is True
    assert all(t["stop_snapshot"] is False for t in topologies)
    types = {c["type"]["name"] for t in topologies for c in t["components"]}
    assert "aws.sqs.queue" not in types and "aws.ec2.instance" in types
    assert f"gap='role {role} needs sqs:ListQueues (2x)'" in caplog.text


def test_parallel_scan_gives_the_same_snapshot_as_a_sequential_one(live_env):
    endpoint, _ = live_env
    one, eight = ListSink(), ListSink()
    scan(make_config(), load_mappings(), one, workers=1, endpoint_url=endpoint)
    scan(make_config(), load_mappings(), eight, workers=8, endpoint_url=endpoint)

    assert one.components().keys() == eight.components().keys()
    assert one.relations() == eight.relations()
    assert len(one.components()) >= 30
