"""engine/traces/otlp.py: OTLP requests built with the OpenTelemetry SDK, reduced to exact call records, for
every attribute generation (the StackState layer, the 2022 conventions, the current ones; SDK v2 and v3), in
protobuf and JSON, with and without gzip."""

from __future__ import annotations

import gzip
import json

import pytest
from opentelemetry import trace

from engine.core.errors import BadInput
from engine.traces.otlp import (
    BadOtlp,
    TooLarge,
    UnsupportedType,
    decode,
    decode_object,
    function_arn,
    response,
)
from tests.traces.spans import (
    ACCOUNT,
    CLIENT,
    FORMS,
    FUNCTION,
    HTTP_SCOPE,
    LAMBDA_SCOPE,
    PRODUCER,
    REGION,
    SDK_SCOPE,
    SERVER,
    Recorder,
    otlp,
    otlp_json,
)

QUEUE = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/orders"
SIGNED = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef"
START = 1_765_000_000_000_000_000


def decoded(recorder: Recorder, form: str):
    content_type, encoding, build = FORMS[form]
    return decode(build(recorder.spans()), content_type, encoding)


def end(n: int) -> int:
    """The end time `Recorder` gives the n-th span (1-based) when none is given."""
    return START + (n + 1) * 1_000_000


def stackstate_layer() -> Recorder:
    """The StackState NodeJS layer (SDK v2 instrumentation with the layer's `aws.request.*` hook): `faas.id`
    (alias-qualified) and `cloud.account.id` on the entry span only; an HTTPS child span under each call."""
    recorder = Recorder({"cloud.provider": "aws", "cloud.region": REGION, "faas.name": "orders"})
    entry = recorder.span(
        "orders", LAMBDA_SCOPE, SERVER,
        {"faas.execution": "req-1", "faas.id": FUNCTION + ":live", "cloud.account.id": ACCOUNT},
    )  # fmt: skip
    s3 = recorder.span(
        "S3.PutObject", SDK_SCOPE, CLIENT,
        {"aws.operation": "putObject", "aws.service.api": "S3", "aws.service.identifier": "s3",
         "aws.service.name": "Amazon S3", "aws.region": REGION, "aws.request.id": "R1",
         "aws.request.extended_id": "X1", "aws.request.bucket": "orders-archive", "rpc.system": "aws-api",
         "rpc.method": "PutObject", "rpc.service": "S3"},
        parent=entry,
    )  # fmt: skip
    recorder.span(
        "HTTPS PUT", HTTP_SCOPE, CLIENT,
        {"http.url": "https://orders-archive.s3.amazonaws.com/k" + SIGNED, "http.method": "PUT"},
        parent=s3,
    )  # fmt: skip
    recorder.span(
        "orders send", SDK_SCOPE, PRODUCER,
        {"aws.operation": "sendMessage", "aws.service.identifier": "sqs", "aws.region": REGION,
         "messaging.system": "aws.sqs", "messaging.destination_kind": "queue",
         "messaging.destination": "orders", "messaging.url": QUEUE, "messaging.message_id": "m-1"},
        parent=entry,
    )  # fmt: skip
    return recorder


@pytest.mark.parametrize("form", FORMS)
def test_the_stackstate_layer_s_spans_become_calls_of_the_entry_span_s_unqualified_function(
    form: str,
) -> None:
    result = decoded(stackstate_layer(), form)
    assert result.spans == 4
    assert result.dropped == {}
    assert result.calls == [
        {
            "function": FUNCTION,
            "name": "S3.PutObject",
            "kind": 3,
            "attributes": {
                "aws.operation": "putObject",
                "aws.service.api": "S3",
                "aws.service.identifier": "s3",
                "aws.service.name": "Amazon S3",
                "aws.region": REGION,
                "aws.request.bucket": "orders-archive",
                "rpc.system": "aws-api",
                "rpc.method": "PutObject",
                "rpc.service": "S3",
            },
            "count": 1,
            "last": end(2),
        },
        {
            "function": FUNCTION,
            "name": "orders send",
            "kind": 4,
            "attributes": {
                "aws.operation": "sendMessage",
                "aws.service.identifier": "sqs",
                "aws.region": REGION,
                "messaging.system": "aws.sqs",
                "messaging.destination_kind": "queue",
                "messaging.destination": "orders",
                "messaging.url": QUEUE,
            },
            "count": 1,
            "last": end(4),
        },
    ]


def conventions_2022() -> Recorder:
    """The 2022 conventions, SDK v3 path (no `aws.service.identifier`): the function from the resource's
    `faas.name` + `cloud.region` and the account of a span; DynamoDB with an array attribute."""
    recorder = Recorder({"cloud.provider": "aws", "cloud.region": REGION, "faas.name": "orders"})
    entry = recorder.span("orders", LAMBDA_SCOPE, SERVER, {"cloud.account.id": ACCOUNT})
    for n in range(3):  # three identical sends: one record, count 3, the latest end
        recorder.span(
            "SQS.SendMessage", SDK_SCOPE, PRODUCER,
            {"rpc.system": "aws-api", "rpc.service": "SQS", "rpc.method": "SendMessage", "aws.region": REGION,
             "messaging.system": "aws.sqs", "messaging.destination": "orders", "messaging.url": QUEUE,
             "aws.request.id": f"R{n}", "messaging.message_id": f"m-{n}"},
            parent=entry, end=START + (7, 9, 8)[n] * 1_000_000_000,
        )  # fmt: skip
    recorder.span(
        "DynamoDB.PutItem", SDK_SCOPE, CLIENT,
        {"rpc.system": "aws-api", "rpc.service": "DynamoDB", "rpc.method": "PutItem", "db.system": "dynamodb",
         "db.name": "orders", "db.operation": "PutItem", "db.statement": '{"Item": {"secret": "x"}}',
         "aws.dynamodb.table_names": ["orders"], "aws.region": REGION},
        parent=entry,
    )  # fmt: skip
    return recorder


@pytest.mark.parametrize("form", FORMS)
def test_2022_conventions_sdk_v3_take_the_function_from_the_resource_and_collapse_identical_calls(
    form: str,
) -> None:
    result = decoded(conventions_2022(), form)
    assert result.spans == 5
    assert result.calls == [
        {
            "function": FUNCTION,
            "name": "SQS.SendMessage",
            "kind": 4,
            "attributes": {
                "rpc.system": "aws-api",
                "rpc.service": "SQS",
                "rpc.method": "SendMessage",
                "aws.region": REGION,
                "messaging.system": "aws.sqs",
                "messaging.destination": "orders",
                "messaging.url": QUEUE,
            },
            "count": 3,
            "last": START + 9_000_000_000,
        },
        {
            "function": FUNCTION,
            "name": "DynamoDB.PutItem",
            "kind": 3,
            "attributes": {
                "rpc.system": "aws-api",
                "rpc.service": "DynamoDB",
                "rpc.method": "PutItem",
                "db.system": "dynamodb",
                "db.name": "orders",
                "db.operation": "PutItem",
                "aws.dynamodb.table_names": ["orders"],
                "aws.region": REGION,
            },
            "count": 1,
            "last": end(5),
        },
    ]


def current_conventions() -> Recorder:
    """Current conventions: resource `cloud.resource_id`, entry span `aws.lambda.invoked_arn`; a root call
    span (no parent in the request) falls back to the resource; presigned URLs lose their query."""
    recorder = Recorder(
        {"cloud.provider": "aws", "cloud.region": REGION, "faas.name": "orders", "cloud.account.id": ACCOUNT,
         "cloud.resource_id": FUNCTION}
    )  # fmt: skip
    entry = recorder.span(
        "orders", "@opentelemetry/instrumentation-aws-lambda", SERVER,
        {"faas.invocation_id": "inv-1", "aws.lambda.invoked_arn": FUNCTION + ":7", "faas.trigger": "http"},
    )  # fmt: skip
    recorder.span(
        "SQS.SendMessage", "@opentelemetry/instrumentation-aws-sdk", PRODUCER,
        {"rpc.system": "aws-api", "rpc.service": "SQS", "rpc.method": "SendMessage",
         "cloud.region": REGION, "aws.sqs.queue.url": QUEUE + "#frag", "url.full": QUEUE + SIGNED,
         "messaging.destination.name": "orders", "messaging.system": "aws_sqs", "aws.request_id": "R",
         "messaging.message.id": "m", "server.address": f"sqs.{REGION}.amazonaws.com"},
        parent=entry,
    )  # fmt: skip
    recorder.span(
        "S3.GetObject", "@opentelemetry/instrumentation-aws-sdk", CLIENT,
        {"rpc.system": "aws-api", "rpc.service": "S3", "rpc.method": "GetObject", "aws.s3.bucket": "orders",
         "aws.s3.key": "k" * 2000, "aws.extended_request_id": "E", "http.url": "https://x/" + SIGNED},
    )  # fmt: skip
    return recorder


@pytest.mark.parametrize("form", FORMS)
def test_current_conventions_strip_presigned_queries_cut_long_strings_and_drop_noise(form: str) -> None:
    result = decoded(current_conventions(), form)
    assert result.spans == 3
    assert result.calls == [
        {
            "function": FUNCTION,
            "name": "SQS.SendMessage",
            "kind": 4,
            "attributes": {
                "rpc.system": "aws-api",
                "rpc.service": "SQS",
                "rpc.method": "SendMessage",
                "cloud.region": REGION,
                "aws.sqs.queue.url": QUEUE,
                "url.full": QUEUE,
                "messaging.destination.name": "orders",
                "messaging.system": "aws_sqs",
                "server.address": f"sqs.{REGION}.amazonaws.com",
            },
            "count": 1,
            "last": end(2),
        },
        {
            "function": FUNCTION,
            "name": "S3.GetObject",
            "kind": 3,
            "attributes": {
                "rpc.system": "aws-api",
                "rpc.service": "S3",
                "rpc.method": "GetObject",
                "aws.s3.bucket": "orders",
                "aws.s3.key": "k" * 1024,
                "http.url": "https://x/",
            },
            "count": 1,
            "last": end(3),
        },
    ]
    assert "Signature" not in json.dumps(result.calls)


@pytest.mark.parametrize(
    ("resource", "function"),
    [
        ({"faas.name": "f", "cloud.region": "cn-north-1", "cloud.account.id": ACCOUNT},
         f"arn:aws-cn:lambda:cn-north-1:{ACCOUNT}:function:f"),
        ({"faas.name": "f", "cloud.region": "us-gov-west-1", "cloud.account.id": ACCOUNT},
         f"arn:aws-us-gov:lambda:us-gov-west-1:{ACCOUNT}:function:f"),
        ({"faas.id": FUNCTION + ":$LATEST"}, FUNCTION),
        ({"cloud.resource_id": "arn:aws:ecs:eu-west-1:1:task/x", "faas.name": "orders",
          "cloud.region": REGION, "cloud.account.id": ACCOUNT}, FUNCTION),
    ],
)  # fmt: skip
def test_the_function_of_a_root_call_comes_from_the_resource_in_every_partition(
    resource: dict, function: str
) -> None:
    recorder = Recorder(resource)
    recorder.span("SNS.Publish", "aws-sdk-custom", CLIENT, {"aws.sns.topic.arn": "arn:aws:sns:x:1:t"})
    assert [call["function"] for call in decoded(recorder, "protobuf").calls] == [function]


def test_a_call_without_a_function_is_dropped_and_counted_and_server_or_other_spans_are_no_calls() -> None:
    recorder = Recorder({"faas.name": "orders"})  # no region, no account: no function
    recorder.span("SQS.SendMessage", "custom", CLIENT, {"rpc.system": "aws-api"})
    recorder.span("SQS.SendMessage", "custom", CLIENT, {"aws.service.identifier": "sqs"})
    recorder.span("S3.ListBuckets", SDK_SCOPE, CLIENT, {})
    recorder.span("served", SDK_SCOPE, SERVER, {"rpc.system": "aws-api"})  # SERVER: no call
    recorder.span("GET", HTTP_SCOPE, CLIENT, {"http.url": "https://example.com/"})  # no AWS SDK call
    recorder.span("Get", "custom", CLIENT, {"rpc.system": "grpc"})  # no AWS SDK call
    result = decoded(recorder, "json")
    assert (result.calls, result.spans, result.dropped) == ([], 6, {"no_function": 3})


def test_the_entry_span_nearest_up_the_parents_names_the_function() -> None:
    recorder = Recorder({"cloud.resource_id": FUNCTION})
    entry = recorder.span("other", LAMBDA_SCOPE, SERVER, {"faas.id": FUNCTION.replace("orders", "other")})
    middle = recorder.span("work", "app", trace.SpanKind.INTERNAL, {"app.step": "x"}, parent=entry)
    recorder.span(
        "Lambda.Invoke", "x", CLIENT, {"rpc.system": "aws-api", "faas.invoked_name": "b"}, parent=middle
    )
    (call,) = decoded(recorder, "protobuf").calls
    assert (call["function"], call["attributes"]) == (
        FUNCTION.replace("orders", "other"), {"rpc.system": "aws-api", "faas.invoked_name": "b"}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "arn"),
    [
        (FUNCTION, FUNCTION), (FUNCTION + ":live", FUNCTION), ("orders", None), ("arn:aws:sqs:x:1:q", None),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:x:1", None),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:", None),
        (42, None),
    ],
)  # fmt: skip
def test_only_lambda_function_arns_name_a_function(value: object, arn: str | None) -> None:
    assert function_arn(value) == arn


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "error", "message"),
    [
        (b"\xff\x00garbage", "application/x-protobuf", None, BadOtlp, "not an OTLP trace request: protobuf"),
        (b"{not json", "application/json", None, BadOtlp, "not an OTLP trace request: invalid JSON"),
        (b"[1]", "application/json", None, BadOtlp,
         "not an OTLP trace request: the JSON body is not an object"),
        (b'{"resourceSpans": 3}', "application/json", None, BadOtlp,
         "not an OTLP trace request: resourceSpans is not a list"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "application/json", None,
         BadOtlp, "not an OTLP trace request: traceId 'zz' is not hex"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
         "application/json", None, BadOtlp, "not an OTLP trace request: JSON is not OTLP"),
        (b"plain", "application/x-protobuf", "gzip", BadOtlp, "not an OTLP trace request: not gzip"),
        (gzip.compress(b"x" * 100)[:-12], "application/x-protobuf", "gzip", BadOtlp,
         "not an OTLP trace request: truncated gzip body"),
        (b"", "application/x-protobuf", "br", BadOtlp,
         "not an OTLP trace request: unsupported Content-Encoding"),
        (b"", "text/plain", None, UnsupportedType,
         "unsupported content type 'text/plain': send application/"),
        (b"", None, None, UnsupportedType, "unsupported content type ''"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_otlp_is_bad_input_with_a_short_reason_and_never_the_bytes(
    body: bytes, content_type: str | None, encoding: str | None, error: type, message: str
) -> None:
    with pytest.raises(error) as caught:
        decode(body, content_type, encoding)
    assert isinstance(caught.value, BadInput)
    assert str(caught.value).startswith(message)
    assert len(str(caught.value)) < 260 and "garbage" not in str(caught.value)


def test_a_gzip_bomb_is_refused_before_it_is_inflated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.traces.otlp.MAX_INFLATED", 1000)
    with pytest.raises(TooLarge):
        decode(gzip.compress(b"\0" * 1001), "application/x-protobuf", "gzip")
    assert decode(gzip.compress(b""), "application/x-protobuf", "gzip").spans == 0


@pytest.mark.parametrize(
    ("key", "build"),
    [("a/b.json", otlp_json), ("a/b.json.gz", lambda s: gzip.compress(otlp_json(s))), ("a/b.binpb", otlp),
     ("a/b.binpb.gz", lambda s: gzip.compress(otlp(s)))],
)  # fmt: skip
def test_collector_s3_objects_decode_by_their_suffix(key: str, build) -> None:
    spans = stackstate_layer().spans()
    assert decode_object(key, build(spans)) == decode(otlp(spans), "application/x-protobuf", None)


def test_an_object_of_another_suffix_is_bad_input() -> None:
    with pytest.raises(BadOtlp, match=r"'a/b\.csv' is neither \.json nor \.binpb"):
        decode_object("a/b.csv", b"")


def test_the_response_tells_the_rejected_spans_in_the_request_s_encoding() -> None:
    assert response({}, "protobuf") == b""
    assert json.loads(response({}, "json")) == {}
    assert json.loads(response({"no_function": 2, "over_limit": 0}, "json")) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "dropped no_function=2"}
    }
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    answer = ExportTraceServiceResponse.FromString(response({"no_function": 3}, "protobuf"))
    assert (answer.partial_success.rejected_spans, answer.partial_success.error_message) == (
        3, "dropped no_function=3"
    )  # fmt: skip


def test_bytes_maps_and_arrays_of_them_are_left_out_arrays_of_scalars_kept() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.append(
        KeyValue(key="cloud.resource_id", value=AnyValue(string_value=FUNCTION))
    )
    span = resource.scope_spans.add().spans.add(name="S3.ListBuckets", kind=3, span_id=b"12345678")
    values = {
        "rpc.system": AnyValue(string_value="aws-api"),
        "aws.bytes": AnyValue(bytes_value=b"x"),
        "aws.empty": AnyValue(),
        "aws.flag": AnyValue(bool_value=True),
        "aws.ratio": AnyValue(double_value=0.5),
        "aws.count": AnyValue(int_value=7),
    }
    span.attributes.extend(KeyValue(key=k, value=v) for k, v in values.items())
    mixed = span.attributes.add(key="aws.mixed").value.array_value.values
    mixed.extend([AnyValue(int_value=1), AnyValue(bytes_value=b"x")])
    span.attributes.add(key="aws.map").value.kvlist_value.values.add(key="a").value.int_value = 1
    scalars = span.attributes.add(key="aws.list").value.array_value.values
    scalars.extend([AnyValue(int_value=1), AnyValue(string_value="s" * 2000)])
    (call,) = decode(request.SerializeToString(), "application/x-protobuf").calls
    assert call["attributes"] == {
        "rpc.system": "aws-api", "aws.flag": True, "aws.ratio": 0.5, "aws.count": 7,
        "aws.list": [1, "s" * 1024],
    }  # fmt: skip
