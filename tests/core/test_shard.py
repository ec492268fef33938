"""Shards: the stable share of each shard, and where the shard comes from (`--shard`, or Kubernetes's
`JOB_COMPLETION_INDEX` with `AWS_TOPOLOGY_SHARDS`)."""

from __future__ import annotations

import random

import pytest

from engine.core.shard import Shard, ShardError, parse_shard, shard_of

ACCOUNTS = [f"{100000000000 + 7919 * i:012d}" for i in range(23)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 23, 30])
def test_every_account_is_in_exactly_one_share_and_shares_differ_by_one_at_most(count: int) -> None:
    shares = [Shard(i, count).share(ACCOUNTS) for i in range(count)]
    assert sorted(a for share in shares for a in share) == sorted(ACCOUNTS)
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1


def test_a_share_does_not_depend_on_the_order_of_the_config() -> None:
    shuffled = random.Random(7).sample(ACCOUNTS, len(ACCOUNTS))
    assert [Shard(i, 4).share(shuffled) for i in range(4)] == [Shard(i, 4).share(ACCOUNTS) for i in range(4)]


def test_claiming_shards_start_apart_and_each_tries_everything() -> None:
    items = list(range(8))
    assert Shard(0, 4).order(items) == items
    assert Shard(1, 4).order(items) == [2, 3, 4, 5, 6, 7, 0, 1]
    assert Shard(3, 4).order(items)[0] == 6
    assert sorted(Shard(2, 3).order(items)) == items


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" 2 / 10 ", Shard(2, 10))],
)
def test_a_shard_is_index_slash_count(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("4/4", "INDEX counts from 0 and must be below COUNT"),
        ("0/0", "INDEX counts from 0 and must be below COUNT"),
        ("1", "is not INDEX/COUNT"),
        ("-1/4", "is not INDEX/COUNT"),
        ("a/b", "is not INDEX/COUNT"),
    ],
)
def test_a_bad_shard_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ShardError, match=problem) as caught:
        parse_shard(text)
    assert str(caught.value).startswith("--shard: ")


def test_the_shard_comes_from_the_option_then_from_the_indexed_job() -> None:
    job = {"JOB_COMPLETION_INDEX": "2", "AWS_TOPOLOGY_SHARDS": "5"}
    assert shard_of(None, False, {}) is None
    assert shard_of(None, False, job) == Shard(2, 5)
    assert shard_of("1/3", False, job) == Shard(1, 3)  # the option wins
    assert shard_of(None, True, job) == Shard(2, 5, claim=True)
    assert shard_of(None, True, {}) == Shard(0, 1, claim=True)  # --claim alone: one claimer of many


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"JOB_COMPLETION_INDEX": "0"}, "JOB_COMPLETION_INDEX: is set but AWS_TOPOLOGY_SHARDS is not"),
        ({"AWS_TOPOLOGY_SHARDS": "3"}, "AWS_TOPOLOGY_SHARDS: is set but JOB_COMPLETION_INDEX is not"),
        (
            {"JOB_COMPLETION_INDEX": "3", "AWS_TOPOLOGY_SHARDS": "3"},
            "JOB_COMPLETION_INDEX/AWS_TOPOLOGY_SHARDS: '3/3': INDEX counts from 0",
        ),
    ],
)
def test_half_an_indexed_job_is_an_error_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ShardError) as caught:
        shard_of(None, False, environ)
    assert str(caught.value).startswith(message)
