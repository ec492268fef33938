"""Against a live in-process moto server: what cassettes cannot show (IAM denials, concurrency)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import boto3
import moto.settings
import pytest
from click.testing import CliRunner
from moto.core.authorization import ActionAuthenticatorMixin

from engine.aws.sessions import NO_EXTERNAL_ID, assume
from engine.cli import main
from engine.core.config import Config
from engine.core.phase import Limits
from engine.language.loader import load_mappings
from engine.scan.full_scan import scan
from tests.support import ACCOUNT, ROLE, ListSink, make_config

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
        f"instances: [{{role_arn: '{role}', regions: [eu-west-1, us-east-1], apis_to_run: [ec2, sqs]}}]\n"
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
    payloads = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").rglob("scan-*.json"))]
    topologies = [t for p in payloads for t in p["topologies"]]
    assert topologies[0]["start_snapshot"] is True
    assert all(t["stop_snapshot"] is False for t in topologies)
    types = {c["type"]["name"] for t in topologies for c in t["components"]}
    assert "aws.sqs.queue" not in types and "aws.ec2.instance" in types
    assert f"gap='role {role} needs sqs:ListQueues (2x)'" in caplog.text


def test_parallel_scan_gives_the_same_snapshot_as_a_sequential_one(live_env):
    endpoint, _ = live_env
    one, eight = ListSink(), ListSink()
    scan(make_config(), load_mappings(), one, limits=Limits(workers=1), endpoint_url=endpoint)
    scan(make_config(), load_mappings(), eight, limits=Limits(workers=8), endpoint_url=endpoint)

    assert one.components().keys() == eight.components().keys()
    assert one.relations() == eight.relations()
    assert len(one.components()) >= 30


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict, dict]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_scan_posts_every_payload_to_the_receiver_without_leaking_the_key(live_env, tmp_path, monkeypatch):
    _, ids = live_env
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    monkeypatch.setenv("STS_API_KEY", "k3y-SECRET-v4lue")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: live-test}\n"
        f"instances: [{{role_arn: '{ROLE}', regions: [eu-west-1]}}]\n"
    )
    url = f"http://127.0.0.1:{receiver.server_port}/receiver/stsAgent"
    try:
        result = CliRunner().invoke(
            main,
            [
                "scan",
                "-c",
                str(conf),
                "--receiver",
                url,
                "--state",
                str(tmp_path / "s.sqlite"),
                "--workers",
                "2",
            ],
        )
    finally:
        receiver.shutdown()

    assert result.exit_code == 0, result.output
    assert "k3y-SECRET-v4lue" not in result.output
    paths = {path for path, _, _ in _Receiver.received}
    assert paths == {"/receiver/stsAgent/intake/?api_key=k3y-SECRET-v4lue"}
    components = {
        c["externalId"] for _, _, body in _Receiver.received for c in body["topologies"][0]["components"]
    }
    assert {ids["instance_ids"]["web-1"], ids["vpc_id"]} <= components
    assert not any(i == ids["instance_ids"]["ops-1"] for i in components)  # us-east-1 was not configured


def test_assume_role_sends_the_external_id_and_the_magic_value_disables_it(live_env):
    endpoint, _ = live_env
    sent: list[dict] = []
    base = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    base.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: sent.append(dict(params))
    )
    instance = make_config().instances[0]

    assume(make_config(), instance, base=base, endpoint_url=endpoint)
    unsafe = Config(
        access_key_id=None, secret_access_key=None, external_id=NO_EXTERNAL_ID, instances=(instance,)
    )
    assume(unsafe, instance, base=base, endpoint_url=endpoint)

    assert sent == [
        {"RoleArn": ROLE, "RoleSessionName": "aws-topology", "ExternalId": "test-external-id"},
        {"RoleArn": ROLE, "RoleSessionName": "aws-topology"},
    ]
