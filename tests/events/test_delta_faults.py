"""Event-delta faults moto cannot produce, through `apply_events` with botocore's Stubber: a denied bucket
listing falls back to CloudTrail; a refused or partly refused DeleteObjects makes the run incomplete."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from engine.aws.fetch import Fetcher
from engine.core.config import Config, Instance
from engine.core.state import State
from engine.events.delta import AccountDelta, apply_events
from engine.language.loader import load_mappings
from tests.events.test_events import BUCKET, PREFIX, REGION, _stubbed_account, firehose, state_change
from tests.support import ACCOUNT, ListSink

KEY = f"{PREFIX}2026/12/01/12/object-1"
WRITTEN = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


@contextmanager
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stubber, Stubber, callable]]:
    account = _stubbed_account(monkeypatch)
    instance = Instance(role_arn=f"arn:aws:iam::{ACCOUNT}:role/R", regions=(REGION,))
    state = State(":memory:")

    def run() -> AccountDelta:
        config = Config(external_id="x1", instances=(instance,))
        return apply_events(config, instance, load_mappings(), ListSink(), state, Fetcher())

    with (
        Stubber(account.client("s3", "us-east-1")) as s3,
        Stubber(account.client("cloudtrail", REGION)) as trail,
    ):
        yield s3, trail, run
        s3.assert_no_pending_responses()
        trail.assert_no_pending_responses()


def one_object(s3: Stubber) -> None:
    """A versioned bucket holding one object of an event no rule matches (no refresh call)."""
    body = firehose({**state_change("i-1", "running"), "detail-type": "Unknown"})
    s3.add_response("get_bucket_versioning", {"Status": "Enabled"})
    s3.add_response("list_objects_v2", {"Contents": [{"Key": KEY, "LastModified": WRITTEN, "ETag": '"e"'}]})
    s3.add_response("get_object", {"Body": StreamingBody(io.BytesIO(body), len(body)), "VersionId": "v1"})


def test_a_bucket_whose_listing_is_denied_falls_back_to_cloudtrail(monkeypatch):
    with stubbed(monkeypatch) as (s3, trail, run):
        s3.add_response("get_bucket_versioning", {"Status": "Enabled"})
        s3.add_client_error("list_objects_v2", "AccessDenied", http_status_code=403)
        trail.add_response("lookup_events", {"Events": []})
        result = run()

    assert result.source.startswith(f"cloudtrail (bucket {BUCKET}: ")
    assert result.error is None and result.complete


@pytest.mark.parametrize("status", [403, 500])
def test_a_refused_delete_objects_call_makes_the_run_incomplete_and_names_the_key(monkeypatch, status):
    code = "AccessDenied" if status == 403 else "InternalError"
    with stubbed(monkeypatch) as (s3, _, run):
        one_object(s3)
        expected = {
            "Bucket": BUCKET,
            "Delete": {"Objects": [{"Key": KEY, "VersionId": "v1"}], "Quiet": False},
        }
        s3.add_client_error("delete_objects", code, http_status_code=status, expected_params=expected)
        result = run()

    assert result.payloads == 1 and result.deleted == []
    assert not result.complete and result.not_deleted == {KEY: code}
    assert result.counts()["not_deleted"] == f"{KEY}({code})"


def test_a_key_s3_did_not_delete_makes_the_run_incomplete(monkeypatch):
    with stubbed(monkeypatch) as (s3, _, run):
        one_object(s3)
        s3.add_response(
            "delete_objects", {"Errors": [{"Key": KEY, "VersionId": "v1", "Code": "AccessDenied"}]}
        )
        result = run()

    assert not result.complete and result.not_deleted == {KEY: "AccessDenied"}
