"""Benchmark: traces ingest (the receiver side). Prints spans/s and peak memory; no asserts.

Requests are what a NodeJS Lambda's BatchSpanProcessor exports: 512 spans, built with the OpenTelemetry SDK
(per invocation an entry span, then 4 AWS SDK calls of ~15 attributes, each with its HTTPS child span).

1. decode alone (protobuf, protobuf+gzip, JSON), beside the floor: `ParseFromString` and nothing else.
2. decode + `traces_append` in one process (the receiver's work without HTTP), on a fresh state file.
3. over HTTP: `aws-topology traces serve` as its own process, posted to on one keep-alive connection.
4. memory: peak RSS of decode + append for 10,000 and for 1,000,000 spans, each in a fresh process.
5. the traces phase (the batch side): rows already in the state become the account's relations
   (`read_pending` + `apply_traces` to a sink that keeps nothing), spans of the rows per second.

    .venv/bin/python -m bench.traces [--seconds 5] [--spans 1000000]
"""

from __future__ import annotations

import argparse
import http.client
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from engine.core.config import Instance
from engine.core.state import State
from engine.language.loader import load_mappings
from engine.traces.apply import apply_traces, read_pending
from engine.traces.otlp import decode
from tests.traces.spans import (
    ACCOUNT,
    CLIENT,
    FORMS,
    FUNCTION,
    HTTP_SCOPE,
    LAMBDA_SCOPE,
    REGION,
    SDK_SCOPE,
    SERVER,
    Recorder,
)

PER_REQUEST = 512


def request_spans(spans: int = PER_REQUEST) -> list:
    """One export batch: invocations of 1 entry + 4 x (SDK call + HTTPS child) spans."""
    recorder = Recorder({"cloud.provider": "aws", "cloud.region": REGION, "faas.name": "orders",
                         "faas.version": "$LATEST", "service.name": "orders"})  # fmt: skip
    n = 0
    while n < spans:
        entry = recorder.span("orders", LAMBDA_SCOPE, SERVER, {
            "faas.execution": f"req-{n}", "faas.id": FUNCTION, "cloud.account.id": ACCOUNT})  # fmt: skip
        n += 1
        for j in range(4):
            if n >= spans:
                break
            call = recorder.span("SQS.SendMessage", SDK_SCOPE, CLIENT, {
                "aws.operation": "sendMessage", "aws.service.api": "SQS", "aws.service.identifier": "sqs",
                "aws.service.name": "Amazon SQS", "aws.signature.version": 4, "aws.region": REGION,
                "aws.request.id": f"r-{n}", "rpc.system": "aws-api", "rpc.method": "SendMessage",
                "rpc.service": "SQS", "messaging.system": "aws.sqs", "messaging.destination_kind": "queue",
                "messaging.destination": f"q{j}", "messaging.message_id": f"m-{n}",
                "messaging.url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/q{j}",
            }, parent=entry)  # fmt: skip
            n += 1
            if n < spans:
                recorder.span("HTTPS POST", HTTP_SCOPE, CLIENT, {
                    "http.url": f"https://sqs.{REGION}.amazonaws.com/", "http.method": "POST",
                    "http.status_code": 200, "http.flavor": "1.1", "net.peer.name": "sqs",
                }, parent=call)  # fmt: skip
                n += 1
    return recorder.spans()


def rate(work, seconds: float) -> float:
    """Spans/s of `work()` (which returns the spans it handled), repeated for about `seconds`."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += work()
    return done / (time.perf_counter() - start)


def decoding(seconds: float) -> None:
    spans = request_spans()
    proto = FORMS["protobuf"][2](spans)

    def floor() -> int:
        ExportTraceServiceRequest.FromString(proto)
        return PER_REQUEST

    base = rate(floor, seconds)
    print(f"{'parse only (floor)':>24}: {base:>10,.0f} spans/s")
    for form in ("protobuf", "protobuf-gzip", "json"):
        content_type, encoding, build = FORMS[form]
        body = build(spans)
        speed = rate(lambda b=body, c=content_type, e=encoding: decode(b, c, e).spans, seconds)
        print(f"{'decode ' + form:>24}: {speed:>10,.0f} spans/s  floor/decode={base / speed:5.1f}  "
              f"body={len(body) / 1024:,.0f} KiB")  # fmt: skip


def in_process(seconds: float, folder: Path) -> float:
    body = FORMS["protobuf"][2](request_spans())
    with State(folder / "in-process.sqlite") as state:
        state.check()

        def work() -> int:
            decoded = decode(body, "application/x-protobuf", None)
            state.traces_append(decoded.calls, decoded.spans, decoded.dropped, 10**12)
            return decoded.spans

        speed = rate(work, seconds)
    print(f"{'decode + append':>24}: {speed:>10,.0f} spans/s")
    return speed


def over_http(seconds: float, folder: Path) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = Path(sys.executable).parent / "aws-topology"
    process = subprocess.Popen(
        [str(exe), "traces", "serve", "--listen", f"127.0.0.1:{port}", "--state", str(folder / "http.sqlite"),
         "--max-pending-spans", str(10**12)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        process.stdout.readline()  # type: ignore[union-attr]
        body = FORMS["protobuf"][2](request_spans())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def work() -> int:
            conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}")
            return PER_REQUEST

        speed = rate(work, seconds)
        conn.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
    print(f"{'over HTTP (serve)':>24}: {speed:>10,.0f} spans/s")
    return speed


class _Discard:
    def send(self, payload: dict, name: str) -> None:
        pass


def batch(seconds: float, folder: Path, rows: int = 200) -> float:
    """Spans/s of the traces phase over `rows` received requests (filling the state is not timed)."""
    decoded = decode(FORMS["protobuf"][2](request_spans()), "application/x-protobuf", None)
    mappings = load_mappings()
    instance = Instance(role_arn=f"arn:aws:iam::{ACCOUNT}:role/R", regions=(REGION,))
    done, spent = 0, 0.0
    with State(folder / "batch.sqlite") as state:
        state.check()
        while spent < seconds:
            for _ in range(rows):
                state.traces_append(decoded.calls, decoded.spans, decoded.dropped, 10**12)
            started = time.perf_counter()
            pending = read_pending(state, mappings, {ACCOUNT})
            apply_traces(instance, pending, _Discard(), state, ttl=10**10, max_bytes=1_000_000)
            pending.consume(state)
            spent += time.perf_counter() - started
            done += pending.spans
    speed = done / spent
    print(f"{'traces phase (batch)':>24}: {speed:>10,.0f} spans/s  ({rows} requests of {PER_REQUEST} a run)")
    return speed


def peak_rss(spans: int, folder: Path) -> float:
    """MB of peak RSS of a fresh process that decodes and appends `spans` spans."""
    code = (
        "import resource, sys; from pathlib import Path; import bench.traces as b; "
        f"b.append_only({spans}, Path({str(folder)!r})); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) / 1024


def append_only(spans: int, folder: Path) -> None:
    body = FORMS["protobuf"][2](request_spans())
    path = folder / f"rss-{spans}.sqlite"
    with State(path) as state:
        state.check()
        done = 0
        while done < spans:
            decoded = decode(body, "application/x-protobuf", None)
            state.traces_append(decoded.calls, decoded.spans, decoded.dropped, 10**12)
            done += decoded.spans


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans of the large memory run")
    args = parser.parse_args()
    print(f"request: {PER_REQUEST} spans, 4 AWS SDK calls per invocation (protobuf as the SDK encodes it)")
    decoding(args.seconds)
    with tempfile.TemporaryDirectory() as folder:
        local = in_process(args.seconds, Path(folder))
        remote = over_http(args.seconds, Path(folder))
        print(f"over HTTP / in process = {remote / local:.2f}")
        phase = batch(args.seconds, Path(folder))
        print(f"traces phase / decode + append = {phase / local:.2f}")
        small, large = peak_rss(10_000, Path(folder)), peak_rss(args.spans, Path(folder))
    print(f"peak RSS: {small:.0f} MB at 10,000 spans, {large:.0f} MB at {args.spans:,} spans "
          f"(ratio {large / small:.2f})")  # fmt: skip
    print(f"this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
