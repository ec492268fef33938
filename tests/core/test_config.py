"""Tests for engine.core.config: the check's conf.yaml loads as is, and every bad input gives one clear
line."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from engine.core.config import SCHEMA_PATH, Config, Instance, api_filter, load_config
from engine.core.errors import BadInput, ConfigError

ROLE = "arn:aws:iam::123456789012:role/StackStateAwsIntegrationRole"

# The "Agent on Linux VM" example of the StackPack docs ("Configure the AWS check"), verbatim.
DOCS_EXAMPLE = """\
# values in init_config are used globally; 
# these credentials will be used for all AWS accounts
init_config:
  aws_access_key_id: ''
  aws_secret_access_key: ''
  external_id: uniquesecret!1 
  # full_run_interval: 3600

instances:
  - role_arn: arn:aws:iam::123456789012:role/StackStateAwsIntegrationRole
    regions:
      - global # a special "region" used for global resources
      - eu-west-1
    # min_collection_interval: 60 # use in place of collection_interval for Agent v2.14.x or earlier 
    collection_interval: 60 # The amount of time in seconds between each scan. Decreasing this value will not appreciably increase topology update speed.
    # apis_to_run:
    #   - ec2
    # log_bucket_name: '' 
    # tags:
    #   - foo:bar
"""  # noqa: W291, E501 - copied as is, trailing blanks included

BASE: dict[str, Any] = {
    "init_config": {"aws_access_key_id": "", "aws_secret_access_key": "", "external_id": "uniquesecret!1"},
    "instances": [{"role_arn": ROLE, "regions": ["global", "eu-west-1"]}],
}


def write(tmp_path: Path, content: str | dict[str, Any], name: str = "conf.yaml") -> Path:
    """Write YAML text, or a dict dumped as YAML, and return the file path."""
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return path


def config_with(tmp_path: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    """Write BASE after applying `change` to a deep copy of it."""
    data = copy.deepcopy(BASE)
    change(data)
    return write(tmp_path, data)


def error_of(path: Path) -> ConfigError:
    """The ConfigError load_config raises for `path`."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


# --- valid files ---------------------------------------------------------------------------------


def test_stackpack_docs_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DOCS_EXAMPLE))
    assert config.external_id == "uniquesecret!1"
    assert config.access_key_id is None and config.secret_access_key is None
    (instance,) = config.instances
    assert instance.role_arn == ROLE
    assert instance.regions == ("global", "eu-west-1")
    assert instance.collection_interval == 60


def test_cluster_check_flags_are_accepted(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["cluster_check"] = True
        data["instances"][0]["cluster_check"] = True

    assert len(load_config(config_with(tmp_path, change)).instances) == 1


def test_defaults_are_applied(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.full_run_interval == 3600
    assert config.path == str(tmp_path / "conf.yaml")
    (instance,) = config.instances
    assert instance.collection_interval == 60
    assert instance.apis_to_run is None
    assert instance.log_bucket_name == instance.flowlog_bucket_name == "stackstate-logs-123456789012"
    assert instance.tags == ()
    assert (instance.identifier, instance.environment, instance.layer, instance.domain) == (None,) * 4
    assert (config.trace_relation_ttl, instance.trace_objects) == (172800, False)


def test_optional_instance_keys_are_read(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["init_config"]["full_run_interval"] = 600
        data["init_config"]["trace_relation_ttl"] = 3600
        data["instances"][0].update(
            {
                "trace_objects": True,
                "apis_to_run": ["ec2|instances vpcs", "s3"],
                "log_bucket_name": "events",
                "flowlog_bucket_name": "flows",
                "tags": ["foo:bar"],
                "stackstate-identifier": "urn:x",
                "stackstate-environment": "prod",
                "stackstate-layer": "Cloud",
                "stackstate-domain": "AWS",
            }
        )

    config = load_config(config_with(tmp_path, change))
    assert (config.full_run_interval, config.trace_relation_ttl) == (600, 3600)
    (instance,) = config.instances
    assert instance.trace_objects is True
    assert instance.apis_to_run == ("ec2|instances vpcs", "s3")
    assert (instance.log_bucket_name, instance.flowlog_bucket_name) == ("events", "flows")
    assert instance.tags == ("foo:bar",)
    assert (instance.identifier, instance.environment, instance.layer, instance.domain) == (
        "urn:x",
        "prod",
        "Cloud",
        "AWS",
    )


def test_empty_bucket_name_means_default(tmp_path: Path) -> None:
    path = config_with(tmp_path, lambda d: d["instances"][0].update(log_bucket_name=""))
    assert load_config(path).instances[0].log_bucket_name == "stackstate-logs-123456789012"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"collection_interval": 120}, 120),
        ({"min_collection_interval": 90}, 90),
        ({"collection_interval": 120, "min_collection_interval": 90}, 120),
    ],
)
def test_min_collection_interval_is_a_legacy_alias(
    tmp_path: Path, keys: dict[str, int], expected: int
) -> None:
    path = config_with(tmp_path, lambda d: d["instances"][0].update(keys))
    assert load_config(path).instances[0].collection_interval == expected


@pytest.mark.parametrize(
    "credentials",
    [
        {"aws_access_key_id": "", "aws_secret_access_key": ""},
        {},
        {"aws_access_key_id": None, "aws_secret_access_key": None},
    ],
    ids=["empty", "absent", "null"],
)
def test_empty_or_absent_keys_mean_default_credential_chain(
    tmp_path: Path, credentials: dict[str, str | None]
) -> None:
    path = write(tmp_path, {**BASE, "init_config": {"external_id": "x1", **credentials}})
    config = load_config(path)
    assert (config.access_key_id, config.secret_access_key) == (None, None)


def test_static_keys_are_kept(tmp_path: Path) -> None:
    keys = {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "s3cr3t"}
    config = load_config(config_with(tmp_path, lambda d: d["init_config"].update(keys)))
    assert (config.access_key_id, config.secret_access_key) == ("AKIAEXAMPLE", "s3cr3t")


@pytest.mark.parametrize(
    ("arn", "account"),
    [(ROLE, "123456789012"), ("arn:aws-us-gov:iam::210987654321:role/path/Reader", "210987654321")],
)
def test_account_id_is_fifth_field_of_role_arn(tmp_path: Path, arn: str, account: str) -> None:
    path = config_with(tmp_path, lambda d: d["instances"][0].update(role_arn=arn))
    instance = load_config(path).instances[0]
    assert instance.account_id == account
    assert instance.log_bucket_name == f"stackstate-logs-{account}"


def test_instance_built_directly_derives_account_and_buckets() -> None:
    instance = Instance(role_arn=ROLE, regions=["eu-west-1"])  # type: ignore[arg-type]
    assert instance.account_id == "123456789012"
    assert instance.regions == ("eu-west-1",)
    assert instance.flowlog_bucket_name == "stackstate-logs-123456789012"
    with pytest.raises(ValueError, match="not an IAM role ARN"):
        Instance(role_arn="StackStateAwsIntegrationRole", regions=("global",))


# --- bad files: exactly one line naming the key --------------------------------------------------


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """A change that sets the value at a dotted path (list indexes as digits)."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = data
        for part in parents:
            target = target[part]
        target[last] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    """A change that removes the key at a dotted path."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for part in parents:
            target = target[int(part) if part.isdigit() else part]
        del target[last]

    return change


def _rename(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    """A change that renames a key of instances[0]."""
    return lambda data: data["instances"][0].update({new: data["instances"][0].pop(old)})


def _second_instance(arn: str) -> Callable[[dict[str, Any]], None]:
    """A change that appends an instance for `arn`."""
    return lambda data: data["instances"].append({"role_arn": arn, "regions": ["us-east-1"]})


def _organization(**settings: Any) -> Callable[[dict[str, Any]], None]:
    """A change that makes instances[0] an organization instance with `settings` (role_name defaulted)."""

    def change(data: dict[str, Any]) -> None:
        data["instances"][0].pop("role_arn")
        data["instances"][0]["organization"] = {"role_name": "StackStateAwsIntegrationRole", **settings}

    return change


INSTANCE_KEYS = (
    "apis_to_run, cluster_check, collection_interval, flowlog_bucket_name, log_bucket_name, "
    "min_collection_interval, organization, regions, role_arn, stackstate-domain, stackstate-environment, "
    "stackstate-identifier, stackstate-layer, tags, trace_objects"
)

BAD = [
    (
        "missing external_id",
        _delete("init_config.external_id"),
        "init_config.external_id: required key missing",
    ),
    ("empty external_id", _set("init_config.external_id", ""), "init_config.external_id: must not be empty"),
    (
        "external_id shorter than AWS accepts",
        _set("init_config.external_id", "x"),
        "init_config.external_id: must be at least 2 characters",
    ),
    (
        "huge apis_to_run entry is refused at once and quoted short",
        _set("instances.0.apis_to_run", ["ec2|" + "a" * 60_000 + "!"]),
        "instances[0].apis_to_run[0]: 'ec2|" + "a" * 70 + "...' "
        "(60005 characters) is not an API name or 'api|part part' entry (e.g. 'ec2' or 'ec2|instances vpcs')",
    ),
    (
        "full_run_interval wrong type",
        _set("init_config.full_run_interval", "hourly"),
        "init_config.full_run_interval: must be an integer, got string",
    ),
    (
        "full_run_interval boolean",
        _set("init_config.full_run_interval", True),
        "init_config.full_run_interval: must be an integer, got boolean",
    ),
    (
        "full_run_interval too small",
        _set("init_config.full_run_interval", 30),
        "init_config.full_run_interval: must be at least 60, got 30",
    ),
    (
        "typo regoins",
        _rename("regions", "regoins"),
        f"instances[0]: unknown key 'regoins' (did you mean 'regions'?); expected one of: {INSTANCE_KEYS}",
    ),
    (
        "init_config key in an instance",
        _set("instances.0.external_id", "x"),
        "instances[0]: unknown key 'external_id' (it belongs in init_config); "
        f"expected one of: {INSTANCE_KEYS}",
    ),
    (
        "unknown top-level key",
        _set("instance", []),
        "-: unknown key 'instance' (did you mean 'instances'?); "
        "expected one of: cluster_check, init_config, instances",
    ),
    ("missing regions", _delete("instances.0.regions"), "instances[0].regions: required key missing"),
    ("empty regions", _set("instances.0.regions", []), "instances[0].regions: must not be empty"),
    (
        "regions not a list",
        _set("instances.0.regions", "eu-west-1"),
        "instances[0].regions: must be a list, got string",
    ),
    (
        "bad region",
        _set("instances.0.regions", ["global", "eu-wst-1"]),
        "instances[0].regions[1]: 'eu-wst-1' is not a region name or 'global'",
    ),
    (
        "availability zone as region",
        _set("instances.0.regions", ["eu-west-1a"]),
        "instances[0].regions[0]: 'eu-west-1a' is not a region name or 'global'",
    ),
    (
        "duplicate region",
        _set("instances.0.regions", ["eu-west-1", "global", "eu-west-1"]),
        "instances[0].regions[2]: 'eu-west-1' is listed twice",
    ),
    (
        "bad role arn",
        _set("instances.0.role_arn", "arn:aws:iam::1234:role/X"),
        "instances[0].role_arn: 'arn:aws:iam::1234:role/X' is not an IAM role ARN like "
        "arn:aws:iam::123456789012:role/StackStateAwsIntegrationRole",
    ),
    (
        "bad apis_to_run entry",
        _set("instances.0.apis_to_run", ["ec2", "EC2|Instances"]),
        "instances[0].apis_to_run[1]: 'EC2|Instances' is not an API name or 'api|part part' entry "
        "(e.g. 'ec2' or 'ec2|instances vpcs')",
    ),
    (
        "collection_interval zero",
        _set("instances.0.collection_interval", 0),
        "instances[0].collection_interval: must be at least 1, got 0",
    ),
    (
        "tags not strings",
        _set("instances.0.tags", [{"foo": "bar"}]),
        "instances[0].tags[0]: must be a string, got mapping",
    ),
    ("missing role_arn", _delete("instances.0.role_arn"), "instances[0].role_arn: required key missing"),
    (
        "both role_arn and organization",
        _set("instances.0.organization", {"role_name": "X"}),
        "instances[0].organization: give either role_arn (one account) or organization (its accounts "
        "discovered), not both",
    ),
    (
        "organization without role_name",
        lambda d: (_organization()(d), d["instances"][0]["organization"].pop("role_name")),
        "instances[0].organization.role_name: required key missing",
    ),
    (
        "role template without account_id",
        _organization(role_name="arn:aws:iam::123456789012:role/X"),
        "instances[0].organization.role_name: 'arn:aws:iam::123456789012:role/X' is neither a role name nor "
        "an ARN template like arn:{partition}:iam::{account_id}:role/StackStateAwsIntegrationRole",
    ),
    (
        "role template with another placeholder",
        _organization(role_name="arn:{partition}:iam::{account}:role/X"),
        "instances[0].organization.role_name: 'arn:{partition}:iam::{account}:role/X' is neither a role name "
        "nor an ARN template like arn:{partition}:iam::{account_id}:role/StackStateAwsIntegrationRole",
    ),
    (
        "organization reader role not an ARN",
        _organization(role_arn="OrgReader"),
        "instances[0].organization.role_arn: 'OrgReader' is not an IAM role ARN like "
        "arn:aws:iam::123456789012:role/OrganizationsReader",
    ),
    (
        "bad OU id",
        _organization(include={"ous": ["prod"]}),
        "instances[0].organization.include.ous[0]: 'prod' is not an OU id like ou-ab12-34cd56ef or a root id "
        "like r-ab12",
    ),
    (
        "empty tags",
        _organization(exclude={"tags": {}}),
        "instances[0].organization.exclude.tags: must not be empty",
    ),
    (
        "tag value not a string",
        _organization(include={"tags": {"env": 1}}),
        "instances[0].organization.include.tags.env: must be a string, got integer (put the value in quotes)",
    ),
    (
        "account id as a number",
        _organization(exclude={"accounts": ["1234"]}),
        "instances[0].organization.exclude.accounts[0]: '1234' is not a 12-digit account id",
    ),
    (
        "typo in a selection",
        _organization(exclude={"account": ["123456789012"]}),
        "instances[0].organization.exclude: unknown key 'account' (did you mean 'accounts'?); "
        "expected one of: accounts, ous, tags",
    ),
    (
        "bucket name with another placeholder",
        _set("instances.0.log_bucket_name", "logs-{region}"),
        "instances[0].log_bucket_name: may use only the placeholder {account_id}",
    ),
    (
        "duplicate role after an organization",
        lambda d: (
            d["instances"].insert(0, {"organization": {"role_name": "X"}, "regions": ["us-east-1"]})
            or _second_instance(ROLE)(d)
        ),
        "instances[2].role_arn: duplicate of instances[1].role_arn",
    ),
    ("missing instances", _delete("instances"), "instances: required key missing"),
    ("empty instances", _set("instances", []), "instances: must not be empty"),
    ("init_config empty", _set("init_config", None), "init_config: must be a mapping, got an empty value"),
    (
        "duplicate role",
        _second_instance(ROLE),
        "instances[1].role_arn: duplicate of instances[0].role_arn",
    ),
    (
        "second role in the same account",
        _second_instance("arn:aws:iam::123456789012:role/Other"),
        "instances[1].role_arn: account 123456789012 is already configured by instances[0].role_arn",
    ),
    (
        "access key without secret key",
        _set("init_config.aws_access_key_id", "AKIAEXAMPLE"),
        "init_config.aws_secret_access_key: must be set when aws_access_key_id is set "
        "(leave both empty to use the default credential chain)",
    ),
    (
        "secret key without access key",
        _set("init_config.aws_secret_access_key", "s3cr3t"),
        "init_config.aws_access_key_id: must be set when aws_secret_access_key is set "
        "(leave both empty to use the default credential chain)",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_gives_one_line_naming_the_key(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], expected: str
) -> None:
    path = config_with(tmp_path, change)
    error = error_of(path)
    assert str(error) == f"{path}: {expected}"
    assert "\n" not in str(error)
    assert isinstance(error, BadInput)
    assert error.file == str(path)


def test_first_error_by_path_is_reported(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["instances"][0]["regions"] = ["mars-1"]
        data["init_config"]["full_run_interval"] = "x"

    assert error_of(config_with(tmp_path, change)).key == "init_config.full_run_interval"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            DOCS_EXAMPLE.replace("    regions:", "      regions:"),
            "invalid YAML at line 11, column 14: mapping values are not allowed here",
        ),
        (
            "init_config:\n  external_id: 'abc\ninstances: []\n",
            "invalid YAML at line 4, column 1: found unexpected end of stream "
            "(while scanning a quoted scalar started at line 2, column 16)",
        ),
        ("instances: []\ninstances: []\n", "invalid YAML at line 2, column 1: duplicate key 'instances'"),
        ("", "file is empty"),
        ("# nothing but a comment\n", "file is empty"),
        ("- init_config\n", "top level must be a mapping with init_config and instances, got list"),
    ],
    ids=["misindented", "unclosed quote", "duplicate key", "empty", "comment only", "list"],
)
def test_unparseable_file_gives_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert str(error_of(path)) == f"{path}: -: {expected}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert str(error_of(path)) == f"{path}: -: file not found"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert str(error_of(tmp_path)) == f"{tmp_path}: -: is a directory, not a file"


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    path.write_bytes(b"init_config: \xff\n")
    assert str(error_of(path)) == f"{path}: -: not UTF-8 text (bad byte at offset 13)"


# --- secrets never leak --------------------------------------------------------------------------

SECRET = "12345678SECRET"


@pytest.mark.parametrize(
    "init_config",
    [
        {"aws_access_key_id": "", "aws_secret_access_key": SECRET, "external_id": "x1"},
        {"aws_access_key_id": "AKIA", "aws_secret_access_key": 12345678, "external_id": "x1"},
        {"aws_access_key_id": "AKIA", "aws_secret_access_key": [SECRET, "12345678"], "external_id": "x1"},
        {"aws_access_key_id": 12345678, "aws_secret_access_key": SECRET, "external_id": "x1"},
        {"external_id": [SECRET, 12345678]},
        {"external_id": 12345678},
        {"external_id": "x1", "aws_secret_access_key=12345678SECRET": ""},
    ],
    ids=["one key only", "int", "list", "int key id", "external id list", "external id int", "as key"],
)
def test_wrong_secret_is_never_in_the_message(tmp_path: Path, init_config: dict[str, Any]) -> None:
    error = error_of(write(tmp_path, {**BASE, "init_config": init_config}))
    for text in (str(error), repr(error), repr(error.fields)):
        assert SECRET not in text and "12345678" not in text


def test_secret_on_a_broken_yaml_line_is_not_quoted(tmp_path: Path) -> None:
    text = f'init_config:\n  aws_secret_access_key: "{SECRET}\n  external_id: x1\n'
    assert SECRET not in str(error_of(write(tmp_path, text)))


def test_repr_hides_credentials_and_external_id(tmp_path: Path) -> None:
    keys = {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": SECRET, "external_id": "ext-SECRET"}
    config = load_config(config_with(tmp_path, lambda d: d["init_config"].update(keys)))
    for text in (repr(config), str(config), repr(config.instances)):
        assert SECRET not in text and "AKIAEXAMPLE" not in text and "ext-SECRET" not in text
    assert "instances=" in repr(config)


# --- api_filter ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apis", "expected"),
    [
        (None, None),
        ((), {}),
        (("ec2|instances vpcs", "s3"), {"ec2": frozenset({"instances", "vpcs"}), "s3": None}),
        (("ec2|instances", "ec2|vpcs  subnets"), {"ec2": frozenset({"instances", "vpcs", "subnets"})}),
        (("ec2|instances", "ec2"), {"ec2": None}),
        (("ec2", "ec2|instances"), {"ec2": None}),
    ],
    ids=["absent = all", "empty = nothing", "docs example", "parts merge", "whole wins", "whole wins first"],
)
def test_api_filter(apis: tuple[str, ...] | None, expected: dict[str, frozenset[str] | None] | None) -> None:
    assert api_filter(Instance(role_arn=ROLE, regions=("global",), apis_to_run=apis)) == expected


def test_api_filter_from_loaded_config(tmp_path: Path) -> None:
    path = config_with(tmp_path, lambda d: d["instances"][0].update(apis_to_run=["ec2|instances vpcs", "s3"]))
    config: Config = load_config(path)
    assert api_filter(config.instances[0]) == {"ec2": frozenset({"instances", "vpcs"}), "s3": None}


# --- the schema itself ---------------------------------------------------------------------------


def _properties(node: Any, where: str = "#") -> list[tuple[str, Any]]:
    """Every (location, subschema) under a `properties` keyword, recursively."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            found.append((f"{where}/properties/{name}", sub))
        for key, value in node.items():
            found.extend(_properties(value, f"{where}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_properties(value, f"{where}/{index}"))
    return found


def test_schema_is_valid_and_every_property_is_described() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    undocumented = [where for where, sub in _properties(schema) if not sub.get("description")]
    assert undocumented == []


def test_an_organization_instance_loads_as_a_template_for_each_discovered_account(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        _organization(
            role_arn="arn:aws:iam::111111111111:role/OrgReader",
            include={"ous": ["ou-ab12-34cd56ef", "r-ab12"], "tags": {"env": "prod", "b": "2"}},
            exclude={"accounts": ["222222222222"]},
        )(data)
        data["instances"][0]["log_bucket_name"] = "logs-{account_id}"
        data["instances"].append({"role_arn": ROLE, "regions": ["us-east-1"]})

    config = load_config(config_with(tmp_path, change))

    (instance,) = config.instances  # the explicit one
    assert instance.role_arn == ROLE
    (org,) = config.organizations
    assert org.where == "instances[0]" and org.role_arn == "arn:aws:iam::111111111111:role/OrgReader"
    assert org.include.ous == ("ou-ab12-34cd56ef", "r-ab12")
    assert org.include.tags == (("b", "2"), ("env", "prod"))
    assert org.exclude.accounts == ("222222222222",) and org.exclude.ous == ()
    found = org.instance("333333333333", "aws-cn")
    assert found.role_arn == "arn:aws-cn:iam::333333333333:role/StackStateAwsIntegrationRole"
    assert found.account_id == "333333333333" and found.regions == ("global", "eu-west-1")
    assert found.log_bucket_name == "logs-333333333333"
    assert found.flowlog_bucket_name == "stackstate-logs-333333333333"


@pytest.mark.parametrize(
    ("role_name", "expected"),
    [
        ("path/Role", "arn:aws-us-gov:iam::333333333333:role/path/Role"),
        ("arn:{partition}:iam::{account_id}:role/X", "arn:aws-us-gov:iam::333333333333:role/X"),
        ("arn:aws:iam::{account_id}:role/X", "arn:aws:iam::333333333333:role/X"),
    ],
)
def test_the_role_name_is_a_name_or_an_arn_template(tmp_path: Path, role_name: str, expected: str) -> None:
    (org,) = load_config(config_with(tmp_path, _organization(role_name=role_name))).organizations
    assert org.role_for("333333333333", "aws-us-gov") == expected


def test_the_saved_list_of_an_organization_is_keyed_by_its_selection_not_its_template(tmp_path: Path) -> None:
    def key(change: Callable[[dict[str, Any]], object]) -> str:
        (org,) = load_config(config_with(tmp_path, change)).organizations
        return org.key

    first = key(_organization(include={"ous": ["r-ab12"]}))
    assert first == key(
        lambda d: (
            _organization(include={"ous": ["r-ab12"]})(d),
            _set("instances.0.regions", ["us-east-1"])(d),
        )
    )
    assert first != key(_organization(include={"ous": ["ou-ab12-34cd56ef"]}))
    assert first != key(_organization(include={"ous": ["r-ab12"]}, role_name="Other"))
