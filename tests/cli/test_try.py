"""`aws-topology try`: one saved (or live) response shaped through one resource of one mapping file.

The saved responses in tests/cli/data/ are what `aws ... --output json` prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner, Result

from engine import cli
from tests.support import ACCOUNT, moto_env, moto_server

DATA = Path(__file__).parent / "data"
SUBNETS = str(DATA / "describe-subnets.json")
QUEUES = str(DATA / "list-queues.json")
ATTRIBUTES = str(DATA / "get-queue-attributes.json")
FIRST, SECOND, VPC = "subnet-0a1b2c3d4e5f60718", "subnet-0f9e8d7c6b5a40312", "vpc-0123456789abcdef0"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, ["try", *args], env=env)


def assert_bad_input(result: Result) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_a_saved_listing_gives_the_components_relations_and_urns_of_a_scan() -> None:
    result = invoke("ec2", "subnet", "--response", SUBNETS, "--json")

    assert result.exit_code == 0, result.output
    assert result.exception is None
    out = json.loads(result.stdout)
    assert (out["file"], out["resource"], out["not_called"]) == ("ec2.yaml", "subnet", [])
    by_id = {c["externalId"]: c for c in out["components"]}
    assert list(by_id) == [FIRST, SECOND]
    first = by_id[FIRST]["data"]
    assert by_id[FIRST]["type"] == {"name": "aws.ec2.subnet"}
    assert first["Name"] == "shop-private-eu-west-1a"
    assert first["URN"] == [f"arn:aws:ec2:eu-west-1:{ACCOUNT}:subnet/{FIRST}"]
    assert first["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": "eu-west-1"}
    assert first["Tags"] == {"Name": "shop-private"} and first["CidrBlock"] == "10.0.0.0/20"
    assert by_id[SECOND]["data"]["Name"] == f"{SECOND}-eu-west-1b"
    assert [(r["sourceId"], r["type"]["name"], r["targetId"]) for r in out["relations"]] == [
        (FIRST, "uses-service", VPC),
        (SECOND, "uses-service", VPC),
    ]


def test_the_readable_listing_names_each_component_its_identifiers_and_relations() -> None:
    result = invoke("mappings/ec2.yaml", "aws.ec2.subnet", "--response", SUBNETS, "--region", "us-east-1")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "ec2.yaml: resources.subnet (aws.ec2.subnet): 2 component(s), 2 relation(s), 0 event(s)"
    )
    assert f"aws.ec2.subnet  {FIRST}" in lines
    assert f"    identifier: arn:aws:ec2:us-east-1:{ACCOUNT}:subnet/{FIRST}" in lines
    assert f"    {SECOND} -[uses-service]-> {VPC}" in lines


def test_calls_without_a_saved_response_are_not_made_and_are_listed_with_their_keys() -> None:
    detail = f"GetQueueAttributes={ATTRIBUTES}"
    bare = invoke("sqs", "queue", "--response", QUEUES, "--json")
    detailed = invoke("sqs", "queue", "--response", QUEUES, "--response", detail)
    detailed_json = invoke("sqs", "queue", "--response", QUEUES, "--response", detail, "--json")

    assert bare.exit_code == detailed.exit_code == detailed_json.exit_code == 0, bare.output + detailed.output
    out = json.loads(bare.stdout)
    assert {(n["operation"], tuple(n["keys"])) for n in out["not_called"]} == {
        ("GetQueueAttributes", ("resources.queue.details[0]",)),
        ("ListQueueTags", ("resources.queue.details[1]",)),
        ("GetResources", ("resources.queue.joins[0].call",)),
    }
    (queue,) = out["components"]  # without QueueArn, the external id is built from the URL
    assert queue["externalId"] == f"arn:aws:sqs:eu-west-1:{ACCOUNT}:orders"
    assert "VisibilityTimeout" not in queue["data"]  # the detail was not made: no attributes
    assert detailed.stdout.splitlines()[-3:] == [
        "not called (no saved response; the scan would add what they give):",
        "    GetResources (resources.queue.joins[0].call): --response GetResources=FILE",
        "    ListQueueTags (resources.queue.details[1]): --response ListQueueTags=FILE",
    ]
    (queue,) = json.loads(detailed_json.stdout)["components"]
    assert queue["data"]["VisibilityTimeout"] == "30"


def test_a_child_needs_its_parents_listing_and_says_which(tmp_path: Path) -> None:
    services = tmp_path / "services.json"
    services.write_text(json.dumps({"serviceArns": [f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/shop/web"]}))
    clusters = tmp_path / "clusters.json"
    clusters.write_text(json.dumps({"clusterArns": [f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/shop"]}))

    missing = invoke("ecs", "service", "--response", str(services))
    result = invoke("ecs", "service", "--response", f"ListClusters={clusters}", "--response", str(services))

    assert_bad_input(missing)
    assert missing.stderr == (
        "error: ecs.yaml: resources.cluster.list: ListClusters: no saved response; "
        "give one with --response ListClusters=FILE\n"
    )
    assert result.exit_code == 0, result.output
    assert f"aws.ecs.service  arn:aws:ecs:eu-west-1:{ACCOUNT}:service/shop/web" in result.stdout
    assert "    ListTasks (resources.task.list): --response ListTasks=FILE" in result.stdout  # a joined type


BROKEN = """\
version: 1
service: ec2
resources:
  subnet:
    type: aws.ec2.subnet
    list: {operation: DescribeSubnets, items: "Subnets[]"}
    id: SubnetId
    name: "join('-', [SubnetId, Tags[0].Value])"
"""


def test_an_expression_error_names_the_expression_its_key_and_the_item(tmp_path: Path) -> None:
    (tmp_path / "ec2.yaml").write_text(BROKEN)

    result = invoke(str(tmp_path / "ec2.yaml"), "subnet", "--response", SUBNETS)

    assert_bad_input(result)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ec2.yaml: resources.subnet: JMESPathTypeError: In function join()")
    assert lines[1:3] == [
        "  expression: join('-', [SubnetId, Tags[0].Value])",
        "  key: resources.subnet.name",
    ]
    # the second subnet has no tags: item 1 of the listing, shown short
    assert lines[3].startswith('  item 1 of DescribeSubnets: {"AssignIpv6AddressOnCreation": false, ')
    assert lines[3].endswith("...") and len(lines[3]) < 200
    assert len(lines) == 4


def test_a_missing_external_id_names_its_key_and_the_item(tmp_path: Path) -> None:
    (tmp_path / "ec2.yaml").write_text(
        BROKEN.replace("    name:", "    external_id: Tags[0].Value\n    name:")
    )

    result = invoke(str(tmp_path / "ec2.yaml"), "subnet", "--response", SUBNETS)

    assert_bad_input(result)
    assert "resources.subnet.external_id gave None for an item" in result.stderr
    assert "  item 1 of DescribeSubnets: " in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ec2", "subnet"], "give --response FILE (repeatable) or --live, not both"),
        (["ec2", "subnet", "--response", SUBNETS, "--live"], "or --live, not both"),
        (
            ["ec2", "subnet", "--response", SUBNETS, "--endpoint-url", "http://x"],
            "--endpoint-url goes with --live",
        ),
        (["nothing", "subnet", "--response", SUBNETS], "nothing.yaml: no such mapping file"),
        (["ec2", "subnets", "--response", SUBNETS], "ec2.yaml: no resource 'subnets'; it declares instance"),
        (["ec2", "subnet", "--response", "DescribeSubnets=/no/such.json"], "cannot read JSON"),
    ],
)
def test_bad_arguments_are_one_error_line(args: list[str], message: str) -> None:
    result = invoke(*args)

    assert_bad_input(result)
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.live
def test_live_calls_the_endpoint_and_shapes_what_it_answers() -> None:
    with moto_server() as endpoint:
        ec2 = boto3.client(
            "ec2", region_name="eu-west-1", endpoint_url=endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
        env = {**moto_env(endpoint), "AWS_ENDPOINT_URL": ""}
        args = ["ec2", "subnet", "--live", "--endpoint-url", endpoint, "--region", "eu-west-1", "--json"]
        result = invoke(*args, env=env)

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert subnet in {c["externalId"] for c in out["components"]}
    assert (subnet, "uses-service", vpc) in {
        (r["sourceId"], r["type"]["name"], r["targetId"]) for r in out["relations"]
    }
    assert out["not_called"] == []


def test_a_derived_type_takes_a_bare_file_for_its_nearest_listed_ancestor(tmp_path: Path) -> None:
    saved = {
        "apis": {"items": [{"id": "a1b2c3", "name": "shop"}]},
        "stages": {"item": [{"stageName": "prod", "deploymentId": "d1"}]},
        "resources": {"items": [
            {"id": "r1", "path": "/orders", "resourceMethods": {"GET": {"httpMethod": "GET"}}},
            {"id": "r0", "path": "/"},  # no methods: not a component
        ]},
    }  # fmt: skip
    for name, body in saved.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(body))
    files = {name: str(tmp_path / f"{name}.json") for name in saved}

    result = invoke(
        "apigateway", "resource", "--json", "--response", f"GetRestApis={files['apis']}",
        "--response", files["stages"], "--response", f"GetResources={files['resources']}",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    stage = f"arn:aws:execute-api:eu-west-1:{ACCOUNT}:a1b2c3/prod"
    assert [c["externalId"] for c in out["components"]] == [f"{stage}/*/orders"]
    assert [(r["sourceId"], r["targetId"]) for r in out["relations"]] == [(stage, f"{stage}/*/orders")]
