"""Every call of every mapping, denied in turn, replayed from the full-scan cassette of the demo estate.

A denied listing makes its unit (and the child types under it) *denied*, reports "role X needs Y" with the
IAM action the mapping declares, keeps every other unit complete, and keeps the snapshot open. A denied
detail call keeps its items with less data, reports the gap, and leaves the unit complete.
"""

from __future__ import annotations

import pytest

from engine import fetch
from engine.errors import AccessDenied
from engine.mappings import Call, Resource, load_mappings
from engine.scan import scan
from tests.conftest import CASSETTES, ROLE, ListSink, make_config

CASSETTE = str(CASSETTES / "test_scan" / "test_full_scan_lists_every_seeded_resource.yaml")
MAPPINGS = load_mappings()
ROOTS = [r for r in MAPPINGS.resources if r.parent is None and r.listing.call is not None]
DETAILS = [(r, d.call) for r in MAPPINGS.resources for d in r.details if d.batch is None and d.chunk is None]


def deny(monkeypatch: pytest.MonkeyPatch, operation: str) -> None:
    """AWS answers AccessDenied to `operation`, as botocore's error would be classified."""
    original = fetch.Fetcher.call

    def call(self, account, region, service, spec: Call, params):  # type: ignore[no-untyped-def]
        if spec.operation == operation:
            raise AccessDenied(
                role_arn=account.role_arn, action=spec.iam_action, operation=operation,
                account=account.id, region=region, code="AccessDenied",
            )  # fmt: skip
        return original(self, account, region, service, spec, params)

    monkeypatch.setattr(fetch.Fetcher, "call", call)


def run(resource: Resource, endpoint: str) -> tuple[ListSink, object]:
    sink = ListSink()
    [result], _ = scan(
        make_config(apis_to_run=(resource.service,)), MAPPINGS, sink, workers=1, endpoint_url=endpoint
    )
    assert result.error is None
    return sink, result


def subtree(resource: Resource) -> set[str]:
    keys = {resource.key}
    for child in MAPPINGS.children(resource):
        keys |= subtree(child)
    return keys


@pytest.mark.vcr(CASSETTE)
@pytest.mark.parametrize("resource", ROOTS, ids=lambda r: r.key)
def test_a_denied_listing_marks_only_its_unit_and_names_the_permission(
    aws_env, estate, monkeypatch, resource
):
    assert resource.listing.call is not None
    deny(monkeypatch, resource.listing.call.operation)
    sink, result = run(resource, aws_env)

    operation = resource.listing.call.operation
    sharing = [r for r in ROOTS if r.service == resource.service and r.listing.call.operation == operation]
    denied = {u.unit.resource.key for u in result.units if not u.complete}
    assert denied == set().union(*(subtree(r) for r in sharing))
    assert all(u.status == "denied" for u in result.units if not u.complete)
    assert f"role {ROLE} needs {resource.listing.call.iam_action}" in " ".join(result.gaps())
    assert not result.closes_snapshot
    assert all(t["stop_snapshot"] is False for t in sink.topologies())
    assert not {c["type"]["name"] for c in sink.components().values()} & set(resource.types)


@pytest.mark.vcr(CASSETTE)
@pytest.mark.parametrize(("resource", "call"), DETAILS, ids=[f"{r.key}-{c.operation}" for r, c in DETAILS])
def test_a_denied_detail_keeps_the_items_and_reports_the_gap(aws_env, estate, monkeypatch, resource, call):
    whole, _ = run(resource, aws_env)
    deny(monkeypatch, call.operation)
    sink, result = run(resource, aws_env)

    assert result.complete, [u.error for u in result.units if not u.complete]
    kept = {i for i, c in sink.components().items() if c["type"]["name"] in resource.types}
    assert kept == {i for i, c in whole.components().items() if c["type"]["name"] in resource.types}
    if kept:
        assert f"role {ROLE} needs {call.iam_action}" in " ".join(result.gaps())
