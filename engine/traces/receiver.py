"""`aws-topology traces serve`: a small OTLP/HTTP receiver that appends call records to the state.

POST `/v1/traces` or `/open-telemetry` (the path StackState's NodeJS layer posts to), protobuf or JSON,
optionally gzip. Each request is decoded, its call records are committed as one `trace_calls` row, and only
then is it answered. It never calls AWS, never loads mappings and never takes the state's run lock (cron's
`run` holds it); both write the same WAL SQLite file, each write one short transaction.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from engine.core.errors import BadInput, StateError
from engine.core.state import State
from engine.traces.otlp import BadOtlp, TooLarge, UnsupportedType, decode, media, response

PATHS = frozenset({"/v1/traces", "/open-telemetry"})
MAX_BODY = 50 * 1024 * 1024
RETRY_AFTER = 30  # seconds a client waits after a 503 (over the bound, or the state busy)
LOG_EVERY = 60.0
DRAIN = 30.0  # seconds a stop waits for the requests under way


class ListenError(BadInput):
    fmt = "cannot listen on {address}: {problem}"


class Receiver(ThreadingHTTPServer):
    """The HTTP server: the state, the bound on pending spans, this process's counters."""

    daemon_threads = True  # idle keep-alive connections do not hold a stop; requests under way are drained

    def __init__(self, address: tuple[str, int], state: State, max_pending_spans: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(address, Handler)
        except OSError as exc:
            raise ListenError(
                address=f"{address[0]}:{address[1]}", problem=exc.strerror or str(exc)
            ) from None
        self.state = state
        self.max_pending_spans = max_pending_spans
        self.counts: Counter[str] = Counter()
        self.busy = threading.Condition()
        self.under_way = 0
        self.stopping = False

    def enter(self) -> bool:
        """Count a request as under way; False once the server is stopping."""
        with self.busy:
            if self.stopping:
                return False
            self.under_way += 1
            return True

    def leave(self) -> None:
        with self.busy:
            self.under_way -= 1
            self.busy.notify_all()

    def drain(self, timeout: float) -> bool:
        """Refuse new requests, wait for those under way; False when some were still running at `timeout`."""
        with self.busy:
            self.stopping = True
            return self.busy.wait_for(lambda: self.under_way == 0, timeout)

    def count(self, **counts: int) -> None:
        """Add to this process's counters (handler threads run side by side)."""
        with self.busy:
            self.counts.update(counts)

    def summary(self) -> str:
        with self.busy:
            counts = self.counts.copy()
        dropped = {
            k.removeprefix("dropped."): v for k, v in sorted(counts.items()) if k.startswith("dropped.")
        }
        return (
            f"requests={counts['requests']} received={counts['received']} "
            f"dropped={sum(dropped.values())}"
            + "".join(f" dropped.{reason}={n}" for reason, n in dropped.items())
            + f" refused={counts['refused']} errors={counts['errors']}"
        )


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive as OTLP exporters use it."""

    server: Receiver
    protocol_version = "HTTP/1.1"
    server_version = "aws-topology-traces"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the per-minute summary counts requests, and nothing of a body is ever logged."""

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/healthz":
            self._answer(HTTPStatus.OK, b"ok\n", "text/plain")
        else:
            self._answer(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        if urlsplit(self.path).path not in PATHS:
            self._refuse(HTTPStatus.NOT_FOUND, "POST OTLP traces to /v1/traces or /open-telemetry")
            return
        if not self.server.enter():
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "stopping", retry=True)
            return
        try:
            self._export()
        finally:
            self.server.leave()

    def _export(self) -> None:
        self.server.count(requests=1)
        try:
            kind = media(self.headers.get("Content-Type"))
        except UnsupportedType as exc:
            self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, str(exc))
            return
        body = self._body()
        if body is None:
            return
        try:
            decoded = decode(body, self.headers.get("Content-Type"), self.headers.get("Content-Encoding"))
        except TooLarge as exc:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc), keep=True)
            return
        except BadOtlp as exc:
            self._refuse(HTTPStatus.BAD_REQUEST, str(exc), keep=True)
            return
        try:
            accepted = self.server.state.traces_append(
                decoded.calls, decoded.spans, decoded.dropped, self.server.max_pending_spans
            )
        except StateError:  # busy past its timeout, or failing: counted, and the client retries
            self.server.count(errors=1)
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "the state cannot take it now", retry=True)
            return
        dropped = dict(decoded.dropped)
        if not accepted:
            dropped["over_limit"] = decoded.spans - sum(decoded.dropped.values())
        self.server.count(
            received=decoded.spans,
            refused=int(not accepted),
            **{f"dropped.{reason}": n for reason, n in dropped.items()},
        )
        if not accepted:
            self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "too many spans wait for the traces phase",
                retry=True,
                keep=True,
            )
            return
        content_type = "application/json" if kind == "json" else "application/x-protobuf"
        self._answer(HTTPStatus.OK, response(decoded.dropped, kind), content_type)

    def _body(self) -> bytes | None:
        """The request body, by its Content-Length or chunked (the NodeJS OTLP exporter streams its
        bodies); None once the request was answered (no length, over MAX_BODY, cut short)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked()
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "a Content-Length or a chunked body is required")
            return None
        if int(length) > MAX_BODY:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body exceeds {MAX_BODY // 2**20} MB")
            return None
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            self.close_connection = True
            return None
        return body

    def _chunked(self) -> bytes | None:
        """A chunked body (RFC 9112 7.1), at most MAX_BODY bytes; trailers are read and ignored."""
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            size = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not size or any(c not in b"0123456789abcdefABCDEF" for c in size):
                self._refuse(HTTPStatus.BAD_REQUEST, "a malformed chunked body")
                return None
            total += int(size, 16)
            if total > MAX_BODY:
                self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body exceeds {MAX_BODY // 2**20} MB")
                return None
            if int(size, 16) == 0:
                break
            chunk = self.rfile.read(int(size, 16))
            if len(chunk) < int(size, 16) or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self.close_connection = True
                return None
            parts.append(chunk)
        while (trailer := self.rfile.readline(8192)) not in (b"\r\n", b"\n", b""):
            if not trailer.endswith(b"\n"):
                self.close_connection = True
                return None
        return b"".join(parts)

    def _refuse(self, status: HTTPStatus, reason: str, retry: bool = False, keep: bool = False) -> None:
        """An error answer with a short reason; the connection is closed unless the body was read."""
        self.close_connection = self.close_connection or not keep
        headers = {"Retry-After": str(RETRY_AFTER)} if retry else {}
        self._answer(status, reason.encode()[:300] + b"\n", "text/plain", headers)

    def _answer(
        self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) to an address; `ListenError` when it is not one."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ListenError(address=listen[:80], problem="give HOST:PORT, e.g. 127.0.0.1:8126")
    return host, int(port)


def serve(
    listen: str,
    state_path: str,
    max_pending_spans: int,
    say: Callable[[str], None],
    log: Callable[[str], None],
    ready: Callable[[Receiver], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run the receiver until SIGTERM/SIGINT (or `stop`): `say` the listening line, `log` a summary a
    minute at most (when something changed) and one at the end; then stop accepting, drain, close."""
    host, port = parse_listen(listen)
    state = State(state_path).check()
    try:
        server = Receiver((host, port), state, max_pending_spans)
    except ListenError:
        state.close()
        raise
    stop = stop or threading.Event()
    previous = _on_signals(stop)
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    worker.start()
    shown = f"[{host}]" if ":" in host else host
    say(f"traces serve listening=http://{shown}:{server.server_address[1]} state={state.path}")  # masked
    if ready is not None:
        ready(server)
    last = server.summary()
    try:
        while not stop.wait(LOG_EVERY):
            now = server.summary()
            if now != last:
                log(f"traces serve {now}")
                last = now
    finally:
        server.shutdown()  # no new connection; then the requests under way finish
        server.server_close()
        drained = server.drain(DRAIN)
        state.close()
        _restore(previous)
        log(f"traces serve stopped {server.summary()}" + ("" if drained else " undrained=1"))


def _on_signals(stop: threading.Event) -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(previous: dict) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)
