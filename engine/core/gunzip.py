"""gunzip through ISA-L's inflate (the `isal` package): zlib's streaming interface, about 3x its speed.

Flow-log and EventBridge objects are gzip, and inflating them is most of the floor both readers are
measured against (docs/benchmarks.md). Callers keep their own bounds: `decompress(data, max_length)`,
`unconsumed_tail`, `unused_data` and `eof` behave as zlib's do.
"""

from __future__ import annotations

from typing import Any

from isal import isal_zlib

error = isal_zlib.error  # what a bad gzip stream raises


def inflater() -> Any:
    """A decompressor of one gzip member (the header is checked, the CRC and length at its end)."""
    return isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
