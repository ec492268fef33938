"""Sinks: intake payloads in, delivered payloads out; here the protocol, files, and what counts as rejected.

Every sink raises `DeliveryError` when a payload could not be delivered. The receiver's HTTP intake is in
`engine.delivery.http`; the durable spool that keeps what could not be delivered in `engine.delivery.spool`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from engine.core.errors import DeliveryError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Sink(Protocol):
    """Where payloads go; `name` is a short label such as `scan-123456789012-0001`."""

    def send(self, payload: dict, name: str) -> None:
        """Deliver one payload or raise DeliveryError."""
        ...


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
