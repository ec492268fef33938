"""OTLP requests built with the OpenTelemetry Python SDK, as the tests and the benchmark post them.

`Recorder` holds a TracerProvider with one resource and an in-memory exporter; spans are started with
explicit times and parents. `otlp(spans)` is the SDK exporter's own protobuf encoding; `otlp_json` turns it
into OTLP/JSON (lowerCamelCase, hex ids, integer enums).
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

ACCOUNT = "123456789012"
REGION = "eu-west-1"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"
LAMBDA_SCOPE = "@opentelemetry/instrumentation-aws-lambda"
SDK_SCOPE = "@opentelemetry/instrumentation-aws-sdk"
HTTP_SCOPE = "@opentelemetry/instrumentation-http"
SERVER, CLIENT, PRODUCER = trace.SpanKind.SERVER, trace.SpanKind.CLIENT, trace.SpanKind.PRODUCER


class Recorder:
    """Spans of one resource, recorded in memory."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource(resource))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.clock = 1_765_000_000_000_000_000

    def span(
        self,
        name: str,
        scope: str,
        kind: trace.SpanKind,
        attributes: dict[str, Any],
        parent: trace.Span | None = None,
        end: int | None = None,
    ) -> trace.Span:
        """A finished span: started 1 ms after the previous one, ended at `end` (or 1 ms later)."""
        self.clock += 1_000_000
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.provider.get_tracer(scope).start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=self.clock
        )
        span.end(end_time=end or self.clock + 1_000_000)
        return span

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def otlp(spans: list[ReadableSpan]) -> bytes:
    """The protobuf body the SDK's OTLP/HTTP exporter sends."""
    return encode_spans(spans).SerializeToString()


def otlp_json(spans: list[ReadableSpan]) -> bytes:
    """The same request as OTLP/JSON: hex ids, integer enums, int64 as strings."""
    document = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for item in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in item:
                            item[key] = base64.b64decode(item[key]).hex()
    return json.dumps(document).encode()


# (content type, encoding, body builder) for every form a request may take
FORMS = {
    "protobuf": ("application/x-protobuf", None, otlp),
    "json": ("application/json", None, otlp_json),
    "protobuf-gzip": ("application/x-protobuf", "gzip", lambda s: gzip.compress(otlp(s))),
    "json-gzip": ("application/json; charset=utf-8", "gzip", lambda s: gzip.compress(otlp_json(s))),
}
