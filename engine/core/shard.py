"""Shards: many processes (Kubernetes Indexed Job pods) sharing one state, each taking part of the accounts.

`--shard INDEX/COUNT` (or `JOB_COMPLETION_INDEX` with `AWS_TOPOLOGY_SHARDS`) gives a process a stable share:
the accounts in sorted order, every COUNT-th from INDEX, so the shares differ by one account at most. With
`--claim` a shard takes any account no other process holds, one by one, so a shard done early takes more (an
uneven estate balances). Either way a shard claims each account in the state before it works on it
(`State.claim`), so no account is worked on twice at once, and a crashed shard's claims end with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from engine.core.errors import BadInput

INDEX_VARIABLE = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an Indexed Job
COUNT_VARIABLE = "AWS_TOPOLOGY_SHARDS"  # the Job's completions, set in the manifest

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based); `claim`: take accounts as they come rather than a fixed share."""

    index: int
    count: int
    claim: bool = False

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def share(self, accounts: Sequence[str]) -> frozenset[str]:
        """This shard's fixed share of `accounts`: every `count`-th in sorted order, from `index`."""
        return frozenset(sorted(set(accounts))[self.index :: self.count])

    def order(self, items: Sequence[T]) -> list[T]:
        """`items` starting at this shard's slice of them, so that claiming shards start apart."""
        start = len(items) * self.index // self.count
        return [*items[start:], *items[:start]]


class ShardError(BadInput):
    """A `--shard` value or shard variables that do not name a shard."""

    fmt = "{source}: {problem}"


def parse_shard(text: str, claim: bool = False, source: str = "--shard") -> Shard:
    """`INDEX/COUNT` as a `Shard`; `ShardError` says what is wrong."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", text)
    if not match:
        raise ShardError(source=source, problem=f"{text[:40]!r} is not INDEX/COUNT, e.g. 0/4")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise ShardError(source=source, problem=f"{text!r}: INDEX counts from 0 and must be below COUNT >= 1")
    return Shard(index, count, claim)


def shard_of(option: str | None, claim: bool, environ: Mapping[str, str]) -> Shard | None:
    """The shard from `--shard`, else from `JOB_COMPLETION_INDEX` and `AWS_TOPOLOGY_SHARDS`; None when the
    run is not sharded. `--claim` alone is one shard among any number (`0/1` claiming)."""
    if option is not None:
        return parse_shard(option, claim)
    index, count = environ.get(INDEX_VARIABLE), environ.get(COUNT_VARIABLE)
    if index is None and count is None:
        return Shard(0, 1, claim=True) if claim else None
    if index is None or count is None:
        have, missing = (INDEX_VARIABLE, COUNT_VARIABLE)
        if index is None:
            have, missing = missing, have
        raise ShardError(source=have, problem=f"is set but {missing} is not; set both, or neither")
    return parse_shard(f"{index}/{count}", claim, source=f"{INDEX_VARIABLE}/{COUNT_VARIABLE}")
