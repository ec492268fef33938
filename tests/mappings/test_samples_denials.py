"""Every call of every samples service's mapping, denied in turn, replayed from the service's own cassette
(cassettes/mappings/{service}.yaml, which holds both plans: see test_samples.py). The same rules as
tests/scan/test_denials.py holds the shared mappings to: a denied listing makes its unit (and the types
under it) denied and names the IAM action; a denied detail keeps the items, their external ids and the
unit complete, and reports the gap; a denied region-wide join falls back to its per-item calls with the
same result.
"""

from __future__ import annotations

import pytest

from engine.language.loader import Mappings, Resource, load_mappings
from tests.mappings.test_samples import SAMPLES, fallback_of, own_mappings, scan_own
from tests.support import OWN_CASSETTES, ROLE, ListSink, deny, deny_detail

SHIPPED = load_mappings()
OWN = {name: own_mappings(samples, SHIPPED) for name, samples in SAMPLES.items()}
ROOTS = [
    (n, r) for n, m in OWN.items() for r in m.resources if r.parent is None and r.listing.call is not None
]
DETAILS = [
    (n, r, d)
    for n, m in OWN.items()
    for r in m.resources
    for d in r.details
    if d.batch is None and d.chunk is None
]
JOINS = [(n, r, j) for n, m in OWN.items() for r in m.resources for j in r.joins if j.call is not None]


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(OWN_CASSETTES)


@pytest.fixture
def default_cassette_name(name: str) -> str:
    return name


def run(name: str, endpoint: str) -> tuple[ListSink, object]:
    sink, result = scan_own(SAMPLES[name], OWN[name], endpoint)
    assert result.error is None
    return sink, result


def subtree(mappings: Mappings, resource: Resource) -> set[str]:
    keys = {resource.key}
    for child in mappings.children(resource):
        keys |= subtree(mappings, child)
    return keys


def kept(sink: ListSink, resource: Resource) -> set[str]:
    return {i for i, c in sink.components().items() if c["type"]["name"] in resource.types}


@pytest.mark.vcr
@pytest.mark.parametrize(("name", "resource"), ROOTS, ids=[r.key for _, r in ROOTS])
def test_a_denied_listing_marks_only_its_unit_and_names_the_permission(aws_env, monkeypatch, name, resource):
    deny(monkeypatch, resource.listing.call.operation)
    sink, result = run(name, aws_env)

    denied = {u.unit.resource.key for u in result.units if not u.complete}
    assert denied == subtree(OWN[name], resource)
    assert all(u.status == "denied" for u in result.units if not u.complete)
    assert f"role {ROLE} needs {resource.listing.call.iam_action}" in " ".join(result.gaps())
    assert not result.closes_snapshot
    assert not {c["type"]["name"] for c in sink.components().values()} & set(resource.types)


@pytest.mark.vcr
@pytest.mark.parametrize(
    ("name", "resource", "detail"), DETAILS, ids=[f"{r.key}-{d.call.operation}" for _, r, d in DETAILS]
)
def test_a_denied_detail_keeps_the_items_and_their_external_ids(aws_env, monkeypatch, name, resource, detail):
    whole, _ = run(name, aws_env)
    deny_detail(monkeypatch, resource, detail)
    sink, result = run(name, aws_env)

    assert result.complete, [u.error for u in result.units if not u.complete]
    assert kept(sink, resource) == kept(whole, resource) != set()
    assert f"role {ROLE} needs {detail.call.iam_action}" in " ".join(result.gaps())


@pytest.mark.vcr
@pytest.mark.parametrize(
    ("name", "resource", "join"), JOINS, ids=[f"{r.key}-{j.call.operation}" for _, r, j in JOINS]
)
def test_a_denied_join_falls_back_per_item_with_the_same_result(aws_env, monkeypatch, name, resource, join):
    whole, _ = run(name, aws_env)
    deny(monkeypatch, join.call.operation)
    sink, result = run(name, aws_env)

    assert result.complete, [u.error for u in result.units if not u.complete]
    if fallback_of(resource, join):  # the per-item calls give the same data
        assert sink.components() == whole.components() and sink.relations() == whole.relations()
    else:  # no fallback: the items stay, without what the join gave
        assert kept(sink, resource) == kept(whole, resource) != set()
    assert f"role {ROLE} needs {join.call.iam_action}" in " ".join(result.gaps())


def test_every_samples_service_has_calls_to_deny() -> None:
    assert {n for n, _ in ROOTS} == set(SAMPLES) and DETAILS and JOINS
