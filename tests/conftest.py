"""Shared test fixtures: recorded cassettes of a seeded moto server, and a live one.

Cassettes live in `cassettes/<test module>/<test>.yaml`. They are replayed offline by default
(pytest-recording's record mode `none`). To re-record: `pytest --record-mode=rewrite`; a moto
server is then started on the fixed port below (queue URLs carry the port), reset, seeded with a
fixed random seed and the demo estate, whose ids are saved beside the cassettes.
Requests are matched on service, region, operation and normalised parameters; signatures, dates,
tokens and credentials are scrubbed before anything is written.

The live mapping tests (tests/mappings/test_mapping_*.py) share small helpers from here instead: `moto_server`
starts a fresh in-process moto server, `scan_live` scans it with fake credentials (`live_aws`),
`with_params` makes moto page, and `components_of_type` / `ids_of_type` pick components by type.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from engine.core.config import Config, Instance
from engine.scan.full_scan import AccountScan, scan
from engine.spec import dialect as functions
from engine.spec.loader import Call, Mappings, load_mappings

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"
RECORD_PORT = 5123
RECORD_ENDPOINT = f"http://127.0.0.1:{RECORD_PORT}"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/StackStateAwsIntegrationRole"
FAR_FUTURE = "2099-01-01T00:00:00Z"

_DROP_REQUEST_HEADERS = {
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
    "user-agent",
    "x-amz-content-sha256",
    "expect",
}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_SECRET_XML = re.compile(r"<(SecretAccessKey|SessionToken|AccessKeyId)>[^<]*</\1>")
_EXPIRATION = re.compile(r"<Expiration>[^<]*</Expiration>")


def _header(request: Any, name: str) -> str:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def scrub_request(request: Any) -> Any:
    """Keep only the SigV4 scope (region/service) of Authorization; drop what differs per run."""
    scope = _scope(request)
    for key in [k for k in request.headers if k.lower() in _DROP_REQUEST_HEADERS]:
        del request.headers[key]
    if scope:
        request.headers["X-Scope"] = scope
    return request


def scrub_response(response: dict) -> dict:
    """Remove credentials from STS answers (and push their expiry out), and per-run headers."""
    body = response.get("body", {}).get("string")
    if isinstance(body, bytes) and b"<Credentials>" in body:
        text = _SECRET_XML.sub(lambda m: f"<{m.group(1)}>REDACTED</{m.group(1)}>", body.decode())
        response["body"]["string"] = _EXPIRATION.sub(f"<Expiration>{FAR_FUTURE}</Expiration>", text).encode()
    for name in ("Date", "date", "x-amzn-requestid", "x-amz-request-id", "Server", "server"):
        response.get("headers", {}).pop(name, None)
    return response


def _scope(request: Any) -> str:
    """`region/service` from the SigV4 credential scope, or the X-Scope a recorded request kept."""
    found = _SCOPE.search(_header(request, "Authorization"))
    return f"{found.group(1)}/{found.group(2)}" if found else _header(request, "X-Scope")


def _body(request: Any) -> Any:
    body = request.body
    if hasattr(body, "getvalue"):
        body = body.getvalue()
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        pairs = parse_qsl(body, keep_blank_values=True)
        return sorted(p for p in pairs if p[0] not in ("ClientToken",)) if pairs else body
    if isinstance(parsed, dict):
        parsed.pop("ClientToken", None)
        parsed.pop("clientToken", None)
    return json.dumps(parsed, sort_keys=True)


def aws_operation(r1: Any, r2: Any) -> None:
    """Same service and region (SigV4 scope) and same X-Amz-Target."""
    assert _scope(r1) == _scope(r2), f"scope {_scope(r1)} != {_scope(r2)}"
    assert _header(r1, "X-Amz-Target") == _header(r2, "X-Amz-Target")


def _query(request: Any) -> list[tuple[str, str]]:
    return sorted(parse_qsl(urlsplit(request.uri).query, keep_blank_values=True))


def full_query(r1: Any, r2: Any) -> None:
    """Same query, keys without a value included: S3's `?location`, `?tagging` and `?notification`
    differ only there (vcrpy's own `query` matcher reads all three as an empty query)."""
    assert _query(r1) == _query(r2), f"query {_query(r1)} != {_query(r2)}"


def normalised_body(r1: Any, r2: Any) -> None:
    """Same parameters: form pairs or JSON compared parsed, idempotency tokens ignored."""
    assert _body(r1) == _body(r2)


def pytest_recording_configure(config: Any, vcr: Any) -> None:
    vcr.register_matcher("aws_operation", aws_operation)
    vcr.register_matcher("normalised_body", normalised_body)
    vcr.register_matcher("full_query", full_query)


@pytest.fixture(scope="module")
def vcr_config() -> dict:
    return {
        "before_record_request": scrub_request,
        "before_record_response": scrub_response,
        "decode_compressed_response": True,
        "match_on": ["method", "path", "full_query", "aws_operation", "normalised_body"],
        "allow_playback_repeats": True,
    }


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    return str(CASSETTES / request.module.__name__.split(".")[-1])


def recording(config: pytest.Config) -> bool:
    return config.getoption("--record-mode") not in (None, "none")


@pytest.fixture(scope="session")
def estate(request: pytest.FixtureRequest) -> dict:
    """The demo estate's ids: seeded on a fresh moto server when recording, else read from disk."""
    saved = CASSETTES / "estate.json"
    if not recording(request.config):
        return json.loads(saved.read_text())
    from demo.seed import seed_estate
    from demo.server import reset, start

    server, endpoint = start(RECORD_PORT)
    request.addfinalizer(server.stop)
    reset(endpoint)
    ids = seed_estate(endpoint)
    CASSETTES.mkdir(exist_ok=True)
    saved.write_text(json.dumps(ids, indent=2, sort_keys=True, default=str) + "\n")
    return ids


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Fake base credentials (moto's default account) and the fixed endpoint."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", RECORD_ENDPOINT)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    return RECORD_ENDPOINT


def make_config(regions: tuple[str, ...] = ("global", "eu-west-1", "us-east-1"), **instance: Any) -> Config:
    return Config(
        access_key_id=None,
        secret_access_key=None,
        external_id="test-external-id",
        instances=(Instance(role_arn=ROLE, regions=regions, **instance),),
    )


class ListSink:
    """Collects payloads in memory."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, dict]] = []

    def send(self, payload: dict, name: str) -> None:
        self.payloads.append((name, payload))

    def topologies(self) -> list[dict]:
        return [t for _, p in self.payloads for t in p["topologies"]]

    def components(self) -> dict[str, dict]:
        return {c["externalId"]: c for t in self.topologies() for c in t["components"]}

    def relations(self) -> set[tuple[str, str, str]]:
        return {
            (r["sourceId"], r["type"]["name"], r["targetId"])
            for t in self.topologies()
            for r in t["relations"]
        }


def components_of_type(sink: ListSink, type_name: str) -> dict[str, dict]:
    """The components the sink got whose type is `type_name`, by external id."""
    return {k: c for k, c in sink.components().items() if c["type"]["name"] == type_name}


def ids_of_type(sink: ListSink, type_name: str) -> set[str]:
    """The external ids of the components the sink got whose type is `type_name`."""
    return set(components_of_type(sink, type_name))


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], **attributes: Any) -> Iterator[str]:
    """A ThreadingHTTPServer on 127.0.0.1 with `handler` (class attributes from `attributes`); yields its
    base URL; shut down and joined after the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type(handler.__name__, (handler,), attributes))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def moto_server() -> Iterator[str]:
    """A fresh in-process moto server on a free port: started, reset, its endpoint yielded, stopped."""
    from demo.server import reset, start

    server, endpoint = start(0)
    try:
        reset(endpoint)
        yield endpoint
    finally:
        server.stop()


def moto_env(endpoint: str) -> dict[str, str]:
    """The environment of a CLI run against the moto server at `endpoint`: its fake credentials, no config
    or credentials files."""
    return {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }  # fmt: skip


@contextmanager
def live_aws(endpoint: str) -> Iterator[pytest.MonkeyPatch]:
    """Fake base credentials (moto's `testing`), no session token, profile or config files, and
    `endpoint` as AWS_ENDPOINT_URL while the block runs; the environment is restored after it.
    Yields the MonkeyPatch, so that patches of moto made on it are undone with the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setenv("AWS_ENDPOINT_URL", endpoint)
        patch.setenv("AWS_CONFIG_FILE", "/dev/null")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        yield patch


def scan_live(
    endpoint: str, mappings: Mappings | None = None, **config: Any
) -> tuple[ListSink, list[AccountScan]]:
    """Scan the moto server at `endpoint` on one worker, within `live_aws`, with `make_config(**config)`
    and `mappings` (all of mappings/ when None); return the sink that collected it and the results."""
    sink = ListSink()
    with live_aws(endpoint):
        results, _ = scan(
            make_config(**config),
            load_mappings() if mappings is None else mappings,
            sink,
            workers=1,
            endpoint_url=endpoint,
        )
    return sink, results


def with_params(mappings: Mappings, key: str, operation: str, **params: object) -> Mappings:
    """The mappings with extra parameters on the calls of `operation` of the resource `key`, its
    listing or its details (to make moto page: moto answers everything at once unless asked)."""

    def patched(call: Call) -> Call:
        return replace(call, params={**call.params, **params}) if call.operation == operation else call

    resources = []
    for resource in mappings.resources:
        if resource.key == key:
            listing = replace(resource.listing, call=patched(resource.listing.call))
            details = tuple(replace(d, call=patched(d.call)) for d in resource.details)
            resource = replace(resource, listing=listing, details=details)
        resources.append(resource)
    return replace(mappings, resources=tuple(resources))


class FakeClock:
    """`time.monotonic` and `time.sleep` that record the sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def dns_table(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Tests never ask the machine's DNS (`resolve()` in mappings): names resolve through this table,
    empty unless a test fills it."""
    table: dict[str, list[str]] = {}
    monkeypatch.setattr(functions, "RESOLVER", lambda host: list(table.get(host, [])))
    return table


@pytest.fixture
def without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable from the machine reaches a test that talks to a local server."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail the test if it looks up or connects to any host but the loopback: a Stubber test that forgot a
    client would otherwise try AWS, fail, and pass through a fallback. The attempt raises OSError (as on a
    machine without network) and is listed; the test fails at teardown. Yields that list."""
    attempts: list[str] = []
    getaddrinfo, connect = socket.getaddrinfo, socket.socket.connect

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:
            attempts.append(str(name))
            raise OSError(f"no_network: lookup of {name}")
        return getaddrinfo(host, *args, **kwargs)

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            attempts.append(str(address[0]))
            raise OSError(f"no_network: connection to {address[0]}")
        return connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield attempts
    assert not attempts, f"the test tried the network: {sorted(set(attempts))}"
