"""State between runs: run history, the delivery spool, key/value cursors and traces, with the run lock.

Two backends behind one class: a SQLite file (a path or `sqlite:///path`, the zero-setup default;
state_sqlite.py) or a PostgreSQL database (`postgresql://...`; state_postgres.py). The SQL below is shared;
the backend holds the dialect: schema migrations, placeholders, the write turn, the lock and error words.
Every write is one transaction, so a crash leaves either the whole row or none of it. Times are stored as
ISO 8601 UTC text (lexical order = time order) and returned as aware datetimes.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from engine.core.errors import StateError
from engine.core.state_sqlite import MIGRATIONS, SCHEMA_VERSION, Sqlite

__all__ = ["MIGRATIONS", "RUN_KINDS", "SCHEMA_VERSION", "State"]

RUN_KINDS = ("scan", "events", "flowlogs", "traces")

Timestamp = datetime | float | int
RelationKey = tuple[str, str, str]  # (source, target, type)


_KV_PUT = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
_CLAIM_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _to_text(value: Timestamp) -> str:
    """ISO 8601 UTC with microseconds; epoch seconds are accepted, naive datetimes are not."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a timezone-aware one")
        moment = value.astimezone(UTC)
    else:
        moment = datetime.fromtimestamp(value, UTC)
    return moment.isoformat(timespec="microseconds")


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


class Backend(Protocol):
    """What differs between SQLite and PostgreSQL (state_sqlite.Sqlite, state_postgres.Postgres)."""

    path: Path | str  # as shown in messages: the file, or the URL with its password masked
    errors: tuple[type[BaseException], ...]

    def problem(self, exc: BaseException) -> str: ...
    def condition(self, column: str, key: str) -> str: ...
    def precheck(self) -> None: ...
    def connect(self, read_only: bool) -> Any: ...
    def begin(self, conn: Any) -> None: ...
    def verify(self, conn: Any) -> None: ...
    def lock(self, shared: bool = False) -> None: ...
    def claim(self, key: str) -> bool: ...
    def unlock(self) -> None: ...


def backend(target: Path | str, timeout: float) -> Backend:
    """The backend `--state` names: `postgresql://...` (or `postgres://`), else a SQLite path; `sqlite:///x`
    is the path `x` (`sqlite:////abs/x` an absolute one)."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from engine.core.state_postgres import Postgres  # psycopg is loaded only for a PostgreSQL state

        return Postgres(text, timeout)
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///") or text == "sqlite:///":
            raise StateError(
                path=text, problem="a SQLite URL is sqlite:///relative/path or sqlite:////abs/path"
            )
        return Sqlite(text.removeprefix("sqlite:///"), timeout)
    return Sqlite(target, timeout)


class State:
    """Run history, spool and cursors in SQLite or PostgreSQL; usable as a context manager.

    `read_only` opens an existing state for reading only (no lock, no migration, no write), so `status`
    and `spool list` work while a run holds the lock.
    """

    def __init__(self, path: Path | str, *, read_only: bool = False, timeout: float = 30.0) -> None:
        self._backend = backend(path, timeout)
        self.path = self._backend.path  # a Path for a SQLite file; else text safe to show
        self.read_only = read_only
        self.timeout = timeout  # how long a write waits for another process's write transaction
        self._conn: Any = None
        self._lock = threading.RLock()
        self._pending: tuple[int, int] | None = None  # (last trace_calls id, pending spans at most)

    def __repr__(self) -> str:
        return f"State({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and release the run lock; the next call re-opens the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._backend.unlock()

    def check(self) -> Self:
        """Open (creating if needed) and prove the state readable and writable; raise `StateError` if not.

        Called before the first AWS call, so an unusable state costs no scan and loses no payload.
        """
        self._backend.precheck()
        try:
            with self._transaction() as conn:
                self._backend.verify(conn)
                conn.execute(_KV_PUT, ("state.checked", "1"))
        except OSError as exc:
            self.close()
            raise StateError(path=str(self.path), problem=self._backend.problem(exc)) from None
        except StateError:
            self.close()
            raise
        return self

    def lock(self, *, shared: bool = False) -> Self:
        """Take the run lock: an flock on `{path}.lock` for SQLite, an advisory lock for PostgreSQL; raise
        `Locked` naming the holder when another run has it. The shards of a sharded run take it `shared`
        (a run that is not sharded still excludes them all) and `claim` each account they work on."""
        self._backend.lock(shared)
        return self

    def claim(self, key: str) -> bool:
        """Take `key`'s lock (an account id, or the name of a job of the whole estate) until `close`, after
        the run lock; False when another process holds it. Never held twice at once; a process that dies
        releases its claims with it."""
        if not _CLAIM_KEY.fullmatch(key):
            raise ValueError(f"claim key {key!r} is not letters, digits, '-' or '_'")
        with self._lock:
            return self._backend.claim(key)

    def _connect(self) -> Any:
        if self._conn is None:
            self._conn = self._backend.connect(self.read_only)
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One write transaction; a database error (e.g. locked by another process past `timeout`) is a
        `StateError`, and the transaction is rolled back."""
        with self._lock, self._errors():
            conn = self._connect()
            try:
                self._backend.begin(conn)  # may fail after its BEGIN (PostgreSQL: the turn timed out)
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock, self._errors():
            return self._connect().execute(sql, params).fetchall()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._backend.errors as exc:
            if getattr(self._conn, "closed", False):  # the server went away: the next call connects again
                self._conn = None
            raise StateError(path=str(self.path), problem=self._backend.problem(exc)) from None

    # runs

    def record_run(
        self,
        account: str,
        kind: str,
        started_at: Timestamp,
        finished_at: Timestamp,
        complete: bool,
        summary: dict,
    ) -> None:
        """Append one finished run; times are aware datetimes or epoch seconds."""
        if kind not in RUN_KINDS:
            raise ValueError(f"run kind {kind!r} is not one of {', '.join(RUN_KINDS)}")
        started, finished = _to_text(started_at), _to_text(finished_at)
        row = (account, kind, started, finished, int(bool(complete)), _dumps(summary))
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO runs (account, kind, started_at, finished_at, complete, summary)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )

    def accounts(self) -> list[str]:
        """Every account that has a recorded run."""
        return [row[0] for row in self._query("SELECT DISTINCT account FROM runs ORDER BY account")]

    def last_run(
        self, account: str, kind: str, complete_only: bool = False, closed_only: bool = False
    ) -> dict | None:
        """The run of `account`/`kind` that started last, or None; optionally only complete ones, or only
        complete ones and scans that closed their snapshot (`summary.snapshot_closed`)."""
        rows = self._query(
            "SELECT account, kind, started_at, finished_at, complete, summary FROM runs"
            " WHERE account = ? AND kind = ? AND (complete = 1 OR ? = 0)"
            f" AND (complete = 1 OR ? = 0 OR {self._backend.condition('summary', 'snapshot_closed')})"
            " ORDER BY started_at DESC, id DESC LIMIT 1",
            (account, kind, int(complete_only), int(closed_only)),
        )
        if not rows:
            return None
        account, kind, started_at, finished_at, complete, summary = rows[0]
        return {
            "account": account,
            "kind": kind,
            "started_at": datetime.fromisoformat(started_at),
            "finished_at": datetime.fromisoformat(finished_at),
            "complete": bool(complete),
            "summary": json.loads(summary),
        }

    # spool
    #
    # Undelivered payloads, oldest first. `pending` entries wait to be re-sent (by `SpoolingSink`); `rejected`
    # ones were refused for good by the receiver and are never re-sent, only kept to be listed and dropped.
    # What an `aws-topology spool` command needs:
    #   list      spool_entries(status=None) -> [{id, name, created, size, status, reason, http_status,
    #             account, snapshot}], spool_totals() -> {pending, rejected, bytes}, spool_payload(id)
    #   re-send   SpoolingSink(HttpSink(...), state).flush_spool() -> number delivered
    #   drop one  spool_delete(id) -> bool        drop rejected  spool_drop_rejected() -> int
    #   re-queue  spool_requeue(id=None) -> int   (rejected -> pending, e.g. after fixing a wrong API key)
    # `reason`/`http_status` of a pending entry say why it is still pending (its latest failure).

    _SPOOL_STATUSES = ("pending", "rejected")
    _SPOOL_COLUMNS = "id, name, created_at, size, status, reason, http_status, account, snapshot"

    @staticmethod
    def _spool_account(payload: dict) -> str | None:
        """`topologies[0].instance.url`: the account a payload is about, None when it has no topology."""
        topologies = payload.get("topologies") if isinstance(payload, dict) else None
        if not topologies or not isinstance(topologies[0], dict):
            return None
        url = (topologies[0].get("instance") or {}).get("url")
        return url if isinstance(url, str) else None

    @classmethod
    def _spool_entry(cls, row: tuple) -> dict:
        spool_id, name, created_at, size, status, reason, http_status, account, snapshot = row
        return {
            "id": spool_id,
            "name": name,
            "created": datetime.fromisoformat(created_at),
            "size": size,
            "status": status,
            "reason": reason,
            "http_status": http_status,
            "account": account,
            "snapshot": snapshot,
        }

    def spool_put(
        self,
        name: str,
        payload: dict,
        *,
        status: str = "pending",
        reason: str | None = None,
        http_status: int | None = None,
        snapshot: str | None = None,
    ) -> int:
        """Store an undelivered payload; returns its spool id.

        `status` is `pending` (to be re-sent) or `rejected` (refused for good); `reason` and `http_status` say
        why it was not delivered; `snapshot` is the key of the snapshot the payload belongs to, None for a
        delta.
        """
        if status not in self._SPOOL_STATUSES:
            raise ValueError(f"spool status {status!r} is not one of {', '.join(self._SPOOL_STATUSES)}")
        body = _dumps(payload)
        row = (
            name, body, _to_text(datetime.now(UTC)), status, reason, http_status,
            len(body.encode()), self._spool_account(payload), snapshot,
        )  # fmt: skip
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO spool (name, body, created_at, status, reason, http_status, size, account,"
                " snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                row,
            )
            return int(cursor.fetchone()[0])

    def spool_items(self) -> list[tuple[int, str, dict]]:
        """Every pending payload as (id, name, payload), oldest first (rejected ones are not re-sent)."""
        rows = self._query("SELECT id, name, body FROM spool WHERE status = 'pending' ORDER BY id")
        return [(spool_id, name, json.loads(body)) for spool_id, name, body in rows]

    def spool_entries(self, status: str | None = None) -> list[dict]:
        """The spool without payloads, oldest first; only entries of `status` (pending/rejected) when given.

        Each entry: id, name, created (aware datetime), size (bytes of the stored JSON), status, reason and
        http_status (why it was rejected, or None), account (`topologies[0].instance.url`), snapshot (key
        of the snapshot it belongs to, None for a delta payload).
        """
        if status is not None and status not in self._SPOOL_STATUSES:
            raise ValueError(f"spool status {status!r} is not one of {', '.join(self._SPOOL_STATUSES)}")
        rows = self._query(
            f"SELECT {self._SPOOL_COLUMNS} FROM spool WHERE (CAST(? AS TEXT) IS NULL OR status = ?)"
            " ORDER BY id",
            (status, status),
        )
        return [self._spool_entry(row) for row in rows]

    def spool_payload(self, spool_id: int) -> dict | None:
        """The payload stored under `spool_id`, or None when there is no such entry."""
        rows = self._query("SELECT body FROM spool WHERE id = ?", (spool_id,))
        return json.loads(rows[0][0]) if rows else None

    def spool_count(self, status: str = "pending") -> int:
        """How many payloads wait in the spool (or how many were rejected, with status='rejected')."""
        return int(self._query("SELECT COUNT(*) FROM spool WHERE status = ?", (status,))[0][0])

    def spool_totals(self) -> dict:
        """{pending: n, rejected: n, bytes: size of every stored payload}."""
        rows = self._query("SELECT status, COUNT(*), COALESCE(SUM(size), 0) FROM spool GROUP BY status")
        totals = {"pending": 0, "rejected": 0, "bytes": 0}
        for status, count, size in rows:
            totals[status] = int(count)
            totals["bytes"] += int(size)
        return totals

    def spool_delete(self, spool_id: int) -> bool:
        """Remove one entry (delivered, or dropped by an operator); False when there was no such entry."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM spool WHERE id = ?", (spool_id,)).rowcount > 0

    def spool_note(self, spool_id: int, reason: str, http_status: int | None = None) -> None:
        """Record why a pending entry is still pending (its latest failed re-send)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE spool SET reason = ?, http_status = ? WHERE id = ? AND status = 'pending'",
                (reason, http_status, spool_id),
            )

    def spool_reject(self, spool_id: int, reason: str, http_status: int | None) -> None:
        """Mark a pending entry rejected for good: it stays listed but is never re-sent."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE spool SET status = 'rejected', reason = ?, http_status = ? WHERE id = ?",
                (reason, http_status, spool_id),
            )

    def spool_requeue(self, spool_id: int | None = None) -> int:
        """Make a rejected entry (or, without an id, every one) pending again, e.g. after fixing the API
        key that made the receiver answer 401/403; returns how many. They are re-sent in their old place.
        """
        with self._transaction() as conn:
            return conn.execute(
                "UPDATE spool SET status = 'pending'"
                " WHERE status = 'rejected' AND (CAST(? AS BIGINT) IS NULL OR id = ?)",
                (spool_id, spool_id),
            ).rowcount

    def spool_drop_rejected(self) -> int:
        """Delete every rejected entry; returns how many."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM spool WHERE status = 'rejected'").rowcount

    def spool_supersede(self, account: str) -> list[dict]:
        """Delete the pending snapshot payloads of `account` (a newer snapshot replaces them); deltas stay.

        Returns the deleted entries (as `spool_entries` shows them), oldest first.
        """
        where = "WHERE account = ? AND status = 'pending' AND snapshot IS NOT NULL"
        with self._transaction() as conn:
            rows = conn.execute(f"SELECT {self._SPOOL_COLUMNS} FROM spool {where} ORDER BY id", (account,))
            dropped = [self._spool_entry(row) for row in rows.fetchall()]
            conn.execute(f"DELETE FROM spool {where}", (account,))
        return dropped

    def spool_trim(self, max_entries: int, max_bytes: int) -> list[dict]:
        """Delete the oldest entries (any status) until at most `max_entries` totalling at most `max_bytes`
        remain; returns the deleted entries, oldest first. The caller reports them: nothing goes silently.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM spool").fetchone()
            count, total = int(row[0]), int(row[1])
            if count <= max_entries and total <= max_bytes:
                return []
            dropped = []
            for row in conn.execute(f"SELECT {self._SPOOL_COLUMNS} FROM spool ORDER BY id").fetchall():
                if count <= max_entries and total <= max_bytes:
                    break
                entry = self._spool_entry(row)
                dropped.append(entry)
                count -= 1
                total -= entry["size"]
            conn.executemany("DELETE FROM spool WHERE id = ?", [(entry["id"],) for entry in dropped])
        return dropped

    # cursors

    def get(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under `key`, or `default`."""
        rows = self._query("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under `key`, replacing any previous one."""
        with self._transaction() as conn:
            conn.execute(_KV_PUT, (key, _dumps(value)))

    def update(self, key: str, change: Callable[[Any], Any], default: Any = None) -> Any:
        """Replace the value under `key` (or `default`) by `change(value)` in one write transaction, so that
        processes sharing the state (shards) never lose each other's changes; returns the new value."""
        with self._transaction() as conn:
            rows = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchall()
            value = change(json.loads(rows[0][0]) if rows else default)
            conn.execute(_KV_PUT, (key, _dumps(value)))
        return value

    # traces
    #
    # `traces serve` (and the log bucket's OTLP objects) append one `trace_calls` row per accepted request;
    # the `traces` phase consumes them. Counters in kv, in spans: `traces.received` (every span of every
    # request, a retried one again), `traces.dropped` ({reason: spans}), `traces.applied` (by the phase).
    # received = pending spans + applied + every dropped span.

    def traces_append(
        self, calls: list[dict], spans: int, dropped: dict[str, int], max_pending_spans: int
    ) -> bool:
        """Append one request's call records and count its `spans` (all it held) and `dropped` spans, in one
        transaction. The row stands for `spans - sum(dropped)` spans. When the pending spans would exceed
        `max_pending_spans`, write no row, count those as dropped `over_limit` and return False."""
        kept = spans - sum(dropped.values())
        body = json.dumps(calls, separators=(",", ":"))
        with self._transaction() as conn:
            pending = self._pending_spans(conn, exact=False)
            if pending + kept > max_pending_spans:
                pending = self._pending_spans(conn, exact=True)
            accepted, row_id = pending + kept <= max_pending_spans, 0
            drops = dict(dropped)
            if accepted:
                row_id = conn.execute(
                    "INSERT INTO trace_calls (received_at, spans, body) VALUES (?, ?, ?) RETURNING id",
                    (_to_text(datetime.now(UTC)), kept, body),
                ).fetchone()[0]
            else:
                drops["over_limit"] = drops.get("over_limit", 0) + kept
            self._add_count(conn, "traces.received", spans)
            self._add_dropped(conn, drops)
        if accepted:  # only once committed: a rolled-back id may be given again
            self._pending = (row_id, pending + kept)
        return accepted

    def _pending_spans(self, conn: Any, exact: bool) -> int:
        """The spans of the pending rows; not `exact`: an upper bound that reads only the rows added since
        the last count (ids only grow; the phase only deletes), so an append does not scan the table."""
        if exact or self._pending is None:
            query = "SELECT COALESCE(MAX(id), 0), COALESCE(SUM(spans), 0) FROM trace_calls"
            last, total = conn.execute(query).fetchone()
        else:
            last, total = self._pending
            added, newer = conn.execute(
                "SELECT MAX(id), COALESCE(SUM(spans), 0) FROM trace_calls WHERE id > ?", (last,)
            ).fetchone()
            last, total = added or last, total + newer
        self._pending = (last, total)
        return total

    def traces_counts(self) -> dict:
        """{received, pending_rows, pending_spans, dropped: {reason: n}, applied}, spans except the rows."""
        rows, spans, received, dropped, applied = self._query(  # one statement: one consistent read
            "SELECT COUNT(*), COALESCE(SUM(spans), 0),"
            " (SELECT value FROM kv WHERE key = 'traces.received'),"
            " (SELECT value FROM kv WHERE key = 'traces.dropped'),"
            " (SELECT value FROM kv WHERE key = 'traces.applied') FROM trace_calls"
        )[0]
        return {
            "received": int(json.loads(received or "0")),
            "pending_rows": rows,
            "pending_spans": spans,
            "dropped": json.loads(dropped or "{}"),
            "applied": int(json.loads(applied or "0")),
        }

    def traces_pending(self, max_rows: int) -> list[tuple[int, int, list[dict]]]:
        """The oldest `max_rows` rows of received calls: (row id, spans, call records)."""
        rows = self._query("SELECT id, spans, body FROM trace_calls ORDER BY id LIMIT ?", (max_rows,))
        return [(row_id, spans, json.loads(body)) for row_id, spans, body in rows]

    def traces_consume(
        self, row_ids: list[int], applied: int, dropped: dict[str, int], received: int = 0
    ) -> None:
        """Delete the rows the traces phase applied and count their spans: `applied`, and `dropped` by
        reason (added to `traces.dropped`), in one transaction; `received`: spans that came another way
        than the receiver (the log bucket's trace objects)."""
        with self._transaction() as conn:
            conn.executemany("DELETE FROM trace_calls WHERE id = ?", [(row_id,) for row_id in row_ids])
            self._add_count(conn, "traces.applied", applied)
            self._add_count(conn, "traces.received", received)
            self._add_dropped(conn, dropped)

    @staticmethod
    def _add_count(conn: Any, key: str, n: int) -> None:
        """Add `n` to the integer counter `key`."""
        conn.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key)"
            " DO UPDATE SET value = CAST(kv.value AS BIGINT) + CAST(excluded.value AS BIGINT)",
            (key, str(n)),
        )

    @staticmethod
    def _add_dropped(conn: Any, dropped: dict[str, int]) -> None:
        """Add the spans `dropped` by reason to `traces.dropped` ({reason: spans}); zeros add nothing."""
        dropped = {reason: n for reason, n in dropped.items() if n}
        if not dropped:
            return
        row = conn.execute("SELECT value FROM kv WHERE key = 'traces.dropped'").fetchone()
        total = json.loads(row[0]) if row else {}
        for reason, n in dropped.items():
            total[reason] = total.get(reason, 0) + n
        conn.execute(_KV_PUT, ("traces.dropped", _dumps(total)))

    def trace_relations(self, account: str) -> dict[RelationKey, tuple[float, float]]:
        """The account's trace relations: (source, target, type) -> (first seen, last seen), epoch seconds."""
        rows = self._query(
            "SELECT source, target, type, first_seen, last_seen FROM trace_relations WHERE account = ?",
            (account,),
        )
        return {(source, target, kind): (first, last) for source, target, kind, first, last in rows}

    def trace_relations_save(self, account: str, live: dict[RelationKey, tuple[float, float]]) -> None:
        """Replace the account's trace relations by `live` (as `trace_relations` gives them), at once."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM trace_relations WHERE account = ?", (account,))
            conn.executemany(
                "INSERT INTO trace_relations (account, source, target, type, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(account, *key, first, last) for key, (first, last) in live.items()],
            )
