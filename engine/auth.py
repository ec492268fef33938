"""Credentials: one assumed-role session per account, reused across regions and refreshed.

In: `Config` (static keys or the default chain, external id) and an `Instance` (role ARN).
Out: `Account`, which hands out one cached boto3 client per (service, region).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import boto3
import botocore.session
from botocore.config import Config as ClientConfig
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    UnknownRegionError,
)
from botocore.parsers import ResponseParserError

from engine.config import Config, Instance
from engine.errors import CredentialsError, Unreachable

NO_EXTERNAL_ID = "disable_external_id_this_is_unsafe"
SESSION_NAME = "aws-topology"
GLOBAL_REGION = "us-east-1"


@lru_cache(maxsize=64)
def partition(region: str) -> str:
    """The AWS partition of a region (`aws`, `aws-cn`, `aws-us-gov`, ...), from botocore's endpoint data.

    A region no partition knows (a new one, or a typo that `validate` warns about) is taken as `aws`.
    """
    try:
        return botocore.session.get_session().get_partition_for_region(region)
    except UnknownRegionError:
        return "aws"


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """Every region of every partition in botocore's endpoint data."""
    data = botocore.session.get_session().get_data("endpoints")
    return frozenset(r for p in data["partitions"] for r in p["regions"])


def client_config(workers: int) -> ClientConfig:
    """Adaptive retries (client-side rate limiting on throttles) and a pool sized for the workers."""
    return ClientConfig(
        retries={"mode": "adaptive", "max_attempts": 6},
        max_pool_connections=max(10, workers),
        user_agent_extra="aws-topology",
    )


@dataclass
class Account:
    """An AWS account reached through its role; clients are created once and shared by threads."""

    id: str
    role_arn: str
    session: boto3.Session
    config: ClientConfig
    endpoint_url: str | None = None
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        found = self._clients.get(key)  # the common case takes no lock
        if found is not None:
            return found
        with self._lock:
            if key not in self._clients:
                client = self.session.client(
                    service, region_name=region, config=self.config, endpoint_url=self.endpoint_url
                )
                client.meta.events.register("before-parse", refuse_html)
                self._clients[key] = client
            return self._clients[key]


def base_session(config: Config) -> boto3.Session:
    """Static keys when both are configured, else the default credential chain (env, profile, role)."""
    if config.access_key_id and config.secret_access_key:
        return boto3.Session(
            aws_access_key_id=config.access_key_id, aws_secret_access_key=config.secret_access_key
        )
    return boto3.Session()


def assume(
    config: Config,
    instance: Instance,
    *,
    base: boto3.Session | None = None,
    endpoint_url: str | None = None,
    workers: int = 8,
) -> Account:
    """AssumeRole of the instance's role with the external id; credentials refresh before expiry."""
    base = base or base_session(config)
    sts = base.client("sts", region_name=base.region_name or GLOBAL_REGION, endpoint_url=endpoint_url)
    sts.meta.events.register("before-parse", refuse_html)
    params = {"RoleArn": instance.role_arn, "RoleSessionName": SESSION_NAME}
    if config.external_id != NO_EXTERNAL_ID:
        params["ExternalId"] = config.external_id

    def fetch() -> dict[str, str]:
        try:
            creds = sts.assume_role(**params)["Credentials"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise CredentialsError(
                role_arn=instance.role_arn, problem=f"{error.get('Code')}: {error.get('Message')}"
            ) from None
        except (ConnectionError, ResponseParserError) as exc:  # an outage or a proxy page: not bad input
            raise Unreachable(role_arn=instance.role_arn, problem=not_aws(exc)) from None
        except (BotoCoreError, ValueError) as exc:  # no credentials, bad endpoint or provider settings
            raise CredentialsError(role_arn=instance.role_arn, problem=_first_line(exc)) from None
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    core = botocore.session.get_session()
    core._credentials = credentials  # botocore has no public setter for refreshable credentials
    return Account(
        id=instance.account_id,
        role_arn=instance.role_arn,
        session=boto3.Session(botocore_session=core),
        config=client_config(workers),
        endpoint_url=endpoint_url,
    )


def refuse_html(response_dict: dict, operation_model: Any, **_: Any) -> None:
    """botocore `before-parse` hook: an HTML page (proxy, captive portal) is not an AWS answer.

    botocore would parse it into an empty response, which reads as "no resources": raise instead.
    The body is what tells (moto labels its JSON `text/html`); no AWS API answers with an HTML page.
    """
    if operation_model.has_streaming_output:  # an S3 object may well be an HTML file
        return
    head = bytes(response_dict.get("body") or b"")[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise ResponseParserError("HTML answer")


def not_aws(exc: Exception) -> str:
    """One line for a transport or parse failure; an unparsable answer is usually a proxy's HTML page."""
    if isinstance(exc, ResponseParserError):
        return "the endpoint's answer is not an AWS response (an HTML page from a proxy or captive portal?)"
    return str(exc).splitlines()[0][:300]


def _first_line(exc: Exception) -> str:
    if isinstance(exc, NoCredentialsError):
        return "NoCredentialsError: no static keys in the config and none in the default credential chain"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
