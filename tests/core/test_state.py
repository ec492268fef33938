"""State: run history, spool and cursors in SQLite, across re-opens and crashes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.core.errors import StateError
from engine.core.state import SCHEMA_VERSION, State

ACCOUNT = "123456789012"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_file_is_created_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.db"
    state = State(path)
    assert not path.exists()

    assert state.get("cursor") is None
    assert path.exists()
    state.close()


def test_schema_version_and_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with State(path) as state:
        state.set("k", 1)

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StateError, match="newer"), State(path) as state:
        state.get("k")


def test_everything_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with State(path) as state:
        state.record_run(ACCOUNT, "scan", at(0), at(5), True, {"components": 12})
        state.set("events.cursor", {"key": "2024/05/01/obj", "n": 3})
        state.spool_put("scan-0001", {"topologies": []})

    with State(path) as state:
        run = state.last_run(ACCOUNT, "scan")
        assert run == {
            "account": ACCOUNT,
            "kind": "scan",
            "started_at": at(0),
            "finished_at": at(5),
            "complete": True,
            "summary": {"components": 12},
        }
        assert state.get("events.cursor") == {"key": "2024/05/01/obj", "n": 3}
        assert [(name, body) for _, name, body in state.spool_items()] == [("scan-0001", {"topologies": []})]


def test_committed_writes_survive_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    script = (
        "import os, sys\n"
        "from engine.core.state import State\n"
        "s = State(sys.argv[1])\n"
        "s.record_run('123456789012', 'events', 100.0, 160.0, True, {})\n"
        "s.spool_put('events-0001', {'n': 1})\n"
        "os._exit(9)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script, str(path)], env=env, check=False)
    assert result.returncode == 9

    with State(path) as state:
        assert state.last_run(ACCOUNT, "events")["finished_at"] == datetime.fromtimestamp(160.0, UTC)
        assert [name for _, name, _ in state.spool_items()] == ["events-0001"]


def test_last_run_is_the_latest_start_not_the_latest_insert(tmp_path: Path) -> None:
    with State(tmp_path / "state.db") as state:
        state.record_run(ACCOUNT, "scan", at(60), at(65), True, {"n": "late"})
        state.record_run(ACCOUNT, "scan", at(0), at(5), True, {"n": "early"})

        assert state.last_run(ACCOUNT, "scan")["summary"] == {"n": "late"}


def test_last_run_complete_only_skips_incomplete_runs(tmp_path: Path) -> None:
    with State(tmp_path / "state.db") as state:
        state.record_run(ACCOUNT, "scan", at(0), at(5), True, {"n": 1})
        state.record_run(ACCOUNT, "scan", at(60), at(65), False, {"n": 2})

        assert state.last_run(ACCOUNT, "scan")["summary"] == {"n": 2}
        assert state.last_run(ACCOUNT, "scan", complete_only=True)["summary"] == {"n": 1}


def test_last_run_is_per_account_and_kind(tmp_path: Path) -> None:
    with State(tmp_path / "state.db") as state:
        state.record_run(ACCOUNT, "scan", at(0), at(5), True, {})

        assert state.last_run(ACCOUNT, "events") is None
        assert state.last_run("210987654321", "scan") is None


def test_times_are_normalised_to_utc(tmp_path: Path) -> None:
    cest = timezone(timedelta(hours=2))
    with State(tmp_path / "state.db") as state:
        state.record_run(ACCOUNT, "flowlogs", datetime(2024, 5, 1, 14, 0, tzinfo=cest), 1714568700, True, {})

        run = state.last_run(ACCOUNT, "flowlogs")
        assert run["started_at"] == T0
        assert run["started_at"].tzinfo is not None
        assert run["finished_at"] == datetime.fromtimestamp(1714568700, UTC)


def test_bad_run_arguments_are_refused_and_write_nothing(tmp_path: Path) -> None:
    with State(tmp_path / "state.db") as state:
        with pytest.raises(ValueError, match="kind"):
            state.record_run(ACCOUNT, "full", at(0), at(1), True, {})
        with pytest.raises(ValueError, match="naive"):
            state.record_run(ACCOUNT, "scan", datetime(2024, 5, 1), at(1), True, {})
        with pytest.raises(TypeError):
            state.record_run(ACCOUNT, "scan", at(0), at(1), True, {"bad": object()})

        assert state.last_run(ACCOUNT, "scan") is None


def test_spool_is_ordered_and_deletes_one_entry(tmp_path: Path) -> None:
    with State(tmp_path / "state.db") as state:
        ids = [state.spool_put(f"p{i}", {"i": i}) for i in range(3)]

        state.spool_delete(ids[1])

        assert [(name, body) for _, name, body in state.spool_items()] == [("p0", {"i": 0}), ("p2", {"i": 2})]
        assert state.spool_count() == 2


def test_kv_overwrites_and_defaults(tmp_path: Path) -> None:
    with State(tmp_path / "state.db") as state:
        assert state.get("missing", "default") == "default"
        state.set("cursor", "a")
        state.set("cursor", "b")

        assert state.get("cursor") == "b"


def test_a_write_transaction_held_by_another_process_is_a_state_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    state = State(path, timeout=0.2).check()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing (an operator's sqlite3 shell, a backup)
    try:
        assert state.get("anything") is None  # reading still works under WAL
        with pytest.raises(StateError, match="locked: another process holds a write transaction"):
            state.set("cursor", 1)
        state.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with State(path) as state:
        state.set("cursor", 2)
        assert state.get("cursor") == 2
