"""The receiver's HTTP intake: urllib3 with one overall deadline per attempt, retries within a budget,
proxies. The receiver API key never appears in errors, logs or reprs; a URL is shown without its userinfo
(`shown_url`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import MaxRetryError, ProxySchemeUnknown
from urllib3.util import make_headers, parse_url

from engine.core.errors import DeliveryError
from engine.delivery.payload import encode

log = logging.getLogger(__name__)

MAX_DELAY = 60.0
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})
DETAIL_CHARS = 300  # of an error answer's body, shown in the problem
_KEEP_BYTES = 64 * 1024  # of any answer's body; the rest is read (to keep the connection) and dropped


def shown_url(url: str) -> str:
    """`url` without its userinfo (`user:password@`): the form every summary, log and error shows."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if "@" in parts.netloc else url


class _Deadline:
    """Bounds one POST attempt as a whole (connect, send, headers, body).

    urllib3's timeouts bound each socket operation, so a receiver dripping a byte now and then never trips
    them. While the attempt runs, every connection it uses registers here; when `seconds` have passed, their
    sockets are shut down, which wakes a blocked send or recv with an error, and `expired` tells why.
    """

    current: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar("sink_deadline", default=None)

    def __init__(self, seconds: float, stop: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.expired = False
        self._connections: list[HTTPConnection] = []
        self._lock = threading.Lock()
        self._finished = False
        self._done = threading.Event()
        self._stop = stop or threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="sink-deadline")

    def __enter__(self) -> Self:
        self._token = self.current.set(self)
        self._watcher.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._finished = True
        self._done.set()
        self.current.reset(self._token)

    def _watch(self) -> None:
        """Expire when `seconds` have passed or the run is stopped, whichever comes first."""
        end = time.monotonic() + self.seconds
        while not self._done.wait(min(0.1, max(0.0, end - time.monotonic()))):
            if self._stop.is_set() or time.monotonic() >= end:
                self._expire()
                return

    @classmethod
    def watch(cls, connection: HTTPConnection) -> None:
        """Put `connection` under the running attempt's deadline (shut at once if it already passed)."""
        deadline = cls.current.get()
        if deadline is None:
            return
        with deadline._lock:
            if connection not in deadline._connections:
                deadline._connections.append(connection)
            expired = deadline.expired and not deadline._finished
        if expired:
            _shut(connection)

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)


def _shut(connection: HTTPConnection) -> None:
    sock = connection.sock  # None until connected
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)  # SSLTransport
    if isinstance(raw, socket.socket):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)  # the plain socket's, also under TLS


class _Watched:
    """Puts the connection under the attempt's deadline (if any) whenever it connects or sends."""

    def connect(self) -> None:
        _Deadline.watch(self)  # type: ignore[arg-type]
        super().connect()  # type: ignore[misc]
        _Deadline.watch(self)  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> None:
        _Deadline.watch(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Redact(logging.Filter):
    """Masks API keys in urllib3's own log lines (its debug line shows the request URL with `api_key=`)."""

    secrets: set[str] = set()  # noqa: RUF012 - shared on purpose: every HttpSink's key, on every logger

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = message
            for secret in self.secrets:
                redacted = redacted.replace(secret, "***")
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


_REDACT = _Redact()
for _name in ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry", "urllib3.connection"):
    logging.getLogger(_name).addFilter(_REDACT)


def _pool_manager(
    target: str, proxies: Mapping[str, str] | None = None
) -> tuple[urllib3.PoolManager, str | None]:
    """A PoolManager, or a ProxyManager when HTTPS_PROXY/HTTP_PROXY (either case) apply to `target`'s scheme
    and NO_PROXY does not exclude its host; plus the proxy's address without credentials (None when direct).
    Credentials in the proxy URL become a Proxy-Authorization header. ALL_PROXY is ignored, as urllib did.
    `proxies` (urllib's shape, from `engine.core.proxy.resolve_proxies`) replaces the environment's when
    given.
    """
    parts = urllib.parse.urlsplit(target)
    proxies = urllib.request.getproxies_environment() if proxies is None else dict(proxies)
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass_environment(parts.netloc, proxies):  # no userinfo in `target`
        manager = urllib3.PoolManager()
        shown = None
    else:
        parsed = parse_url(proxy if "://" in proxy else f"http://{proxy}")
        shown = parsed._replace(auth=None).url
        headers = make_headers(proxy_basic_auth=urllib.parse.unquote(parsed.auth)) if parsed.auth else None
        manager = urllib3.ProxyManager(shown, proxy_headers=headers)
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager, shown


class HttpSink:
    """POSTs payloads to the receiver's V1 intake route (`{url}/intake/?api_key=...`, header `sts-api-key`).

    `user:password@` in `url` is sent as HTTP Basic auth and stripped from `target`, the only form shown.
    A set `stop` event wakes a running attempt and ends the retries; so does a spent `budget` (seconds of
    `send` over the sink's life). Either raises a transient DeliveryError; the spooling sink keeps it.

    Transport: a urllib3 `PoolManager` (a `ProxyManager` when HTTPS_PROXY/HTTP_PROXY apply and NO_PROXY does
    not exclude the receiver). Each attempt has one overall deadline of `timeout` seconds (connect at most
    `connect_timeout` of it): a receiver that trickles its answer is cut off then, not per byte. Redirects are
    refused (a redirected POST would become a body-less GET that reports success).

    Retries follow `self.retry`, a `urllib3.Retry`: connection errors, timeouts, 408, 429 and 5xx are retried
    `retries` times (POST allowed), waiting the answer's Retry-After when it has one, else
    `backoff * 2**(n-1)` before the n-th retry, at most 60 s. Any other non-2xx answer fails at once; 4xx
    other than 408/429 is a permanent rejection (`is_rejection`). The loop that applies the policy is ours,
    not urllib3's, so that waits go through `sleep`, each attempt gets its own deadline and urllib3 never
    logs the URL with the key.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        retries: int = 5,
        backoff: float = 1.0,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        sleep: Callable[[float], object] | None = None,
        proxies: Mapping[str, str] | None = None,
        stop: threading.Event | None = None,
        budget: float | None = None,
    ) -> None:
        parsed = parse_url(f"{url.rstrip('/')}/intake/")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"receiver URL {shown_url(url)!r} is not an http(s) URL with a host")
        self.target = parsed._replace(auth=None).url  # userinfo goes in the Authorization header, never shown
        self._auth = make_headers(basic_auth=urllib.parse.unquote(parsed.auth)) if parsed.auth else {}
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        # counting and status policy only: `_send` waits (`_delay`); a redirect is an answer, never followed
        self.retry = urllib3.Retry(
            total=retries, status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"POST"})
        )
        self._timeouts = urllib3.Timeout(connect=min(connect_timeout, timeout), read=timeout)
        self._stop = stop or threading.Event()
        self._sleep = sleep or self._stop.wait
        self.budget = budget
        self.spent = 0.0  # seconds spent in `send`, against `budget`
        self._since: float  # when the running `send` started (set by `send`, read only within it)
        self._api_key = api_key or None
        secrets = {self._api_key} if self._api_key else set()
        if parsed.auth:
            secrets |= {parsed.auth, parsed.auth.partition(":")[2], self._auth["authorization"].split()[-1]}
        secrets.discard("")
        _REDACT.secrets.update(secrets | {urllib.parse.quote(secret, safe="") for secret in secrets})
        self._setup_problem = ""
        try:
            self._manager, self.proxy = _pool_manager(self.target, proxies)
        except (ProxySchemeUnknown, ValueError, Urllib3Error) as exc:
            self._manager, self.proxy = urllib3.PoolManager(), None
            self._setup_problem = f"unusable proxy setting: {type(exc).__name__}: {exc}"

    def __repr__(self) -> str:
        key = "***" if self._api_key else None
        via = f", proxy={self.proxy!r}" if self.proxy else ""
        return f"HttpSink({self.target!r}, api_key={key!r}, retries={self.retries}{via})"

    def _redact(self, text: str) -> str:
        if self._api_key:
            for secret in {self._api_key, urllib.parse.quote(self._api_key, safe="")}:
                text = text.replace(secret, "***")
        return text

    def _url_and_headers(self) -> tuple[str, dict[str, str]]:
        headers = {"Content-Type": "application/json", "User-Agent": "aws-topology", **self._auth}
        url = self.target
        if self._api_key:
            headers["sts-api-key"] = self._api_key
            url += "?api_key=" + urllib.parse.quote(self._api_key, safe="")
        return url, headers

    def _left(self) -> float:
        """Seconds left of the delivery budget (infinite without one), the running `send` included."""
        if self.budget is None:
            return math.inf
        return self.budget - self.spent - (time.monotonic() - self._since)

    def _attempt(self, body: bytes) -> tuple[urllib3.BaseHTTPResponse | None, str]:
        """One POST within the deadline: (answer, problem); problem is "" on a 2xx answer."""
        url, headers = self._url_and_headers()
        response, kept, error = None, b"", None
        seconds = min(self.timeout, self._left())
        with _Deadline(seconds, self._stop) as deadline:
            try:
                response = self._manager.urlopen(
                    "POST", url, body=body, headers=headers, retries=False,  # and so no redirect either
                    timeout=self._timeouts, preload_content=False,
                )  # fmt: skip
                try:
                    for chunk in response.stream(8192):
                        kept = (kept + chunk)[:_KEEP_BYTES]
                        if deadline.expired:
                            raise TimeoutError  # the deadline passed while the answer was being read
                finally:
                    response.release_conn()
            except (Urllib3Error, OSError) as exc:
                error = exc
        if error is not None or response is None:
            if self._stop.is_set():
                return None, "stopped by a signal"
            if deadline.expired:
                return None, f"no complete answer within the {seconds:g} s deadline"
            return None, f"connection failed: {type(error).__name__}: {error}"
        if 200 <= response.status < 300:
            return response, ""
        detail = kept[:DETAIL_CHARS].decode("utf-8", "replace").strip()
        problem = f"HTTP {response.status} {response.reason or ''}".rstrip()
        problem += f": {detail}" if detail else ""
        return response, problem

    def _delay(self, retry: urllib3.Retry, response: urllib3.BaseHTTPResponse | None) -> float:
        """Retry-After of the answer when given (and readable), else `backoff * 2**(n-1)`; at most 60 s."""
        delay = None
        if response is not None and retry.respect_retry_after_header:
            with contextlib.suppress(Urllib3Error, ValueError, OverflowError):
                delay = retry.get_retry_after(response)
        if delay is None:
            delay = self.backoff * 2 ** (len(retry.history) - 1)
        return min(max(delay, 0.0), MAX_DELAY)

    def send(self, payload: dict, name: str) -> None:
        """POST one payload; raise DeliveryError (target without query string) after the last failure.

        A set `stop` event or a spent `budget` ends the attempts at once (a transient failure: the spooling
        sink keeps the payload).
        """
        self._since = time.monotonic()
        try:
            self._send(payload, name)
        finally:
            self.spent += time.monotonic() - self._since

    def _send(self, payload: dict, name: str) -> None:
        if self._setup_problem:
            raise DeliveryError(target=self.target, problem=f"{name}: {self._setup_problem}", name=name,
                                status=None, attempts=0)  # fmt: skip
        body = encode(payload)
        retry = self.retry
        attempts, status, problem = 0, None, ""
        while True:
            if self._stop.is_set() or self._left() <= 0:
                problem, status = f"{problem}; {self._why_not()}" if problem else self._why_not(), None
                break
            attempts += 1
            response, problem = self._attempt(body)
            if not problem:
                log.debug("event=sink.sent name=%s target=%s status=%s", name, self.target, response.status)
                return
            problem = self._redact(problem)
            status = response.status if response is not None else None
            has_retry_after = response is not None and "Retry-After" in response.headers
            retriable = response is None or retry.is_retry("POST", response.status, has_retry_after)
            if not retriable or self._stop.is_set():  # stopped during the attempt: no retry to announce
                break
            try:
                retry = retry.increment()  # one more in its history, whose length is all `_delay` reads
            except MaxRetryError:  # `retries` spent
                break
            delay = self._delay(retry, response)
            log.warning(
                "event=sink.retry name=%s target=%s problem=%r delay=%.1f", name, self.target, problem, delay
            )
            self._sleep(min(delay, max(self._left(), 0.0)))
        log.error(
            "event=sink.failed name=%s target=%s problem=%r attempts=%d", name, self.target, problem, attempts
        )
        raise DeliveryError(
            target=self.target,
            problem=f"{name}: {problem} (after {attempts} attempt(s))",
            name=name,
            status=status,
            attempts=attempts,
        )

    def _why_not(self) -> str:
        """Why no (further) attempt is made: a stop, or the spent budget."""
        return "stopped by a signal" if self._stop.is_set() else f"delivery budget of {self.budget:g} s spent"
