"""Sinks: intake payloads in, delivered payloads out (receiver HTTP intake, files, or the durable spool).

Every sink raises `DeliveryError` when a payload could not be delivered; `SpoolingSink` turns that into a
durable spool entry so no payload is silently dropped. The receiver API key never appears in errors, logs
or reprs.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from engine.errors import DeliveryError
from engine.payload import encode

if TYPE_CHECKING:
    from engine.state import State

log = logging.getLogger(__name__)

MAX_DELAY = 60.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Sink(Protocol):
    """Where payloads go; `name` is a short label such as `scan-123456789012-0001`."""

    def send(self, payload: dict, name: str) -> None:
        """Deliver one payload or raise DeliveryError."""
        ...


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
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise DeliveryError(target=str(target), problem=f"{name}: {exc}") from exc
        log.debug("event=sink.written path=%s", target)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would turn the POST into a body-less GET and report success."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class HttpSink:
    """POSTs payloads to the receiver's V1 intake route, retrying transient failures with backoff.

    Retried: connection errors, timeouts, 429 and 5xx (delay `backoff * 2**attempt`, or Retry-After, capped at
    60 s). Any other non-2xx status fails at once. `retries` counts the attempts after the first one.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        retries: int = 5,
        backoff: float = 1.0,
        timeout: float = 30.0,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.target = f"{url.rstrip('/')}/intake/"
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._sleep = sleep
        self._api_key = api_key or None
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:
        key = "***" if self._api_key else None
        return f"HttpSink({self.target!r}, api_key={key!r}, retries={self.retries})"

    def _redact(self, text: str) -> str:
        if self._api_key:
            for secret in {self._api_key, urllib.parse.quote(self._api_key, safe="")}:
                text = text.replace(secret, "***")
        return text

    def _request(self, body: bytes) -> urllib.request.Request:
        headers = {"Content-Type": "application/json"}
        url = self.target
        if self._api_key:
            headers["sts-api-key"] = self._api_key
            url += "?api_key=" + urllib.parse.quote(self._api_key, safe="")
        return urllib.request.Request(url, data=body, headers=headers, method="POST")

    def _attempt(self, request: urllib.request.Request) -> tuple[bool, str, float | None, int | None]:
        """One POST: (retriable, problem, Retry-After seconds, HTTP status); problem is "" on success."""
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
            return False, "", None, response.status
        except urllib.error.HTTPError as exc:
            with exc:
                status = exc.code
                detail = exc.read(300).decode("utf-8", "replace").strip()
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            problem = f"HTTP {status} {exc.reason}" + (f": {detail}" if detail else "")
            return status == 429 or status >= 500, problem, retry_after, status
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
            return True, f"connection failed: {text}", None, None
        except (OSError, http.client.HTTPException) as exc:
            return True, f"connection failed: {type(exc).__name__}: {exc}", None, None

    def send(self, payload: dict, name: str) -> None:
        """POST one payload; raise DeliveryError (target without query string) after the last failure."""
        request = self._request(encode(payload))
        problem, status = "", None
        attempts = 0
        for attempt in range(self.retries + 1):
            attempts = attempt + 1
            retriable, problem, retry_after, status = self._attempt(request)
            if not problem:
                log.debug("event=sink.sent name=%s target=%s status=%s", name, self.target, status)
                return
            problem = self._redact(problem)
            if not retriable or attempt == self.retries:
                break
            delay = min(retry_after if retry_after is not None else self.backoff * 2**attempt, MAX_DELAY)
            log.warning(
                "event=sink.retry name=%s target=%s problem=%r delay=%.1f", name, self.target, problem, delay
            )
            self._sleep(delay)
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


class SpoolingSink:
    """Wraps a sink so failed payloads land in the State spool instead of being lost.

    Order is kept: while the spool holds anything, or once a delivery failed in this run, new payloads are
    spooled behind it rather than sent. `flush_spool()` re-sends the spool oldest first, deleting each entry
    only after it was delivered.
    """

    def __init__(self, inner: Sink, state: State) -> None:
        self.inner = inner
        self.state = state
        self.spooled = 0
        self.flushed = 0
        self._failing = False

    def __repr__(self) -> str:
        return f"SpoolingSink({self.inner!r}, spooled={self.spooled}, flushed={self.flushed})"

    def _spool(self, payload: dict, name: str, reason: str) -> None:
        self.state.spool_put(name, payload)
        self.spooled += 1
        log.warning("event=sink.spooled name=%s reason=%r", name, reason)

    def send(self, payload: dict, name: str) -> None:
        """Deliver, or spool durably on DeliveryError (recorded in `spooled`, not raised)."""
        if not self._failing and self.state.spool_count():
            self.flush_spool()  # leaves the spool empty, or sets _failing
        if self._failing:
            self._spool(payload, name, "queued behind undelivered payloads")
            return
        try:
            self.inner.send(payload, name)
        except DeliveryError as exc:
            self._failing = True
            self._spool(payload, name, str(exc))

    def flush_spool(self) -> int:
        """Re-send spooled payloads oldest first, stopping at the first failure; returns how many went."""
        delivered = 0
        for spool_id, name, payload in self.state.spool_items():
            try:
                self.inner.send(payload, name)
            except DeliveryError as exc:
                self._failing = True
                log.warning("event=sink.flush_stopped name=%s problem=%r", name, str(exc))
                break
            self.state.spool_delete(spool_id)
            delivered += 1
        else:
            self._failing = False
        self.flushed += delivered
        return delivered
