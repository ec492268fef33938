"""Fetch: run one declared call against AWS and return its raw (merged) response.

In: an `Account`, a region, a service and a `Call` with its parameters.
Out: the response dict without `ResponseMetadata`, all pages merged by botocore's paginator.
Errors become typed: `AccessDenied`, `Throttled` or `CallFailed`, with the code AWS gave.
Calls are paced by a token bucket per (account, region, service, operation) when the mapping
declares a rate.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from engine.auth import Account, not_aws
from engine.errors import AccessDenied, CallFailed, CredentialsRejected, Interrupted, Throttled
from engine.functions import search
from engine.mappings import Call, Rate

DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"})
# 403s that are about the credentials, not about a permission of the role.
BAD_CREDENTIALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "AuthFailure",
        "RequestExpired",
        "InvalidToken",
    }
)
THROTTLED = frozenset(
    [
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    ]
)


class TokenBucket:
    """Blocks until a request may be made under `per_second` sustained, `burst` at once."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.tokens = float(rate.burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate.burst, self.tokens + (now - self.stamp) * self.rate.per_second)
            self.stamp = now
            wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate.per_second
            self.tokens -= 1
        if wait:
            time.sleep(wait)


class Fetcher:
    """Makes the calls of one run; counts every request and paces declared rates.

    Pacing hooks botocore's `before-call` event, so every page of a paginated call takes a token.
    """

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.calls = 0
        self._stop = stop or threading.Event()
        self._rates: dict[tuple[str, str], Rate] = {}
        self._buckets: dict[tuple[str, str, str, str], TokenBucket] = {}
        self._hooked: set[int] = set()
        self._lock = threading.Lock()

    def call(self, account: Account, region: str, service: str, call: Call, params: dict[str, Any]) -> dict:
        client = self._client(account, region, service, call)
        try:
            if call.paginate:
                result = client.get_paginator(call.method).paginate(**params).build_full_result()
            elif call.next is not None:
                result = _follow(getattr(client, call.method), params, call)
            else:
                result = getattr(client, call.method)(**params)
        except ClientError as exc:
            raise classify(exc, account, region, call) from None
        except (BotoCoreError, ResponseParserError) as exc:
            raise CallFailed(
                operation=call.operation, account=account.id, region=region,
                code=type(exc).__name__, problem=not_aws(exc),
            ) from None  # fmt: skip
        result.pop("ResponseMetadata", None)
        return result

    def _client(self, account: Account, region: str, service: str, call: Call) -> Any:
        client = account.client(service, region)
        with self._lock:
            if call.rate:
                self._rates[(service, call.operation)] = call.rate
            if id(client) not in self._hooked:
                self._hooked.add(id(client))

                def before_call(model: Any, **_: Any) -> None:
                    self._take(account.id, region, service, model.name)

                client.meta.events.register("before-call", before_call)
        return client

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _take(self, account: str, region: str, service: str, operation: str) -> None:
        if self._stop.is_set():
            raise Interrupted(operation=operation)
        with self._lock:
            self.calls += 1
            rate = self._rates.get((service, operation))
            bucket = None
            if rate:
                bucket = self._buckets.setdefault((account, region, service, operation), TokenBucket(rate))
        if bucket:
            bucket.take()


MAX_PAGES = 10_000


def _follow(method: Any, params: dict[str, Any], call: Call) -> dict:
    """Manual pagination (`next`): pages merged, top-level lists concatenated, other keys from the last."""
    assert call.next is not None
    merged: dict[str, Any] = {}
    for _ in range(MAX_PAGES):
        page = method(**params)
        page.pop("ResponseMetadata", None)
        for key, value in page.items():
            if isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = merged[key] + value
            else:
                merged[key] = value
        token = search(call.next.token, page)
        if token in (None, False, "", [], {}) or token == params.get(call.next.param):
            return merged
        params = {**params, call.next.param: token}
    raise CallFailed(
        operation=call.operation, account="-", region="-", code="TooManyPages",
        problem=f"more than {MAX_PAGES} pages",
    )  # fmt: skip


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def classify(exc: ClientError, account: Account, region: str, call: Call) -> CallFailed:
    code = error_code(exc)
    fields = {"operation": call.operation, "account": account.id, "region": region, "code": code}
    if code in BAD_CREDENTIALS:
        return CredentialsRejected(**fields)
    if code in DENIED or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
        return AccessDenied(role_arn=account.role_arn, action=call.iam_action, **fields)
    if code in THROTTLED:
        return Throttled(**fields)
    message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
    return CallFailed(problem=message, **fields)
