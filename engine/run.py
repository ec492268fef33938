"""The run cycle: which phases run, in what order, and what a run leaves behind.

In: `RunSettings` (the loaded config and mappings, the `Phases`, where payloads go, `Limits`), the locked
`State`, a stop event. Out: the exit code (`engine.core.errors.EXIT_*`), the worst of the accounts'. Steps:
the spool is re-sent first; a full scan of the accounts that are due (`Phases.scan`), then event deltas, then
flow logs, each account on its own (a failure or a stop is that account's incomplete run); each account's run
is recorded in the state; each phase writes its metrics file beside the state (`{state}.prom`,
`{state}.events.prom`, `{state}.flowlogs.prom`) and prints its `key=value` lines through `echo`; with `--out`,
`manifest.json` is written last. A shard (`RunSettings.shard`) works only on the accounts it claims
(`Claims`), and runs the traces phase only when it claims that job of the whole estate. Undelivered payloads
(spooled, rejected, still in the spool) make the run incomplete. A due account that would scan nothing
raises `ConfigError` before any phase; a state that fails mid-run raises `StateError`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from engine.aws.fetch import Fetcher
from engine.aws.organizations import discovered
from engine.core.config import Config, Instance
from engine.core.errors import EXIT_INCOMPLETE, EXIT_OK, ConfigError, Interrupted
from engine.core.phase import LIMITS, Failed, Limits, PhaseResult
from engine.core.proxy import resolve_proxies
from engine.core.shard import Shard
from engine.core.state import State
from engine.delivery.http import HttpSink, shown_url
from engine.delivery.sinks import FileSink, Sink
from engine.delivery.spool import DELIVERED, REJECTED, SpoolingSink
from engine.events.delta import apply_events
from engine.flowlogs.connections import apply_flowlogs
from engine.language.loader import Mappings
from engine.metrics import write_metrics, write_phase_metrics
from engine.scan.full_scan import PATIENCE, AccountScan, scan
from engine.scan.plan import plan
from engine.scan.progress import LiveProgress, UnitLog
from engine.traces.apply import apply_traces, read_pending
from engine.traces.objects import read_objects

log = logging.getLogger("aws_topology")

Echo = Callable[[str], None]


def due(config: Config, state: State) -> list[Instance]:
    """Accounts whose last full scan that closed its snapshot (units carried forward included) is older
    than `full_run_interval` (or that never had one); an unreachable or interrupted scan does not count."""
    now = datetime.now(UTC)
    found = []
    for instance in config.instances:
        last = state.last_run(instance.account_id, "scan", closed_only=True)
        if last is None or (now - last["started_at"]).total_seconds() >= config.full_run_interval:
            found.append(instance)
    return found


@dataclass(frozen=True)
class Phases:
    """What a command runs: a full scan of the accounts `scan` gives, then event deltas, flow logs, traces."""

    scan: Callable[[Config, State], list[Instance]]
    events: bool = False
    flowlogs: bool = False
    traces: bool = False


SCAN = Phases(lambda config, state: list(config.instances))
EVENTS = Phases(lambda config, state: [], events=True)
FLOWLOGS = Phases(lambda config, state: [], flowlogs=True)
TRACES = Phases(lambda config, state: [], traces=True)
RUN = Phases(due, events=True, flowlogs=True, traces=True)  # what cron calls every minute


@dataclass(frozen=True)
class RunSettings:
    """One run: exactly one of `out` (a folder) or `receiver` (a URL; the API key is `STS_API_KEY`);
    `table`: print components per type; `delivery_budget`: seconds the run may spend delivering."""

    config: Config
    mappings: Mappings
    phases: Phases
    out: str | None = None
    receiver: str | None = None
    limits: Limits = LIMITS
    table: bool = False
    delivery_budget: float = 45.0
    shard: Shard | None = None
    metrics: str | None = None  # a folder for the metrics files; default: beside a SQLite state file


class Claims:
    """The accounts a shard works on in this run: its share (or, claiming, any account no other process
    holds), each claimed in the state when its turn comes and held until the run ends. Keys besides account
    ids: `traces`, the traces phase of the whole estate, and `other`, spooled payloads of accounts no longer
    configured (shard 0's, or the first claimer's)."""

    def __init__(self, shard: Shard, state: State, config: Config) -> None:
        self.shard, self.state = shard, state
        accounts = [i.account_id for i in config.instances]
        self.share = frozenset(accounts) if shard.claim else shard.share(accounts)
        self.known = {*accounts, *(f"{a}/traces" for a in accounts)}
        self.held: set[str] = set()
        self.busy: set[str] = set()
        if shard.claim or shard.index == 0:
            self.take("other")

    def order(self, instances: tuple[Instance, ...]) -> list[Instance]:
        """The instances this shard may work on, in the order it tries them."""
        return self.shard.order([i for i in instances if i.account_id in self.share])

    def take(self, key: str) -> bool:
        """Whether this shard works on `key` (an account id, `traces`, `other`): claimed now or before."""
        if key in self.held:
            return True
        if key in self.share or key in ("traces", "other"):
            if self.state.claim(key):
                self.held.add(key)
                return True
            self.busy.add(key)
        return False

    def owns(self, url: str | None) -> bool:
        """Whether a spooled payload of `url` (an account, `{account}/traces`) is this shard's to send."""
        if url is None or url not in self.known:
            return "other" in self.held
        account, _, rest = url.partition("/")
        return ("traces" if rest else account) in self.held

    def line(self) -> str:
        accounts = sorted(self.held - {"traces", "other"})
        busy = sorted(self.busy)
        return (
            f"shard {self.shard} claim={str(self.shard.claim).lower()} accounts={len(accounts)}"
            f" traces={str('traces' in self.held).lower()}" + (f" busy={','.join(busy)}" if busy else "")
        )


def run_cycle(settings: RunSettings, state: State, stop: threading.Event, echo: Echo = print) -> int:
    """Run the phases of `settings` on the locked `state`; return the exit code."""
    every = 0.0 if settings.phases is SCAN else settings.config.full_run_interval  # `scan` always asks
    found, undiscovered = discovered(settings.config, state, echo, stop, every=every)
    settings = replace(settings, config=found)
    config, phases = settings.config, settings.phases
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    claims = Claims(settings.shard, state, config) if settings.shard else None
    scanned = replace(config, instances=tuple(phases.scan(config, state)))
    refuse_empty_plans(scanned, settings.mappings)  # only a snapshot deletes
    if claims:
        scanned = replace(scanned, instances=tuple(claims.order(scanned.instances)))
    proxies = resolve_proxies(config.proxy) if config.proxy else None
    sink = _sink(settings, state, run_id, proxies, stop, claims)
    if isinstance(sink, SpoolingSink):
        sink.flush_spool()  # every phase re-sends what earlier runs spooled, first
    run = _Run(settings, state, sink, stop, echo, claims)
    results: list[AccountScan] = []
    codes: list[int] = [EXIT_INCOMPLETE] if undiscovered else []  # a list not refreshed, or no list
    if scanned.instances:
        results = run.full_scans(scanned)
        if settings.table:
            _table(results, echo)
        codes += [a.code for a in results]
    if phases.events and not stop.is_set():
        codes += run.deltas()
    if phases.flowlogs and not stop.is_set():
        codes += run.flows({a.account for a in results if a.closes_snapshot})
    if phases.traces and not stop.is_set() and (claims is None or claims.take("traces")):
        codes += run.traces()
    if isinstance(sink, FileSink):
        _write_manifest(sink.directory, run_id, results, interrupted=stop.is_set())
    if claims:
        if isinstance(sink, SpoolingSink) and not sink.failing and not stop.is_set():
            sink.flush_spool()  # what earlier runs spooled for an account that sent nothing new
        echo(claims.line())
    undelivered = {k: n for k in ("spooled", "rejected", "overflowed") if (n := getattr(sink, k, 0))}
    undelivered |= {k: n for k, n in _spool_left(state, sink).items() if n}
    if undelivered:
        echo("delivery " + " ".join(f"{k}={v}" for k, v in undelivered.items()))
        codes.append(EXIT_INCOMPLETE)
    return max(codes, default=EXIT_OK)


@dataclass
class _Run:
    """What the phases of one run share."""

    settings: RunSettings
    state: State
    sink: Sink
    stop: threading.Event
    echo: Echo
    claims: Claims | None = None

    def full_scans(self, config: Config) -> list[AccountScan]:
        """Scan the accounts of `config`, record each run, print the summary line and write the metrics
        file. On a terminal one live line per account; under cron a log line per unit."""
        started = time.monotonic()
        fetcher = Fetcher(self.stop, patience=PATIENCE)
        progress = LiveProgress(fetcher, sys.stderr) if sys.stderr.isatty() else UnitLog()
        results, calls = scan(
            config, self.settings.mappings, self.sink, limits=self.settings.limits, state=self.state,
            fetcher=fetcher, progress=progress, claim=self._claim_scan if self.claims else None,
        )  # fmt: skip
        progress.close()
        if (path := self._metrics("")) is not None:
            write_metrics(path, results, fetcher, time.monotonic() - started, self._shard_label())
        for a in results:
            fate = self.sink.snapshot_fate(a.account) if isinstance(self.sink, SpoolingSink) else DELIVERED
            complete = a.complete and fate != REJECTED  # a payload of the snapshot was rejected or trimmed
            self.state.record_run(a.account, "scan", a.started_at, a.started_at + a.seconds, complete,
                                  a.summary(fate))  # fmt: skip
        self.echo(_scan_line(results, calls, time.monotonic() - started, self._target()))
        return results

    def _claim_scan(self, instance: Instance) -> bool:
        """Claim `instance` for its full scan, if still due once claimed (another shard may just have scanned
        it)."""
        assert self.claims is not None
        due_now = self.settings.phases.scan(replace(self.settings.config, instances=(instance,)), self.state)
        return self.claims.take(instance.account_id) and bool(due_now)

    def deltas(self) -> list[int]:
        """Apply each account's new events."""
        s, fetcher = self.settings, Fetcher(self.stop)
        return self._phase(
            "events",
            lambda i: apply_events(s.config, i, s.mappings, self.sink, self.state, fetcher, limits=s.limits),
            fetcher,
        )

    def flows(self, snapshots: set[str]) -> list[int]:
        """Turn each account's new flow-log objects into traffic relations; `snapshots`: the accounts whose
        full snapshot this run closed."""
        s, fetcher = self.settings, Fetcher(self.stop)
        return self._phase(
            "flowlogs",
            lambda i: apply_flowlogs(
                s.config, i, s.mappings, self.sink, self.state, fetcher, limits=s.limits,
                after_snapshot=i.account_id in snapshots,
            ),
            fetcher,
        )  # fmt: skip

    def traces(self) -> list[int]:
        """Turn the received traced calls (and each account's trace objects, where it reads them) into each
        account's trace relations; the received calls are deleted only when every account's relations were
        delivered (or spooled)."""
        s, fetcher = self.settings, Fetcher(self.stop)
        pending = read_pending(self.state, s.mappings, {i.account_id for i in s.config.instances})

        def one(instance: Instance) -> PhaseResult:
            objects = None
            if instance.trace_objects:
                objects = read_objects(s.config, instance, self.state, fetcher, workers=s.limits.workers)
            return apply_traces(
                instance, pending, self.sink, self.state, ttl=s.config.trace_relation_ttl,
                max_bytes=s.limits.max_bytes, objects=objects,
            )  # fmt: skip

        codes = self._phase("traces", one, fetcher)
        if len(codes) == len(s.config.instances) and all(code == EXIT_OK for code in codes):
            pending.consume(self.state)
        return codes

    def _phase(self, kind: str, one: Callable[[Instance], PhaseResult], fetcher: Fetcher) -> list[int]:
        """Run `one` per account, each on its own: a stop or a failure is recorded as that account's
        incomplete run (a failure lets the next account go on); one line per account; then the phase's
        metrics file (with each account's AWS calls, counted by `fetcher`, and the phase's seconds). The exit
        code of each account."""
        codes, rows, phase_started = [], [], time.monotonic()
        instances = self.settings.config.instances
        sharded = self.claims is not None and kind != "traces"  # traces: one job of the whole estate
        for instance in self.claims.order(instances) if self.claims and sharded else instances:
            if self.stop.is_set():
                break
            if self.claims and sharded and not self.claims.take(instance.account_id):
                continue  # another shard's
            started = time.time()
            try:
                result = one(instance)
                if self.stop.is_set() and not result.complete:
                    result.interrupted = True
            except Exception as exc:  # one account's failure is its own
                interrupted = isinstance(exc, Interrupted) or self.stop.is_set()
                error = f"{type(exc).__name__}: {exc}"
                result = Failed(instance.account_id, error=error, interrupted=interrupted, started_at=started,
                                seconds=time.time() - started)  # fmt: skip
                if not interrupted:
                    log.error("event=%s.failed account=%s error=%r", kind, instance.account_id, error)
            account, summary = instance.account_id, result.summary()
            finished = result.started_at + result.seconds
            self.state.record_run(account, kind, result.started_at, finished, result.complete, summary)
            self.echo(f"{kind} account={account} " + " ".join(f"{k}={v}" for k, v in summary.items()))
            codes.append(result.code)
            calls = fetcher.per_account.get(account, {}).get("calls", 0)
            rows.append(
                {"account": account, "complete": result.complete, "seconds": result.seconds, **summary,
                 "api_calls": calls}
            )  # fmt: skip
        if (path := self._metrics(f".{kind}")) is not None:
            seconds = time.monotonic() - phase_started
            write_phase_metrics(path, kind, rows, seconds, self._shard_label())
        return codes

    def _metrics(self, kind: str) -> Path | None:
        """The metrics file of a phase (`kind`: "" for the scan, else `.events`...): in `--metrics DIR`, else
        beside a SQLite state file; a shard's own (`.shard-{index}`), never overwritten by another shard."""
        folder = self.settings.metrics
        base = Path(folder) / "aws-topology" if folder else self.state.path
        if not isinstance(base, Path):
            return None  # a PostgreSQL state and no --metrics
        if self.claims is not None:
            kind = f".shard-{self.claims.shard.index}{kind}"
        return base.with_name(base.stem + kind + ".prom")

    def _shard_label(self) -> str | None:
        return None if self.claims is None else str(self.claims.shard.index)

    def _target(self) -> str:
        return str(getattr(self.sink, "directory", shown_url(str(self.settings.receiver))))


def refuse_empty_plans(config: Config, mappings: Mappings) -> None:
    """An instance that would scan nothing would close an empty snapshot, deleting its whole topology."""
    for instance in config.instances:
        if not plan(instance, mappings):
            apis = "(all)" if instance.apis_to_run is None else list(instance.apis_to_run)
            raise ConfigError(
                file=config.path or "-",
                key="instances",
                problem=f"{instance.role_arn}: regions {list(instance.regions)} and apis_to_run {apis} "
                "select no resource type; an empty snapshot would delete the account's whole topology",
            )


def _sink(
    settings: RunSettings,
    state: State,
    run_id: str,
    proxies: dict[str, str] | None,
    stop: threading.Event,
    claims: Claims | None,
) -> Sink:
    """Files go to a folder of their own per run (`{out}/run-{id}/`), so two runs never mix. A receiver's
    deliveries end at `stop` or once the delivery budget was spent; what is left is spooled. A shard sends
    only the spooled payloads of what it claimed."""
    if settings.out:
        return FileSink(Path(settings.out) / f"run-{run_id}")
    http = HttpSink(str(settings.receiver), os.environ.get("STS_API_KEY"), proxies=proxies, stop=stop,
                    budget=settings.delivery_budget)  # fmt: skip
    return SpoolingSink(http, state, owns=claims.owns if claims else None)


def _spool_left(state: State, sink: Sink) -> dict[str, int]:
    """What waits in the spool after the run (a shard's: of what it claimed): pending entries, and rejected
    ones an operator must requeue or drop (`aws-topology spool`); either makes the run exit 1."""
    count = sink.pending if isinstance(sink, SpoolingSink) else state.spool_count
    return {"pending": count("pending"), "rejected_in_spool": count("rejected")}


def _write_manifest(directory: Path, run_id: str, results: list[AccountScan], interrupted: bool) -> None:
    """`manifest.json`, written last: which payload files this run wrote and whether each snapshot closed.

    A run folder without a manifest is a run that died midway: nothing in it reads as complete.
    """
    manifest = {
        "run": run_id,
        "interrupted": interrupted,
        "accounts": {
            a.account: {
                "snapshot_closed": a.closes_snapshot,
                "complete": a.complete,
                "payloads": [f"scan-{a.account}-{n:04d}.json" for n in range(1, a.payloads + 1)],
            }
            for a in results
        },
    }
    FileSink(directory).send(manifest, "manifest")


def _table(results: list[AccountScan], echo: Echo) -> None:
    for account in results:
        echo(f"account {account.account}:")
        components, relations = account.component_types, account.relation_types  # of the payloads sent
        for name, count in sorted(components.items()):
            echo(f"  {name:<40} {count:>6} components")
        for name, count in sorted(relations.items()):
            echo(f"  {name:<40} {count:>6} relations")
        for gap in account.gaps():
            echo(f"  permission gap: {gap}")


def _scan_line(results: list[AccountScan], calls: int, seconds: float, target: str) -> str:
    parts = []
    for a in results:
        status = "complete" if a.complete else ("unreachable" if a.error else "INCOMPLETE")
        status = "interrupted" if a.interrupted else status
        bad = [u.unit.label for u in a.units if not u.complete]
        carried = [f"{label}({age / 3600:.1f}h)" for label, age in a.carried.items()]
        parts.append(
            f"account={a.account} status={status} components={a.component_count} "
            f"relations={a.relation_count} payloads={a.payloads} "
            f"snapshot_closed={str(a.closes_snapshot).lower()}"
            + (f" incomplete_units={','.join(bad)}" if bad else "")
            + (f" carried_forward={','.join(carried)}" if carried else "")
            + (f" error={a.error!r}" if a.error else "")
        )
    return f"scan {' '.join(parts)} calls={calls} seconds={seconds:.2f} to={target}"


@contextmanager
def stopping_on(stop: threading.Event) -> Iterator[list[int]]:
    """SIGINT/SIGTERM set `stop` (the scan ends at its next API call); a second signal kills at once.
    Yields the signals received."""
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()
        log.warning("event=run.stopping signal=%s", signal.Signals(signum).name)
        signal.signal(signum, signal.SIG_DFL)

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
