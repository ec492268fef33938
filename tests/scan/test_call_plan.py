"""`aws-topology plan` (the call plan without calling AWS), the live progress lines and the metrics file."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from engine.aws.fetch import Fetcher
from engine.cli import main
from engine.language.loader import load_mappings
from engine.metrics import metrics_text
from engine.scan.collect import UnitResult
from engine.scan.full_scan import AccountScan
from engine.scan.plan import call_plan, per_item, plan
from engine.scan.progress import LiveProgress
from tests.support import ACCOUNT, ROLE, make_config

CONF = f"""
init_config: {{aws_access_key_id: '', aws_secret_access_key: '', external_id: test}}
instances:
  - role_arn: {ROLE}
    regions: [eu-west-1, us-east-1]
    apis_to_run: [sqs, sns, s3]
"""


def calls(key: str, mappings=None) -> dict[str, tuple[str, str]]:
    mappings = mappings or load_mappings()
    [unit] = [
        u for u in plan(make_config(regions=("eu-west-1",)).instances[0], mappings) if u.resource.key == key
    ]
    return {c.operation: (c.count, c.when) for c in call_plan(unit, mappings)}


def test_the_plan_names_each_call_and_how_often_it_is_made():
    assert calls("sns.topic") == {
        "ListTopics": ("once", ""),
        "GetResources": ("once", ""),
        "ListSubscriptions": ("once", ""),
        "GetTopicAttributes": ("per item", ""),
        "ListTagsForResource": ("per item", "only if GetResources fails"),
        "ListSubscriptionsByTopic": ("per item", "only if ListSubscriptions fails"),
    }
    naive = calls("sns.topic", per_item(load_mappings()))
    assert "GetResources" not in naive and naive["ListSubscriptionsByTopic"] == ("per item", "")


def test_the_plan_command_prints_every_unit_without_calling_aws(tmp_path: Path):
    conf = tmp_path / "conf.yaml"
    conf.write_text(CONF)
    result = CliRunner().invoke(
        main, ["plan", "-c", str(conf)], env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    )

    assert result.exit_code == 0, result.output
    assert (
        f"{ACCOUNT}/account/s3.bucket" in result.output and f"{ACCOUNT}/us-east-1/sqs.queue" in result.output
    )
    assert "GetResources (resourcegroupstaggingapi)" in result.output
    assert "once in each of 2 regions" in result.output  # the bucket tags: one read per configured region


def test_progress_is_one_line_per_account_redrawn_in_place():
    fetcher, stream = Fetcher(), io.StringIO()
    fetcher.per_account[ACCOUNT] = Counter(calls=12, throttles=1)
    live = LiveProgress(fetcher, stream, interval=0)
    mappings = load_mappings()
    units = plan(make_config(regions=("eu-west-1",), apis_to_run=("sqs", "sns")).instances[0], mappings)
    live.plan(ACCOUNT, len(units))
    for unit in units:
        live.unit(UnitResult(unit))
    live.close()

    [line] = live.lines()
    assert line.startswith(f"account {ACCOUNT}: units 2/2 calls 12 throttles 1 errors 0 incomplete 0 ")
    assert stream.getvalue().count("\x1b[1F") >= 2  # redrawn over itself, not a line per unit


def test_metrics_name_types_calls_throttles_and_duration_per_account():
    fetcher = Fetcher()
    fetcher.per_account[ACCOUNT] = Counter(calls=40, throttles=3, errors=1)
    scan = AccountScan(ACCOUNT, ROLE, seconds=2.5, component_types=Counter({"aws.sqs.queue": 2}))
    text = metrics_text([scan], fetcher, 3.0, now=100)

    assert f'aws_topology_scan_components{{account="{ACCOUNT}",type="aws.sqs.queue"}} 2' in text
    assert f'aws_topology_scan_api_calls{{account="{ACCOUNT}"}} 40' in text
    assert f'aws_topology_scan_throttles{{account="{ACCOUNT}"}} 3' in text
    assert f'aws_topology_scan_duration_seconds{{account="{ACCOUNT}"}} 2.500' in text
    assert "aws_topology_scan_last_run_timestamp_seconds 100" in text
