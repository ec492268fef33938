"""OTLP trace requests (protobuf or JSON, optionally gzip) reduced to call records.

A call record is one AWS SDK call made by a Lambda function (docs/traces.md has the contract):
`{"function", "name", "kind", "attributes", "count", "last"}`. Identical records of one request collapse.
Parsing is the OpenTelemetry protobuf package's; nothing here reads protobuf by hand.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

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


def parse(body: bytes, kind: str) -> ExportTraceServiceRequest:
    """An `ExportTraceServiceRequest` from OTLP protobuf or OTLP JSON (hex ids, per the OTLP spec)."""
    request = ExportTraceServiceRequest()
    if kind == "protobuf":
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BadOtlp(problem=f"protobuf does not decode ({exc})") from None
        return request
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadOtlp(problem=f"invalid JSON ({str(exc)[:120]})") from None
    if not isinstance(document, dict):
        raise BadOtlp(problem="the JSON body is not an object")
    _ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise BadOtlp(problem=f"JSON is not OTLP ({str(exc)[:160]})") from None
    return request


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
# what the first look at every span reads: whether it is a call, the function and account it names
_MARKERS = frozenset({*FUNCTION_KEYS, "cloud.account.id", "rpc.system", "aws.service.identifier"})
_READ = (*KEPT, *FUNCTION_KEYS)  # every key either list names starts with one of these
_WEB = ("https://", "http://")


def _value(value: Any) -> Any:
    """A scalar or a list of scalars; None for anything else (bytes, maps, empty, arrays of those)."""
    which = value.WhichOneof("value")
    if which in _SCALARS:
        return getattr(value, which)
    if which == "array_value":
        items = [_value(item) for item in value.array_value.values]
        return items if all(i is not None and not isinstance(i, list) for i in items) else None
    return None


def _attributes(pairs: Any, keys: frozenset[str]) -> dict[str, Any]:
    """The attributes named in `keys`, as Python values."""
    found = {}
    for pair in pairs:
        key = pair.key
        if key in keys:
            value = _value(pair.value)
            if value is not None:
                found[key] = value
    return found


def _kept(values: dict[str, Any]) -> dict[str, Any]:
    """The attributes a call record keeps (KEPT prefixes minus NOISE, read by `reduce`), as Python values:
    URLs without query or fragment, strings cut at MAX_STRING."""
    kept = {}
    for key, value in values.items():
        if key in NOISE or not key.startswith(KEPT):
            continue
        if value.WhichOneof("value") == "string_value":
            text = value.string_value
            if key in URLS or text.startswith(_WEB):
                text = text.split("?", 1)[0].split("#", 1)[0]
            kept[key] = text if len(text) <= MAX_STRING else text[:MAX_STRING]
        else:
            plain = _value(value)
            if plain is not None:
                kept[key] = (
                    [v[:MAX_STRING] if v.__class__ is str else v for v in plain]
                    if plain.__class__ is list
                    else plain
                )
    return kept


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


def reduce(request: ExportTraceServiceRequest) -> Decoded:
    """The call records of one request: AWS SDK call spans (not SERVER) with the function they ran in."""
    decoded = Decoded()
    # every span of the request: id -> (parent id, the function it names); then the calls, walking up
    spans: dict[bytes, tuple[bytes, str | None]] = {}
    calls: list[tuple[Any, dict[str, Any], str | None]] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes, _RESOURCE)
        account: str | None = None
        pending = []
        for scope_spans in resource_spans.scope_spans:
            sdk_scope = "aws-sdk" in scope_spans.scope.name
            for span in scope_spans.spans:
                decoded.spans += 1
                values = {pair.key: pair.value for pair in span.attributes if pair.key.startswith(_READ)}
                marks = {k: v for k in _MARKERS.intersection(values) if (v := _value(values[k])) is not None}
                if marks:
                    if account is None and "cloud.account.id" in marks:
                        account = str(marks["cloud.account.id"])
                    spans[span.span_id] = (span.parent_span_id, _own_function(marks))
                    call = marks.get("rpc.system") == "aws-api" or "aws.service.identifier" in marks
                else:
                    spans[span.span_id] = (span.parent_span_id, None)
                    call = False
                if (call or sdk_scope) and span.kind != SERVER:
                    pending.append((span, values))
        fallback = _resource_function(resource, account)
        calls += [(span, values, fallback) for span, values in pending]
    records: dict[tuple, dict] = {}
    for span, values, fallback in calls:
        function = _walk(spans, span.parent_span_id) or fallback
        if function is None:
            decoded.dropped["no_function"] = decoded.dropped.get("no_function", 0) + 1
            continue
        kept = _kept(values)
        name, kind, last = span.name[:MAX_STRING], span.kind, span.end_time_unix_nano
        identity = (function, name, kind, _frozen(kept))
        record = records.get(identity)
        if record is None:
            records[identity] = {
                "function": function, "name": name, "kind": kind, "attributes": kept,
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


def _frozen(attributes: dict[str, Any]) -> tuple:
    items = sorted(attributes.items())
    if any(value.__class__ is list for _, value in items):
        return tuple((key, tuple(value) if value.__class__ is list else value) for key, value in items)
    return tuple(items)
