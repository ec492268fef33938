"""engine/traces/receiver.py and the state's trace ingest: the receiver run for real (in a thread, and as the
`aws-topology traces serve` process), posted to by the OpenTelemetry SDK's own OTLP/HTTP exporter; migration 3
from a version-2 state file written by the code of main."""

from __future__ import annotations

import gzip
import http.client
import json
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from engine.core.errors import StateError
from engine.core.state import SCHEMA_VERSION, State
from engine.traces.otlp import decode
from engine.traces.receiver import Receiver, serve
from tests.support import new_database
from tests.traces.spans import ACCOUNT, CLIENT, FUNCTION, REGION, SDK_SCOPE, Recorder, otlp, otlp_json
from tests.traces.test_otlp import SIGNED, current_conventions, stackstate_layer

CLI = [str(Path(sys.executable).parent / "aws-topology")]
V2 = Path(__file__).with_name("state-v2.sqlite")


def rows(path: Path) -> list[tuple[int, list]]:
    with sqlite3.connect(path) as conn:
        return [
            (spans, json.loads(body)) for spans, body in conn.execute("SELECT spans, body FROM trace_calls")
        ]


def expected(recorder: Recorder) -> tuple[int, list]:
    decoded = decode(otlp(recorder.spans()), "application/x-protobuf")
    return decoded.spans - sum(decoded.dropped.values()), decoded.calls


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """The receiver in a thread on a free port, over a fresh state; bound 100 pending spans."""
    state = State(tmp_path / "state.sqlite").check()
    server = Receiver(("127.0.0.1", 0), state, max_pending_spans=100)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    state.close()


def url(server: Receiver, path: str = "/v1/traces") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def post(server: Receiver, body: bytes, headers: dict[str, str], path: str = "/v1/traces") -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request("POST", path, body=body, headers=headers)
    answer = conn.getresponse()
    result = answer.status, dict(answer.headers), answer.read()
    conn.close()
    return result


@pytest.mark.parametrize("path", ["/v1/traces", "/open-telemetry"])
@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdk_exporter_s_spans_are_committed_as_one_row_of_exact_call_records(
    receiver: Receiver, path: str, compression: Compression
) -> None:
    recorder = stackstate_layer()
    exporter = OTLPSpanExporter(endpoint=url(receiver, path), compression=compression)
    assert exporter.export(recorder.spans()) == SpanExportResult.SUCCESS
    assert rows(receiver.state.path) == [expected(recorder)]
    assert receiver.state.traces_counts() == {
        "received": 4, "pending_rows": 1, "pending_spans": 4, "dropped": {}, "applied": 0
    }  # fmt: skip


def test_json_is_answered_in_json_with_the_dropped_spans_as_rejected(receiver: Receiver) -> None:
    recorder = current_conventions()
    recorder_without = Recorder({"faas.name": "x"})
    recorder_without.span("SQS.SendMessage", SDK_SCOPE, CLIENT, {"rpc.system": "aws-api"})
    body = otlp_json(recorder.spans() + recorder_without.spans())
    status, headers, answer = post(receiver, gzip.compress(body), {
        "Content-Type": "application/json", "Content-Encoding": "gzip"})  # fmt: skip
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(answer) == {
        "partialSuccess": {"rejectedSpans": "1", "errorMessage": "dropped no_function=1"}
    }
    assert rows(receiver.state.path) == [(3, expected(recorder)[1])]
    counts = receiver.state.traces_counts()
    assert (counts["received"], counts["pending_spans"], counts["dropped"]) == (4, 3, {"no_function": 1})


def test_protobuf_is_answered_with_an_export_response(receiver: Receiver) -> None:
    status, headers, answer = post(receiver, otlp(stackstate_layer().spans()), {
        "Content-Type": "application/x-protobuf"})  # fmt: skip
    assert (status, headers["Content-Type"]) == (200, "application/x-protobuf")
    assert ExportTraceServiceResponse.FromString(answer) == ExportTraceServiceResponse()


def test_no_query_string_of_a_presigned_url_reaches_the_state(receiver: Receiver) -> None:
    post(receiver, otlp(current_conventions().spans()), {"Content-Type": "application/x-protobuf"})
    receiver.state.close()
    files = [p for p in receiver.state.path.parent.iterdir() if p.name.startswith("state.sqlite")]
    stored = b"".join(p.read_bytes() for p in files)
    assert b"aws.s3.bucket" in stored  # the row is there
    assert SIGNED.encode() not in stored
    assert b"X-Amz-Signature" not in stored and b"AKIAEXAMPLE" not in stored


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({"Content-Type": "text/plain"}, b"x", 415, b"unsupported content type 'text/plain'"),
        ({"Content-Type": "application/x-protobuf"}, b"\xff\x00", 400,
         b"not an OTLP trace request: protobuf does not decode"),
        ({"Content-Type": "application/json"}, b"{", 400, b"not an OTLP trace request: invalid JSON"),
        ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, b"plain text", 400,
         b"not an OTLP trace request: not gzip"),
        ({"Content-Type": "application/x-protobuf"}, b"x" * 1001, 413, b"the body exceeds"),
    ],
)  # fmt: skip
def test_bad_requests_get_their_status_and_a_short_reason_and_write_nothing(
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    headers: dict,
    body: bytes,
    status: int,
    reason: bytes,
) -> None:
    monkeypatch.setattr("engine.traces.receiver.MAX_BODY", 1000)
    got, _, answer = post(receiver, body, headers)
    assert got == status
    assert answer.startswith(reason) and len(answer) < 300
    assert rows(receiver.state.path) == []
    assert receiver.state.traces_counts()["received"] == 0


def test_a_gzip_body_that_inflates_too_far_is_413(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.traces.otlp.MAX_INFLATED", 1000)
    got, _, answer = post(receiver, gzip.compress(b"\0" * 5000), {
        "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})  # fmt: skip
    assert (got, answer) == (413, b"not an OTLP trace request: the gzip body inflates beyond 0 MB\n")


def test_other_paths_methods_and_a_missing_length(receiver: Receiver) -> None:
    assert post(receiver, b"", {"Content-Type": "application/x-protobuf"}, "/v0.3/traces")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", receiver.server_address[1], timeout=10)
    conn.request("GET", "/healthz")
    health = conn.getresponse()
    assert (health.status, health.read()) == (200, b"ok\n")
    conn.putrequest("POST", "/v1/traces")
    conn.putheader("Content-Type", "application/x-protobuf")
    conn.endheaders()
    assert conn.getresponse().status == 411


def chunked(receiver: Receiver, raw: bytes) -> tuple[int, bytes]:
    """POST `raw` as the chunked body (chunk framing included) of one request."""
    with socket.create_connection(("127.0.0.1", receiver.server_address[1]), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + raw
        )
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, answer.read()


def frame(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-Trailer: 1\r\n\r\n"


def test_a_chunked_body_as_the_nodejs_exporter_streams_it_is_read_whole(receiver: Receiver) -> None:
    recorder = stackstate_layer()
    status, answer = chunked(receiver, frame(otlp(recorder.spans()), 7))
    assert status == 200
    ExportTraceServiceResponse.FromString(answer)
    assert rows(receiver.state.path) == [expected(recorder)]


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", 400, b"a malformed chunked body"),
        (b"\r\n", 400, b"a malformed chunked body"),
        (b"%x\r\n" % 1001 + b"x" * 1001 + b"\r\n0\r\n\r\n", 413, b"the body exceeds"),
        (b"600\r\n" + b"x" * 600 + b"\r\n600\r\n" + b"x" * 600 + b"\r\n0\r\n\r\n", 413, b"the body exceeds"),
    ],
    ids=["not-hex", "no-size", "one-chunk-too-large", "chunks-add-up-too-large"],
)
def test_a_malformed_or_too_large_chunked_body_is_refused(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, raw: bytes, status: int, reason: bytes
) -> None:
    monkeypatch.setattr("engine.traces.receiver.MAX_BODY", 1000)
    got, answer = chunked(receiver, raw)
    assert (got, answer[: len(reason)]) == (status, reason)
    assert rows(receiver.state.path) == []


def test_over_the_bound_is_503_with_retry_after_counted_over_limit_and_nothing_written(
    receiver: Receiver,
) -> None:
    recorder = Recorder({"cloud.resource_id": FUNCTION})
    for n in range(60):
        recorder.span("S3.GetObject", SDK_SCOPE, CLIENT, {"rpc.system": "aws-api", "aws.s3.bucket": f"b{n}"})
    body, headers = otlp(recorder.spans()), {"Content-Type": "application/x-protobuf"}
    assert post(receiver, body, headers)[0] == 200  # 60 of 100
    status, answer_headers, _ = post(receiver, body, headers)  # 120 > 100
    assert (status, answer_headers["Retry-After"]) == (503, "30")
    assert [spans for spans, _ in rows(receiver.state.path)] == [60]
    assert receiver.state.traces_counts() == {
        "received": 120, "pending_rows": 1, "pending_spans": 60, "dropped": {"over_limit": 60}, "applied": 0
    }  # fmt: skip
    assert receiver.summary() == (
        "requests=2 received=120 dropped=60 dropped.over_limit=60 refused=1 errors=0"
    )


def test_a_state_that_cannot_take_the_row_is_503_with_retry_after_and_counted(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(*_: object) -> bool:
        raise StateError(path=str(receiver.state.path), problem="database is locked")

    monkeypatch.setattr(receiver.state, "traces_append", busy)
    status, headers, answer = post(receiver, otlp(stackstate_layer().spans()), {
        "Content-Type": "application/x-protobuf"})  # fmt: skip
    assert (status, headers["Retry-After"], answer) == (503, "30", b"the state cannot take it now\n")
    assert receiver.summary() == "requests=1 received=0 dropped=0 refused=0 errors=1"


def test_the_receiver_writes_while_a_run_holds_the_state_s_lock(receiver: Receiver) -> None:
    with State(receiver.state.path).lock():
        assert OTLPSpanExporter(endpoint=url(receiver)).export(stackstate_layer().spans()).name == "SUCCESS"
    assert len(rows(receiver.state.path)) == 1


def test_serve_logs_a_summary_when_something_changed_at_most_once_a_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.traces.receiver.LOG_EVERY", 0.2)
    said, logged, servers, stop = [], [], [], threading.Event()
    thread = threading.Thread(
        target=serve, args=("127.0.0.1:0", str(tmp_path / "s.sqlite"), 100, said.append, logged.append),
        kwargs={"ready": servers.append, "stop": stop},
    )  # fmt: skip
    thread.start()
    try:
        assert wait(lambda: servers)
        time.sleep(0.5)  # nothing happened: nothing logged
        assert logged == []
        post(servers[0], otlp(stackstate_layer().spans()), {"Content-Type": "application/x-protobuf"})
        assert wait(lambda: logged)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    port = servers[0].server_address[1]
    assert said == [f"traces serve listening=http://127.0.0.1:{port} state={tmp_path / 's.sqlite'}"]
    summary = "requests=1 received=4 dropped=0 refused=0 errors=0"
    assert logged == [f"traces serve {summary}", f"traces serve stopped {summary}"]


def wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(condition())


# the process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(state: Path, port: int) -> subprocess.Popen:
    """`aws-topology traces serve`, once it printed its listening line."""
    process = subprocess.Popen(
        [*CLI, "traces", "serve", "--listen", f"127.0.0.1:{port}", "--state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ready, _, _ = select.select([process.stdout], [], [], 30)
    assert ready, "the receiver printed nothing within 30 s"
    line = process.stdout.readline()  # type: ignore[union-attr]
    assert line == f"traces serve listening=http://127.0.0.1:{port} state={state}\n"
    return process


def test_what_was_acknowledged_survives_kill_9_and_a_restart(tmp_path: Path) -> None:
    state, port = tmp_path / "state.sqlite", free_port()
    process = start(state, port)
    recorders = [stackstate_layer(), current_conventions()]
    try:
        for recorder in recorders:
            endpoint = f"http://127.0.0.1:{port}/open-telemetry"
            assert OTLPSpanExporter(endpoint=endpoint).export(recorder.spans()) == SpanExportResult.SUCCESS
    finally:
        process.kill()  # SIGKILL: no clean-up at all
        process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    process = start(state, port)
    try:
        assert rows(state) == [expected(r) for r in recorders]
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_sigterm_stops_it_cleanly_with_one_line_of_counts(tmp_path: Path) -> None:
    state, port = tmp_path / "state.sqlite", free_port()
    process = start(state, port)
    OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces").export(stackstate_layer().spans())
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out) == (0, "")
    (line,) = err.splitlines()
    assert line.endswith(" traces serve stopped requests=1 received=4 dropped=0 refused=0 errors=0"), err
    assert State(state, read_only=True).traces_counts()["pending_rows"] == 1


def test_sigterm_finishes_the_request_under_way_before_it_exits(tmp_path: Path) -> None:
    state, port = tmp_path / "state.sqlite", free_port()
    process = start(state, port)
    body = otlp(stackstate_layer().spans())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        head = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        client.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        time.sleep(0.5)  # the handler is reading the body
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the main thread is draining
        client.sendall(body[10:])
        answer = client.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert err.endswith(" traces serve stopped requests=1 received=4 dropped=0 refused=0 errors=0\n")
    assert rows(state) == [expected(stackstate_layer())]


def test_a_port_in_use_is_one_clear_error_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*CLI, "traces", "serve", "--listen", f"127.0.0.1:{port}", "--state", str(tmp_path / "s.sqlite")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


@pytest.mark.parametrize("listen", ["8126", "host:", "host:99999", ":8126"])
def test_a_listen_address_that_is_not_host_port_is_exit_2(tmp_path: Path, listen: str) -> None:
    result = subprocess.run(
        [*CLI, "traces", "serve", "--listen", listen, "--state", str(tmp_path / "s.sqlite")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (
        2, f"error: cannot listen on {listen}: give HOST:PORT, e.g. 127.0.0.1:8126\n"
    )  # fmt: skip


# the state


def test_migration_3_keeps_the_runs_and_spool_of_a_version_2_state(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    shutil.copy(V2, path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        runs_before = conn.execute("SELECT * FROM runs ORDER BY id").fetchall()
        spool_before = conn.execute("SELECT * FROM spool ORDER BY id").fetchall()
    assert len(runs_before) == 3 and len(spool_before) == 2
    with State(path) as state:
        state.check()
        assert state.last_run(ACCOUNT, "scan")["summary"] == {"components": 12, "snapshot_closed": True}
        assert state.get(f"events.cursor.{ACCOUNT}") == {"key": "k"}
        state.record_run(ACCOUNT, "traces", 1765000300, 1765000301, True, {"relations": 2})
        assert state.spool_totals() == {"pending": 1, "rejected": 1, "bytes": 142}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert conn.execute("SELECT * FROM runs WHERE id <= 3 ORDER BY id").fetchall() == runs_before
        assert conn.execute("SELECT id, kind FROM runs WHERE id > 3").fetchall() == [(4, "traces")]
        assert conn.execute("SELECT * FROM spool ORDER BY id").fetchall() == spool_before
        indexes = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'")
        assert [name for (name,) in indexes] == ["runs_by_account_kind"]
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"trace_calls", "trace_relations"} <= tables and "runs_new" not in tables
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with pytest.raises(sqlite3.IntegrityError), sqlite3.connect(path) as conn:  # the CHECK still holds
        conn.execute("INSERT INTO runs (account, kind, started_at, finished_at, complete, summary)"
                         " VALUES ('a', 'other', 't', 't', 1, '{}')")  # fmt: skip


def test_traces_append_counts_every_span_once_and_refuses_past_the_bound(tmp_path: Path) -> None:
    call = {"function": FUNCTION, "name": "S3.GetObject", "kind": 3, "attributes": {"aws.region": REGION},
            "count": 2, "last": 5}  # fmt: skip
    with State(tmp_path / "state.sqlite") as state:
        assert state.traces_counts() == {
            "received": 0, "pending_rows": 0, "pending_spans": 0, "dropped": {}, "applied": 0
        }  # fmt: skip
        assert state.traces_append([call], 10, {"no_function": 3}, max_pending_spans=10) is True
        assert state.traces_append([call], 5, {}, max_pending_spans=10) is False  # 7 + 5 > 10
        assert state.traces_append([], 3, {"no_function": 1}, max_pending_spans=10) is True  # 7 + 2
        assert state.traces_append([], 1, {}, max_pending_spans=10) is True  # 9 + 1: the bound itself
        assert state.traces_counts() == {
            "received": 19, "pending_rows": 3, "pending_spans": 10,
            "dropped": {"no_function": 4, "over_limit": 5}, "applied": 0,
        }  # fmt: skip
        with sqlite3.connect(state.path) as conn:
            assert conn.execute("SELECT spans, body FROM trace_calls").fetchall() == [
                (7, json.dumps([call], separators=(",", ":"))), (2, "[]"), (1, "[]")
            ]  # fmt: skip


def test_the_bound_counts_rows_another_writer_added_and_frees_what_the_phase_deleted(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with State(path) as receiver, State(path) as other:
        assert receiver.traces_append([], 4, {}, max_pending_spans=10) is True
        assert other.traces_append([], 4, {}, max_pending_spans=10) is True  # 8 pending
        assert receiver.traces_append([], 3, {}, max_pending_spans=10) is False  # 11 > 10
        assert receiver.traces_append([], 2, {}, max_pending_spans=10) is True  # 10
        with sqlite3.connect(path) as conn:  # the phase consumes every row
            conn.execute("DELETE FROM trace_calls")
        assert receiver.traces_append([], 10, {}, max_pending_spans=10) is True
        assert other.traces_append([], 1, {}, max_pending_spans=10) is False
        assert receiver.traces_counts()["pending_spans"] == 10


def test_a_receiver_and_a_reader_of_the_state_share_it_in_threads(tmp_path: Path) -> None:
    with State(tmp_path / "state.sqlite") as state:
        threads = [
            threading.Thread(target=lambda: [state.traces_append([], 1, {}, 10**9) for _ in range(50)])
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert state.traces_counts()["pending_rows"] == state.traces_counts()["received"] == 200


def test_serve_on_a_postgresql_state_shows_its_url_without_the_password(postgres: str) -> None:
    url = new_database(postgres, "receiver").replace("topology@", "topology:hunter2@")
    said, logged, servers, stop = [], [], [], threading.Event()
    thread = threading.Thread(
        target=serve, args=("127.0.0.1:0", url, 100, said.append, logged.append),
        kwargs={"ready": servers.append, "stop": stop},
    )  # fmt: skip
    thread.start()
    try:
        assert wait(lambda: servers)
        post(servers[0], otlp(stackstate_layer().spans()), {"Content-Type": "application/x-protobuf"})
    finally:
        stop.set()
        thread.join(timeout=30)
    port = servers[0].server_address[1]
    shown = url.replace("hunter2", "***")
    assert said == [f"traces serve listening=http://127.0.0.1:{port} state={shown}"]
    assert "hunter2" not in " ".join(logged)
    with State(url) as state:
        assert state.traces_counts()["pending_spans"] == 4
