"""The confused-deputy check: a role that can be assumed without the ExternalId is refused.

moto never checks an ExternalId, so STS is a botocore Stubber here, on a client whose endpoint is AWS's.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from engine.aws import sessions as auth
from engine.aws.sessions import CHECK_SESSION_NAME, NO_EXTERNAL_ID, SESSION_NAME, assume, is_aws_endpoint
from engine.core.config import load_config
from engine.core.errors import ConfigError, CredentialsError
from engine.core.phase import Limits
from engine.language.loader import load_mappings
from engine.scan.full_scan import scan
from tests.support import ROLE, ListSink, make_config

EXTERNAL_ID = "test-external-id"
ANSWER = {
    "Credentials": {
        "AccessKeyId": "ASIAEXAMPLEEXAMPLE12",
        "SecretAccessKey": "secret-example",
        "SessionToken": "token-example",
        "Expiration": datetime.now(UTC) + timedelta(hours=1),
    }
}
WITHOUT = {"RoleArn": ROLE, "RoleSessionName": CHECK_SESSION_NAME}
WITH = {"RoleArn": ROLE, "RoleSessionName": SESSION_NAME, "ExternalId": EXTERNAL_ID}


class Base:
    """A boto3 Session stand-in whose only client is the stubbed STS client."""

    region_name = "us-east-1"

    def __init__(self, sts: Any) -> None:
        self.sts = sts

    def client(self, service: str, **_: Any) -> Any:
        assert service == "sts"
        return self.sts


@pytest.fixture
def sts(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(auth, "_VERIFIED", set())
    client = boto3.client(
        "sts", region_name="us-east-1", aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="example"
    )
    assert client.meta.endpoint_url == "https://sts.us-east-1.amazonaws.com"
    return client


def test_a_role_assumable_without_the_external_id_is_refused(sts: Any) -> None:
    with Stubber(sts) as stub:
        stub.add_response("assume_role", ANSWER, WITHOUT)
        with pytest.raises(CredentialsError) as caught:
            assume(make_config(), make_config().instances[0], base=Base(sts))  # type: ignore[arg-type]
        stub.assert_no_pending_responses()
    message = str(caught.value)
    assert message.startswith(f"cannot get credentials for {ROLE}: the role can be assumed WITHOUT the")
    assert "allow_role_without_external_id" in message and EXTERNAL_ID not in message


def test_access_denied_without_the_external_id_is_the_expected_case(sts: Any) -> None:
    with Stubber(sts) as stub:
        stub.add_client_error("assume_role", "AccessDenied", "not authorized", 403, expected_params=WITHOUT)
        stub.add_response("assume_role", ANSWER, WITH)
        account = assume(make_config(), make_config().instances[0], base=Base(sts))  # type: ignore[arg-type]
        stub.assert_no_pending_responses()
        assert account.id == "123456789012"
        # Checked once per process: a second assume (the event phase) makes only the real call.
        stub.add_response("assume_role", ANSWER, WITH)
        assume(make_config(), make_config().instances[0], base=Base(sts))  # type: ignore[arg-type]
        stub.assert_no_pending_responses()


def test_another_error_of_the_check_is_bad_input_naming_it(sts: Any) -> None:
    with Stubber(sts) as stub:
        stub.add_client_error("assume_role", "RegionDisabledException", "off", 403, expected_params=WITHOUT)
        with pytest.raises(CredentialsError, match="requires the ExternalId: RegionDisabledException: off"):
            assume(make_config(), make_config().instances[0], base=Base(sts))  # type: ignore[arg-type]


def test_the_opt_out_makes_only_the_call_with_the_external_id(sts: Any) -> None:
    config = replace(make_config(), allow_role_without_external_id=True)
    with Stubber(sts) as stub:
        stub.add_response("assume_role", ANSWER, WITH)
        assume(config, config.instances[0], base=Base(sts))  # type: ignore[arg-type]
        stub.assert_no_pending_responses()


def test_the_predecessors_magic_value_sends_no_external_id_and_checks_nothing(sts: Any) -> None:
    config = replace(make_config(), external_id=NO_EXTERNAL_ID)
    with Stubber(sts) as stub:
        stub.add_response("assume_role", ANSWER, {"RoleArn": ROLE, "RoleSessionName": SESSION_NAME})
        assume(config, config.instances[0], base=Base(sts))  # type: ignore[arg-type]
        stub.assert_no_pending_responses()


def test_an_endpoint_that_is_not_aws_skips_the_check(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.setattr(auth, "_VERIFIED", set())
    sts = boto3.client(
        "sts", region_name="us-east-1", aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="example",
        endpoint_url="http://127.0.0.1:4566",
    )  # fmt: skip
    with Stubber(sts) as stub, caplog.at_level(logging.INFO, logger="aws_topology"):
        stub.add_response("assume_role", ANSWER, WITH)
        assume(make_config(), make_config().instances[0], base=Base(sts))  # type: ignore[arg-type]
        stub.assert_no_pending_responses()
    assert "event=external_id.check.skipped" in caplog.text and "127.0.0.1:4566" in caplog.text


def test_a_refused_role_makes_the_scan_bad_input(sts: Any) -> None:
    with Stubber(sts) as stub:
        stub.add_response("assume_role", ANSWER, WITHOUT)
        results, _ = scan(
            make_config(), load_mappings(), ListSink(), limits=Limits(workers=1), base=Base(sts)
        )  # type: ignore[arg-type]
    (result,) = results
    assert result.bad_input and "WITHOUT the ExternalId" in str(result.error) and ROLE in str(result.error)
    assert not result.units


@pytest.mark.parametrize(
    ("url", "aws"),
    [
        ("https://sts.amazonaws.com", True),
        ("https://sts.eu-west-1.amazonaws.com", True),
        ("https://sts.cn-north-1.amazonaws.com.cn", True),
        ("https://vpce-0a1b-c2d3.sts.us-east-1.vpce.amazonaws.com", True),
        ("https://sts-fips.us-east-1.api.aws", True),
        ("http://127.0.0.1:5000", False),
        ("http://localhost:4566", False),
        ("https://sts.amazonaws.com.example.net", False),
        ("https://notamazonaws.com", False),
        (None, False),
    ],
)
def test_aws_endpoints_are_told_by_the_partitions_dns_suffixes(url: str | None, aws: bool) -> None:
    assert is_aws_endpoint(url) is aws


def test_the_opt_out_is_a_config_key(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "init_config": {"external_id": EXTERNAL_ID, "allow_role_without_external_id": True},
        "instances": [{"role_arn": ROLE, "regions": ["eu-west-1"]}],
    }
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).allow_role_without_external_id is True
    del data["init_config"]["allow_role_without_external_id"]
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).allow_role_without_external_id is False
    data["init_config"]["allow_role_without_external_id"] = "yes"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="allow_role_without_external_id: must be true or false"):
        load_config(path)
