"""`aws-topology new SERVICE`: a first mapping file from botocore's model that loads with the shipped ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from engine.core.paths import MAPPINGS
from engine.language.loader import load_mappings


@pytest.mark.parametrize("service", ["efs", "elasticache", "eks"])
def test_a_new_service_gets_a_mapping_that_passes_validate(service: str, tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    result = CliRunner().invoke(main, ["new", service, "--mappings", str(mappings)])

    assert result.exception is None and result.exit_code == 0, result.output
    written = mappings / f"{service}.yaml"
    assert result.output.startswith(f"wrote {written}: ")
    assert written.read_text().startswith("# yaml-language-server: $schema=../schemas/mapping.schema.json\n")
    loaded = load_mappings(mappings)  # raises, naming file and key, on any problem
    types = {r.type for r in loaded.resources if r.file == f"{service}.yaml"}
    assert len(types) >= 1 and all(t.startswith(f"aws.{service}.") for t in types)


def test_each_resource_takes_the_items_own_id_and_arn() -> None:
    from engine.language.scaffold import scaffold

    resources = yaml.safe_load(scaffold("efs"))["resources"]
    assert resources["file-system"] == {
        "type": "aws.efs.file-system",
        "list": {"operation": "DescribeFileSystems", "items": "FileSystems[]"},
        "id": "FileSystemId",  # its own id, not the OwnerId it also has
        "external_id": "FileSystemArn",
        "name": "Name",
    }
    assert yaml.safe_load(scaffold("eks"))["resources"]["cluster"]["list"]["items"] == "clusters[].{Name: @}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["new", "sqs"], "mappings/sqs.yaml exists already"),
        (["new", "nosuchservice"], "nosuchservice: not a boto3 client name"),
    ],
)
def test_an_existing_file_or_an_unknown_service_is_a_clear_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)  # said, not raised
    assert message in result.output and result.output.startswith("error: ")
