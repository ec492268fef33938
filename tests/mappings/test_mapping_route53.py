"""mappings/route53.yaml and mappings/route53domains.yaml (global) against a live moto server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from moto.route53domains.responses import Route53DomainsResponse

from demo.seed import client
from engine.language.loader import load_mappings
from tests.support import ACCOUNT, ListSink, components_of_type, moto_server, scan_live, with_params

pytestmark = pytest.mark.live

GLOBAL_REGION = "us-east-1"
CONTACT = {
    "FirstName": "Ada",
    "LastName": "Lovelace",
    "ContactType": "PERSON",
    "AddressLine1": "1 Main St",
    "City": "London",
    "CountryCode": "GB",
    "ZipCode": "N1",
    "PhoneNumber": "+44.2012345678",
    "Email": "ada@example.com",
}
DOMAIN_TAGS = {"example.com": [{"Key": "owner", "Value": "web"}]}


def _list_tags_for_domain(self: Route53DomainsResponse) -> str:
    """moto 5.2.5 does not implement ListTagsForDomain; answer it with fixed tags per domain."""
    return json.dumps({"TagList": DOMAIN_TAGS.get(self._get_param("DomainName"), [])})


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict]]:
    with moto_server() as endpoint:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                Route53DomainsResponse, "list_tags_for_domain", _list_tags_for_domain, raising=False
            )
            ids = _seed(endpoint)
            mappings = load_mappings()
            # Small pages: every listing must follow its markers.
            mappings = with_params(mappings, "route53.hostedzone", "ListHostedZones", MaxItems="1")
            mappings = with_params(mappings, "route53.hostedzone", "ListResourceRecordSets", MaxItems="2")
            mappings = with_params(mappings, "route53domains.domain", "ListDomains", MaxItems=1)
            sink, results = scan_live(
                endpoint, mappings, regions=("global", "eu-west-1"), apis_to_run=("route53", "route53domains")
            )
        yield sink, results, ids


def _seed(endpoint: str) -> dict:
    route53 = client("route53", GLOBAL_REGION, endpoint)
    ec2 = client("ec2", GLOBAL_REGION, endpoint)
    public = route53.create_hosted_zone(Name="example.com", CallerReference="public")["HostedZone"]
    zone = public["Id"].split("/")[-1]
    route53.change_tags_for_resource(
        ResourceType="hostedzone", ResourceId=zone, AddTags=[{"Key": "team", "Value": "web"}]
    )
    route53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": f"{host}.example.com",
                        "Type": "A",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "192.0.2.1"}],
                    },
                }
                for host in ("api", "db", "www")
            ]
        },
    )
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    private = route53.create_hosted_zone(
        Name="internal.example",
        CallerReference="private",
        VPC={"VPCRegion": GLOBAL_REGION, "VPCId": vpc},
        HostedZoneConfig={"PrivateZone": True},
    )["HostedZone"]
    domains = client("route53domains", GLOBAL_REGION, endpoint)
    for name in ("example.com", "example.org"):
        domains.register_domain(
            DomainName=name,
            DurationInYears=2,  # moto rejects 1
            AdminContact=CONTACT,
            RegistrantContact=CONTACT,
            TechContact=CONTACT,
        )
    # Registering a domain also creates its hosted zone (moto does it as AWS does).
    zones = {z["Id"].split("/")[-1] for z in route53.list_hosted_zones()["HostedZones"]}
    return {"public": zone, "private": private["Id"].split("/")[-1], "vpc": vpc, "zones": zones}


def test_route53_scan_is_complete(scanned):
    _, results, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]
    assert {u.unit.region for u in results[0].units} == {"global"}  # listed once, not per region


def test_route53_hosted_zone_id_is_bare_with_arn_urn_and_name_without_trailing_dot(scanned):
    sink, _, ids = scanned
    zones = components_of_type(sink, "aws.route53.hostedzone")
    assert set(zones) == ids["zones"]  # four zones at one per ListHostedZones page
    assert {ids["public"], ids["private"]} < ids["zones"]
    data = zones[ids["public"]]["data"]
    assert data["Name"] == "example.com"
    assert data["URN"] == [f"arn:aws:route53:::hostedzone/{ids['public']}"]
    assert data["HostedZone"]["Id"] == f"/hostedzone/{ids['public']}"
    assert data["DelegationSet"]["NameServers"]
    assert data["Tags"] == {"team": "web"}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": GLOBAL_REGION}
    assert zones[ids["private"]]["data"]["Name"] == "internal.example"
    assert zones[ids["private"]]["data"]["VPCs"] == [{"VPCId": ids["vpc"], "VPCRegion": GLOBAL_REGION}]


def test_route53_hosted_zone_keeps_every_record_set_page(scanned):
    sink, _, ids = scanned
    records = sink.components()[ids["public"]]["data"]["ResourceRecordSets"]
    assert sorted((r["Name"], r["Type"]) for r in records) == [
        ("api.example.com.", "A"),
        ("db.example.com.", "A"),
        ("example.com.", "NS"),
        ("example.com.", "SOA"),
        ("www.example.com.", "A"),
    ]  # five records at two per ListResourceRecordSets page


def test_route53_domain_has_name_arn_urn_detail_and_tags(scanned):
    sink, _, _ = scanned
    domains = components_of_type(sink, "aws.route53.domain")
    assert set(domains) == {"example.com", "example.org"}  # two ListDomains pages
    data = domains["example.com"]["data"]
    assert data["Name"] == "example.com"
    assert data["URN"] == [f"arn:aws:route53::{ACCOUNT}:domain/example.com"]
    assert data["TransferLock"] is True  # from ListDomains
    assert data["RegistrarName"]  # from GetDomainDetail
    assert data["AdminContact"]["LastName"] == "Lovelace"
    assert data["Tags"] == {"owner": "web"}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": GLOBAL_REGION}
    assert domains["example.org"]["data"]["Tags"] == {}


def test_route53_types_have_no_relations(scanned):
    sink, _, _ = scanned
    assert sink.relations() == set()
