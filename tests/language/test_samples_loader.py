"""Samples files (mappings/samples/*.yaml): every problem is reported as `samples/file: key: problem`, and
`validate` checks them like the mapping files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import cli
from engine.core.errors import MappingErrors
from engine.core.paths import SCHEMAS
from engine.language.loader import Mappings, load_mappings
from engine.language.samples import load_samples
from tests.language.test_mappings import QUEUE, _undescribed, write

GOOD = """\
# yaml-language-server: $schema=../../schemas/samples.schema.json
version: 1
regions: [eu-west-1]
seed:
  - call: sqs.CreateQueue
    params: {QueueName: "demo-${account}"}
    save: {url: QueueUrl}
  - call: sqs.TagQueue
    region: us-east-1
    params: {QueueUrl: "${url}", Tags: {team: web}}
expect:
  components: {aws.sqs.queue: 1}
  relations: {}
events:
  - label: sqs-create-queue
    detail: {eventSource: sqs.amazonaws.com, eventName: CreateQueue}
    refresh: {sqs.queue: [q]}
"""


CONF = """\
init_config: {external_id: test-external-id}
instances: [{role_arn: "arn:aws:iam::123456789012:role/R", regions: [eu-west-1]}]
"""


@pytest.fixture
def mappings(tmp_path: Path) -> Mappings:
    write(tmp_path, "sqs.yaml", QUEUE)
    return load_mappings(tmp_path)


def problems(mappings: Mappings, directory: Path, text: str, name: str = "sqs.yaml") -> list[str]:
    write(directory / "samples", name, text)
    with pytest.raises(MappingErrors) as caught:
        load_samples(mappings, directory / "samples")
    return str(caught.value).splitlines()


def test_a_good_file_loads_with_its_defaults(mappings: Mappings, tmp_path: Path) -> None:
    write(tmp_path / "samples", "sqs.yaml", GOOD)
    [samples] = load_samples(mappings, tmp_path / "samples")
    assert (samples.name, samples.file, samples.regions) == ("sqs", "samples/sqs.yaml", ("eu-west-1",))
    first, second = samples.seed
    assert (first.service, first.operation, first.region, dict(first.save)) == (
        "sqs", "CreateQueue", "eu-west-1", {"url": "QueueUrl"})  # fmt: skip
    assert second.region == "us-east-1"
    [event] = samples.events
    assert event.source == "aws.sqs" and event.detail_type == "AWS API Call via CloudTrail"
    assert dict(event.refresh) == {"sqs.queue": ("q",)} and dict(event.delete) == {}


def test_no_samples_folder_is_no_samples(mappings: Mappings, tmp_path: Path) -> None:
    assert load_samples(mappings, tmp_path / "absent") == ()


def test_a_schema_problem_names_the_file_and_the_key(mappings: Mappings, tmp_path: Path) -> None:
    text = GOOD.replace("regions: [eu-west-1]", "regions: [eu-west-1]\nregoins: [x]")
    assert problems(mappings, tmp_path, text) == [
        "samples/sqs.yaml: -: Additional properties are not allowed ('regoins' was unexpected)"
    ]
    assert problems(mappings, tmp_path, GOOD.replace("call: sqs.TagQueue", "call: TagQueue")) == [
        "samples/sqs.yaml: seed[1].call: 'TagQueue' does not match '^[a-z0-9-]+\\\\.[A-Z][A-Za-z0-9]*$'"
    ]


def test_a_call_must_be_a_botocore_service_and_operation(mappings: Mappings, tmp_path: Path) -> None:
    text = GOOD.replace("sqs.TagQueue", "sqss.TagQueue").replace("sqs.CreateQueue", "sqs.MakeQueue")
    assert problems(mappings, tmp_path, text) == [
        "samples/sqs.yaml: seed[0].call: sqs has no operation 'MakeQueue'",
        "samples/sqs.yaml: seed[1].call: 'sqss' is not a botocore service name",
    ]


def test_params_must_be_the_operations(mappings: Mappings, tmp_path: Path) -> None:
    text = GOOD.replace("{QueueName: ", "{QueueNme: ")
    [unknown, missing] = problems(mappings, tmp_path, text)
    assert unknown.startswith(
        "samples/sqs.yaml: seed[0].params.QueueNme: not a parameter of the operation: one of"
    )
    assert "QueueName" in unknown
    assert missing == "samples/sqs.yaml: seed[0].params: misses the required parameter 'QueueName'"


def test_a_placeholder_and_a_save_must_be_jmespath(mappings: Mappings, tmp_path: Path) -> None:
    text = GOOD.replace("${url}", "${url[}").replace("{url: QueueUrl}", "{url: 'Queue[Url'}")
    [save, placeholder] = problems(mappings, tmp_path, text)
    assert placeholder.startswith("samples/sqs.yaml: seed[1].params: ${url[}: invalid JMESPath 'url['")
    assert save.startswith("samples/sqs.yaml: seed[0].save.url: invalid JMESPath 'Queue[Url'")


def test_refresh_and_delete_keys_are_resources_of_the_mapping_file(
    mappings: Mappings, tmp_path: Path
) -> None:
    text = GOOD.replace(
        "refresh: {sqs.queue: [q]}", "refresh: {sqs.queues: [q]}\n    delete: {sns.topic: [t]}"
    )
    assert problems(mappings, tmp_path, text) == [
        "samples/sqs.yaml: events[0].refresh.sqs.queues: not a resource of sqs.yaml: one of sqs.queue",
        "samples/sqs.yaml: events[0].delete.sns.topic: not a resource of sqs.yaml: one of sqs.queue",
    ]


def test_expected_components_are_types_of_the_mapping_file(mappings: Mappings, tmp_path: Path) -> None:
    text = GOOD.replace("{aws.sqs.queue: 1}", "{aws.sqs.queue: 1, aws.sqs.qeue: 0}")
    assert problems(mappings, tmp_path, text) == [
        "samples/sqs.yaml: expect.components.aws.sqs.qeue: not a component type of sqs.yaml: "
        "one of aws.sqs.queue"
    ]


def test_a_samples_file_is_named_after_a_mapping_file(mappings: Mappings, tmp_path: Path) -> None:
    text = GOOD.replace("\nevents:\n  - label: sqs-create-queue\n", "\nevents:\n  - label: x\n")
    found = problems(mappings, tmp_path, text, name="sns.yaml")
    assert found[0] == (
        "samples/sns.yaml: -: no mapping file sns.yaml declares resources (a samples file is named after one)"
    )


def test_a_label_is_used_once(mappings: Mappings, tmp_path: Path) -> None:
    event = GOOD.split("events:\n")[1]
    assert problems(mappings, tmp_path, GOOD + event) == [
        "samples/sqs.yaml: events: label 'sqs-create-queue' is used twice"
    ]


def test_validate_checks_the_samples_files(tmp_path: Path) -> None:
    write(tmp_path / "mappings", "sqs.yaml", QUEUE)
    write(tmp_path / "mappings" / "samples", "sqs.yaml", GOOD.replace("sqs.CreateQueue", "sqs.MakeQueue"))
    conf = write(tmp_path, "conf.yaml", CONF)
    args = ["validate", "-c", str(conf), "--mappings", str(tmp_path / "mappings")]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2
    assert result.stderr == "error: samples/sqs.yaml: seed[0].call: sqs has no operation 'MakeQueue'\n"
    write(tmp_path / "mappings" / "samples", "sqs.yaml", GOOD)
    assert CliRunner().invoke(cli.main, args).exit_code == 0


def test_every_property_of_the_samples_schema_has_a_description() -> None:
    schema = json.loads((SCHEMAS / "samples.schema.json").read_text(encoding="utf-8"))
    assert _undescribed(schema, "$") == []
