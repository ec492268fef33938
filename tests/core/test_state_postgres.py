"""The PostgreSQL state: how `--state` picks a backend, the masked password, the advisory run lock, the
schema version, the writers' turns. What both backends share runs in test_state.py with `state_target`."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from engine.core import state_postgres
from engine.core.errors import Locked, StateError
from engine.core.state import SCHEMA_VERSION, State
from engine.core.state_postgres import WRITE_LOCK, masked
from engine.core.state_sqlite import Sqlite
from tests.support import new_database

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr&t:pw"


@pytest.fixture
def url(postgres: str, request: pytest.FixtureRequest) -> str:
    """A new empty database on the session's server."""
    return new_database(postgres, f"pg_{request.node.name[5:40].lower()}_{id(request) % 10**6}")


def with_password(url: str, password: str = "s3cr%26t%3Apw") -> str:
    """`url` with a (percent-encoded) password; the server trusts every local user, so it is not checked."""
    return url.replace("topology@", f"topology:{password}@")


def sql(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


# --- which backend --state names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("state.db", Path("state.db")),
        ("sqlite:///rel/state.db", Path("rel/state.db")),
        ("sqlite:////abs/state.db", Path("/abs/state.db")),
        ("sqlite:///:memory:", ":memory:"),
        (":memory:", ":memory:"),
    ],
)
def test_a_path_or_a_sqlite_url_is_a_sqlite_state(target: str, path: Path | str) -> None:
    state = State(target)
    assert isinstance(state._backend, Sqlite)
    assert state.path == path


@pytest.mark.parametrize("target", ["sqlite:///", "sqlite://host/x", "sqlite:relative"])
def test_a_malformed_sqlite_url_says_what_it_should_be(target: str) -> None:
    with pytest.raises(StateError, match=r"sqlite:///relative/path or sqlite:////abs/path"):
        State(target)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_is_a_postgresql_state_and_loads_nothing_until_used(scheme: str) -> None:
    state = State(f"{scheme}://topology@127.0.0.1:1/db")
    assert isinstance(state._backend, state_postgres.Postgres)
    assert state.path == f"{scheme}://topology@127.0.0.1:1/db"


# --- the password is never shown ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@db:5432/x", "postgresql://u:***@db:5432/x"),
        (
            "postgresql://u@db/x?password=pw&sslmode=require",
            "postgresql://u@db/x?password=***&sslmode=require",
        ),
        (
            "postgresql://u:p%40w@db/x?sslmode=require&password=pw",
            "postgresql://u:***@db/x?sslmode=require&password=***",
        ),
        ("postgresql://db/x", "postgresql://db/x"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
    ],
)
def test_the_password_is_masked_in_the_url_shown(url: str, shown: str) -> None:
    assert masked(url) == shown
    state = State(url)
    assert state.path == shown and "pw" not in repr(state) and "pw" not in repr(state._backend)


def test_a_connection_that_fails_names_the_masked_url_and_not_the_password(postgres: str) -> None:
    unused = postgres.rsplit(":", 1)[0] + ":1/postgres"  # nothing listens on port 1
    state = State(with_password(unused), timeout=2)
    with pytest.raises(StateError) as refused:
        state.check()
    text = str(refused.value)
    assert text.startswith("state postgresql://topology:***@127.0.0.1:1/postgres: cannot connect (")
    assert (
        "s3cr" not in text and "%26" not in text and "check the URL, the server and the credentials" in text
    )


def test_an_error_that_quotes_the_password_shows_it_masked(postgres: str) -> None:
    backend = state_postgres.Postgres(with_password(postgres), 1.0)
    assert backend.problem(psycopg.OperationalError(f"bad password {SECRET} given")) == (
        "cannot connect (bad password *** given); check the URL, the server and the credentials"
    )


def test_a_run_lock_held_names_the_masked_url(url: str) -> None:
    secret_url = with_password(url)
    with State(secret_url) as holder:
        holder.check().lock()
        with pytest.raises(Locked) as held:
            State(secret_url).lock()
    assert "s3cr" not in str(held.value) and "topology:***@" in str(held.value)


# --- the run lock: a session advisory lock --------------------------------------------------------


def test_the_run_lock_is_taken_once_names_its_holder_and_is_released_by_close(url: str) -> None:
    state = State(url).check().lock()
    state.lock()  # taking it again in the same State is harmless
    with pytest.raises(Locked) as held:
        State(url).lock()
    assert held.value.holder.startswith("aws-topology pid ")
    assert " since 20" in held.value.holder
    assert str(held.value).startswith(f"state {url} is in use by another run (aws-topology pid ")
    state.close()
    State(url).lock().close()  # released
    state.close()  # closing twice is harmless


def test_the_run_lock_of_another_process_is_refused_with_exit_code_3(url: str, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom engine.core.state import State\n"
         "s = State(sys.argv[1]).check().lock(); print('locked', flush=True); time.sleep(60)", url],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(Locked) as held:
            State(url).lock()
        assert held.value.holder.startswith(f"aws-topology pid {holder.pid} on ")
        conf = tmp_path / "conf.yaml"
        conf.write_text(
            "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: ext-id}\n"
            "instances: [{role_arn: 'arn:aws:iam::123456789012:role/R', regions: [eu-west-1]}]\n"
        )
        cli = subprocess.run(
            [str(Path(sys.executable).parent / "aws-topology"), "run", "-c", str(conf),
             "--out", str(tmp_path / "out"), "--state", url],
            capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
        )  # fmt: skip
        assert cli.returncode == 3, cli.stderr
        assert "is in use by another run (aws-topology pid" in cli.stderr
    finally:
        holder.kill()
        holder.wait()
    State(url).lock().close()  # the lock dies with its holder's session


# --- schema ---------------------------------------------------------------------------------------


def test_the_postgresql_migrations_have_the_sqlite_versions() -> None:
    assert len(state_postgres.MIGRATIONS) == SCHEMA_VERSION


def test_the_schema_version_is_a_table_and_json_is_stored_with_sorted_keys(url: str) -> None:
    with State(url) as state:
        state.set("k", {"z": 1, "y": 2})
        spool_id = state.spool_put("a", {"b": 1, "a": {"d": 2, "c": 3}})
    assert sql(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert sql(url, "SELECT value FROM kv WHERE key = 'k'") == [('{"y":2,"z":1}',)]
    assert sql(url, "SELECT body FROM spool WHERE id = %s", (spool_id,)) == [('{"a":{"c":3,"d":2},"b":1}',)]


def test_a_newer_schema_is_refused_by_a_run_and_by_a_reader(url: str) -> None:
    State(url).check().close()
    sql(url, "UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StateError) as refused, State(url) as state:
        state.get("k")
    assert str(refused.value) == (
        f"state {url}: schema version {SCHEMA_VERSION + 1} is newer than this program's ({SCHEMA_VERSION})"
    )
    with (
        pytest.raises(StateError, match=r"not \d+: a run of this version upgrades it"),
        State(url, read_only=True) as reader,
    ):
        reader.get("k")


def test_a_reader_of_a_database_no_run_has_used_says_so_and_creates_nothing(url: str) -> None:
    with pytest.raises(StateError) as refused, State(url, read_only=True) as reader:
        reader.get("k")
    assert str(refused.value) == f"state {url}: holds no state yet (no run has used it yet)"
    assert sql(url, "SELECT to_regclass('schema_version')") == [(None,)]


def test_runs_starting_at_once_on_a_new_database_migrate_it_once(url: str) -> None:
    errors: list[BaseException] = []

    def first_use(n: int) -> None:
        try:
            with State(url) as state:
                state.set(f"k{n}", n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sql(url, "SELECT COUNT(*) FROM kv WHERE key LIKE 'k_'") == [(4,)]


# --- writers take turns ---------------------------------------------------------------------------


def test_a_write_turn_held_by_another_session_is_a_state_error_and_reads_go_on(url: str) -> None:
    state = State(url, timeout=0.2).check()
    with psycopg.connect(url) as other:  # another process in a write transaction (not autocommit)
        other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        assert state.get("anything") is None
        with pytest.raises(
            StateError, match="another process holds a write transaction on it; nothing is lost"
        ):
            state.set("cursor", 1)
        other.rollback()
    state.set("cursor", 2)  # the failed write left no transaction open
    assert state.get("cursor") == 2
    state.close()


def test_counters_written_by_two_processes_at_once_lose_nothing(url: str) -> None:
    State(url).check().close()

    def receive() -> None:
        with State(url) as state:
            for _ in range(25):
                state.traces_append([{"c": 1}], 3, {"bad": 1}, 10**6)

    threads = [threading.Thread(target=receive) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with State(url) as state:
        counts = state.traces_counts()
    assert counts == {"received": 225, "pending_rows": 75, "pending_spans": 150, "dropped": {"bad": 75},
                      "applied": 0}  # fmt: skip


def test_a_failure_inside_a_write_rolls_it_back(url: str) -> None:
    with State(url) as state:
        state.spool_put("a", {"topologies": [{"instance": {"url": "1"}}]}, snapshot="s1")
        sql(url, "UPDATE spool SET created_at = 'not a time'")
        with pytest.raises(ValueError):
            state.spool_supersede("1")  # reads the entry inside its transaction, and fails
        assert state.spool_count() == 1  # nothing was deleted
        state.set("after", 1)
        assert state.get("after") == 1


def test_a_role_that_may_only_read_gets_words_not_a_traceback(url: str) -> None:
    State(url).check().close()
    sql(url, "CREATE ROLE reader LOGIN")
    sql(url, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
    reader_url = url.replace("topology@", "reader@")
    with State(reader_url, read_only=True) as reader:
        assert reader.get("state.checked") == 1
    with (
        pytest.raises(StateError, match=r"cannot be written \(.*permission denied"),
        State(reader_url) as state,
    ):
        state.check()


def test_a_connection_the_server_ended_is_a_state_error_and_the_next_call_connects_again(url: str) -> None:
    with State(url) as state:
        state.set("k", 1)
        sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                 " WHERE datname = current_database() AND pid <> pg_backend_pid()")  # fmt: skip
        with pytest.raises(StateError, match="terminating connection"):
            state.get("k")
        assert state.get("k") == 1
