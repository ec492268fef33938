"""The spool: permanent rejections, superseded snapshots, bounds, migration, and the API of `spool`.

Receiver cases run against a real HTTP server on 127.0.0.1 that answers per payload name.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from engine.core.stackpack import INSTANCE_TYPE
from engine.core.state import MIGRATIONS, SCHEMA_VERSION, State
from engine.delivery.http import HttpSink
from engine.delivery.spool import SpoolingSink
from tests.support import serve

API_KEY = "spool-s3cr3t"
A = "111111111111"
B = "222222222222"
OK = (200, {}, b"{}")
DOWN = (503, {}, b"maintenance")


def payload(account: str, name: str, *, start: bool = False, stop: bool = False, run: int = 1) -> dict:
    """A receiver payload whose one component carries the payload name (the receiver answers by it)."""
    topology = {
        "start_snapshot": start,
        "stop_snapshot": stop,
        "instance": {"type": INSTANCE_TYPE, "url": account},
        "components": [{"externalId": name, "type": {"name": "test"}, "data": {"run": run}}],
        "relations": [],
        "delete_ids": [],
    }
    return {
        "internalHostname": "aws-topology",
        "topologies": [topology],
        "health": [],
        "metrics": [],
        "events": {},
    }


def snapshot(account: str, count: int, *, run: int = 1, complete: bool = True) -> list[tuple[dict, str]]:
    """(payload, name) of one snapshot as scan sends it: scan-{account}-0001 opens, the last closes."""
    out = []
    for number in range(1, count + 1):
        name = f"scan-{account}-{number:04d}"
        last = number == count and complete
        out.append((payload(account, name, start=number == 1, stop=last, run=run), name))
    return out


def delta(account: str, number: int) -> tuple[dict, str]:
    name = f"events-{account}-{number:04d}"
    return payload(account, name), name


class Receiver:
    """Answers each POST by payload name from `script` (else `default`); records what arrived."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, dict, bytes]]] = {}
        self.default = OK
        self.seen: list[tuple[str, int]] = []  # (name, status answered), every request
        self.delivered: list[dict] = []  # payloads answered 2xx, in order
        self.gets: list[str] = []
        self.url = ""

    def names(self) -> list[str]:
        return [p["topologies"][0]["components"][0]["externalId"] for p in self.delivered]

    def runs(self) -> list[tuple[str, int]]:
        return [
            (
                p["topologies"][0]["components"][0]["externalId"],
                p["topologies"][0]["components"][0]["data"]["run"],
            )
            for p in self.delivered
        ]


class Handler(BaseHTTPRequestHandler):
    receiver: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        components = body["topologies"][0]["components"] if body.get("topologies") else []
        name = components[0]["externalId"] if components else ""
        script = self.receiver.script.get(name)
        status, headers, text = script.pop(0) if script else self.receiver.default
        self.receiver.seen.append((name, status))
        if 200 <= status < 300:
            self.receiver.delivered.append(body)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def do_GET(self) -> None:
        self.receiver.gets.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def no_proxy(without_proxy: None) -> None:
    """Every test here talks to a local receiver."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with serve(Handler, receiver=rec) as url:
        rec.url = f"{url}/receiver/stsAgent"
        yield rec


@pytest.fixture
def state(state_target: str | Path) -> Iterator[State]:
    """A fresh state, once in SQLite and once in PostgreSQL."""
    with State(state_target) as opened:
        yield opened


def spooling(
    receiver: Receiver, state: State, sleeps: list[float] | None = None, **kwargs: int
) -> SpoolingSink:
    sleeps = [] if sleeps is None else sleeps
    http = HttpSink(receiver.url, API_KEY, retries=1, backoff=0.0, timeout=5.0, sleep=sleeps.append)
    return SpoolingSink(http, state, **kwargs)


def send_all(sink: SpoolingSink, payloads: list[tuple[dict, str]]) -> None:
    for body, name in payloads:
        sink.send(body, name)


def pending(state: State) -> list[str]:
    return [entry["name"] for entry in state.spool_entries("pending")]


# 1. a permanent rejection is recorded, reported, counted, and blocks nothing


def test_rejected_payload_is_recorded_not_retried_and_does_not_block(
    receiver: Receiver, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script[f"scan-{A}-0002"] = [(400, {}, b"component type unknown")]
    sleeps: list[float] = []
    sink = spooling(receiver, state, sleeps)

    with caplog.at_level(logging.INFO):
        send_all(sink, snapshot(A, 3))

    assert [name for name, _ in receiver.seen] == [f"scan-{A}-0001", f"scan-{A}-0002", f"scan-{A}-0003"]
    assert sleeps == []  # not retried
    assert (sink.rejected, sink.spooled) == (1, 0)
    assert state.spool_count() == 0
    (entry,) = state.spool_entries()
    assert (entry["name"], entry["status"], entry["http_status"]) == (f"scan-{A}-0002", "rejected", 400)
    assert "HTTP 400" in entry["reason"] and "component type unknown" in entry["reason"]
    assert API_KEY not in entry["reason"]
    assert state.spool_payload(entry["id"]) == snapshot(A, 3)[1][0]
    assert any("event=sink.rejected" in r.message and r.levelno == logging.ERROR for r in caplog.records)

    # the next run re-sends nothing: the rejected entry waits to be listed, not replayed
    later = spooling(receiver, state)
    body, name = delta(A, 1)
    later.send(body, name)
    assert [n for n, _ in receiver.seen][3:] == [name]
    assert later.spooled == later.rejected == 0


def test_probe_runs_with_a_rejected_payload_each_no_longer_pile_up(receiver: Receiver, state: State) -> None:
    """The probe: every run had one payload refused; the spool grew 1 -> 4 -> 7 and every run exited 1."""
    for run in (1, 2, 3):
        receiver.script[f"scan-{A}-0001"] = [(422, {}, b"invalid")]
        sink = spooling(receiver, state)
        send_all(sink, snapshot(A, 3, run=run))

        assert sink.spooled == 0 and sink.rejected == 1
        assert state.spool_count() == 0
        assert state.spool_count("rejected") == run
        assert receiver.runs()[-2:] == [(f"scan-{A}-0002", run), (f"scan-{A}-0003", run)]


def test_408_429_and_5xx_are_transient_spooled_not_rejected(receiver: Receiver, state: State) -> None:
    receiver.script[f"events-{A}-0001"] = [(429, {"Retry-After": "3"}, b""), (429, {"Retry-After": "3"}, b"")]
    receiver.script[f"events-{A}-0002"] = [(408, {}, b"")]
    sleeps: list[float] = []
    sink = spooling(receiver, state, sleeps)

    send_all(sink, [delta(A, 1), delta(A, 2)])

    assert sleeps == [3.0]  # Retry-After honoured; then out of retries
    assert (sink.spooled, sink.rejected) == (2, 0)
    assert pending(state) == [f"events-{A}-0001", f"events-{A}-0002"]

    receiver.script[f"events-{A}-0001"] = [(502, {}, b"bad gateway")]  # 5xx, then 200 on the retry
    assert spooling(receiver, state).flush_spool() == 2
    assert receiver.names() == [f"events-{A}-0001", f"events-{A}-0002"]
    assert state.spool_entries() == []


def test_redirect_is_neither_followed_nor_taken_for_a_rejection(receiver: Receiver, state: State) -> None:
    receiver.script[f"events-{A}-0001"] = [(303, {"Location": "/elsewhere"}, b"")]
    sink = spooling(receiver, state)

    sink.send(*delta(A, 1))

    assert receiver.gets == []
    assert (sink.spooled, sink.rejected) == (1, 0)
    assert pending(state) == [f"events-{A}-0001"]
    assert "HTTP 303" in state.spool_entries()[0]["reason"]


def test_rejection_during_flush_marks_the_entry_and_the_flush_goes_on(
    receiver: Receiver, state: State
) -> None:
    for number in (1, 2, 3):
        state.spool_put(*reversed(delta(A, number)))
    receiver.script[f"events-{A}-0002"] = [(413, {}, b"too large")]
    sink = spooling(receiver, state)

    assert sink.flush_spool() == 2

    assert receiver.names() == [f"events-{A}-0001", f"events-{A}-0003"]
    assert sink.rejected == 1
    assert [(e["name"], e["status"], e["http_status"]) for e in state.spool_entries()] == [
        (f"events-{A}-0002", "rejected", 413)
    ]


def test_rejected_payload_leaves_its_snapshot_open(
    receiver: Receiver, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing the snapshot would delete the components the rejected payload carried."""
    receiver.script[f"scan-{A}-0002"] = [(400, {}, b"")]
    sink = spooling(receiver, state)

    with caplog.at_level(logging.WARNING):
        send_all(sink, snapshot(A, 3) + snapshot(B, 1))

    flags = [(t["instance"]["url"], t["start_snapshot"], t["stop_snapshot"]) for p in receiver.delivered
             for t in p["topologies"]]  # fmt: skip
    assert flags == [(A, True, False), (A, False, False), (B, True, True)]
    assert "event=sink.snapshot_left_open" in caplog.text


def test_snapshot_with_a_rejected_payload_stays_open_across_runs(receiver: Receiver, state: State) -> None:
    receiver.script[f"scan-{A}-0002"] = [(400, {}, b"")]
    receiver.script[f"scan-{A}-0003"] = [DOWN, DOWN]
    send_all(spooling(receiver, state), snapshot(A, 3))
    assert pending(state) == [f"scan-{A}-0003"]

    assert spooling(receiver, state).flush_spool() == 1

    assert receiver.names()[-1] == f"scan-{A}-0003"
    assert receiver.delivered[-1]["topologies"][0]["stop_snapshot"] is False


# 1. a newer snapshot of the same account supersedes spooled snapshot payloads; deltas stay


def test_new_snapshot_sent_supersedes_spooled_snapshot_of_that_account_only(
    receiver: Receiver, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.default = DOWN
    send_all(spooling(receiver, state), [*snapshot(A, 3, run=1), delta(A, 1), *snapshot(B, 1, run=1)])
    assert len(pending(state)) == 5

    receiver.default = OK
    sink = spooling(receiver, state)
    with caplog.at_level(logging.INFO):
        send_all(sink, snapshot(A, 2, run=2))

    assert receiver.runs() == [
        (f"events-{A}-0001", 0 + 1),
        (f"scan-{B}-0001", 1),
        (f"scan-{A}-0001", 2),
        (f"scan-{A}-0002", 2),
    ]
    assert sink.superseded == 3
    assert state.spool_entries() == []
    assert f"event=sink.superseded account={A}" in caplog.text


def test_new_snapshot_spooled_supersedes_older_spooled_snapshot(receiver: Receiver, state: State) -> None:
    receiver.default = DOWN
    send_all(spooling(receiver, state), [*snapshot(A, 2, run=1), delta(A, 1)])
    sink = spooling(receiver, state)

    send_all(sink, [*snapshot(B, 1, run=2), *snapshot(A, 2, run=2), delta(A, 2)])

    assert sink.superseded == 2
    assert pending(state) == [
        f"events-{A}-0001", f"scan-{B}-0001", f"scan-{A}-0001", f"scan-{A}-0002", f"events-{A}-0002",
    ]  # fmt: skip
    assert [state.spool_payload(e["id"])["topologies"][0]["components"][0]["data"]["run"]
            for e in state.spool_entries() if e["name"].startswith("scan-")] == [2, 2, 2]  # fmt: skip


def test_snapshot_payloads_spooled_mid_snapshot_are_superseded_next_run(
    receiver: Receiver, state: State
) -> None:
    """Run 1 delivered the opening payload and spooled the rest: those are still that snapshot's."""
    receiver.script[f"scan-{A}-0002"] = [DOWN, DOWN]
    send_all(spooling(receiver, state), [*snapshot(A, 3, run=1)])
    assert pending(state) == [f"scan-{A}-0002", f"scan-{A}-0003"]
    receiver.default = DOWN
    sink = spooling(receiver, state)
    sink.send(*delta(A, 1))

    receiver.default = OK
    send_all(spooling(receiver, state), snapshot(A, 1, run=2))

    assert receiver.runs() == [(f"scan-{A}-0001", 1), (f"events-{A}-0001", 1), (f"scan-{A}-0001", 2)]
    assert state.spool_entries() == []


def test_rejected_entries_are_not_superseded(receiver: Receiver, state: State) -> None:
    receiver.script[f"scan-{A}-0001"] = [(400, {}, b"")]
    send_all(spooling(receiver, state), snapshot(A, 1, run=1))

    send_all(spooling(receiver, state), snapshot(A, 1, run=2))

    assert [(e["name"], e["status"]) for e in state.spool_entries()] == [(f"scan-{A}-0001", "rejected")]


# 1. bounds


def test_spool_beyond_max_entries_drops_oldest_with_an_error(
    receiver: Receiver, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.default = DOWN
    sink = spooling(receiver, state, max_entries=3)

    with caplog.at_level(logging.INFO):
        send_all(sink, [delta(A, n) for n in range(1, 6)])

    assert pending(state) == [f"events-{A}-0003", f"events-{A}-0004", f"events-{A}-0005"]
    assert (sink.spooled, sink.overflowed) == (5, 2)
    overflow = [r for r in caplog.records if "event=spool.overflow" in r.message]
    assert [r.levelno for r in overflow] == [logging.ERROR, logging.ERROR]
    assert f"name=events-{A}-0001" in overflow[0].message and f"name=events-{A}-0002" in overflow[1].message


def test_spool_beyond_max_bytes_drops_oldest(receiver: Receiver, state: State) -> None:
    receiver.default = DOWN
    size = len(json.dumps(delta(A, 1)[0], sort_keys=True, separators=(",", ":")))
    sink = spooling(receiver, state, max_bytes=size * 2 + size // 2)

    send_all(sink, [delta(A, n) for n in range(1, 5)])

    assert pending(state) == [f"events-{A}-0003", f"events-{A}-0004"]
    assert sink.overflowed == 2
    assert state.spool_totals() == {"pending": 2, "rejected": 0, "bytes": 2 * size}


def test_spool_bounds_have_sane_defaults(state: State) -> None:
    sink = SpoolingSink(HttpSink("http://127.0.0.1:9/r", None), state)
    assert (sink.max_entries, sink.max_bytes) == (10_000, 512 * 1024 * 1024)


# 2. what the `aws-topology spool` command uses


def test_spool_command_api_lists_resends_and_drops(receiver: Receiver, state: State) -> None:
    receiver.default = DOWN
    receiver.script[f"events-{A}-0002"] = [(403, {}, b"forbidden")]
    sink = spooling(receiver, state)
    send_all(sink, [delta(A, 1), delta(A, 2), delta(A, 3)])
    before = datetime.now(UTC)

    entries = state.spool_entries()
    assert [(e["name"], e["status"], e["http_status"]) for e in entries] == [
        (f"events-{A}-0001", "pending", 503),
        (f"events-{A}-0002", "pending", None),  # queued behind the first: never tried in that run
        (f"events-{A}-0003", "pending", None),
    ]
    assert {key for e in entries for key in e} == {
        "id", "name", "created", "size", "status", "reason", "http_status", "account", "snapshot",
    }  # fmt: skip
    assert all(e["created"].tzinfo is not None and e["created"] <= before for e in entries)
    assert all(e["size"] == len(json.dumps(state.spool_payload(e["id"]), sort_keys=True,
                                           separators=(",", ":"))) for e in entries)  # fmt: skip
    assert entries[0]["account"] == A and entries[0]["snapshot"] is None
    assert "HTTP 503" in entries[0]["reason"] and entries[1]["reason"] == "queued behind undelivered payloads"

    receiver.default = OK  # re-send now: the first two go, the 403 is recorded rejected
    resend = spooling(receiver, state)
    assert resend.flush_spool() == 2
    assert resend.rejected == 1
    assert [e["status"] for e in state.spool_entries()] == ["rejected"]
    assert state.spool_entries("pending") == []
    assert state.spool_totals()["rejected"] == 1

    kept = state.spool_put("manual", {"n": 1})
    assert state.spool_delete(kept) is True
    assert state.spool_delete(kept) is False
    assert state.spool_payload(kept) is None
    (rejected,) = state.spool_entries("rejected")
    assert state.spool_requeue(rejected["id"]) == 1  # e.g. after fixing what made the receiver refuse it
    assert spooling(receiver, state).flush_spool() == 1
    assert receiver.names()[-1] == f"events-{A}-0002"

    receiver.script[f"events-{A}-0004"] = [(400, {}, b"")]
    spooling(receiver, state).send(*delta(A, 4))
    assert state.spool_drop_rejected() == 1
    assert state.spool_entries() == []


def test_spool_entries_refuses_unknown_status(state: State) -> None:
    with pytest.raises(ValueError, match="status"):
        state.spool_entries("delivered")
    with pytest.raises(ValueError, match="status"):
        state.spool_put("x", {}, status="lost")


def test_version_1_state_is_migrated_with_its_spool(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    created = "2024-05-01T12:00:00.000000+00:00"
    rows = [
        (f"scan-{A}-0001", json.dumps(payload(A, f"scan-{A}-0001", start=True)), created),
        (f"scan-{A}-0002", json.dumps(payload(A, f"scan-{A}-0002", stop=True)), created),
        (f"events-{A}-0001", json.dumps(payload(A, f"events-{A}-0001")), created),
    ]
    conn.executemany("INSERT INTO spool (name, body, created_at) VALUES (?, ?, ?)", rows)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    with State(path) as state:
        entries = state.spool_entries()
        assert [(e["status"], e["account"], e["snapshot"] is not None) for e in entries] == [
            ("pending", A, True), ("pending", A, True), ("pending", A, False),
        ]  # fmt: skip
        assert [e["size"] for e in entries] == [len(body.encode()) for _, body, _ in rows]
        assert [e["name"] for e in state.spool_supersede(A)] == [f"scan-{A}-0001", f"scan-{A}-0002"]
        assert [name for _, name, _ in state.spool_items()] == [f"events-{A}-0001"]

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


# 3. a trimmed snapshot never closes, in this run or a later one


def test_a_snapshot_trimmed_from_the_spool_is_resent_without_closing_it(
    receiver: Receiver, state: State
) -> None:
    receiver.default = DOWN
    send_all(spooling(receiver, state, max_entries=2), snapshot(A, 3))
    assert pending(state) == [f"scan-{A}-0002", f"scan-{A}-0003"]  # its start was dropped

    receiver.default = OK
    assert spooling(receiver, state).flush_spool() == 2  # a later run

    assert receiver.names() == [f"scan-{A}-0002", f"scan-{A}-0003"]
    assert [p["topologies"][0]["stop_snapshot"] for p in receiver.delivered] == [False, False]


# 4. 413: halves, down to one element


def components(*names: str, start: bool = True, stop: bool = True) -> dict:
    body = payload(A, names[0], start=start, stop=stop)
    body["topologies"][0]["components"] = [{"externalId": n, "type": {"name": "test"}} for n in names]
    return body


def test_a_payload_too_large_is_sent_in_halves_with_the_snapshot_flags_kept(
    receiver: Receiver, state: State
) -> None:
    receiver.script["c0"] = [(413, {}, b"too large")]
    sink = spooling(receiver, state)

    assert sink.send(components("c0", "c1", "c2", "c3", "c4"), f"scan-{A}-0001") == "delivered"

    parts = [[c["externalId"] for c in p["topologies"][0]["components"]] for p in receiver.delivered]
    assert parts == [["c0", "c1"], ["c2", "c3", "c4"]]
    flags = [
        (p["topologies"][0]["start_snapshot"], p["topologies"][0]["stop_snapshot"])
        for p in receiver.delivered
    ]
    assert flags == [(True, False), (False, True)]
    assert state.spool_entries() == [] and sink.rejected == 0


def test_only_the_single_element_still_too_large_is_rejected_and_the_snapshot_stays_open(
    receiver: Receiver, state: State
) -> None:
    receiver.script["c0"] = [(413, {}, b""), (413, {}, b"")]  # the whole payload, then its first half
    receiver.script["c1"] = [(413, {}, b"")]  # one element that is too large on its own
    sink = spooling(receiver, state)

    assert sink.send(components("c0", "c1", "c2", "c3"), f"scan-{A}-0001") == "rejected"

    parts = [[c["externalId"] for c in p["topologies"][0]["components"]] for p in receiver.delivered]
    assert parts == [["c0"], ["c2", "c3"]]
    assert receiver.delivered[-1]["topologies"][0]["stop_snapshot"] is False  # c1 would be deleted
    (entry,) = state.spool_entries()
    assert (entry["status"], entry["http_status"]) == ("rejected", 413)
    assert [c["externalId"] for c in state.spool_payload(entry["id"])["topologies"][0]["components"]] == [
        "c1"
    ]


def test_a_spooled_payload_too_large_is_halved_on_flush_and_only_the_refused_part_stays(
    receiver: Receiver, state: State
) -> None:
    state.spool_put(f"events-{A}-0001", components("c0", "c1", start=False, stop=False))
    receiver.script["c0"] = [(413, {}, b"")]
    receiver.script["c1"] = [(413, {}, b"")]

    assert spooling(receiver, state).flush_spool() == 0

    assert [[c["externalId"] for c in p["topologies"][0]["components"]] for p in receiver.delivered] == [
        ["c0"]
    ]
    (entry,) = state.spool_entries()
    assert (entry["name"], entry["status"], entry["http_status"]) == (f"events-{A}-0001", "rejected", 413)
    assert [c["externalId"] for c in state.spool_payload(entry["id"])["topologies"][0]["components"]] == [
        "c1"
    ]
