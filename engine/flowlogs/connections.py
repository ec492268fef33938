"""Flow logs: an account's new VPC flow-log objects become traffic relations, then are deleted.

In: `Config`, one `Instance`, `Mappings` (their `interfaces:` say how to list network interfaces), a sink,
the `State`. Out: `AccountFlows`. Steps: refuse an unversioned bucket; list
`AWSLogs/{account}/vpcflowlogs/{region}/` (or its Hive-compatible form) of each configured region; read
each object into per-flow sums (`records`); map each flow's interface to its VPC and addresses (one
interface listing per region with objects); keep private traffic between two addresses of a VPC, never
through a NAT gateway or an application load balancer; fold both directions and both interfaces of an
address pair into one connection; send one delta of `vpc.request` components, `flowlog` relations and the
four `aws.flowlog.bytes_*` gauges; and only then delete the objects read (one S3 keeps is recorded and
deleted again by the next runs, never read twice). Each object is read on its own, so none can stop the
others: one that fails (any error reading or summing it, a denied or archived `GetObject`, too large
unpacked) is corrupt: left in place, recorded and not read again while unchanged; one whose problem may
pass (throttling, the network, a full disk) waits for the next run. Known-corrupt objects are left out
before the `MAX_OBJECTS` window is taken.

How each figure is computed (the predecessor counted every byte twice, once per interface):
- a byte from A to B is counted once: as the sending interface logged it, or, when only the receiving
  interface has flow logs, as that one logged it;
- `local` is the client, `remote` the server: the address using the lower port (5432 beside an ephemeral
  port) is the server; equal ports: the lower address is local. This does not depend on the order of records
  (the agent's "first record's source is local" did), so a connection keeps its orientation run after run;
- `bytes_sent` = client to server, `bytes_received` = server to client; `*_per_second` divides by the
  connection's span, last record end minus first record start (0 for a zero span).
Beyond the predecessor, when both addresses belong to components of the last full scan (an interface's
declared `owner`, or a component whose URN is `urn:vpcip:{vpc}/{ip}`, such as an RDS instance whose
endpoint resolves to it), a `flowlog` relation joins those two components directly.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError

from engine.aws.fetch import Fetcher
from engine.aws.log_bucket import LogBucket, Unversioned
from engine.aws.sessions import Account, assume, partition
from engine.core.config import Config, Instance
from engine.core.errors import (
    AccessDenied,
    CallFailed,
    CredentialsError,
    DeliveryError,
    Interrupted,
    TopologyError,
    Unreachable,
)
from engine.core.phase import LIMITS, Limits, PhaseResult
from engine.core.stackpack import STACKPACK_LABEL, integration_tags
from engine.core.state import State
from engine.delivery.payload import build_payloads
from engine.delivery.sinks import Sink
from engine.flowlogs.records import MAX_UNPACKED, Flow, FlowSums, UnsupportedObject, unpacked
from engine.language.components import context, labels_for, relation, with_vars
from engine.language.dialect import search
from engine.language.loader import Interfaces, Mappings
from engine.scan.last_snapshot import unit_results

log = logging.getLogger("aws_topology")

# Flow logs write under the first prefix, or the second with "Hive-compatible S3 prefixes" on.
PREFIXES = (
    "AWSLogs/{account}/vpcflowlogs/{region}/",
    "AWSLogs/aws-account-id={account}/aws-service=vpcflowlogs/aws-region={region}/",
)
UNDELETED_KEY = "flowlogs.undeleted.{account}"  # delivered, but S3 kept them: key -> ETag and version
MAX_OBJECTS = 2000  # per account and run, known-corrupt ones not counted; the rest waits for the next run
READERS = 2  # objects unpacked and read at once: one's single-threaded steps overlap the other's parsing
RECENT_KEY = "flowlogs.recent.{account}.{slot}"  # one kv value per minute of the last hour, reused in turn
RECENT_SECONDS = 3600  # connections seen this recently are sent again after a full snapshot replaced them
SLOT_SECONDS = 60
SLOTS = RECENT_SECONDS // SLOT_SECONDS + 1
UNREADABLE = ("InvalidObjectState",)  # GetObject codes (besides access denied) that no retry will change
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
LOG_LINES = 20  # per connection, in the relation's data
GAUGES = ("bytes_sent", "bytes_sent_per_second", "bytes_received", "bytes_received_per_second")
_REGION = re.compile(r"/vpcflowlogs/([a-z0-9-]+)/|/aws-region=([a-z0-9-]+)/")
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
Known = tuple[set[str], dict[str, str]]  # the last full scan's component ids, and URN -> id


@dataclass
class AccountFlows(PhaseResult):
    bucket: str
    absent: bool = False  # the bucket does not exist: flow logs are not set up
    objects: int = 0
    waiting: int = 0  # beyond MAX_OBJECTS: read next run
    unread: dict[str, str] = field(default_factory=dict)  # key -> a passing problem: read next run
    not_deleted: dict[str, str] = field(default_factory=dict)  # key -> S3 error code
    records: int = 0
    skipped: Counter = field(default_factory=Counter)  # records left out, by reason
    connections: int = 0
    direct: int = 0  # component-to-component relations
    resent: int = 0  # recent connections sent again after a full snapshot
    payloads: int = 0
    deleted: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not (self.error or self.corrupt or self.unread or self.not_deleted)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "status": "complete" if self.complete else "INCOMPLETE",
            "bucket": f"{self.bucket}{' (absent)' if self.absent else ''}", "objects": self.objects,
            "records": self.records, "connections": self.connections, "direct_relations": self.direct,
            "resent_connections": self.resent,
            "payloads": self.payloads, "deleted_objects": len(self.deleted),
            "corrupt_objects": len(self.corrupt), "waiting_objects": self.waiting,
            **{f"skipped_{reason}": n for reason, n in sorted(self.skipped.items()) if n},
        }  # fmt: skip
        if self.error:
            summary["error"] = repr(self.error)
        if self.interrupted:
            summary["interrupted"] = True
        return summary

    def note(self, problem: str) -> None:
        self.error = f"{self.error}; {problem}" if self.error else problem


@dataclass
class Interface:
    id: str
    vpc: str
    addresses: frozenset[str]
    public: dict[str, str]  # private address -> its public address
    owner: str | None
    excluded: bool
    described: Any


@dataclass
class Connection:
    """Traffic between two addresses of a VPC, both directions, from every interface that logged it."""

    vpc: str
    low: str
    high: str
    sent: dict[tuple[str, str], int] = field(default_factory=dict)  # (src, dst) -> bytes the sender logged
    received: dict[tuple[str, str], int] = field(default_factory=dict)  # ... the receiver logged
    port: dict[str, int] = field(default_factory=dict)  # address -> lowest port it used
    protocols: set[int] = field(default_factory=set)
    interfaces: dict[str, Interface] = field(default_factory=dict)  # those that logged it
    holders: dict[str, Interface] = field(default_factory=dict)  # address -> the interface that has it
    start: int = 0
    end: int = 0
    records: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.vpc}/{self.low}/{self.high}"

    def add(self, interface: Interface, key: tuple[str, str, str, int], flow: Flow, outbound: bool) -> None:
        _, src, dst, protocol = key
        side = self.sent if outbound else self.received
        side[(src, dst)] = side.get((src, dst), 0) + (flow.bytes or 0)
        for address, port in ((src, flow.srcport), (dst, flow.dstport)):
            if port is not None:
                self.port[address] = min(port, self.port.get(address, port))
        self.protocols.add(protocol)
        self.interfaces[interface.id] = interface
        self.start = min(self.start or flow.start, flow.start)
        self.end = max(self.end, flow.end)
        self.records += flow.records
        if len(self.log) < LOG_LINES:
            self.log.append(
                f"{interface.id} {src} -> {dst} {PROTOCOLS.get(protocol, protocol)}: {flow.records} records, "
                f"{flow.packets or 0} packets, {flow.bytes or 0} bytes, {flow.start}-{flow.end}"
            )

    def bytes(self, src: str, dst: str) -> int:
        """Bytes from src to dst, each counted once: as the sender logged them, else as the receiver did."""
        return self.sent.get((src, dst), self.received.get((src, dst), 0))

    def ends(self) -> tuple[str, str]:
        """(client, server): the server is the address that used the lower port."""
        low, high = self.port.get(self.low, 1 << 16), self.port.get(self.high, 1 << 16)
        return (self.high, self.low) if low < high else (self.low, self.high)


def apply_flowlogs(
    config: Config,
    instance: Instance,
    mappings: Mappings,
    sink: Sink,
    state: State,
    fetcher: Fetcher,
    *,
    limits: Limits = LIMITS,
    endpoint_url: str | None = None,
    base: boto3.Session | None = None,
    after_snapshot: bool = False,
    max_unpacked: int = MAX_UNPACKED,
) -> AccountFlows:
    """Read the account's new flow-log objects. `after_snapshot`: a full snapshot of the account was just
    sent, which deleted the flow-log components it does not hold; the connections seen in the last
    `RECENT_SECONDS` are sent again with this run's delta. `max_unpacked`: bytes per object, unpacked;
    a larger object is corrupt."""
    started = time.monotonic()
    result = AccountFlows(instance.account_id, instance.flowlog_bucket_name)
    try:
        account = assume(config, instance, base=base, endpoint_url=endpoint_url, workers=limits.workers)
        _run(account, instance, mappings, sink, state, fetcher, result, limits.max_bytes, after_snapshot,
             max_unpacked)  # fmt: skip
    except (CredentialsError, Unversioned) as exc:
        result.error, result.bad_input = str(exc), True
    except Unreachable as exc:
        result.error = str(exc)
    for problems, what in ((result.unread, "left for the next run"), (result.not_deleted, "not deleted")):
        if problems:
            result.note(f"{what}: " + ", ".join(f"{k} ({v})" for k, v in sorted(problems.items())))
    result.seconds = time.monotonic() - started
    return result


def _run(
    account: Account, instance: Instance, mappings: Mappings, sink: Sink, state: State, fetcher: Fetcher,
    result: AccountFlows, max_bytes: int, after_snapshot: bool, max_unpacked: int,
) -> None:  # fmt: skip
    bucket = LogBucket(account, result.bucket, fetcher, state, "flowlogs")
    try:
        bucket.check_versioned()
    except CallFailed as exc:
        if getattr(exc, "code", None) == "NoSuchBucket":  # flow logs are not set up: nothing to read
            result.absent = True
        else:
            result.error = f"cannot read flow logs from bucket {bucket.name}: {exc}"
        return
    try:
        regions = [r for r in instance.regions if r != "global"]
        objects = bucket.objects([p.format(account=account.id, region=r) for r in regions for p in PREFIXES])
    except CallFailed as exc:
        result.error = f"cannot read flow logs from bucket {bucket.name}: {exc}"
        return
    done, objects = _undeleted(state, account.id, objects)
    undeleted: dict[str, dict] = {}  # rebuilt: the objects listed now that S3 still keeps
    _delete(bucket, state, account.id, done, result, undeleted)
    corrupt = bucket.known_corrupt()
    wanted = _window(objects, bucket, corrupt, result)
    try:  # first, so that records of unknown interfaces and public peers are dropped as objects are read
        regions = sorted({_region(o["Key"]) for o in wanted})
        interfaces = {r: _interfaces(account, r, mappings.interfaces, fetcher) for r in regions}
    except CallFailed as exc:
        result.error = f"cannot list network interfaces: {exc}; no object was read or deleted"
        return
    sums = {r: FlowSums(interfaces=set(interfaces[r]), private=_private) for r in regions}
    read = _read_all(wanted, bucket, corrupt, sums, result, max_unpacked)
    bucket.save_corrupt(corrupt, {o["Key"] for o in objects})
    recent = _recent(state, account.id) if after_snapshot else {}
    if not read:
        if recent:
            _send(account.id, recent, {}, [], [], sink, state, result, max_bytes)
        return
    known = _last_snapshot(state, instance, mappings)
    components, relations, metrics, seen = [], [], [], {}
    for region, region_sums in sums.items():
        result.records += region_sums.records
        result.skipped["no_data"] += region_sums.skipped_status
        result.skipped["bad_line"] += region_sums.bad_lines
        result.skipped.update(region_sums.skipped)
        connections = _connections(region_sums, interfaces[region], result.skipped)
        for connection in connections:
            c, r, m = _output(connection, region, account.id, instance, known)
            components += c
            relations += r
            metrics += m
            seen[connection.id] = {"at": time.time(), "components": c, "relations": r}
            result.direct += len(r) - 1
        result.connections += len(connections)
    again = {k: v for k, v in recent.items() if k not in seen}
    if _send(account.id, again, seen, components, relations, sink, state, result, max_bytes, metrics):
        _delete(bucket, state, account.id, read, result, undeleted)


def _undeleted(state: State, account: str, objects: list[dict]) -> tuple[list[dict], list[dict]]:
    """(objects delivered by an earlier run that S3 did not delete, the others): the first are deleted
    again, never read twice (their bytes were counted)."""
    record = state.get(UNDELETED_KEY.format(account=account), {})
    done, others = [], []
    for obj in objects:
        entry = record.get(obj["Key"])
        if entry and entry["etag"] == obj.get("ETag"):
            done.append({**obj, "VersionId": entry["version"]} if entry["version"] else obj)
        else:
            others.append(obj)
    return done, others


def _delete(
    bucket: LogBucket, state: State, account: str, objects: list[dict], result: AccountFlows,
    undeleted: dict[str, dict],
) -> None:  # fmt: skip
    """Delete objects whose delta was delivered; those S3 keeps are recorded in `undeleted` and the state."""
    if not objects:
        return
    deletion = bucket.delete(objects)
    result.deleted += deletion.deleted
    result.not_deleted.update(deletion.failed)
    for obj in objects:
        if obj["Key"] in deletion.failed:
            undeleted[obj["Key"]] = {"etag": obj.get("ETag"), "version": obj.get("VersionId")}
    state.set(UNDELETED_KEY.format(account=account), undeleted)


def _window(objects: list[dict], bucket: LogBucket, corrupt: dict, result: AccountFlows) -> list[dict]:
    """The objects to read this run: known-corrupt ones are left out first, then the oldest `MAX_OBJECTS`."""
    fresh = []
    for obj in objects:
        if problem := bucket.corrupt_problem(obj, corrupt):
            result.corrupt[obj["Key"]] = problem
        else:
            fresh.append(obj)
    result.objects, result.waiting = min(len(fresh), MAX_OBJECTS), max(0, len(fresh) - MAX_OBJECTS)
    return fresh[:MAX_OBJECTS]


def _read_all(
    wanted: list[dict], bucket: LogBucket, corrupt: dict, sums: dict[str, FlowSums], result: AccountFlows,
    max_unpacked: int,
) -> list[dict]:  # fmt: skip
    """Read each object into its region's sums (`READERS` at once, merged in order); return those read
    whole. No object's failure stops the others: it is recorded corrupt, or, when the problem may pass, left
    for the next run."""
    read = []

    def own(obj: dict, paths: list[Path]) -> FlowSums:  # filtered as read: lines left out are counted
        return sums[_region(obj["Key"])].of_files(paths, parquet=obj["Key"].endswith(".parquet"))

    with tempfile.TemporaryDirectory(prefix="flowlogs-") as directory:
        for obj, content in unpacked(
            wanted, bucket.chunks, Path(directory), parquet=lambda o: o["Key"].endswith(".parquet"),
            limit=max_unpacked, read=own, workers=READERS,
        ):  # fmt: skip
            problem = content if isinstance(content, Exception) else _merge(obj, content, sums)
            if problem is None:
                read.append(obj)
            else:
                _refuse(obj, problem, bucket, corrupt, result)
    return read


def _merge(obj: dict, own: FlowSums, sums: dict[str, FlowSums]) -> Exception | None:
    """Merge an object's own sums into its region's, whole or not at all; the failure, if any."""
    try:
        sums[_region(obj["Key"])].merge(own)
    except Exception as exc:  # whatever it is, it is this object's
        return exc
    return None


def _refuse(obj: dict, problem: Exception, bucket: LogBucket, corrupt: dict, result: AccountFlows) -> None:
    """Record an object that could not be read: corrupt (kept, not read again while unchanged), or unread
    when the problem may pass (throttling, the network, a full disk, a key gone since the listing)."""
    if isinstance(problem, Interrupted):
        raise problem
    if isinstance(problem, AccessDenied) or getattr(problem, "code", None) in UNREADABLE:
        text = f"unreadable: {problem}"
    elif isinstance(problem, TopologyError | BotoCoreError) or getattr(problem, "errno", None) in DISK_FULL:
        result.unread[obj["Key"]] = str(problem)[:300]
        return
    else:
        text = (
            str(problem) if isinstance(problem, UnsupportedObject) else f"{type(problem).__name__}: {problem}"
        )
    result.corrupt[obj["Key"]] = text[:300]
    bucket.record_corrupt(corrupt, obj, text[:300])


def _recent(state: State, account: str) -> dict[str, dict]:
    """The connections sent in the last `RECENT_SECONDS`, by connection id."""
    found: dict[str, dict] = {}
    for slot in range(SLOTS):
        kept = state.get(RECENT_KEY.format(account=account, slot=slot)) or {}
        for connection, sent in kept.get("connections", {}).items():
            if sent["at"] >= time.time() - RECENT_SECONDS and sent["at"] >= found.get(connection, sent)["at"]:
                found[connection] = sent
    return found


def _remember(state: State, account: str, seen: dict[str, dict]) -> None:
    """Record this run's connections as recent: in this minute's slot, so a run writes only its own."""
    minute = int(time.time() // SLOT_SECONDS)
    key = RECENT_KEY.format(account=account, slot=minute % SLOTS)
    kept = state.get(key) or {}
    earlier = kept.get("connections", {}) if kept.get("minute") == minute else {}
    state.set(key, {"minute": minute, "connections": {**earlier, **seen}})


def _send(
    account: str, again: dict[str, dict], seen: dict[str, dict], components: list[dict],
    relations: list[dict], sink: Sink, state: State, result: AccountFlows, max_bytes: int,
    metrics: list[list] | None = None,
) -> bool:  # fmt: skip
    """Send this run's connections (and `again`, recent ones a full snapshot removed) as one delta; record
    them as recent once delivered. False when the delta could not be delivered."""
    components = [c for v in again.values() for c in v["components"]] + components
    relations = [r for v in again.values() for r in v["relations"]] + relations
    payloads = build_payloads(
        account, components, relations, snapshot=False, max_bytes=max_bytes, metrics=metrics or []
    )
    try:
        for number, payload in enumerate(payloads, 1):
            sink.send(payload, f"flowlogs-{account}-{number:04d}")
    except DeliveryError as exc:
        result.error = f"flow-log delta not delivered, no object deleted: {exc}"
        return False
    result.payloads, result.resent = len(payloads), len(again)
    if seen:
        _remember(state, account, seen)
    return True


def _region(key: str) -> str:
    """The region in a listed key (every listed prefix names one)."""
    found = _REGION.search(key)
    assert found is not None, key
    return found.group(1) or found.group(2)


def _interfaces(account: Account, region: str, specs: tuple[Interfaces, ...], fetcher: Fetcher) -> dict:
    """interface id -> Interface, for every declared interface listing of the region."""
    found: dict[str, Interface] = {}
    for spec in specs:
        call = spec.listing.call
        assert call is not None
        answer = fetcher.call(account, region, spec.service, call, dict(call.params))
        for raw in search(spec.listing.items, answer) or []:
            item = with_vars(spec.vars, context(raw, account.id, region, partition(region)))
            found_id = search(spec.id, item)
            if not found_id:
                continue
            public = search(spec.public_ips, item) if spec.public_ips else None
            found[found_id] = Interface(
                id=found_id,
                vpc=search(spec.vpc, item) or "",
                addresses=frozenset(a for a in search(spec.addresses, item) or [] if isinstance(a, str)),
                public={p["private"]: p["public"] for p in public or [] if isinstance(p, dict)},
                owner=search(spec.owner, item) if spec.owner else None,
                excluded=bool(search(spec.exclude, item)) if spec.exclude else False,
                described=search(spec.describe, item) if spec.describe else {"id": found_id},
            )
    return found


@lru_cache(maxsize=1 << 16)
def _private(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_private
    except ValueError:
        return False


def _connections(sums: FlowSums, interfaces: dict[str, Interface], skipped: Counter) -> list[Connection]:
    """Private traffic between two addresses of a VPC, keyed `{vpc}/{lower ip}/{higher ip}`."""
    by_address = {(i.vpc, a): i for i in interfaces.values() for a in i.addresses}
    connections: dict[str, Connection] = {}
    for key, flow in sums.flows().items():
        interface, src, dst = interfaces.get(key[0]), key[1], key[2]
        if interface is None:  # sums made without the interfaces
            skipped["unknown_interface"] += flow.records
            continue
        if src in interface.addresses or dst in interface.addresses:
            outbound = src in interface.addresses
        else:
            skipped["not_its_address"] += flow.records
            continue
        low, high = sorted((src, dst))
        connection = connections.setdefault(
            f"{interface.vpc}/{low}/{high}", Connection(interface.vpc, low, high)
        )
        connection.add(interface, key, flow, outbound)
        for address in (src, dst):
            if address not in connection.holders and (holder := by_address.get((interface.vpc, address))):
                connection.holders[address] = holder
    for connection in list(connections.values()):
        if any(i.excluded for i in connection.holders.values()):
            skipped["nat_or_load_balancer"] += connections.pop(connection.id).records
    return sorted(connections.values(), key=lambda c: c.id)


def _last_snapshot(state: State, instance: Instance, mappings: Mappings) -> Known:
    """The external ids of the last full scan's components, and `urn:vpcip:` / `urn:host:` URN -> id."""
    ids: set[str] = set()
    by_urn: dict[str, str] = {}
    for _, unit in unit_results(state, instance, mappings):
        for component in (unit or {}).get("components", []):
            ids.add(component["externalId"])
            for urn in component.get("data", {}).get("URN", []):
                if urn.startswith(("urn:vpcip:", "urn:host:")):
                    by_urn.setdefault(urn, component["externalId"])
    return ids, by_urn


def _owner(connection: Connection, address: str, known: Known) -> str | None:
    ids, by_urn = known
    holder = connection.holders.get(address)
    if holder is not None and holder.owner in ids:
        return holder.owner
    return by_urn.get(f"urn:vpcip:{connection.vpc}/{address}")


def _output(
    connection: Connection, region: str, account: str, instance: Instance, known: Known
) -> tuple[list[dict], list[dict], list[list]]:
    """The two `vpc.request` components, the `flowlog` relation(s) and the four gauges of a connection."""
    client, server = connection.ends()
    labels = labels_for(instance)
    public = {a: p for i in connection.holders.values() for a, p in i.public.items()}
    local, remote = f"local/{connection.id}", f"remote/{connection.id}"

    def placeholder(external_id: str, address: str) -> dict:
        urns = [f"urn:vpcip:{connection.vpc}/{address}"]
        if address in public:
            urns.append(f"urn:host:/{public[address]}")
        data = {
            "Name": address, "URN": urns, "identifiers": urns,
            "Location": {"AwsAccount": account, "AwsRegion": region},
            "labels": sorted({STACKPACK_LABEL, *labels.tags}),
            "tags": integration_tags(labels.account, labels.tags),
        }  # fmt: skip
        return {"externalId": external_id, "type": {"name": "vpc.request"}, "data": data}

    sent, received = connection.bytes(client, server), connection.bytes(server, client)
    span = connection.end - connection.start
    figures = {
        "bytes_sent": sent, "bytes_received": received,
        "bytes_sent_per_second": sent / span if span > 0 else 0,
        "bytes_received_per_second": received / span if span > 0 else 0,
    }  # fmt: skip
    protocols = sorted(connection.protocols)
    source, target = local.replace(".", "_"), remote.replace(".", "_")
    data = {
        "traffic_type": str(protocols[0]) if len(protocols) == 1 else "unknown",
        "family": "v6" if ":" in client else "v4",
        "local_address": client, "remote_address": server,
        "start": connection.start, "end": connection.end, "records": connection.records,
        "bytes_sent": sent, "bytes_received": received,
        "log": connection.log,
        "network_interfaces": [i.described for i in connection.interfaces.values()],
        "source": source, "target": target,
    }  # fmt: skip
    relations = [relation(local, remote, "flowlog", data)]
    ends = (_owner(connection, client, known), _owner(connection, server, known))
    if ends[0] and ends[1] and ends[0] != ends[1]:
        direct = {k: data[k] for k in ("traffic_type", "family", "local_address", "remote_address",
                                       "bytes_sent", "bytes_received", "start", "end")}  # fmt: skip
        relations.append(relation(ends[0], ends[1], "flowlog", {**direct, "connection": connection.id}))
    tags = [f"source:{source}", f"target:{target}"]
    metrics = [
        [f"aws.flowlog.{name}", connection.end, figures[name], {"hostname": "aws-topology", "tags": tags,
                                                                 "type": "gauge"}]
        for name in GAUGES
    ]  # fmt: skip
    return [placeholder(local, client), placeholder(remote, server)], relations, metrics
