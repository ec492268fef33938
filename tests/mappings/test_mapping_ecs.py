"""mappings/ecs.yaml against a live moto server: clusters, hosts, tasks, services and their joins.

moto does not enforce the API's batch maxima, so the fixture makes its backend refuse bigger
batches as AWS does (DescribeServices 10, DescribeTasks / DescribeContainerInstances / DescribeClusters
100) and records the batch sizes it got. moto gives every task one container without network
interfaces; the fixture adds a second container and an interface to each, as AWS reports them.
"""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Iterator

import pytest
from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.models import EC2ContainerServiceBackend, ecs_backends

from demo.seed import AMI_ID, client
from engine.language.components import with_vars
from engine.language.dialect import search
from engine.language.loader import load_mappings
from tests.support import ACCOUNT, ListSink, components_of_type, ids_of_type, moto_server, scan_live

pytestmark = pytest.mark.live

REGION = "eu-west-1"
ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
WEB = f"{ARN}:cluster/web"
BATCH = f"{ARN}:cluster/batch"
TARGET_GROUP = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/front/0123456789abcdef"
HOSTS = 101  # one more than DescribeContainerInstances takes per call
EXTRA_SERVICES = [f"svc{n:02}" for n in range(11)]  # with `front`: 12 services, two DescribeServices calls
MAXIMA = {
    "describe_services": 10,
    "describe_tasks": 100,
    "describe_container_instances": 100,
    "describe_clusters": 100,
}
TASK_TRANSITION = {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}}


def _post(endpoint: str, path: str, body: dict) -> None:
    request = urllib.request.Request(f"{endpoint}{path}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _enforce_maxima(patch: pytest.MonkeyPatch, sizes: dict[str, list[int]]) -> None:
    """Make moto refuse batches above the API maximum, as AWS does, and record each batch size."""
    for method, maximum in MAXIMA.items():
        original = getattr(EC2ContainerServiceBackend, method)

        def limited(self, *args, _original=original, _method=method, _max=maximum):
            ids = args[-1]  # each of these methods takes its id list last
            sizes.setdefault(_method, []).append(len(ids))
            if len(ids) > _max:
                raise InvalidParameterException(f"{_method} takes at most {_max} ids")
            return _original(self, *args)

        patch.setattr(EC2ContainerServiceBackend, method, limited)


def _with_containers(task_arn: str, cluster: str, containers: list[tuple[str, str]]) -> None:
    """Give a moto task the containers (name, private IPv4) AWS would report for it."""
    task = ecs_backends[ACCOUNT][REGION].tasks[cluster][task_arn]
    template = task.containers[0]
    task.containers = []
    for name, ip in containers:
        container = copy.copy(template)
        container.name = name
        container.network_interfaces = [{"attachmentId": f"eni-attach-{name}", "privateIpv4Address": ip}]
        task.containers.append(container)


def _seed(endpoint: str) -> dict:
    ec2 = client("ec2", REGION, endpoint)
    ecs = client("ecs", REGION, endpoint)
    launched = ec2.run_instances(ImageId=AMI_ID, MinCount=HOSTS, MaxCount=HOSTS)["Instances"]
    hosts = [i["InstanceId"] for i in launched]
    ecs.create_cluster(clusterName="web", tags=[{"key": "team", "value": "shop"}])
    ecs.create_cluster(clusterName="batch")
    for host in hosts:
        document = {"accountId": ACCOUNT, "region": REGION, "instanceId": host, "imageId": AMI_ID}
        ecs.register_container_instance(cluster="web", instanceIdentityDocument=json.dumps(document))
    ecs.register_task_definition(
        family="app",
        containerDefinitions=[
            {"name": "web", "image": "nginx", "memory": 128},
            {"name": "xray", "image": "xray", "memory": 64},
        ],
    )
    ecs.register_task_definition(
        family="report", containerDefinitions=[{"name": "job", "image": "x", "memory": 64}]
    )
    ecs.create_service(
        cluster="web",
        serviceName="front",
        taskDefinition="app",
        desiredCount=2,
        loadBalancers=[{"targetGroupArn": TARGET_GROUP, "containerName": "web", "containerPort": 80}],
        tags=[{"key": "tier", "value": "frontend"}],
    )
    for name in EXTRA_SERVICES:
        ecs.create_service(cluster="web", serviceName=name, taskDefinition="report", desiredCount=0)
    front_tasks = []
    for n in (1, 2):
        task = ecs.run_task(cluster="web", taskDefinition="app", group="service:front",
                            tags=[{"key": "n", "value": str(n)}])["tasks"][0]  # fmt: skip
        _with_containers(task["taskArn"], "web", [("web", f"10.0.0.{50 + n}"), ("xray", f"10.0.1.{50 + n}")])
        front_tasks.append(task["taskArn"])
    standalone = ecs.run_task(cluster="web", taskDefinition="report")["tasks"][0]["taskArn"]
    nightly = ecs.run_task(cluster="batch", taskDefinition="report", launchType="FARGATE")["tasks"][0]
    return {
        "hosts": hosts,
        "front_tasks": front_tasks,
        "standalone": standalone,
        "nightly": nightly["taskArn"],
    }


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict, dict]]:
    sizes: dict[str, list[int]] = {}
    with moto_server() as endpoint:
        try:
            _post(endpoint, "/moto-api/state-manager/set-transition", TASK_TRANSITION)  # tasks stay RUNNING
            ids = _seed(endpoint)
            with pytest.MonkeyPatch.context() as patch:
                _enforce_maxima(patch, sizes)
                sink, results = scan_live(endpoint, regions=(REGION,), apis_to_run=("ecs",))
            yield sink, results, ids, sizes
        finally:
            _post(endpoint, "/moto-api/state-manager/unset-transition", {"model_name": "ecs::task"})


def test_ecs_scan_is_complete(scanned):
    _, results, _, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_ecs_cluster_has_arn_name_tags_and_cw_dimension(scanned):
    sink, _, _, _ = scanned
    assert ids_of_type(sink, "aws.ecs.cluster") == {WEB, BATCH}
    data = sink.components()[WEB]["data"]
    assert data["Name"] == "web"
    assert data["ClusterName"] == "web"
    assert data["Tags"] == {"team": "shop"}
    assert data["CW"] == {"Dimensions": [{"Key": "ClusterName", "Value": "web"}]}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Containers"


def test_ecs_cluster_uses_every_container_instance_host_in_chunks_of_100(scanned):
    sink, _, ids, sizes = scanned
    hosts = {t for s, kind, t in sink.relations() if kind == "uses-ec2-host"}
    assert hosts == set(ids["hosts"])
    assert {s for s, kind, _ in sink.relations() if kind == "uses-ec2-host"} == {WEB}
    assert sorted(sizes["describe_container_instances"]) == [1, 100]


def test_ecs_describes_services_ten_at_a_time_and_keeps_every_one(scanned):
    sink, _, _, sizes = scanned
    services = components_of_type(sink, "aws.ecs.service")
    assert set(services) == {f"{ARN}:service/web/{n}" for n in ["front", *EXTRA_SERVICES]}
    assert sorted(sizes["describe_services"]) == [2, 10]
    assert all(n <= 100 for n in sizes["describe_tasks"] + sizes["describe_clusters"])


def test_ecs_service_has_name_cw_dimensions_tags_and_no_event_log(scanned):
    sink, _, _, _ = scanned
    data = sink.components()[f"{ARN}:service/web/front"]["data"]
    assert data["Name"] == "front"
    assert data["ServiceName"] == "front"
    assert data["Tags"] == {"tier": "frontend"}
    assert data["CW"] == {
        "Dimensions": [{"Key": "ClusterName", "Value": "web"}, {"Key": "ServiceName", "Value": "front"}]
    }
    assert "Events" not in data
    assert data["LoadBalancers"][0]["TargetGroupArn"] == TARGET_GROUP


def test_ecs_service_urns_name_each_container_of_its_tasks(scanned):
    sink, _, _, _ = scanned
    data = sink.components()[f"{ARN}:service/web/front"]["data"]
    assert data["URN"] == ["urn:service:/service-front-web", "urn:service:/service-front-xray"]
    assert "URN" not in sink.components()[f"{ARN}:service/web/svc00"]["data"]  # a service without tasks


def test_ecs_service_task_urns_name_each_container_interface(scanned):
    sink, _, ids, _ = scanned
    first, second = ids["front_tasks"]
    assert sink.components()[first]["data"]["URN"] == [
        "urn:service-instance:/service-front-web:/10.0.0.51",
        "urn:service-instance:/service-front-xray:/10.0.1.51",
    ]
    assert sink.components()[second]["data"]["URN"] == [
        "urn:service-instance:/service-front-web:/10.0.0.52",
        "urn:service-instance:/service-front-xray:/10.0.1.52",
    ]


def test_ecs_task_has_definition_name_and_tags(scanned):
    sink, _, ids, _ = scanned
    tasks = components_of_type(sink, "aws.ecs.task")
    assert set(tasks) == {*ids["front_tasks"], ids["standalone"], ids["nightly"]}
    first = tasks[ids["front_tasks"][0]]["data"]
    assert first["Name"] == "app:1"
    assert first["Tags"] == {"n": "1"}
    assert first["Group"] == "service:front"
    standalone = tasks[ids["standalone"]]["data"]
    assert standalone["Name"] == "report:1"
    assert "URN" not in standalone  # not a service task


def test_ecs_cluster_has_its_services_and_standalone_tasks_and_services_have_all_their_tasks(scanned):
    sink, _, ids, _ = scanned
    nodes = {(s, t) for s, kind, t in sink.relations() if kind == "has_cluster_node"}
    services = {(WEB, f"{ARN}:service/web/{n}") for n in ["front", *EXTRA_SERVICES]}
    standalone = {(WEB, ids["standalone"]), (BATCH, ids["nightly"])}
    front = {(f"{ARN}:service/web/front", t) for t in ids["front_tasks"]}
    assert nodes == services | standalone | front


def test_ecs_service_uses_its_load_balancer_target_group(scanned):
    sink, _, _, _ = scanned
    uses = {(s, t) for s, kind, t in sink.relations() if kind == "uses-service"}
    assert uses == {(f"{ARN}:service/web/front", TARGET_GROUP)}


def test_ecs_task_urns_skip_containers_without_ipv4_and_standalone_tasks():
    """The URN expression over single items (no moto): only IPv4 interfaces of named containers count."""
    task = next(r for r in load_mappings().resources if r.key == "ecs.task")
    containers = [
        {"name": "web", "networkInterfaces": [{"privateIpv4Address": "10.0.0.9"}]},
        {"name": "sidecar", "networkInterfaces": []},
        {"name": "v6", "networkInterfaces": [{"ipv6Address": "fd00::1"}]},
        {"networkInterfaces": [{"privateIpv4Address": "10.0.0.10"}]},
    ]
    service_task = {"group": "service:api", "containers": containers}
    urns = lambda item: search(task.urns[0], with_vars(task.vars, item))  # noqa: E731  (vars set as the engine does)
    assert urns(service_task) == ["urn:service-instance:/service-api-web:/10.0.0.9"]
    assert urns({"group": "family:report", "containers": containers}) is False
    assert urns({"taskArn": "arn:denied"}) is False  # DescribeTasks denied: no group
