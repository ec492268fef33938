"""Shared test fixtures: recorded cassettes of a seeded moto server, and a live one.

Cassettes live in `cassettes/<test module>/<test>.yaml`. They are replayed offline by default
(pytest-recording's record mode `none`). To re-record: `pytest --record-mode=rewrite`; a moto
server is then started on the fixed port below (queue URLs carry the port), reset, seeded with a
fixed random seed and the demo estate, whose ids are saved beside the cassettes.
Requests are matched on service, region, operation and normalised parameters; signatures, dates,
tokens and credentials are scrubbed before anything is written (tests/support.py).

Helpers that are not fixtures (make_config, ListSink, moto_server, scan_live, ...) are in tests/support.py.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.language import dialect as functions
from tests.support import (
    CASSETTES,
    RECORD_ENDPOINT,
    RECORD_PORT,
    aws_operation,
    full_query,
    new_database,
    normalised_body,
    postgres_binaries,
    postgres_server,
    recording,
    scrub_request,
    scrub_response,
)


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


@pytest.fixture(scope="session")
def record_server(request: pytest.FixtureRequest) -> str:
    """When recording: a moto server on RECORD_PORT for the session (recorded requests carry the port)."""
    from demo.server import start

    server, endpoint = start(RECORD_PORT)
    request.addfinalizer(server.stop)
    return endpoint


@pytest.fixture(scope="session")
def estate(request: pytest.FixtureRequest) -> dict:
    """The demo estate's ids: seeded on a fresh moto server when recording, else read from disk."""
    saved = CASSETTES / "estate.json"
    if not recording(request.config):
        return json.loads(saved.read_text())
    from demo.seed import seed_estate
    from demo.server import reset

    endpoint = request.getfixturevalue("record_server")
    reset(endpoint)
    ids = seed_estate(endpoint)
    CASSETTES.mkdir(exist_ok=True)
    saved.write_text(json.dumps(ids, indent=2, sort_keys=True, default=str) + "\n")
    return ids


@pytest.fixture(autouse=True, scope="module")
def tracing_ends_with_module() -> Iterator[None]:
    """Memory tracing a test started (tests/fuzz.py `bounded`) stops once, when its module ends."""
    yield
    if tracemalloc.is_tracing():
        tracemalloc.stop()


@pytest.fixture(autouse=True)
def every_request_answered(request: pytest.FixtureRequest) -> Iterator[None]:
    """A replayed request the cassette has no answer for fails the test: the engine would take a join's
    fallback or report a gap, and a stale cassette would pass unnoticed."""
    cassette = request.getfixturevalue("vcr") if "vcr" in request.fixturenames else None
    if cassette is None or recording(request.config):
        yield
        return
    misses: list[str] = []
    can_play = cassette.can_play_response_for

    def answered(vcr_request: Any) -> bool:
        found = can_play(vcr_request)
        if not found:
            misses.append(f"{vcr_request.method} {vcr_request.uri} {str(vcr_request.body or '')[:120]}")
        return found

    cassette.can_play_response_for = answered
    yield
    del cassette.can_play_response_for
    if misses:
        where = Path(cassette._path).relative_to(CASSETTES.parent)
        fix = (
            f"./run.sh record {where.stem}"
            if where.parent.name == "mappings"
            else f"./run.sh test --record-mode=rewrite {request.node.path.relative_to(CASSETTES.parent)}"
        )
        pytest.fail(f"{where} lacks {len(misses)} answer(s) (first: {misses[0]}): re-record: {fix}", False)


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/support.py `postgres_server`); yields its URL.

    Skipped when no server binaries are installed (`apt-get install postgresql`), unless
    AWS_TOPOLOGY_REQUIRE_POSTGRES is set (CI), where it fails instead."""
    if postgres_binaries() is None:
        if os.environ.get("AWS_TOPOLOGY_REQUIRE_POSTGRES"):
            pytest.fail("AWS_TOPOLOGY_REQUIRE_POSTGRES is set, but no PostgreSQL server is installed")
        pytest.skip("no PostgreSQL server under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    with postgres_server() as url:
        yield url


_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a test's `State` lives, once per backend: a SQLite file in tmp_path, or a new empty database on
    the session's PostgreSQL server (as a `postgresql://` URL)."""
    if request.param == "sqlite":
        return tmp_path / "state.db"
    return new_database(request.getfixturevalue("postgres"), f"state_{os.getpid()}_{next(_databases)}")
