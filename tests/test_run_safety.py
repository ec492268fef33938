"""Against a live moto server: signals stop a scan within seconds and leave nothing that reads as complete;
a type denied for good carries its last complete result forward instead of freezing the snapshot; two runs
into one --out folder never mix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import boto3
import moto.settings
import pytest
from click.testing import CliRunner
from moto.core.authorization import ActionAuthenticatorMixin

from engine.cli import main
from engine.state import State
from tests.conftest import ACCOUNT, moto_env

pytestmark = pytest.mark.live

REGION = "eu-west-1"
DENY_QUEUES = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "sqs:ListQueues", "Resource": "*"},
    ],
}


def aws(service: str, endpoint: str) -> object:
    return boto3.client(
        service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )  # fmt: skip


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from demo.server import reset, start

    server, url = start(0)
    reset(url)
    sqs, ec2, iam = aws("sqs", url), aws("ec2", url), aws("iam", url)
    for i in range(300):
        sqs.create_queue(QueueName=f"q-{i:03d}")
    ec2.create_vpc(CidrBlock="10.9.0.0/16")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
    ]}  # fmt: skip
    iam.create_role(RoleName="NoQueues", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="NoQueues", PolicyName="scan", PolicyDocument=json.dumps(DENY_QUEUES))
    yield url
    server.stop()


def conf(tmp_path: Path, role: str = "StackStateAwsIntegrationRole", apis: str = "[sqs, 'ec2|vpcs']") -> Path:
    path = tmp_path / f"{role}.yaml"
    path.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: ext-id}\n"
        f"instances: [{{role_arn: 'arn:aws:iam::{ACCOUNT}:role/{role}', regions: [{REGION}], "
        f"apis_to_run: {apis}}}]\n"
    )
    return path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_scan_within_seconds_and_records_an_incomplete_run(endpoint, tmp_path, sig):
    state, out = tmp_path / "state.sqlite", tmp_path / "out"
    args = ["scan", "-c", str(conf(tmp_path)), "--out", str(out), "--state", str(state), "--workers", "1"]
    exe = Path(sys.executable).parent / "aws-topology"
    process = subprocess.Popen(
        [str(exe), *args], env={**os.environ, **moto_env(endpoint)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:  # the VPC unit is done: the 300 queues' detail calls are under way
        if "event=unit.done" in line and "ec2.vpc" in line:
            break
    assert process.poll() is None, process.communicate()
    sent = time.monotonic()
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=30)
    stopped_after = time.monotonic() - sent

    assert process.returncode == 128 + sig, stderr
    assert stopped_after < 5
    assert f"stopped by {sig.name}; the run is recorded as incomplete" in stderr
    assert "Traceback" not in stderr
    assert "status=interrupted" in stdout
    assert list(out.rglob("scan-*.json")) == []  # nothing that could read as a snapshot
    [manifest] = out.rglob("manifest.json")
    assert json.loads(manifest.read_text())["interrupted"] is True
    with State(state) as history:
        run = history.last_run(ACCOUNT, "scan")
    assert run is not None and run["complete"] is False and run["summary"]["interrupted"] is True


def scan(endpoint: str, tmp_path: Path, role: str, out: Path) -> object:
    args = ["scan", "-c", str(conf(tmp_path, role)), "--out", str(out), "--state", str(tmp_path / "s.sqlite")]
    return CliRunner().invoke(main, args, env=moto_env(endpoint))


def topologies(run_dir: Path) -> list[dict]:
    return [t for p in sorted(run_dir.glob("scan-*.json")) for t in json.loads(p.read_text())["topologies"]]


def test_a_type_denied_for_good_is_carried_forward_and_the_snapshot_still_closes(
    endpoint, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    first = scan(endpoint, tmp_path, "StackStateAwsIntegrationRole", out)
    assert first.exit_code == 0, first.output

    monkeypatch.setattr(
        moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", ActionAuthenticatorMixin.request_count + 1
    )
    second = scan(endpoint, tmp_path, "NoQueues", out)

    assert second.exit_code == 1, second.output
    summary = second.stdout.strip().splitlines()[-1]
    assert "status=INCOMPLETE" in summary and "snapshot_closed=true" in summary
    assert f"carried_forward={ACCOUNT}/{REGION}/sqs.queue(0.0h)" in summary
    _first, second_dir = sorted(out.iterdir())
    carried = topologies(second_dir)
    assert carried[-1]["stop_snapshot"] is True
    queues = {
        c["externalId"] for t in carried for c in t["components"] if c["type"]["name"] == "aws.sqs.queue"
    }
    assert len(queues) == 300  # re-sent from the last complete result, so nothing is deleted
    manifest = json.loads((second_dir / "manifest.json").read_text())
    assert manifest["accounts"][ACCOUNT] == {
        "snapshot_closed": True,
        "complete": False,
        "payloads": sorted(p.name for p in second_dir.glob("scan-*.json")),
    }


def test_a_type_that_never_completed_keeps_the_snapshot_open(endpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(
        moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", ActionAuthenticatorMixin.request_count + 1
    )
    result = scan(endpoint, tmp_path, "NoQueues", tmp_path / "out")

    assert result.exit_code == 1
    assert "snapshot_closed=false" in result.stdout
    [run_dir] = (tmp_path / "out").iterdir()
    assert all(t["stop_snapshot"] is False for t in topologies(run_dir))


def test_two_runs_into_one_folder_stay_apart_and_each_says_what_it_wrote(endpoint, tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        assert scan(endpoint, tmp_path, "StackStateAwsIntegrationRole", out).exit_code == 0

    runs = sorted(out.iterdir())
    assert len(runs) == 2 and all(r.name.startswith("run-") for r in runs)
    for run_dir in runs:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["run"] == run_dir.name.removeprefix("run-")
        listed = manifest["accounts"][ACCOUNT]["payloads"]
        assert listed == sorted(p.name for p in run_dir.glob("scan-*.json"))
        assert topologies(run_dir)[0]["start_snapshot"] is True


class _Receiver(BaseHTTPRequestHandler):
    status = 200
    bodies: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.status == 200:
            self.bodies.append(body)
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spooled_payloads_are_listed_resent_and_rejected_ones_dropped_through_the_cli(endpoint, tmp_path):
    state = str(tmp_path / "s.sqlite")
    config = str(conf(tmp_path, apis="['ec2|vpcs']"))
    cli = CliRunner()

    args = ["scan", "-c", config, "--receiver", "http://127.0.0.1:9", "--state", state]
    down = cli.invoke(main, args, env=moto_env(endpoint))
    assert down.exit_code == 1 and "spooled=1" in down.stdout, down.output
    listed = cli.invoke(main, ["spool", "list", "--state", state])
    assert f"scan-{ACCOUNT}-0001" in listed.stdout and "pending=1 rejected=0" in listed.stdout

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_port}"
    try:
        resent = cli.invoke(main, ["spool", "resend", "--receiver", url, "--state", state])
        assert resent.exit_code == 0 and resent.stdout.strip() == "resent=1 rejected=0 pending=0"
        assert [b["topologies"][0]["start_snapshot"] for b in _Receiver.bodies] == [True]

        _Receiver.status = 400  # a receiver that refuses the payload for good
        refused = cli.invoke(
            main, ["scan", "-c", config, "--receiver", url, "--state", state], env=moto_env(endpoint)
        )
        assert refused.exit_code == 1 and "rejected=1" in refused.stdout, refused.output
    finally:
        receiver.shutdown()
    listed = cli.invoke(main, ["spool", "list", "--state", state])
    assert "rejected (HTTP 400)" in listed.stdout and "pending=0 rejected=1" in listed.stdout
    dropped = cli.invoke(main, ["spool", "drop", "--rejected", "--state", state])
    assert dropped.stdout.strip() == "dropped=1"
    assert (
        cli.invoke(main, ["spool", "list", "--state", state]).stdout.strip() == "pending=0 rejected=0 bytes=0"
    )
