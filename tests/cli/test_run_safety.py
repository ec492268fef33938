"""Against a live moto server: signals stop a scan within seconds and leave nothing that reads as complete;
a type denied for good carries its last complete result forward instead of freezing the snapshot; two runs
into one --out folder never mix."""

from __future__ import annotations

import base64
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
from typing import Any, ClassVar

import boto3
import moto.settings
import pytest
from click.testing import CliRunner
from moto.core.authorization import ActionAuthenticatorMixin

from engine.cli import main
from engine.core.state import State
from tests.support import ACCOUNT, moto_env, serve

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


# --- every phase honours a stop, fails per account, and delivers within bounds ---------------------------

WAIT_IN_PHASE = """
import sys, time
from engine import cli, run
real = getattr(run, sys.argv[1])
def waiting(*args, **kwargs):  # the phase is under way when the signal comes; then the real one runs
    fetcher = args[5]
    print("event=phase.waiting", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 20
    while not fetcher.stopped and time.monotonic() < deadline:
        time.sleep(0.05)
    return real(*args, **kwargs)
setattr(run, sys.argv[1], waiting)
del sys.argv[1]
cli.main()
"""


def start(args: list[str], env: dict[str, str], patched: str | None = None) -> subprocess.Popen:
    """The CLI as a real process: the installed binary, or with `patched` (a phase of engine.run) waiting."""
    exe = Path(sys.executable).parent / "aws-topology"
    command = [sys.executable, "-c", WAIT_IN_PHASE, patched] if patched else [str(exe)]
    return subprocess.Popen(
        [*command, *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("command", "phase", "sig"),
    [("events", "apply_events", signal.SIGTERM), ("flowlogs", "apply_flowlogs", signal.SIGINT)],
    ids=["events-SIGTERM", "flowlogs-SIGINT"],
)
def test_a_signal_in_the_events_or_flowlog_phase_exits_128_plus_signal_and_records_the_run_incomplete(
    endpoint, tmp_path, command, phase, sig
):
    state = tmp_path / "state.sqlite"
    args = [command, "-c", str(conf(tmp_path)), "--out", str(tmp_path / "out"), "--state", str(state)]
    process = start(args, moto_env(endpoint), patched=phase)
    assert process.stderr is not None
    for line in process.stderr:
        if "event=phase.waiting" in line:
            break
    process.send_signal(sig)
    _stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    assert f"stopped by {sig.name}; the run is recorded as incomplete" in stderr
    with State(state) as history:
        run = history.last_run(ACCOUNT, command)
    assert run is not None and run["complete"] is False and run["summary"]["interrupted"] is True
    status = CliRunner().invoke(main, ["status", "--state", str(state)])
    assert (
        f"  {command:<8} INCOMPLETE" in status.stdout
        and "error: Interrupted: interrupted before" in status.stdout
    )


OTHER = "210987654321"


def _first_account_fails(endpoint, tmp_path, monkeypatch, command: str, module: Any, name: str):
    """Run `command` for two accounts with `module.name` raising for the first; (result, its run, the
    other account's run)."""
    path = tmp_path / "two.yaml"
    path.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: ext-id}\n"
        "instances:\n"
        f"- {{role_arn: 'arn:aws:iam::{ACCOUNT}:role/R', regions: [{REGION}], apis_to_run: ['ec2|vpcs']}}\n"
        f"- {{role_arn: 'arn:aws:iam::{OTHER}:role/R', regions: [{REGION}], apis_to_run: ['ec2|vpcs']}}\n"
    )
    real = getattr(module, name)

    def first_fails(first, instance, *args, **kwargs):
        if instance.account_id == ACCOUNT:
            raise RuntimeError("boom")
        return real(first, instance, *args, **kwargs)

    monkeypatch.setattr(module, name, first_fails)
    state = tmp_path / "s.sqlite"
    args = [command, "-c", str(path), "--out", str(tmp_path / "out"), "--state", str(state)]
    result = CliRunner().invoke(main, args, env=moto_env(endpoint))
    with State(state) as history:
        return result, history.last_run(ACCOUNT, command), history.last_run(OTHER, command)


def test_a_failing_account_is_recorded_and_the_next_account_still_runs(endpoint, tmp_path, monkeypatch):
    from engine import run

    result, failed, next_one = _first_account_fails(
        endpoint, tmp_path, monkeypatch, "events", run, "apply_events"
    )

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert failed is not None and failed["complete"] is False
    assert failed["summary"]["error"] == "RuntimeError: boom"
    assert next_one is not None  # the second account's run happened
    assert f"events account={OTHER} " in result.stdout


class Recorder(BaseHTTPRequestHandler):
    """Answers POSTs from `answers` (then 200); an answer 0 hangs until `release`. Records every request."""

    answers: ClassVar[list[int]]
    requests: ClassVar[list[dict]]
    release: ClassVar[threading.Event]
    arrived: ClassVar[threading.Event]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"headers": self.headers, "body": body})
        self.arrived.set()
        status = self.answers.pop(0) if self.answers else 200
        if status == 0:
            self.release.wait(30)
            return
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[Recorder]]]:
    handler = type("Bound", (Recorder,), {
        "answers": [], "requests": [], "release": threading.Event(), "arrived": threading.Event(),
    })  # fmt: skip
    with serve(handler) as url:
        yield url, handler
        handler.release.set()


DELTA = {"internalHostname": "aws-topology", "events": {}, "health": [], "metrics": [], "topologies": [
    {"start_snapshot": False, "stop_snapshot": False, "instance": {"type": "aws-v2", "url": ACCOUNT},
     "components": [], "relations": [], "delete_ids": ["x"]},
]}  # fmt: skip


def spooled_state(path: Path, pending: int = 1, rejected: int = 0) -> Path:
    with State(path) as state:
        state.check()
        for n in range(pending):
            state.spool_put(f"events-{ACCOUNT}-{n + 1:04d}", DELTA)
        for n in range(rejected):
            state.spool_put(f"events-{ACCOUNT}-{n + 90:04d}", DELTA, status="rejected", http_status=400)
    return path


def flowlogs(endpoint: str, tmp_path: Path, url: str, state: Path, *extra: str) -> object:
    args = ["flowlogs", "-c", str(conf(tmp_path)), "--receiver", url, "--state", str(state), *extra]
    return CliRunner().invoke(main, args, env=moto_env(endpoint))


def test_a_phase_run_alone_resends_the_spool_first_and_writes_its_metrics(endpoint, tmp_path, recorder):
    url, receiver = recorder
    state = spooled_state(tmp_path / "s.sqlite", pending=2)

    result = flowlogs(endpoint, tmp_path, url, state)

    assert result.exit_code == 0, result.output
    assert len(receiver.requests) == 2
    with State(state) as history:
        assert history.spool_count() == 0
    metrics = (tmp_path / "s.flowlogs.prom").read_text()
    assert f'aws_topology_flowlogs_complete{{account="{ACCOUNT}"}} 1' in metrics
    assert f'aws_topology_flowlogs_objects{{account="{ACCOUNT}"}} 0' in metrics
    calls = [line for line in metrics.splitlines() if line.startswith("aws_topology_flowlogs_api_calls{")]
    assert calls and all(float(line.split()[-1]) >= 1 for line in calls), metrics  # where the minute goes
    assert "\naws_topology_flowlogs_run_seconds " in metrics


def test_every_run_exits_1_while_the_spool_holds_rejected_or_pending_entries(endpoint, tmp_path, recorder):
    url, _receiver = recorder
    state = spooled_state(tmp_path / "s.sqlite", pending=0, rejected=1)

    for _ in range(2):
        result = flowlogs(endpoint, tmp_path, url, state)
        assert result.exit_code == 1, result.output
        assert "delivery rejected_in_spool=1" in result.stdout

    down = flowlogs(
        endpoint,
        tmp_path,
        "http://127.0.0.1:9",
        spooled_state(tmp_path / "d.sqlite"),
        "--delivery-budget",
        "1",
    )
    assert down.exit_code == 1 and "pending=1" in down.stdout, down.output


def test_a_hanging_receiver_gets_at_most_the_delivery_budget_then_the_rest_is_spooled(
    endpoint, tmp_path, recorder
):
    url, receiver = recorder
    receiver.answers.extend([0] * 10)
    state = spooled_state(tmp_path / "s.sqlite", pending=3)
    started = time.monotonic()

    result = flowlogs(endpoint, tmp_path, url, state, "--delivery-budget", "2")

    assert time.monotonic() - started < 30  # not 3 payloads x 6 attempts x 30 s
    assert result.exit_code == 1 and "pending=3" in result.stdout, result.output
    assert len(receiver.requests) == 1


def test_sigterm_while_the_receiver_hangs_is_honoured_at_once_and_keeps_the_payloads(tmp_path, recorder):
    url, receiver = recorder
    receiver.answers.extend([0] * 10)
    state = spooled_state(tmp_path / "s.sqlite", pending=2)
    args = ["flowlogs", "-c", str(conf(tmp_path)), "--receiver", url, "--state", str(state)]
    process = start(args, {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert receiver.arrived.wait(30), process.communicate()
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert time.monotonic() - sent < 10  # not after 200 s of retries
    assert "Traceback" not in stderr
    with State(state) as history:
        assert history.spool_count() == 2  # durable, re-sent by the next run


@pytest.mark.parametrize(("answer", "delivered"), [(200, True), (400, False)])
def test_a_scan_records_whether_every_payload_reached_the_receiver(
    endpoint, tmp_path, recorder, answer, delivered
):
    url, receiver = recorder
    receiver.answers.extend([answer] * 10)
    state = tmp_path / "s.sqlite"
    args = ["scan", "-c", str(conf(tmp_path, apis="['ec2|vpcs']")), "--receiver", url, "--state", str(state)]

    result = CliRunner().invoke(main, args, env=moto_env(endpoint))

    assert result.exit_code == (0 if delivered else 1), result.output
    with State(state) as history:
        run = history.last_run(ACCOUNT, "scan")
    assert run is not None and run["summary"]["delivered"] is delivered
    assert run["complete"] is delivered and run["summary"]["snapshot_closed"] is delivered


def test_a_receiver_password_is_sent_as_basic_auth_and_never_printed(endpoint, tmp_path, recorder):
    url, receiver = recorder
    receiver.answers.append(500)  # one retry: its log line names the target
    secret_url = url.replace("http://", "http://ops:pa55-w0rd@")
    args = ["scan", "-c", str(conf(tmp_path, apis="['ec2|vpcs']")), "--receiver", secret_url,
            "--state", str(tmp_path / "s.sqlite")]  # fmt: skip
    process = start(args, moto_env(endpoint))
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert "event=sink.retry" in stderr and f"to={url}" in stdout
    assert "pa55-w0rd" not in stdout + stderr
    expected = "Basic " + base64.b64encode(b"ops:pa55-w0rd").decode()
    assert {r["headers"]["Authorization"] for r in receiver.requests} == {expected}


def test_a_scan_closes_every_spill_file(endpoint, tmp_path, monkeypatch):
    from engine.scan import full_scan as scan_module

    made: list[scan_module.Spill] = []

    class Recorded(scan_module.Spill):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(scan_module, "Spill", Recorded)
    assert scan(endpoint, tmp_path, "StackStateAwsIntegrationRole", tmp_path / "out").exit_code == 0

    assert made and all(spill._file.closed for spill in made)


def test_a_client_at_the_address_of_a_collected_one_is_hooked_too(monkeypatch):
    """`id()` of a garbage-collected client is reused: the Fetcher must mark clients, not addresses."""
    from engine.aws import fetch
    from engine.language.loader import Call

    class Client:
        def __init__(self) -> None:
            self.hooked: list[str] = []
            self.meta = type("Meta", (), {"events": type("Events", (), {"register": self._register})()})()

        def _register(self, event: str, handler: object) -> None:
            self.hooked.append(event)

    clients = [Client(), Client()]
    account = type(
        "Account", (), {"id": ACCOUNT, "client": lambda self, service, region, operation: clients.pop(0)}
    )()
    monkeypatch.setattr(fetch, "id", lambda obj: 4242, raising=False)  # the second client reuses the address
    fetcher = fetch.Fetcher()
    call = Call(operation="ListQueues", method="list_queues", iam_action="sqs:ListQueues")

    first, second = (fetcher._client(account, REGION, "sqs", call) for _ in range(2))

    assert first.hooked == second.hooked == ["before-call", "needs-retry"]


def test_a_failing_account_scan_is_recorded_and_the_other_account_still_scans(
    endpoint, tmp_path, monkeypatch
):
    from engine.scan import full_scan as scan_module

    result, failed, next_one = _first_account_fails(
        endpoint, tmp_path, monkeypatch, "scan", scan_module, "deliver_account"
    )

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert failed is not None and failed["complete"] is False
    assert failed["summary"]["error"] == "RuntimeError: boom"
    assert next_one is not None and next_one["complete"] is True
