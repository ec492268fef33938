"""Engine behaviour of a unit (chunks, manual pages, joins, child status, templated types), via Stubber."""

from __future__ import annotations

import textwrap
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from engine.aws.fetch import Fetcher
from engine.aws.sessions import Account, client_config
from engine.core.phase import Limits
from engine.core.scheduler import Serial
from engine.language.components import Labels
from engine.language.loader import load_mappings
from engine.scan.collect import Collector, UnitResult
from engine.scan.plan import plan
from tests.support import ACCOUNT, ROLE, make_config

REGION = "eu-west-1"
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/one"


def account_in(region: str) -> Account:
    session = boto3.Session(aws_access_key_id="stub", aws_secret_access_key="stub", region_name=region)
    return Account(id=ACCOUNT, role_arn=ROLE, session=session, config=client_config(1))


def run(tmp_path: Path, mapping: str, account: Account, region: str = REGION) -> list[UnitResult]:
    (tmp_path / "test.yaml").write_text(textwrap.dedent(mapping))
    mappings = load_mappings(tmp_path)
    [unit] = plan(make_config(regions=(region,)).instances[0], mappings)
    return Collector(account, mappings, Fetcher(), Labels(account=ACCOUNT)).run(unit)


def edges(results: list[UnitResult]) -> set[tuple[str, str, str]]:
    return {(r["sourceId"], r["type"]["name"], r["targetId"]) for u in results for r in u.relations}


ECS = """
version: 1
service: ecs
resources:
  cluster:
    type: test.cluster
    layer: Containers
    list: {operation: ListClusters, items: "clusterArns[].{clusterArn: @}"}
    details:
      - {operation: ListContainerInstances, args: {cluster: clusterArn}, result: containerInstanceArns,
         into: _instances}
      - operation: DescribeContainerInstances
        args: {cluster: clusterArn, containerInstances: _instances}
        chunk: {param: containerInstances, size: 100}
        result: "containerInstances[].ec2InstanceId"
        into: _hosts
    id: clusterArn
    relations:
      - {type: uses-ec2-host, target: _hosts}
  task:
    type: test.task
    parent: cluster
    list:
      operation: ListTasks
      args: {cluster: clusterArn}
      items: "taskArns[].{taskArn: @, group: 'service:web'}"
      gone: [ClusterNotFoundException]
    id: taskArn
  service:
    type: "test.{lower(kind)}-service"
    types: [test.replica-service, test.daemon-service]
    parent: cluster
    list: {operation: ListServices, args: {cluster: clusterArn},
           items: "serviceArns[].{serviceArn: @, name: split(@, '/')[-1], kind: 'REPLICA'}"}
    joins:
      - {resource: task, key: group, match: "format('service:{name}', @)", into: _tasks}
    id: serviceArn
    relations:
      - {type: has_cluster_node, target: "_tasks[].taskArn"}
      - {type: has_cluster_node, direction: in, target: _parent._external_id}
"""


def test_a_long_id_list_is_sent_in_chunks_and_every_result_is_kept(tmp_path):
    arns = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/one/{i}" for i in range(250)]
    account = account_in(REGION)
    with Stubber(account.client("ecs", REGION)) as stub:
        stub.add_response("list_clusters", {"clusterArns": [CLUSTER]})
        stub.add_response("list_container_instances", {"containerInstanceArns": arns})
        for start in (0, 100, 200):
            chunk = arns[start : start + 100]
            answer = [{"containerInstanceArn": a, "ec2InstanceId": f"i-{a[-3:]}"} for a in chunk]
            stub.add_response(
                "describe_container_instances",
                {"containerInstances": answer},
                {"cluster": CLUSTER, "containerInstances": chunk},
            )
        stub.add_response("list_tasks", {"taskArns": []})
        stub.add_response("list_services", {"serviceArns": []})
        results = run(tmp_path, ECS, account)
        stub.assert_no_pending_responses()

    hosts = {t for s, kind, t in edges(results) if kind == "uses-ec2-host"}
    assert len(hosts) == 250 and all(r.complete for r in results)


def test_a_service_joins_all_its_tasks_and_reaches_its_cluster_through_the_parent_external_id(tmp_path):
    account = account_in(REGION)
    tasks = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/one/{i}" for i in "abc"]
    service = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/one/web"
    with Stubber(account.client("ecs", REGION)) as stub:
        stub.add_response("list_clusters", {"clusterArns": [CLUSTER]})
        stub.add_response("list_container_instances", {"containerInstanceArns": []})
        stub.add_response("list_tasks", {"taskArns": tasks})
        stub.add_response("list_services", {"serviceArns": [service]})
        results = run(tmp_path, ECS, account)

    assert edges(results) == {(service, "has_cluster_node", t) for t in tasks} | {
        (CLUSTER, "has_cluster_node", service)
    }
    [component] = results[2].components
    assert component["type"] == {"name": "test.replica-service"}


def test_a_failed_child_type_fails_alone_and_its_siblings_stay_complete(tmp_path):
    account = account_in(REGION)
    with Stubber(account.client("ecs", REGION)) as stub:
        stub.add_response("list_clusters", {"clusterArns": [CLUSTER]})
        stub.add_response("list_container_instances", {"containerInstanceArns": []})
        stub.add_client_error("list_tasks", service_error_code="ServerException", http_status_code=400)
        stub.add_response("list_services", {"serviceArns": []})
        results = run(tmp_path, ECS, account)

    assert [(r.unit.resource.name, r.status) for r in results] == [
        ("cluster", "complete"),
        ("task", "failed"),
        ("service", "complete"),
    ]
    assert [c["externalId"] for c in results[0].components] == [CLUSTER]
    assert "ListTasks" in results[1].error


def test_a_parent_deleted_mid_scan_drops_only_its_own_children(tmp_path):
    account = account_in(REGION)
    gone, kept = CLUSTER, CLUSTER.replace("/one", "/two")
    with Stubber(account.client("ecs", REGION)) as stub:
        stub.add_response("list_clusters", {"clusterArns": [gone, kept]})
        stub.add_response("list_container_instances", {"containerInstanceArns": []})
        stub.add_response("list_container_instances", {"containerInstanceArns": []})
        stub.add_client_error("list_tasks", "ClusterNotFoundException", http_status_code=400)
        stub.add_response("list_tasks", {"taskArns": [f"{kept}/task/x"]})
        stub.add_response("list_services", {"serviceArns": []})
        stub.add_response("list_services", {"serviceArns": []})
        results = run(tmp_path, ECS, account)

    assert all(r.complete for r in results)
    assert [c["externalId"] for c in results[1].components] == [f"{kept}/task/x"]


class Holding(Serial):
    """Counts the items held against the pool's budget (`Scheduler.hold`), and the most at once."""

    def __init__(self) -> None:
        super().__init__()
        self.held = self.most = 0

    def hold(self, items: int) -> None:
        self.held += items
        self.most = max(self.most, self.held)

    def release(self, items: int) -> None:
        self.held -= items


def test_a_units_listed_items_are_held_while_it_runs_and_released_when_it_ends_failed_or_not(tmp_path):
    (tmp_path / "test.yaml").write_text(textwrap.dedent(ECS))
    mappings = load_mappings(tmp_path)
    [unit] = plan(make_config(regions=(REGION,)).instances[0], mappings)
    account, holding = account_in(REGION), Holding()
    clusters = [CLUSTER, CLUSTER.replace("/one", "/two")]
    with Stubber(account.client("ecs", REGION)) as stub:
        stub.add_response("list_clusters", {"clusterArns": clusters})
        for _ in clusters:
            stub.add_response("list_container_instances", {"containerInstanceArns": []})
        stub.add_response("list_tasks", {"taskArns": [f"{CLUSTER}/task/x", f"{CLUSTER}/task/y"]})
        stub.add_client_error("list_tasks", service_error_code="ServerException", http_status_code=400)
        stub.add_response("list_services", {"serviceArns": [f"{CLUSTER}/service/web"]})
        stub.add_response("list_services", {"serviceArns": []})
        results = Collector(account, mappings, Fetcher(), Labels(account=ACCOUNT), holding).run(unit)

    assert [r.status for r in results] == ["complete", "failed", "complete"]
    assert [r.listed for r in results] == [2, 0, 1]  # the failed child listing holds nothing
    assert (holding.most, holding.held) == (3, 0)


def test_a_templated_type_outside_its_declared_types_fails_the_unit(tmp_path):
    account = account_in(REGION)
    mapping = ECS.replace("kind: 'REPLICA'", "kind: 'SIDECAR'")
    with Stubber(account.client("ecs", REGION)) as stub:
        stub.add_response("list_clusters", {"clusterArns": [CLUSTER]})
        stub.add_response("list_container_instances", {"containerInstanceArns": []})
        stub.add_response("list_tasks", {"taskArns": []})
        stub.add_response("list_services", {"serviceArns": [f"{CLUSTER}/svc"]})
        results = run(tmp_path, mapping, account)

    assert results[2].status == "failed"
    assert "gave 'test.sidecar-service'; expected one of test.replica-service, test.daemon-service" in (
        results[2].error
    )


FIREHOSE = """
version: 1
service: firehose
resources:
  stream:
    type: test.stream
    layer: Messaging
    list:
      operation: ListDeliveryStreams
      next:
        param: ExclusiveStartDeliveryStreamName
        token: "HasMoreDeliveryStreams && DeliveryStreamNames[-1]"
      items: "DeliveryStreamNames[].{name: @}"
    id: name
    external_id: "format('arn:{_partition}:firehose:{_region}:{_account}:deliverystream/{name}', @)"
"""


def test_manual_pagination_follows_the_token_until_the_last_page(tmp_path):
    account = account_in(REGION)
    with Stubber(account.client("firehose", REGION)) as stub:
        stub.add_response(
            "list_delivery_streams", {"DeliveryStreamNames": ["a", "b"], "HasMoreDeliveryStreams": True}
        )
        stub.add_response(
            "list_delivery_streams",
            {"DeliveryStreamNames": ["c"], "HasMoreDeliveryStreams": False},
            {"ExclusiveStartDeliveryStreamName": "b"},
        )
        [result] = run(tmp_path, FIREHOSE, account)
        stub.assert_no_pending_responses()

    assert [c["data"]["Name"] if "Name" in c["data"] else c["externalId"][-1] for c in result.components] == [
        "a",
        "b",
        "c",
    ]


def test_arns_carry_the_partition_of_the_region(tmp_path):
    account = account_in("cn-north-1")
    with Stubber(account.client("firehose", "cn-north-1")) as stub:
        stub.add_response(
            "list_delivery_streams", {"DeliveryStreamNames": ["a"], "HasMoreDeliveryStreams": False}
        )
        [result] = run(tmp_path, FIREHOSE, account, region="cn-north-1")

    assert [c["externalId"] for c in result.components] == [
        f"arn:aws-cn:firehose:cn-north-1:{ACCOUNT}:deliverystream/a"
    ]


def test_a_relation_only_resource_emits_edges_and_no_component(tmp_path):
    mapping = FIREHOSE.replace("layer: Messaging", "component: false") + textwrap.indent(
        "relations:\n  - {type: uses-service, target: \"format('bucket-{name}', @)\"}\n", "    "
    )
    account = account_in(REGION)
    with Stubber(account.client("firehose", REGION)) as stub:
        stub.add_response(
            "list_delivery_streams", {"DeliveryStreamNames": ["a"], "HasMoreDeliveryStreams": False}
        )
        [result] = run(tmp_path, mapping, account)

    assert result.components == []
    stream = f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/a"
    assert edges([result]) == {(stream, "uses-service", "bucket-a")}


@pytest.mark.parametrize("size", [1, 2])
def test_a_batch_answered_gone_drops_only_that_batch(tmp_path, size):
    mapping = """
    version: 1
    service: ecs
    resources:
      cluster:
        type: test.cluster
        layer: Containers
        list: {operation: ListClusters, items: "clusterArns[].{clusterArn: @}"}
        details:
          - operation: DescribeClusters
            batch: {param: clusters, key: clusterArn, size: SIZE, items: "clusters[]", match: clusterArn}
            gone: [ClusterNotFoundException]
        id: clusterArn
    """.replace("SIZE", str(size))
    account = account_in(REGION)
    arns = [f"{CLUSTER}{i}" for i in range(2)]
    with Stubber(account.client("ecs", REGION)) as stub:
        stub.add_response("list_clusters", {"clusterArns": arns})
        if size == 1:
            stub.add_client_error("describe_clusters", "ClusterNotFoundException", http_status_code=400)
            stub.add_response(
                "describe_clusters", {"clusters": [{"clusterArn": arns[1], "status": "ACTIVE"}]}
            )
        else:
            stub.add_client_error("describe_clusters", "ClusterNotFoundException", http_status_code=400)
        [result] = run(tmp_path, mapping, account)

    assert result.complete
    assert [c["externalId"] for c in result.components] == (arns[1:] if size == 1 else [])


def test_a_list_detail_result_without_into_fails_the_unit_instead_of_vanishing(tmp_path):
    mapping = FIREHOSE + textwrap.indent(
        textwrap.dedent(
            """\
            details:
              - {operation: ListTagsForDeliveryStream, args: {DeliveryStreamName: name}, result: Tags}
            """
        ),
        "    ",
    )
    account = account_in(REGION)
    with Stubber(account.client("firehose", REGION)) as stub:
        stub.add_response(
            "list_delivery_streams", {"DeliveryStreamNames": ["a"], "HasMoreDeliveryStreams": False}
        )
        stub.add_response("list_tags_for_delivery_stream", {"Tags": [{"Key": "k"}], "HasMoreTags": False})
        [result] = run(tmp_path, mapping, account)

    assert result.status == "failed"
    assert (
        "ListTagsForDeliveryStream: the detail result is list, not an object; give the detail an `into` key"
        in (result.error)
    )


def test_two_types_claiming_one_external_id_keep_the_snapshot_open(tmp_path, monkeypatch):
    from engine.scan import full_scan as scan_module
    from tests.support import ListSink

    (tmp_path / "test.yaml").write_text(
        textwrap.dedent(
            """
            version: 1
            service: firehose
            resources:
              stream:
                type: test.stream
                layer: Messaging
                list: {operation: ListDeliveryStreams, items: "DeliveryStreamNames[].{name: @}"}
                id: name
              mirror:
                type: test.mirror
                layer: Messaging
                list: {operation: ListDeliveryStreams, items: "DeliveryStreamNames[].{name: @}"}
                id: name
            """
        )
    )
    session = boto3.Session(aws_access_key_id="stub", aws_secret_access_key="stub", region_name=REGION)
    client = session.client("firehose", region_name=REGION)
    answer = {"DeliveryStreamNames": ["a"], "HasMoreDeliveryStreams": False}
    with Stubber(client) as stub:
        stub.add_response("list_delivery_streams", answer)
        stub.add_response("list_delivery_streams", answer)
        account = account_in(REGION)
        account._clients[("firehose", REGION)] = (
            client,
            frozenset(client.meta.service_model.operation_names),
        )
        monkeypatch.setattr(scan_module, "assume", lambda *args, **kwargs: account)
        sink = ListSink()
        [result], _ = scan_module.scan(
            make_config(regions=(REGION,)), load_mappings(tmp_path), sink, limits=Limits(workers=1)
        )

    assert result.collisions == ["a is both test.stream and test.mirror"]
    assert not result.closes_snapshot
    assert all(t["stop_snapshot"] is False for t in sink.topologies())


TAGGED = """
version: 1
service: sqs
resources:
  queue:
    type: test.queue
    list:
      operation: ListQueues
      items: "QueueUrls[].{QueueUrl: @, Arn: join(':', ['arn:aws:sqs:eu-west-1', '123456789012',
        split(@, '/')[-1]])}"
    details:
      - {operation: ListQueueTags, args: {QueueUrl: QueueUrl}, result: Tags, into: Tags, fallback: true}
    joins:
      - call:
          service: resourcegroupstaggingapi
          operation: GetResources
          iam_action: tag:GetResources
          params: {ResourceTypeFilters: [sqs]}
          items: "ResourceTagMappingList[]"
        key: ResourceARN
        match: Arn
        result: "[0] && tag_dict([0].Tags)"
        into: Tags
    id: QueueUrl
"""
QUEUES = [f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}" for name in ("tagged", "plain")]


def tags_of(results: list[UnitResult]) -> dict[str, dict]:
    return {c["externalId"].rsplit("/", 1)[-1]: c["data"]["Tags"] for c in results[0].components}


def test_a_region_wide_join_replaces_the_call_per_item(tmp_path):
    account = account_in(REGION)
    mapping = {
        "ResourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:tagged",
        "Tags": [{"Key": "team", "Value": "a"}],
    }
    with (
        Stubber(account.client("sqs", REGION)) as sqs,
        Stubber(account.client("resourcegroupstaggingapi", REGION)) as tagging,
    ):
        sqs.add_response("list_queues", {"QueueUrls": QUEUES})
        tagging.add_response(
            "get_resources", {"ResourceTagMappingList": [mapping]}, {"ResourceTypeFilters": ["sqs"]}
        )
        results = run(tmp_path, TAGGED, account)
        sqs.assert_no_pending_responses()

    assert results[0].complete and results[0].gaps == []
    assert tags_of(results) == {"tagged": {"team": "a"}, "plain": {}}  # untagged: not in GetResources


def test_a_denied_region_wide_join_falls_back_to_the_call_per_item_and_reports_the_gap(tmp_path):
    account = account_in(REGION)
    with (
        Stubber(account.client("sqs", REGION)) as sqs,
        Stubber(account.client("resourcegroupstaggingapi", REGION)) as tagging,
    ):
        sqs.add_response("list_queues", {"QueueUrls": QUEUES})
        tagging.add_client_error(
            "get_resources", service_error_code="AccessDeniedException", http_status_code=400
        )
        sqs.add_response("list_queue_tags", {"Tags": {"team": "a"}}, {"QueueUrl": QUEUES[0]})
        sqs.add_response("list_queue_tags", {}, {"QueueUrl": QUEUES[1]})
        results = run(tmp_path, TAGGED, account)
        sqs.assert_no_pending_responses()

    assert results[0].complete
    assert tags_of(results) == {"tagged": {"team": "a"}, "plain": {}}
    assert [g.action for g in results[0].gaps] == ["tag:GetResources"]


LOCATED = """
version: 1
service: s3
resources:
  bucket:
    type: test.bucket
    scope: account
    list: {operation: ListBuckets, items: "Buckets[]"}
    details:
      - {operation: GetBucketLocation, args: {Bucket: Name}, result: LocationConstraint, into: Where,
         locates: true}
      - {operation: GetBucketNotificationConfiguration, args: {Bucket: Name}, into: _notifications}
    region: "Where || 'us-east-1'"
    id: Name
"""


def test_items_of_regions_that_are_not_configured_get_no_call_after_their_region_is_known(tmp_path):
    account = account_in("us-east-1")
    with Stubber(account.client("s3", "us-east-1")) as s3:
        s3.add_response("list_buckets", {"Buckets": [{"Name": "here"}, {"Name": "elsewhere"}]})
        s3.add_response("get_bucket_location", {"LocationConstraint": REGION}, {"Bucket": "here"})
        s3.add_response("get_bucket_location", {"LocationConstraint": "ap-south-1"}, {"Bucket": "elsewhere"})
        s3.add_response("get_bucket_notification_configuration", {}, {"Bucket": "here"})  # only this one
        results = run(tmp_path, LOCATED, account)
        s3.assert_no_pending_responses()

    assert [c["externalId"] for c in results[0].components] == ["here"]
