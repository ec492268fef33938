"""The log bucket on its own, against a live moto server: versioning check, listing order, bounded reads,
version-exact deletes, refused deletes, and the corrupt-object record."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config as ClientConfig

import engine.aws.log_bucket as bucket_module
from engine.aws.fetch import Fetcher
from engine.aws.log_bucket import LogBucket, TooLarge, Unversioned
from engine.aws.sessions import Account
from engine.core.errors import AccessDenied, CallFailed
from engine.core.state import State
from tests.support import ACCOUNT, live_aws, moto_server

pytestmark = pytest.mark.live

NAME = "stackstate-logs-test"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url, live_aws(url):
        yield url


@pytest.fixture
def s3(endpoint: str) -> Iterator[object]:
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
    client.create_bucket(Bucket=NAME)
    client.put_bucket_versioning(Bucket=NAME, VersioningConfiguration={"Status": "Enabled"})
    yield client
    for page in client.get_paginator("list_object_versions").paginate(Bucket=NAME):
        for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            client.delete_object(Bucket=NAME, Key=v["Key"], VersionId=v["VersionId"])
    client.delete_bucket(Bucket=NAME)


@pytest.fixture
def state(tmp_path) -> Iterator[State]:
    with State(tmp_path / "s.sqlite") as opened:
        yield opened


def log_bucket(endpoint: str, state: State, fetcher: Fetcher | None = None, name: str = NAME) -> LogBucket:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    account = Account(
        ACCOUNT, f"arn:aws:iam::{ACCOUNT}:role/r", session, ClientConfig(), endpoint_url=endpoint
    )
    return LogBucket(account, name, fetcher or Fetcher(), state, "events")


def versions(s3, key: str) -> list[str]:
    answer = s3.list_object_versions(Bucket=NAME, Prefix=key)
    return [v["VersionId"] for v in answer.get("Versions", []) if v["Key"] == key]


# --- versioning ---------------------------------------------------------------------------------


def test_a_versioned_bucket_is_accepted(endpoint, s3, state):
    log_bucket(endpoint, state).check_versioned()


@pytest.mark.parametrize("suspend", [False, True], ids=["never-enabled", "suspended"])
def test_an_unversioned_bucket_is_refused_naming_its_status(endpoint, state, suspend):
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
    name = f"plain-{suspend}".lower()
    client.create_bucket(Bucket=name)
    if suspend:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    with pytest.raises(Unversioned) as refused:
        log_bucket(endpoint, state, name=name).check_versioned()
    assert str(refused.value) == (
        f"bucket {name} is not versioned ({'Suspended' if suspend else 'never enabled'}): "
        "enable versioning on it, since processed objects are deleted; no object was read or deleted"
    )


def test_a_missing_bucket_is_a_failed_call_not_an_unversioned_one(endpoint, state):
    with pytest.raises(CallFailed) as failed:
        log_bucket(endpoint, state, name="no-such-bucket").check_versioned()
    assert failed.value.code == "NoSuchBucket"


# --- listing and reading ------------------------------------------------------------------------


def test_objects_of_every_prefix_oldest_first_then_by_key(endpoint, s3, state, monkeypatch):
    stamps = iter(range(100))
    for key in ["b/2", "a/9", "b/1", "a/1", "c/1"]:
        s3.put_object(Bucket=NAME, Key=key, Body=f"{next(stamps)}".encode())
    listed = log_bucket(endpoint, state).objects(["a/", "b/"])
    keys = [o["Key"] for o in listed]
    assert sorted(keys) == ["a/1", "a/9", "b/1", "b/2"]  # c/ is not a prefix asked for
    assert keys == sorted(keys, key=lambda k: (next(o["LastModified"] for o in listed if o["Key"] == k), k))
    assert log_bucket(endpoint, state).objects(["nothing/"]) == []


def test_a_read_keeps_the_version_read_on_the_object(endpoint, s3, state):
    s3.put_object(Bucket=NAME, Key="k", Body=b"first")
    [obj] = log_bucket(endpoint, state).objects(["k"])
    assert "VersionId" not in obj
    assert log_bucket(endpoint, state).read(obj) == b"first"
    assert obj["VersionId"] == versions(s3, "k")[0]


@pytest.mark.parametrize(("limit", "fits"), [(4, False), (5, True), (6, True)])
def test_a_bounded_read_refuses_exactly_what_is_over_the_bound(endpoint, s3, state, limit, fits):
    s3.put_object(Bucket=NAME, Key="k", Body=b"12345")
    [obj] = log_bucket(endpoint, state).objects(["k"])
    if fits:
        assert log_bucket(endpoint, state).read(obj, limit) == b"12345"
    else:
        with pytest.raises(TooLarge, match="larger than 4 bytes"):
            log_bucket(endpoint, state).read(obj, limit)


def test_chunks_are_the_body_in_steps_of_the_size_asked(endpoint, s3, state):
    s3.put_object(Bucket=NAME, Key="k", Body=b"abcdefg")
    [obj] = log_bucket(endpoint, state).objects(["k"])
    assert list(log_bucket(endpoint, state).chunks(obj, size=3)) == [b"abc", b"def", b"g"]
    assert obj["VersionId"] == versions(s3, "k")[0]


# --- deleting -----------------------------------------------------------------------------------


def test_a_delete_removes_the_version_read_and_a_newer_one_survives(endpoint, s3, state):
    s3.put_object(Bucket=NAME, Key="k", Body=b"old")
    bucket = log_bucket(endpoint, state)
    [obj] = bucket.objects(["k"])
    bucket.read(obj)
    s3.put_object(Bucket=NAME, Key="k", Body=b"new")
    done = bucket.delete([obj])
    assert (done.deleted, done.failed) == (["k"], {})
    assert s3.get_object(Bucket=NAME, Key="k")["Body"].read() == b"new"
    assert len(versions(s3, "k")) == 1


def test_a_delete_of_an_object_never_read_leaves_a_delete_marker(endpoint, s3, state):
    s3.put_object(Bucket=NAME, Key="k", Body=b"x")
    bucket = log_bucket(endpoint, state)
    done = bucket.delete(bucket.objects(["k"]))
    assert done.deleted == ["k"]
    assert bucket.objects(["k"]) == []
    assert len(versions(s3, "k")) == 1  # the data is kept behind the marker, the bucket being versioned


def test_deletes_go_in_batches_and_every_batch_is_done(endpoint, s3, state, monkeypatch):
    monkeypatch.setattr(bucket_module, "DELETE_BATCH", 2)
    for n in range(5):
        s3.put_object(Bucket=NAME, Key=f"k{n}", Body=b"x")
    bucket = log_bucket(endpoint, state)
    sent: list[int] = []
    call = bucket._call
    monkeypatch.setattr(
        bucket,
        "_call",
        lambda c, **p: (
            sent.append(len(p["Delete"]["Objects"])) or call(c, **p)
            if c.operation == "DeleteObjects"
            else call(c, **p)
        ),
    )
    done = bucket.delete(bucket.objects(["k"]))
    assert sent == [2, 2, 1]
    assert sorted(done.deleted) == [f"k{n}" for n in range(5)] and done.failed == {}
    assert bucket.objects(["k"]) == []


class RefusingDeletes(Fetcher):
    """The real fetcher, except that DeleteObjects is denied (moto does not enforce bucket policies)."""

    def call(self, account, region, service, call, params):  # type: ignore[no-untyped-def]
        if call.operation == "DeleteObjects":
            raise AccessDenied(
                operation=call.operation, account=account.id, region=region, code="AccessDenied",
                role_arn=account.role_arn, action=call.iam_action, problem="denied",
            )  # fmt: skip
        return super().call(account, region, service, call, params)


def test_a_refused_delete_call_names_every_key_with_the_code_and_does_not_raise(
    endpoint, s3, state, monkeypatch, caplog
):
    monkeypatch.setattr(bucket_module, "DELETE_BATCH", 2)
    for n in range(3):
        s3.put_object(Bucket=NAME, Key=f"k{n}", Body=b"x")
    bucket = log_bucket(endpoint, state, fetcher=RefusingDeletes())
    with caplog.at_level(logging.WARNING, logger="aws_topology"):
        done = bucket.delete(bucket.objects(["k"]))
    assert [r.getMessage() for r in caplog.records] == [
        f"event=bucket.delete_failed bucket={NAME} keys={n} problem='role arn:aws:iam::{ACCOUNT}:role/r "
        f"needs s3:DeleteObject ({ACCOUNT}/us-east-1: AccessDenied)'"
        for n in (2, 1)
    ]
    assert done.deleted == []
    assert done.failed == {"k0": "AccessDenied", "k1": "AccessDenied", "k2": "AccessDenied"}
    assert len(bucket.objects(["k"])) == 3


def test_keys_s3_reports_as_not_deleted_are_named_with_their_code(endpoint, s3, state, monkeypatch, caplog):
    s3.put_object(Bucket=NAME, Key="a", Body=b"x")
    s3.put_object(Bucket=NAME, Key="b", Body=b"x")
    bucket = log_bucket(endpoint, state)
    call = bucket._call

    def partly(c, **params):  # S3 answers 200 with per-key errors, e.g. a key under object lock
        answer = call(c, **params)
        if c.operation != "DeleteObjects":
            return answer
        answer["Errors"] = [{"Key": "b", "Code": "AccessDenied"}]
        answer["Deleted"] = [d for d in answer["Deleted"] if d["Key"] != "b"]
        return answer

    monkeypatch.setattr(bucket, "_call", partly)
    with caplog.at_level(logging.WARNING, logger="aws_topology"):
        done = bucket.delete(bucket.objects([""]))
    assert done.deleted == ["a"]
    assert done.failed == {"b": "AccessDenied"}
    assert [r.getMessage() for r in caplog.records] == ["event=bucket.not_deleted key=b code=AccessDenied"]


def test_an_answer_without_any_deleted_key_deletes_nothing(endpoint, s3, state, monkeypatch):
    s3.put_object(Bucket=NAME, Key="a", Body=b"x")
    bucket = log_bucket(endpoint, state)
    call = bucket._call

    def none_deleted(c, **params):  # S3 leaves `Deleted` out when it deleted nothing
        answer = call(c, **params)
        if c.operation == "DeleteObjects":
            answer.pop("Deleted", None)
            answer["Errors"] = [{"Key": "a", "Code": "InternalError"}]
        return answer

    monkeypatch.setattr(bucket, "_call", none_deleted)
    done = bucket.delete(bucket.objects([""]))
    assert (done.deleted, done.failed) == ([], {"a": "InternalError"})


# --- corrupt objects ----------------------------------------------------------------------------


def test_a_corrupt_object_is_skipped_while_unchanged_and_read_again_once_rewritten(endpoint, state, caplog):
    bucket = log_bucket(endpoint, state)
    known = bucket.known_corrupt()
    assert known == {}
    obj = {"Key": "k", "ETag": '"1"'}
    assert bucket.corrupt_problem(obj, known) is None
    with caplog.at_level(logging.WARNING, logger="aws_topology"):
        bucket.record_corrupt(known, obj, "not gzip")
    assert [r.getMessage() for r in caplog.records] == [
        f"event=bucket.corrupt bucket={NAME} key=k problem='not gzip'"
    ]
    bucket.save_corrupt(known)
    known = log_bucket(endpoint, state).known_corrupt()
    assert (
        known["k"]["problem"] == "not gzip" and known["k"]["etag"] == '"1"' and "retry_at" not in known["k"]
    )
    assert bucket.corrupt_problem(obj, known) == "not gzip"
    assert bucket.corrupt_problem({"Key": "k", "ETag": '"2"'}, known) is None
    assert bucket.corrupt_problem({"Key": "other", "ETag": '"1"'}, known) is None


def test_an_unreadable_object_is_skipped_until_its_retry_time(endpoint, state, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(bucket_module.time, "time", lambda: now[0])
    bucket = log_bucket(endpoint, state)
    known: dict[str, dict] = {}
    obj = {"Key": "k", "ETag": '"1"'}
    bucket.record_corrupt(known, obj, "KMS denied", retry_after=3600)
    assert known["k"] == {"etag": '"1"', "problem": "KMS denied", "at": 1000.0, "retry_at": 4600.0}
    now[0] = 4599.0
    assert bucket.corrupt_problem(obj, known) == "KMS denied"
    now[0] = 4600.0
    assert bucket.corrupt_problem(obj, known) is None


def test_the_record_forgets_objects_no_longer_in_the_bucket_and_is_per_account_and_kind(endpoint, state):
    bucket = log_bucket(endpoint, state)
    known: dict[str, dict] = {}
    for key in ("gone", "here"):
        bucket.record_corrupt(known, {"Key": key, "ETag": "e"}, "bad")
    bucket.save_corrupt(known, present={"here", "new"})
    assert set(bucket.known_corrupt()) == {"here"}
    assert state.get(f"events.corrupt.{ACCOUNT}") == bucket.known_corrupt()
    bucket.save_corrupt(known)  # no listing given: everything is kept
    assert set(bucket.known_corrupt()) == {"gone", "here"}
    other = LogBucket(bucket.account, NAME, Fetcher(), state, "flowlogs")
    assert other.known_corrupt() == {}


def test_a_body_stream_is_what_open_returns(endpoint, s3, state):
    s3.put_object(Bucket=NAME, Key="k", Body=b"stream")
    [obj] = log_bucket(endpoint, state).objects(["k"])
    body = log_bucket(endpoint, state).open(obj)
    assert not isinstance(body, bytes)
    assert body.read() == b"stream"
