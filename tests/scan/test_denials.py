"""Every call of every mapping, denied in turn, replayed from the cassette of both plans of the demo estate.

A denied listing makes its unit (and the child types under it) *denied*, reports "role X needs Y" with the
IAM action the mapping declares, keeps every other unit complete, and keeps the snapshot open. A denied
detail call keeps its items with less data, reports the gap, and leaves the unit complete. A denied bulk
(join) call falls back to its per-item calls: the same components, data and tags, and the gap reported. A
fallback detail is denied together with its join's call (it is made only then).
"""

from __future__ import annotations

import pytest

from engine.core.phase import Limits
from engine.language.loader import Resource
from engine.scan.full_scan import scan
from tests.support import CASSETTES, ROLE, ListSink, deny, deny_detail, make_config, shared_mappings

CASSETTE = str(
    CASSETTES
    / "test_plan_equivalence"
    / "test_the_bulk_plan_yields_exactly_the_components_and_relations_of_the_per_item_plan.yaml"
)
MAPPINGS = shared_mappings()
ROOTS = [r for r in MAPPINGS.resources if r.parent is None and r.listing.call is not None]
DETAILS = [(r, d) for r in MAPPINGS.resources for d in r.details if d.batch is None and d.chunk is None]
JOINS = [(r, j) for r in MAPPINGS.resources for j in r.joins if j.call is not None]


def run(resource: Resource, endpoint: str) -> tuple[ListSink, object]:
    sink = ListSink()
    [result], _ = scan(
        make_config(apis_to_run=(resource.service,)),
        MAPPINGS,
        sink,
        limits=Limits(workers=1),
        endpoint_url=endpoint,
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
@pytest.mark.parametrize(
    ("resource", "detail"), DETAILS, ids=[f"{r.key}-{d.call.operation}" for r, d in DETAILS]
)
def test_a_denied_detail_keeps_the_items_and_reports_the_gap(aws_env, estate, monkeypatch, resource, detail):
    whole, _ = run(resource, aws_env)
    deny_detail(monkeypatch, resource, detail)
    sink, result = run(resource, aws_env)

    assert result.complete, [u.error for u in result.units if not u.complete]
    kept = {i for i, c in sink.components().items() if c["type"]["name"] in resource.types}
    assert kept == {i for i, c in whole.components().items() if c["type"]["name"] in resource.types}
    assert f"role {ROLE} needs {detail.call.iam_action}" in " ".join(result.gaps())
    if resource.emits_component:
        assert kept  # the estate has items for the denied call to miss
    else:  # edges only, which need the details: the estate has some, and none is made up without them
        assert whole.relations() and sink.relations() <= whole.relations()


@pytest.mark.vcr(CASSETTE)
@pytest.mark.parametrize(("resource", "join"), JOINS, ids=[f"{r.key}-{j.call.operation}" for r, j in JOINS])
def test_a_denied_bulk_call_falls_back_per_item_and_keeps_every_tag(
    aws_env, estate, monkeypatch, resource, join
):
    whole, _ = run(resource, aws_env)
    deny(monkeypatch, join.call)  # the join's call only: S3's listing makes the same operation
    sink, result = run(resource, aws_env)

    assert result.complete, [u.error for u in result.units if not u.complete]
    assert sink.components() == whole.components()  # the per-item fallback gives the same data and tags
    assert sink.relations() == whole.relations()
    if resource.emits_component:
        assert any(
            c["data"].get("Tags") for c in sink.components().values() if c["type"]["name"] in resource.types
        )
    else:  # edges only (Cloud Map: its namespace's hosted zone): the fallback still gives them
        assert sink.relations()
    assert f"role {ROLE} needs {join.call.iam_action}" in " ".join(result.gaps())
