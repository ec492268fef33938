"""Trace objects in the log bucket: what an OpenTelemetry Collector's S3 exporter writes there.

The second way in, beside `traces serve`: a Collector (say, in each account) with the `awss3exporter` writes
OTLP files (`.json` or `.binpb`, maybe `.gz`) under `AWSLogs/{account}/traces/` of the account's log bucket.
The traces phase reads them like event objects: the bucket must keep versions, an object is read once
(oldest first, at most `MAX_OBJECTS` a run), an unreadable or undecodable one is recorded as corrupt and left
in the bucket while it is unchanged, and an object is deleted (the version read) only after the relations of
its calls were delivered. A bucket that does not exist means no objects, not an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import boto3

from engine.aws.fetch import Fetcher
from engine.aws.log_bucket import LogBucket, TooLarge, Unversioned
from engine.aws.sessions import assume
from engine.core.config import Config, Instance
from engine.core.errors import BadInput, CallFailed, TopologyError
from engine.core.state import State
from engine.traces.otlp import decode_object

log = logging.getLogger("aws_topology")

PREFIX = "AWSLogs/{account}/traces/"
MAX_OBJECTS = 500  # objects read per account and run; the rest wait for the next
MAX_OBJECT_BYTES = 50 * 2**20  # as the receiver's body limit


@dataclass
class TraceObjects:
    """One account's trace objects of this run: the calls read, and the objects to delete once they were
    delivered."""

    bucket: LogBucket | None = None
    read: list[dict] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    spans: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    corrupt: int = 0
    absent: bool = False
    error: str | None = None
    bad_input: bool = False


def read_objects(
    config: Config, instance: Instance, state: State, fetcher: Fetcher, *, workers: int = 8,
    endpoint_url: str | None = None, base: boto3.Session | None = None,
) -> TraceObjects:  # fmt: skip
    """The account's trace objects not read yet, decoded."""
    found = TraceObjects()
    try:
        account = assume(config, instance, base=base, endpoint_url=endpoint_url, workers=workers)
        bucket = LogBucket(account, instance.log_bucket_name, fetcher, state, "traces")
        bucket.check_versioned()
        objects = bucket.objects([PREFIX.format(account=instance.account_id)])
    except Unversioned as exc:
        found.error, found.bad_input = str(exc), True
        return found
    except CallFailed as exc:
        if getattr(exc, "code", None) == "NoSuchBucket":
            found.absent = True
        else:
            found.error = f"cannot read trace objects from bucket {instance.log_bucket_name}: {exc}"
        return found
    except TopologyError as exc:  # credentials, an unreachable endpoint
        found.error, found.bad_input = str(exc), isinstance(exc, BadInput)
        return found
    found.bucket = bucket
    corrupt = bucket.known_corrupt()
    for obj in objects:
        if bucket.corrupt_problem(obj, corrupt) is not None:
            found.corrupt += 1
            continue
        if len(found.read) >= MAX_OBJECTS:
            break
        _read_one(bucket, obj, corrupt, found)
    bucket.save_corrupt(corrupt, {o["Key"] for o in objects})
    return found


def _read_one(bucket: LogBucket, obj: dict, corrupt: dict, found: TraceObjects) -> None:
    try:
        decoded = decode_object(obj["Key"], bucket.read(obj, limit=MAX_OBJECT_BYTES))
    except (TooLarge, BadInput) as exc:
        bucket.record_corrupt(corrupt, obj, str(exc))
    except CallFailed as exc:  # could not be read now: again later
        bucket.record_corrupt(corrupt, obj, f"cannot read it: {exc}", retry_after=3600)
    else:
        found.read.append(obj)
        found.calls += decoded.calls
        found.spans += decoded.spans
        found.dropped.update(decoded.dropped)
        return
    found.corrupt += 1
