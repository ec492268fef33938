"""Property-based tests of config and mapping loading: any file, or a valid one with any part changed, gives
a Config / Mappings or the loader's documented error (ConfigError, MappingErrors), never another exception;
a config error never quotes the secret."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from engine.core.config import Config, load_config
from engine.core.errors import ConfigError, MappingErrors
from engine.core.paths import MAPPINGS
from engine.language.loader import Mappings, load_mappings
from tests.fuzz import FUZZ, JSON, bounded

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
CONFIG: dict[str, Any] = {
    "init_config": {
        "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": SECRET,
        "external_id": "uniquesecret!1", "full_run_interval": 3600,
    },
    "instances": [{
        "role_arn": "arn:aws:iam::123456789012:role/StackStateAwsIntegrationRole",
        "regions": ["global", "eu-west-1"], "collection_interval": 60,
        "apis_to_run": ["ec2|instances", "sqs"], "log_bucket_name": "logs", "tags": ["env:test"],
    }],
}  # fmt: skip
MAPPING_FILES = ("sqs.yaml", "autoscaling.yaml", "servicediscovery.yaml")


@contextmanager
def written(name: str, text: str | bytes) -> Iterator[Path]:
    """`text` written to `name` in a fresh directory; yields the file's path."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        yield path


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into nested dicts and lists, the root included."""
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def changed(draw: st.DrawFn, document: Any) -> Any:
    """`document` with one to three parts replaced by any value, deleted, or given an unknown key."""
    data = copy.deepcopy(document)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.sampled_from(paths(data)))
        if not where:
            return draw(JSON)
        parent: Any = data
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[where[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON)
        else:
            parent[where[-1]] = draw(JSON)
    return data


def load_config_or_error(text: str | bytes) -> Config | None:
    with written("conf.yaml", text) as path:
        try:
            return bounded(lambda: load_config(path))
        except ConfigError as exc:
            message = str(exc)
            assert message and SECRET not in message and "conf.yaml" in message
            return None


@FUZZ
@given(st.binary(max_size=800) | st.text(max_size=800))
def test_any_config_file_loads_or_is_a_config_error(text):
    load_config_or_error(text)


@FUZZ
@given(changed(CONFIG))
def test_a_changed_config_loads_or_is_a_config_error_that_never_quotes_the_secret(data):
    config = load_config_or_error(yaml.safe_dump(data, allow_unicode=True))
    assert config is None or isinstance(config, Config)


def test_the_unchanged_config_loads():
    assert isinstance(load_config_or_error(yaml.safe_dump(CONFIG)), Config)


def load_mapping_or_error(name: str, text: str) -> Mappings | None:
    with written(name, text) as path:
        try:
            return bounded(lambda: load_mappings(path.parent), limit=64 << 20)
        except MappingErrors as exc:
            assert str(exc)
            return None


@FUZZ
@given(st.sampled_from(MAPPING_FILES).flatmap(
    lambda name: st.tuples(st.just(name), changed(yaml.safe_load((MAPPINGS / name).read_text())))
))  # fmt: skip
def test_a_changed_mapping_loads_or_is_a_mapping_error(named):
    name, data = named
    load_mapping_or_error(name, yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(st.text(max_size=600))
def test_any_mapping_text_loads_or_is_a_mapping_error(text):
    load_mapping_or_error("any.yaml", text)


def test_the_unchanged_mappings_load():
    for name in MAPPING_FILES:
        assert load_mapping_or_error(name, (MAPPINGS / name).read_text()) is not None
