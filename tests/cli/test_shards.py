"""Shards: `aws-topology run --shard INDEX/COUNT` (and `--claim`) as real processes side by side against one
moto server and one state (PostgreSQL, or SQLite on one machine): every account scanned exactly once, never
by two shards at once, and a shard killed mid-run loses nothing (its accounts complete in the next run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from demo.common import client
from engine.cli import main
from engine.core.state import State
from tests.support import moto_env, moto_server, new_database

pytestmark = pytest.mark.live

REGION = "eu-west-1"
ACCOUNTS = [f"{300000000000 + 1111 * i:012d}" for i in range(6)]
QUEUES = 2  # per account


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        for account in ACCOUNTS:
            sqs = client("sqs", REGION, url, account)
            for n in range(QUEUES):
                sqs.create_queue(QueueName=f"shard-{n}")
            s3 = client("s3", "us-east-1", url, account)
            bucket = f"stackstate-logs-{account}"  # read by the events and flow-log phases of `run`
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        yield url


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every AWS request to the moto server takes 0.2 s more, as over a network: a scan lasts seconds."""
    import moto.server

    call = moto.server.DomainDispatcherApplication.__call__

    def delayed(self: Any, environ: dict, start_response: Any) -> Any:
        if not environ["PATH_INFO"].startswith("/moto-api"):
            time.sleep(0.2)
        return call(self, environ, start_response)

    monkeypatch.setattr(moto.server.DomainDispatcherApplication, "__call__", delayed)
    yield


@pytest.fixture(params=["postgresql", "sqlite"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite")
    return new_database(request.getfixturevalue("postgres"), f"shards_{os.getpid()}_{time.monotonic_ns()}")


def conf(tmp_path: Path) -> Path:
    path = tmp_path / "conf.yaml"
    instances = "".join(
        f"  - {{role_arn: 'arn:aws:iam::{a}:role/StackStateAwsIntegrationRole', regions: [{REGION}],"
        " apis_to_run: [sqs]}\n"
        for a in ACCOUNTS
    )
    path.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: ext-id}\n"
        f"instances:\n{instances}"
    )
    return path


def start(tmp_path: Path, endpoint: str, state: str, name: str, *options: str) -> subprocess.Popen:
    """`aws-topology run` as a real process, its payload files under `{tmp_path}/out/{name}`."""
    exe = Path(sys.executable).parent / "aws-topology"
    args = ["run", "-c", str(conf(tmp_path)), "--out", str(tmp_path / "out" / name), "--state", state]
    return subprocess.Popen(
        [str(exe), *args, *options],
        env={**os.environ, **moto_env(endpoint)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr
    return stdout


def snapshots(tmp_path: Path) -> Counter[str]:
    """Accounts whose full snapshot the payload files under out/ start, with how often."""
    started: Counter[str] = Counter()
    for path in (tmp_path / "out").rglob("scan-*.json"):
        for topology in json.loads(path.read_text())["topologies"]:
            if topology.get("start_snapshot"):
                started[topology["instance"]["url"]] += 1
    return started


def queues(tmp_path: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in (tmp_path / "out").rglob("scan-*.json"):
        for topology in json.loads(path.read_text())["topologies"]:
            found[topology["instance"]["url"]] += sum(
                1 for c in topology["components"] if c["type"]["name"] == "aws.sqs.queue"
            )
    return found


def closed_scans(state: str) -> set[str]:
    with State(state, read_only=True) as history:
        return {a for a in ACCOUNTS if history.last_run(a, "scan", closed_only=True)}


def test_three_shards_side_by_side_scan_every_account_exactly_once(
    endpoint: str, state: str, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics"
    shards = [start(tmp_path, endpoint, state, f"shard{i}", "--shard", f"{i}/3", "--metrics", str(metrics))
              for i in range(3)]  # fmt: skip
    outputs = [finish(p) for p in shards]

    assert snapshots(tmp_path) == Counter(ACCOUNTS)
    assert queues(tmp_path) == Counter(dict.fromkeys(ACCOUNTS, QUEUES))
    for i, output in enumerate(outputs):
        assert f"shard {i}/3 claim=false accounts=2 " in output, output
    assert closed_scans(state) == set(ACCOUNTS)
    with State(state, read_only=True) as history:
        assert all(history.last_run(a, "events") is not None for a in ACCOUNTS)
    for i in range(3):  # each shard's own files: its accounts, its run-wide series labelled
        scan = (metrics / f"aws-topology.shard-{i}.prom").read_text()
        assert {
            line.split('"')[1] for line in scan.splitlines() if line.startswith("aws_topology_scan_complete{")
        } == set(sorted(ACCOUNTS)[i::3])
        assert f'aws_topology_scan_run_seconds{{shard="{i}"}} ' in scan
        events = (metrics / f"aws-topology.shard-{i}.events.prom").read_text()
        assert f'aws_topology_events_last_run_timestamp_seconds{{shard="{i}"}} ' in events
    again = [start(tmp_path, endpoint, state, f"again{i}", "--shard", f"{i}/3") for i in range(3)]
    for p in again:
        finish(p)
    assert snapshots(tmp_path) == Counter(ACCOUNTS)  # not due again: no second scan


def test_claiming_shards_balance_and_never_take_an_account_twice(
    endpoint: str, state: str, tmp_path: Path, slow: None
) -> None:
    shards = [start(tmp_path, endpoint, state, f"claim{i}", "--claim", "--shard", f"{i}/2",
                    "--accounts", "1") for i in range(2)]  # fmt: skip
    outputs = [finish(p) for p in shards]

    assert snapshots(tmp_path) == Counter(ACCOUNTS)  # each exactly once, by one of them
    took = [int(o.split("claim=true accounts=")[1].split()[0]) for o in outputs]
    assert all(n >= 1 for n in took), outputs  # the later one took accounts the first had not reached
    assert closed_scans(state) == set(ACCOUNTS)


def test_a_shard_killed_mid_run_loses_nothing_and_the_next_run_completes_its_accounts(
    endpoint: str, state: str, tmp_path: Path, slow: None
) -> None:
    killed = start(tmp_path, endpoint, state, "killed", "--shard", "0/2", "--accounts", "1")
    assert killed.stderr is not None
    for line in killed.stderr:  # under way: its first account's unit is done
        if "event=unit.done" in line:
            break
    whole = CliRunner().invoke(main, ["run", "-c", str(conf(tmp_path)), "--out", str(tmp_path / "x"),
                                      "--state", state], env=moto_env(endpoint))  # fmt: skip
    assert whole.exit_code == 3 and "in use by another run" in whole.output  # a run not sharded waits
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    mine = set(ACCOUNTS[0::2])  # shard 0's share: every other account in sorted order
    before = closed_scans(state)
    assert before < mine  # it died before it had scanned them all

    shards = [start(tmp_path, endpoint, state, f"next{i}", "--shard", f"{i}/2") for i in range(2)]
    for p in shards:
        finish(p)

    assert closed_scans(state) == set(ACCOUNTS)
    complete = Counter()
    for folder in (tmp_path / "out").glob("*/run-*"):
        if (folder / "manifest.json").exists():
            for account, fate in json.loads((folder / "manifest.json").read_text())["accounts"].items():
                complete[account] += fate["snapshot_closed"]
    assert complete == Counter(set(ACCOUNTS) - before)  # the rest once; what the killed one closed, not again


def test_an_account_scanned_by_another_shard_since_the_run_began_is_not_scanned_again(
    endpoint: str, tmp_path: Path
) -> None:
    import threading
    from dataclasses import replace

    from engine.core.config import load_config
    from engine.core.shard import Shard
    from engine.language.loader import load_mappings
    from engine.run import RUN, RunSettings, run_cycle
    from tests.support import live_aws

    asked: list[int] = []

    def due_at_first(config: Any, state: State) -> list:
        """Every account is due when the run begins; asked again for one account, none is (another shard
        scanned it meanwhile)."""
        asked.append(len(config.instances))
        return list(config.instances) if len(asked) == 1 else []

    settings = RunSettings(
        load_config(conf(tmp_path)), load_mappings(), replace(RUN, scan=due_at_first, events=False,
        flowlogs=False, traces=False), out=str(tmp_path / "out"), shard=Shard(0, 1, claim=True),
    )  # fmt: skip
    lines: list[str] = []
    with live_aws(endpoint), State(tmp_path / "state.sqlite").lock(shared=True) as state:
        code = run_cycle(settings, state, threading.Event(), lines.append)

    assert code == 0
    assert asked == [len(ACCOUNTS)] + [1] * len(ACCOUNTS)  # asked again for each, once claimed
    assert snapshots(tmp_path) == Counter()
    assert f"shard 0/1 claim=true accounts={len(ACCOUNTS)} " in lines[-1]
