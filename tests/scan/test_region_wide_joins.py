"""A region-wide join serves any listing, not only tags: each ElastiCache cluster gets its subnet group's VPC
and subnets from one DescribeCacheSubnetGroups per region instead of one call per cluster (live moto)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from demo.seed import client
from engine.core.phase import Limits
from engine.language.loader import Mappings, load_mappings
from engine.scan.full_scan import scan
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
