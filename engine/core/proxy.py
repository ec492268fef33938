"""HTTP proxy settings for the AWS calls and the receiver: the environment, else the config's `proxy`.

`HTTPS_PROXY`/`HTTP_PROXY` (either case) win over `init_config.proxy.https`/`.http`, as the StackState Agent's
environment variables win over its own proxy settings; `NO_PROXY` and `proxy.no_proxy` both apply. The result
has urllib's shape (`{"http": url, "https": url, "no": "host,.domain"}`), which `proxy_for` reads.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


def resolve_proxies(
    configured: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The proxies in effect: per scheme the environment's, else the configured one; NO_PROXY lists merged."""
    env = urllib.request.getproxies_environment() if environ is None else _from(environ)
    conf = configured or {}
    found = {s: env.get(s) or conf.get(s) for s in ("http", "https")}
    result = {scheme: str(url) for scheme, url in found.items() if url}
    bypass = [h.strip() for h in env.get("no", "").split(",") if h.strip()] + list(conf.get("no_proxy", []))
    if bypass:
        result["no"] = ",".join(bypass)
    return result


def proxy_for(url: str, proxies: Mapping[str, str]) -> str | None:
    """The proxy URL for a request to `url`, or None when there is none for its scheme or `no` excludes it."""
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or "", dict(proxies)):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _from(environ: Mapping[str, str]) -> dict[str, str]:
    """urllib's reading of proxy variables, from a given mapping (lower case wins, as in urllib)."""
    found: dict[str, str] = {}
    for name in sorted(environ, key=lambda n: n.islower()):  # upper case first, lower case overrides
        if name.lower().endswith("_proxy") and environ[name]:
            found[name.lower()[: -len("_proxy")]] = environ[name]
    return found
