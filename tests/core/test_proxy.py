"""HTTP proxy: the config's `proxy` and HTTP_PROXY/NO_PROXY reach both the AWS calls and the receiver.

A small forwarding proxy runs in this process and logs every request it relays; moto and a stub receiver
are the targets (plain http, so the proxy sees each request line; https would be CONNECT tunnels).
"""

from __future__ import annotations

import http.client
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import yaml
from click.testing import CliRunner

from engine import cli
from engine.core.proxy import proxy_for, resolve_proxies
from engine.delivery.http import HttpSink
from tests.support import ROLE, live_aws, moto_server, serve

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "NO_PROXY")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "_logging", lambda interactive: None)


class _Relay(BaseHTTPRequestHandler):
    """Forwards an absolute-URI request to its host and logs `METHOD URL OPERATION` (the AWS operation from
    the X-Amz-Target header or the query protocol's Action, else `-`)."""

    log_lines: list[str]

    def _relay(self) -> None:
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = dict(parse_qsl(body.decode("utf-8", "replace"))).get("Action")
        operation = self.headers.get("X-Amz-Target") or action or "-"
        self.log_lines.append(f"{self.command} {self.path} {operation}")
        hop = ("proxy-connection", "connection")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
        upstream = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=30)
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream.request(self.command, path or "/", body=body or None, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

    def log_message(self, *_: Any) -> None:
        pass


class _Receiver(BaseHTTPRequestHandler):
    received: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: Any) -> None:
        pass


def _conf(tmp_path: Path, **init: Any) -> str:
    data = {
        "init_config": {"external_id": "uniquesecret!1", **init},
        "instances": [{"role_arn": ROLE, "regions": ["us-east-1"], "apis_to_run": ["sqs"]}],
    }
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _scan(tmp_path: Path, conf: str, receiver: str) -> Any:
    args = ["scan", "-c", conf, "--receiver", receiver, "--state", str(tmp_path / "s.sqlite")]
    return CliRunner().invoke(cli.main, args)


@pytest.mark.live
def test_config_proxy_carries_the_aws_calls_and_the_receiver(tmp_path: Path) -> None:
    log: list[str] = []
    received: list[str] = []
    with (
        moto_server() as endpoint, live_aws(endpoint),
        serve(_Relay, log_lines=log) as proxy, serve(_Receiver, received=received) as receiver,
    ):  # fmt: skip
        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
        sqs.create_queue(QueueName="via-proxy")
        result = _scan(tmp_path, _conf(tmp_path, proxy={"http": proxy}), receiver)
    assert result.exit_code == 0, result.output
    assert "status=complete components=1" in result.stdout
    operations = {line.split()[2] for line in log if line.split()[1].startswith(endpoint)}
    assert {"AssumeRole", "AmazonSQS.ListQueues", "AmazonSQS.GetQueueAttributes"} <= operations
    assert f"POST {receiver}/intake/ -" in log
    assert received and all(path == "/intake/" for path in received)


@pytest.mark.live
def test_no_proxy_keeps_the_calls_direct(tmp_path: Path) -> None:
    log: list[str] = []
    received: list[str] = []
    with (
        moto_server() as endpoint, live_aws(endpoint),
        serve(_Relay, log_lines=log) as proxy, serve(_Receiver, received=received) as receiver,
    ):  # fmt: skip
        conf = _conf(tmp_path, proxy={"http": proxy, "no_proxy": ["127.0.0.1"]})
        result = _scan(tmp_path, conf, receiver)
    assert result.exit_code == 0, result.output
    assert log == [] and received


@pytest.mark.live
def test_http_proxy_environment_variable_carries_the_aws_calls_and_the_receiver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    received: list[str] = []
    with (
        moto_server() as endpoint, live_aws(endpoint),
        serve(_Relay, log_lines=log) as proxy, serve(_Receiver, received=received) as receiver,
    ):  # fmt: skip
        monkeypatch.setenv("HTTP_PROXY", proxy)
        result = _scan(tmp_path, _conf(tmp_path), receiver)
        monkeypatch.delenv("HTTP_PROXY")
    assert result.exit_code == 0, result.output
    operations = {line.split()[2] for line in log if line.split()[1].startswith(endpoint)}
    assert {"AssumeRole", "AmazonSQS.ListQueues"} <= operations
    assert f"POST {receiver}/intake/ -" in log


def test_environment_wins_over_the_config_and_no_proxy_lists_merge() -> None:
    environ = {"HTTPS_PROXY": "http://env:3128", "NO_PROXY": "internal.example"}
    configured = {"https": "http://conf:3128", "http": "http://conf:8080", "no_proxy": [".corp.example"]}
    proxies = resolve_proxies(configured, environ)
    assert proxies == {
        "https": "http://env:3128", "http": "http://conf:8080", "no": "internal.example,.corp.example",
    }  # fmt: skip
    assert proxy_for("https://sts.eu-west-1.amazonaws.com/", proxies) == "http://env:3128"
    assert proxy_for("http://receiver.corp.example/stsAgent", proxies) is None
    assert proxy_for("https://internal.example/", proxies) is None
    assert proxy_for("ftp://x.example/", proxies) is None
    assert resolve_proxies(None, {}) == {}


def test_a_proxy_without_scheme_is_taken_as_http() -> None:
    assert proxy_for("https://sts.amazonaws.com", {"https": "proxy.corp:3128"}) == "http://proxy.corp:3128"


def test_sink_takes_the_given_proxies_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    sink = HttpSink(
        "https://sts.example.com/receiver/stsAgent", "key", proxies={"https": "http://ops:pw@conf:3128"}
    )
    assert sink.proxy == "http://conf:3128" and "pw" not in repr(sink)
    assert HttpSink("https://sts.example.com/receiver/stsAgent", "key").proxy == "http://env-proxy:3128"
