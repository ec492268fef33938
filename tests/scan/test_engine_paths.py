"""Engine paths the other suites do not reach: pacing, `when`, credential refresh mid-scan, several accounts,
account-wide items of regions that are not configured, and the `global` pseudo-region end to end."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from engine.aws import fetch
from engine.aws.fetch import TokenBucket
from engine.core.config import Config, Instance
from engine.core.phase import Limits
from engine.language.loader import Rate, load_mappings
from engine.scan.full_scan import scan, sizes
from tests.scan.test_collect import REGION, account_in, run
from tests.support import ACCOUNT, ROLE, FakeClock, ListSink, make_config


def test_a_declared_rate_paces_calls_after_the_burst(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(fetch.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(fetch.time, "sleep", clock.sleep)
    bucket = TokenBucket(Rate(per_second=2, burst=3))

    for _ in range(7):
        bucket.take()

    assert clock.slept == [0.5, 0.5, 0.5, 0.5]  # 3 at once, then one every 1/2 s
    assert clock.now == pytest.approx(2.0)


WHEN = """
version: 1
service: sqs
resources:
  queue:
    type: test.queue
    layer: Messaging
    list: {operation: ListQueues, items: "QueueUrls[].{QueueUrl: @, tagged: contains(@, 'tagged')}"}
    details:
      - {operation: ListQueueTags, args: {QueueUrl: QueueUrl}, result: Tags, into: Tags, when: tagged}
    id: QueueUrl
"""


def test_a_detail_with_when_is_called_only_for_the_items_it_selects(tmp_path):
    account = account_in(REGION)
    base = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}"
    with Stubber(account.client("sqs", REGION)) as stub:
        stub.add_response("list_queues", {"QueueUrls": [f"{base}/plain", f"{base}/tagged"]})
        stub.add_response("list_queue_tags", {"Tags": {"team": "a"}}, {"QueueUrl": f"{base}/tagged"})
        [result] = run(tmp_path, WHEN, account)
        stub.assert_no_pending_responses()

    tags = {c["externalId"].rsplit("/", 1)[-1]: c["data"]["Tags"] for c in result.components}
    assert tags == {"plain": {}, "tagged": {"team": "a"}}


# --- live moto -------------------------------------------------------------------------------------

OTHER_ACCOUNT = "111111111111"


def client(service: str, endpoint: str, region: str = REGION, account: str = ACCOUNT) -> object:
    from demo.seed import client as demo_client

    return demo_client(service, region, endpoint, account)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from demo.server import reset, start

    server, url = start(0)
    reset(url)
    client("sqs", url).create_queue(QueueName="main-eu")
    client("sqs", url, account=OTHER_ACCOUNT).create_queue(QueueName="other-eu")
    client("s3", url).create_bucket(
        Bucket="kept-eu", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    client("s3", url, region="us-east-1").create_bucket(Bucket="dropped-us")
    client("route53", url, region="us-east-1").create_hosted_zone(Name="demo.example.", CallerReference="r1")
    yield url
    server.stop()


@pytest.fixture
def live_env(endpoint, monkeypatch) -> str:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    return endpoint


def by_type(sink: ListSink, name: str) -> set[str]:
    return {i for i, c in sink.components().items() if c["type"]["name"] == name}


pytestmark_live = pytest.mark.live


@pytestmark_live
def test_each_account_gets_its_own_snapshot_with_only_its_resources(live_env):
    other_role = f"arn:aws:iam::{OTHER_ACCOUNT}:role/StackStateAwsIntegrationRole"
    config = Config(
        external_id="ext-id",
        instances=(
            Instance(role_arn=ROLE, regions=(REGION,), apis_to_run=("sqs",)),
            Instance(role_arn=other_role, regions=(REGION,), apis_to_run=("sqs",)),
        ),
    )
    sink = ListSink()
    results, _ = scan(config, load_mappings(), sink, limits=Limits(workers=2), endpoint_url=live_env)

    assert [(r.account, r.complete) for r in results] == [(ACCOUNT, True), (OTHER_ACCOUNT, True)]
    snapshots = {
        t["instance"]["url"]: {c["externalId"] for c in t["components"]}
        for _, payload in sink.payloads
        for t in payload["topologies"]
    }
    assert snapshots == {
        ACCOUNT: {f"arn:aws:sqs:{REGION}:{ACCOUNT}:main-eu"},
        OTHER_ACCOUNT: {f"arn:aws:sqs:{REGION}:{OTHER_ACCOUNT}:other-eu"},
    }


def test_each_account_side_by_side_has_its_workers_and_one_worker_keeps_one_thread():
    assert sizes(Limits(workers=8, accounts=4), 50) == (4, 32)
    assert sizes(Limits(workers=8, accounts=4), 2) == (2, 16)
    assert sizes(Limits(workers=8, accounts=40), 50) == (40, 256)  # the thread cap
    assert sizes(Limits(workers=8, accounts=4, max_threads=10), 50) == (4, 10)
    assert sizes(Limits(workers=1, accounts=4), 50) == (1, 1)


@pytestmark_live
def test_buckets_of_regions_that_are_not_configured_are_dropped(live_env):
    sink = ListSink()
    [result], _ = scan(
        make_config(regions=(REGION,), apis_to_run=("s3",)), load_mappings(), sink, limits=Limits(workers=1)
    )

    assert result.complete
    assert by_type(sink, "aws.s3.bucket") == {"arn:aws:s3:::kept-eu"}
    assert sink.components()["arn:aws:s3:::kept-eu"]["data"]["Location"]["AwsRegion"] == REGION


@pytestmark_live
def test_the_global_pseudo_region_scans_global_types_once_located_in_us_east_1(live_env):
    sink = ListSink()
    config = make_config(regions=("global", REGION), apis_to_run=("route53", "sqs"))
    [result], _ = scan(config, load_mappings(), sink, limits=Limits(workers=1))

    assert result.complete
    assert {u.unit.label for u in result.units} == {
        f"{ACCOUNT}/global/route53.hostedzone",
        f"{ACCOUNT}/{REGION}/sqs.queue",
    }
    [zone] = [c for c in sink.components().values() if c["type"]["name"] == "aws.route53.hostedzone"]
    assert zone["data"]["Name"] == "demo.example"
    assert zone["data"]["Location"]["AwsRegion"] == "us-east-1"


@pytestmark_live
def test_credentials_that_expire_mid_scan_are_refreshed_and_the_scan_completes(live_env):
    assumed: list[str] = []

    def short_lived(parsed: dict, **_: object) -> None:
        """Every AssumeRole answer expires in 2 minutes: inside botocore's refresh window."""
        assumed.append(parsed["Credentials"]["AccessKeyId"])
        parsed["Credentials"]["Expiration"] = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)

    base = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    base.events.register("after-call.sts.AssumeRole", short_lived)
    sink = ListSink()
    [result], _ = scan(
        make_config(regions=(REGION,), apis_to_run=("sqs", "s3")),
        load_mappings(),
        sink,
        limits=Limits(workers=1),
        base=base,
    )

    assert result.complete
    assert len(assumed) >= 3  # the first AssumeRole, then a refresh before each later call
    assert f"arn:aws:sqs:{REGION}:{ACCOUNT}:main-eu" in sink.components()
