"""The durable spool: `SpoolingSink` turns a transient delivery failure into a spool entry in the State, so
no payload is silently dropped, and records a permanent rejection (4xx other than 408/429) without letting it
block the payloads behind it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.core.errors import DeliveryError
from engine.delivery.sinks import Sink, is_rejection

if TYPE_CHECKING:
    from engine.core.state import State

log = logging.getLogger(__name__)

_NUMBERED = re.compile(r"^(?P<prefix>.*)-(?P<number>[0-9]+)$")


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

    A shard (`owns`, given the account of an entry, says whether this process may send it) re-sends only the
    entries of the accounts it holds, and only those hold its new payloads back: order is kept per account.
    """

    def __init__(
        self,
        inner: Sink,
        state: State,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 512 * 1024 * 1024,
        owns: Callable[[str | None], bool] | None = None,
    ) -> None:
        self.inner = inner
        self.owns = owns
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
            self.state.update(DAMAGED_KEY, lambda kept: sorted({*kept, snapshot}), [])

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
        if not self._failing and self.pending():
            self.flush_spool()  # leaves no pending entry of ours, or sets _failing
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
        for entry in self._entries("pending"):
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

    @property
    def failing(self) -> bool:
        """A delivery failed in this run (and was not healed by a flush): new payloads go to the spool."""
        return self._failing

    def pending(self, status: str = "pending") -> int:
        """How many entries of `status` wait in the spool that this sink may send (all, unless a shard's)."""
        if self.owns is None:
            return self.state.spool_count(status)
        return len(self._entries(status))

    def _entries(self, status: str) -> list[dict]:
        entries = self.state.spool_entries(status)
        return entries if self.owns is None else [e for e in entries if self.owns(e["account"])]

    def _forget_healed(self) -> None:
        """Stop keeping the damaged snapshots of earlier runs that have nothing left in the spool (a shard:
        of what it holds; another shard's run may still be sending the rest of its own)."""
        left = {e["snapshot"] for e in self.state.spool_entries() if e["snapshot"]}
        mine = self.owns or (lambda account: True)
        healed = {
            k
            for k in self._damaged
            if k not in left and not k.endswith(f":{self._run}") and mine(k.split(":")[0])
        }
        self._damaged -= healed
        if healed and self.state.get(DAMAGED_KEY, []):
            self.state.update(DAMAGED_KEY, lambda kept: sorted(set(kept) - healed), [])
