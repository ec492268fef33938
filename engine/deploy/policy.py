"""The IAM policies the job needs, derived from the mapping files.

In: `Mappings`. Out: IAM policy documents (plain dicts, ready for `json.dumps` or a CloudFormation template).
The role policy holds every action a mapping's `list`, `details` or `get` calls (its `iam_action`: the
mapping's, else `{signing name}:{Operation}`), plus what the engine's own readers call: the event reader
(S3 on the log bucket, CloudTrail LookupEvents when the bucket is missing) and the flow-log reader (S3 on the
log bucket, EC2 DescribeNetworkInterfaces). Actions named after an HTTP method (`apigateway:GET`) are
granted on the resource paths the operations' botocore models request, not on everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.core.botocore_data import service_model
from engine.core.stackpack import ROLE_NAME
from engine.language.loader import Mappings

LOG_BUCKET_PATTERN = "stackstate-logs-*"
VERSION = "2012-10-17"
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Calls the engine makes itself, outside the mappings: (what needs it, IAM action).
READER_ACTIONS: tuple[tuple[str, str], ...] = (
    ("event reader: CloudTrail fallback when the log bucket is missing or denied", "cloudtrail:LookupEvents"),
    ("flow-log reader: network interfaces to resources", "ec2:DescribeNetworkInterfaces"),
)
# Account discovery (engine.aws.organizations): read-only, and ListTagsForResource only with a tag filter.
ORGANIZATIONS_ACTIONS = (
    "organizations:ListAccounts",
    "organizations:ListChildren",
    "organizations:ListTagsForResource",
)
# The log bucket (EventBridge objects via Firehose, VPC flow logs): read, list, check versioning, delete.
LOG_BUCKET_ACTIONS = ("s3:GetBucketVersioning", "s3:ListBucket", "s3:ListBucketVersions")
LOG_OBJECT_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion")


@dataclass(frozen=True)
class Grant:
    """One IAM action a call needs, and the resource paths it needs it on (None: any resource)."""

    action: str
    paths: tuple[str, ...] | None = None


def grants(mappings: Mappings) -> list[Grant]:
    """Every action the mappings and the readers need, each once, in a stable order."""
    found: dict[str, set[str] | None] = {}
    for service, call in mappings.calls():
        action = call.iam_action
        path = _resource_path(service, call.operation) if _by_http_method(action) else None
        if path is None or found.get(action, set()) is None:
            found[action] = None
        else:
            found.setdefault(action, set()).add(path)  # type: ignore[union-attr]
    for _why, action in READER_ACTIONS:
        found.setdefault(action, None)
    return [Grant(a, None if p is None else tuple(sorted(p))) for a, p in sorted(found.items())]


def role_policy(
    mappings: Mappings,
    partition: str = "aws",
    bucket: str = LOG_BUCKET_PATTERN,
    account: str = "*",
    url_suffix: str = "amazonaws.com",
) -> dict[str, Any]:
    """The policy of `StackStateAwsIntegrationRole` in each monitored account; `partition`, `bucket`,
    `account` and the endpoints' `url_suffix` are used as given (the CloudFormation template passes
    `${AWS::Partition}`, `${AWS::URLSuffix}`, ...).
    Objects encrypted with a KMS key (the template's bucket, Firehose) need kms:Decrypt, through S3 only."""
    everything = [g.action for g in grants(mappings) if g.paths is None]
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadTopology", "Effect": "Allow", "Action": everything, "Resource": "*"},
    ]
    for grant in (g for g in grants(mappings) if g.paths is not None):
        prefix = grant.action.split(":")[0]
        statements.append(
            {
                "Sid": "Read" + re.sub(r"[^A-Za-z0-9]", "", grant.action.title()),
                "Effect": "Allow",
                "Action": [grant.action],
                "Resource": [f"arn:{partition}:{prefix}:*::{path}" for path in grant.paths or ()],
            }
        )
    statements += [
        {
            "Sid": "LogBucket",
            "Effect": "Allow",
            "Action": list(LOG_BUCKET_ACTIONS),
            "Resource": f"arn:{partition}:s3:::{bucket}",
        },
        {
            "Sid": "LogObjects",
            "Effect": "Allow",
            "Action": list(LOG_OBJECT_ACTIONS),
            "Resource": f"arn:{partition}:s3:::{bucket}/*",
        },
        {
            "Sid": "LogObjectsKeys",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": f"arn:{partition}:kms:*:{account}:key/*",
            "Condition": {"StringLike": {"kms:ViaService": f"s3.*.{url_suffix}"}},
        },
    ]
    return {"Version": VERSION, "Statement": statements}


def agent_policy(
    partition: str = "aws", role: str = ROLE_NAME, organizations: bool = False
) -> dict[str, Any]:
    """The agent account's policy: assume the integration role in any monitored account; with
    `organizations`, also list the accounts of the organization (for an `organization:` instance without
    a `role_arn` of its own, where the job's identity is in the management or delegated-admin account)."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:{partition}:iam::*:role/{role}"}
    ]
    if organizations:
        statements.append(
            {
                "Sid": "DiscoverAccounts",
                "Effect": "Allow",
                "Action": list(ORGANIZATIONS_ACTIONS),
                "Resource": "*",
            }
        )
    return {"Version": VERSION, "Statement": statements}


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Every action a policy document allows."""
    actions: set[str] = set()
    for statement in policy["Statement"]:
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def _by_http_method(action: str) -> bool:
    """IAM actions named after an HTTP method apply to resource paths (API Gateway's management API)."""
    return action.split(":", 1)[1] in _HTTP_METHODS


def _resource_path(service: str, operation: str) -> str | None:
    """The resource path an operation requests, as an IAM resource: `{param}` becomes `*`, and a leading
    API version segment (`/v2`) is dropped, since resource ARNs do not carry it. None when not a REST call."""
    http = service_model(service).operation_model(operation).http
    uri = str(http.get("requestUri", "")).split("?", 1)[0]
    if not uri.startswith("/"):
        return None
    path = re.sub(r"\{[^}]+\}", "*", uri)
    return re.sub(r"^/v[0-9]+(?=/)", "", path) or "/"
