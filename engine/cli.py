"""Command line: `aws-topology scan | events | flowlogs | run | status | spool | validate | ...`.

Exit codes: 0 complete, 1 ran but incomplete (an account's phase failed, delivery spooled, the spool holds
pending or rejected entries), 2 bad input (config, mappings, credentials), 3 the state is locked by another
run, 128 + signal when stopped by SIGINT/SIGTERM. Bad input is one clear message on stderr, never a traceback.
The commands that run phases (scan, events, flowlogs, run) load and lock here, then call `engine.run`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from engine.aws.organizations import STATE_KEY as ORGANIZATIONS_KEY
from engine.aws.organizations import from_saved
from engine.aws.sessions import known_regions
from engine.core import botocore_data
from engine.core.allocator import limit_arenas
from engine.core.config import Config, api_filter, load_config
from engine.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_INCOMPLETE,
    EXIT_LOCKED,
    EXIT_OK,
    BadInput,
    ConfigError,
    Locked,
    StateError,
)
from engine.core.paths import SOURCE_TREE
from engine.core.phase import Limits
from engine.core.shard import shard_of
from engine.core.state import RUN_KINDS, State
from engine.delivery.http import HttpSink, shown_url
from engine.delivery.spool import SpoolingSink
from engine.deploy.policy import agent_policy, role_policy
from engine.deploy.template import render as render_template
from engine.language.catalogue import catalogue
from engine.language.loader import MAPPINGS, Mappings, load_mappings
from engine.language.samples import load_samples
from engine.run import EVENTS, FLOWLOGS, RUN, SCAN, TRACES, Phases, RunSettings, run_cycle, stopping_on
from engine.scan.last_snapshot import from_payloads, from_state
from engine.scan.plan import plan
from engine.view.page import write_page
from engine.view.stql import as_json as views_as_json
from engine.view.stql import as_text as views_as_text
from engine.view.stql import console_actions, views_for

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="aws_topology conf.yaml",
)
TEMPLATE_ACCOUNT = "000000000000"  # stands for each discovered account of an organization
mappings_option = click.option(
    "--mappings", "mappings_dir", default=str(MAPPINGS), show_default=True, type=click.Path(file_okay=False),
    help="Folder of mapping files.",
)  # fmt: skip


@click.group()
def main() -> None:
    """Declarative AWS topology collector emitting StackState receiver payloads."""
    limit_arenas()


@main.command("validate")
@config_option
@mappings_option
def validate_command(config_path: str, mappings_dir: str) -> None:
    """Check the config, every mapping file and every samples file (samples/), without calling AWS."""
    with _bad_input():
        config = load_config(config_path)
        mappings = load_mappings(mappings_dir)
        load_samples(mappings, Path(mappings_dir) / "samples")
    _warn_unknown_apis(config, mappings)
    organizations = f" and {len(config.organizations)} organization(s)" if config.organizations else ""
    click.echo(
        f"ok: {len(config.instances)} account(s){organizations}, {len(mappings.resources)} resource types "
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
@click.option(
    "--organizations", is_flag=True,
    help="Also list the organization's accounts (an `organization:` instance without a role_arn of its own).",
)  # fmt: skip
def agent_policy_command(organizations: bool) -> None:
    """Print the agent account's IAM policy: assume the integration role in the monitored accounts."""
    click.echo(json.dumps(agent_policy(organizations=organizations), indent=2))


out_option = click.option("--out", type=click.Path(dir_okay=False), help="Write it here instead of stdout.")


@main.command("cfn")
@mappings_option
@out_option
def cfn_command(mappings_dir: str, out: str | None) -> None:
    """Print the CloudFormation template each monitored account deploys, generated from the mappings."""
    with _bad_input():
        _print_or_write(render_template(load_mappings(mappings_dir)), out)


@main.command("types")
@mappings_option
@out_option
def types_command(mappings_dir: str, out: str | None) -> None:
    """Print the catalogue of component types (markdown): layer, mapping, calls, relations and events."""
    with _bad_input():
        _print_or_write(catalogue(load_mappings(mappings_dir)), out)


def _print_or_write(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)


def _run_options(command: Any, config: Any = config_option) -> Any:
    """The options shared by scan, events and run."""
    for option in reversed(
        [
            config,
            mappings_option,
            click.option("--out", type=click.Path(file_okay=False), help="Write payloads as files here."),
            click.option("--receiver", help="StackState receiver base URL; the API key is STS_API_KEY."),
            click.option("--state", "state_path", default=".state/aws-topology.sqlite", show_default=True,
                         envvar="AWS_TOPOLOGY_STATE",
                         help="State (run history, spool, event bookkeeping, lock): a SQLite path or a "
                              "postgresql:// URL."),
            click.option("--shard", metavar="INDEX/COUNT",
                         help="Be shard INDEX (from 0) of COUNT: a stable share of the accounts (default: "
                              "JOB_COMPLETION_INDEX and AWS_TOPOLOGY_SHARDS when set)."),
            click.option("--metrics", "metrics_dir", type=click.Path(file_okay=False),
                         help="Write the metrics files here (default: beside a SQLite state file)."),
            click.option("--claim", is_flag=True,
                         help="Shards take accounts no other shard holds, one by one, instead of a fixed "
                              "share (an uneven estate balances)."),
            click.option("--workers", default=8, show_default=True, type=click.IntRange(1, 64),
                         help="Requests in flight per account (AWS limits each account separately)."),
            click.option("--accounts", default=16, show_default=True, type=click.IntRange(1, 64),
                         help="Accounts scanned side by side, each with its own --workers."),
            click.option("--max-threads", default=256, show_default=True, type=click.IntRange(1, 4096),
                         help="Threads of all accounts together (at most --workers times --accounts)."),
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
    _session(options, SCAN)


@main.command("events")
@_run_options
def events_command(**options: Any) -> None:
    """Event deltas: apply the new EventBridge objects of each account's log bucket."""
    _session(options, EVENTS)


@main.command("flowlogs")
@_run_options
def flowlogs_command(**options: Any) -> None:
    """VPC flow logs: turn each account's new flow-log objects into traffic relations."""
    _session(options, FLOWLOGS)


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
    for org in config.organizations:  # discovered at run time: the plan of each of its accounts
        click.echo(f"{org.where}.organization: each discovered account ({TEMPLATE_ACCOUNT} below):")
        click.echo("\n".join(format_plan(plan(org.instance(TEMPLATE_ACCOUNT), mappings), mappings)))


@main.command("new")
@click.argument("service")
@mappings_option
def new_command(service: str, mappings_dir: str) -> None:
    """Write a first mapping file for SERVICE (a boto3 client name) from botocore's model: a resource per
    listing call, with its id, ARN and name; and its samples file (samples/SERVICE.yaml): a seed step per
    resource botocore can create, `expect` to fill in. Both pass `validate`; a start (docs/mappings.md)."""
    from engine.language.scaffold import ScaffoldError, scaffold, scaffold_samples

    path = Path(mappings_dir) / f"{service}.yaml"
    samples = Path(mappings_dir) / "samples" / f"{service}.yaml"
    with _bad_input():
        for existing in (p for p in (path, samples) if p.exists()):
            raise ScaffoldError(service=service, problem=f"{existing} exists already")
        text, samples_text = scaffold(service), scaffold_samples(service)
    samples.parent.mkdir(parents=True, exist_ok=True)  # and the mappings folder, when it is new
    path.write_text(text, encoding="utf-8")
    samples.write_text(samples_text, encoding="utf-8")
    click.echo(
        f"wrote {path}: {text.count('    type: ')} resource types, and {samples}; next: aws-topology validate"
    )


@main.command("record")
@click.argument("services", nargs=-1, required=True, metavar="SERVICE...")
def record_command(services: tuple[str, ...]) -> None:
    """Re-record each SERVICE's own cassette (cassettes/mappings/SERVICE.yaml) from its samples file: a fresh
    moto server, the demo estate and the service's seed steps, then its scan. Runs in a checkout of the
    repository with the test extras (`./run.sh record SERVICE` installs them)."""
    with _bad_input():
        argv = _record_argv(services)
    sys.exit(subprocess.call(argv, cwd=SOURCE_TREE))


def _record_argv(services: tuple[str, ...]) -> list[str]:
    """The pytest command that records `services`: each one's scan test of tests/mappings/test_samples.py."""
    test = SOURCE_TREE / "tests/mappings/test_samples.py"
    if not test.is_file():
        raise BadInput(problem=f"record runs in a checkout of the repository: no {test}")
    missing = [m for m in ("pytest", "pytest_recording", "vcr", "moto") if not importlib.util.find_spec(m)]
    if missing:
        raise BadInput(
            problem=f"record needs the test extras (pip install -e '.[test]'; ./run.sh record installs "
            f"them): {', '.join(missing)} not installed"
        )
    for name in services:
        if not (MAPPINGS / "samples" / f"{name}.yaml").is_file():
            raise BadInput(problem=f"no mappings/samples/{name}.yaml (aws-topology new {name} writes one)")
    node = f"{test}::test_the_scan_of_the_seed_finds_exactly_what_the_samples_file_expects"
    return [
        sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
        "--record-mode=rewrite", *(f"{node}[{name}]" for name in services),
    ]  # fmt: skip


@main.command("try")
@click.argument("mapping")
@click.argument("type_name", metavar="TYPE")
@click.option(
    "--response",
    "responses",
    multiple=True,
    metavar="[OP=]FILE",
    help="A saved response (`aws ... --output json`): FILE for TYPE's list call, OP=FILE for another call "
    "(a detail, a join, a parent's listing). Repeatable. Calls without one are not made, and are listed.",
)
@click.option("--live", is_flag=True, help="Make the calls instead (the default credential chain).")
@click.option("--endpoint-url", help="With --live: the endpoint (moto). Default: AWS_ENDPOINT_URL, else AWS.")
@click.option("--region", default="eu-west-1", show_default=True, help="The region the items belong to.")
@click.option("--account", default="123456789012", show_default=True, help="The account id (`_account`).")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@mappings_option
def try_command(
    mapping: str, type_name: str, responses: tuple[str, ...], live: bool, endpoint_url: str | None,
    region: str, account: str, as_json: bool, mappings_dir: str,
) -> None:  # fmt: skip
    """Shape saved (or live) API responses through one resource of one mapping file; print its components,
    relations and identifiers. MAPPING: a mapping file, or its name in --mappings (sqs); TYPE: a resource's
    short name or component type. An expression that fails names its key and the item; exit code 2."""
    from engine.aws.fetch import Fetcher
    from engine.aws.sessions import Account, boto3_session, client_config
    from engine.core.errors import CallFailed
    from engine.scan import trial

    path = Path(mapping) if mapping.endswith((".yaml", ".yml")) else Path(mappings_dir) / f"{mapping}.yaml"
    with _bad_input():
        if live == bool(responses):
            raise trial.TrialError(problem="give --response FILE (repeatable) or --live, not both")
        if endpoint_url and not live:
            raise trial.TrialError(problem="--endpoint-url goes with --live")
        if not path.is_file():
            raise trial.TrialError(problem=f"{path}: no such mapping file")
        mappings = load_mappings(path.parent)
        resource = trial.find_resource(mappings, path.name, type_name)
        saved = trial.saved_responses(mappings, resource, responses)
    fetcher: trial.Replay | trial.Recorder
    if live:
        session = boto3_session()
        owner = Account(account, "(default credentials)", session, client_config(1), endpoint_url)
        fetcher = trial.Recorder(Fetcher())
    else:
        owner = Account(account, "-", None, None)  # type: ignore[arg-type]  # a replay makes no call
        fetcher = trial.Replay(saved)
    try:
        with _bad_input():
            result = trial.run_trial(mappings, resource, fetcher, owner, region)
    except CallFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INCOMPLETE)
    except trial.SHAPING_ERRORS as exc:  # an expression or shape error: name the key and the item
        click.echo(f"error: {trial.explain(exc, mappings, fetcher.responses)}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(trial.as_json(result) if as_json else trial.as_text(result))


@main.command("run")
@_run_options
def run_command(**options: Any) -> None:
    """What cron calls every minute: a full scan where `full_run_interval` has passed since the last
    complete one, then event deltas and flow logs for every account."""
    _session(options, RUN)


@main.group("traces", invoke_without_command=True)
@functools.partial(
    _run_options,
    config=click.option(
        "-c", "--config", "config_path", type=click.Path(dir_okay=False), help="aws_topology conf.yaml"
    ),
)
@click.pass_context
def traces_group(ctx: click.Context, **options: Any) -> None:
    """OpenTelemetry traces: what a Lambda calls becomes a relation (docs/traces.md). Alone: turn the
    calls received so far into each account's trace relations (the traces phase of `run`); `traces serve`:
    receive them."""
    if ctx.invoked_subcommand is None:
        if options["config_path"] is None:
            raise click.UsageError("Missing option '-c' / '--config'.")
        _session(options, TRACES)


def _session(options: dict[str, Any], phases: Phases) -> None:
    """Load, check and lock; run the phases; exit with the worst code."""
    stop = threading.Event()
    with stopping_on(stop) as received:
        try:
            code = _work(options, phases, stop)
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


def _work(options: dict[str, Any], phases: Phases, stop: threading.Event) -> int:
    """The checked settings and the locked state, then the run cycle."""
    _logging(sys.stderr.isatty())
    out, receiver, table = options["out"], options["receiver"], options["table"]
    with _bad_input():
        config = load_config(options["config_path"])
        mappings = load_mappings(options["mappings_dir"])
        if bool(out) == bool(receiver):
            raise click.UsageError("give exactly one of --out DIR or --receiver URL")
    _warn_unknown_apis(config, mappings)
    botocore_data.forget()  # the whole models were for checking the mappings; clients carry narrowed ones
    with _bad_input():
        if receiver and not receiver.startswith(("http://", "https://")):
            raise click.UsageError(f"--receiver must be an http(s) URL, not {shown_url(receiver)[:80]!r}")
        shard = shard_of(options["shard"], options["claim"], os.environ)
        state = _open_state(options["state_path"], shared=shard is not None)
    settings = RunSettings(
        config, mappings, phases, out=out, receiver=receiver,
        limits=Limits(
            options["workers"], options["accounts"], options["max_payload_bytes"], options["max_threads"]
        ),
        table=sys.stdout.isatty() if table is None else table, delivery_budget=options["delivery_budget"],
        shard=shard, metrics=options["metrics_dir"],
    )  # fmt: skip
    with state, _bad_input(ConfigError):  # a due account that would scan nothing; not a state failing mid-run
        return run_cycle(settings, state, stop, click.echo)


@main.group("spool")
def spool_group() -> None:
    """Payloads that could not be delivered: list, re-send or drop them.

    Pending entries are re-sent first by every run; rejected ones (a 4xx answer from the receiver) are
    kept to be looked at and never re-sent on their own: `requeue` them once the cause (a wrong API key)
    is fixed, or `drop` them.
    """


state_option = click.option(
    "--state",
    "state_path",
    default=".state/aws-topology.sqlite",
    show_default=True,
    help="State: a SQLite path or a postgresql:// URL.",
)


@main.command("status")
@click.option(
    "--state",
    "state_path",
    default=".state/aws-topology.sqlite",
    show_default=True,
    help="State: a SQLite path or a postgresql:// URL.",
)
def status_command(state_path: str) -> None:
    """Per account: the last run of each phase, permission gaps, corrupt objects; then the spool and the
    traced spans.

    Reads the state without its lock, so it answers while a run is under way."""
    with _bad_input(), State(state_path, read_only=True) as state:
        now = datetime.now(UTC)
        for account in state.accounts():
            click.echo(f"account {account}:")
            for kind in RUN_KINDS:
                run = state.last_run(account, kind)
                if run is None:
                    if kind != "traces":  # a phase only those who send traces use
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
        for key, org in sorted((state.get(ORGANIZATIONS_KEY) or {}).items()):
            age = _age((now - datetime.fromisoformat(org["at"])).total_seconds())
            failed = (
                f"; failed {org['failures']} time(s) since: {org['error']}" if org.get("failures") else ""
            )
            click.echo(f"organization {org.get('instance', '-')} ({key}): accounts={org['total']} "
                       f"included={len(org['accounts'])}, listed {age} ago{failed}")  # fmt: skip
        totals = state.spool_totals()
        traces = state.traces_counts()
    click.echo(f"spool: pending={totals['pending']} rejected={totals['rejected']} bytes={totals['bytes']}")
    if traces["received"] or traces["applied"] or traces["dropped"]:
        counts = {k: traces[k] for k in ("received", "applied")} | {"pending": traces["pending_spans"]}
        counts["dropped"] = sum(traces["dropped"].values())
        counts |= {f"dropped.{k}": n for k, n in sorted(traces["dropped"].items())}
        click.echo("traces: " + " ".join(f"{k}={n}" for k, n in counts.items()) + " (spans)")


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


@traces_group.command("serve")
@click.option("--listen", default="127.0.0.1:8126", show_default=True, help="HOST:PORT to listen on.")
@state_option
@click.option(
    "--max-pending-spans", default=1_000_000, show_default=True, type=click.IntRange(1),
    help="Spans waiting for the traces phase beyond which a request is refused (503, Retry-After).",
)  # fmt: skip
def traces_serve(listen: str, state_path: str, max_pending_spans: int) -> None:
    """Receive OTLP/HTTP traces (POST /v1/traces, /open-telemetry) and append their AWS SDK calls to the
    state; never calls AWS, never takes the run lock. SIGTERM stops it cleanly."""
    from engine.traces.receiver import serve

    def log(line: str) -> None:
        click.echo(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {line}", err=True)

    with _bad_input():
        serve(listen, state_path, max_pending_spans, click.echo, log)
    sys.exit(EXIT_OK)


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
    for org in config.organizations:
        click.echo(
            f"note: {org.where}.organization: its accounts are discovered by a run; not listed", err=True
        )
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
        if config.organizations and (
            state_path.startswith(("postgres", "sqlite:")) or Path(state_path).is_file()
        ):
            with State(state_path, read_only=True) as state:
                config = from_saved(config, state)  # the accounts the last discovery listed
        views = [v for instance in config.instances for v in views_for(instance, mappings)]
        snapshot = from_payloads(from_dir, config) if from_dir else from_state(state_path, config, mappings)
        summary = write_page(snapshot, views, out, console_actions(mappings))
    for note in snapshot.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(summary)


def _open_state(path: str, shared: bool = False) -> State:
    """The checked, locked state (`shared` by the shards of a sharded run); a second run on the same state
    exits with EXIT_LOCKED."""
    state = State(path).check()
    try:
        return state.lock(shared=shared)
    except Locked as exc:
        state.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_LOCKED)


def _warn_unknown_apis(config: Config, mappings: Mappings) -> None:
    """apis_to_run may name StackPack APIs that no mapping provides yet: say so, then skip them.

    Region names that no AWS partition knows (typos, or a region newer than botocore) are named too.
    """
    templates = [(f"{o.where}.organization", o.instance(TEMPLATE_ACCOUNT)) for o in config.organizations]
    for name, instance in [*((i.role_arn, i) for i in config.instances), *templates]:
        unknown_regions = [r for r in instance.regions if r != "global" and r not in known_regions()]
        if unknown_regions:
            click.echo(
                f"warning: {name}: no AWS partition knows the region(s) "
                f"{', '.join(unknown_regions)}; they are scanned as partition 'aws'",
                err=True,
            )
        unknown = sorted(set(api_filter(instance) or {}) - set(mappings.services))
        if unknown:
            click.echo(
                f"warning: {name}: apis_to_run names {', '.join(unknown)}, which no mapping "
                f"provides (skipped); known: {', '.join(sorted(mappings.services))}",
                err=True,
            )


@contextmanager
def _bad_input(kind: type[BadInput] = BadInput) -> Iterator[None]:
    """Turn `kind` (any `BadInput` by default) into one message on stderr and exit code 2."""
    try:
        yield
    except kind as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def _logging(interactive: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if interactive else logging.INFO,
        format="%(asctime)s level=%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
