"""Edges of the delivery spool and its sinks: rejection bounds, key masking, halving, snapshot keys and fates,
superseding, trimming, flushing, damaged snapshots, and the log lines operators alert on.

No receiver: the inner sink is `Inner` below (it records what it is sent and answers as a test scripts it),
the spool a `State` in SQLite and in PostgreSQL (the `state_target` fixture).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.core.errors import DeliveryError
from engine.core.state import State
from engine.delivery.http import HttpSink, _Redact, shown_url
from engine.delivery.sinks import is_rejection
from engine.delivery.spool import DAMAGED_KEY, SpoolingSink, halves

A = "111111111111"
B = "222222222222"
QUEUED = "queued behind undelivered payloads"


def refused(status: int | None, problem: str = "refused") -> DeliveryError:
    return DeliveryError(target="fake", problem=problem, status=status)


class Inner:
    """Records each payload it is sent, in order; `answer(payload, name)` returns the error to raise."""

    def __init__(self) -> None:
        self.answer: Callable[[dict, str], DeliveryError | None] = lambda payload, name: None
        self.calls: list[str] = []  # every name sent, delivered or not
        self.sent: list[tuple[str, dict]] = []  # (name, payload) delivered

    def send(self, payload: dict, name: str) -> None:
        self.calls.append(name)
        error = self.answer(payload, name)
        if error is not None:
            raise error
        self.sent.append((name, copy.deepcopy(payload)))

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


def body(account: str | int, label: str, *, start: bool = False, stop: bool = False, n: int = 1) -> dict:
    """A payload of `account` with `n` components labelled `label`, `label.1`, ..."""
    components = [{"externalId": label if i == 0 else f"{label}.{i}"} for i in range(n)]
    topology = {
        "start_snapshot": start,
        "stop_snapshot": stop,
        "instance": {"type": "aws", "url": account},
        "components": components,
        "relations": [],
        "delete_ids": [],
    }
    return {"internalHostname": "aws-topology", "topologies": [topology], "events": {}, "metrics": []}


def scan(account: str, number: int, **kwargs: bool) -> tuple[dict, str]:
    name = f"scan-{account}-{number:04d}"
    return body(account, name, **kwargs), name


def key(sink: SpoolingSink, account: str, name: str) -> str:
    """The snapshot key `sink` gives the snapshot that `name` starts."""
    return f"{account}:{name}:{sink._run}"


def entries(state: State) -> list[tuple]:
    return [
        (e["name"], e["status"], e["reason"], e["http_status"], e["snapshot"]) for e in state.spool_entries()
    ]


def messages(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"event={event} ")]


@pytest.fixture
def state(state_target: str | Path) -> Iterator[State]:
    """A fresh state, once in SQLite and once in PostgreSQL."""
    with State(state_target) as opened:
        yield opened


@pytest.fixture
def inner() -> Inner:
    return Inner()


# is_rejection: 4xx except 408 and 429


@pytest.mark.parametrize(
    ("status", "rejection"),
    [
        (399, False), (400, True), (404, True), (408, False), (409, True), (413, True),
        (429, False), (499, True), (500, False), (503, False), (None, False), ("404", False),
    ],
)  # fmt: skip
def test_only_4xx_other_than_408_and_429_is_a_rejection(status: object, rejection: bool) -> None:
    assert is_rejection(refused(status)) is rejection  # type: ignore[arg-type]


# HttpSink: masked key, repr, why no attempt is made


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@sts.example.com:8443/r?x=1", "https://sts.example.com:8443/r?x=1"),
        ("https://user:p@ss@sts.example.com/r", "https://sts.example.com/r"),  # "@" in the password
        ("HTTPS://sts.example.com/r?", "HTTPS://sts.example.com/r?"),  # no userinfo: as given
        ("https://sts.example.com/a@b", "https://sts.example.com/a@b"),
    ],
)
def test_shown_url_drops_only_the_userinfo(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_a_key_in_a_urllib3_log_line_is_masked_and_the_line_is_still_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _Redact, "secrets", set()
    )  # only this test's keys: other tests' short ones would mask more
    HttpSink("https://sts.example.com", "edge-k3y-one", proxies={})
    HttpSink("https://user:edge-pw-two@sts.example.com", "edge-k3y-three", proxies={})  # more secrets
    urllib3_log = logging.getLogger("urllib3.connectionpool")

    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        urllib3_log.debug('"POST /intake/?api_key=%s HTTP/1.1" %s', "edge-k3y-one", 200)
        urllib3_log.debug("no secret here: %s", "plain")

    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert lines == ['"POST /intake/?api_key=*** HTTP/1.1" 200', "no secret here: plain"]


def test_repr_masks_the_key_and_shows_the_proxy_without_its_credentials() -> None:
    url = "https://sts.example.com/receiver"
    target = "'https://sts.example.com/receiver/intake/'"

    assert repr(HttpSink(url, "r3pr-key", proxies={})) == f"HttpSink({target}, api_key='***', retries=5)"
    assert repr(HttpSink(url, None, retries=2, proxies={})) == f"HttpSink({target}, api_key=None, retries=2)"
    proxied = HttpSink(url, "r3pr-key", proxies={"https": "http://user:pw@proxy.example:3128"})
    assert repr(proxied) == f"HttpSink({target}, api_key='***', retries=5, proxy='http://proxy.example:3128')"


def test_a_stop_or_a_spent_budget_says_why_no_attempt_was_made() -> None:
    stop = threading.Event()
    stop.set()
    target = "http://127.0.0.1:9/intake/"

    with pytest.raises(DeliveryError) as stopped:
        HttpSink("http://127.0.0.1:9", "why-k3y", proxies={}, stop=stop).send({}, "p1")
    with pytest.raises(DeliveryError) as spent:
        HttpSink("http://127.0.0.1:9", "why-k3y", proxies={}, budget=0.0).send({}, "p2")

    assert str(stopped.value) == f"delivery to {target} failed: p1: stopped by a signal (after 0 attempt(s))"
    assert (
        str(spent.value)
        == f"delivery to {target} failed: p2: delivery budget of 0 s spent (after 0 attempt(s))"
    )
    assert stopped.value.status is None and stopped.value.attempts == 0


# halves: every kind of element, in order, none lost or repeated


def test_halves_split_every_list_kind_in_order_and_keep_the_rest_of_the_payload() -> None:
    payload = {
        "internalHostname": "h",
        "topologies": [
            {
                "instance": {"type": "aws", "url": A},
                "start_snapshot": True,
                "stop_snapshot": True,
                "components": ["c0"],
                "relations": ["r0"],
                "delete_ids": [],
            }
        ],
        "events": {"StackState events": ["e0", "e1"], "other": ["e2"]},
        "metrics": ["m0"],
        "health": ["h0"],
    }
    original = copy.deepcopy(payload)

    first, second = halves(payload)  # type: ignore[misc]

    topology = {"instance": {"type": "aws", "url": A}}
    assert first == {
        "internalHostname": "h",
        "topologies": [
            {**topology, "start_snapshot": True, "stop_snapshot": False, "components": ["c0"],
             "relations": ["r0"], "delete_ids": []}
        ],
        "events": {"StackState events": ["e0"]},
        "metrics": [],
        "health": [],
    }  # fmt: skip
    assert second == {
        "internalHostname": "h",
        "topologies": [
            {**topology, "start_snapshot": False, "stop_snapshot": True, "components": [], "relations": [],
             "delete_ids": []}
        ],
        "events": {"StackState events": ["e1"], "other": ["e2"]},
        "metrics": ["m0"],
        "health": ["h0"],
    }  # fmt: skip
    assert payload == original


def test_halves_of_a_payload_without_snapshot_flags_open_and_close_nothing() -> None:
    payload = {"topologies": [{"delete_ids": ["d0", "d1"]}], "service_checks": ["s0", "s1"]}

    first, second = halves(payload)  # type: ignore[misc]

    assert first["topologies"][0] == {
        "delete_ids": ["d0", "d1"],
        "components": [],
        "relations": [],
        "start_snapshot": False,
        "stop_snapshot": False,
    }
    assert second["topologies"][0]["delete_ids"] == []
    assert (second["topologies"][0]["start_snapshot"], second["topologies"][0]["stop_snapshot"]) == (
        False,
        False,
    )
    assert (first["service_checks"], second["service_checks"]) == ([], ["s0", "s1"])
    assert halves({"topologies": [{"components": ["c0"]}]}) is None
    assert halves({"topologies": [{"components": ["c0"]}, {"components": ["c1"]}]}) is None


# snapshot keys and fates


def test_snapshot_fate_is_delivered_spooled_or_rejected_and_the_worst_wins(
    inner: Inner, state: State
) -> None:
    sink = SpoolingSink(inner, state)
    assert sink.snapshot_fate(A) is None

    sink.send(*scan(A, 1, start=True, stop=True))
    assert sink.snapshot_fate(A) == "delivered"
    assert sink.snapshot_fate(B) is None

    inner.answer = lambda payload, name: refused(400) if name.endswith("0002") else None
    sink.send(*scan(B, 1, start=True))
    sink.send(*scan(B, 2))  # rejected
    inner.answer = lambda payload, name: refused(503)
    sink.send(*scan(B, 3, stop=True))  # spooled after a rejection: still the worse, rejected
    assert sink.snapshot_fate(B) == "rejected"

    sink.send(*scan(A, 1, start=True))
    assert sink.snapshot_fate(A) == "spooled"


def test_a_rejected_snapshot_payload_makes_its_snapshot_rejected(inner: Inner, state: State) -> None:
    inner.answer = lambda payload, name: refused(403)
    sink = SpoolingSink(inner, state)

    assert sink.send(*scan(A, 1, start=True)) == "rejected"

    assert sink.snapshot_fate(A) == "rejected"


def test_which_payloads_belong_to_an_open_snapshot(inner: Inner, state: State) -> None:
    inner.answer = lambda payload, name: refused(503)  # everything is spooled, with its snapshot key
    sink = SpoolingSink(inner, state)
    sends = [
        scan(A, 1, start=True),
        (body(A, "delta"), f"events-{A}-0002"),  # numbered, but another prefix
        scan(A, 3),  # a gap
        scan(A, 2, stop=True),  # the next one: closes the snapshot
        scan(A, 3),  # after the close
        (body(B, "full", start=True), "full"),  # a snapshot name without a number
        (body(123, "odd", start=True), "odd-0001"),  # no account: a delta
    ]
    for payload, name in sends:
        sink.send(payload, name)

    first = key(sink, A, f"scan-{A}-0001")
    assert [e["snapshot"] for e in state.spool_entries()] == [
        first,
        None,
        None,
        first,
        None,
        key(sink, B, "full"),
        None,
    ]
    assert sink.snapshot_fate(B) == "spooled"


# superseding


def test_a_new_snapshot_supersedes_the_spooled_one_and_says_which(
    inner: Inner, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    inner.answer = lambda payload, name: refused(503)
    sink = SpoolingSink(inner, state)
    sink.send(*scan(A, 1, start=True))
    sink.send(*scan(A, 2))
    sink.send(body(A, "delta"), f"events-{A}-0001")

    with caplog.at_level(logging.WARNING, logger="engine.delivery.spool"):
        sink.send(*scan(A, 1, start=True))
        sink.send(body(A, "again", start=True), f"rescan-{A}-0001")

    assert messages(caplog, "sink.superseded") == [
        f"event=sink.superseded account={A} by=scan-{A}-0001 dropped=2 names=scan-{A}-0001,scan-{A}-0002",
        f"event=sink.superseded account={A} by=rescan-{A}-0001 dropped=1 names=scan-{A}-0001",
    ]
    assert sink.superseded == 3
    assert [e["name"] for e in state.spool_entries()] == [f"events-{A}-0001", f"rescan-{A}-0001"]


# trimming


def test_a_snapshot_trimmed_from_the_spool_is_damaged_rejected_and_logged(
    inner: Inner, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    inner.answer = lambda payload, name: refused(503)
    sink = SpoolingSink(inner, state, max_entries=1, max_bytes=10**6)
    sink.send(*scan(A, 1, start=True))
    (oldest,) = state.spool_entries()

    with caplog.at_level(logging.ERROR, logger="engine.delivery.spool"):
        sink.send(*scan(A, 2))

    assert messages(caplog, "spool.overflow") == [
        f"event=spool.overflow id={oldest['id']} name=scan-{A}-0001 status=pending size={oldest['size']} "
        f"max_entries=1 max_bytes=1000000"
    ]
    assert sink.overflowed == 1
    assert sink.snapshot_fate(A) == "rejected"
    assert state.get(DAMAGED_KEY) == [key(sink, A, f"scan-{A}-0001")]
    assert [e["name"] for e in state.spool_entries()] == [f"scan-{A}-0002"]


# spooling and rejection: the entries, the counters, the log lines


def test_a_transient_failure_is_spooled_with_why_and_logged(
    inner: Inner, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    inner.answer = lambda payload, name: refused(503, "down")
    sink = SpoolingSink(inner, state)

    with caplog.at_level(logging.WARNING, logger="engine.delivery.spool"):
        assert sink.send(*scan(A, 1, start=True)) == "spooled"
        assert sink.send(*scan(A, 2)) == "spooled"

    reason = "delivery to fake failed: down"
    assert messages(caplog, "sink.spooled") == [
        f"event=sink.spooled name=scan-{A}-0001 reason={reason!r}",
        f"event=sink.spooled name=scan-{A}-0002 reason={QUEUED!r}",
    ]
    first = key(sink, A, f"scan-{A}-0001")
    assert entries(state) == [
        (f"scan-{A}-0001", "pending", reason, 503, first),
        (f"scan-{A}-0002", "pending", QUEUED, None, first),
    ]
    assert inner.calls == [f"scan-{A}-0001"]  # the second was queued, not tried
    assert sink.spooled == 2


def test_each_rejection_is_recorded_counted_and_logged(
    inner: Inner, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    inner.answer = lambda payload, name: refused(400 if name.startswith("scan") else 403, f"no {name}")
    sink = SpoolingSink(inner, state)

    with caplog.at_level(logging.ERROR, logger="engine.delivery.spool"):
        assert sink.send(*scan(A, 1, start=True)) == "rejected"
        assert sink.send(body(A, "delta"), "events-1") == "rejected"

    why = [f"delivery to fake failed: no scan-{A}-0001", "delivery to fake failed: no events-1"]
    assert entries(state) == [
        (f"scan-{A}-0001", "rejected", why[0], 400, key(sink, A, f"scan-{A}-0001")),
        ("events-1", "rejected", why[1], 403, None),
    ]
    ids = [e["id"] for e in state.spool_entries()]
    assert messages(caplog, "sink.rejected") == [
        f"event=sink.rejected name=scan-{A}-0001 status=400 spool_id={ids[0]} problem={why[0]!r}",
        f"event=sink.rejected name=events-1 status=403 spool_id={ids[1]} problem={why[1]!r}",
    ]
    assert sink.rejected == 2
    assert state.spool_payload(ids[1]) == body(A, "delta")


def test_a_damaged_snapshot_is_sent_on_but_its_last_payload_does_not_close_it(
    inner: Inner, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    inner.answer = lambda payload, name: refused(400) if name.endswith("0002") else None
    sink = SpoolingSink(inner, state)
    last, last_name = scan(A, 3, stop=True)
    second = {**last["topologies"][0], "instance": {"type": "aws", "url": B}}
    last["topologies"].append(second)
    sent = copy.deepcopy(last)

    sink.send(*scan(A, 1, start=True))
    sink.send(*scan(A, 2))
    with caplog.at_level(logging.WARNING, logger="engine.delivery.spool"):
        assert sink.send(last, last_name) == "delivered"

    assert messages(caplog, "sink.snapshot_left_open") == [
        f"event=sink.snapshot_left_open name={last_name} reason='a payload of it was lost'"
    ]
    name, delivered = inner.sent[-1]
    assert name == last_name
    assert delivered == {**sent, "topologies": [{**sent["topologies"][0], "stop_snapshot": False}, second]}
    assert last == sent  # the caller's payload is left as it was


# 413: halves, each sent under the payload's name


def test_a_payload_too_large_is_halved_under_its_own_name_and_each_split_logged(
    inner: Inner, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    inner.answer = lambda payload, name: (
        refused(413) if len(payload["topologies"][0]["components"]) > 1 else None
    )
    sink = SpoolingSink(inner, state)
    payload, name = scan(A, 1, start=True, stop=True)
    payload["topologies"][0]["components"] = [{"externalId": c} for c in ("c0", "c1", "c2")]

    with caplog.at_level(logging.WARNING, logger="engine.delivery.spool"):
        assert sink.send(payload, name) == "delivered"

    assert inner.calls == [name] * 5
    assert [[c["externalId"] for c in p["topologies"][0]["components"]] for _, p in inner.sent] == [
        ["c0"],
        ["c1"],
        ["c2"],
    ]
    split = f"event=sink.split name={name} reason='413: payload too large'"
    assert messages(caplog, "sink.split") == [split, split]
    assert state.spool_entries() == []


def test_a_refused_part_of_a_halved_snapshot_payload_keeps_its_snapshot(inner: Inner, state: State) -> None:
    inner.answer = lambda payload, name: refused(413)
    sink = SpoolingSink(inner, state)

    assert sink.send(body(A, "c", start=True, n=2), f"scan-{A}-0001") == "rejected"

    snapshot = key(sink, A, f"scan-{A}-0001")
    assert [(e["status"], e["http_status"], e["snapshot"]) for e in state.spool_entries()] == [
        ("rejected", 413, snapshot),
        ("rejected", 413, snapshot),
    ]
    assert sink.rejected == 2
    assert state.get(DAMAGED_KEY) == [snapshot]


def test_a_rejection_other_than_413_is_not_halved(inner: Inner, state: State) -> None:
    inner.answer = lambda payload, name: refused(400)
    sink = SpoolingSink(inner, state)
    payload = body(A, "c", n=4)

    assert sink.send(payload, "events-1") == "rejected"

    assert inner.calls == ["events-1"]
    (entry,) = state.spool_entries()
    assert state.spool_payload(entry["id"]) == payload


# flush_spool


def test_flush_goes_past_an_entry_that_vanished_meanwhile(inner: Inner, state: State) -> None:
    ids = {name: state.spool_put(name, {"n": name}) for name in ("p1", "p2", "p3")}

    def answer(payload: dict, name: str) -> None:
        if name == "p1":
            state.spool_delete(ids["p2"])  # e.g. dropped by an operator while the flush runs

    inner.answer = answer
    sink = SpoolingSink(inner, state)

    assert sink.flush_spool() == 2
    assert inner.names() == ["p1", "p3"]
    assert state.spool_entries() == []


def test_flush_stops_at_a_transient_failure_notes_it_and_queues_new_payloads_until_healed(
    inner: Inner, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("p1", "p2", "p3"):
        state.spool_put(name, {"n": name}, reason="earlier")
    inner.answer = lambda payload, name: refused(503, "down") if name == "p2" else None
    sink = SpoolingSink(inner, state)

    with caplog.at_level(logging.WARNING, logger="engine.delivery.spool"):
        assert sink.flush_spool() == 1

    why = "delivery to fake failed: down"
    assert messages(caplog, "sink.flush_stopped") == [f"event=sink.flush_stopped name=p2 problem={why!r}"]
    assert entries(state) == [("p2", "pending", why, 503, None), ("p3", "pending", "earlier", None, None)]
    assert sink.flushed == 1

    assert sink.send({"n": "p4"}, "p4") == "spooled"  # behind p2 and p3, not sent nor flushed again
    assert inner.calls == ["p1", "p2"]
    assert entries(state)[-1] == ("p4", "pending", QUEUED, None, None)

    inner.answer = lambda payload, name: None
    assert sink.flush_spool() == 3
    assert sink.flushed == 4
    assert sink.send({"n": "p5"}, "p5") == "delivered"  # the spool is empty again: sent at once
    assert inner.names() == ["p1", "p2", "p3", "p4", "p5"]
    assert state.spool_entries() == []


def test_a_rejection_during_flush_marks_the_entry_in_place(
    inner: Inner, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [state.spool_put(name, {"n": name}, reason="earlier") for name in ("p1", "p2", "p3")]
    inner.answer = lambda payload, name: None if name == "p2" else refused(404 if name == "p1" else 410, name)
    sink = SpoolingSink(inner, state)

    with caplog.at_level(logging.ERROR, logger="engine.delivery.spool"):
        assert sink.flush_spool() == 1

    why = {name: f"delivery to fake failed: {name}" for name in ("p1", "p3")}
    assert [
        (e["id"], e["name"], e["status"], e["reason"], e["http_status"]) for e in state.spool_entries()
    ] == [
        (ids[0], "p1", "rejected", why["p1"], 404),
        (ids[2], "p3", "rejected", why["p3"], 410),
    ]
    assert messages(caplog, "sink.rejected") == [
        f"event=sink.rejected name=p1 status=404 spool_id={ids[0]} problem={why['p1']!r}",
        f"event=sink.rejected name=p3 status=410 spool_id={ids[2]} problem={why['p3']!r}",
    ]
    assert sink.rejected == 2


def test_a_spooled_snapshot_of_an_earlier_run_is_flushed_and_closed(
    inner: Inner, state_target: str | Path
) -> None:
    path = state_target
    with State(path) as state:
        refusing = Inner()
        refusing.answer = lambda payload, name: refused(400)
        SpoolingSink(refusing, state).send(*scan(B, 1, start=True))  # a damaged snapshot of B, beside
        down = Inner()
        down.answer = lambda payload, name: refused(503)
        earlier = SpoolingSink(down, state)
        earlier.send(*scan(A, 1, start=True))
        earlier.send(*scan(A, 2, stop=True))

    with State(path) as state:
        assert SpoolingSink(inner, state).flush_spool() == 2

    assert [
        (p["topologies"][0]["start_snapshot"], p["topologies"][0]["stop_snapshot"]) for _, p in inner.sent
    ] == [(True, False), (False, True)]


# the damaged snapshots kept in the state


def test_damaged_snapshots_are_kept_while_they_have_entries_or_are_of_this_run(
    inner: Inner, state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    healed, left = f"{A}:scan-{A}-0001:earlier", f"{B}:scan-{B}-0001:earlier"
    state.set(DAMAGED_KEY, [healed, left])
    state.spool_put(
        f"scan-{B}-0002", {"n": 1}, status="rejected", reason="no", http_status=400, snapshot=left
    )
    inner.answer = lambda payload, name: refused(400)
    sink = SpoolingSink(inner, state)
    sink.send(*scan(A, 1, start=True))
    ours = key(sink, A, f"scan-{A}-0001")
    state.spool_delete(state.spool_entries()[-1]["id"])  # nothing of ours is left in the spool

    sink.flush_spool()
    assert state.get(DAMAGED_KEY) == sorted([left, ours])

    writes: list[tuple] = []
    monkeypatch.setattr(state, "set", lambda *args: writes.append(args))
    sink.flush_spool()
    assert writes == []  # unchanged: not written again


def test_a_damaged_snapshot_of_an_earlier_run_is_forgotten_once_its_entries_are_gone(
    inner: Inner, state_target: str | Path
) -> None:
    path = state_target
    with State(path) as state:
        inner.answer = lambda payload, name: refused(400)
        SpoolingSink(inner, state).send(*scan(A, 1, start=True))
        assert len(state.get(DAMAGED_KEY)) == 1
        state.spool_drop_rejected()

    with State(path) as state:
        SpoolingSink(Inner(), state).flush_spool()
        assert state.get(DAMAGED_KEY) == []


def test_a_flush_with_nothing_damaged_writes_no_damaged_list(inner: Inner, state: State) -> None:
    state.spool_put("p1", {"n": 1})

    assert SpoolingSink(inner, state).flush_spool() == 1

    assert state.get(DAMAGED_KEY) is None


def test_a_shard_resends_and_waits_behind_only_the_spooled_payloads_of_what_it_holds(
    inner: Inner, state: State
) -> None:
    inner.answer = lambda payload, name: refused(503)
    earlier = SpoolingSink(inner, state)
    earlier.send(body(A, "a1"), "delta-a1")
    earlier.send(body(B, "b1"), "delta-b1")
    inner.answer = lambda payload, name: None
    shard = SpoolingSink(inner, state, owns=lambda account: account == B)

    assert shard.pending() == 1 and shard.pending("rejected") == 0
    shard.send(body(B, "b2"), "delta-b2")  # B's spooled payload goes first, A's is another shard's
    assert inner.names() == ["delta-b1", "delta-b2"]
    shard.flush_spool()
    assert inner.names() == ["delta-b1", "delta-b2"]
    assert [e["name"] for e in state.spool_entries()] == ["delta-a1"]
    assert shard.pending() == 0 and not shard.failing
    assert SpoolingSink(inner, state).pending() == 1  # a sink that is not a shard's sees it all


def test_shards_keep_each_others_damaged_snapshots(inner: Inner, state: State) -> None:
    shard_a = SpoolingSink(inner, state, owns=lambda account: account == A)
    shard_b = SpoolingSink(inner, state, owns=lambda account: account == B)
    inner.answer = lambda payload, name: refused(400)
    shard_a.send(*scan(A, 1, start=True))
    shard_b.send(*scan(B, 1, start=True))  # b knew nothing of a's when it began

    both = sorted([key(shard_a, A, f"scan-{A}-0001"), key(shard_b, B, f"scan-{B}-0001")])
    assert state.get(DAMAGED_KEY) == both
    shard_b.flush_spool()  # forgets only what it holds, never another shard's
    assert state.get(DAMAGED_KEY) == both
