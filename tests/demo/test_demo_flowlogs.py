"""Flow logs of the demo estate: objects written from its real interfaces (demo.flowlogs) become traffic
between its components, after a full scan of the same estate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from demo.common import client
from demo.flowlogs import seed_flowlogs
from demo.seed import seed_estate
from demo.server import reset, start
from engine.cli import main
from tests.support import moto_env

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server, endpoint = start(0)
    try:
        reset(endpoint)
        yield {"endpoint": endpoint, "ids": seed_estate(endpoint), "tmp": tmp_path_factory.mktemp("demo")}
    finally:
        server.stop()


def test_the_demo_estates_traffic_relates_its_components(demo: dict[str, Any], dns_table: dict) -> None:
    ids, tmp = demo["ids"], demo["tmp"]
    dns_table[ids["rds_endpoints"]["inventory-db"]] = ["10.0.16.50"]  # inside the VPC, as AWS resolves it
    env = moto_env(demo["endpoint"])
    common = ["-c", "demo/conf.yaml", "--out", str(tmp / "out"), "--state", str(tmp / "state.sqlite")]
    scan = CliRunner().invoke(main, ["scan", *common], env=env)
    assert scan.exit_code == 0, scan.output
    seeded = seed_flowlogs(demo["endpoint"])
    result = CliRunner().invoke(main, ["flowlogs", *common], env=env)
    assert result.exit_code == 0, result.output
    assert "objects=2 records=17 connections=6 direct_relations=5" in result.output
    assert "skipped_nat_or_load_balancer=2 skipped_no_data=1 skipped_public=1" in result.output
    [payload] = [json.loads(p.read_text()) for p in sorted((tmp / "out").glob("run-*/flowlogs-*.json"))]
    relations = {(r["sourceId"], r["targetId"]): r["data"] for r in payload["topologies"][0]["relations"]}
    hosts, rds, vpc = ids["instance_ids"], ids["rds_instance_arns"], seeded["vpc"]
    function = ids["lambda_function_arns"]["order-processor"]
    direct = {(s, t) for s, t in relations if not s.startswith("local/")}
    assert direct == {
        (hosts["web-1"], rds["inventory-db"]),  # through the RDS instance's resolved address
        (function, rds["inventory-db"]),  # the Lambda function's interface names it
        (hosts["web-1"], hosts["db-1"]),
        (hosts["ecs-1"], hosts["web-2"]),
        (hosts["ecs-1"], hosts["web-1"]),  # from the custom-format object
    }  # orders-aurora-1's endpoint does not resolve here: its side stays a vpc.request placeholder
    aurora = f"remote/{vpc}/10.0.16.10/10.0.16.51"
    assert (f"local/{vpc}/10.0.16.10/10.0.16.51", aurora) in relations
    web_db = relations[(f"local/{vpc}/10.0.0.10/10.0.16.50", f"remote/{vpc}/10.0.0.10/10.0.16.50")]
    assert (web_db["bytes_sent"], web_db["bytes_received"]) == (12_000, 60_000)  # each byte once
    assert relations[(hosts["web-1"], rds["inventory-db"])]["bytes_sent"] == 12_000
    s3 = client("s3", "eu-west-1", demo["endpoint"])
    assert s3.list_objects_v2(Bucket=seeded["bucket"]).get("Contents", []) == []  # delivered, then deleted
