"""OTLP trace requests (protobuf or JSON, optionally gzip) reduced to call records.

A call record is one AWS SDK call made by a Lambda function (docs/traces.md has the contract):
`{"function", "name", "kind", "attributes", "count", "last"}`. Identical records of one request collapse.
Parsing is the OpenTelemetry protobuf package's; nothing here reads protobuf by hand. For speed, a body is
parsed with `Encoded`: the same OTLP schema, built from the package's own descriptors, in which the attribute
lists of spans and resources stay encoded `KeyValue` bytes, so that each distinct attribute of a request is
decoded once (`KeyValue.FromString`) however many spans repeat it.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from engine.core.errors import BadInput

MAX_INFLATED = 200 * 1024 * 1024  # a gzip body may not inflate beyond this
MAX_STRING = 1024
SERVER = 2  # OTLP SpanKind

# span attributes a call record keeps (prefixes), minus per-call noise
KEPT = (
    "aws.", "rpc.", "messaging.", "db.", "faas.invoked", "cloud.region", "cloud.account.id", "url.full",
    "http.url", "server.address", "net.peer.name",
)  # fmt: skip
NOISE = frozenset(
    {
        "aws.request.id", "aws.request_id", "aws.request.extended_id", "aws.extended_request_id",
        "messaging.message_id", "messaging.message.id", "db.statement", "db.query.text",
    }
)  # fmt: skip
URLS = frozenset({"url.full", "http.url", "messaging.url", "aws.sqs.queue.url"})
# attributes that name the function a span runs in (on the entry span or the resource)
FUNCTION_KEYS = ("faas.id", "cloud.resource_id", "aws.lambda.invoked_arn")
_RESOURCE = frozenset({"faas.id", "cloud.resource_id", "faas.name", "cloud.region", "cloud.account.id"})
_IDS = ("traceId", "spanId", "parentSpanId")


class BadOtlp(BadInput):
    """A body that is not a valid OTLP trace request (the receiver answers 400)."""

    fmt = "not an OTLP trace request: {problem}"


class TooLarge(BadOtlp):
    """A gzip body that inflates beyond MAX_INFLATED (the receiver answers 413)."""


class UnsupportedType(BadInput):
    """A content type that is neither OTLP protobuf nor OTLP JSON (the receiver answers 415)."""

    fmt = "unsupported content type {content_type!r}: send application/x-protobuf or application/json"


@dataclass
class Decoded:
    """The call records of one request, the spans it held and the spans dropped, by reason."""

    calls: list[dict] = field(default_factory=list)
    spans: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def media(content_type: str | None) -> str:
    """`protobuf` or `json` for a Content-Type header; `UnsupportedType` otherwise."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in ("application/x-protobuf", "application/protobuf"):
        return "protobuf"
    if kind == "application/json":
        return "json"
    raise UnsupportedType(content_type=(content_type or "")[:80])


def decode(body: bytes, content_type: str | None, encoding: str | None = None) -> Decoded:
    """Decode one OTLP/HTTP request body into call records."""
    kind = media(content_type)
    coding = (encoding or "identity").strip().lower()
    if coding == "gzip":
        body = inflate(body)
    elif coding != "identity":
        raise BadOtlp(problem=f"unsupported Content-Encoding {coding[:40]!r} (gzip or none)")
    return reduce(parse(body, kind))


def decode_object(key: str, body: bytes) -> Decoded:
    """Decode one object an OpenTelemetry Collector's S3 exporter wrote: `.json` or `.binpb`, maybe `.gz`."""
    name = key
    if name.endswith(".gz"):
        body, name = inflate(body), name[:-3]
    if name.endswith(".json"):
        return reduce(parse(body, "json"))
    if name.endswith((".binpb", ".pb")):
        return reduce(parse(body, "protobuf"))
    raise BadOtlp(problem=f"object {key[-120:]!r} is neither .json nor .binpb (optionally .gz)")


def inflate(body: bytes) -> bytes:
    """gunzip, refusing more than MAX_INFLATED bytes out."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_INFLATED)
    except zlib.error as exc:
        raise BadOtlp(problem=f"not gzip ({exc})") from None
    if inflater.unconsumed_tail:
        raise TooLarge(problem=f"the gzip body inflates beyond {MAX_INFLATED // 1024 // 1024} MB")
    if not inflater.eof:
        raise BadOtlp(problem="truncated gzip body")
    return out


def _encoded_schema() -> type[Message]:
    """`ExportTraceServiceRequest` with `Span.attributes` and `Resource.attributes` as repeated bytes (the
    wire format of a repeated message field), in a descriptor pool of its own."""
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        for message in file.message_type:
            for item in message.field:
                if message.name in ("Span", "Resource") and item.name == "attributes":
                    item.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    item.ClearField("type_name")
        pool.Add(file)
    name = ExportTraceServiceRequest.DESCRIPTOR.full_name
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


Encoded = _encoded_schema()


def parse(body: bytes, kind: str) -> Any:
    """The request as `Encoded`, from OTLP protobuf, or from OTLP JSON (hex ids, per the OTLP spec) through
    `ExportTraceServiceRequest`."""
    if kind == "protobuf":
        try:
            return Encoded.FromString(body)
        except DecodeError as exc:
            raise BadOtlp(problem=f"protobuf does not decode ({exc})") from None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadOtlp(problem=f"invalid JSON ({str(exc)[:120]})") from None
    if not isinstance(document, dict):
        raise BadOtlp(problem="the JSON body is not an object")
    _ids_to_base64(document)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise BadOtlp(problem=f"JSON is not OTLP ({str(exc)[:160]})") from None
    return Encoded.FromString(request.SerializeToString())


def _ids_to_base64(document: dict) -> None:
    """OTLP/JSON carries ids as hex; protobuf's JSON mapping of `bytes` wants base64."""
    for resource in _list(document, "resourceSpans"):
        for scope in _list(resource, "scopeSpans"):
            for span in _list(scope, "spans"):
                _convert(span)
                for link in _list(span, "links"):
                    _convert(link)


def _list(parent: object, key: str) -> list:
    value = parent.get(key) if isinstance(parent, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadOtlp(problem=f"{key} is not a list")
    return value


def _convert(item: object) -> None:
    if not isinstance(item, dict):
        return
    for key in _IDS:
        value = item.get(key)
        if isinstance(value, str):
            try:
                item[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise BadOtlp(problem=f"{key} {value[:40]!r} is not hex") from None


def response(dropped: dict[str, int], kind: str) -> bytes:
    """The `ExportTraceServiceResponse` of an accepted request, encoded like the request."""
    answer = ExportTraceServiceResponse()
    dropped = {reason: n for reason, n in dropped.items() if n}
    rejected = sum(dropped.values())
    if rejected:
        answer.partial_success.rejected_spans = rejected
        answer.partial_success.error_message = "dropped " + ", ".join(
            f"{reason}={n}" for reason, n in sorted(dropped.items())
        )
    if kind == "json":
        return json.dumps(json_format.MessageToDict(answer)).encode()
    return answer.SerializeToString()


# reduction

_SCALARS = frozenset({"string_value", "int_value", "bool_value", "double_value"})
# what is read of every span: whether it is a call, the function and the account it names
_MARKERS = frozenset({*FUNCTION_KEYS, "cloud.account.id", "rpc.system", "aws.service.identifier"})
_WEB = ("https://", "http://")
Attribute = tuple[str, Any, Any]  # key, Python value (None: not a scalar or list of them), kept value or None


def _value(value: Any) -> Any:
    """A scalar or a list of scalars; None for anything else (bytes, maps, empty, arrays of those)."""
    which = value.WhichOneof("value")
    if which in _SCALARS:
        return getattr(value, which)
    if which == "array_value":
        items = [_value(item) for item in value.array_value.values]
        return items if all(i is not None and not isinstance(i, list) for i in items) else None
    return None


def _attribute(encoded: bytes, seen: dict[bytes, Attribute]) -> Attribute:
    """One encoded `KeyValue` decoded, with what a call record keeps of it (hashable), memoised in `seen`:
    KEPT prefixes minus NOISE, URLs without query or fragment, strings cut at MAX_STRING."""
    try:
        pair = KeyValue.FromString(encoded)
    except DecodeError as exc:
        raise BadOtlp(problem=f"protobuf does not decode ({exc})") from None
    key, value = pair.key, _value(pair.value)
    kept = None
    if value is not None and key.startswith(KEPT) and key not in NOISE:
        if value.__class__ is list:
            kept = tuple(v[:MAX_STRING] if v.__class__ is str else v for v in value)
        elif value.__class__ is str:
            if key in URLS or value.startswith(_WEB):
                value = value.split("?", 1)[0].split("#", 1)[0]
            kept = value[:MAX_STRING]
        else:
            kept = value
    seen[encoded] = attribute = (key, value, kept)
    return attribute


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def function_arn(value: object) -> str | None:
    """The unqualified Lambda function ARN of `value`, or None when it is not one."""
    if not isinstance(value, str) or not value.startswith("arn:"):
        return None
    fields = value.split(":")
    if len(fields) < 7 or fields[2] != "lambda" or fields[5] != "function" or not fields[6]:
        return None
    return ":".join(fields[:7])


def _own_function(attributes: dict[str, Any]) -> str | None:
    for key in FUNCTION_KEYS:
        arn = function_arn(attributes.get(key))
        if arn:
            return arn
    return None


def _resource_function(resource: dict[str, Any], account: str | None) -> str | None:
    arn = _own_function(resource)
    if arn:
        return arn
    name, region = resource.get("faas.name"), resource.get("cloud.region")
    account = resource.get("cloud.account.id") or account
    if not (isinstance(name, str) and name and isinstance(region, str) and region and account):
        return None
    return f"arn:{_partition(region)}:lambda:{region}:{account}:function:{name}"


def reduce(request: Any) -> Decoded:
    """The call records of one `Encoded` request: AWS SDK call spans (not SERVER) with their function."""
    decoded = Decoded()
    seen: dict[bytes, Attribute] = {}
    # every span of the request: id -> (parent id, the function it names); then the calls, walking up
    spans: dict[bytes, tuple[bytes, str | None]] = {}
    calls: list[tuple[Any, list[Attribute], str | None]] = []
    for resource_spans in request.resource_spans:
        resource = {
            key: value
            for encoded in resource_spans.resource.attributes
            for key, value, _ in [seen.get(encoded) or _attribute(encoded, seen)]
            if key in _RESOURCE and value is not None
        }
        account: str | None = None
        pending = []
        for scope_spans in resource_spans.scope_spans:
            sdk_scope = "aws-sdk" in scope_spans.scope.name
            for span in scope_spans.spans:
                decoded.spans += 1
                attributes = [seen.get(encoded) or _attribute(encoded, seen) for encoded in span.attributes]
                marks = {key: value for key, value, _ in attributes if key in _MARKERS and value is not None}
                if marks:
                    if account is None and "cloud.account.id" in marks:
                        account = str(marks["cloud.account.id"])
                    spans[span.span_id] = (span.parent_span_id, _own_function(marks))
                    call = (
                        sdk_scope or marks.get("rpc.system") == "aws-api" or "aws.service.identifier" in marks
                    )
                else:
                    spans[span.span_id] = (span.parent_span_id, None)
                    call = sdk_scope
                if call and span.kind != SERVER:
                    pending.append((span, attributes))
        fallback = _resource_function(resource, account)
        calls += [(span, attributes, fallback) for span, attributes in pending]
    records: dict[tuple, dict] = {}
    for span, attributes, fallback in calls:
        function = _walk(spans, span.parent_span_id) or fallback
        if function is None:
            decoded.dropped["no_function"] = decoded.dropped.get("no_function", 0) + 1
            continue
        kept = tuple(sorted({key: value for key, _, value in attributes if value is not None}.items()))
        name, kind, last = span.name[:MAX_STRING], span.kind, span.end_time_unix_nano
        identity = (function, name, kind, kept)
        record = records.get(identity)
        if record is None:
            records[identity] = {
                "function": function, "name": name, "kind": kind,
                "attributes": {key: list(v) if v.__class__ is tuple else v for key, v in kept},
                "count": 1, "last": last,
            }  # fmt: skip
        else:
            record["count"] += 1
            record["last"] = max(record["last"], last)
    decoded.calls = list(records.values())
    return decoded


def _walk(spans: dict[bytes, tuple[bytes, str | None]], parent: bytes) -> str | None:
    """The function named by the nearest ancestor within the request (cycles and long chains stop)."""
    for _ in range(64):
        if not parent:
            return None
        entry = spans.get(parent)
        if entry is None:
            return None
        parent, function = entry
        if function:
            return function
    return None
