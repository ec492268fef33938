"""State: run history, spool and cursors, across re-opens and crashes; the tests taking `state_target` run
once with SQLite and once with PostgreSQL (tests/conftest.py), the others are about the SQLite file."""

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


def test_everything_persists_across_reopen(state_target: str | Path) -> None:
    path = state_target
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


def test_committed_writes_survive_a_crash(state_target: str | Path) -> None:
    path = state_target
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


def test_last_run_is_the_latest_start_not_the_latest_insert(state_target: str | Path) -> None:
    with State(state_target) as state:
        state.record_run(ACCOUNT, "scan", at(60), at(65), True, {"n": "late"})
        state.record_run(ACCOUNT, "scan", at(0), at(5), True, {"n": "early"})

        assert state.last_run(ACCOUNT, "scan")["summary"] == {"n": "late"}


def test_last_run_complete_only_skips_incomplete_runs(state_target: str | Path) -> None:
    with State(state_target) as state:
        state.record_run(ACCOUNT, "scan", at(0), at(5), True, {"n": 1})
        state.record_run(ACCOUNT, "scan", at(60), at(65), False, {"n": 2})

        assert state.last_run(ACCOUNT, "scan")["summary"] == {"n": 2}
        assert state.last_run(ACCOUNT, "scan", complete_only=True)["summary"] == {"n": 1}


def test_last_run_is_per_account_and_kind(state_target: str | Path) -> None:
    with State(state_target) as state:
        state.record_run(ACCOUNT, "scan", at(0), at(5), True, {})

        assert state.last_run(ACCOUNT, "events") is None
        assert state.last_run("210987654321", "scan") is None


def test_times_are_normalised_to_utc(state_target: str | Path) -> None:
    cest = timezone(timedelta(hours=2))
    with State(state_target) as state:
        state.record_run(ACCOUNT, "flowlogs", datetime(2024, 5, 1, 14, 0, tzinfo=cest), 1714568700, True, {})

        run = state.last_run(ACCOUNT, "flowlogs")
        assert run["started_at"] == T0
        assert run["started_at"].tzinfo is not None
        assert run["finished_at"] == datetime.fromtimestamp(1714568700, UTC)


def test_bad_run_arguments_are_refused_and_write_nothing(state_target: str | Path) -> None:
    with State(state_target) as state:
        with pytest.raises(ValueError, match="kind"):
            state.record_run(ACCOUNT, "full", at(0), at(1), True, {})
        with pytest.raises(ValueError, match="naive"):
            state.record_run(ACCOUNT, "scan", datetime(2024, 5, 1), at(1), True, {})
        with pytest.raises(TypeError):
            state.record_run(ACCOUNT, "scan", at(0), at(1), True, {"bad": object()})

        assert state.last_run(ACCOUNT, "scan") is None


def test_spool_is_ordered_and_deletes_one_entry(state_target: str | Path) -> None:
    with State(state_target) as state:
        ids = [state.spool_put(f"p{i}", {"i": i}) for i in range(3)]

        state.spool_delete(ids[1])

        assert [(name, body) for _, name, body in state.spool_items()] == [("p0", {"i": 0}), ("p2", {"i": 2})]
        assert state.spool_count() == 2


def test_kv_overwrites_and_defaults(state_target: str | Path) -> None:
    with State(state_target) as state:
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


# --- read-only use (status, spool list while a run holds the lock) ------------------------------


def test_a_read_only_state_reads_what_a_run_wrote_and_writes_nothing(state_target: str | Path) -> None:
    path = state_target
    with State(path) as state:
        state.set("k", {"v": 1})
    with State(path, read_only=True) as reader:
        assert reader.get("k") == {"v": 1}
        with pytest.raises(StateError, match=r"readonly|read-only|cannot be written"):
            reader.set("k", 2)
    if isinstance(path, Path):  # SQLite: no file beside the state but its own (-wal, -shm)
        assert not (path.parent / f"{path.name}?mode=ro").exists()
        assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(path.name)) == []


def test_a_read_only_state_that_does_not_exist_says_so(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with pytest.raises(StateError) as refused, State(path, read_only=True) as reader:
        reader.get("k")
    assert str(refused.value) == f"state {path}: does not exist (no run has used it yet)"
    assert not path.exists()


def test_a_read_only_state_of_another_schema_version_says_a_run_upgrades_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    conn.close()
    with pytest.raises(StateError) as refused, State(path, read_only=True) as reader:
        reader.get("k")
    assert str(refused.value) == (
        f"state {path}: schema version {SCHEMA_VERSION - 1}, not {SCHEMA_VERSION}: "
        "a run of this version upgrades it"
    )


def test_a_read_only_state_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StateError) as refused, State(path, read_only=True) as reader:
        reader.get("k")
    assert str(refused.value).startswith(f"state {path}: not a usable SQLite database (")


# --- runs ---------------------------------------------------------------------------------------


def test_closed_only_takes_complete_runs_and_incomplete_scans_that_closed_their_snapshot(
    state_target: str | Path,
) -> None:
    with State(state_target) as state:
        state.record_run(ACCOUNT, "scan", at(0), at(1), True, {"n": 0})
        state.record_run(ACCOUNT, "scan", at(10), at(11), False, {"n": 1, "snapshot_closed": True})
        state.record_run(ACCOUNT, "scan", at(20), at(21), False, {"n": 2, "snapshot_closed": False})
        state.record_run(ACCOUNT, "scan", at(30), at(31), False, {"n": 3})
        assert state.last_run(ACCOUNT, "scan")["summary"] == {"n": 3}
        assert state.last_run(ACCOUNT, "scan", complete_only=True)["summary"] == {"n": 0}
        assert state.last_run(ACCOUNT, "scan", closed_only=True)["summary"] == {
            "n": 1,
            "snapshot_closed": True,
        }
        assert state.accounts() == [ACCOUNT]


def test_accounts_are_every_account_with_a_run_once_and_sorted(state_target: str | Path) -> None:
    with State(state_target) as state:
        assert state.accounts() == []
        for account in ("222222222222", "111111111111", "222222222222"):
            state.record_run(account, "events", at(0), at(1), True, {})
        assert state.accounts() == ["111111111111", "222222222222"]


# --- spool --------------------------------------------------------------------------------------


def payload(account: str, size: int = 10) -> dict:
    return {"topologies": [{"instance": {"url": account}}], "pad": "x" * size}


def test_spool_totals_count_each_status_and_add_every_size(state_target: str | Path) -> None:
    with State(state_target) as state:
        assert state.spool_totals() == {"pending": 0, "rejected": 0, "bytes": 0}
        state.spool_put("a", payload(ACCOUNT, 1))
        state.spool_put("b", payload(ACCOUNT, 20))
        state.spool_put("c", payload(ACCOUNT, 300), status="rejected", reason="401", http_status=401)
        sizes = [e["size"] for e in state.spool_entries()]
        assert state.spool_totals() == {"pending": 2, "rejected": 1, "bytes": sum(sizes)}
        assert len(set(sizes)) == 3


def test_a_spool_note_changes_a_pending_entry_only(state_target: str | Path) -> None:
    with State(state_target) as state:
        pending = state.spool_put("a", payload(ACCOUNT))
        rejected = state.spool_put(
            "b", payload(ACCOUNT), status="rejected", reason="bad key", http_status=403
        )
        state.spool_note(pending, "timed out", 504)
        state.spool_note(rejected, "timed out", 504)
        entries = {e["id"]: e for e in state.spool_entries()}
        assert (entries[pending]["reason"], entries[pending]["http_status"]) == ("timed out", 504)
        assert (entries[rejected]["reason"], entries[rejected]["http_status"]) == ("bad key", 403)


def test_requeue_one_or_every_rejected_entry_and_drop_them(state_target: str | Path) -> None:
    with State(state_target) as state:
        ids = [state.spool_put(n, payload(ACCOUNT), status="rejected", reason="r") for n in "abc"]
        state.spool_put("d", payload(ACCOUNT))
        assert state.spool_requeue(ids[1]) == 1
        assert [e["name"] for e in state.spool_entries("rejected")] == ["a", "c"]
        assert state.spool_requeue() == 2
        assert state.spool_count("rejected") == 0 and state.spool_count() == 4
        state.spool_reject(ids[0], "gone", 410)
        state.spool_reject(ids[2], "gone", None)
        assert state.spool_drop_rejected() == 2
        assert [name for _, name, _ in state.spool_items()] == ["b", "d"]
        assert state.spool_delete(ids[1]) is True
        assert state.spool_delete(ids[1]) is False
        assert state.spool_payload(ids[1]) is None


def test_supersede_drops_pending_snapshot_entries_of_that_account_only(state_target: str | Path) -> None:
    other = "222222222222"
    with State(state_target) as state:
        state.spool_put("snap-1", payload(ACCOUNT), snapshot="s1")
        state.spool_put("delta", payload(ACCOUNT))
        state.spool_put("snap-rejected", payload(ACCOUNT), snapshot="s1", status="rejected")
        state.spool_put("other-snap", payload(other), snapshot="s9")
        state.spool_put("snap-2", payload(ACCOUNT), snapshot="s1")
        dropped = state.spool_supersede(ACCOUNT)
        assert [e["name"] for e in dropped] == ["snap-1", "snap-2"]
        assert [e["name"] for e in state.spool_entries()] == ["delta", "snap-rejected", "other-snap"]


@pytest.mark.parametrize(
    ("max_entries", "slack", "kept"),
    [(3, 0, 3), (2, 0, 2), (3, -1, 2), (0, 0, 0), (1, 10**6, 1)],
    ids=["at-both-bounds", "one-entry-over", "one-byte-over", "nothing", "entries-bound"],
)
def test_trim_drops_the_oldest_until_both_bounds_hold_exactly(
    state_target: str | Path, max_entries: int, slack: int, kept: int
) -> None:
    with State(state_target) as state:
        for n in range(3):
            state.spool_put(f"p{n}", payload(ACCOUNT, 10 + n), status="rejected" if n == 0 else "pending")
        total = state.spool_totals()["bytes"]
        dropped = state.spool_trim(max_entries, total + slack)
        assert [e["name"] for e in dropped] == [f"p{n}" for n in range(3 - kept)]
        assert [e["name"] for e in state.spool_entries()] == [f"p{n}" for n in range(3 - kept, 3)]


def test_trim_by_bytes_counts_each_dropped_entry_once(state_target: str | Path) -> None:
    with State(state_target) as state:
        for n in range(4):
            state.spool_put(f"p{n}", payload(ACCOUNT, 100))
        size = state.spool_entries()[0]["size"]
        dropped = state.spool_trim(10, 2 * size)
        assert [e["name"] for e in dropped] == ["p0", "p1"]


def test_an_unknown_spool_status_is_refused_naming_the_known_ones(state_target: str | Path) -> None:
    with State(state_target) as state:
        with pytest.raises(ValueError) as refused:
            state.spool_put("a", payload(ACCOUNT), status="lost")
        assert str(refused.value) == "spool status 'lost' is not one of pending, rejected"
        with pytest.raises(ValueError, match=r"^spool status 'x' is not one of pending, rejected$"):
            state.spool_entries("x")


def test_the_spool_account_is_the_topology_instance_url_or_none(state_target: str | Path) -> None:
    with State(state_target) as state:
        state.spool_put("a", payload(ACCOUNT))
        state.spool_put("b", {"topologies": []})
        state.spool_put("c", {"topologies": ["not a dict"]})
        state.spool_put("d", {"topologies": [{"instance": {"url": 42}}]})
        state.spool_put("e", {"topologies": [{}]})
        assert [e["account"] for e in state.spool_entries()] == [ACCOUNT, None, None, None, None]


# --- values -------------------------------------------------------------------------------------


def test_sets_are_stored_as_sorted_lists_and_datetimes_as_iso_text(state_target: str | Path) -> None:
    with State(state_target) as state:
        state.set("k", {"set": {"b", "c", "a"}, "frozen": frozenset({3, 1, 2}), "at": T0})
        assert state.get("k") == {"set": ["a", "b", "c"], "frozen": [1, 2, 3], "at": T0.isoformat()}
        with pytest.raises(TypeError, match=r"^object is not JSON serialisable$"):
            state.set("k", object())
        assert state.get("k")["set"] == ["a", "b", "c"]


# --- how it is stored and opened ----------------------------------------------------------------


def test_stored_json_has_sorted_keys_so_equal_values_have_equal_sizes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with State(path) as state:
        state.spool_put("a", {"b": 1, "a": {"d": 2, "c": 3}})
        state.spool_put("b", {"a": {"c": 3, "d": 2}, "b": 1})
        state.set("k", {"z": 1, "y": 2})
        first, second = state.spool_entries()
        assert first["size"] == second["size"]
    conn = sqlite3.connect(path)
    try:
        bodies = [row[0] for row in conn.execute("SELECT body FROM spool ORDER BY id")]
        assert bodies == ['{"a":{"c":3,"d":2},"b":1}'] * 2
        assert conn.execute("SELECT value FROM kv WHERE key = 'k'").fetchone()[0] == '{"y":2,"z":1}'
    finally:
        conn.close()


def test_a_set_of_mixed_types_is_stored_in_the_order_of_its_reprs(state_target: str | Path) -> None:
    with State(state_target) as state:
        state.set("k", {2, "b", 1, "a"})
        assert state.get("k") == ["a", "b", 1, 2]  # repr: "'a'" < "'b'" < "1" < "2"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("file is not a database", "not a usable SQLite database (file is not a database); move it away"),
        (
            "database disk image is malformed",
            "not a usable SQLite database (database disk image is malformed)",
        ),
        ("database is locked", "database is locked: another process holds a write transaction on it"),
        ("database is busy", "database is busy: another process holds a write transaction on it"),
        ("attempt to write a readonly database", "cannot be written (attempt to write a readonly database)"),
        ("read-only file system", "cannot be written (read-only file system); check its permissions"),
        ("disk I/O error", "OperationalError: disk I/O error"),
    ],
)
def test_a_database_error_is_told_in_words_that_say_what_to_do(message: str, expected: str) -> None:
    from engine.core.state_sqlite import sqlite_problem

    assert sqlite_problem(sqlite3.OperationalError(message)).startswith(expected)


def test_an_in_memory_state_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with State(":memory:") as state:
        state.set("k", 1)
        state.check().lock()
        assert state.get("k") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_closed_state_opens_again_on_its_next_use_and_releases_its_lock(state_target: str | Path) -> None:
    from engine.core.errors import Locked

    path = state_target
    if isinstance(path, Path):
        path = path.parent / "a" / "b" / "state.db"  # parents are created, however deep
    state = State(path)
    state.set("k", 1)
    state.lock()
    with pytest.raises(Locked):
        State(path).lock()
    state.close()
    assert state.get("k") == 1  # re-opened
    State(path).lock().close()  # the lock was released by close
    state.close()  # closing twice is harmless


def test_a_state_opened_in_one_thread_is_usable_from_another(state_target: str | Path) -> None:
    import threading

    errors: list[BaseException] = []
    with State(state_target) as state:
        state.set("k", 1)

        def use() -> None:
            try:
                state.set("k", state.get("k") + 1)
            except BaseException as exc:  # carried to the main thread
                errors.append(exc)

        worker = threading.Thread(target=use)
        worker.start()
        worker.join()
        assert errors == [] and state.get("k") == 2


def test_a_failure_inside_a_write_leaves_no_transaction_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with State(path) as state:
        state.spool_put("a", payload(ACCOUNT), snapshot="s1")
        conn = sqlite3.connect(path)
        conn.execute("UPDATE spool SET created_at = 'not a time'")
        conn.commit()
        conn.close()
        with pytest.raises(ValueError):
            state.spool_supersede(ACCOUNT)  # reads the entry inside its transaction, and fails
        assert [e for e in state.spool_items()] != []  # rolled back: nothing was deleted
        state.set("after", 1)  # a new write transaction can begin
        assert state.get("after") == 1


def test_an_unknown_run_kind_is_refused_naming_the_known_ones(state_target: str | Path) -> None:
    from engine.core.state import RUN_KINDS

    with State(state_target) as state, pytest.raises(ValueError) as refused:
        state.record_run(ACCOUNT, "nap", at(0), at(1), True, {})
    assert str(refused.value) == f"run kind 'nap' is not one of {', '.join(RUN_KINDS)}"
    assert len(RUN_KINDS) > 1


# --- what an unusable state or a held lock says -------------------------------------------------


def test_a_state_under_a_file_or_that_is_a_directory_names_both(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError) as refused:
        State(blocker / "state.db").check()
    assert str(refused.value) == f"state {blocker / 'state.db'}: {blocker} is a file, not a directory"
    with pytest.raises(StateError) as refused:
        State(tmp_path).check()
    assert str(refused.value) == f"state {tmp_path}: is a directory, not a file"


def test_a_state_that_is_not_a_database_fails_its_check_in_words(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"junk" * 1024)
    state = State(path)
    with pytest.raises(StateError) as refused:
        state.check()
    assert str(refused.value).startswith(
        f"state {path}: not a usable SQLite database (file is not a database)"
    )
    assert state._conn is None  # closed again


def test_a_state_of_a_newer_schema_names_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError) as refused, State(path) as state:
        state.get("k")
    assert str(refused.value) == (
        f"state {path}: schema version {SCHEMA_VERSION + 1} is newer than this program's ({SCHEMA_VERSION})"
    )
    with State(path) as state, pytest.raises(StateError):  # and stays refused: nothing was half-migrated
        state.get("k")


def test_the_lock_file_sits_beside_the_state_readable_by_all_and_names_its_holder(tmp_path: Path) -> None:
    from engine.core.errors import Locked

    path = tmp_path / "state.db"
    lock_path = tmp_path / "state.db.lock"
    lock_path.write_text("pid 1 since long ago, and a much longer text than any holder writes")
    with State(path) as state:
        state.check().lock()
        assert sorted(p.name for p in tmp_path.iterdir() if "lock" in p.name) == ["state.db.lock"]
        assert lock_path.stat().st_mode & 0o777 == 0o644 & ~_umask()
        text = lock_path.read_text()
        assert text.startswith(f"pid {os.getpid()} since ") and "longer" not in text
        with pytest.raises(Locked) as held:
            State(path).lock()
        assert str(held.value) == (
            f"state {path} is in use by another run ({text}); try again when it has finished"
        )


def test_a_lock_held_by_an_unknown_writer_says_so_and_reads_at_most_200_bytes(tmp_path: Path) -> None:
    import fcntl

    from engine.core.errors import Locked

    path = tmp_path / "state.db"
    lock_path = tmp_path / "state.db.lock"
    for content, holder in [(b"", "unknown process"), (b"\xff" + b"h" * 300, "\ufffd" + "h" * 199)]:
        lock_path.write_bytes(content)
        fd = os.open(lock_path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            with pytest.raises(Locked) as held:
                State(path).lock()
            assert held.value.holder == holder
        finally:
            os.close(fd)


def test_a_lock_that_cannot_be_created_is_a_state_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "state.db"
    with pytest.raises(StateError) as refused:
        State(path).lock()
    lock_path = tmp_path / "missing" / "state.db.lock"
    assert str(refused.value) == f"state {path}: cannot create {lock_path}: No such file or directory"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- traces ---------------------------------------------------------------------------------------


def test_trace_calls_are_appended_counted_consumed_and_bounded(state_target: str | Path) -> None:
    with State(state_target) as state:
        assert state.traces_append([{"c": 1}], 5, {"no_account": 1}, 100) is True
        assert state.traces_append([{"c": 2}, {"c": 3}], 3, {}, 100) is True
        assert state.traces_append([{"c": 4}], 200, {}, 100) is False  # over the bound: no row, all dropped
        [(first, spans, calls), second] = state.traces_pending(10)
        assert (spans, calls) == (4, [{"c": 1}]) and second[1:] == (3, [{"c": 2}, {"c": 3}])
        assert state.traces_pending(1) == [(first, 4, [{"c": 1}])]
        assert state.traces_counts() == {
            "received": 208, "pending_rows": 2, "pending_spans": 7,
            "dropped": {"no_account": 1, "over_limit": 200}, "applied": 0,
        }  # fmt: skip
        state.traces_consume([first], 3, {"expired": 1}, received=2)
        assert state.traces_counts() == {
            "received": 210, "pending_rows": 1, "pending_spans": 3,
            "dropped": {"no_account": 1, "over_limit": 200, "expired": 1}, "applied": 3,
        }  # fmt: skip


def test_trace_relations_are_replaced_per_account_with_full_precision_times(state_target: str | Path) -> None:
    seen = (1714568400.123456, 1714568460.654321)  # a float4 column would round these to whole minutes
    with State(state_target) as state:
        state.trace_relations_save(ACCOUNT, {("fn", "table", "uses"): seen, ("fn", "queue", "uses"): seen})
        state.trace_relations_save("222222222222", {("other", "x", "uses"): (1.0, 2.0)})
        state.trace_relations_save(ACCOUNT, {("fn", "table", "uses"): seen})
        assert state.trace_relations(ACCOUNT) == {("fn", "table", "uses"): seen}
        state.trace_relations_save(ACCOUNT, {})
        assert state.trace_relations(ACCOUNT) == {}
        assert state.trace_relations("222222222222") == {("other", "x", "uses"): (1.0, 2.0)}


def test_shards_share_the_run_lock_which_a_run_that_is_not_sharded_excludes(state_target: str | Path) -> None:
    from engine.core.errors import Locked

    first, second = State(state_target).lock(shared=True), State(state_target).lock(shared=True)
    with pytest.raises(Locked):
        State(state_target).lock()  # a run that is not sharded waits for every shard
    first.close()
    second.close()
    whole = State(state_target).lock()
    with pytest.raises(Locked):
        State(state_target).lock(shared=True)  # and a shard waits for it
    whole.close()


def test_a_claim_is_held_by_one_state_at_a_time_until_it_closes(state_target: str | Path) -> None:
    one, two = State(state_target).lock(shared=True), State(state_target).lock(shared=True)
    assert one.claim("111111111111") is True
    assert one.claim("111111111111") is True  # held already: still this state's
    assert two.claim("111111111111") is False
    assert two.claim("222222222222") is True  # another key is another lock
    assert one.claim("222222222222") is False
    one.close()
    assert two.claim("111111111111") is True  # released with the state that held it
    two.close()
    three = State(state_target).lock(shared=True)
    assert three.claim("222222222222") is True
    three.close()


def test_a_claim_key_is_a_name_not_a_path(state_target: str | Path) -> None:
    with State(state_target).lock(shared=True) as state, pytest.raises(ValueError, match="not letters"):
        state.claim("../run")
