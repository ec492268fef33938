"""Accounts from AWS Organizations: each `organization:` instance becomes one instance per selected account.

In: `Config` (its `organizations`), the `State`. Out: the `Config` with the discovered instances added after
the explicit ones (an account already configured keeps its own instance; two organizations listing one
account give it to the first). Calls, made with the organization's `role_arn` or the base credentials
through the `Fetcher` (pagination, retries, typed errors): `ListAccounts` (ACTIVE accounts only);
`ListChildren` from each OU an include or exclude names, down its tree (two calls per OU there, however
many accounts); `ListTagsForResource` per remaining account, only when a tag filter is configured.
Each discovery's account list is saved in the state (`organizations.accounts`); when one fails (denied,
throttled, unreachable) the saved list is used, with a warning and a count of the failures in a row. With
no saved list the organization adds nothing (an error line), and with nothing else to scan the run stops
with a `ConfigError`. A list saved less than `every` seconds ago is used without asking again (`run`, every
minute, asks once per `full_run_interval`; `scan` always asks). The number of failed discoveries is returned
beside the config: the run that had them is incomplete.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from engine.aws.fetch import Fetcher
from engine.aws.sessions import GLOBAL_REGION, Account, assume, base_session, client_config
from engine.core.config import Config, Instance, Organization, Selection
from engine.core.errors import CallFailed, ConfigError, TopologyError
from engine.core.state import State
from engine.language.loader import Call

log = logging.getLogger("aws_topology")

# {Organization.key: {instance, accounts: [[id, partition]], total, at, failures (in a row), error}}
STATE_KEY = "organizations.accounts"
SERVICE = "organizations"
PATIENCE = 2  # extra rounds for a call still throttled after botocore's retries
BASE_CREDENTIALS = "the job's own credentials"


def _call(operation: str, method: str) -> Call:
    return Call(operation=operation, method=method, iam_action=f"{SERVICE}:{operation}", paginate=True)


LIST_ACCOUNTS = _call("ListAccounts", "list_accounts")
LIST_CHILDREN = _call("ListChildren", "list_children")
LIST_TAGS = _call("ListTagsForResource", "list_tags_for_resource")
ACTIONS = tuple(c.iam_action for c in (LIST_ACCOUNTS, LIST_CHILDREN, LIST_TAGS))


@dataclass(frozen=True)
class Found:
    """One discovery: the ACTIVE accounts (`total`) and the selected ones as (account id, partition)."""

    total: int
    accounts: list[tuple[str, str]]


def discovered(
    config: Config,
    state: State,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    endpoint_url: str | None = None,
    every: float = 0.0,
) -> tuple[Config, int]:
    """`config` with each organization's accounts as instances, one `organization ...` line each; and how
    many discoveries failed."""
    if not config.organizations:
        return config, 0
    fetcher = Fetcher(stop, patience=PATIENCE)
    saved: dict[str, Any] = dict(state.get(STATE_KEY) or {})
    instances, failures = list(config.instances), 0
    for org in config.organizations:
        last, source = saved.get(org.key), "live"
        if last is not None and not last.get("error") and _age(last) < every:
            added = _add(instances, org, last["accounts"])
            echo(f"organization {org.where} accounts={last['total']} included={len(last['accounts'])} "
                 f"added={added} from=saved age={_age(last):.0f}s")  # fmt: skip
            continue
        try:
            found = discover(config, org, fetcher, endpoint_url)
            entry = {"instance": org.where, "accounts": found.accounts, "total": found.total,
                     "at": datetime.now(UTC).isoformat(), "failures": 0, "error": None}  # fmt: skip
        except TopologyError as exc:
            failures += 1
            if last is None:
                log.error("event=organization.failed instance=%s error=%r saved=none", org.where, str(exc))
                echo(f"organization {org.where} error={str(exc)!r}: no account list saved by an earlier "
                     "run, so none of its accounts is scanned")  # fmt: skip
                continue
            source, entry = "saved", {**last, "failures": int(last.get("failures", 0)) + 1, "error": str(exc)}
            log.warning("event=organization.failed instance=%s error=%r using=saved saved_at=%s failures=%d",
                        org.where, str(exc), last.get("at"), entry["failures"])  # fmt: skip
        # in one transaction: shards discovering side by side keep each other's lists
        state.update(STATE_KEY, lambda lists, key=org.key, entry=entry: {**lists, key: entry}, {})
        added = _add(instances, org, entry["accounts"])
        failed = f" failures={entry['failures']} error={entry['error']!r}" if source == "saved" else ""
        echo(f"organization {org.where} accounts={entry['total']} included={len(entry['accounts'])} "
             f"added={added} from={source}{failed}")  # fmt: skip
    if not instances:
        raise ConfigError(
            file=config.path or "-", key="instances",
            problem="no account to scan: no organization's accounts could be discovered (see above)",
        )  # fmt: skip
    return replace(config, instances=tuple(instances)), failures


def _age(entry: dict) -> float:
    """Seconds since a saved list was discovered (infinite when it says no time)."""
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(entry["at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return float("inf")


def from_saved(config: Config, state: State) -> Config:
    """`config` with the accounts each organization's last discovery saved (no AWS call), for the commands
    that only read (`view`)."""
    saved = state.get(STATE_KEY) or {}
    instances = list(config.instances)
    for org in config.organizations:
        if org.key in saved:
            _add(instances, org, saved[org.key]["accounts"])
    return replace(config, instances=tuple(instances))


def _add(instances: list[Instance], org: Organization, accounts: list[list[str]]) -> int:
    """Append the instances of `accounts` ([id, partition]) not already in `instances`; how many."""
    taken = {i.account_id for i in instances}
    added = [org.instance(a, partition) for a, partition in accounts if a not in taken]
    instances += added
    return len(added)


def discover(config: Config, org: Organization, fetcher: Fetcher, endpoint_url: str | None = None) -> Found:
    """List the ACTIVE accounts and select them; raises a `TopologyError` when a call fails."""
    account = _account(config, org, endpoint_url)
    region = account.session.region_name or GLOBAL_REGION

    def pages(call: Call, key: str, **params: Any) -> list[dict]:
        return list(fetcher.call(account, region, SERVICE, call, params).get(key, []))

    active = {a["Id"]: a["Arn"].split(":")[1] for a in pages(LIST_ACCOUNTS, "Accounts") if _active(a)}
    if not active:  # AWS lists at least the management account: an empty answer is not an empty organization
        raise CallFailed(operation=LIST_ACCOUNTS.operation, account=account.id, region=region, code="Empty",
                         problem="no ACTIVE account listed")  # fmt: skip
    under = _Tree(lambda parent, kind: [c["Id"] for c in pages(LIST_CHILDREN, "Children", ParentId=parent,
                                                                ChildType=kind)])  # fmt: skip
    chosen = [a for a in active if _matches(a, org.include, under, every=True)]
    chosen = [a for a in chosen if not _matches(a, org.exclude, under, every=False)]
    if org.include.tags or org.exclude.tags:
        tags = {a: {t["Key"]: t["Value"] for t in pages(LIST_TAGS, "Tags", ResourceId=a)} for a in chosen}
        chosen = [a for a in chosen if all(tags[a].get(k) == v for k, v in org.include.tags)]
        chosen = [a for a in chosen if not any(tags[a].get(k) == v for k, v in org.exclude.tags)]
    return Found(total=len(active), accounts=[(a, active[a]) for a in sorted(chosen)])


def _account(config: Config, org: Organization, endpoint_url: str | None) -> Account:
    """Where the Organizations calls come from: the organization's role, else the base credentials."""
    if org.role_arn:
        reader = Instance(role_arn=org.role_arn, regions=("global",))
        return assume(config, reader, endpoint_url=endpoint_url, workers=1)
    return Account(
        id="-", role_arn=BASE_CREDENTIALS, session=base_session(config), config=client_config(1),
        endpoint_url=endpoint_url,
    )  # fmt: skip


def _active(account: dict) -> bool:
    """ACTIVE: `State` since 2025 (`Status` is being retired), `Status` before."""
    return account.get("State", account.get("Status")) == "ACTIVE"


class _Tree:
    """The accounts below an OU, each OU's children listed once per discovery."""

    def __init__(self, children: Callable[[str, str], list[str]]) -> None:
        self.children = children
        self.cache: dict[str, set[str]] = {}

    def accounts(self, ou: str) -> set[str]:
        if ou not in self.cache:
            found = set(self.children(ou, "ACCOUNT"))
            for child in self.children(ou, "ORGANIZATIONAL_UNIT"):
                found |= self.accounts(child)
            self.cache[ou] = found
        return self.cache[ou]


def _matches(account: str, selection: Selection, tree: _Tree, *, every: bool) -> bool:
    """Whether `account` matches the OU and id criteria of `selection` (tags apart): every one given
    (include: none given matches), or any one (exclude: none given matches nothing)."""
    checks = []
    if selection.ous:
        checks.append(any(account in tree.accounts(ou) for ou in selection.ous))
    if selection.accounts:
        checks.append(account in selection.accounts)
    return all(checks) if every else any(checks)
