"""Every samples file (mappings/samples/{service}.yaml), offline: its mapping file's scan, replayed from the
cassette of its own (cassettes/mappings/{service}.yaml), finds exactly what `expect` says, and each of its
sample events asks for exactly its `refresh` and `delete`.

`./run.sh record SERVICE [SERVICE...]` records those cassettes: it runs the scan test of each service with
`--record-mode=rewrite`: the `seeded` fixture resets the moto server on RECORD_PORT (conftest's
`record_server`) with seed 42 and seeds the core demo estate and the service's seed steps, outside the
cassette (cassettes/estate.json is not rewritten); the cassette holds the scan's traffic only, scrubbed and
matched as every cassette (conftest.py's vcr_config).
"""

from __future__ import annotations

from collections import Counter

import pytest

from demo.samples import seed_samples
from engine.core.phase import Limits
from engine.language.loader import Join, Mappings, Resource, load_mappings
from engine.language.samples import GLOBAL, Samples
from engine.scan.full_scan import AccountScan, scan
from engine.scan.plan import per_item
from tests.events.test_event_rules import fired, from_file
from tests.support import OWN_CASSETTES, ROOT, ListSink, make_config, recording, shipped_samples

SAMPLES = {samples.name: samples for samples in shipped_samples()}
EVENTS = [(samples.name, event) for samples in SAMPLES.values() for event in samples.events]
# vcr's CannotOverwriteExistingCassetteException, as a unit's error gives it (botocore wraps it)
STALE = ("CannotOverwriteExistingCassetteException", "Can't overwrite existing cassette", "Can't play back")


@pytest.fixture(scope="module")
def shipped() -> Mappings:
    return load_mappings()


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(OWN_CASSETTES)


@pytest.fixture(scope="module", params=sorted(SAMPLES))
def seeded(request: pytest.FixtureRequest) -> Samples:
    """The samples file; when recording, the moto server on RECORD_PORT holds the core estate and its seed
    (module-scoped: set up before the test's cassette is opened, so the seeding is not recorded)."""
    samples = SAMPLES[request.param]
    if recording(request.config):
        from demo.seed import seed_estate
        from demo.server import reset

        endpoint = request.getfixturevalue("record_server")
        reset(endpoint)
        seed_samples(endpoint, samples, seed_estate(endpoint))
    return samples


@pytest.fixture
def default_cassette_name(seeded: Samples) -> str:
    return seeded.name


def own_mappings(samples: Samples, shipped: Mappings) -> Mappings:
    """The resources of the samples file's mapping file, and its interfaces."""
    file = f"{samples.name}.yaml"
    return Mappings(
        tuple(r for r in shipped.resources if r.file == file),
        tuple(i for i in shipped.interfaces if i.file == file),
    )


def cassette_problem(name: str, exists: bool, problems: list[str]) -> str | None:
    """One line naming the fix when the cassette is missing or lacks an answer the scan asked for."""
    where = (OWN_CASSETTES / f"{name}.yaml").relative_to(ROOT)
    if not exists:
        return f"{where} is missing: re-record: ./run.sh record {name}"
    stale = [p for p in problems if any(s in p for s in STALE)]
    if stale:
        first = stale[0].split(": ", 1)[0]
        lacks = f"lacks answers the scan asks for ({len(stale)} unit(s), {first} first)"
        return f"{where} {lacks}: re-record: ./run.sh record {name}"
    return None


def not_complete(result: AccountScan) -> list[str]:
    return [f"{u.unit.label}: {u.error or u.status}" for u in result.units if not u.complete] + (
        [f"account: {result.error}"] if result.error else []
    )


@pytest.mark.vcr
def test_the_scan_of_the_seed_finds_exactly_what_the_samples_file_expects(
    request: pytest.FixtureRequest, aws_env: str, seeded: Samples, shipped: Mappings
) -> None:
    mappings = own_mappings(seeded, shipped)
    exists = recording(request.config) or (OWN_CASSETTES / f"{seeded.name}.yaml").exists()
    if not exists:
        pytest.fail(cassette_problem(seeded.name, exists, []) or "", pytrace=False)
    sink, result = scan_own(seeded, mappings, aws_env)
    # The per-item plan too (every join's call replaced by its per-item fallback), in the same cassette, so
    # the denial tests (test_samples_denials.py) can replay a denied join's fallback.
    naive_sink, naive = scan_own(seeded, per_item(mappings), aws_env)

    problems = not_complete(result) + not_complete(naive)
    stale = cassette_problem(seeded.name, True, problems)
    if stale:
        pytest.fail(stale, pytrace=False)
    assert problems == []
    components = sink.components()
    found = Counter(c["type"]["name"] for c in components.values())
    assert dict(found) == {kind: n for kind, n in seeded.components.items() if n}
    relations = Counter(kind for source, kind, _ in sink.relations() if source in components)
    assert dict(relations) == {kind: n for kind, n in seeded.relations.items() if n}
    if all(fallback_of(r, j) for r in mappings.resources for j in r.joins if j.call):  # else it has less
        assert naive_sink.components() == components  # whole records: data, tags, labels
        assert naive_sink.relations() == sink.relations()


def fallback_of(resource: Resource, join: Join) -> bool:
    """Whether the join's call has a per-item fallback (a join of another IAM action, such as tags, may)."""
    return any(d.fallback and d.into == join.into for d in resource.details)


def scan_own(samples: Samples, mappings: Mappings, endpoint: str) -> tuple[ListSink, AccountScan]:
    """A scan of `mappings` over the samples file's regions (and `global` when a type is global)."""
    regions = samples.regions
    if GLOBAL not in regions and any(r.scope == GLOBAL for r in mappings.resources):
        regions = (*regions, GLOBAL)
    sink = ListSink()
    [result], _ = scan(
        make_config(regions=regions), mappings, sink, limits=Limits(workers=1), endpoint_url=endpoint
    )
    return sink, result


@pytest.mark.parametrize(("name", "event"), EVENTS, ids=[event.label for _, event in EVENTS])
def test_each_sample_event_asks_for_exactly_its_refresh_and_delete(
    shipped: Mappings, name: str, event
) -> None:
    sample = from_file(event)
    got: dict[tuple[str, str], list[str]] = {}
    for change in fired(shipped, sample):
        got.setdefault((change.resource.key, "delete" if change.delete else "refresh"), []).append(change.id)
    assert got == sample.expected, name


def test_every_samples_file_starts_with_its_schema_line() -> None:
    line = "# yaml-language-server: $schema=../../schemas/samples.schema.json"
    first = {name: (ROOT / "mappings" / s.file).read_text().splitlines()[0] for name, s in SAMPLES.items()}
    assert {name: text for name, text in first.items() if text != line} == {}


def test_a_missing_or_stale_cassette_names_the_fix() -> None:
    assert cassette_problem("efs", False, []) == (
        "cassettes/mappings/efs.yaml is missing: re-record: ./run.sh record efs"
    )
    problems = [
        "123456789012/eu-west-1/efs.file-system: DescribeFileSystems in 123456789012/eu-west-1 failed: "
        "HTTPClientError: An HTTP Client raised an unhandled exception: Can't play back this request: ...",
        "123456789012/eu-west-1/efs.mount-target: denied",
    ]
    assert cassette_problem("efs", True, problems) == (
        "cassettes/mappings/efs.yaml lacks answers the scan asks for (1 unit(s), "
        "123456789012/eu-west-1/efs.file-system first): re-record: ./run.sh record efs"
    )
    assert cassette_problem("efs", True, problems[1:]) is None
