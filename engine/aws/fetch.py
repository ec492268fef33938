"""Fetch: run one declared call against AWS and return its raw (merged) response.

In: an `Account`, a region, a service and a `Call` with its parameters.
Out: the response dict without `ResponseMetadata`, all pages merged by botocore's paginator.
Errors become typed: `AccessDenied`, `Throttled` or `CallFailed`, with the code AWS gave; what counts as
throttling is botocore's own retry logic (its throttle codes, the model's retryable-throttling errors, 429).
Calls are paced by a token bucket per (account, region, service, operation) when the mapping
declares a rate. botocore retries each request itself (adaptive mode); a call still throttled after that
is retried by the fetcher `patience` more times, after a back-off shared by every call to the same
(account, region, service), so a throttled unit finishes late instead of failing.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from botocore.retries.standard import RetryContext, ThrottlingErrorDetector

from engine.aws.sessions import Account, not_aws
from engine.core.errors import AccessDenied, CallFailed, CredentialsRejected, Interrupted, Throttled
from engine.language.dialect import search
from engine.language.loader import Call, Rate

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
_THROTTLING = ThrottlingErrorDetector(retry_event_adapter=None)
BACK_OFF = 2.0  # seconds before the first extra round; doubled each round, with jitter
MAX_BACK_OFF = 30.0


def is_throttling(response: dict, operation_model: Any = None) -> bool:
    """Whether a parsed error response is throttling, as botocore's retry handler decides it."""
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    context = RetryContext(
        attempt_number=1,
        operation_model=operation_model,
        parsed_response=response,
        http_response=SimpleNamespace(status_code=status) if status else None,
    )
    return bool(_THROTTLING.is_throttling_error_from_context(context))


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
    """Makes the calls of one run; counts every request, throttle and error per account; paces declared rates.

    Pacing hooks botocore's `before-call` event, so every page of a paginated call takes a token; throttles
    that botocore retried are counted through its `needs-retry` event.
    """

    def __init__(
        self,
        stop: threading.Event | None = None,
        *,
        patience: int = 0,
        sleep: Callable[[float], Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.calls = 0
        self.per_account: dict[str, Counter[str]] = {}  # account -> calls, throttles, errors
        self.patience = patience
        self._stop = stop or threading.Event()
        self._sleep = sleep or self._stop.wait
        self._monotonic = monotonic
        self._rates: dict[tuple[str, str], Rate] = {}
        self._buckets: dict[tuple[str, str, str, str], TokenBucket] = {}
        self._cool: dict[tuple[str, str, str], float] = {}  # (account, region, service) -> calm again at
        self._hooked: weakref.WeakSet[Any] = weakref.WeakSet()  # clients, not ids: an id is reused
        self._lock = threading.Lock()

    def call(self, account: Account, region: str, service: str, call: Call, params: dict[str, Any]) -> dict:
        client = self._client(account, region, service, call)
        where = (account.id, region, service)
        for round_ in range(self.patience + 1):
            self._cool_down(where)
            try:
                if call.paginate:
                    result = client.get_paginator(call.method).paginate(**params).build_full_result()
                elif call.next is not None:
                    result = _follow(getattr(client, call.method), params, call)
                else:
                    result = getattr(client, call.method)(**params)
            except ClientError as exc:
                error = classify(exc, account, region, call, client.meta.service_model)
                if isinstance(error, Throttled) and round_ < self.patience and not self.stopped:
                    self._back_off(where, round_)
                    continue
                self._count(account.id, "errors")
                raise error from None
            except (BotoCoreError, ResponseParserError) as exc:
                self._count(account.id, "errors")
                raise CallFailed(
                    operation=call.operation, account=account.id, region=region,
                    code=type(exc).__name__, problem=not_aws(exc),
                ) from None  # fmt: skip
            result.pop("ResponseMetadata", None)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _cool_down(self, where: tuple[str, str, str]) -> None:
        """Wait while a throttle of this (account, region, service) is being backed off from."""
        while (wait := self._cool.get(where, 0.0) - self._monotonic()) > 0 and not self.stopped:
            self._sleep(wait)

    def _back_off(self, where: tuple[str, str, str], round_: int) -> None:
        """Every call to this (account, region, service) waits: one back-off shared by all threads."""
        delay = min(MAX_BACK_OFF, BACK_OFF * 2**round_) * random.uniform(0.75, 1.0)
        with self._lock:
            self._cool[where] = max(self._cool.get(where, 0.0), self._monotonic() + delay)

    def _count(self, account: str, what: str) -> None:
        with self._lock:
            self.per_account.setdefault(account, Counter())[what] += 1

    @property
    def throttles(self) -> int:
        return sum(c["throttles"] for c in self.per_account.values())

    def _client(self, account: Account, region: str, service: str, call: Call) -> Any:
        client = account.client(service, region, call.operation)
        with self._lock:
            if call.rate:
                self._rates[(service, call.operation)] = call.rate
            if client not in self._hooked:
                self._hooked.add(client)

                def before_call(model: Any, **_: Any) -> None:
                    self._take(account.id, region, service, model.name)

                def needs_retry(response: Any = None, operation: Any = None, **_: Any) -> None:
                    parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else None
                    if isinstance(parsed, dict) and "Error" in parsed and is_throttling(parsed, operation):
                        self._count(account.id, "throttles")

                client.meta.events.register("before-call", before_call)
                client.meta.events.register("needs-retry", needs_retry)
        return client

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _take(self, account: str, region: str, service: str, operation: str) -> None:
        if self._stop.is_set():
            raise Interrupted(operation=operation)
        with self._lock:
            self.calls += 1
            self.per_account.setdefault(account, Counter())["calls"] += 1
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


def classify(
    exc: ClientError, account: Account, region: str, call: Call, service_model: Any = None
) -> CallFailed:
    code = error_code(exc)
    fields = {"operation": call.operation, "account": account.id, "region": region, "code": code}
    if code in BAD_CREDENTIALS:
        return CredentialsRejected(**fields)
    if code in DENIED or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
        return AccessDenied(role_arn=account.role_arn, action=call.iam_action, **fields)
    operation = None
    if service_model is not None and call.operation in service_model.operation_names:
        operation = service_model.operation_model(call.operation)
    if is_throttling(exc.response, operation):
        return Throttled(**fields)
    message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
    return CallFailed(problem=message, **fields)
