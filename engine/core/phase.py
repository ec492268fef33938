"""What the three phases (full scan, event deltas, flow logs) share: their `Limits` in, a `PhaseResult`
per account out.

A result's `summary()` holds the `key=value` fields, in order, of the phase's line and its recorded run;
`code` is the exit code the account asks for.
"""

from __future__ import annotations

import time
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from engine.core.errors import EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_OK


@dataclass(frozen=True)
class Limits:
    """Tasks of one account run at once (`workers`), accounts scanned side by side, bytes per payload, and
    the threads of all accounts together (at most `workers` times `accounts`)."""

    workers: int = 8
    accounts: int = 16
    max_bytes: int = 1_000_000
    max_threads: int = 256


LIMITS = Limits()  # the command line's defaults


@dataclass
class PhaseResult:
    """One account's run of a phase."""

    account: str
    _: KW_ONLY
    error: str | None = None
    bad_input: bool = False  # ... because of its credentials, role or bucket (exit 2), not an outage (exit 1)
    interrupted: bool = False  # stopped by SIGINT/SIGTERM before it was complete
    started_at: float = field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.error is None and not self.interrupted

    @property
    def code(self) -> int:
        return EXIT_BAD_INPUT if self.bad_input else (EXIT_OK if self.complete else EXIT_INCOMPLETE)

    def summary(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class Failed(PhaseResult):
    """A phase that raised for one account (or was interrupted): the account's incomplete run."""

    def summary(self) -> dict[str, Any]:
        status = "interrupted" if self.interrupted else "INCOMPLETE"
        return {"status": status, "interrupted": self.interrupted, "error": self.error}
