"""The bulk plan (region-wide joins) against the per-item plan, on the demo estate replayed from a cassette.

Both plans are run in the same test, so the cassette holds every call of both: tests/scan/test_denials.py
replays it to deny each bulk call and each per-item fallback in turn.
"""

from __future__ import annotations

import pytest

from engine.core.phase import Limits
from engine.scan.full_scan import scan
from engine.scan.plan import per_item
from tests.support import ListSink, make_config, recording, shared_mappings

pytestmark = pytest.mark.vcr


def run(mappings, endpoint: str) -> tuple[ListSink, object, int]:
    sink = ListSink()
    [result], calls = scan(make_config(), mappings, sink, limits=Limits(workers=1), endpoint_url=endpoint)
    return sink, result, calls


def relations(sink: ListSink) -> dict[str, dict]:
    return {r["externalId"]: r for t in sink.topologies() for r in t["relations"]}


def plays(cassette) -> list[int]:
    """How often each recorded request of `cassette` has been played so far."""
    return [cassette.play_counts[i] for i in range(len(cassette))]


def test_the_bulk_plan_yields_exactly_the_components_and_relations_of_the_per_item_plan(
    aws_env, estate, vcr, request
):
    mappings = shared_mappings()
    bulk_sink, bulk, bulk_calls = run(mappings, aws_env)
    by_bulk = plays(vcr)
    naive_sink, naive, naive_calls = run(per_item(mappings), aws_env)
    if not recording(request.config):  # nothing is played while recording
        by_naive = [n - b for n, b in zip(plays(vcr), by_bulk, strict=True)]
        # Each plan makes each recorded request at most once (playback repeats would hide a doubled call),
        # and every recorded request is made by one of them.
        assert set(by_bulk) <= {0, 1} and set(by_naive) <= {0, 1}
        assert all(b or n for b, n in zip(by_bulk, by_naive, strict=True))

    assert bulk.complete and naive.complete
    assert bulk.gaps() == naive.gaps() == []
    assert bulk_sink.components() == naive_sink.components()  # whole records: data, tags, labels
    assert relations(bulk_sink) == relations(naive_sink)
    assert bulk_calls < naive_calls
    joined = {r.type for r in mappings.resources if r.emits_component and any(j.call for j in r.joins)}
    assert joined >= {"aws.sqs.queue", "aws.sns.topic", "aws.s3.bucket", "aws.lambda.function"}
    tagged = {c["type"]["name"] for c in bulk_sink.components().values() if c["data"].get("Tags")}
    assert tagged >= joined  # the joins did bring tags: the estate tags a resource of every joined type
    assert any(t == "uses-service" and s.startswith("arn:aws:sns:") for s, t, _ in bulk_sink.relations())
