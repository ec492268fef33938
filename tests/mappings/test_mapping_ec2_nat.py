"""The NAT gateway resource of mappings/ec2.yaml against a live moto server.

A type beyond the StackPack's table, added as YAML only. moto returns every NAT gateway in one
response (it ignores MaxResults), so no pagination case here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from demo.seed import client
from tests.support import ACCOUNT, ListSink, moto_server, scan_live

pytestmark = pytest.mark.live

REGION = "eu-west-1"


def _seed(endpoint: str) -> dict:
    ec2 = client("ec2", REGION, endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    other = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]

    def nat(subnet: str, **extra: object) -> str:
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        return ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation, **extra)["NatGateway"][
            "NatGatewayId"
        ]

    named = nat(
        public,
        TagSpecifications=[{"ResourceType": "natgateway", "Tags": [{"Key": "Name", "Value": "egress"}]}],
    )
    unnamed = nat(other)
    deleted = nat(other)
    ec2.delete_nat_gateway(NatGatewayId=deleted)
    return {
        "vpc": vpc,
        "public": public,
        "other": other,
        "named": named,
        "unnamed": unnamed,
        "deleted": deleted,
    }


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict]]:
    with moto_server() as endpoint:
        ids = _seed(endpoint)
        sink, results = scan_live(endpoint, regions=(REGION,), apis_to_run=("ec2|nat_gateways",))
        yield sink, results, ids


def test_ec2_nat_gateway_scan_is_complete(scanned):
    _, results, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_ec2_nat_gateways_filter_runs_only_nat_gateways_and_skips_deleted_ones(scanned):
    sink, _, ids = scanned
    assert {k: c["type"]["name"] for k, c in sink.components().items()} == {
        ids["named"]: "aws.ec2.nat-gateway",
        ids["unnamed"]: "aws.ec2.nat-gateway",
    }


def test_ec2_nat_gateway_has_arn_urn_name_from_tag_and_location(scanned):
    sink, _, ids = scanned
    data = sink.components()[ids["named"]]["data"]
    assert data["Name"] == "egress"
    assert data["URN"] == [f"arn:aws:ec2:{REGION}:{ACCOUNT}:natgateway/{ids['named']}"]
    assert data["Tags"] == {"Name": "egress"}
    assert data["State"] == "available"
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Networking"
    assert sink.components()[ids["unnamed"]]["data"]["Name"] == ids["unnamed"]


def test_ec2_nat_gateway_uses_its_subnet_and_vpc(scanned):
    sink, _, ids = scanned
    assert sink.relations() == {
        (ids["named"], "uses-service", ids["public"]),
        (ids["named"], "uses-service", ids["vpc"]),
        (ids["unnamed"], "uses-service", ids["other"]),
        (ids["unnamed"], "uses-service", ids["vpc"]),
    }
