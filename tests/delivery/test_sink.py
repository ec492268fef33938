"""Sinks: HTTP delivery against a real local server, atomic files, and the durable spool."""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import os
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from engine.core.errors import DeliveryError
from engine.core.state import State
from engine.delivery.http import HttpSink
from engine.delivery.sinks import FileSink, is_rejection
from engine.delivery.spool import SpoolingSink
from tests.support import serve

API_KEY = "s3cr3t-Key/with+chars"
PAYLOAD = {"internalHostname": "aws-topology", "topologies": [], "health": [], "metrics": [], "events": {}}
HANG = "hang"


class Receiver:
    """Scripted responses (status, headers, body) or HANG, plus a record of every request."""

    def __init__(self) -> None:
        self.responses: deque = deque()
        self.requests: list[dict] = []
        self.release = threading.Event()
        self.base = ""


class Handler(BaseHTTPRequestHandler):
    receiver: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.receiver.requests.append({"path": self.path, "headers": self.headers, "body": body})
        response = self.receiver.responses.popleft() if self.receiver.responses else (200, {}, b"{}")
        if response == HANG:
            self.receiver.release.wait(10)
            return
        status, headers, text = response
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def do_GET(self) -> None:
        request = {"path": self.path, "headers": self.headers, "body": b"", "method": "GET"}
        self.receiver.requests.append(request)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def no_proxy(without_proxy: None) -> None:
    """Every test here talks to a local receiver."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with serve(Handler, receiver=rec) as url:
        rec.base = f"{url}/receiver/stsAgent/"
        yield rec
        rec.release.set()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_sink(url: str, sleeps: list[float], **kwargs: object) -> HttpSink:
    return HttpSink(url, API_KEY, sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]


def exception_texts(exc: BaseException) -> str:
    """Everything an exception can show: str, repr, fields and its whole chain."""
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current), repr(getattr(current, "fields", ""))]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def test_post_delivers_body_with_key_in_query_and_header(receiver: Receiver) -> None:
    sleeps: list[float] = []
    http_sink(receiver.base, sleeps).send(PAYLOAD, "scan-123456789012-0001")

    (request,) = receiver.requests
    assert request["path"] == "/receiver/stsAgent/intake/?api_key=s3cr3t-Key%2Fwith%2Bchars"
    assert request["headers"]["sts-api-key"] == API_KEY
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == PAYLOAD
    assert sleeps == []


def test_without_api_key_posts_no_key(receiver: Receiver) -> None:
    HttpSink(receiver.base, None).send(PAYLOAD, "scan")

    (request,) = receiver.requests
    assert request["path"] == "/receiver/stsAgent/intake/"
    assert "sts-api-key" not in request["headers"]


def test_503_is_retried_with_exponential_backoff_then_succeeds(receiver: Receiver) -> None:
    receiver.responses.extend([(503, {}, b"busy"), (503, {}, b"busy")])
    sleeps: list[float] = []

    http_sink(receiver.base, sleeps, backoff=1.0).send(PAYLOAD, "scan")

    assert sleeps == [1.0, 2.0]
    assert len(receiver.requests) == 3
    assert {r["body"] for r in receiver.requests} == {receiver.requests[0]["body"]}


def test_429_waits_for_retry_after(receiver: Receiver) -> None:
    receiver.responses.append((429, {"Retry-After": "7"}, b""))
    sleeps: list[float] = []

    http_sink(receiver.base, sleeps).send(PAYLOAD, "scan")

    assert sleeps == [7.0]
    assert len(receiver.requests) == 2


def test_retry_after_is_capped_at_60_seconds(receiver: Receiver) -> None:
    receiver.responses.append((503, {"Retry-After": "3600"}, b""))
    sleeps: list[float] = []

    http_sink(receiver.base, sleeps).send(PAYLOAD, "scan")

    assert sleeps == [60.0]


def test_400_fails_at_once(receiver: Receiver) -> None:
    receiver.responses.append((400, {}, b"bad payload"))
    sleeps: list[float] = []

    with pytest.raises(DeliveryError) as caught:
        http_sink(receiver.base, sleeps).send(PAYLOAD, "scan-123456789012-0001")

    assert sleeps == []
    assert len(receiver.requests) == 1
    assert caught.value.status == 400
    assert "HTTP 400" in str(caught.value) and "bad payload" in str(caught.value)
    assert caught.value.target == receiver.base + "intake/"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed(receiver: Receiver, status: int) -> None:
    """A followed 301/302/303 turns the POST into a body-less GET whose 200 would read as delivered."""
    receiver.responses.append((status, {"Location": "/elsewhere"}, b""))

    with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
        http_sink(receiver.base, []).send(PAYLOAD, "scan")

    assert len(receiver.requests) == 1
    assert caught.value.status == status and caught.value.attempts == 1


def test_408_is_retried(receiver: Receiver) -> None:
    receiver.responses.append((408, {}, b"request timeout"))
    sleeps: list[float] = []

    http_sink(receiver.base, sleeps).send(PAYLOAD, "scan")

    assert sleeps == [1.0]
    assert len(receiver.requests) == 2


def test_retry_after_as_http_date_is_honoured(receiver: Receiver) -> None:
    when = datetime.now(UTC) + timedelta(seconds=20)
    receiver.responses.append((503, {"Retry-After": email.utils.format_datetime(when, usegmt=True)}, b""))
    sleeps: list[float] = []

    http_sink(receiver.base, sleeps).send(PAYLOAD, "scan")

    assert len(sleeps) == 1 and 15.0 <= sleeps[0] <= 20.0


def test_successful_post_logs_no_key_even_at_debug(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        http_sink(receiver.base, []).send(PAYLOAD, "scan")

    assert "intake" in caplog.text  # urllib3's own request line is there, masked
    for secret in (API_KEY, "s3cr3t-Key%2F"):
        assert secret not in caplog.text


def test_connection_refused_raises_after_retries_without_leaking_key(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps: list[float] = []
    sink = http_sink(f"http://127.0.0.1:{closed_port}/receiver/stsAgent", sleeps, retries=5, backoff=10.0)

    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as caught:
        sink.send(PAYLOAD, "scan")

    assert sleeps == [10.0, 20.0, 40.0, 60.0, 60.0]
    assert caught.value.target == f"http://127.0.0.1:{closed_port}/receiver/stsAgent/intake/"
    assert "6 attempt" in str(caught.value)
    shown = exception_texts(caught.value) + caplog.text
    for secret in (API_KEY, "s3cr3t-Key%2F", "api_key=", "?"):
        assert secret not in shown
    assert "s3cr3t" not in repr(sink)


def test_key_echoed_by_receiver_is_redacted(receiver: Receiver) -> None:
    receiver.responses.append((401, {}, f"invalid key {API_KEY}".encode()))

    with pytest.raises(DeliveryError) as caught:
        http_sink(receiver.base, []).send(PAYLOAD, "scan")

    assert API_KEY not in exception_texts(caught.value)
    assert "***" in str(caught.value)


def test_timeout_is_retried(receiver: Receiver) -> None:
    receiver.responses.append(HANG)
    sleeps: list[float] = []

    http_sink(receiver.base, sleeps, timeout=0.2).send(PAYLOAD, "scan")

    assert sleeps == [1.0]
    assert len(receiver.requests) == 2


class Drip(BaseHTTPRequestHandler):
    """Answers 200 with a 200-byte body, one byte every 0.1 s (each read is quick; the whole takes 20 s);
    with `headers_too`, the status line and headers trickle the same way."""

    headers_too = False
    stop = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\nContent-Type: application/json\r\n\r\n"
        try:
            if self.headers_too:
                self._drip(head)
            else:
                self.wfile.write(head)
                self.wfile.flush()
            self._drip(b" " * 198 + b"{}")
        except OSError:
            pass

    def _drip(self, data: bytes) -> None:
        for i in range(len(data)):
            if self.stop.wait(0.1):
                return
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_dripping_receiver_is_cut_off_at_the_attempt_deadline(headers_too: bool) -> None:
    """The probe: a receiver dripping a byte now and then held one POST for 97 s; each read was in time."""
    handler = type("BoundDrip", (Drip,), {"headers_too": headers_too, "stop": threading.Event()})
    sleeps: list[float] = []
    with serve(handler) as base:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            http_sink(f"{base}/receiver/stsAgent", sleeps, retries=1, timeout=0.6).send(PAYLOAD, "scan")
        elapsed = time.monotonic() - started
        handler.stop.set()

    assert elapsed < 3.0
    assert "deadline" in str(caught.value)
    assert caught.value.attempts == 2 and caught.value.status is None
    assert sleeps == [1.0]


def test_proxy_from_environment_is_used_with_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None, str | None]] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Proxy-Authorization"], self.headers["sts-api-key"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve(Proxy) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.replace("http://", "http://ops:pa%40ss@"))
        monkeypatch.setenv("NO_PROXY", "localhost,.internal.example")
        sink = http_sink("http://receiver.example.invalid:7077/receiver/stsAgent", [])
        sink.send(PAYLOAD, "scan")

    path, auth, key = seen[0]
    query = "?api_key=s3cr3t-Key%2Fwith%2Bchars"
    assert path == f"http://receiver.example.invalid:7077/receiver/stsAgent/intake/{query}"
    assert auth == "Basic " + base64.b64encode(b"ops:pa@ss").decode()
    assert key == API_KEY
    assert sink.proxy == proxy and "pa%40ss" not in repr(sink) and "ops" not in repr(sink)


def test_no_proxy_excludes_the_receiver(
    receiver: Receiver, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.1")

    sink = http_sink(receiver.base, [])
    sink.send(PAYLOAD, "scan")

    assert sink.proxy is None
    assert len(receiver.requests) == 1


def test_receiver_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http"):
        HttpSink(f"file://{tmp_path}", API_KEY)


def test_repr_hides_api_key() -> None:
    assert API_KEY not in repr(HttpSink("https://sts.example.com/receiver/stsAgent", API_KEY))


def test_file_sink_writes_pretty_sorted_utf8_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "out" / "nested"
    payload = {"b": 1, "a": {"name": "café"}}

    sink = FileSink(directory)
    assert repr(sink) == f"FileSink({str(directory)!r})"
    with caplog.at_level(logging.DEBUG, logger="engine.delivery.sinks"):
        sink.send(payload, "scan-123456789012-0001")

    target = directory / "scan-123456789012-0001.json"
    text = target.read_text(encoding="utf-8")
    assert json.loads(text) == payload
    assert text == json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert "café" in text
    assert target.read_bytes() == '{\n  "a": {\n    "name": "café"\n  },\n  "b": 1\n}\n'.encode()
    assert os.listdir(directory) == ["scan-123456789012-0001.json"]
    assert [r.getMessage() for r in caplog.records if r.name == "engine.delivery.sinks"] == [
        f"event=sink.written path={target}"
    ]


def test_file_sink_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = FileSink(tmp_path)
    sink.send({"version": 1}, "scan")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(DeliveryError, match="No space left") as failed:
        sink.send({"version": 2}, "scan")
    assert failed.value.target == str(tmp_path / "scan.json")
    assert failed.value.problem == "scan: [Errno 28] No space left on device"

    assert json.loads((tmp_path / "scan.json").read_text(encoding="utf-8")) == {"version": 1}
    assert os.listdir(tmp_path) == ["scan.json"]


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_file_sink_refuses_path_like_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError) as refused:
        FileSink(tmp_path).send({}, name)
    assert str(refused.value) == f"payload name {name!r} is not a plain file name"
    assert list(tmp_path.iterdir()) == []


def test_file_sink_writes_beside_its_target_then_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[tuple[str, str]] = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: renamed.append((src, dst)) or replace(src, dst))
    FileSink(tmp_path).send({"k": 1}, "events-1-0001")
    [(src, dst)] = renamed
    assert Path(src).parent == tmp_path and Path(dst) == tmp_path / "events-1-0001.json"
    assert Path(src).name.startswith(".events-1-0001.") and src.endswith(".tmp")


def test_a_failure_without_an_http_status_is_not_a_rejection() -> None:
    assert is_rejection(DeliveryError(target="files", problem="disk full")) is False


class FakeSink:
    """Fails for the names in `failing`; records delivered names in order."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.failing = failing or set()
        self.sent: list[str] = []

    def send(self, payload: dict, name: str) -> None:
        if name in self.failing:
            raise DeliveryError(target="fake", problem="receiver down")
        self.sent.append(name)


def spooled_names(state: State) -> list[str]:
    return [name for _, name, _ in state.spool_items()]


def test_spooling_sink_spools_failure_and_keeps_order(tmp_path: Path) -> None:
    with State(tmp_path / "state.db") as state:
        inner = FakeSink(failing={"p2"})
        sink = SpoolingSink(inner, state)

        for name in ("p1", "p2", "p3"):
            sink.send({"n": name}, name)

        assert inner.sent == ["p1"]
        assert sink.spooled == 2
        assert spooled_names(state) == ["p2", "p3"]
        assert state.spool_items()[0][2] == {"n": "p2"}


def test_flush_resends_in_order_and_removes_only_delivered(tmp_path: Path) -> None:
    with State(tmp_path / "state.db") as state:
        for name in ("p1", "p2", "p3"):
            state.spool_put(name, {"n": name})
        inner = FakeSink(failing={"p2"})
        sink = SpoolingSink(inner, state)

        assert sink.flush_spool() == 1
        assert inner.sent == ["p1"]
        assert spooled_names(state) == ["p2", "p3"]

        inner.failing.clear()
        assert sink.flush_spool() == 2
        assert inner.sent == ["p1", "p2", "p3"]
        assert state.spool_items() == []


def test_next_run_delivers_spool_before_new_payloads(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with State(path) as state:
        down = FakeSink(failing={"old1", "old2"})
        SpoolingSink(down, state).send({}, "old1")
        SpoolingSink(down, state).send({}, "old2")
        assert spooled_names(state) == ["old1", "old2"]

    with State(path) as state:
        inner = FakeSink()
        sink = SpoolingSink(inner, state)
        sink.send({}, "new")

        assert inner.sent == ["old1", "old2", "new"]
        assert sink.spooled == 0
        assert state.spool_items() == []


def test_file_sink_makes_the_rename_durable_by_syncing_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done: list[str] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        done.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def recording_replace(src: str, dst: str) -> None:
        done.append("rename")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    FileSink(tmp_path).send({"a": 1}, "scan")

    assert done == ["fsync file", "rename", "fsync folder"]


def test_userinfo_in_the_receiver_url_is_sent_as_basic_auth_and_never_shown(receiver: Receiver) -> None:
    url = receiver.base.replace("http://", "http://ops:pa55-w0rd@")
    receiver.responses.append((400, {}, b"refused"))
    sink = http_sink(url, [])

    with pytest.raises(DeliveryError) as caught:
        sink.send(PAYLOAD, "scan")
    sink.send(PAYLOAD, "scan")

    expected = "Basic " + base64.b64encode(b"ops:pa55-w0rd").decode()
    assert [r["headers"]["Authorization"] for r in receiver.requests] == [expected, expected]
    assert "pa55-w0rd" not in exception_texts(caught.value) + repr(sink) + sink.target
    assert sink.target == receiver.base + "intake/"


def test_a_spent_delivery_budget_ends_the_attempts_of_a_hanging_receiver(receiver: Receiver) -> None:
    receiver.responses.extend([HANG] * 6)
    sink = HttpSink(receiver.base, API_KEY, retries=5, timeout=30.0, budget=1.0)
    started = time.monotonic()

    with pytest.raises(DeliveryError) as caught:
        sink.send(PAYLOAD, "scan")

    assert time.monotonic() - started < 15  # one attempt cut at the budget, not 6 x 30 s
    assert len(receiver.requests) == 1
    assert "delivery budget of 1 s spent" in str(caught.value) and caught.value.status is None
    with pytest.raises(DeliveryError, match="budget"):
        sink.send(PAYLOAD, "next")  # spent: no further attempt
    assert len(receiver.requests) == 1


def test_a_stop_wakes_a_hanging_attempt_and_its_retries(receiver: Receiver) -> None:
    receiver.responses.extend([HANG] * 6)
    stop = threading.Event()
    sink = HttpSink(receiver.base, API_KEY, retries=5, timeout=30.0, stop=stop)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()

    with pytest.raises(DeliveryError, match="stopped by a signal") as caught:
        sink.send(PAYLOAD, "scan")

    assert time.monotonic() - started < 15
    assert len(receiver.requests) == 1 and caught.value.status is None
