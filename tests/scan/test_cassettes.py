"""Cassettes are safe to publish: no credential, signature or session token in any of them."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.support import CASSETTES

FORBIDDEN = {
    "SigV4 signature": re.compile(r"AWS4-HMAC-SHA256|Signature=[0-9a-f]{16}"),
    "Authorization header": re.compile(r"(?im)^\s*authorization:"),
    "security token header": re.compile(r"(?i)x-amz-security-token"),
    "long-term access key": re.compile(r"AKIA[0-9A-Z]{16}"),
    "temporary access key": re.compile(r"ASIA[0-9A-Z]{16}"),
    "secret in a config": re.compile(r"aws_secret_access_key"),
}
FILES = sorted(CASSETTES.rglob("*.yaml"))


def test_there_are_cassettes_to_check():
    assert len(FILES) >= 6


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_cassette_holds_no_secret(path):
    text = path.read_text()
    found = [name for name, pattern in FORBIDDEN.items() if pattern.search(text)]
    assert found == []
    for interaction in yaml.load(text, Loader=yaml.Loader)["interactions"]:
        body = interaction["response"]["body"]["string"]
        body = body.decode() if isinstance(body, bytes) else body
        for tag in ("SecretAccessKey", "SessionToken", "AccessKeyId"):
            assert all(v == "REDACTED" for v in re.findall(rf"<{tag}>([^<]*)</{tag}>", body)), tag
