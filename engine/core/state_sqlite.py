"""The SQLite side of the state: its schema migrations, connection, file lock and error words.

The zero-setup default: one file, WAL mode, its schema version in `PRAGMA user_version`, a writer at a time
(`BEGIN IMMEDIATE`), and the run lock an flock on `{path}.lock` (shared by the shards of a sharded run, each
account then claimed by an flock on `{path}.locks/{account}`).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from engine.core.errors import Locked, StateError

# MIGRATIONS[n] takes the schema from version n to n + 1; never edit a released entry, append a new one
# (and its PostgreSQL twin in state_postgres.py).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            account TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('scan', 'events', 'flowlogs')),
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            complete INTEGER NOT NULL CHECK (complete IN (0, 1)),
            summary TEXT NOT NULL
        )""",
        "CREATE INDEX runs_by_account_kind ON runs (account, kind, started_at)",
        """CREATE TABLE spool (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        # spool entries: pending (re-sent) or rejected (kept to be listed); size, account, snapshot key
        "ALTER TABLE spool ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'"
        " CHECK (status IN ('pending', 'rejected'))",
        "ALTER TABLE spool ADD COLUMN reason TEXT",
        "ALTER TABLE spool ADD COLUMN http_status INTEGER",
        "ALTER TABLE spool ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE spool ADD COLUMN account TEXT",
        "ALTER TABLE spool ADD COLUMN snapshot TEXT",
        # entries spooled before: every scan payload belonged to a snapshot
        "UPDATE spool SET size = length(CAST(body AS BLOB)),"
        " account = json_extract(body, '$.topologies[0].instance.url'),"
        " snapshot = CASE WHEN name LIKE 'scan-%'"
        " OR json_extract(body, '$.topologies[0].start_snapshot') = 1"
        " THEN 'before-v2:' || COALESCE(json_extract(body, '$.topologies[0].instance.url'), '') END",
        "CREATE INDEX spool_by_account ON spool (account, status, id)",
    ),
    (
        # runs.kind may be 'traces': SQLite cannot alter a CHECK, so the table is rebuilt (ids and index kept)
        """CREATE TABLE runs_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            account TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('scan', 'events', 'flowlogs', 'traces')),
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            complete INTEGER NOT NULL CHECK (complete IN (0, 1)),
            summary TEXT NOT NULL
        )""",
        "INSERT INTO runs_new (id, account, kind, started_at, finished_at, complete, summary)"
        " SELECT id, account, kind, started_at, finished_at, complete, summary FROM runs ORDER BY id",
        "DROP TABLE runs",
        "ALTER TABLE runs_new RENAME TO runs",
        "CREATE INDEX runs_by_account_kind ON runs (account, kind, started_at)",
        # one row per accepted OTLP request: its call records (a JSON list) and the spans it stands for
        """CREATE TABLE trace_calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            received_at TEXT NOT NULL,
            spans INTEGER NOT NULL,
            body TEXT NOT NULL
        )""",
        """CREATE TABLE trace_relations (
            account TEXT NOT NULL,
            source TEXT NOT NULL,
            target TEXT NOT NULL,
            type TEXT NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            PRIMARY KEY (account, source, target, type)
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def sqlite_problem(exc: BaseException) -> str:
    """What a SQLite error means for the operator, in words that say what to do."""
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return f"not a usable SQLite database ({text}); move it away to start with a fresh state"
    if "locked" in text or "busy" in text:
        return f"{text}: another process holds a write transaction on it; nothing is lost, try again"
    if "readonly" in text or "read-only" in text:
        return f"cannot be written ({text}); check its permissions"
    return f"{type(exc).__name__}: {text}"


class Sqlite:
    """One SQLite file (or `:memory:`): connections, migrations and the flock beside the file."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: Path | str, timeout: float) -> None:
        self.path: Path | str = path if str(path) == ":memory:" else Path(path)
        self.timeout = timeout  # how long a statement waits for another process's write transaction
        self._lock_fd: int | None = None
        self._claims: dict[str, int] = {}  # key -> descriptor holding its flock

    def problem(self, exc: BaseException) -> str:
        return sqlite_problem(exc)

    def condition(self, column: str, key: str) -> str:
        """SQL that is true when the JSON object in `column` has `key` set to true."""
        return f"json_extract({column}, '$.{key}') = 1"

    def precheck(self) -> None:
        """Refuse a path under a file, or a directory, in words (before SQLite's own vaguer error)."""
        if not isinstance(self.path, Path):
            return
        for parent in self.path.parents:
            if parent.exists() and not parent.is_dir():
                raise StateError(path=str(self.path), problem=f"{parent} is a file, not a directory")
        if self.path.is_dir():
            raise StateError(path=str(self.path), problem="is a directory, not a file")

    def connect(self, read_only: bool) -> sqlite3.Connection:
        """An autocommit connection at the current schema (migrated unless `read_only`)."""
        if read_only:
            return self._connect_read_only()
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def begin(self, conn: sqlite3.Connection) -> None:
        """Start a write transaction: one writer at a time, waiting up to `timeout` for another."""
        conn.execute("BEGIN IMMEDIATE")

    def verify(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA quick_check").fetchall()

    def _connect_read_only(self) -> sqlite3.Connection:
        if isinstance(self.path, Path) and not self.path.is_file():
            raise StateError(path=str(self.path), problem="does not exist (no run has used it yet)")
        try:
            uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, check_same_thread=False)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise StateError(path=str(self.path), problem=sqlite_problem(exc)) from None
        if version != SCHEMA_VERSION:
            conn.close()
            problem = f"schema version {version}, not {SCHEMA_VERSION}: a run of this version upgrades it"
            raise StateError(path=str(self.path), problem=problem)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    path=str(self.path),
                    problem=f"schema version {version} is newer than this program's ({SCHEMA_VERSION})",
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def lock(self, shared: bool = False) -> None:
        """Take the run lock (`{path}.lock`, an flock; `shared` for a shard of a sharded run); raise `Locked`
        naming the holder when taken."""
        if not isinstance(self.path, Path) or self._lock_fd is not None:
            return
        self._lock_fd = _flock(self.path.with_name(self.path.name + ".lock"), str(self.path), shared)

    def claim(self, key: str) -> bool:
        """Take `key`'s lock (`{path}.locks/{key}`, an flock) until `unlock`; False when another holds it."""
        if key in self._claims or not isinstance(self.path, Path):
            return True
        folder = self.path.with_name(self.path.name + ".locks")
        folder.mkdir(exist_ok=True)
        try:
            self._claims[key] = _flock(folder / key, str(self.path), shared=False)
        except Locked:
            return False
        return True

    def unlock(self) -> None:
        for fd in self._claims.values():
            os.close(fd)
        self._claims.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None


def _flock(lock_path: Path, state: str, shared: bool) -> int:
    """A descriptor of `lock_path` holding its flock; `Locked` names the holder written in it."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(path=state, problem=f"cannot create {lock_path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
        os.close(fd)
        raise Locked(path=state, holder=holder) from None
    os.ftruncate(fd, 0)  # a shard's holder line replaces another shard's: any of them names the run
    since = datetime.now(UTC).isoformat(timespec="microseconds")
    os.pwrite(fd, f"pid {os.getpid()} since {since}{' (a shard)' if shared else ''}".encode(), 0)
    return fd
