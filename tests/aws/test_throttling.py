"""Throttling: botocore's own retry handling decides what is a throttle; the engine backs off and finishes.

The Stubber cases answer throttles the way botocore surfaces them after its retries; the hook case makes
botocore itself see throttled HTTP answers (no network), retry them, and the fetcher count them.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config as ClientConfig
from botocore.stub import Stubber

from engine.aws.fetch import BACK_OFF, Fetcher, is_throttling
from engine.aws.sessions import Account, client_config
from engine.language.components import Labels
from engine.language.loader import load_mappings
from engine.scan.collect import Collector
from engine.scan.plan import plan
from tests.support import ACCOUNT, ROLE, FakeClock, make_config

REGION = "eu-west-1"
QUEUE = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/orders"


def account_with(config: ClientConfig) -> Account:
    session = boto3.Session(aws_access_key_id="stub", aws_secret_access_key="stub", region_name=REGION)
    return Account(id=ACCOUNT, role_arn=ROLE, session=session, config=config)


def run_unit(account: Account, key: str, fetcher: Fetcher):
    mappings = load_mappings()
    unit = next(u for u in plan(make_config().instances[0], mappings) if u.resource.key == key)
    return Collector(account, mappings, fetcher, Labels(account=ACCOUNT)).run(unit)[0]


@pytest.mark.parametrize(
    ("code", "status", "throttle"),
    [("Throttling", 400, True), ("SlowDown", 503, True), ("TooManyRequestsException", 429, True),
     ("SomethingNew", 429, True), ("AccessDenied", 403, False), ("InternalError", 500, False)],
)  # fmt: skip
def test_what_is_a_throttle_comes_from_botocore(code, status, throttle):
    response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    assert is_throttling(response) is throttle


def test_a_throttled_listing_backs_off_and_the_unit_completes_late():
    account, clock = account_with(client_config(1)), FakeClock()
    fetcher = Fetcher(patience=3, sleep=clock.sleep, monotonic=clock.monotonic)
    with Stubber(account.client("sqs", REGION)) as stub:
        for _ in range(2):
            stub.add_client_error(
                "list_queues", service_error_code="ThrottlingException", http_status_code=400
            )
        stub.add_response("list_queues", {"QueueUrls": [QUEUE]})
        stub.add_response(
            "get_queue_attributes", {"Attributes": {"QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders"}}
        )
        stub.add_response("list_queue_tags", {"Tags": {"team": "a"}})
        with Stubber(account.client("resourcegroupstaggingapi", REGION)) as tagging:
            tagging.add_client_error(
                "get_resources", service_error_code="AccessDeniedException", http_status_code=400
            )
            result = run_unit(account, "sqs.queue", fetcher)

    assert result.complete, result.error
    assert [c["data"]["Tags"] for c in result.components] == [{"team": "a"}]
    assert len(clock.slept) == 2  # one back-off per throttled round, each longer than the one before
    assert 0.75 * BACK_OFF <= clock.slept[0] <= BACK_OFF < clock.slept[1] <= 2 * BACK_OFF


def test_a_listing_still_throttled_after_every_round_is_throttled_not_empty():
    account, clock = account_with(client_config(1)), FakeClock()
    fetcher = Fetcher(patience=2, sleep=clock.sleep, monotonic=clock.monotonic)
    with Stubber(account.client("sqs", REGION)) as stub:
        for _ in range(3):
            stub.add_client_error(
                "list_queues", service_error_code="ThrottlingException", http_status_code=400
            )
        result = run_unit(account, "sqs.queue", fetcher)

    assert (result.status, result.components, len(clock.slept)) == ("throttled", [], 2)


def test_botocore_retries_throttled_answers_itself_and_the_fetcher_counts_them():
    account = account_with(ClientConfig(retries={"mode": "standard", "max_attempts": 3}))
    client = account.client("lambda", REGION)
    answers = [429, 429, 429, 429, 200]  # three attempts inside botocore, one more round of the fetcher
    sent: list[int] = []

    def answer(request, **_):  # type: ignore[no-untyped-def]
        status = answers[len(sent)]
        sent.append(status)
        body = {"Functions": []} if status == 200 else {"message": "Rate exceeded"}
        headers = {} if status == 200 else {"x-amzn-ErrorType": "TooManyRequestsException"}
        return AWSResponse(request.url, status, headers, _Raw(json.dumps(body).encode()))

    client.meta.events.register("before-send", answer)
    clock = FakeClock()
    fetcher = Fetcher(patience=1, sleep=clock.sleep, monotonic=clock.monotonic)
    mappings = load_mappings()
    function = next(r for r in mappings.resources if r.key == "lambda.function")
    assert fetcher.call(account, REGION, "lambda", function.listing.call, {}) == {"Functions": []}
    assert sent == answers
    assert fetcher.per_account[ACCOUNT]["throttles"] == 4 and len(clock.slept) == 1


class _Raw:
    """The raw body botocore reads from an HTTP answer."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: object):  # type: ignore[no-untyped-def]
        yield self.data
