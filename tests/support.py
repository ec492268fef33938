"""Helpers the tests import (`from tests.support import ...`); the fixtures are in tests/conftest.py.

Cassettes live in `cassettes/<test module>/<test>.yaml`: the scrubbing of what is recorded and the request
matchers are here. The live mapping tests (tests/mappings/test_mapping_*.py) share small helpers:
`moto_server` starts a fresh in-process moto server, `scan_live` scans it with fake credentials (`live_aws`),
`with_params` makes moto page, and `components_of_type` / `ids_of_type` pick components by type.

A mapping file with a samples file (mappings/samples/) has a cassette of its own, `cassettes/mappings/{file}`,
recorded by `./run.sh record SERVICE` (tests/mappings/test_samples.py). The tests that replay the shared
cassettes scan `shared_mappings()`: the mapping files without one, so adding a service never changes them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from engine.aws import fetch
from engine.core.config import Config, Instance
from engine.core.errors import AccessDenied
from engine.core.phase import Limits
from engine.language.loader import Call, Detail, Mappings, Resource, load_mappings
from engine.language.samples import Samples, load_samples
from engine.scan.full_scan import AccountScan, scan

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"
OWN_CASSETTES = CASSETTES / "mappings"  # a mapping file's own cassette: cassettes/mappings/{file}
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


def recording(config: pytest.Config) -> bool:
    return config.getoption("--record-mode") not in (None, "none")


def shared_mappings(mappings: Mappings | None = None) -> Mappings:
    """`mappings` (the shipped ones when None) without the mapping files that have a cassette of their own
    (cassettes/mappings/{file}): what the shared cassettes were recorded with."""
    mappings = load_mappings() if mappings is None else mappings
    shared = lambda item: not (OWN_CASSETTES / item.file).exists()  # noqa: E731
    return Mappings(
        tuple(r for r in mappings.resources if shared(r)), tuple(i for i in mappings.interfaces if shared(i))
    )


def shipped_samples() -> tuple[Samples, ...]:
    """The samples files of the shipped mappings (mappings/samples/*.yaml), sorted by name."""
    return load_samples(load_mappings())


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
            limits=Limits(workers=1),
            endpoint_url=endpoint,
        )
    return sink, results


def deny(monkeypatch: pytest.MonkeyPatch, *operations: str | Call) -> None:
    """AWS answers AccessDenied to `operations`, as botocore's error would be classified: every call of an
    operation named, or only the very call given (a join's, when the listing makes the same operation)."""
    original = fetch.Fetcher.call

    def call(self, account, region, service, spec: Call, params):  # type: ignore[no-untyped-def]
        if spec.operation in operations or spec in operations:
            raise AccessDenied(
                role_arn=account.role_arn, action=spec.iam_action, operation=spec.operation,
                account=account.id, region=region, code="AccessDenied",
            )  # fmt: skip
        return original(self, account, region, service, spec, params)

    monkeypatch.setattr(fetch.Fetcher, "call", call)


def deny_detail(monkeypatch: pytest.MonkeyPatch, resource: Resource, detail: Detail) -> None:
    """AWS denies the detail; a `fallback` detail together with its join's call (it is made only then)."""
    joins = [j.call for j in resource.joins if j.call and detail.fallback and j.into == detail.into]
    deny(monkeypatch, detail.call.operation, *joins)


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


# --- a throwaway PostgreSQL server (Debian's binaries), for the state tests of the PostgreSQL backend ------

PG_READY_SECONDS = 30


def postgres_binaries() -> Path | None:
    """The newest `/usr/lib/postgresql/*/bin` holding initdb and pg_ctl (Debian keeps them off PATH)."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a PostgreSQL on 127.0.0.1 (a free port, a private socket dir, fsync off) in a temp dir, as a
    non-root user (the `postgres` user, else `nobody`, when run as root); yield its superuser URL (user
    `topology`, trust auth, database `postgres`); stop it (fast shutdown) and delete the dir afterwards."""
    import os
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    import psycopg

    binaries = postgres_binaries()
    if binaries is None:
        raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    prefix: list[str] = []
    top = Path(tempfile.mkdtemp(prefix="aws-topology-pg-"))
    if os.getuid() == 0:  # postgres refuses to run as root
        user = next((u for u in ("postgres", "nobody") if _has_user(u, pwd)), None)
        if user is None:
            raise RuntimeError("running as root, and neither a postgres nor a nobody user to run the server")
        prefix = ["runuser", "-u", user, "--"]
        entry = pwd.getpwnam(user)
        os.chown(top, entry.pw_uid, entry.pw_gid)
    data, log = top / "data", top / "server.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, timeout=120)

    started = False
    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "topology", "--auth=trust", "--no-sync",
            "-E", "UTF8", "--locale=C")  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {top} -c fsync=off -c synchronous_commit=off"
        options += " -c full_page_writes=off -c max_connections=200"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "start")
        started = True
        url = f"postgresql://topology@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + PG_READY_SECONDS
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                    raise RuntimeError(
                        f"PostgreSQL on port {port} did not answer within {PG_READY_SECONDS}s: {exc}\n{tail}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        if started:
            subprocess.run([*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           check=False, capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(top, ignore_errors=True)


def _has_user(name: str, pwd: Any) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def new_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url`; return the URL of that database."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"
