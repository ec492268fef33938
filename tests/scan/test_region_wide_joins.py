"""A region-wide join serves any listing, not only tags: each ElastiCache cluster gets its subnet group's VPC
and subnets from one DescribeCacheSubnetGroups per region instead of one call per cluster; each S3 bucket its
region from one ListBuckets per configured region (live moto)."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

from demo.seed import client
from engine.aws.fetch import Fetcher
from engine.core.phase import Limits
from engine.language.loader import Mappings, load_mappings
from engine.scan.full_scan import scan
from engine.scan.plan import per_item
from tests.support import ListSink, live_aws, make_config, moto_server

pytestmark = pytest.mark.live

REGION = "eu-west-1"
CLUSTERS = """
version: 1
service: elasticache
resources:
  cluster:
    type: test.cache-cluster
    list: {operation: DescribeCacheClusters, items: "CacheClusters[]"}
    joins:
      - call: {operation: DescribeCacheSubnetGroups, items: "CacheSubnetGroups[]"}
        key: CacheSubnetGroupName
        match: CacheSubnetGroupName
        result: "[0]"
        into: _subnet_group
    id: CacheClusterId
    data: "merge(@, {VpcId: _subnet_group.VpcId})"
    relations:
      - {type: uses-service, target: "_subnet_group.Subnets[].SubnetIdentifier"}
"""
# The same subnet groups read per cluster: not as the join's fallback, which needs another IAM action.
PER_ITEM = CLUSTERS.replace(
    """    joins:
      - call: {operation: DescribeCacheSubnetGroups, items: "CacheSubnetGroups[]"}
        key: CacheSubnetGroupName
        match: CacheSubnetGroupName
        result: "[0]"
        into: _subnet_group
""",
    """    details:
      - operation: DescribeCacheSubnetGroups
        args: {CacheSubnetGroupName: CacheSubnetGroupName}
        when: CacheSubnetGroupName
        result: "CacheSubnetGroups[0]"
        into: _subnet_group
""",
)


def scanned(endpoint: str, mappings: Mappings) -> tuple[ListSink, int]:
    sink = ListSink()
    with live_aws(endpoint):
        [result], calls = scan(
            make_config(regions=(REGION,)), mappings, sink, limits=Limits(workers=1), endpoint_url=endpoint
        )
    assert result.complete, [u.error for u in result.units if not u.complete]
    return sink, calls


def test_a_region_wide_join_of_a_non_tag_listing_replaces_the_call_per_item(tmp_path: Path) -> None:
    (tmp_path / "bulk").mkdir()
    (tmp_path / "bulk" / "elasticache.yaml").write_text(textwrap.dedent(CLUSTERS))
    (tmp_path / "per-item").mkdir()
    (tmp_path / "per-item" / "elasticache.yaml").write_text(textwrap.dedent(PER_ITEM))
    with moto_server() as endpoint:
        ec2, cache = client("ec2", REGION, endpoint), client("elasticache", REGION, endpoint)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = {}
        for i, group in enumerate(("a", "b")):
            subnets[group] = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"]
            cache.create_cache_subnet_group(
                CacheSubnetGroupName=group, CacheSubnetGroupDescription=group, SubnetIds=[subnets[group]]
            )
        for name, group in (("c1", "a"), ("c2", "a"), ("c3", "b")):
            cache.create_cache_cluster(
                CacheClusterId=name, Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1,
                CacheSubnetGroupName=group,
            )  # fmt: skip
        bulk, bulk_calls = scanned(endpoint, load_mappings(tmp_path / "bulk"))
        naive, naive_calls = scanned(endpoint, load_mappings(tmp_path / "per-item"))

    assert {k: c["data"]["VpcId"] for k, c in bulk.components().items()} == {"c1": vpc, "c2": vpc, "c3": vpc}
    assert bulk.relations() == {
        ("c1", "uses-service", subnets["a"]),
        ("c2", "uses-service", subnets["a"]),
        ("c3", "uses-service", subnets["b"]),
    }
    assert (bulk.components(), bulk.relations()) == (naive.components(), naive.relations())
    assert naive_calls - bulk_calls == 2  # three clusters: one DescribeCacheSubnetGroups instead of three


def test_an_empty_listing_makes_no_region_wide_join_call(tmp_path: Path) -> None:
    """A region without clusters costs its listing only: the join's call waits for listed items (with
    workers free to start it beside the listing, as in a full scan)."""
    (tmp_path / "elasticache.yaml").write_text(textwrap.dedent(CLUSTERS))
    tally: Counter = Counter()
    with moto_server() as endpoint, live_aws(endpoint):
        [result], calls = scan(
            make_config(regions=(REGION,)),
            load_mappings(tmp_path),
            ListSink(),
            limits=Limits(workers=4),
            endpoint_url=endpoint,
            fetcher=counting(tally),
        )
    assert result.complete, [u.error for u in result.units if not u.complete]
    assert dict(tally) == {"DescribeCacheClusters": 1} and calls == 1


BUCKETS = {"eu-west-1": ["logs-eu", "assets-eu"], "us-east-1": ["assets-us"], "ap-southeast-2": ["far-away"]}


def test_an_account_wide_join_reads_each_region_with_its_own_args_and_locates_the_items() -> None:
    """S3: one ListBuckets per configured region (`args: {BucketRegion: _region}`, each element read with its
    `_region`) locates every bucket instead of one GetBucketLocation per bucket; a bucket of a region that is
    not configured is dropped, as its location drops it, and no later detail is made for it."""
    mappings, config = load_mappings(), make_config(regions=("eu-west-1", "us-east-1"), apis_to_run=("s3",))
    with moto_server() as endpoint:
        for region, names in BUCKETS.items():
            s3 = client("s3", region, endpoint)
            for name in names:
                where = {} if region == "us-east-1" else {"LocationConstraint": region}
                s3.create_bucket(Bucket=name, **({"CreateBucketConfiguration": where} if where else {}))
        sink, counted = ListSink(), Counter()
        naive, naive_counted = ListSink(), Counter()
        for plan, into, tally in ((mappings, sink, counted), (per_item(mappings), naive, naive_counted)):
            with live_aws(endpoint):
                [result], _ = scan(
                    config,
                    plan,
                    into,
                    limits=Limits(workers=1),
                    endpoint_url=endpoint,
                    fetcher=counting(tally),
                )
            assert result.complete, [u.error for u in result.units if not u.complete]

    located = {c["data"]["Name"]: c["data"].get("BucketLocation") for c in sink.components().values()}
    assert located == {"logs-eu": "eu-west-1", "assets-eu": "eu-west-1", "assets-us": None}  # as AWS gives it
    regions = {c["data"]["Location"]["AwsRegion"] for c in sink.components().values()}
    assert regions == {"eu-west-1", "us-east-1"}
    assert (sink.components(), sink.relations()) == (naive.components(), naive.relations())
    assert counted["GetBucketLocation"] == 0 and naive_counted["GetBucketLocation"] == 4
    assert counted["ListBuckets"] == 3  # the account's listing, then one per configured region
    notifications = "GetBucketNotificationConfiguration"
    assert counted[notifications] == naive_counted[notifications] == 3  # none for the far-away bucket


def counting(tally: Counter) -> Fetcher:
    """A fetcher that counts the requests per operation into `tally`."""

    class Counting(Fetcher):
        def _take(self, account: str, region: str, service: str, operation: str) -> None:
            tally[operation] += 1
            super()._take(account, region, service, operation)

    return Counting()
