"""The StackState AWS StackPack's fixed names (`aws-v2`): what its views, tags, payloads and role are keyed
on."""

from __future__ import annotations

from engine.core.config import Instance

INSTANCE_TYPE = "aws-v2"  # the payloads' instance type
STACKPACK_LABEL = f"stackpack:{INSTANCE_TYPE}"  # on every component: the views select on it
INTEGRATION_TYPE_TAG = f"integration-type:{INSTANCE_TYPE}"
IDENTIFIER_TAG = "stackstate-identifier"  # an AWS tag that adds an identifier to its component
ENVIRONMENT_TAG = "stackstate-environment"  # an AWS tag that sets its component's environment
ROLE_NAME = "StackStateAwsIntegrationRole"  # the role the StackPack's template creates in each account
TRACE_SOURCE = "OpenTelemetry traces"  # `data.Source` of a relation seen only in traces (engine.traces)


def integration_url(account: str) -> str:
    """The tag (and view label) naming the account a component or check belongs to."""
    return f"integration-url:{account}"


def integration_tags(account: str, tags: tuple[str, ...]) -> list[str]:
    """The agent's `tags` of every component: the integration's type and URL, and the configured tags."""
    return sorted({INTEGRATION_TYPE_TAG, integration_url(account), *tags})


def check_tags(instance: Instance) -> list[str]:
    """The tags of the service checks: the instance's `tags` and the integration tags."""
    return [*instance.tags, INTEGRATION_TYPE_TAG, integration_url(instance.account_id)]
