"""The topology page: one self-contained HTML file (graph library, app and data inlined; no network).

In: a `Snapshot` and the `View`s of its accounts. Out: HTML text. The graph library is cytoscape from the npm
registry, installed by `npm ci` in `web/` (pinned in `web/package-lock.json`); its dist file is inlined here,
so a missing `web/node_modules` is a clear error, not a blank page. A wheel built after `npm ci` ships it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from engine.core.errors import BadInput
from engine.core.paths import data_dir
from engine.core.stackpack import TRACE_SOURCE
from engine.scan.last_snapshot import Snapshot
from engine.view.stql import View

WEB = data_dir("web")  # package data of a wheel (engine/_web), else the source tree's web/
LIBRARY = WEB / "node_modules" / "cytoscape" / "dist" / "cytoscape.min.js"
# Top to bottom, as StackState stacks its layers; layers the mappings declare beyond these come after.
LAYER_ORDER = (
    "Business Services", "Applications", "Serverless", "Containers", "Load Balancers", "Messaging",
    "Databases", "Storage", "Machines", "Networking",
)  # fmt: skip
NO_LAYER = "(no layer)"
NO_ACTION = "Go to AWS console"  # a link of a type the mappings no longer declare


class LibraryMissing(BadInput):
    fmt = "the page's graph library is not built: {path} is missing; run `npm ci` in {web} (./run.sh does it)"


def library() -> str:
    if not LIBRARY.is_file():
        raise LibraryMissing(path=str(LIBRARY), web=str(WEB))
    return LIBRARY.read_text(encoding="utf-8")


def _script_safe(code: str) -> str:
    """Script text that cannot end its <script> element early."""
    return re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE).replace("<!--", "<\\!--")


def _json_safe(value: object) -> str:
    """JSON text with no `<` or `&` (escaped in its strings): it cannot close the element it is in, holds no
    HTML character reference, and stays JSON."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace("&", "\\u0026")


def _layers(components: list[dict]) -> list[str]:
    present = {c["data"].get("layer") or NO_LAYER for c in components}
    known = [layer for layer in LAYER_ORDER if layer in present]
    return known + sorted(present - set(known))


def _traced(relation: dict) -> bool:
    """A relation seen only in OpenTelemetry traces (drawn dashed, in a colour of its own)."""
    data = relation.get("data")
    return isinstance(data, dict) and data.get("Source") == TRACE_SOURCE


def _name(component: dict) -> str:
    return str(component.get("data", {}).get("Name") or component["externalId"])


def _rank(component: dict) -> tuple[str, str, str]:
    """Where a component sits in its layer's grid: by type, then name (case-insensitive first)."""
    name = _name(component)
    return component["type"]["name"], name.casefold(), name


def page_data(
    snapshot: Snapshot,
    views: list[View],
    generated: datetime | None = None,
    actions: Mapping[str, str] | None = None,
) -> dict:
    """What the page's script reads: nodes (with the console link's action name from `actions`, type ->
    name; account, region and console link are in their `data`), relations by node index (`traced` when
    seen only in traces), views with their member indices in layout order (by type, then name: the page
    draws them in that order, no sort)."""
    components = snapshot.components
    layers = _layers(components)
    ranked = sorted(range(len(components)), key=lambda i: _rank(components[i]))
    layer_index = {layer: i for i, layer in enumerate(layers)}
    index = {c["externalId"]: i for i, c in enumerate(components)}
    nodes = []
    for c in components:
        data = c.get("data", {})
        nodes.append({
            "id": c["externalId"], "type": c["type"]["name"],
            "name": _name(c),
            "layer": layer_index[data.get("layer") or NO_LAYER],
            "action": data.get("ConsoleUrl") and (actions or {}).get(c["type"]["name"], NO_ACTION),
            "data": data,
        })  # fmt: skip
    relations = [
        {"s": index.get(r["sourceId"], r["sourceId"]), "t": index.get(r["targetId"], r["targetId"]),
         "type": r["type"]["name"], **({"traced": 1} if _traced(r) else {})}
        for r in snapshot.relations
    ]  # fmt: skip
    taken = {
        account: f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M UTC}"
        for account, at in snapshot.taken_at.items()
    }
    return {
        "generated": f"{generated or datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        "source": snapshot.source,
        "taken": taken,
        "notes": snapshot.notes,
        "layers": layers,
        "nodes": nodes,
        "relations": relations,
        "views": [
            {
                "name": v.name,
                "title": v.title,
                "account": v.account,
                "query": v.query,
                "description": v.description,
                "nodes": [i for i in ranked if v.matches(components[i])],
            }
            for v in views
        ],
    }


def render(snapshot: Snapshot, views: list[View], actions: Mapping[str, str] | None = None) -> str:
    """The HTML page of `snapshot` with one tab per view (`actions`: as `page_data`). What the first frame
    needs comes before the scripts; each component's data (details, search) after them, as one JSON text per
    component (the page parses one when it needs it), so the first frame waits for neither."""
    template = (WEB / "topology.html").read_text(encoding="utf-8")
    app = (WEB / "topology.js").read_text(encoding="utf-8")
    payload = page_data(snapshot, views, actions=actions)
    details = [json.dumps(n.pop("data"), separators=(",", ":"), ensure_ascii=False) for n in payload["nodes"]]
    parts = {
        "/*@@DATA@@*/": _json_safe(payload),
        "/*@@LIBRARY@@*/": _script_safe(library()),
        "/*@@APP@@*/": _script_safe(app),
        "/*@@DETAILS@@*/": _json_safe(details),
    }
    for marker, text in parts.items():
        if template.count(marker) != 1:
            raise ValueError(f"{WEB / 'topology.html'}: marker {marker} must appear exactly once")
        before, after = template.split(marker)
        template = before + text + after
    return template


def write_page(
    snapshot: Snapshot, views: list[View], out: str | Path, actions: Mapping[str, str] | None = None
) -> str:
    """Write the page to `out`; return one summary line (counts per view)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(snapshot, views, actions), encoding="utf-8")
    counts = "; ".join(f"{v.name}: {sum(1 for c in snapshot.components if v.matches(c))}" for v in views)
    return (
        f"wrote {path}: {len(snapshot.components)} components, {len(snapshot.relations)} relations "
        f"from {snapshot.source}; {counts}"
    )
