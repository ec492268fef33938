"""HttpSink against real local sockets: its exact wire form, texts and accounting, and its deadline."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import pytest

from engine.core.errors import DeliveryError
from engine.delivery import http
from engine.delivery.http import HttpSink
from tests.support import serve

API_KEY = "s3cr3t-Key/with+chars"
QUOTED_KEY = "s3cr3t-Key%2Fwith%2Bchars"


@pytest.fixture(autouse=True)
def no_proxy(without_proxy: None) -> None:
    """Every test here talks to a local receiver."""


class Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, headers, body) of `answers` (200 with no body when none is
    left) and records (request line, header items, client port) in `seen`; HTTP/1.1, so the client keeps its
    connection. An answer "hang" holds the request until `release` is set, "drip" sends a byte every 0.1 s
    until then; `hooks` run on each request."""

    protocol_version = "HTTP/1.1"
    answers: list
    seen: list
    release: threading.Event
    hooks: list  # called with no argument on each request, before the answer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.requestline, self.headers.items(), self.client_address[1]))
        for hook in self.hooks:
            hook()
        answer = self.answers.pop(0) if self.answers else (200, {}, b"")
        if answer == "hang":
            self.release.wait(10)
            self.close_connection = True
            return
        if answer == "drip":  # 200 with a 100-byte body, a byte every 0.1 s
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            while not self.release.wait(0.1):
                self.wfile.write(b" ")
                self.wfile.flush()
            return
        status, headers, body = answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Receiver(SimpleNamespace):
    url: str
    answers: list
    seen: list
    release: threading.Event
    hooks: list


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(answers=[], seen=[], release=threading.Event(), hooks=[])
    with serve(
        Scripted, answers=state.answers, seen=state.seen, release=state.release, hooks=state.hooks
    ) as url:
        state.url = url
        yield state
        state.release.set()


def failure(sink: HttpSink, name: str = "scan") -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        sink.send({"k": 1}, name)
    return caught.value


def test_the_request_line_and_headers_are_exactly_these(receiver: Receiver) -> None:
    HttpSink(f"{receiver.url}/receiver/stsAgent", API_KEY, proxies={}).send({"k": 1}, "scan")

    [(line, headers, _)] = receiver.seen
    assert line == f"POST /receiver/stsAgent/intake/?api_key={QUOTED_KEY} HTTP/1.1"
    assert headers == [
        ("Host", receiver.url.removeprefix("http://")),
        ("Accept-Encoding", "identity"),
        ("Content-Length", "7"),
        ("Content-Type", "application/json"),
        ("User-Agent", "aws-topology"),
        ("sts-api-key", API_KEY),
    ]


def test_the_key_echoed_raw_or_url_encoded_is_masked_in_the_problem(receiver: Receiver) -> None:
    echoed = f"no route for /intake/?api_key={QUOTED_KEY} (key {API_KEY})".encode()
    receiver.answers.append((404, {}, echoed))

    error = failure(HttpSink(receiver.url, API_KEY, proxies={}))

    assert (
        error.problem
        == "scan: HTTP 404 Not Found: no route for /intake/?api_key=*** (key ***) (after 1 attempt(s))"
    )
    assert (error.status, error.attempts, error.target) == (404, 1, f"{receiver.url}/intake/")


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (400, b"", "HTTP 400 Bad Request"),
        (400, b"  bad \xff byte \n", "HTTP 400 Bad Request: bad \ufffd byte"),
        (499, b"", "HTTP 499"),  # a status without a reason phrase
        (499, b"why", "HTTP 499: why"),
        (300, b"", "HTTP 300 Multiple Choices"),  # not 2xx, so not delivered
        (422, b"x" * 299 + b"yz", "HTTP 422 Unprocessable Entity: " + "x" * 299 + "y"),
    ],
)
def test_a_refusal_shows_the_status_its_reason_and_the_start_of_the_answer(
    receiver: Receiver, status: int, body: bytes, problem: str
) -> None:
    receiver.answers.append((status, {}, body))

    error = failure(HttpSink(receiver.url, API_KEY, proxies={}))

    assert error.problem == f"scan: {problem} (after 1 attempt(s))"
    assert error.status == status and len(receiver.seen) == 1


def test_a_delivery_logs_one_sent_line_at_debug(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    sink = HttpSink(receiver.url, API_KEY, proxies={})
    with caplog.at_level(logging.DEBUG, logger="engine.delivery.http"):
        sink.send({"k": 1}, "scan-1")

    lines = [r.getMessage() for r in caplog.records if r.name == "engine.delivery.http"]
    assert lines == [f"event=sink.sent name=scan-1 target={receiver.url}/intake/ status=200"]


def test_413_with_retry_after_is_retried_after_that_wait(receiver: Receiver) -> None:
    """urllib3's policy: 413, 429 and 503 are retried when they say when (RFC 9110); 413 only then."""
    receiver.answers.append((413, {"Retry-After": "3"}, b"later"))
    sleeps: list[float] = []

    HttpSink(receiver.url, API_KEY, sleep=sleeps.append, proxies={}).send({"k": 1}, "scan")

    assert sleeps == [3.0] and len(receiver.seen) == 2


@pytest.mark.parametrize(
    ("retry_after", "slept"),
    [
        ("soon", 2.5),  # not a number nor a date: the backoff
        ("Sat, 01 Jan 10000 00:00:00 GMT", 2.5),  # a year datetime refuses (ValueError)
        ("Mon, 01 Jan 99999999999 00:00:00 GMT", 2.5),  # a year too large for C (OverflowError)
        ("0", 0.0),  # at once, not the backoff
    ],
)
def test_an_unreadable_retry_after_falls_back_to_the_backoff(
    receiver: Receiver, retry_after: str, slept: float
) -> None:
    receiver.answers.append((503, {"Retry-After": retry_after}, b""))
    sleeps: list[float] = []

    HttpSink(receiver.url, API_KEY, backoff=2.5, sleep=sleeps.append, proxies={}).send({"k": 1}, "scan")

    assert sleeps == [slept] and len(receiver.seen) == 2


def test_an_unusable_proxy_setting_fails_every_send_without_a_request() -> None:
    sink = HttpSink(
        "http://127.0.0.1:9/r", API_KEY, retries=0, proxies={"http": "socks5://proxy.example:1080"}
    )

    error = failure(sink, "scan-7")

    assert error.fields == {
        "target": "http://127.0.0.1:9/r/intake/",
        "problem": "scan-7: unusable proxy setting: ProxySchemeUnknown: "
        "Proxy URL had unsupported scheme socks5, should use http:// or https://",
        "name": "scan-7",
        "status": None,
        "attempts": 0,
    }


def test_a_stop_cuts_a_hanging_attempt_at_once_and_says_so_once(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answers.append("hang")  # held for 10 s: the stop, not the receiver, ends the attempt
    stop = threading.Event()
    sink = HttpSink(receiver.url, API_KEY, timeout=30.0, stop=stop, proxies={})
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()

    with caplog.at_level(logging.DEBUG, logger="engine.delivery.http"):
        error = failure(sink)

    assert time.monotonic() - started < 1.0  # the deadline looks at the stop every 0.1 s
    assert error.problem == "scan: stopped by a signal (after 1 attempt(s))"
    assert (error.status, error.attempts) == (None, 1)
    assert [r.getMessage() for r in caplog.records if r.name == "engine.delivery.http"] == [
        f"event=sink.failed name=scan target={receiver.url}/intake/ problem='stopped by a signal' attempts=1"
    ]


def test_a_stop_during_the_wait_keeps_the_last_problem(receiver: Receiver) -> None:
    receiver.answers.append((503, {}, b"busy"))
    stop = threading.Event()
    sink = HttpSink(receiver.url, API_KEY, sleep=lambda seconds: stop.set(), stop=stop, proxies={})

    error = failure(sink)

    assert (
        error.problem == "scan: HTTP 503 Service Unavailable: busy; stopped by a signal (after 1 attempt(s))"
    )
    assert (error.status, error.attempts, len(receiver.seen)) == (None, 1, 1)


def test_the_time_spent_in_sends_adds_up_against_the_budget(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(http, "time", SimpleNamespace(monotonic=lambda: clock.now))
    receiver.hooks.append(lambda: setattr(clock, "now", clock.now + 0.5))  # each POST takes 0.5 s
    sink = HttpSink(receiver.url, API_KEY, proxies={})

    for name in ("p1", "p2", "p3"):
        sink.send({"k": 1}, name)
    assert sink.spent == 1.5

    sink.budget = 1.5  # exactly spent: no further attempt
    error = failure(sink, "p4")
    assert error.problem == "p4: delivery budget of 1.5 s spent (after 0 attempt(s))"
    assert len(receiver.seen) == 3 and sink.spent == 1.5


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listen queue is full: the kernel drops further SYNs, so a connect hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        for client in queued:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        time.sleep(0.05)
        yield port
        for client in queued:
            client.close()


def test_a_connect_gets_at_most_the_connect_timeout(unanswered_port: int) -> None:
    sink = HttpSink(f"http://127.0.0.1:{unanswered_port}", API_KEY, retries=0, timeout=5.0,
                    connect_timeout=0.2, proxies={})  # fmt: skip
    started = time.monotonic()

    error = failure(sink)

    assert time.monotonic() - started < 2.0
    assert re.fullmatch(
        r"scan: connection failed: ConnectTimeoutError: \(<_WatchedHTTPConnection\(host='127\.0\.0\.1', "
        rf"port={unanswered_port}\) at 0x[0-9a-f]+>, 'Connection to 127\.0\.0\.1 timed out\. "
        r"\(connect timeout=0\.2\)'\) \(after 1 attempt\(s\)\)",
        error.problem,
    )
    assert (error.status, error.attempts) == (None, 1)


def test_each_attempt_is_watched_by_a_daemon_thread_named_sink_deadline(receiver: Receiver) -> None:
    """Named for thread dumps; a daemon, so a watcher never holds up the process's exit."""
    watchers: list[tuple[str, bool]] = []
    receiver.hooks.append(
        lambda: watchers.extend(
            (t.name, t.daemon) for t in threading.enumerate() if t.name == "sink-deadline"
        )
    )

    HttpSink(receiver.url, API_KEY, proxies={}).send({"k": 1}, "scan")

    assert watchers == [("sink-deadline", True)]


def test_the_wait_before_a_retry_never_outlasts_the_budget(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(http, "time", SimpleNamespace(monotonic=lambda: clock.now))
    receiver.hooks.append(lambda: setattr(clock, "now", clock.now + 0.5))  # each POST takes 0.5 s
    receiver.answers.append((503, {}, b"busy"))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    sink = HttpSink(receiver.url, API_KEY, backoff=4.0, budget=1.25, sleep=sleep, proxies={})
    error = failure(sink)

    assert sleeps == [0.75]  # the budget's rest, not the backoff's 4 s
    assert (
        error.problem
        == "scan: HTTP 503 Service Unavailable: busy; delivery budget of 1.25 s spent (after 1 attempt(s))"
    )
    assert (error.status, error.attempts, len(receiver.seen)) == (None, 1, 1)


def test_a_retry_and_a_failure_log_one_line_each(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answers.extend([(503, {}, b"busy"), (400, {}, b"bad")])
    sink = HttpSink(receiver.url, API_KEY, backoff=0.5, sleep=lambda seconds: None, proxies={})

    with caplog.at_level(logging.DEBUG, logger="engine.delivery.http"):
        error = failure(sink, "scan-2")

    target = f"{receiver.url}/intake/"
    assert [r.getMessage() for r in caplog.records if r.name == "engine.delivery.http"] == [
        f"event=sink.retry name=scan-2 target={target} problem='HTTP 503 Service Unavailable: busy' "
        "delay=0.5",
        f"event=sink.failed name=scan-2 target={target} problem='HTTP 400 Bad Request: bad' attempts=2",
    ]
    assert error.fields == {
        "target": target,
        "problem": "scan-2: HTTP 400 Bad Request: bad (after 2 attempt(s))",
        "name": "scan-2",
        "status": 400,
        "attempts": 2,
    }


def test_the_documented_defaults() -> None:
    sink = HttpSink("https://sts.example.com/receiver/stsAgent", API_KEY, proxies={})

    assert (sink.retries, sink.backoff, sink.timeout, sink.budget, sink.proxy) == (5, 1.0, 30.0, None, None)
    assert str(sink._timeouts) == "Timeout(connect=10.0, read=30.0, total=None)"
    assert str(HttpSink("https://sts.example.com", None, timeout=4.0, proxies={})._timeouts) == (
        "Timeout(connect=4.0, read=4.0, total=None)"  # the connect never gets more than the whole attempt
    )


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://sts.example.com/stsAgent/", "http://sts.example.com/stsAgent/intake/"),
        ("http://sts.example.com/stsAgent//", "http://sts.example.com/stsAgent/intake/"),
        ("http://sts.example.com/BOX", "http://sts.example.com/BOX/intake/"),
        ("https://sts.example.com", "https://sts.example.com/intake/"),
    ],
)
def test_the_target_is_the_url_without_trailing_slashes_plus_intake(url: str, target: str) -> None:
    assert HttpSink(url, API_KEY, proxies={}).target == target


@pytest.mark.parametrize("url", ["http:///receiver", "ftp://sts.example.com/receiver", "sts.example.com"])
def test_a_receiver_url_needs_an_http_scheme_and_a_host(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        HttpSink(url, API_KEY, proxies={})
    assert str(refused.value) == f"receiver URL {url!r} is not an http(s) URL with a host"


def test_a_proxy_without_a_scheme_is_taken_as_http() -> None:
    assert HttpSink("https://sts.example.com", API_KEY, proxies={"https": "proxy.corp:3128"}).proxy == (
        "http://proxy.corp:3128"
    )


def test_every_secret_of_every_sink_is_masked_in_urllib3_log_lines(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http._Redact, "secrets", set())  # only this test's secrets
    HttpSink("https://ops:pa:ss@sts.example.com", "k3y/one", proxies={})
    HttpSink("https://nopass@sts.example.com", None, proxies={})  # an empty password is no secret
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    token = "b3BzOnBhOnNz"  # base64 of "ops:pa:ss"

    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        for text in ("key k3y/one", "quoted k3y%2Fone", "password pa:ss", "quoted pa%3Ass",
                     f"Basic {token}", "nothing secret"):  # fmt: skip
            urllib3_log.debug("%s", text)

    assert [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"] == [
        "key ***", "quoted ***", "password ***", "quoted ***", "Basic ***", "nothing secret",
    ]  # fmt: skip


class DrippingProxy(BaseHTTPRequestHandler):
    """A proxy whose answer to CONNECT comes a byte every 0.1 s (each read is quick; the whole takes 10 s)."""

    stop: threading.Event

    def do_CONNECT(self) -> None:
        answer = b"HTTP/1.1 200 Connection established\r\nX-Pad: " + b"." * 60 + b"\r\n\r\n"
        for i in range(len(answer)):
            if self.stop.wait(0.1):
                return
            try:
                self.wfile.write(answer[i : i + 1])
                self.wfile.flush()
            except OSError:
                return

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_deadline_cuts_a_proxy_tunnel_that_trickles() -> None:
    stop = threading.Event()
    with serve(DrippingProxy, stop=stop) as proxy:
        sink = HttpSink("https://receiver.test/r", API_KEY, retries=0, timeout=0.5, connect_timeout=0.5,
                        proxies={"https": proxy})  # fmt: skip
        started = time.monotonic()
        error = failure(sink)
        elapsed = time.monotonic() - started
        stop.set()

    assert elapsed < 2.0  # the deadline, not the 10 s the tunnel's answer takes
    assert error.problem == "scan: no complete answer within the 0.5 s deadline (after 1 attempt(s))"


def test_a_connection_made_after_the_deadline_is_shut_at_once(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name lookup outlasts the deadline; the receiver would answer at once (200, no body)."""
    resolve = socket.getaddrinfo

    def slow_lookup(host: str, *args: object, **kwargs: object) -> list:
        if host == "receiver.test":
            time.sleep(0.4)
            host = "127.0.0.1"
        return resolve(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    port = receiver.url.rpartition(":")[2]
    sink = HttpSink(f"http://receiver.test:{port}", API_KEY, retries=0, timeout=0.2, proxies={})

    error = failure(sink)

    assert error.problem == "scan: no complete answer within the 0.2 s deadline (after 1 attempt(s))"
    assert receiver.seen == []


def test_a_kept_connection_is_under_the_next_attempts_deadline(receiver: Receiver) -> None:
    receiver.answers.extend([(200, {}, b"{}"), "drip"])
    sink = HttpSink(receiver.url, API_KEY, retries=0, timeout=0.5, proxies={})
    sink.send({"k": 1}, "p1")
    started = time.monotonic()

    error = failure(sink, "p2")

    assert time.monotonic() - started < 2.0  # the deadline, not the 10 s of the drip
    assert error.problem == "p2: no complete answer within the 0.5 s deadline (after 1 attempt(s))"
    [(_, _, first), (_, _, second)] = receiver.seen
    assert first == second  # the same connection, kept from p1


# the deadline's parts that no real exchange reaches on cue


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    with ours, peer:
        peer.settimeout(2.0)
        yield ours, peer


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "tls-in-tls"])
def test_shutting_a_connection_ends_its_socket_also_under_urllib3s_tls_transport(
    socket_pair: tuple[socket.socket, socket.socket], wrapped: bool
) -> None:
    ours, peer = socket_pair
    sock = SimpleNamespace(socket=ours) if wrapped else ours  # urllib3's SSLTransport keeps it as `.socket`

    http._shut(SimpleNamespace(sock=sock))  # type: ignore[arg-type]

    assert peer.recv(1) == b""  # the peer sees the end at once
    with pytest.raises(OSError):
        ours.send(b"x")


def test_shutting_a_socket_that_is_not_connected_is_quiet() -> None:
    with socket.socket() as unconnected:
        http._shut(SimpleNamespace(sock=unconnected))  # type: ignore[arg-type]  # ENOTCONN, swallowed
        http._shut(SimpleNamespace(sock=None))  # type: ignore[arg-type]  # not connected yet: nothing to do


class Gate:
    """A stop event whose `is_set` waits until the test opens it: holds the watcher at its check."""

    def __init__(self) -> None:
        self.reached, self.opened = threading.Event(), threading.Event()

    def is_set(self) -> bool:
        self.reached.set()
        self.opened.wait(5)
        return True


def test_a_deadline_that_passes_as_the_attempt_ends_leaves_its_connection_alone(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = socket_pair
    gate = Gate()
    deadline = http._Deadline(30.0, gate)  # type: ignore[arg-type]
    with deadline:
        http._Deadline.watch(SimpleNamespace(sock=ours))  # type: ignore[arg-type]
        assert gate.reached.wait(5)  # the watcher is about to expire it...
    gate.opened.set()  # ...only now, the attempt being over
    deadline._watcher.join(5)

    assert deadline.expired is False
    ours.send(b"still open")
    assert peer.recv(64) == b"still open"
