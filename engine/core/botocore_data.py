"""botocore's bundled data (service models, paginators, partitions, endpoints), and the models clients use.

Two loaders, each parsing a JSON file once (the data files, `data`, only through the second):
- `session()`: whole models, for checking mappings and for the authors' tools. A run drops them once its
  mappings are checked (`forget`).
- `client_loader()`: the one loader of every account's boto3 session. A service some mapping calls gets a
  model narrowed to the operations called (`want`) and the shapes they reach, without documentation: EC2's
  model is about 14 MB parsed, and each client also builds a method per operation, so whole models cost
  tens of MB per process and more per account.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

import botocore.session
from botocore.loaders import Loader
from botocore.regions import EndpointResolver

SERVICE_MODEL = "service-2"
# Operations botocore calls by itself: S3's redirect handlers ask HeadBucket for a bucket's region, and
# directory buckets need CreateSession.
BOTOCORE_CALLS = {"s3": frozenset({"HeadBucket", "CreateSession"})}


@cache
def session() -> botocore.session.Session:
    """The process's botocore session for reading bundled data (never for calls)."""
    return botocore.session.get_session()


@cache
def service_model(service: str) -> Any:
    """botocore's whole model of `service` (a boto3 client name)."""
    return session().get_service_model(service)


def forget() -> None:
    """Let the whole models go (read again when next asked for)."""
    session.cache_clear()
    service_model.cache_clear()


class NarrowLoader(Loader):
    """botocore's loader whose service models keep only the operations wanted of them (all when none are).

    Wanted operations only grow; a client built before an operation was wanted lacks its method and is built
    again (`engine.aws.sessions.Account.client`).
    """

    def __init__(self) -> None:
        super().__init__()
        self._wanted: dict[str, frozenset[str]] = {}
        self._narrowed: dict[tuple[str, str | None], tuple[frozenset[str], dict]] = {}
        self._lock = threading.Lock()

    def want(self, service: str, operations: Iterable[str]) -> None:
        with self._lock:
            known = self._wanted.get(service, BOTOCORE_CALLS.get(service, frozenset()))
            self._wanted[service] = known.union(operations)

    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        wanted = self._wanted.get(service_name)
        if type_name != SERVICE_MODEL or wanted is None:
            return super().load_service_model(service_name, type_name, api_version)
        with self._lock:
            kept = self._narrowed.get((service_name, api_version))
            if kept is None or kept[0] != wanted:
                # a loader of its own parses the whole model, so that no cache keeps it
                reader = Loader(list(self.search_paths), include_default_search_paths=False)
                whole = reader.load_service_model(service_name, type_name, api_version)
                kept = self._narrowed[(service_name, api_version)] = (wanted, narrowed(whole, wanted))
            return kept[1]


@cache
def client_loader() -> NarrowLoader:
    """The process's one loader for clients (shared by every account's session)."""
    return NarrowLoader()


def data(name: str) -> Any:
    """A bundled data file (`endpoints`, `partitions`), through the clients' loader: parsed once per process,
    whatever `forget` drops (botocore's `endpoints` alone is about 7 MB parsed)."""
    return client_loader().load_data(name)


@cache
def endpoint_resolver() -> EndpointResolver:
    """botocore's resolver over `data("endpoints")`: partitions and regions without a session."""
    return EndpointResolver(data("endpoints"))


def narrowed(model: dict, operations: Iterable[str]) -> dict:
    """A service model (service-2 dict) with only `operations`, the endpoint-discovery operation, and the
    shapes they reach; documentation left out."""
    every = model["operations"]
    names = set(operations) | {n for n, op in every.items() if op.get("endpointoperation")}
    kept_operations = {n: _undocumented(every[n]) for n in sorted(names) if n in every}
    shapes: dict[str, Any] = {}
    todo = [ref["shape"] for op in kept_operations.values() for ref in _operation_refs(op)]
    while todo:
        name = todo.pop()
        if name not in shapes:
            shape = shapes[name] = _undocumented(model["shapes"][name])
            if "members" in shape:
                shape["members"] = {m: _undocumented(ref) for m, ref in shape["members"].items()}
            todo += [ref["shape"] for ref in _shape_refs(shape)]
    return {**_undocumented(model), "operations": kept_operations, "shapes": shapes}


def _undocumented(node: dict) -> dict:
    return {k: v for k, v in node.items() if k != "documentation"}


def _operation_refs(operation: dict) -> Iterator[dict]:
    yield from (operation[k] for k in ("input", "output") if k in operation)
    yield from operation.get("errors", ())


def _shape_refs(shape: dict) -> Iterator[dict]:
    yield from shape.get("members", {}).values()
    yield from (shape[k] for k in ("member", "key", "value") if k in shape)
