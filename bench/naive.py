"""The naive scanner the engine is measured against: a bare boto3 walk of the per-item call plan.

What a straightforward script does: for each account, assume the role; for each (region, resource type),
one task on a pool of N threads; in each task, list (paginators), then make every per-item call of every
item one after another (attributes, tags, subscriptions per topic...), then list each child type per parent.
No region-wide joins, no fan-out of one task's items, no shaping, no payloads. The call parameters come from
the same mappings (the per-item plan, `engine.scan.plan.per_item`), read with plain JMESPath; nothing else of
the engine runs, so its floor is what the API calls of the naive plan cost at that concurrency.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

from engine.language.dialect import search
from engine.language.loader import Call, Mappings, Resource
from engine.scan.plan import plan

GLOBAL = "global"


def clients(role_arn: str, external_id: str, endpoint: str, workers: int) -> boto3.Session:
    """A session with the role's credentials (one AssumeRole, as the script would do)."""
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint)
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="naive", ExternalId=external_id)["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


class Naive:
    """One account's naive walk; `calls` counts the requests it made (pages included)."""

    def __init__(self, session: boto3.Session, account: str, endpoint: str, workers: int) -> None:
        self.session, self.account, self.endpoint = session, account, endpoint
        self.config = boto3.session.Config(
            retries={"mode": "standard"}, max_pool_connections=max(10, workers)
        )
        self._clients: dict[tuple[str, str], Any] = {}
        self.calls = 0

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            client = self.session.client(
                service, region_name=region, endpoint_url=self.endpoint, config=self.config
            )
            client.meta.events.register("before-call", self._count)
            self._clients[key] = client
        return self._clients[key]

    def _count(self, **_: Any) -> None:
        self.calls += 1  # the GIL makes this good enough for a count

    def request(self, service: str, region: str, call: Call, item: dict | None, **extra: Any) -> dict:
        params = {**call.params, **extra}
        for name, expression in call.args:
            value = search(expression, item or {})
            if value is not None:
                params.setdefault(name, value)
        client = self.client(service, region)
        try:
            if call.paginate:
                return client.get_paginator(call.method).paginate(**params).build_full_result()
            if call.next is not None:
                pages, page = {}, client.__getattribute__(call.method)(**params)
                while True:
                    pages.update(
                        {k: pages.get(k, []) + v if isinstance(v, list) else v for k, v in page.items()}
                    )
                    token = search(call.next.token, page)
                    if not token:
                        return pages
                    page = getattr(client, call.method)(**{**params, call.next.param: token})
            return getattr(client, call.method)(**params)
        except client.exceptions.ClientError:
            return {}  # a script logs and goes on

    def walk(self, resource: Resource, region: str, mappings: Mappings, parents: list[dict] | None) -> int:
        """List, describe item by item, then the children; returns the items seen."""
        listing, items = resource.listing, []
        if parents is None:
            assert listing.call is not None
            items = list(
                search(listing.items, self.request(resource.service, region, listing.call, None)) or []
            )
        else:
            for parent in parents:
                source = (
                    parent
                    if listing.call is None
                    else self.request(resource.service, region, listing.call, parent)
                )
                items += [
                    {**i, "_parent": parent} if isinstance(i, dict) else i
                    for i in search(listing.items, source) or []
                ]
        items = [i if isinstance(i, dict) else {"_value": i} for i in items]
        for item in items:
            for detail in resource.details:
                if detail.when is not None and not search(detail.when, item):
                    continue
                if detail.batch is not None:
                    continue  # below: one call per batch, as any script would
                response = self.request(resource.service, region, detail.call, item)
                value = search(detail.result, response) if detail.result else response
                if detail.into:
                    item[detail.into] = value
                elif isinstance(value, dict):
                    item.update(value)
        for detail in resource.details:
            if detail.batch is not None:
                keys = [k for i in items if (k := search(detail.batch.key, i)) is not None]
                for start in range(0, len(keys), detail.batch.size):
                    chunk = {detail.batch.param: keys[start : start + detail.batch.size]}
                    self.request(resource.service, region, detail.call, items[0], **chunk)
        seen = len(items)
        for child in mappings.children(resource):
            seen += self.walk(child, region, mappings, items)
        return seen


def scan_naive(config: Any, mappings: Mappings, endpoint: str, workers: int) -> tuple[int, int]:
    """Every account's (region, type) tasks on one pool of `workers` threads; (items seen, calls)."""
    walkers, tasks = [], []
    for instance in config.instances:
        session = clients(instance.role_arn, config.external_id, endpoint, workers)
        walker = Naive(session, instance.account_id, endpoint, workers)
        walkers.append(walker)
        for unit in plan(instance, mappings):
            tasks.append((walker, unit))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        seen = sum(pool.map(lambda t: t[0].walk(t[1].resource, t[1].client_region, mappings, None), tasks))
    return seen, sum(w.calls for w in walkers)
