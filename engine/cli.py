"""Command line: `aws-topology scan | events | flowlogs | run | status | spool | validate | ...`.

Exit codes: 0 complete, 1 ran but incomplete (an account's phase failed, delivery spooled, the spool holds
pending or rejected entries), 2 bad input (config, mappings, credentials), 3 the state is locked by another
run, 128 + signal when stopped by SIGINT/SIGTERM. Bad input is one clear message on stderr, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from engine.aws.fetch import Fetcher
from engine.aws.sessions import known_regions
from engine.core.config import Config, Instance, api_filter, load_config
from engine.core.errors import BadInput, ConfigError, Interrupted, Locked, StateError
from engine.core.proxy import resolve_proxies
from engine.core.state import State
from engine.delivery.http import HttpSink, shown_url
from engine.delivery.sinks import FileSink, Sink
from engine.delivery.spool import DELIVERED, REJECTED, SpoolingSink
from engine.deploy.policy import agent_policy, role_policy
from engine.deploy.template import render as render_template
from engine.events.delta import AccountDelta, apply_events
from engine.flowlogs.connections import apply_flowlogs
from engine.scan.collect import UnitResult
from engine.scan.full_scan import AccountScan, scan
from engine.scan.last_snapshot import from_payloads, from_state
from engine.scan.plan import plan
from engine.spec.loader import MAPPINGS, Mappings, load_mappings
from engine.view.page import write_page
from engine.view.stql import as_json as views_as_json
from engine.view.stql import as_text as views_as_text
from engine.view.stql import views_for

log = logging.getLogger("aws_topology")

EXIT_OK, EXIT_INCOMPLETE, EXIT_BAD_INPUT, EXIT_LOCKED = 0, 1, 2, 3

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="aws_topology conf.yaml",
)
mappings_option = click.option(
    "--mappings", "mappings_dir", default=str(MAPPINGS), show_default=True, type=click.Path(file_okay=False),
    help="Folder of mapping files.",
)  # fmt: skip


@click.group()
def main() -> None:
    """Declarative AWS topology collector emitting StackState receiver payloads."""


@main.command("validate")
@config_option
@mappings_option
def validate_command(config_path: str, mappings_dir: str) -> None:
    """Check the config and every mapping file, without calling AWS."""
    with _bad_input():
        config = load_config(config_path)
        mappings = load_mappings(mappings_dir)
    _warn_unknown_apis(config, mappings)
    click.echo(
        f"ok: {len(config.instances)} account(s), {len(mappings.resources)} resource types "
        f"in {len(mappings.services)} services"
    )


@main.command("policy")
@mappings_option
def policy_command(mappings_dir: str) -> None:
    """Print the IAM policy of the role in each monitored account, derived from the mappings."""
    with _bad_input():
        mappings = load_mappings(mappings_dir)
    click.echo(json.dumps(role_policy(mappings), indent=2))


@main.command("agent-policy")
def agent_policy_command() -> None:
    """Print the agent account's IAM policy: assume the integration role in the monitored accounts."""
    click.echo(json.dumps(agent_policy(), indent=2))


@main.command("cfn")
@mappings_option
@click.option("--out", type=click.Path(dir_okay=False), help="Write the template here instead of stdout.")
def cfn_command(mappings_dir: str, out: str | None) -> None:
    """Print the CloudFormation template each monitored account deploys, generated from the mappings."""
    with _bad_input():
        text = render_template(load_mappings(mappings_dir))
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)


def _run_options(command: Any) -> Any:
    """The options shared by scan, events and run."""
    for option in reversed(
        [
            config_option,
            mappings_option,
            click.option("--out", type=click.Path(file_okay=False), help="Write payloads as files here."),
            click.option("--receiver", help="StackState receiver base URL; the API key is STS_API_KEY."),
            click.option("--state", "state_path", default=".state/aws-topology.sqlite", show_default=True,
                         help="SQLite state (run history, spool, event bookkeeping, lock)."),
            click.option("--workers", default=8, show_default=True, type=click.IntRange(1, 64),
                         help="Units run at once."),
            click.option("--accounts", default=4, show_default=True, type=click.IntRange(1, 64),
                         help="Accounts scanned side by side (sharing the --workers threads)."),
            click.option("--max-payload-bytes", default=1_000_000, show_default=True,
                         type=click.IntRange(10_000)),
            click.option("--table/--no-table", default=None,
                         help="Print components per type (default: on a terminal)."),
            click.option("--delivery-budget", default=45.0, show_default=True, type=click.FloatRange(0),
                         help="Seconds the run may spend delivering; then the rest is spooled unsent."),
        ]
    ):  # fmt: skip
        command = option(command)
    return command


@main.command("scan")
@_run_options
def scan_command(**options: Any) -> None:
    """Full scan: one complete snapshot per account."""
    _session(options, scan_due=lambda config, state: list(config.instances), events=False)


@main.command("events")
@_run_options
def events_command(**options: Any) -> None:
    """Event deltas: apply the new EventBridge objects of each account's log bucket."""
    _session(options, scan_due=lambda config, state: [], events=True)


@main.command("flowlogs")
@_run_options
def flowlogs_command(**options: Any) -> None:
    """VPC flow logs: turn each account's new flow-log objects into traffic relations."""
    _session(options, scan_due=lambda config, state: [], events=False, flowlogs=True)


@main.command("plan")
@config_option
@mappings_option
@click.option("--per-item", is_flag=True, help="The naive plan: per-item calls instead of region-wide joins.")
def plan_command(config_path: str, mappings_dir: str, per_item: bool) -> None:
    """Print the call plan of a full scan, without calling AWS: per unit, its calls and their pacing."""
    from engine.scan.plan import format_plan, per_item_plan

    with _bad_input():
        config = load_config(config_path)
        mappings = load_mappings(mappings_dir)
    mappings = per_item_plan(mappings) if per_item else mappings
    click.echo("unit / resource, operation (client), how often, pacing (-: botocore's adaptive retries only)")
    for instance in config.instances:
        click.echo("\n".join(format_plan(plan(instance, mappings), mappings)))


@main.command("run")
@_run_options
def run_command(**options: Any) -> None:
    """What cron calls every minute: a full scan where `full_run_interval` has passed since the last
    complete one, then event deltas and flow logs for every account."""
    _session(options, scan_due=_due, events=True, flowlogs=True)


def _due(config: Config, state: State) -> list[Instance]:
    """Accounts whose last full scan that closed its snapshot (units carried forward included) is older
    than `full_run_interval` (or that never had one); an unreachable or interrupted scan does not count."""
    now = datetime.now(UTC)
    due = []
    for instance in config.instances:
        last = state.last_run(instance.account_id, "scan", closed_only=True)
        if last is None or (now - last["started_at"]).total_seconds() >= config.full_run_interval:
            due.append(instance)
    return due


def _session(options: dict[str, Any], scan_due: Any, events: bool, flowlogs: bool = False) -> None:
    """Load, check and lock; scan the accounts that are due, apply events; exit with the worst code."""
    stop = threading.Event()
    with _stopping_on(stop) as received:
        try:
            code = _work(stop=stop, scan_due=scan_due, events=events, flowlogs=flowlogs, **options)
        except StateError as exc:  # the state failed mid-run (locked past its timeout, disk full)
            click.echo(
                f"error: {exc}; the run stopped (what was not delivered stays in the bucket)", err=True
            )
            sys.exit(EXIT_INCOMPLETE)
        if received:
            name = signal.Signals(received[0]).name
            click.echo(f"error: stopped by {name}; the run is recorded as incomplete", err=True)
            sys.exit(128 + received[0])
    sys.exit(code)


def _work(
    *,
    config_path: str,
    mappings_dir: str,
    out: str | None,
    receiver: str | None,
    state_path: str,
    workers: int,
    accounts: int,
    max_payload_bytes: int,
    table: bool | None,
    delivery_budget: float,
    stop: threading.Event,
    scan_due: Any,
    events: bool,
    flowlogs: bool,
) -> int:
    interactive = sys.stderr.isatty()
    _logging(interactive)
    with _bad_input():
        config = load_config(config_path)
        mappings = load_mappings(mappings_dir)
        if bool(out) == bool(receiver):
            raise click.UsageError("give exactly one of --out DIR or --receiver URL")
    _warn_unknown_apis(config, mappings)
    with _bad_input():
        if receiver and not receiver.startswith(("http://", "https://")):
            raise click.UsageError(f"--receiver must be an http(s) URL, not {shown_url(receiver)[:80]!r}")
        state = _open_state(state_path)
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    codes: list[int] = []
    with state:
        due = scan_due(config, state)
        with _bad_input():
            _refuse_empty_plans(replace(config, instances=tuple(due)), mappings)  # only a snapshot deletes
        proxies = resolve_proxies(config.proxy) if config.proxy else None
        sink = _sink(out, receiver, state, run_id, proxies, stop, delivery_budget)
        if isinstance(sink, SpoolingSink):
            sink.flush_spool()  # every phase re-sends what earlier runs spooled, first
        target = str(getattr(sink, "directory", shown_url(str(receiver))))
        results: list[AccountScan] = []
        if due:
            scan_config = replace(config, instances=tuple(due))
            results = _full_scans(
                scan_config, mappings, state, sink, workers, max_payload_bytes, stop, target, accounts
            )
            if table if table is not None else sys.stdout.isatty():
                _table(results)
            codes += [_code(a.complete, a.bad_input) for a in results]
        if events and not stop.is_set():
            codes += _deltas(config, mappings, state, sink, workers, max_payload_bytes, stop)
        if flowlogs and not stop.is_set():
            snapshots = {a.account for a in results if a.closes_snapshot}
            codes += _flows(config, mappings, state, sink, workers, max_payload_bytes, stop, snapshots)
        if isinstance(sink, FileSink):
            _write_manifest(sink.directory, run_id, results, interrupted=stop.is_set())
        undelivered = {k: n for k in ("spooled", "rejected", "overflowed") if (n := getattr(sink, k, 0))}
        undelivered |= {k: n for k, n in _spool_left(state).items() if n}
    if undelivered:
        click.echo("delivery " + " ".join(f"{k}={v}" for k, v in undelivered.items()))
        codes.append(EXIT_INCOMPLETE)
    return max(codes, default=EXIT_OK)


def _spool_left(state: State) -> dict[str, int]:
    """What waits in the spool after the run: pending entries, and rejected ones an operator must requeue or
    drop (`aws-topology spool`); either makes the run exit 1."""
    return {"pending": state.spool_count(), "rejected_in_spool": state.spool_count("rejected")}


def _full_scans(
    config: Config, mappings: Mappings, state: State, sink: Sink, workers: int, max_bytes: int,
    stop: threading.Event, target: str, accounts: int = 4,
) -> list[AccountScan]:  # fmt: skip
    """Scan the accounts of `config`, record each run, print the summary line and write the metrics file.

    On a terminal one live line per account; under cron a log line per unit. Metrics: `{state}.prom`.
    """
    from engine.scan.full_scan import PATIENCE
    from engine.scan.progress import LiveProgress, write_metrics

    started = time.monotonic()
    fetcher = Fetcher(stop, patience=PATIENCE)
    live = LiveProgress(fetcher, sys.stderr) if sys.stderr.isatty() else None
    results, calls = scan(
        config, mappings, sink, workers=workers, accounts=accounts, max_bytes=max_bytes, state=state,
        stop=stop, fetcher=fetcher,
        on_unit=live.unit if live else _log_unit, on_plan=live.plan if live else lambda account, units: None,
    )  # fmt: skip
    if live:
        live.close()
    if isinstance(state.path, Path):
        write_metrics(state.path.with_suffix(".prom"), results, fetcher, time.monotonic() - started)
    for a in results:
        fate = sink.snapshot_fate(a.account) if isinstance(sink, SpoolingSink) else DELIVERED
        lost = fate == REJECTED  # a payload of the snapshot was rejected or trimmed: it did not close
        summary = {
            "components": a.component_count, "relations": a.relation_count, "payloads": a.payloads,
            "snapshot_closed": a.closes_snapshot and not lost, "carried": a.carried,
            "interrupted": a.interrupted, "gaps": a.gaps(),
            "incomplete_units": [u.unit.label for u in a.units if not u.complete],
            "delivered": a.payloads > 0 and fate == DELIVERED,
        }  # fmt: skip
        if a.error:
            summary["error"] = a.error
        finished = a.started_at + a.seconds
        state.record_run(a.account, "scan", a.started_at, finished, a.complete and not lost, summary)
    click.echo(_summary(results, calls, time.monotonic() - started, target))
    return results


def _deltas(
    config: Config, mappings: Mappings, state: State, sink: Sink, workers: int, max_bytes: int,
    stop: threading.Event,
) -> list[int]:  # fmt: skip
    """Apply each account's new events, record each run, print one line per account."""
    fetcher = Fetcher(stop)

    def one(instance: Instance) -> tuple[bool, bool, dict[str, Any], float, float]:
        delta = apply_events(
            config, instance, mappings, sink, state, fetcher, workers=workers, max_bytes=max_bytes
        )
        return delta.complete, delta.bad_input, _delta_summary(delta), delta.started_at, delta.seconds

    return _phase("events", config, state, stop, one)


def _flows(
    config: Config, mappings: Mappings, state: State, sink: Sink, workers: int, max_bytes: int,
    stop: threading.Event, snapshots: set[str],
) -> list[int]:  # fmt: skip
    """Turn each account's new flow-log objects into traffic relations; one line per account."""
    fetcher = Fetcher(stop)

    def one(instance: Instance) -> tuple[bool, bool, dict[str, Any], float, float]:
        flows = apply_flowlogs(
            config, instance, mappings, sink, state, fetcher, workers=workers, max_bytes=max_bytes,
            after_snapshot=instance.account_id in snapshots,
        )  # fmt: skip
        summary: dict[str, Any] = {
            "status": "complete" if flows.complete else "INCOMPLETE",
            "bucket": f"{flows.bucket}{' (absent)' if flows.absent else ''}", "objects": flows.objects,
            "records": flows.records, "connections": flows.connections, "direct_relations": flows.direct,
            "resent_connections": flows.resent,
            "payloads": flows.payloads, "deleted_objects": len(flows.deleted),
            "corrupt_objects": len(flows.corrupt), "waiting_objects": flows.waiting,
            **{f"skipped_{reason}": n for reason, n in sorted(flows.skipped.items()) if n},
        }  # fmt: skip
        if flows.error:
            summary["error"] = repr(flows.error)
        return flows.complete, flows.bad_input, summary, flows.started_at, flows.seconds

    return _phase("flowlogs", config, state, stop, one)


PhaseRun = Callable[[Instance], tuple[bool, bool, dict[str, Any], float, float]]


def _phase(kind: str, config: Config, state: State, stop: threading.Event, one: PhaseRun) -> list[int]:
    """Run `one` per account, each on its own: a stop or a failure is recorded as that account's incomplete
    run (a failure lets the next account go on); one line per account; then the phase's metrics file."""
    codes, rows = [], []
    for instance in config.instances:
        if stop.is_set():
            break
        started = time.time()
        try:
            complete, bad_input, summary, started, seconds = one(instance)
            if stop.is_set() and not complete:
                summary["interrupted"] = True
        except Exception as exc:  # one account's failure is its own
            interrupted = isinstance(exc, Interrupted) or stop.is_set()
            complete, bad_input, seconds = False, False, time.time() - started
            summary = {"status": "interrupted" if interrupted else "INCOMPLETE", "interrupted": interrupted}
            summary["error"] = f"{type(exc).__name__}: {exc}"
            if not interrupted:
                log.error("event=%s.failed account=%s error=%r", kind, instance.account_id, summary["error"])
        state.record_run(instance.account_id, kind, started, started + seconds, complete, summary)
        click.echo(
            f"{kind} account={instance.account_id} " + " ".join(f"{k}={v}" for k, v in summary.items())
        )
        codes.append(_code(complete, bad_input))
        rows.append({"account": instance.account_id, "complete": complete, "seconds": seconds, **summary})
    if isinstance(state.path, Path):
        from engine.scan.progress import write_phase_metrics

        write_phase_metrics(state.path.with_suffix(f".{kind}.prom"), kind, rows)
    return codes


def _code(complete: bool, bad_input: bool) -> int:
    return EXIT_BAD_INPUT if bad_input else (EXIT_OK if complete else EXIT_INCOMPLETE)


def _delta_summary(delta: AccountDelta) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "status": "complete" if delta.complete else "INCOMPLETE", "source": repr(delta.source),
        "objects": delta.objects, "envelopes": delta.envelopes, "unknown": delta.unknown,
        "changes": delta.changes, "components": delta.components, "deletes": delta.deletes,
        "payloads": delta.payloads, "deleted_objects": len(delta.deleted), "stale_objects": delta.stale,
        "kept_objects": len(delta.kept), "corrupt_objects": len(delta.corrupt), **delta.counts(),
    }  # fmt: skip
    if delta.failed_units:
        summary["failed_units"] = ",".join(delta.failed_units)
    if delta.error:
        summary["error"] = repr(delta.error)
    return summary


@contextmanager
def _stopping_on(stop: threading.Event) -> Iterator[list[int]]:
    """SIGINT/SIGTERM set `stop` (the scan ends at its next API call); a second signal kills at once."""
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


@main.group("spool")
def spool_group() -> None:
    """Payloads that could not be delivered: list, re-send or drop them.

    Pending entries are re-sent first by every run; rejected ones (a 4xx answer from the receiver) are
    kept to be looked at and never re-sent on their own: `requeue` them once the cause (a wrong API key)
    is fixed, or `drop` them.
    """


state_option = click.option(
    "--state", "state_path", default=".state/aws-topology.sqlite", show_default=True, help="SQLite state."
)


@main.command("status")
@click.option(
    "--state", "state_path", default=".state/aws-topology.sqlite", show_default=True, help="SQLite state."
)
def status_command(state_path: str) -> None:
    """Per account: the last full scan and delta run, permission gaps, corrupt objects; then the spool.

    Reads the state without its lock, so it answers while a run is under way."""
    with _bad_input(), State(state_path, read_only=True) as state:
        now = datetime.now(UTC)
        for account in state.accounts():
            click.echo(f"account {account}:")
            for kind in ("scan", "events", "flowlogs"):
                run = state.last_run(account, kind)
                if run is None:
                    click.echo(f"  {kind:<8} never")
                    continue
                done = state.last_run(account, kind, complete_only=True)
                age = (now - run["started_at"]).total_seconds()
                took = (run["finished_at"] - run["started_at"]).total_seconds()
                counts = {
                    k: v for k, v in run["summary"].items() if isinstance(v, int) and not isinstance(v, bool)
                }
                click.echo(
                    f"  {kind:<8} {'complete' if run['complete'] else 'INCOMPLETE':<10} {_age(age)} ago, "
                    f"took {took:.1f}s; "
                    + " ".join(f"{k}={v}" for k, v in counts.items())
                    + (
                        ""
                        if run["complete"] or done is None
                        else f"; last complete {_age((now - done['started_at']).total_seconds())} ago"
                    )
                )
                for label in run["summary"].get("incomplete_units", []):
                    click.echo(f"    incomplete: {label}")
                for gap in run["summary"].get("gaps", []):
                    click.echo(f"    permission gap: {gap}")
                if run["summary"].get("error"):
                    click.echo(f"    error: {run['summary']['error']}")
            for kind in ("events", "flowlogs"):
                for key, corrupt in sorted(state.get(f"{kind}.corrupt.{account}", {}).items()):
                    click.echo(f"  corrupt object (left in the bucket): {key}: {corrupt['problem']}")
        totals = state.spool_totals()
    click.echo(f"spool: pending={totals['pending']} rejected={totals['rejected']} bytes={totals['bytes']}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@spool_group.command("list")
@state_option
def spool_list(state_path: str) -> None:
    """One line per spooled payload, oldest first, then the totals (without the lock, as `status`)."""
    with _bad_input(), State(state_path, read_only=True) as state:
        for e in state.spool_entries():
            status = f"{e['status']}" + (f" (HTTP {e['http_status']})" if e["http_status"] else "")
            click.echo(
                f"{e['id']:>6}  {e['created']:%Y-%m-%d %H:%M:%S}  {e['name']:<28} {e['size']:>9} B  "
                f"{status:<16} {e['reason'] or ''}"
            )
        totals = state.spool_totals()
    click.echo(f"pending={totals['pending']} rejected={totals['rejected']} bytes={totals['bytes']}")


@spool_group.command("resend")
@state_option
@click.option(
    "--receiver", required=True, help="StackState receiver base URL; the API key comes from STS_API_KEY."
)
def spool_resend(state_path: str, receiver: str) -> None:
    """Re-send the pending payloads now; exit 1 while any stay pending."""
    _logging(sys.stderr.isatty())
    with _bad_input(), _open_state(state_path) as state:
        sink = SpoolingSink(HttpSink(receiver, os.environ.get("STS_API_KEY")), state)
        sent = sink.flush_spool()
        left = state.spool_count()
    click.echo(f"resent={sent} rejected={sink.rejected} pending={left}")
    sys.exit(EXIT_OK if left == 0 and not sink.rejected else EXIT_INCOMPLETE)


@spool_group.command("requeue")
@state_option
@click.argument("spool_id", required=False, type=int)
def spool_requeue(state_path: str, spool_id: int | None) -> None:
    """Make a rejected entry (or all of them) pending again."""
    with _bad_input(), _open_state(state_path) as state:
        click.echo(f"requeued={state.spool_requeue(spool_id)}")


@spool_group.command("drop")
@state_option
@click.argument("spool_id", required=False, type=int)
@click.option("--rejected", is_flag=True, help="Drop every rejected entry.")
def spool_drop(state_path: str, spool_id: int | None, rejected: bool) -> None:
    """Drop one entry by id, or every rejected one."""
    if (spool_id is None) == (not rejected):
        raise click.UsageError("give either a SPOOL_ID or --rejected")
    with _bad_input(), _open_state(state_path) as state:
        dropped = state.spool_drop_rejected() if rejected else int(state.spool_delete(spool_id or 0))
    click.echo(f"dropped={dropped}")
    sys.exit(EXIT_OK if dropped else EXIT_INCOMPLETE)


@main.command("views")
@config_option
@mappings_option
@click.option("--json", "json_out", is_flag=True, help="A JSON list of {name, description, query}.")
def views_command(config_path: str, mappings_dir: str, json_out: bool) -> None:
    """Print the StackPack's views of each account (All, Infrastructure, Serverless) as STQL queries."""
    with _bad_input():
        config = load_config(config_path)
        mappings = load_mappings(mappings_dir)
        views = [v for instance in config.instances for v in views_for(instance, mappings)]
    click.echo(views_as_json(views) if json_out else views_as_text(views))


@main.command("view")
@config_option
@mappings_option
@click.option(
    "--state",
    "state_path",
    default=".state/aws-topology.sqlite",
    show_default=True,
    help="Read each unit's last complete scan result from this state (the default source).",
)
@click.option(
    "--from",
    "from_dir",
    type=click.Path(file_okay=False),
    help="Read the newest `--out` run (run-*/manifest.json) under DIR instead of the state.",
)
@click.option(
    "--out",
    default="topology.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The HTML page to write.",
)
def view_command(
    config_path: str, mappings_dir: str, state_path: str, from_dir: str | None, out: str
) -> None:
    """Write the last snapshot of the configured accounts as one offline HTML page: the views as tabs,
    search, details and console links."""
    with _bad_input():
        config = load_config(config_path)
        mappings = load_mappings(mappings_dir)
        views = [v for instance in config.instances for v in views_for(instance, mappings)]
        snapshot = from_payloads(from_dir, config) if from_dir else from_state(state_path, config, mappings)
        summary = write_page(snapshot, views, out)
    for note in snapshot.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(summary)


def _open_state(path: str) -> State:
    """The checked, locked state; a second run on the same state exits with EXIT_LOCKED."""
    state = State(path).check()
    try:
        return state.lock()
    except Locked as exc:
        state.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_LOCKED)


def _refuse_empty_plans(config: Config, mappings: Mappings) -> None:
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


def _warn_unknown_apis(config: Config, mappings: Mappings) -> None:
    """apis_to_run may name StackPack APIs that no mapping provides yet: say so, then skip them.

    Region names that no AWS partition knows (typos, or a region newer than botocore) are named too.
    """
    for instance in config.instances:
        unknown_regions = [r for r in instance.regions if r != "global" and r not in known_regions()]
        if unknown_regions:
            click.echo(
                f"warning: {instance.role_arn}: no AWS partition knows the region(s) "
                f"{', '.join(unknown_regions)}; they are scanned as partition 'aws'",
                err=True,
            )
        unknown = sorted(set(api_filter(instance) or {}) - set(mappings.services))
        if unknown:
            click.echo(
                f"warning: {instance.role_arn}: apis_to_run names {', '.join(unknown)}, which no mapping "
                f"provides (skipped); known: {', '.join(sorted(mappings.services))}",
                err=True,
            )


def _sink(
    out: str | None, receiver: str | None, state: State, run_id: str, proxies: dict[str, str] | None = None,
    stop: threading.Event | None = None, budget: float | None = None,
) -> Sink:  # fmt: skip
    """Files go to a folder of their own per run (`{out}/run-{id}/`), so two runs never mix. A receiver's
    deliveries end at `stop` or once `budget` seconds were spent; what is left is spooled."""
    if out:
        return FileSink(Path(out) / f"run-{run_id}")
    http = HttpSink(str(receiver), os.environ.get("STS_API_KEY"), proxies=proxies, stop=stop, budget=budget)
    return SpoolingSink(http, state)


@contextmanager
def _bad_input() -> Iterator[None]:
    """Turn `BadInput` into one message on stderr and exit code 2."""
    try:
        yield
    except BadInput as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def _logging(interactive: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if interactive else logging.INFO,
        format="%(asctime)s level=%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)


def _log_unit(result: UnitResult) -> None:
    log.log(
        logging.INFO if result.complete else logging.WARNING,
        "event=unit.done unit=%s status=%s components=%d relations=%d seconds=%.3f%s",
        result.unit.label, result.status, len(result.components), len(result.relations), result.seconds,
        f" error={result.error!r}" if result.error else "",
    )  # fmt: skip


def _table(results: list[AccountScan]) -> None:
    for account in results:
        click.echo(f"account {account.account}:")
        components, relations = account.component_types, account.relation_types  # of the payloads sent
        for name, count in sorted(components.items()):
            click.echo(f"  {name:<40} {count:>6} components")
        for name, count in sorted(relations.items()):
            click.echo(f"  {name:<40} {count:>6} relations")
        for gap in account.gaps():
            click.echo(f"  permission gap: {gap}")


def _summary(results: list[AccountScan], calls: int, seconds: float, target: str) -> str:
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
