"""A cron job that can be trusted: bad state, busy state, empty plans and broken endpoints give one line and
the right exit code, before any payload is sent and never as a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner, Result

from engine.aws.sessions import Account, client_config
from engine.cli import EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_LOCKED, main
from engine.core.state import State
from tests.aws.test_faults import run_unit
from tests.support import ACCOUNT, ROLE

CONF = (
    "init_config: {aws_access_key_id: AKIAEXAMPLE, aws_secret_access_key: s3cr3t, external_id: ext-id}\n"
    f"instances: [{{role_arn: '{ROLE}', regions: [eu-west-1], apis_to_run: [sqs]}}]\n"
)


def scan(
    tmp_path: Path,
    state: Path | str,
    conf: str = CONF,
    endpoint: str = "http://127.0.0.1:9",
    command: str = "scan",
) -> Result:
    path = tmp_path / "conf.yaml"
    path.write_text(conf)
    out = tmp_path / "out"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    args = [command, "-c", str(path), "--out", str(out), "--state", str(state)]
    return CliRunner().invoke(main, args, env=env)


def one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert isinstance(result.exception, SystemExit)  # an exit, not an uncaught exception
    return lines[0]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p.write_bytes(b"this is not sqlite" * 100), "not a usable SQLite database"),
        (lambda p: p.mkdir(), "is a directory, not a file"),
        (lambda p: (p.parent / "parent").write_text("x"), "is a file, not a directory"),
    ],
    ids=["corrupt", "directory", "parent-is-a-file"],
)
def test_an_unusable_state_is_bad_input_before_any_aws_call(tmp_path, make, problem):
    state = tmp_path / "state.sqlite"
    make(state)
    target = tmp_path / "parent" / "state.sqlite" if problem.startswith("is a file") else state

    result = scan(tmp_path, target)

    assert result.exit_code == EXIT_BAD_INPUT
    assert problem in one_error_line(result)
    assert not (tmp_path / "out").exists()  # nothing was scanned or written


def test_a_read_only_state_is_bad_input():
    """Run by a user who cannot write the state (as root: `nobody`, since root writes read-only files)."""
    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        where.chmod(0o755)
        state, conf = where / "state.sqlite", where / "conf.yaml"
        State(state).check().close()
        state.chmod(0o444)
        conf.write_text(CONF)
        conf.chmod(0o644)
        user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
        exe = Path(sys.executable).parent / "aws-topology"
        args = ["scan", "-c", str(conf), "--out", str(where / "out"), "--state", str(state)]
        env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_CONFIG_FILE": "/dev/null"}
        done = subprocess.run([*user, str(exe), *args], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: state ") and "cannot be written" in line


def test_a_second_run_on_a_locked_state_names_the_holder_and_exits_locked(tmp_path):
    state = tmp_path / "state.sqlite"
    with State(state) as holder:
        holder.check().lock()
        result = scan(tmp_path, state)

    assert result.exit_code == EXIT_LOCKED
    line = one_error_line(result)
    assert "is in use by another run (pid " in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["status"], ["spool", "list"]], ids=["status", "spool-list"])
def test_read_only_commands_answer_while_a_run_holds_the_lock(tmp_path, command):
    state = tmp_path / "state.sqlite"
    with State(state) as holder:
        holder.check().lock()
        holder.record_run(ACCOUNT, "scan", 0.0, 1.0, True, {"components": 3})
        result = CliRunner().invoke(main, [*command, "--state", str(state)])

    assert result.exit_code == 0, result.output
    assert "pending=0 rejected=0" in result.stdout


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    state = tmp_path / "state.sqlite"
    with State(state) as first:
        first.check().lock()
    with State(state) as second:
        second.check().lock()  # no Locked raised


@pytest.mark.parametrize(
    "instance",
    [
        "regions: [eu-west-1], apis_to_run: []",
        "regions: [eu-west-1], apis_to_run: [cloudfront]",
        "regions: [global], apis_to_run: [sqs]",
    ],
)
def test_an_instance_that_plans_nothing_is_refused_instead_of_closing_an_empty_snapshot(tmp_path, instance):
    conf = CONF.replace("regions: [eu-west-1], apis_to_run: [sqs]", instance)
    result = scan(tmp_path, tmp_path / "state.sqlite", conf)

    assert result.exit_code == EXIT_BAD_INPUT
    assert "select no resource type; an empty snapshot would delete the account's whole topology" in (
        one_error_line(result)
    )


@pytest.mark.parametrize("command", ["events", "flowlogs"])
def test_phases_that_send_no_snapshot_accept_an_instance_that_plans_nothing(tmp_path, command):
    conf = CONF.replace("apis_to_run: [sqs]", "apis_to_run: []")
    result = scan(tmp_path, tmp_path / "state.sqlite", conf, command=command)

    assert result.exit_code == EXIT_INCOMPLETE, result.output  # the endpoint is down, not bad input
    assert isinstance(result.exception, SystemExit)
    assert f"{command} account={ACCOUNT} " in result.stdout and "select no resource type" not in result.stderr


def test_an_endpoint_that_refuses_connections_is_an_outage_not_bad_input(tmp_path):
    result = scan(tmp_path, tmp_path / "state.sqlite", endpoint="http://127.0.0.1:9")

    assert result.exit_code == EXIT_INCOMPLETE, result.output
    assert "status=unreachable" in result.stdout
    assert "cannot reach AWS" in result.stdout
    assert "s3cr3t" not in result.output + result.stderr


class _Captive(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html><body><h1>Please log in to the hotel wifi</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def captive_portal() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Captive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_an_html_answer_from_a_proxy_is_reported_in_one_line_not_a_traceback(tmp_path, captive_portal):
    result = scan(tmp_path, tmp_path / "state.sqlite", endpoint=captive_portal)

    assert result.exit_code == EXIT_INCOMPLETE, result.output
    assert "not an AWS response" in result.stdout
    assert isinstance(result.exception, SystemExit)  # an exit, not an uncaught exception


@pytest.mark.parametrize("code", ["ExpiredToken", "SignatureDoesNotMatch", "InvalidClientTokenId"])
def test_rejected_credentials_fail_the_unit_and_are_not_a_permission_gap(code):
    session = boto3.Session(aws_access_key_id="stub", aws_secret_access_key="stub", region_name="eu-west-1")
    account = Account(id=ACCOUNT, role_arn=ROLE, session=session, config=client_config(1))
    with Stubber(account.client("sqs", "eu-west-1")) as stub:
        stub.add_client_error("list_queues", service_error_code=code, http_status_code=403)
        result = run_unit(account, "sqs.queue")

    assert result.status == "failed" and result.gaps == []
    assert f"AWS rejected the credentials ({code})" in result.error


def test_a_state_that_fails_mid_run_is_one_error_line_and_exit_1(tmp_path, monkeypatch):
    from engine.core.errors import StateError
    from engine.core.state import State

    def locked(self, *args, **kwargs):
        raise StateError(path=str(self.path), problem="database is locked: another process holds it")

    monkeypatch.setattr(State, "record_run", locked)
    result = scan(tmp_path, tmp_path / "state.sqlite", command="events", endpoint="http://127.0.0.1:9")

    assert result.exit_code == EXIT_INCOMPLETE, result.output
    assert isinstance(result.exception, SystemExit)
    assert "error: state " in result.stderr and "database is locked" in result.stderr
