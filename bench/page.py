"""Benchmark: the topology page in headless Chromium at 5,000 and 50,000 components.

Renders generated estates (`tests.view.view_estate.generated_estate`, the page test's generator) and the
same page with an empty graph, opens each in one headless Chromium (Debian's, as the page tests do), and
prints, measured in the page: first draw (navigation start to the end of the first frame cytoscape draws
with every node of the first view: `topologyPage.timings.firstDrawMs`), the time all its edges are drawn
too (`completeMs`; on a big graph they are added after the first draw), where the time went (the page's
`timings`: script start, JSON parse, per view the layout, the instance with its nodes, and from its build
to its first frame), then a tab switch to Infrastructure once the views are built, a search and a zoom
(each up to the second frame after it; the zoom also until the labels in sight are drawn), first draw /
the empty page's first draw, and where the first draw went (`breakdown`).

    .venv/bin/python -m bench.page [--sizes 5000 50000] [--rounds 1] [--keep DIR] [--web OLD/web]

`--web` measures another version of the page (`git worktree add /tmp/before COMMIT`, then
`--web /tmp/before/web`; the graph library stays this checkout's).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from engine.core.config import Instance
from engine.language.loader import load_mappings
from engine.scan.last_snapshot import Snapshot
from engine.view import page as page_module
from engine.view.page import render
from engine.view.stql import views_for
from tests.support import ACCOUNT, ROLE
from tests.view.view_estate import CHROMIUM_FLAGS, generated_estate

FRAMES = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
# Each action runs in the page and resolves, after two frames, with its milliseconds.
TAB = f"""async () => {{
  const t = performance.now();
  document.querySelector('#tabs button[data-view="1"]').click();
  await {FRAMES};
  return performance.now() - t; }}"""
SEARCH = f"""async () => {{
  const t = performance.now();
  topologyPage.search('team:team7');
  await {FRAMES};
  return performance.now() - t; }}"""
# Zoom to 1 around the middle: the frame after it, then (on a big graph) until the labels in sight are drawn.
ZOOM = f"""async () => {{
  const cy = topologyPage.cy, t = performance.now();
  cy.zoom({{level: 1, renderedPosition: {{x: cy.width() / 2, y: cy.height() / 2}}}});
  await {FRAMES};
  const zoomMs = performance.now() - t;
  const labelled = () => topologyPage.timings.labelledAt > t;
  const deferred = topologyPage.timings.labelledAt !== undefined;  // labels in sight only (a big graph)
  for (let i = 0; deferred && i < 100 && !labelled(); i++) await new Promise(r => setTimeout(r, 20));
  await {FRAMES};
  return [zoomMs, performance.now() - t]; }}"""


def write_pages(sizes: list[int], folder: Path) -> dict[int, Path]:
    """The page of a generated estate per size, and of an empty one (size 0)."""
    views = views_for(Instance(role_arn=ROLE, regions=("eu-west-1",)), load_mappings())
    pages = {}
    for size in [0, *sizes]:
        snapshot = generated_estate(size) if size else Snapshot("generated", [ACCOUNT], [], [], {ACCOUNT: 0})
        pages[size] = folder / f"topology-{size}.html"
        pages[size].write_text(render(snapshot, views), encoding="utf-8")
    return pages


def measure(browser, path: Path) -> dict:
    """One fresh tab: open `path`, wait for the first draw, then switch tab, search and zoom."""
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(path.as_uri(), timeout=300_000)
        page.wait_for_function("window.topologyPage && topologyPage.ready", timeout=300_000, polling=50)
        timings = page.evaluate("topologyPage.timings")
        figures = {k: round(v) for k, v in timings.items() if isinstance(v, int | float)}
        figures["firstView"] = {k: round(v) for k, v in timings.get("view0", {}).items()}
        figures["nodes"] = page.evaluate("topologyPage.cy.nodes('.component').length")
        if figures["nodes"]:
            # The other views are built in idle time after the first draw: switch once they are drawn.
            built = "topologyPage.data.views.map((_, v) => topologyPage.timings[`view${v}`]?.completeMs)"
            if page.evaluate("!!topologyPage.built"):  # a page from before the views were kept has none
                page.wait_for_function(f"{built}.every(ms => ms)", timeout=300_000)
                figures["firstVisitMs"] = round(page.evaluate(built)[1])
            figures["tabMs"] = round(page.evaluate(TAB))
            figures["searchMs"] = round(page.evaluate(SEARCH))
            figures["zoomMs"], figures["zoomLabelsMs"] = (round(ms) for ms in page.evaluate(ZOOM))
        figures.setdefault("completeMs", figures.get("firstDrawMs"))
    finally:
        page.close()
    if errors:
        raise RuntimeError(f"{path}: {errors}")
    return figures


def breakdown(figures: dict) -> str:
    """Where the first draw went: the page's HTML up to the script, JSON parse, the first view's layout, its
    instance with its nodes, from there to its first frame (style and draw), and what is left (the rest)."""
    view = figures["firstView"]
    if not view:
        return "no graph"
    parts = {
        "HTML to script": figures["scriptMs"],
        "JSON parse": figures["parsedMs"],
        "layout": view["layoutMs"],
        "nodes added": view["addMs"],
        "style and first frame": view["drawnMs"] - view["layoutMs"] - view["addMs"],
    }
    parts["other"] = figures["firstDrawMs"] - sum(parts.values())
    return ", ".join(f"{name} {ms} ms" for name, ms in parts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the pages here and keep them")
    parser.add_argument("--web", type=Path, help="the page's template and script from here (an older web/)")
    args = parser.parse_args()
    if args.web:
        page_module.WEB = args.web
    from playwright.sync_api import sync_playwright

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-page-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        pages = write_pages(args.sizes, folder)
        executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
            for round_ in range(1, args.rounds + 1):
                floor = measure(browser, pages[0])
                load = os.getloadavg()[0]
                print(f"round {round_} (load {load:.1f}): empty page first draw {floor['firstDrawMs']} ms")
                for size in args.sizes:
                    figures = measure(browser, pages[size])
                    mb = pages[size].stat().st_size / 1e6
                    ratio = figures["firstDrawMs"] / max(floor["firstDrawMs"], 1)
                    print(
                        f"  {size:>6} components ({mb:.1f} MB): first draw {figures['firstDrawMs']} ms"
                        f" ({ratio:.1f}x the empty page), all edges drawn {figures['completeMs']} ms,"
                        f" tab switch {figures['tabMs']} ms (its view built and drawn in idle time"
                        f" before: {figures.get('firstVisitMs')} ms),"
                        f" search {figures['searchMs']} ms, zoom {figures['zoomMs']} ms"
                        f" (labels drawn {figures['zoomLabelsMs']} ms)"
                    )
                    print(f"         first draw: {breakdown(figures)}")
                    print(f"         timings: {figures}")
            browser.close()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
