"""The last snapshot of the configured accounts, read back for the topology page.

Two sources:
- the state (default): each unit's last complete result, which `engine.scan.full_scan` keeps under
  `unit.{label}` for carrying forward. It is what the last full scan sent (carried-forward units included),
  whatever the sink (receiver or files), and it survives a later scan that failed. Only the units the config
  plans now are read.
- a folder of payload files (`--out` runs): the newest `run-*/manifest.json` that lists the account with
  payloads; only the files its manifest names (a folder without a manifest is a run that died midway).

Event deltas applied since the full scan are not in either: the page shows full scans.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.core.config import Config, Instance
from engine.core.errors import BadInput
from engine.core.stackpack import TRACE_SOURCE
from engine.core.state import State
from engine.language.components import relation
from engine.language.loader import Mappings
from engine.scan.plan import Unit, plan


class SnapshotError(BadInput):
    fmt = "{source}: {problem}"


@dataclass
class Snapshot:
    """Components and relations of the configured accounts, once per external id."""

    source: str
    accounts: list[str]
    components: list[dict] = field(default_factory=list)
    relations: list[dict] = field(default_factory=list)
    taken_at: dict[str, float] = field(default_factory=dict)  # account -> time of its oldest result
    notes: list[str] = field(default_factory=list)  # what is missing or not closed

    def add(self, components: list[dict], relations: list[dict]) -> None:
        self.components += components
        self.relations += relations

    def deduplicated(self) -> Snapshot:
        components = {c["externalId"]: c for c in self.components}
        relations = {r["externalId"]: r for r in self.relations}
        return replace(self, components=list(components.values()), relations=list(relations.values()))


def unit_labels(instance: Instance, mappings: Mappings) -> Iterator[str]:
    """The labels of every unit result a full scan of `instance` records: each root and its child types."""

    def walk(unit: Unit) -> Iterator[str]:
        yield unit.label
        for child in mappings.children(unit.resource):
            yield from walk(replace(unit, resource=child))

    for unit in plan(instance, mappings):
        yield from walk(unit)


def unit_results(state: State, instance: Instance, mappings: Mappings) -> Iterator[tuple[str, dict | None]]:
    """(label, last complete result, or None when it never completed) of every unit a full scan of
    `instance` records."""
    for label in unit_labels(instance, mappings):
        yield label, state.get(f"unit.{label}")


def from_state(path: str | Path, config: Config, mappings: Mappings) -> Snapshot:
    """Each planned unit's last complete result from the state, and the account's trace relations; a unit
    never completed is noted."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(
            source=str(path), problem="no state file here: run a scan first, or give --from DIR"
        )
    snapshot = Snapshot(f"state {path}", [i.account_id for i in config.instances])
    with State(path) as state:
        for instance in config.instances:
            oldest, never = time.time(), []
            for label, kept in unit_results(state, instance, mappings):
                if kept is None:
                    never.append(label)
                    continue
                snapshot.add(kept["components"], kept["relations"])
                oldest = min(oldest, kept["at"])
            if len(never) == sum(1 for _ in unit_labels(instance, mappings)):
                snapshot.notes.append(f"account {instance.account_id}: no full scan result in the state")
                continue
            snapshot.taken_at[instance.account_id] = oldest
            traced = sorted(state.trace_relations(instance.account_id))
            snapshot.add([], [relation(s, t, kind, {"Source": TRACE_SOURCE}) for s, t, kind in traced])
            if never:
                snapshot.notes.append(
                    f"account {instance.account_id}: {len(never)} unit(s) never completed: {', '.join(never)}"
                )
    if not snapshot.taken_at:
        raise SnapshotError(source=str(path), problem="no full scan result of any configured account")
    return snapshot.deduplicated()


def from_payloads(directory: str | Path, config: Config) -> Snapshot:
    """Per account, the payloads of the newest complete run folder (with a manifest) under `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SnapshotError(source=str(directory), problem="not a folder")
    manifests = sorted(
        [directory / "manifest.json"] if (directory / "manifest.json").is_file() else
        directory.glob("**/run-*/manifest.json"),
        key=lambda p: (p.stat().st_mtime, str(p)), reverse=True,
    )  # fmt: skip
    if not manifests:
        raise SnapshotError(
            source=str(directory), problem="no run folder with a manifest.json (no `--out` run)"
        )
    snapshot = Snapshot(f"payloads {directory}", [i.account_id for i in config.instances])
    for instance in config.instances:
        account = instance.account_id
        for manifest_path in manifests:
            manifest = _json(manifest_path)
            entry = manifest.get("accounts", {}).get(account)
            if not entry or not entry.get("payloads"):
                continue
            for name in entry["payloads"]:
                for topology in _json(manifest_path.parent / name).get("topologies", []):
                    snapshot.add(topology.get("components", []), topology.get("relations", []))
            snapshot.taken_at[account] = manifest_path.stat().st_mtime
            if not entry.get("snapshot_closed"):
                snapshot.notes.append(
                    f"account {account}: the snapshot of {manifest_path.parent.name} is open"
                )
            break
        else:
            snapshot.notes.append(f"account {account}: no payloads under {directory}")
    if not snapshot.taken_at:
        raise SnapshotError(source=str(directory), problem="no payloads of any configured account")
    return snapshot.deduplicated()


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SnapshotError(source=str(path), problem=f"unreadable: {exc}") from None
