"""The StackPack views as STQL, console actions, and the two sources of the last snapshot.

The snapshot tests read a small estate seeded in moto and scanned by `aws-topology scan --out --state`
(tests/view/view_estate.py): the state and the payload files must give the same components, and the views must
select what the StackPack page says they hold.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from engine.core.config import Instance, load_config
from engine.core.state import State
from engine.language.components import relation
from engine.language.loader import MAPPINGS, load_mappings
from engine.scan.last_snapshot import Snapshot, SnapshotError, from_payloads, from_state
from engine.view.page import page_data
from engine.view.stql import ViewError, console_actions, views_for
from tests.support import ACCOUNT, ROLE, shared_mappings
from tests.view.view_estate import REGION, scanned_estate

pytestmark = pytest.mark.live
INFRASTRUCTURE = {"Networking", "Storage", "Machines"}


@pytest.fixture(scope="module")
def mappings():
    return load_mappings()


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory):
    return scanned_estate(tmp_path_factory.getbasetemp() / "views-estate")


def _payload_components(out: Path) -> dict[str, dict]:
    return {
        c["externalId"]: c
        for path in out.glob("run-*/scan-*.json")
        for t in json.loads(path.read_text())["topologies"]
        for c in t["components"]
    }


def test_views_command_prints_three_named_stql_queries_per_account(tmp_path: Path):
    config = tmp_path / "conf.yaml"
    second = ROLE.replace(ACCOUNT, "210987654321")
    config.write_text(
        "init_config: {external_id: test-external-id}\ninstances:\n"
        f"  - {{role_arn: '{ROLE}', regions: [eu-west-1]}}\n"
        f"  - {{role_arn: '{second}', regions: [us-east-1]}}\n"
    )

    text = CliRunner().invoke(main, ["views", "-c", str(config)])
    listed = CliRunner().invoke(main, ["views", "-c", str(config), "--json"])

    assert text.exit_code == 0 and listed.exit_code == 0, text.output + listed.output
    views = json.loads(listed.output)
    names = [v["name"] for v in views]
    assert names == [
        f"AWS - {a} - {t}" for a in (ACCOUNT, "210987654321") for t in ("All", "Infrastructure", "Serverless")
    ]
    for view in views:
        account = view["name"].split(" - ")[1]
        assert view["query"].startswith(
            f'label IN ("stackpack:aws-v2") AND label IN ("integration-url:{account}")'
        )
        assert f"{view['name']}\n    {view['query']}" in text.output
    infrastructure = views[1]["query"]
    assert (
        'layer IN ("Machines", "Networking", "Storage")' in infrastructure
        and 'domain IN ("AWS")' in infrastructure
    )


def test_view_sets_come_from_the_mappings_declarations(mappings):
    all_view, infrastructure, serverless = views_for(
        Instance(role_arn=ROLE, regions=("eu-west-1",)), mappings
    )
    declared = {r.layer for r in mappings.resources if r.emits_component}

    assert all_view.layers is None and all_view.types is None
    assert set(infrastructure.layers) == INFRASTRUCTURE <= declared
    assert set(infrastructure.domains) == {r.domain for r in mappings.resources if r.layer in INFRASTRUCTURE}
    by_type = {t: r for r in mappings.resources if r.emits_component for t in r.types}
    assert {by_type[t].service for t in serverless.types} == {"s3", "lambda", "elbv2"}
    assert {t for t in serverless.types if by_type[t].service == "elbv2"} == {
        "aws.elb-v2.application-load-balancer"
    }
    lambda_types = {
        t for r in mappings.resources if r.service == "lambda" and r.emits_component for t in r.types
    }
    assert lambda_types <= set(serverless.types)
    assert re.search(r'type IN \("[^)]*"aws\.s3\.bucket"', serverless.query)


def test_views_follow_a_changed_mapping_and_refuse_a_missing_layer(tmp_path: Path):
    changed = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, changed)
    s3 = yaml.safe_load((changed / "s3.yaml").read_text())
    s3["resources"]["bucket"]["type"] = "aws.s3.bucket-v2"
    (changed / "s3.yaml").write_text(yaml.safe_dump(s3, sort_keys=False))
    instance = Instance(role_arn=ROLE, regions=("eu-west-1",))

    serverless = views_for(instance, load_mappings(changed))[2]
    assert "aws.s3.bucket-v2" in serverless.types and "aws.s3.bucket" not in serverless.types

    for path in changed.glob("*.yaml"):
        path.write_text(path.read_text().replace("layer: Storage", "layer: Data"))
    with pytest.raises(ViewError, match="Storage"):
        views_for(instance, load_mappings(changed))


def test_an_instance_layer_or_domain_override_keeps_the_infrastructure_view_selecting_its_types(mappings):
    instance = Instance(role_arn=ROLE, regions=("eu-west-1",), layer="Everything", domain="Shop")
    infrastructure = views_for(instance, mappings)[1]
    vpc = {"type": {"name": "aws.ec2.vpc"}, "data": {"layer": "Everything", "domain": "Shop",
           "labels": ["stackpack:aws-v2"], "tags": [f"integration-url:{ACCOUNT}"]}}  # fmt: skip
    queue = {**vpc, "type": {"name": "aws.sqs.queue"}}

    assert infrastructure.layers is None and "aws.ec2.vpc" in infrastructure.types
    assert 'domain IN ("Shop")' in infrastructure.query
    assert infrastructure.matches(vpc) and not infrastructure.matches(queue)
    other_account = {**vpc, "data": {**vpc["data"], "tags": ["integration-url:210987654321"]}}
    assert not infrastructure.matches(other_account)


def test_console_actions_name_the_console_and_every_mapped_console_is_known(mappings):
    actions = console_actions(mappings)
    assert actions["aws.ec2.instance"] == "Go to EC2 console"
    assert actions["aws.ec2.subnet"] == "Go to Subnet console"
    assert actions["aws.ec2.vpc"] == "Go to VPC console"
    assert actions["aws.stepfunction.statemachine"] == "Go to Step Functions console"
    assert "aws.apigateway.method.http.integration" not in actions  # no console link, no action
    # The StackPack's names for every console the mappings link to, each declared in a mapping file.
    # (A service with a cassette of its own, added later, declares its console_name: checked below.)
    names = "API Gateway,CloudFormation,DynamoDB,EC2,ECS,Firehose,Kinesis,Lambda,RDS,Redshift,Route 53,S3"
    names += ",SNS,SQS,Step Functions,VPC,Subnet,VPN Gateway,NAT Gateway"
    core = console_actions(shared_mappings(mappings))
    assert set(core.values()) == {f"Go to {name} console" for name in names.split(",")}
    linked = {t for r in mappings.resources if r.emits_component and r.console is not None for t in r.types}
    assert linked and set(actions) == linked
    declared = set()
    for path in MAPPINGS.glob("*.yaml"):
        declared |= set(re.findall(r"^\s*console_name: ([^#\n]+?)\s*(?:#.*)?$", path.read_text(), re.M))
    assert {a.removeprefix("Go to ").removesuffix(" console") for a in actions.values()} <= declared


def test_the_page_names_each_console_link_after_the_mapping_and_a_link_without_a_known_type_generically():
    console = "https://eu-west-1.console.aws.amazon.com/x"
    components = [
        {"externalId": "a", "type": {"name": "aws.ec2.subnet"}, "data": {"ConsoleUrl": console}},
        {"externalId": "b", "type": {"name": "aws.gone.thing"}, "data": {"ConsoleUrl": console}},
        {"externalId": "c", "type": {"name": "aws.ec2.subnet"}, "data": {}},
    ]
    snapshot = Snapshot("test", [ACCOUNT], components, [], {})
    nodes = page_data(snapshot, [], actions={"aws.ec2.subnet": "Go to Subnet console"})["nodes"]
    assert [n["action"] for n in nodes] == ["Go to Subnet console", "Go to AWS console", None]


def test_state_and_payload_files_give_the_same_snapshot_of_the_seeded_estate(estate, mappings):
    config = load_config(estate.config)
    from_files = from_payloads(estate.out, config)
    stored = from_state(estate.state, config, mappings)
    sent = _payload_components(estate.out)

    assert (
        {c["externalId"] for c in stored.components}
        == set(sent)
        == {c["externalId"] for c in from_files.components}
    )
    assert {r["externalId"] for r in stored.relations} == {r["externalId"] for r in from_files.relations}
    assert stored.notes == [] and from_files.notes == []
    seeded = estate.seeded
    assert {estate.seeded["instance"], seeded["alb"], seeded["nlb"]} <= set(sent)
    assert {f"arn:aws:s3:::{b}" for b in seeded["buckets"]} <= set(sent)


def test_the_views_select_what_the_stackpack_page_says(estate, mappings):
    config = load_config(estate.config)
    snapshot = from_state(estate.state, config, mappings)
    data = page_data(snapshot, views_for(config.instances[0], mappings))
    members = {v["title"]: {snapshot.components[i]["externalId"] for i in v["nodes"]} for v in data["views"]}
    sent = _payload_components(estate.out)
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{estate.seeded['functions'][0]}"

    assert members["All"] == set(sent)
    assert members["Infrastructure"] == {i for i, c in sent.items() if c["data"]["layer"] in INFRASTRUCTURE}
    assert (
        estate.seeded["instance"] in members["Infrastructure"]
        and estate.seeded["vpc"] in members["Infrastructure"]
    )
    assert function in members["Serverless"] and estate.seeded["alb"] in members["Serverless"]
    assert estate.seeded["nlb"] not in members["Serverless"]
    assert {sent[i]["type"]["name"] for i in members["Serverless"]} == {
        "aws.s3.bucket", "aws.lambda.function", "aws.lambda.alias", "aws.elb-v2.application-load-balancer",
    }  # fmt: skip
    queue = next(i for i, c in sent.items() if c["type"]["name"] == "aws.sqs.queue")
    assert queue in members["All"] and queue not in members["Infrastructure"] | members["Serverless"]


def test_the_state_notes_units_that_never_completed_and_a_missing_state_is_bad_input(
    estate, mappings, tmp_path
):
    config = load_config(estate.config)
    wider = tmp_path / "conf.yaml"
    raw = yaml.safe_load(estate.config.read_text())
    raw["instances"][0]["apis_to_run"].append("sns")
    wider.write_text(yaml.safe_dump(raw))

    snapshot = from_state(estate.state, load_config(wider), mappings)
    assert snapshot.notes == [f"account {ACCOUNT}: 1 unit(s) never completed: {ACCOUNT}/{REGION}/sns.topic"]
    assert len(snapshot.components) == len(from_state(estate.state, config, mappings).components)
    with pytest.raises(SnapshotError, match="run a scan first"):
        from_state(tmp_path / "nothing.sqlite", config, mappings)
    result = CliRunner().invoke(
        main, ["view", "-c", str(estate.config), "--state", str(tmp_path / "no.sqlite")]
    )
    assert result.exit_code == 2 and "run a scan first" in result.output


def test_payload_folders_without_a_manifest_are_not_read(estate, tmp_path):
    config = load_config(estate.config)
    run = next(estate.out.glob("run-*"))
    broken = tmp_path / "out" / "run-29990101T000000Z-1"
    broken.mkdir(parents=True)
    for path in run.glob("scan-*.json"):
        payload = json.loads(path.read_text())
        payload["topologies"][0]["components"] = payload["topologies"][0]["components"][:1]
        (broken / path.name).write_text(json.dumps(payload))
    shutil.copytree(run, tmp_path / "out" / run.name)

    snapshot = from_payloads(tmp_path / "out", config)
    assert {c["externalId"] for c in snapshot.components} == set(_payload_components(estate.out))
    with pytest.raises(SnapshotError, match="no run folder"):
        from_payloads(broken, config)


def test_view_command_writes_one_offline_page_and_says_what_it_holds(estate, tmp_path, monkeypatch):
    out = tmp_path / "page" / "topology.html"
    result = CliRunner().invoke(
        main, ["view", "-c", str(estate.config), "--state", str(estate.state), "--out", str(out)]
    )
    sent = _payload_components(estate.out)

    assert result.exit_code == 0, result.output
    assert (
        f"{len(sent)} components" in result.output and f"AWS - {ACCOUNT} - All: {len(sent)}" in result.output
    )
    html = out.read_text()
    assert "cytoscape" in html and not re.search(r"<(script|link)[^>]+(src|href)=", html)  # nothing fetched
    assert len(re.findall(r"</script>", html, re.IGNORECASE)) == 3  # data, library, app: none closed early
    block = re.search(r'<script type="application/json" id="topology-data">(.*?)</script>', html, re.S)
    data = json.loads(block.group(1))
    assert {n["id"] for n in data["nodes"]} == set(sent)

    monkeypatch.setattr("engine.view.page.LIBRARY", tmp_path / "missing.js")
    missing = CliRunner().invoke(main, ["view", "-c", str(estate.config), "--state", str(estate.state),
                                        "--out", str(tmp_path / "x.html")])  # fmt: skip
    assert missing.exit_code == 2 and "npm ci" in missing.output


def test_each_accounts_views_hold_only_that_accounts_components(mappings):
    other = "210987654321"
    instances = [
        Instance(role_arn=ROLE, regions=("eu-west-1",)),
        Instance(role_arn=ROLE.replace(ACCOUNT, other), regions=("eu-west-1",)),
    ]
    kinds = (
        ("aws.ec2.vpc", "Networking"),
        ("aws.lambda.function", "Serverless"),
        ("aws.sqs.queue", "Messaging"),
    )
    components = [
        {"externalId": f"{account}-{type_name}", "type": {"name": type_name},
         "data": {"layer": layer, "domain": "AWS", "labels": ["stackpack:aws-v2"],
                  "tags": [f"integration-url:{account}"]}}
        for account in (ACCOUNT, other)
        for type_name, layer in kinds
    ]  # fmt: skip
    snapshot = Snapshot("test", [ACCOUNT, other], components, [], {ACCOUNT: 0, other: 0})
    views = [v for instance in instances for v in views_for(instance, mappings)]

    data = page_data(snapshot, views)
    held = {v["name"]: sorted(components[i]["externalId"] for i in v["nodes"]) for v in data["views"]}
    assert held == {
        f"AWS - {a} - {title}": sorted(f"{a}-{t}" for t in types)
        for a in (ACCOUNT, other)
        for title, types in (("All", ["aws.ec2.vpc", "aws.lambda.function", "aws.sqs.queue"]),
                             ("Infrastructure", ["aws.ec2.vpc"]), ("Serverless", ["aws.lambda.function"]))
    }  # fmt: skip


def test_view_command_reads_payload_files_with_from(estate, tmp_path):
    out = tmp_path / "from-files.html"
    args = ["view", "-c", str(estate.config), "--from", str(estate.out), "--out", str(out)]
    result = CliRunner().invoke(main, args)

    assert result.exit_code == 0, result.output
    assert f"from payloads {estate.out}" in result.output
    assert f"{len(_payload_components(estate.out))} components" in result.output and out.is_file()
    missing = CliRunner().invoke(main, ["view", "-c", str(estate.config), "--from", str(tmp_path)])
    assert missing.exit_code == 2 and "no run folder with a manifest.json" in missing.output


def test_the_state_snapshot_adds_the_accounts_trace_relations_marked_as_traced(estate, mappings, tmp_path):
    config = load_config(estate.config)
    state_path = tmp_path / "state.sqlite"
    shutil.copyfile(estate.state, state_path)
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{estate.seeded['functions'][0]}"
    bucket = f"arn:aws:s3:::{estate.seeded['buckets'][0]}"
    with State(state_path) as state:
        state.trace_relations_save(ACCOUNT, {(function, bucket, "uses-service"): (1.0, 2.0)})
        state.trace_relations_save("999999999999", {(function, bucket, "other-account"): (1.0, 2.0)})
    snapshot = from_state(state_path, config, mappings)
    plain = from_state(estate.state, config, mappings)
    scanned = {r["externalId"] for r in plain.relations}
    added = [r for r in snapshot.relations if r["externalId"] not in scanned]
    assert added == [relation(function, bucket, "uses-service", {"Source": "OpenTelemetry traces"})]
    data = page_data(snapshot, views_for(config.instances[0], mappings))
    index = {c["externalId"]: i for i, c in enumerate(snapshot.components)}
    assert [r for r in data["relations"] if r.get("traced")] == [
        {"s": index[function], "t": index[bucket], "type": "uses-service", "traced": 1}
    ]
