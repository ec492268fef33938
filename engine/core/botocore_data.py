"""botocore's bundled data (service models, paginators, partitions, endpoints), read through one session.

One botocore session per process parses each JSON file once; its data loader is also the one every account's
boto3 session uses (`shared_loader`), so each service model is parsed and kept once, not once per account.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import botocore.session


@cache
def session() -> botocore.session.Session:
    """The process's botocore session for reading bundled data (never for calls)."""
    return botocore.session.get_session()


def shared_loader() -> Any:
    """The process's one botocore data loader: it caches every JSON model it reads.

    Each botocore session otherwise has its own loader, so every account would parse and keep its own copy
    of each service model (about 70 MB for the mapped services, per account); sharing it keeps one.
    """
    return session().get_component("data_loader")


@cache
def service_model(service: str) -> Any:
    """botocore's model of `service` (a boto3 client name)."""
    return session().get_service_model(service)
