"""`aws-topology new SERVICE`: a first mapping file and samples file from botocore's model that load with the
shipped ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from engine.core.paths import MAPPINGS
from engine.language.loader import load_mappings
from engine.language.samples import load_samples

# Three services with listings, resources botocore can create and event names; the first three not mapped yet.
NEW = [
    s for s in ("efs", "elasticache", "eks", "kafka", "mq", "docdb") if not (MAPPINGS / f"{s}.yaml").exists()
][:3]


@pytest.mark.parametrize("service", NEW)
def test_a_new_service_gets_a_mapping_and_a_samples_file_that_pass_validate(
    service: str, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    result = CliRunner().invoke(main, ["new", service, "--mappings", str(mappings)])

    assert result.exception is None and result.exit_code == 0, result.output
    written = mappings / f"{service}.yaml"
    samples = mappings / "samples" / f"{service}.yaml"
    assert result.output.startswith(f"wrote {written}: ") and f", and {samples}; " in result.output
    assert written.read_text().startswith("# yaml-language-server: $schema=../schemas/mapping.schema.json\n")
    assert samples.read_text().startswith(
        "# yaml-language-server: $schema=../../schemas/samples.schema.json\n"
    )
    loaded = load_mappings(mappings)  # raises, naming file and key, on any problem
    types = {r.type for r in loaded.resources if r.file == f"{service}.yaml"}
    assert len(types) >= 1 and all(t.startswith(f"aws.{service}.") for t in types)
    [scaffolded] = [s for s in load_samples(loaded, mappings / "samples") if s.name == service]  # raises too
    assert set(scaffolded.components) == types and scaffolded.seed and not scaffolded.events


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
    repository = yaml.safe_load(scaffold("ecr"))["resources"]["repository"]
    assert repository["id"] == "repositoryName"  # its own name before another's id (registryId)


def test_the_samples_file_seeds_what_botocore_can_create_with_its_required_parameters() -> None:
    from engine.language.scaffold import scaffold_samples

    samples = yaml.safe_load(scaffold_samples("efs"))
    assert samples["seed"] == [
        {
            "call": "efs.CreateAccessPoint",
            "params": {"FileSystemId": "TODO"},
        },  # ClientToken: botocore fills it
        {"call": "efs.CreateFileSystem", "params": {}},
        {"call": "efs.CreateMountTarget", "params": {"FileSystemId": "TODO", "SubnetId": "TODO"}},
    ]
    assert samples["expect"] == {
        "components": {
            f"aws.efs.{t}": 0 for t in ("access-point", "file-system", "mount-target", "replication")
        },
        "relations": {},
    }
    assert samples["events"] == []  # the scaffold writes no event rule


def test_an_existing_samples_file_is_not_overwritten(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    (mappings / "samples").mkdir(parents=True)
    (mappings / "samples" / "efs.yaml").write_text("version: 1\n")
    result = CliRunner().invoke(main, ["new", "efs", "--mappings", str(mappings)])
    assert result.exit_code == 2 and "samples/efs.yaml exists already" in result.output
    assert not (mappings / "efs.yaml").exists()


def test_a_mappings_folder_that_does_not_exist_yet_is_made(tmp_path: Path) -> None:
    mappings = tmp_path / "new" / "mappings"
    result = CliRunner().invoke(main, ["new", "efs", "--mappings", str(mappings)])
    assert result.exception is None and result.exit_code == 0, result.output
    assert (mappings / "efs.yaml").is_file() and (mappings / "samples" / "efs.yaml").is_file()


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
