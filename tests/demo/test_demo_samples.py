"""demo.samples: a samples file's seed steps, made with boto3 against moto, with `${...}` from the context."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.common import client
from demo.samples import SeedError, resolve, seed_samples, warm_calls
from engine.language.loader import load_mappings
from engine.language.samples import load_samples
from tests.language.test_mappings import QUEUE, write
from tests.support import moto_server

CONTEXT = {"vpc_id": "vpc-1", "subnet_ids": {"eu-west-1a": "subnet-a", "eu-west-1b": "subnet-b"}}


def test_a_whole_placeholder_keeps_its_value_and_others_become_text() -> None:
    params = {
        "Ids": "${values(subnet_ids)}",
        "Name": "in ${vpc_id}",
        "N": 3,
        "L": ['${subnet_ids."eu-west-1a"}'],
    }
    assert resolve(params, CONTEXT, "w") == {
        "Ids": ["subnet-a", "subnet-b"], "Name": "in vpc-1", "N": 3, "L": ["subnet-a"]}  # fmt: skip


def test_an_unknown_name_names_the_step_and_the_expression() -> None:
    with pytest.raises(SeedError) as caught:
        resolve({"VpcId": "${vcp_id}"}, CONTEXT, "samples/efs.yaml: seed[1] (efs.CreateMountTarget)")
    assert str(caught.value) == (
        "samples/efs.yaml: seed[1] (efs.CreateMountTarget): ${vcp_id} names nothing in the context "
        "(known: subnet_ids, vpc_id)"
    )


SEED = """\
version: 1
seed:
  - call: sqs.CreateQueue
    params: {QueueName: "${name}-1"}
    save: {url: QueueUrl}
  - call: sqs.TagQueue
    params: {QueueUrl: "${url}", Tags: {vpc: "${vpc_id}"}}
"""


def test_seed_steps_run_in_order_with_earlier_saves(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", QUEUE)
    write(tmp_path / "samples", "sqs.yaml", SEED)
    [samples] = load_samples(load_mappings(tmp_path), tmp_path / "samples")
    with moto_server() as endpoint:
        context = seed_samples(endpoint, samples, {"name": "orders", "vpc_id": "vpc-1"})
        sqs = client("sqs", "eu-west-1", endpoint)
        assert context["url"].endswith("/orders-1")
        assert sqs.list_queue_tags(QueueUrl=context["url"])["Tags"] == {"vpc": "vpc-1"}


def test_a_failed_call_names_the_step(tmp_path: Path) -> None:
    write(tmp_path, "sqs.yaml", QUEUE)
    write(tmp_path / "samples", "sqs.yaml", SEED.replace('"${url}"', "https://nowhere/q"))
    [samples] = load_samples(load_mappings(tmp_path), tmp_path / "samples")
    with moto_server() as endpoint, pytest.raises(SeedError) as caught:
        seed_samples(endpoint, samples, {"name": "orders", "vpc_id": "vpc-1"})
    assert str(caught.value).startswith("samples/sqs.yaml: seed[1] (sqs.TagQueue): ")


def test_warm_calls_cover_each_seeded_service_not_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mapping file's first root listing where the service has one, else botocore's first input-free
    List*/Describe*; services warmed already are left out."""
    write(tmp_path, "sqs.yaml", QUEUE)
    text = SEED + "  - call: efs.DescribeFileSystems\n  - call: sns.ListTopics\n"
    write(tmp_path / "samples", "sqs.yaml", text)
    mappings = load_mappings(tmp_path)
    monkeypatch.setattr("demo.samples.shipped", lambda: load_samples(mappings, tmp_path / "samples"))
    monkeypatch.setattr("demo.samples.load_mappings", lambda: mappings)
    assert warm_calls({"sns"}) == {"sqs": ("list_queues", {}), "efs": ("describe_access_points", {})}


def test_no_samples_file_adds_no_warm_up_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("demo.samples.shipped", lambda: ())
    assert warm_calls(set()) == {}
