"""The process keeps to two malloc arenas however many threads allocate (glibc only)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from engine import cli
from engine.core.allocator import limit_arenas

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Eight threads each allocate (outside Python's small-object pools) at once, then glibc lists its arenas.
ARENAS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from engine.core.allocator import limit_arenas
    print(limit_arenas() if sys.argv[1] == "limit" else None)
    together, kept = threading.Barrier(8), []
    def allocate():
        kept.append(bytearray(200_000))
        together.wait()
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    path = tempfile.mktemp()
    out = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
    libc.malloc_info(0, out)
    libc.fclose(out)
    print(open(path).read().count("<heap nr="))
    """
)


def arenas(how: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    command = [sys.executable, "-c", ARENAS, how]
    done = subprocess.run(command, capture_output=True, text=True, env=environ, check=True, timeout=60)
    limited, count = done.stdout.split()
    return limited, int(count)


def test_eight_threads_share_two_arenas_once_limited():
    assert arenas("limit") == ("True", 2)
    assert arenas("none")[1] > 2  # glibc's default: an arena per thread


def test_malloc_arena_max_in_the_environment_wins():
    assert arenas("limit", MALLOC_ARENA_MAX="4") == ("False", 4)


def test_every_command_limits_the_arenas_first(monkeypatch: pytest.MonkeyPatch):
    called: list[bool] = []
    monkeypatch.setattr(cli, "limit_arenas", lambda: called.append(True) or True)

    result = CliRunner().invoke(cli.main, ["agent-policy"])

    assert result.exception is None, result.output
    assert called == [True]


def test_a_limit_is_not_set_over_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")

    assert limit_arenas() is False
