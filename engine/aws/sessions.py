"""Credentials: one assumed-role session per account, reused across regions and refreshed.

In: `Config` (static keys or the default chain, external id) and an `Instance` (role ARN).
Out: `Account`, which hands out one cached boto3 client per (service, region).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

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

from engine.core import botocore_data
from engine.core.config import Config, Instance
from engine.core.errors import CredentialsError, Unreachable
from engine.core.proxy import proxy_for, resolve_proxies

log = logging.getLogger("aws_topology")

NO_EXTERNAL_ID = "disable_external_id_this_is_unsafe"
SESSION_NAME = "aws-topology"
CHECK_SESSION_NAME = "aws-topology-external-id-check"
_VERIFIED: set[str] = set()  # roles that refused an AssumeRole without the ExternalId, in this process
GLOBAL_REGION = "us-east-1"


@lru_cache(maxsize=64)
def partition(region: str) -> str:
    """The AWS partition of a region (`aws`, `aws-cn`, `aws-us-gov`, ...), from botocore's endpoint data.

    A region no partition knows (a new one, or a typo that `validate` warns about) is taken as `aws`.
    """
    try:
        return botocore_data.endpoint_resolver().get_partition_for_region(region)
    except UnknownRegionError:
        return "aws"


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """Every region of every partition in botocore's endpoint data."""
    data = botocore_data.data("endpoints")
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
    proxies: Mapping[str, str] = field(default_factory=dict, repr=False)  # set only by the config's `proxy`
    _clients: dict[tuple[str, str], tuple[Any, frozenset[str]]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, service: str, region: str, operation: str | None = None) -> Any:
        """The client of `service` in `region`; built again if it lacks `operation` (see `NarrowLoader`)."""
        key = (service, region)
        lacks = lambda found: found is None or (operation is not None and operation not in found[1])  # noqa: E731
        found = self._clients.get(key)  # the common case takes no lock
        if lacks(found):
            with self._lock:
                if lacks(found := self._clients.get(key)):
                    if operation is not None:
                        botocore_data.client_loader().want(service, [operation])
                    client = proxied_client(
                        self.session, service, region, self.config, self.endpoint_url, self.proxies
                    )
                    client.meta.events.register("before-parse", refuse_html)
                    operations = frozenset(client.meta.service_model.operation_names)
                    found = self._clients[key] = (client, operations)
        return found[0]


def base_session(config: Config) -> boto3.Session:
    """Static keys when both are configured, else the default credential chain (env, profile, role)."""
    if config.access_key_id and config.secret_access_key:
        return boto3_session(
            aws_access_key_id=config.access_key_id, aws_secret_access_key=config.secret_access_key
        )
    return boto3_session()


def boto3_session(credentials: RefreshableCredentials | None = None, **keys: str) -> boto3.Session:
    """A boto3 session on a botocore session of its own (its credentials) that uses the clients' loader."""
    core = botocore.session.get_session()
    loader = botocore_data.client_loader()
    core.register_component("data_loader", loader)
    if credentials is not None:
        core._credentials = credentials  # botocore has no public setter for refreshable credentials
    session = boto3.Session(botocore_session=core, **keys)
    # boto3 appends its data folder to the loader's search paths for each session: keep each path once
    loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))
    return session


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
    proxies = resolve_proxies(config.proxy) if config.proxy else {}
    region = base.region_name or GLOBAL_REGION
    sts = proxied_client(base, "sts", region, ClientConfig(), endpoint_url, proxies)
    sts.meta.events.register("before-parse", refuse_html)
    params = {"RoleArn": instance.role_arn, "RoleSessionName": SESSION_NAME}
    if config.external_id != NO_EXTERNAL_ID:
        params["ExternalId"] = config.external_id
        if not config.allow_role_without_external_id:
            require_external_id(sts, instance.role_arn)

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
    return Account(
        id=instance.account_id,
        role_arn=instance.role_arn,
        session=boto3_session(credentials),
        config=client_config(workers),
        endpoint_url=endpoint_url,
        proxies=proxies,
    )


def proxied_client(
    session: Any, service: str, region: str, config: ClientConfig, endpoint_url: str | None,
    proxies: Mapping[str, str],
) -> Any:  # fmt: skip
    """A client; through the configured proxy (`init_config.proxy`) unless NO_PROXY excludes its endpoint.

    Without a configured proxy botocore reads HTTPS_PROXY/HTTP_PROXY/NO_PROXY itself.
    """
    client = session.client(service, region_name=region, config=config, endpoint_url=endpoint_url)
    proxy = proxy_for(client.meta.endpoint_url, proxies) if proxies else None
    if proxy is None:
        return client
    scheme = urlsplit(client.meta.endpoint_url).scheme
    via = config.merge(ClientConfig(proxies={scheme: proxy}))
    return session.client(service, region_name=region, config=via, endpoint_url=endpoint_url)


def require_external_id(sts: Any, role_arn: str) -> None:
    """Refuse a role that can be assumed without the ExternalId (the confused-deputy check).

    An AssumeRole without it must fail with AccessDenied, as the predecessor checked. Only real AWS
    evaluates trust policies: against another endpoint (moto, LocalStack) the check is skipped and logged.
    """
    if role_arn in _VERIFIED:
        return
    if not is_aws_endpoint(sts.meta.endpoint_url):
        log.info("event=external_id.check.skipped role=%s endpoint=%s", role_arn, sts.meta.endpoint_url)
        return
    try:
        sts.assume_role(RoleArn=role_arn, RoleSessionName=CHECK_SESSION_NAME)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "AccessDenied":
            _VERIFIED.add(role_arn)
            return
        raise CredentialsError(
            role_arn=role_arn,
            problem=f"checking that it requires the ExternalId: {error.get('Code')}: {error.get('Message')}",
        ) from None
    except (ConnectionError, ResponseParserError) as exc:
        raise Unreachable(role_arn=role_arn, problem=not_aws(exc)) from None
    except (BotoCoreError, ValueError) as exc:  # no credentials, bad endpoint or provider settings
        raise CredentialsError(role_arn=role_arn, problem=_first_line(exc)) from None
    raise CredentialsError(
        role_arn=role_arn,
        problem="the role can be assumed WITHOUT the ExternalId, so anyone it trusts could make this job "
        "read the account for them (confused deputy); add the condition StringEquals sts:ExternalId to its "
        "trust policy (the CloudFormation template does), or set init_config.allow_role_without_external_id",
    )


@lru_cache(maxsize=1)
def _aws_dns_suffixes() -> tuple[str, ...]:
    """The DNS suffixes of every AWS partition (amazonaws.com, amazonaws.com.cn, api.aws, ...)."""
    partitions = botocore_data.data("partitions")["partitions"]
    outputs = [p["outputs"] for p in partitions]
    found = {o[k] for o in outputs for k in ("dnsSuffix", "dualStackDnsSuffix") if k in o}
    return tuple(sorted(found))


def is_aws_endpoint(url: str | None) -> bool:
    """Whether `url` is an AWS endpoint (regional, FIPS or a VPC endpoint): a host in an AWS DNS suffix."""
    host = (urlsplit(url or "").hostname or "").lower()
    return any(host == s or host.endswith("." + s) for s in _aws_dns_suffixes())


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
