"""Sinks: intake payloads in, delivered payloads out (receiver HTTP intake, files, or the durable spool).

Every sink raises `DeliveryError` when a payload could not be delivered; `SpoolingSink` turns a transient one
into a durable spool entry so no payload is silently dropped, and records a permanent rejection (4xx other
than 408/429) without letting it block the payloads behind it. The receiver API key never appears in errors,
logs or reprs.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import MaxRetryError, ProxySchemeUnknown
from urllib3.util import make_headers, parse_url

from engine.core.errors import DeliveryError
from engine.delivery.payload import encode

if TYPE_CHECKING:
    from engine.core.state import State

log = logging.getLogger(__name__)

MAX_DELAY = 60.0
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})
DETAIL_CHARS = 300  # of an error answer's body, shown in the problem
_KEEP_BYTES = 64 * 1024  # of any answer's body; the rest is read (to keep the connection) and dropped
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NUMBERED = re.compile(r"^(?P<prefix>.*)-(?P<number>[0-9]+)$")


class Sink(Protocol):
    """Where payloads go; `name` is a short label such as `scan-123456789012-0001`."""

    def send(self, payload: dict, name: str) -> None:
        """Deliver one payload or raise DeliveryError."""
        ...


def shown_url(url: str) -> str:
    """`url` without its userinfo (`user:password@`): the form every summary, log and error shows."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if "@" in parts.netloc else url


def is_rejection(exc: DeliveryError) -> bool:
    """A permanent refusal: the receiver answered 4xx other than 408 (timeout) and 429 (throttled)."""
    status = getattr(exc, "status", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)


class FileSink:
    """Writes each payload to `{directory}/{name}.json` (pretty, sorted keys, UTF-8), atomically."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileSink({str(self.directory)!r})"

    def send(self, payload: dict, name: str) -> None:
        """Write to a temporary file in the same directory, fsync, then rename over the target."""
        if not _NAME.match(name):
            raise ValueError(f"payload name {name!r} is not a plain file name")
        target = self.directory / f"{name}.json"
        text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            _fsync_directory(self.directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise DeliveryError(target=str(target), problem=f"{name}: {exc}") from exc
        log.debug("event=sink.written path=%s", target)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (the new directory entry survives a power loss)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# HTTP: urllib3 (a botocore dependency) with one overall deadline per attempt.


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
    sock = getattr(connection, "sock", None)
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
    host = parts.netloc.rpartition("@")[2]
    if not proxy or urllib.request.proxy_bypass_environment(host, proxies):
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
        self.retry = urllib3.Retry(
            total=retries,
            backoff_factor=backoff,
            backoff_max=MAX_DELAY,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=True,
            redirect=False,
            raise_on_status=False,
        )
        self._timeouts = urllib3.Timeout(connect=min(connect_timeout, timeout), read=timeout)
        self._stop = stop or threading.Event()
        self._sleep = sleep or self._stop.wait
        self.budget = budget
        self.spent = 0.0  # seconds spent in `send`, against `budget`
        self._since: float | None = None  # when the running `send` started
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
            return float("inf")
        running = time.monotonic() - self._since if self._since is not None else 0.0
        return self.budget - self.spent - running

    def _attempt(self, body: bytes) -> tuple[urllib3.BaseHTTPResponse | None, str, Exception | None]:
        """One POST within the deadline: (answer, problem, error); problem is "" on a 2xx answer."""
        url, headers = self._url_and_headers()
        response, kept, error = None, b"", None
        seconds = min(self.timeout, self._left())
        with _Deadline(seconds, self._stop) as deadline:
            try:
                response = self._manager.urlopen(
                    "POST", url, body=body, headers=headers, retries=False, redirect=False,
                    timeout=self._timeouts, preload_content=False,
                )  # fmt: skip
                try:
                    for chunk in response.stream(8192):
                        kept = (kept + chunk)[:_KEEP_BYTES]
                        if deadline.expired:
                            raise TimeoutError("deadline passed while reading the answer")
                finally:
                    response.release_conn()
            except (Urllib3Error, OSError) as exc:
                error = exc
        if error is not None or response is None:
            if self._stop.is_set():
                return None, "stopped by a signal", error
            if deadline.expired:
                return None, f"no complete answer within the {seconds:g} s deadline", error
            return None, f"connection failed: {type(error).__name__}: {error}", error
        if 200 <= response.status < 300:
            return response, "", None
        detail = kept[:DETAIL_CHARS].decode("utf-8", "replace").strip()
        problem = f"HTTP {response.status} {response.reason or ''}".rstrip()
        problem += f": {detail}" if detail else ""
        return response, problem, None

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
            self._since = None

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
            response, problem, error = self._attempt(body)
            if not problem:
                log.debug("event=sink.sent name=%s target=%s status=%s", name, self.target, response.status)
                return
            problem = self._redact(problem)
            status = response.status if response is not None else None
            has_retry_after = response is not None and "Retry-After" in response.headers
            retriable = response is None or retry.is_retry("POST", response.status, has_retry_after)
            if retriable:
                try:
                    retry = retry.increment("POST", self.target, response=response, error=error)
                except MaxRetryError:
                    retriable = False
            if not retriable:
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


# Spool


def _topology(payload: dict) -> dict:
    topologies = payload.get("topologies") if isinstance(payload, dict) else None
    return topologies[0] if topologies and isinstance(topologies[0], dict) else {}


def _account(payload: dict) -> str | None:
    url = (_topology(payload).get("instance") or {}).get("url")
    return url if isinstance(url, str) else None


_TOPOLOGY_LISTS = ("components", "relations", "delete_ids")
_PAYLOAD_LISTS = ("metrics", "service_checks", "health")


def halves(payload: dict) -> tuple[dict, dict] | None:
    """`payload` split in two by its elements (components, relations, delete ids, events, metrics, checks),
    in order; None when it holds fewer than two. `start_snapshot` stays on the first half only,
    `stop_snapshot` on the second only.
    """
    topologies = payload.get("topologies") or [{}]
    if len(topologies) != 1:
        return None
    topology = topologies[0]
    elements = [(name, None, e) for name in _TOPOLOGY_LISTS for e in topology.get(name) or []]
    elements += [("events", key, e) for key, events in (payload.get("events") or {}).items() for e in events]
    elements += [(name, None, e) for name in _PAYLOAD_LISTS for e in payload.get(name) or []]
    if len(elements) < 2:
        return None
    middle = len(elements) // 2
    first = _rebuild(payload, elements[:middle], topology.get("start_snapshot", False), False)
    return first, _rebuild(payload, elements[middle:], False, topology.get("stop_snapshot", False))


def _rebuild(payload: dict, elements: list[tuple[str, str | None, Any]], start: bool, stop: bool) -> dict:
    topology = {**_topology(payload), **{name: [] for name in _TOPOLOGY_LISTS}}
    topology.update(start_snapshot=start, stop_snapshot=stop)
    part: dict[str, Any] = {**payload, "topologies": [topology], "events": {}}
    part.update({name: [] for name in _PAYLOAD_LISTS if name in payload})
    for name, key, element in elements:
        if name in _TOPOLOGY_LISTS:
            topology[name].append(element)
        elif name == "events":
            part["events"].setdefault(key, []).append(element)
        else:
            part.setdefault(name, []).append(element)
    return part


DELIVERED, SPOOLED, REJECTED = "delivered", "spooled", "rejected"
DAMAGED_KEY = "spool.damaged_snapshots"  # kv: snapshot keys that lost a payload (rejected or trimmed)


class SpoolingSink:
    """Wraps a sink so undelivered payloads land in the State spool instead of being lost.

    - A transient failure (connection, timeout, 408, 429, 5xx, a stop, a spent delivery budget) spools the
      payload, and order is kept: while the spool holds pending entries, or once a delivery failed in this
      run, new payloads are spooled behind them rather than sent.
    - A payload answered 413 (too large) is split in halves, each sent on its own, down to single elements.
    - A permanent rejection (`is_rejection`: 4xx other than 408/429) is recorded as a `rejected` spool entry
      with its HTTP status and reason, logged (`event=sink.rejected`) and counted in `rejected`; it is never
      re-sent and blocks nothing. `send` returns what became of the payload (`DELIVERED`, `SPOOLED`,
      `REJECTED`), so a caller may retire its sources once the payload is durable.
    - Snapshots: a snapshot is the consecutive run of payloads (`{prefix}-{NNNN}`, numbers one apart) from
      one whose topology has `start_snapshot: true`, for the account `topologies[0].instance.url`. When a new
      snapshot of an account starts (sent or spooled), the pending spooled snapshot payloads of that account
      are deleted (`event=sink.superseded`, counted in `superseded`); delta payloads stay, in order.
    - A snapshot that lost a payload (rejected, or trimmed from the spool) is damaged: the rest of it is
      still sent but never closes it (`stop_snapshot` sent as false), since closing would delete what the
      lost payload held. Damaged snapshot keys are kept in the state (`DAMAGED_KEY`) for later runs.
    - Bounds: beyond `max_entries` entries or `max_bytes` bytes of stored JSON, the oldest entries are
      dropped, each logged as an error (`event=spool.overflow`) and counted in `overflowed`.

    `flush_spool()` re-sends the pending spool oldest first, deleting each entry only after it was delivered;
    every run calls it first, and the `aws-topology spool` command to re-send now.
    """

    def __init__(
        self, inner: Sink, state: State, *, max_entries: int = 10_000, max_bytes: int = 512 * 1024 * 1024
    ) -> None:
        self.inner = inner
        self.state = state
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.spooled = 0
        self.flushed = 0
        self.rejected = 0
        self.superseded = 0
        self.overflowed = 0
        self._failing = False
        self._run = uuid.uuid4().hex[:12]
        # account -> (snapshot key, name prefix, number of its last payload) while a snapshot is open
        self._open: dict[str, tuple[str, str, int]] = {}
        self._damaged: set[str] = set(state.get(DAMAGED_KEY, []))
        self._fate: dict[str, str] = {}  # snapshot key of this run -> worst fate of its payloads
        self._latest: dict[str, str] = {}  # account -> key of its last snapshot started in this run

    def __repr__(self) -> str:
        return (
            f"SpoolingSink({self.inner!r}, spooled={self.spooled}, flushed={self.flushed}, "
            f"rejected={self.rejected}, superseded={self.superseded}, overflowed={self.overflowed})"
        )

    def snapshot_fate(self, account: str) -> str | None:
        """What became of the account's last snapshot started in this run: `DELIVERED` when every payload
        reached the receiver, else `SPOOLED` or `REJECTED` (rejected or trimmed); None without one."""
        key = self._latest.get(account)
        return None if key is None else self._fate.get(key, DELIVERED)

    def _note(self, snapshot: str | None, fate: str) -> None:
        """Remember the worst fate of a payload of a snapshot started in this run."""
        if snapshot is not None and snapshot.endswith(f":{self._run}"):
            order = (DELIVERED, SPOOLED, REJECTED)
            self._fate[snapshot] = max(self._fate.get(snapshot, DELIVERED), fate, key=order.index)

    def _damage(self, snapshot: str) -> None:
        if snapshot not in self._damaged:
            self._damaged.add(snapshot)
            self.state.set(DAMAGED_KEY, sorted(self._damaged))

    def _snapshot_of(self, payload: dict, name: str) -> str | None:
        """The key of the snapshot `payload` belongs to, None for a delta; follows the open snapshots."""
        account = _account(payload)
        if account is None:
            return None
        topology = _topology(payload)
        match = _NUMBERED.match(name)
        prefix, number = (match["prefix"], int(match["number"])) if match else (name, 0)
        if topology.get("start_snapshot") is True:
            key = f"{account}:{name}:{self._run}"
            self._latest[account] = key
        else:
            current = self._open.get(account)
            if current is None or match is None or (prefix, number) != (current[1], current[2] + 1):
                return None
            key = current[0]
        self._open[account] = (key, prefix, number)
        if topology.get("stop_snapshot") is True:
            del self._open[account]
        return key

    def _supersede(self, account: str, name: str) -> None:
        dropped = self.state.spool_supersede(account)
        if dropped:
            self.superseded += len(dropped)
            log.warning(
                "event=sink.superseded account=%s by=%s dropped=%d names=%s",
                account, name, len(dropped), ",".join(entry["name"] for entry in dropped),
            )  # fmt: skip

    def _trim(self) -> None:
        for entry in self.state.spool_trim(self.max_entries, self.max_bytes):
            self.overflowed += 1
            if entry["snapshot"]:
                self._damage(entry["snapshot"])
                self._note(entry["snapshot"], REJECTED)
            log.error(
                "event=spool.overflow id=%d name=%s status=%s size=%d max_entries=%d max_bytes=%d",
                entry["id"], entry["name"], entry["status"], entry["size"], self.max_entries, self.max_bytes,
            )  # fmt: skip

    def _spool(
        self, payload: dict, name: str, snapshot: str | None, reason: str, status: int | None = None
    ) -> str:
        self.state.spool_put(name, payload, reason=reason, http_status=status, snapshot=snapshot)
        self.spooled += 1
        self._note(snapshot, SPOOLED)
        log.warning("event=sink.spooled name=%s reason=%r", name, reason)
        self._trim()
        return SPOOLED

    def _reject(self, payload: dict, name: str, snapshot: str | None, exc: DeliveryError) -> None:
        reason, status = str(exc), getattr(exc, "status", None)
        spool_id = self.state.spool_put(
            name, payload, status="rejected", reason=reason, http_status=status, snapshot=snapshot
        )
        self.rejected += 1
        self._note(snapshot, REJECTED)
        log.error(
            "event=sink.rejected name=%s status=%s spool_id=%d problem=%r", name, status, spool_id, reason
        )
        self._trim()

    def _send(self, payload: dict, name: str, snapshot: str | None) -> list[tuple[dict, DeliveryError]]:
        """Send, halving a payload answered 413; the parts refused for good, with why. A refused part
        damages its snapshot at once, so no later part closes it. DeliveryError if transient."""
        outgoing = payload
        if snapshot in self._damaged and _topology(payload).get("stop_snapshot") is True:
            topologies = [{**_topology(payload), "stop_snapshot": False}, *payload["topologies"][1:]]
            outgoing = {**payload, "topologies": topologies}
            log.warning("event=sink.snapshot_left_open name=%s reason='a payload of it was lost'", name)
        try:
            self.inner.send(outgoing, name)
        except DeliveryError as exc:
            if not is_rejection(exc):
                raise
            parts = halves(payload) if getattr(exc, "status", None) == 413 else None
            if parts is None:
                if snapshot is not None:
                    self._damage(snapshot)
                return [(payload, exc)]
            log.warning("event=sink.split name=%s reason='413: payload too large'", name)
            return self._send(parts[0], name, snapshot) + self._send(parts[1], name, snapshot)
        return []

    def _deliver(self, payload: dict, name: str, snapshot: str | None, spool_id: int | None = None) -> bool:
        """Send: True when delivered, False when (a part of it) was rejected for good (recorded, and the
        spool entry `spool_id` replaced by the refused parts); DeliveryError if transient."""
        refused = self._send(payload, name, snapshot)
        if not refused:
            return True
        if spool_id is not None and refused[0][0] is payload:
            reason, status = str(refused[0][1]), getattr(refused[0][1], "status", None)
            self.state.spool_reject(spool_id, reason, status)
            self.rejected += 1
            log.error("event=sink.rejected name=%s status=%s spool_id=%d problem=%r", name, status, spool_id,
                      reason)  # fmt: skip
            return False
        for part, exc in refused:
            self._reject(part, name, snapshot, exc)
        if spool_id is not None:
            self.state.spool_delete(spool_id)
        return False

    def send(self, payload: dict, name: str) -> str:
        """Deliver, or spool durably on a transient DeliveryError (counted in `spooled`, not raised), or
        record a permanent rejection (counted in `rejected`, not raised); returns which of the three."""
        snapshot = self._snapshot_of(payload, name)
        account = _account(payload)
        if snapshot is not None and account is not None and _topology(payload).get("start_snapshot") is True:
            self._supersede(account, name)
        if not self._failing and self.state.spool_count():
            self.flush_spool()  # leaves no pending entry, or sets _failing
        if self._failing:
            return self._spool(payload, name, snapshot, "queued behind undelivered payloads")
        try:
            return DELIVERED if self._deliver(payload, name, snapshot) else REJECTED
        except DeliveryError as exc:
            self._failing = True
            return self._spool(payload, name, snapshot, str(exc), getattr(exc, "status", None))

    def flush_spool(self) -> int:
        """Re-send the pending spool oldest first; returns how many were delivered (and deleted).

        A permanent rejection marks that entry `rejected` and the flush goes on with the next one; a
        transient failure stops it, leaving that entry and the rest pending (and this run spools new payloads
        behind them).
        """
        delivered = 0
        self._damaged |= {e["snapshot"] for e in self.state.spool_entries("rejected") if e["snapshot"]}
        for entry in self.state.spool_entries("pending"):
            payload = self.state.spool_payload(entry["id"])
            if payload is None:
                continue
            try:
                sent = self._deliver(payload, entry["name"], entry["snapshot"], entry["id"])
            except DeliveryError as exc:
                self._failing = True
                self.state.spool_note(entry["id"], str(exc), getattr(exc, "status", None))
                log.warning("event=sink.flush_stopped name=%s problem=%r", entry["name"], str(exc))
                break
            if sent:
                self.state.spool_delete(entry["id"])
                delivered += 1
        else:
            self._failing = False
        self.flushed += delivered
        self._forget_healed()
        return delivered

    def _forget_healed(self) -> None:
        """Stop keeping the damaged snapshots of earlier runs that have nothing left in the spool."""
        left = {e["snapshot"] for e in self.state.spool_entries() if e["snapshot"]}
        kept = sorted(k for k in self._damaged if k in left or k.endswith(f":{self._run}"))
        if kept != self.state.get(DAMAGED_KEY, []):
            self.state.set(DAMAGED_KEY, kept)
