"""One EventBridge object read by `engine.events.eventbridge.envelopes`: what is read, and why one is
refused."""

from __future__ import annotations

import gzip

import pytest

from engine.events.eventbridge import CorruptObject, envelopes

ONE = b'{"detail-type": "x"}'


def test_members_and_plain_text_read_up_to_the_bound_and_not_a_byte_more() -> None:
    two = gzip.compress(ONE) + gzip.compress(ONE + b" 7 " + ONE)  # Firehose appends gzip members
    assert envelopes(two) == [{"detail-type": "x"}] * 3  # the scalar between objects is not an envelope
    assert envelopes(ONE, limit=len(ONE)) == [{"detail-type": "x"}]
    assert envelopes(gzip.compress(ONE * 3), limit=3 * len(ONE)) == [{"detail-type": "x"}] * 3
    with pytest.raises(CorruptObject, match=rf"^larger than {len(ONE) - 1} bytes$"):
        envelopes(ONE, limit=len(ONE) - 1)
    with pytest.raises(CorruptObject, match=rf"^inflates to more than {3 * len(ONE) - 1} bytes$"):
        envelopes(gzip.compress(ONE * 3), limit=3 * len(ONE) - 1)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (gzip.compress(ONE)[:-9], "bad gzip data: truncated"),
        (
            b"\x1f\x8b" + b"\x00" * 20,
            "bad gzip data: Error -5 Gzip/zlib wrapper specifies unsupported compress method",
        ),
        (b'{"a": "\xff"}', "not UTF-8 (bad byte at offset 7)"),
        (ONE + b'{"a":', "bad JSON at character 25: Expecting value"),
        (ONE + b"[" * 100_000, "JSON nested too deeply at character 20"),
    ],
)
def test_a_refused_object_says_why(body: bytes, problem: str) -> None:
    with pytest.raises(CorruptObject) as refused:
        envelopes(body)
    assert str(refused.value) == problem
