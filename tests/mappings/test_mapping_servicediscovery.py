"""mappings/servicediscovery.yaml against a live moto server: relation-only Cloud Map edges.

moto returns every service and instance at once unless MaxResults is given, so the scan asks for
one per page to prove that every page is read. moto labels its Cloud Map JSON answers `text/html`,
which the engine rightly refuses as a proxy's page; the fixture labels them as AWS does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.servicediscovery.responses import ServiceDiscoveryResponse

from demo.seed import client
from engine.language.loader import load_mappings
from tests.support import ACCOUNT, ListSink, moto_server, scan_live, with_params

pytestmark = pytest.mark.live

REGION = "eu-west-1"
ECS = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service"
FRONT = {"ECS_SERVICE_NAME": "front", "ECS_CLUSTER_NAME": "shop"}  # ECS registers both names


def _json_content_type(patch: pytest.MonkeyPatch) -> None:
    """Label moto's Cloud Map answers as the JSON they are (AWS: application/x-amz-json-1.1)."""
    original = ServiceDiscoveryResponse.call_action

    def labelled(self):
        status, headers, body = original(self)
        headers["Content-Type"] = "application/x-amz-json-1.1"
        return status, headers, body

    patch.setattr(ServiceDiscoveryResponse, "call_action", labelled)


def _seed(endpoint: str) -> dict:
    ec2 = client("ec2", REGION, endpoint)
    sd = client("servicediscovery", REGION, endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    sd.create_private_dns_namespace(Name="corp.local", Vpc=vpc)
    sd.create_http_namespace(Name="api-only")
    namespaces = {n["Name"]: n for n in sd.list_namespaces()["Namespaces"]}
    private = namespaces["corp.local"]
    zone = private["Properties"]["DnsProperties"]["HostedZoneId"]
    dns = {"DnsRecords": [{"Type": "A", "TTL": 60}]}
    web = sd.create_service(Name="web", NamespaceId=private["Id"], DnsConfig=dns)["Service"]["Id"]
    back = sd.create_service(Name="back", NamespaceId=private["Id"], DnsConfig=dns)["Service"]["Id"]
    api = sd.create_service(Name="api", NamespaceId=namespaces["api-only"]["Id"])["Service"]["Id"]
    registrations = [
        (web, "front-1", {**FRONT, "AWS_INSTANCE_IPV4": "10.0.0.5"}),
        (web, "host-1", {"EC2_INSTANCE_ID": "i-0123456789abcdef0", "AWS_INSTANCE_IPV4": "10.0.0.6"}),
        (web, "both", {**FRONT, "EC2_INSTANCE_ID": "i-0fedcba987654321f"}),
        (web, "plain", {"AWS_INSTANCE_IPV4": "10.0.0.7"}),
        (
            back,
            "back-1",
            {"ECS_SERVICE_NAME": "back", "ECS_CLUSTER_NAME": "shop", "AWS_INSTANCE_IPV4": "10.0.0.8"},
        ),
        (api, "api-1", {"EC2_INSTANCE_ID": "i-00000000000000001"}),
    ]
    for service, instance, attributes in registrations:
        sd.register_instance(ServiceId=service, InstanceId=instance, Attributes=attributes)
    return {"zone": zone}


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict]]:
    with moto_server() as endpoint:
        ids = _seed(endpoint)
        with pytest.MonkeyPatch.context() as patch:
            _json_content_type(patch)
            mappings = with_params(load_mappings(), "servicediscovery.service", "ListServices", MaxResults=1)
            mappings = with_params(mappings, "servicediscovery.service", "ListInstances", MaxResults=1)
            sink, results = scan_live(
                endpoint, mappings, regions=(REGION,), apis_to_run=("servicediscovery",)
            )
        yield sink, results, ids


def test_servicediscovery_scan_is_complete(scanned):
    _, results, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_servicediscovery_emits_no_components(scanned):
    sink, _, _ = scanned
    assert sink.components() == {}


def test_servicediscovery_instances_use_their_namespace_hosted_zone(scanned):
    sink, _, ids = scanned
    assert ids["zone"].startswith("/hostedzone/")  # moto prefixes it; AWS gives the bare id
    zone = ids["zone"].split("/")[-1]
    assert sink.relations() == {
        # The service's ARN in the current format, service/{cluster}/{name}: ECS_SERVICE_NAME wins over
        # EC2_INSTANCE_ID.
        (f"{ECS}/shop/front", "uses-service", zone),
        ("i-0123456789abcdef0", "uses-service", zone),
        (f"{ECS}/shop/back", "uses-service", zone),
    }


def test_servicediscovery_http_namespace_without_hosted_zone_gives_no_edge(scanned):
    sink, _, _ = scanned
    assert not {r for r in sink.relations() if r[0] == "i-00000000000000001"}
