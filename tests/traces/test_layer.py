"""The NodeJS OpenTelemetry layer (deploy/otel-layer/) end to end: built into its zip by build.sh, extracted
as Lambda extracts a layer into /opt, and a NodeJS function (tests/traces/lambda/index.js, AWS SDK v3) run
under its exec wrapper the way the Lambda runtime runs it (tests/traces/lambda/runtime.js), calling SQS and S3
on the moto server. Its spans are POSTed as OTLP/HTTP protobuf to `capture()` (to read the spans themselves),
then to the real `aws-topology traces serve`, after which `aws-topology run` must send exactly the function's
two relations.

Needs Node (the Lambda runtimes' 18+) and `npm ci` in deploy/otel-layer/ (run.sh test does it; the AWS SDK of
the function comes from its devDependencies, as the runtime's own SDK would).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support import ACCOUNT, live_aws, moto_env, moto_server, serve
from tests.traces.test_receiver import CLI, free_port, start

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "deploy" / "otel-layer"
FUNCTION = Path(__file__).resolve().parent / "lambda"
REGION = "us-east-1"
NAME = "orders"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{NAME}"
SECRET = "card=4111111111111111"  # the message body and object content: never in a span

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the layer is NodeJS)"),
]


@pytest.fixture(scope="module")
def opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer's zip, built by build.sh and extracted with its file modes, as Lambda makes /opt."""
    assert (LAYER / "node_modules").is_dir(), "run `npm ci` in deploy/otel-layer/ (./run.sh test does)"
    work = tmp_path_factory.mktemp("layer")
    built = subprocess.run(
        [str(LAYER / "build.sh")], env={**os.environ, "OUT": str(work / "otel-layer.zip")},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    assert built.stdout.strip() == str(work / "otel-layer.zip")
    target = work / "opt"
    with zipfile.ZipFile(work / "otel-layer.zip") as archive:
        for info in archive.infolist():
            archive.extract(info, target)
            mode = info.external_attr >> 16
            if mode:
                (target / info.filename).chmod(stat.S_IMODE(mode))
    return target


class Capture(BaseHTTPRequestHandler):
    """Records every POST (path, content type, body) in `received` and answers an empty OTLP response. The
    exporter of Node sends its body chunked (Transfer-Encoding: chunked, no Content-Length)."""

    received: ClassVar[list[tuple[str, str, bytes]]]

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b"".join(iter(self._chunk, b""))
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _chunk(self) -> bytes:
        size = int(self.rfile.readline().split(b";")[0], 16)
        chunk = self.rfile.read(size)
        self.rfile.readline()  # the CRLF after the chunk (after the last, empty one: the end of the trailers)
        return chunk

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def capture() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """The OTLP endpoint the layer exports to, and the requests it received."""
    received: list[tuple[str, str, bytes]] = []
    with serve(Capture, received=received) as url:
        yield url + "/v1/traces", received


def invoke(opt: Path, aws_endpoint: str, traces_endpoint: str, event: dict[str, Any]) -> Any:
    """Runs the function once under the layer, as Lambda does with AWS_LAMBDA_EXEC_WRAPPER=/opt/otel-handler;
    returns what the handler returned."""
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
        # The Node runtimes' NODE_PATH: the layer's modules, then the runtime's own (here the test's AWS SDK).
        "NODE_PATH": f"{opt / 'nodejs' / 'node_modules'}:{LAYER / 'node_modules'}",
        "_HANDLER": "index.handler", "LAMBDA_TASK_ROOT": str(FUNCTION),
        "AWS_LAMBDA_FUNCTION_NAME": NAME, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_LAMBDA_EXEC_WRAPPER": str(opt / "otel-handler"),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces_endpoint,
        "INVOKED_FUNCTION_ARN": ARN, "EVENT": json.dumps(event),
    }  # fmt: skip
    command = [env["AWS_LAMBDA_EXEC_WRAPPER"], "node", str(FUNCTION / "runtime.js")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def spans_of(received: list[tuple[str, str, bytes]]) -> list[tuple[Span, dict[str, Any], str]]:
    """Every span of the received requests: the span, its attributes, its instrumentation scope's name."""
    found = []
    for _, _, body in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    found.append((span, attributes, scope_spans.scope.name))
    return found


def test_function_under_the_layer_exports_its_entry_span_and_its_two_aws_calls(opt: Path) -> None:
    with moto_server() as endpoint, live_aws(endpoint), capture() as (traces, received):
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
        queue_url = sqs.create_queue(QueueName="orders")["QueueUrl"]
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
        s3.create_bucket(Bucket="orders-archive")
        result = invoke(opt, endpoint, traces, {"queueUrl": queue_url, "bucket": "orders-archive",
                                                 "secret": SECRET})  # fmt: skip
        # the calls happened on the moto server
        assert result == {"sent": 2}
        (message,) = sqs.receive_message(QueueUrl=queue_url)["Messages"]
        assert message["Body"] == SECRET
        assert s3.get_object(Bucket="orders-archive", Key="orders/1.json")["Body"].read() == SECRET.encode()
    # flushed at the end of the invocation (the runtime exited right after it), as OTLP/HTTP protobuf
    posted = {(path, content_type) for path, content_type, _ in received}
    assert posted == {("/v1/traces", "application/x-protobuf")}
    spans = spans_of(received)
    assert len(spans) == 3, [(s.name, a) for s, a, _ in spans]
    ((entry, entry_attributes, _),) = [s for s in spans if s[0].kind == Span.SPAN_KIND_SERVER]
    assert entry_attributes["faas.id"] == ARN and entry_attributes["cloud.resource_id"] == ARN
    assert entry_attributes["cloud.account.id"] == ACCOUNT
    calls = {a["rpc.service"] + "." + a["rpc.method"]: (s, a, scope) for s, a, scope in spans
             if s.span_id != entry.span_id}  # fmt: skip
    assert set(calls) == {"SQS.SendMessage", "S3.PutObject"}
    for span, attributes, scope in calls.values():
        assert span.trace_id == entry.trace_id and span.parent_span_id == entry.span_id
        assert attributes["rpc.system"] == "aws-api" and attributes["cloud.region"] == REGION
        assert "aws-sdk" in scope
        assert SECRET not in json.dumps(attributes)
    sqs_span, sqs_attributes, _ = calls["SQS.SendMessage"]
    # The SQS instrumentation makes SendMessage a PRODUCER span (the other calls are CLIENT spans).
    assert sqs_span.kind == Span.SPAN_KIND_PRODUCER
    assert sqs_attributes["aws.request.queue.url"] == queue_url and sqs_attributes["url.full"] == queue_url
    s3_span, s3_attributes, _ = calls["S3.PutObject"]
    assert s3_span.kind == Span.SPAN_KIND_CLIENT
    assert s3_attributes["aws.request.bucket"] == "orders-archive"
    copied = {k for k in s3_attributes if k.startswith("aws.request.")}
    assert copied == {"aws.request.bucket", "aws.request.id"}  # no other input of the call


HOOKS = """
const { requestAttributes, functionAttributes } = require(process.argv[1]);
const span = () => ({ attributes: {}, setAttribute(k, v) { this.attributes[k] = v; } });
const calls = JSON.parse(process.argv[2]).map(([serviceName, commandName, commandInput]) => {
  const s = span();
  requestAttributes(s, { request: { serviceName, commandName, commandInput } });
  return s.attributes;
});
const entries = process.argv.slice(3).map((invokedFunctionArn) => {
  const s = span();
  functionAttributes(s, { event: {}, context: { invokedFunctionArn } });
  return s.attributes;
});
process.stdout.write(JSON.stringify({ calls, entries }));
"""


def test_hooks_copy_the_target_naming_inputs_only_and_the_invoked_arn() -> None:
    """The StackState layer's attributes for every service it names, from the wrapper's hooks themselves."""
    assert (LAYER / "node_modules").is_dir(), "run `npm ci` in deploy/otel-layer/ (./run.sh test does)"
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:orders"
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:ship"
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/clicks"
    queue = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/orders"
    calls = [
        ["S3", "PutObject", {"Bucket": "archive", "Key": "k", "Body": SECRET}],
        ["SNS", "Publish", {"TopicArn": topic, "Message": SECRET}],
        ["Lambda", "Invoke", {"FunctionName": "billing", "Payload": SECRET}],
        ["SFN", "StartExecution", {"stateMachineArn": machine, "input": SECRET}],
        ["SQS", "SendMessage", {"QueueUrl": queue, "MessageBody": SECRET}],
        ["DynamoDB", "PutItem", {"TableName": "orders", "Item": {"card": {"S": SECRET}}}],
        ["Kinesis", "PutRecord", {"StreamName": "clicks", "StreamARN": stream, "Data": SECRET}],
        ["S3", "PutObject", {"Bucket": {"not": "a string"}}],
    ]
    arns = [ARN, ARN + ":live"]
    done = subprocess.run(
        ["node", "-e", HOOKS, str(LAYER / "wrapper.js"), json.dumps(calls), *arns],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ["PATH"], "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["calls"] == [
        {"aws.request.bucket": "archive"},
        {"aws.request.topic.arn": topic},
        {"aws.request.function.name": "billing"},
        {"aws.request.state.machine.arn": machine},
        {"aws.request.queue.url": queue},
        {"aws.request.table.name": "orders"},
        {"aws.request.stream.name": "clicks", "aws.request.stream.arn": stream},
        {},
    ]
    assert found["entries"] == [
        {"faas.id": arn, "cloud.resource_id": arn, "cloud.account.id": ACCOUNT} for arn in arns
    ]


def test_through_traces_serve_run_relates_the_function_to_exactly_what_it_called(
    opt: Path, tmp_path: Path
) -> None:
    """The whole path: the function under the layer exports to `aws-topology traces serve` (the StackState
    layer's /open-telemetry path), and `aws-topology run` then sends exactly its two relations, to the
    external ids its own scan gives the queue and the bucket."""
    state, port, out = tmp_path / "state.sqlite", free_port(), tmp_path / "out"
    config = tmp_path / "conf.yaml"
    config.write_text(
        "init_config: {external_id: test-external-id}\n"
        f"instances:\n  - role_arn: arn:aws:iam::{ACCOUNT}:role/StackStateAwsIntegrationRole\n"
        f"    regions: [{REGION}]\n    apis_to_run: [sqs, s3, lambda]\n"
    )
    with moto_server() as endpoint, live_aws(endpoint):
        queue_url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="orders")["QueueUrl"]
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="orders-archive")
        logs = f"stackstate-logs-{ACCOUNT}"  # the events phase of `run` reads it (empty)
        s3.create_bucket(Bucket=logs)
        s3.put_bucket_versioning(Bucket=logs, VersioningConfiguration={"Status": "Enabled"})
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="orders", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.write(FUNCTION / "index.js", "index.js")
        boto3.client("lambda", region_name=REGION).create_function(
            FunctionName=NAME, Runtime="nodejs20.x", Role=role, Handler="index.handler",
            Code={"ZipFile": code.getvalue()}, Layers=[], Environment={"Variables": {
                "AWS_LAMBDA_EXEC_WRAPPER": "/opt/otel-handler",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/open-telemetry"}},
        )  # fmt: skip
        receiver = start(state, port)
        try:
            event = {"queueUrl": queue_url, "bucket": "orders-archive", "secret": SECRET}
            assert invoke(opt, endpoint, f"http://127.0.0.1:{port}/open-telemetry", event) == {"sent": 2}
        finally:
            receiver.terminate()
            _, said = receiver.communicate(timeout=30)
        assert receiver.returncode == 0, said
        env = {**os.environ, **moto_env(endpoint)}
        ran = subprocess.run(
            [*CLI, "run", "-c", str(config), "--out", str(out), "--state", str(state), "--no-table"],
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"traces account={ACCOUNT} status=complete calls=2 relations=2 new=2" in ran.stdout
    (run_dir,) = out.glob("run-*")
    (traced,) = [json.loads(p.read_text()) for p in run_dir.glob("traces-*.json")]
    (topology,) = traced["topologies"]
    assert topology["instance"] == {"type": "aws-v2", "url": f"{ACCOUNT}/traces"}
    queue, bucket = f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders", "arn:aws:s3:::orders-archive"
    assert sorted((r["sourceId"], r["type"]["name"], r["targetId"]) for r in topology["relations"]) == [
        (ARN, "uses-service", bucket), (ARN, "uses-service", queue)
    ]  # fmt: skip
    scanned = {
        c["externalId"]
        for p in run_dir.glob("scan-*.json")
        for t in json.loads(p.read_text())["topologies"]
        for c in t["components"]
    }
    assert {ARN, queue, bucket} <= scanned  # the scan's own external ids: the relations join its components
    assert SECRET not in state.read_bytes().decode("latin-1")
