"""The whole run on a PostgreSQL state: `aws-topology run --state postgresql://...` against a moto server
scans, records its run and its units' results there, and `status` and a second run read them back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.core.state import State
from tests.support import ACCOUNT, moto_env, moto_server, new_database

pytestmark = pytest.mark.live

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        sqs = boto3.client(
            "sqs", region_name=REGION, endpoint_url=url, aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )  # fmt: skip
        for i in range(5):
            sqs.create_queue(QueueName=f"pg-{i}")
        s3 = boto3.client(
            "s3", region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )  # fmt: skip
        bucket = f"stackstate-logs-{ACCOUNT}"  # the log bucket the events and flow-log phases read
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        yield url


def test_a_run_on_a_postgresql_state_scans_records_and_is_read_back(
    endpoint: str, postgres: str, tmp_path: Path
) -> None:
    url = new_database(postgres, "whole_run").replace("topology@", "topology:hunter2@")
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: ext-id}\n"
        f"instances: [{{role_arn: 'arn:aws:iam::{ACCOUNT}:role/StackStateAwsIntegrationRole', "
        f"regions: [{REGION}], apis_to_run: [sqs]}}]\n"
    )
    out = tmp_path / "out"
    args = ["run", "-c", str(conf), "--out", str(out), "--state", url]

    first = CliRunner().invoke(main, args, env=moto_env(endpoint))

    assert first.exit_code == 0, first.output
    assert "hunter2" not in first.output
    with State(url, read_only=True) as state:
        run = state.last_run(ACCOUNT, "scan", closed_only=True)
        assert run is not None and run["complete"] is True
        assert state.accounts() == [ACCOUNT]
    queues = {
        c["externalId"]
        for p in out.rglob("scan-*.json")
        for t in json.loads(p.read_text())["topologies"]
        for c in t["components"]
        if c["type"]["name"] == "aws.sqs.queue"
    }
    assert len(queues) == 5
    status = CliRunner().invoke(main, ["status", "--state", url])
    assert status.exit_code == 0, status.output
    assert ACCOUNT in status.output and "hunter2" not in status.output

    second = CliRunner().invoke(main, args, env=moto_env(endpoint))  # the scan is not due again
    assert second.exit_code == 0, second.output
    assert len(list(out.rglob("scan-*.json"))) == len(list(out.glob("run-*/scan-*.json")))
    with State(url, read_only=True) as state:
        assert state.last_run(ACCOUNT, "scan")["started_at"] == run["started_at"]
        assert state.last_run(ACCOUNT, "events") is not None
