"""The log bucket: the versioned S3 bucket that EventBridge (via Firehose) and VPC flow logs write to.

Event deltas and flow logs read it the same way: refuse an unversioned bucket (processed objects are
deleted), list a prefix, read objects, remember corrupt ones so they are not read again while unchanged,
and delete objects only once what they produced was delivered. Every request goes through the run's
`Fetcher`, so it is counted, paced and its errors classified like any other call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from botocore import xform_name

from engine.aws.fetch import Fetcher
from engine.aws.sessions import GLOBAL_REGION, Account
from engine.core import botocore_data
from engine.core.errors import CallFailed
from engine.core.state import State
from engine.language.loader import Call

log = logging.getLogger("aws_topology")

DELETE_BATCH = 1000  # DeleteObjects maximum


def _s3(operation: str, action: str, paginate: bool = False) -> Call:
    return Call(operation, xform_name(operation), action, paginate=paginate)


VERSIONING = _s3("GetBucketVersioning", "s3:GetBucketVersioning")
LIST = _s3("ListObjectsV2", "s3:ListBucket", paginate=True)
GET = _s3("GetObject", "s3:GetObject")
DELETE = _s3("DeleteObjects", "s3:DeleteObject")
# S3 is also a mapped service: its clients carry these operations too (one client per region, not two)
botocore_data.client_loader().want("s3", [c.operation for c in (VERSIONING, LIST, GET, DELETE)])


@dataclass
class Deletion:
    """What `LogBucket.delete` did: keys deleted, and keys left with the reason (an S3 error code)."""

    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class TooLarge(Exception):
    """An object larger than the reader's bound: refused unread, like a corrupt object."""


class Unversioned(Exception):
    """The bucket does not keep versions, so deleting a processed object would lose it for good."""


class LogBucket:
    """One account's log bucket, read through `fetcher` with the account's credentials."""

    def __init__(self, account: Account, name: str, fetcher: Fetcher, state: State, kind: str) -> None:
        self.account, self.name, self.fetcher, self.state = account, name, fetcher, state
        self._corrupt_key = f"{kind}.corrupt.{account.id}"

    def _call(self, call: Call, **params: Any) -> dict:
        return self.fetcher.call(self.account, GLOBAL_REGION, "s3", call, {"Bucket": self.name, **params})

    def check_versioned(self) -> None:
        """Raise `Unversioned` unless versioning is Enabled (a missing or denied bucket: `CallFailed`)."""
        status = self._call(VERSIONING).get("Status")
        if status != "Enabled":
            raise Unversioned(
                f"bucket {self.name} is not versioned ({status or 'never enabled'}): enable versioning on "
                "it, since processed objects are deleted; no object was read or deleted"
            )

    def objects(self, prefixes: list[str]) -> list[dict]:
        """Every object under the prefixes (all pages), oldest first."""
        found = [o for p in prefixes for o in self._call(LIST, Prefix=p).get("Contents", [])]
        return sorted(found, key=lambda o: (o["LastModified"], o["Key"]))

    def open(self, obj: dict) -> IO[bytes]:
        """The listed object's body, a stream; the version read is kept on `obj` (`VersionId`), so that
        `delete` removes exactly what was read and never a newer version written under the same key."""
        answer = self._call(GET, Key=obj["Key"])
        if answer.get("VersionId"):
            obj["VersionId"] = answer["VersionId"]
        return answer["Body"]

    def read(self, obj: dict, limit: int | None = None) -> bytes:
        """The whole body; `TooLarge` when it holds more than `limit` bytes (nothing more is read)."""
        body = self.open(obj)
        if limit is None:
            return body.read()
        data = body.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"larger than {limit} bytes")
        return data

    def chunks(self, obj: dict, size: int = 1 << 20) -> Iterator[bytes]:
        body = self.open(obj)
        while chunk := body.read(size):
            yield chunk

    def delete(self, objects: list[dict]) -> Deletion:
        """Delete the objects read: the version read where known (else a delete marker, the bucket being
        versioned). Never raises: keys S3 did not delete, or a refused call, are in `Deletion.failed`."""
        done = Deletion()
        for start in range(0, len(objects), DELETE_BATCH):
            chunk = objects[start : start + DELETE_BATCH]
            entries = [{"Key": o["Key"], **({"VersionId": o["VersionId"]} if o.get("VersionId") else {})}
                       for o in chunk]  # fmt: skip
            try:
                answer = self._call(DELETE, Delete={"Objects": entries, "Quiet": False})
            except CallFailed as exc:
                done.failed.update({o["Key"]: str(getattr(exc, "code", None) or exc) for o in chunk})
                log.warning("event=bucket.delete_failed bucket=%s keys=%d problem=%r", self.name, len(chunk),
                            str(exc))  # fmt: skip
                continue
            done.deleted += [d["Key"] for d in answer.get("Deleted", [])]
            for error in answer.get("Errors", []):
                done.failed[str(error.get("Key"))] = str(error.get("Code"))
                log.warning("event=bucket.not_deleted key=%s code=%s", error.get("Key"), error.get("Code"))
        return done

    # corrupt objects: recorded with their ETag, skipped while unchanged

    def known_corrupt(self) -> dict[str, dict]:
        return self.state.get(self._corrupt_key, {})

    def corrupt_problem(self, obj: dict, known: dict[str, dict]) -> str | None:
        """The recorded problem of an unchanged object recorded as corrupt (and not due for a retry), else
        None."""
        entry = known.get(obj["Key"])
        if not entry or entry.get("etag") != obj.get("ETag"):
            return None
        retry_at = entry.get("retry_at")
        return None if isinstance(retry_at, int | float) and retry_at <= time.time() else entry["problem"]

    def record_corrupt(
        self, known: dict[str, dict], obj: dict, problem: str, retry_after: float | None = None
    ) -> None:
        """Record `obj` as corrupt while unchanged; `retry_after` seconds: read it again after that (an
        object that could not be read, rather than one whose content is bad)."""
        now = time.time()
        known[obj["Key"]] = {"etag": obj.get("ETag"), "problem": problem, "at": now}
        if retry_after is not None:
            known[obj["Key"]]["retry_at"] = now + retry_after
        log.warning("event=bucket.corrupt bucket=%s key=%s problem=%r", self.name, obj["Key"], problem)

    def save_corrupt(self, known: dict[str, dict], present: set[str] | None = None) -> None:
        """Store the record; entries of objects no longer in the bucket (`present`) are forgotten."""
        if present is not None:
            known = {k: v for k, v in known.items() if k in present}
        self.state.set(self._corrupt_key, known)
