"""Accounts discovered from AWS Organizations (engine.aws.organizations), against a live moto server: an
organization with nested OUs and tagged accounts; include and exclude by OU (descendants too), tag and
account; an explicit instance wins; a failed discovery falls back to the list an earlier one saved, and
without one is a clear error; and the real `aws-topology scan` scans each discovered account."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import boto3
import pytest

from engine.aws.organizations import STATE_KEY, discovered, from_saved
from engine.core.config import Config, Instance, Organization, Selection
from engine.core.errors import ConfigError
from engine.core.state import State
from tests.support import ACCOUNT, live_aws, moto_env, moto_server, serve

REGION = "eu-west-1"
TEMPLATE = {"regions": ["global", REGION], "apis_to_run": ["sqs"], "log_bucket_name": "logs-{account_id}"}


@dataclass
class Estate:
    """The moto organization: root > prod > prod-eu, root > dev; account ids by name."""

    endpoint: str
    root: str = ""
    ous: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def all(self) -> set[str]:
        return set(self.ids.values())


def forget(estate: Estate) -> None:
    """Reset the moto server: no organization any more (moto's ListAccounts then lists no account, where
    AWS would answer AWSOrganizationsNotInUseException: both are a failed discovery)."""
    from demo.server import reset

    reset(estate.endpoint)


@pytest.fixture
def estate() -> Iterator[Estate]:
    """Accounts: management (root), web (prod, env=prod), eu (prod-eu, env=prod team=eu), lab (dev, env=dev),
    loose (root, no tags), gone (closed, in prod)."""
    with moto_server() as endpoint, live_aws(endpoint):
        org = boto3.client("organizations", region_name="us-east-1")
        org.create_organization(FeatureSet="ALL")
        found = Estate(endpoint, root=org.list_roots()["Roots"][0]["Id"], ids={"management": ACCOUNT})

        def ou(name: str, parent: str) -> str:
            created = org.create_organizational_unit(ParentId=parent, Name=name)
            found.ous[name] = created["OrganizationalUnit"]["Id"]
            return found.ous[name]

        prod = ou("prod", found.root)
        ou("prod-eu", prod)
        ou("dev", found.root)
        for name, parent, tags in [
            ("web", "prod", {"env": "prod"}),
            ("eu", "prod-eu", {"env": "prod", "team": "eu"}),
            ("lab", "dev", {"env": "dev"}),
            ("loose", None, {}),
            ("gone", "prod", {"env": "prod"}),
        ]:
            tagged = [{"Key": k, "Value": v} for k, v in tags.items()]
            created = org.create_account(Email=f"{name}@example.com", AccountName=name, Tags=tagged)
            account = created["CreateAccountStatus"]["AccountId"]
            found.ids[name] = account
            if parent:
                moved = {"SourceParentId": found.root, "DestinationParentId": found.ous[parent]}
                org.move_account(AccountId=account, **moved)
        org.close_account(AccountId=found.ids["gone"])
        yield found


EVERY = Selection()


def organization(include: Selection = EVERY, exclude: Selection = EVERY, **settings: Any) -> Organization:
    return Organization(
        where="instances[0]", role_name=settings.pop("role_name", "Reader"), include=include, exclude=exclude,
        template=TEMPLATE, **settings,
    )  # fmt: skip


def config(*organizations: Organization, instances: tuple[Instance, ...] = ()) -> Config:
    return Config(external_id="ext-id", instances=instances, organizations=organizations, path="conf.yaml")


def run_discovery(cfg: Config, state: State, endpoint: str | None = None) -> tuple[Config, list[str]]:
    lines: list[str] = []
    found, failed = discovered(cfg, state, lines.append, endpoint_url=endpoint)
    assert failed == sum("error=" in line for line in lines)
    return found, lines


def accounts(cfg: Config) -> set[str]:
    return {i.account_id for i in cfg.instances}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    with State(tmp_path / "state.sqlite") as opened:
        yield opened


def test_every_active_account_becomes_an_instance_built_from_the_template(estate, state):
    found, lines = run_discovery(config(organization()), state)

    assert accounts(found) == estate.all() - {estate.ids["gone"]}  # a closed account is not scanned
    web = next(i for i in found.instances if i.account_id == estate.ids["web"])
    assert web.role_arn == f"arn:aws:iam::{estate.ids['web']}:role/Reader"
    assert web.regions == ("global", REGION) and web.apis_to_run == ("sqs",)
    assert web.log_bucket_name == f"logs-{estate.ids['web']}"
    assert lines == ["organization instances[0] accounts=5 included=5 added=5 from=live"]
    assert from_saved(config(organization()), state) == found  # what `view` reads, without calling AWS
    assert from_saved(config(organization(role_name="Other")), state).instances == ()  # another selection


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (Selection(ous=("prod",)), EVERY, {"web", "eu"}),  # an OU and the OUs below it
        (Selection(ous=("prod-eu",)), EVERY, {"eu"}),
        (Selection(ous=("prod", "dev")), EVERY, {"web", "eu", "lab"}),
        (EVERY, Selection(ous=("prod",)), {"management", "lab", "loose"}),
        (Selection(ous=("prod",)), Selection(ous=("prod-eu",)), {"web"}),
        (Selection(tags=(("env", "prod"),)), EVERY, {"web", "eu"}),
        (Selection(tags=(("env", "prod"), ("team", "eu"))), EVERY, {"eu"}),  # every include tag
        (EVERY, Selection(tags=(("env", "dev"), ("team", "eu"))), {"management", "web", "loose"}),  # any
        (EVERY, Selection(accounts=("web", "management")), {"eu", "lab", "loose"}),
        (Selection(accounts=("web", "lab")), EVERY, {"web", "lab"}),
        (Selection(ous=("root",), tags=(("env", "prod"),)), Selection(accounts=("web",)), {"eu"}),
    ],
    ids=[
        "ou",
        "nested-ou",
        "two-ous",
        "exclude-ou",
        "exclude-sub-ou",
        "tag",
        "every-tag",
        "exclude-any-tag",
        "exclude-accounts",
        "include-accounts",
        "root-tag-minus-account",
    ],
)
def test_include_and_exclude(estate, state, include, exclude, expected):
    def real(selection: Selection) -> Selection:
        ous = tuple(estate.root if o == "root" else estate.ous[o] for o in selection.ous)
        ids = tuple(estate.ids[a] for a in selection.accounts)
        return Selection(ous=ous, tags=selection.tags, accounts=ids)

    found, lines = run_discovery(config(organization(real(include), real(exclude))), state)

    assert accounts(found) == {estate.ids[name] for name in expected}
    assert f" accounts=5 included={len(expected)} " in lines[0]


def test_tags_are_read_only_when_a_tag_filter_is_configured(estate, state, monkeypatch):
    from engine.aws import fetch

    operations: list[str] = []
    original = fetch.Fetcher.call

    def counting(self, account, region, service, call, params):  # type: ignore[no-untyped-def]
        operations.append(call.operation)
        return original(self, account, region, service, call, params)

    monkeypatch.setattr(fetch.Fetcher, "call", counting)
    run_discovery(config(organization(Selection(ous=(estate.ous["prod"],)))), state)
    assert operations == ["ListAccounts"] + ["ListChildren"] * 4  # prod and prod-eu: accounts, then OUs

    operations.clear()
    eu = Selection(ous=(estate.ous["prod-eu"],), tags=(("team", "eu"),))
    run_discovery(config(organization(eu)), state)
    assert operations == ["ListAccounts", "ListChildren", "ListChildren", "ListTagsForResource"]  # eu only


def test_an_explicit_instance_keeps_its_own_settings_and_is_not_added_twice(estate, state):
    explicit = Instance(role_arn=f"arn:aws:iam::{estate.ids['web']}:role/Explicit", regions=("us-east-1",))
    second = organization(Selection(ous=(estate.ous["prod"],)), role_name="Second")

    found, lines = run_discovery(config(organization(), second, instances=(explicit,)), state)

    assert [i.account_id for i in found.instances].count(estate.ids["web"]) == 1
    assert found.instances[0] == explicit
    assert len(found.instances) == 5
    eu = next(i for i in found.instances if i.account_id == estate.ids["eu"])
    assert eu.role_arn.endswith(":role/Reader")  # the first organization that lists it
    assert lines[0] == "organization instances[0] accounts=5 included=5 added=4 from=live"
    assert lines[1] == "organization instances[0] accounts=5 included=2 added=0 from=live"


def test_a_role_template_and_a_reader_role(estate, state):
    template = "arn:{partition}:iam::{account_id}:role/path/Topology"
    reader = f"arn:aws:iam::{ACCOUNT}:role/OrganizationsReader"

    cfg = config(organization(role_name=template, role_arn=reader))
    found, _ = run_discovery(cfg, state, estate.endpoint)

    assert {i.role_arn for i in found.instances} == {
        f"arn:aws:iam::{a}:role/path/Topology" for a in estate.all() - {estate.ids["gone"]}
    }


class Denied(BaseHTTPRequestHandler):
    """Organizations answering every call with AccessDeniedException."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        error = {"__type": "AccessDeniedException", "Message": "not the management account"}
        body = json.dumps(error).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.mark.parametrize("failure", ["denied", "unreachable", "no-account-listed"])
def test_a_failed_discovery_uses_the_saved_list_and_counts_the_failures(estate, state, caplog, failure):
    cfg = config(organization(Selection(ous=(estate.ous["prod"],))))
    first, _ = run_discovery(cfg, state)
    assert accounts(first) == {estate.ids["web"], estate.ids["eu"]}

    def fail() -> tuple[Config, list[str]]:
        if failure == "denied":
            with serve(Denied) as url:
                return run_discovery(cfg, state, url)
        if failure == "unreachable":
            return run_discovery(cfg, state, "http://127.0.0.1:9")
        forget(estate)
        return run_discovery(cfg, state)

    again, lines = fail()
    _, lines_twice = fail()

    assert again.instances == first.instances  # nothing dropped
    expected = {
        "denied": "AccessDenied",
        "unreachable": "Could not connect",
        "no-account-listed": "no ACTIVE",
    }
    assert "from=saved failures=1 error=" in lines[0] and expected[failure] in lines[0]
    assert "from=saved failures=2 " in lines_twice[0]
    assert "event=organization.failed instance=instances[0]" in caplog.text and "using=saved" in caplog.text
    (entry,) = state.get(STATE_KEY).values()
    assert entry["failures"] == 2 and expected[failure] in entry["error"]


def test_a_list_saved_less_than_every_seconds_ago_is_used_without_asking(estate, state):
    cfg = config(organization())
    first, _ = run_discovery(cfg, state)
    lines: list[str] = []
    again, failed = discovered(cfg, state, lines.append, endpoint_url="http://127.0.0.1:9", every=3600)

    assert again.instances == first.instances and failed == 0  # the broken endpoint was never asked
    assert lines[0].startswith("organization instances[0] accounts=5 included=5 added=5 from=saved age=")
    _, failed = discovered(cfg, state, lines.append, endpoint_url="http://127.0.0.1:9", every=0)
    assert failed == 1  # `scan` always asks


def test_without_a_saved_list_a_failed_organization_is_an_error_and_the_others_still_run(estate, state):
    explicit = Instance(role_arn=f"arn:aws:iam::{ACCOUNT}:role/Explicit", regions=(REGION,))
    forget(estate)

    found, lines = run_discovery(config(organization(), instances=(explicit,)), state)

    assert found.instances == (explicit,)
    assert lines[0].startswith("organization instances[0] error=")
    assert "no account list saved by an earlier run, so none of its accounts is scanned" in lines[0]
    assert state.get(STATE_KEY) is None

    with pytest.raises(ConfigError, match="no account to scan: no organization's accounts could be"):
        run_discovery(config(organization()), state)


def test_a_saved_list_belongs_to_its_filters(estate, state):
    """Another include is another selection: the list saved for the first is not used for it."""
    run_discovery(config(organization(Selection(ous=(estate.ous["prod"],)))), state)
    forget(estate)

    with pytest.raises(ConfigError):
        run_discovery(config(organization(Selection(ous=(estate.ous["dev"],)))), state)


def test_the_real_scan_scans_every_discovered_account(estate, tmp_path):
    conf = tmp_path / "conf.yaml"
    selection = {
        "include": {"ous": [estate.ous["prod"]]},
        "exclude": {"accounts": [estate.ids["management"]]},
    }
    conf.write_text(
        "init_config: {aws_access_key_id: '', aws_secret_access_key: '', external_id: ext-id}\n"
        "instances:\n"
        f"  - organization: {json.dumps({'role_name': 'StackStateAwsIntegrationRole', **selection})}\n"
        f"    regions: [{REGION}]\n"
        "    apis_to_run: [sqs]\n"
        f"  - role_arn: arn:aws:iam::{estate.ids['loose']}:role/Explicit\n"
        f"    regions: [{REGION}]\n"
        "    apis_to_run: [sqs]\n"
    )
    for name in ("web", "eu", "loose"):  # a queue in each account, seen through its own role
        creds = boto3.client("sts", region_name=REGION).assume_role(
            RoleArn=f"arn:aws:iam::{estate.ids[name]}:role/Setup", RoleSessionName="setup"
        )["Credentials"]
        boto3.client(
            "sqs", region_name=REGION, aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"],
        ).create_queue(QueueName=f"queue-{name}")  # fmt: skip
    exe = Path(sys.executable).parent / "aws-topology"
    out, state = tmp_path / "out", tmp_path / "state.sqlite"

    def scan() -> subprocess.CompletedProcess[str]:
        args = [str(exe), "scan", "-c", str(conf), "--out", str(out), "--state", str(state), "--workers", "2"]
        env = {**os.environ, **moto_env(estate.endpoint)}
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)

    done = scan()

    assert done.returncode == 0, done.stderr
    assert "organization instances[0] accounts=5 included=2 added=2 from=live" in done.stdout
    (run,) = out.glob("run-*")
    manifest = json.loads((run / "manifest.json").read_text())
    expected = {estate.ids[name]: name for name in ("web", "eu", "loose")}
    assert set(manifest["accounts"]) == set(expected)
    for account, name in expected.items():
        (payload,) = [json.loads((run / p).read_text()) for p in manifest["accounts"][account]["payloads"]]
        components = [c for t in payload["topologies"] for c in t["components"]]
        queues = [c["externalId"] for c in components if c["type"]["name"] == "aws.sqs.queue"]
        assert queues == [f"arn:aws:sqs:{REGION}:{account}:queue-{name}"]  # each account's own, by its role

    page = tmp_path / "page.html"
    viewed = subprocess.run(
        [str(exe), "view", "-c", str(conf), "--state", str(state), "--out", str(page)],
        capture_output=True,
        text=True,
    )
    assert viewed.returncode == 0, viewed.stderr
    assert all(f"queue-{name}" in page.read_text() for name in ("web", "eu", "loose"))  # the saved list's too

    status = subprocess.run([str(exe), "status", "--state", str(state)], capture_output=True, text=True)
    assert "organization instances[0] (" in status.stdout and "accounts=5 included=2, listed" in status.stdout

    forget(estate)
    again = scan()  # discovery fails: the saved list is scanned again

    assert again.returncode == 1, again.stderr  # scanned, but on a list that could not be refreshed
    assert "from=saved failures=1" in again.stdout
    assert "event=organization.failed" in again.stderr and "Traceback" not in again.stderr
    runs = sorted(out.glob("run-*"))
    assert set(json.loads((runs[-1] / "manifest.json").read_text())["accounts"]) == set(expected)
