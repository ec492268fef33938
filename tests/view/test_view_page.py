"""The topology page in headless Chromium: tabs hold the views' components, search, a click opens the details
with the console link; and the page stays usable at 5,000 components.

Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM), driven by Playwright without its browser download.
Without it the tests skip, unless AWS_TOPOLOGY_REQUIRE_BROWSER is set (CI), where they fail. Screenshots and
the 5,000-component timings go to out/test-artifacts/ (or $TOPOLOGY_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.core.config import Instance
from engine.core.stackpack import TRACE_SOURCE
from engine.language.components import relation
from engine.language.loader import load_mappings
from engine.view.page import render
from engine.view.stql import views_for
from tests.support import ACCOUNT, ROLE
from tests.view.view_estate import CHROMIUM_FLAGS, generated_estate, scanned_estate

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TOPOLOGY_ARTIFACTS", ROOT / "out" / "test-artifacts"))
INFRASTRUCTURE = {"Networking", "Storage", "Machines"}
SERVERLESS = {
    "aws.s3.bucket",
    "aws.lambda.function",
    "aws.lambda.alias",
    "aws.elb-v2.application-load-balancer",
}


def _missing(reason: str) -> None:
    if os.environ.get("AWS_TOPOLOGY_REQUIRE_BROWSER"):
        pytest.fail(f"{reason} (AWS_TOPOLOGY_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).is_file():
        _missing(f"no Chromium at {executable}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        # Playwright gives each launch a new, empty profile (user data dir).
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


def _open(browser, path: Path, errors: list[str]):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    url = path.as_uri()
    page.on(
        "request", lambda request: errors.append(f"fetched {request.url}") if request.url != url else None
    )
    page.goto(url)
    page.wait_for_function("window.topologyPage && window.topologyPage.ready", timeout=120_000)
    return page


def _payloads(out: Path) -> tuple[dict[str, dict], list[dict]]:
    topologies = [
        t for p in sorted(out.glob("run-*/scan-*.json")) for t in json.loads(p.read_text())["topologies"]
    ]
    components = {c["externalId"]: c for t in topologies for c in t["components"]}
    relations = list({r["externalId"]: r for t in topologies for r in t["relations"]}.values())
    return components, relations


def _shown(page) -> tuple[set[str], int]:
    """External ids of the component nodes drawn now, and the number of edges drawn."""
    ids = page.evaluate(
        "() => topologyPage.cy.nodes('.component').map(n => topologyPage.data.nodes[n.data('idx')].id)"
    )
    return set(ids), page.evaluate("() => topologyPage.cy.edges().length")


def test_page_tabs_search_and_click_through_to_the_console(browser, tmp_path_factory: pytest.TempPathFactory):
    estate = scanned_estate(tmp_path_factory.getbasetemp() / "views-estate")
    html = tmp_path_factory.mktemp("page") / "topology.html"
    args = ["view", "-c", str(estate.config), "--state", str(estate.state), "--out", str(html)]
    assert CliRunner().invoke(main, args).exit_code == 0
    components, relations = _payloads(estate.out)
    expected = {
        "All": set(components),
        "Infrastructure": {i for i, c in components.items() if c["data"]["layer"] in INFRASTRUCTURE},
        "Serverless": {i for i, c in components.items() if c["type"]["name"] in SERVERLESS},
    }
    errors: list[str] = []
    page = _open(browser, html, errors)

    for title, members in expected.items():
        tab = page.get_by_role("tab", name=f"AWS - {ACCOUNT} - {title}")
        tab.click()
        shown, edges = _shown(page)
        assert shown == members, title
        inside = {
            (r["sourceId"], r["targetId"]) for r in relations if {r["sourceId"], r["targetId"]} <= members
        }
        assert edges == len({pair for pair in inside if pair[0] != pair[1]}), title
        assert tab.locator(".count").inner_text() == str(len(members))
        assert tab.get_attribute("aria-selected") == "true"

    page.get_by_role("tab", name=f"AWS - {ACCOUNT} - All").click()
    page.fill("#search", "team:storefront")  # an AWS tag, as a label
    tagged = {i for i, c in components.items() if c["data"].get("Tags", {}).get("team") == "storefront"}
    page.wait_for_function(f"document.getElementById('search-count').textContent === '{len(tagged)} matches'")
    assert {
        page.evaluate(f"topologyPage.data.nodes[{i}].id") for i in page.evaluate("topologyPage.matches")
    } == tagged
    assert len(tagged) == 2  # the instance and one bucket

    page.fill("#search", "shop-mailer")  # a name
    page.wait_for_function("document.getElementById('search-count').textContent === '1 match'")
    page.press("#search", "Enter")
    assert page.inner_text("#detail-name") == "shop-mailer"

    page.fill("#search", "")
    page.wait_for_function("document.getElementById('search-count').textContent === ''")
    instance = components[estate.seeded["instance"]]
    index = page.evaluate(
        f"topologyPage.data.nodes.findIndex(n => n.id === {json.dumps(instance['externalId'])})"
    )
    page.wait_for_function("!topologyPage.cy.animated()")
    page.evaluate(
        f"() => {{ topologyPage.cy.zoom(1.2); topologyPage.cy.center(topologyPage.cy.$id('n{index}')); }}"
    )
    position = page.evaluate(f"topologyPage.rendered({index})")
    box = page.locator("#cy").bounding_box()
    page.mouse.click(box["x"] + position["x"], box["y"] + position["y"])

    page.wait_for_function("document.getElementById('detail-name').textContent === 'shop-web-1'")
    link = page.locator("#console-link")
    assert link.get_attribute("href") == instance["data"]["ConsoleUrl"]
    assert link.inner_text() == "Go to EC2 console"
    assert page.inner_text("#detail-name") == instance["data"]["Name"] == "shop-web-1"
    assert "team:storefront" in page.inner_text("#detail-labels")
    assert page.evaluate("topologyPage.cy.$(':selected').map(n => n.id())") == [f"n{index}"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => { topologyPage.cy.fit(undefined, 30); }")
    page.screenshot(path=str(ARTIFACTS / "topology-estate.png"))
    assert errors == []


def test_page_stays_usable_at_5000_components(browser, tmp_path: Path):
    snapshot = generated_estate(5000)
    html = tmp_path / "topology-5000.html"
    html.write_text(
        render(snapshot, views_for(Instance(role_arn=ROLE, regions=("eu-west-1",)), load_mappings()))
    )
    infrastructure = {c["externalId"] for c in snapshot.components if c["data"]["layer"] in INFRASTRUCTURE}
    errors: list[str] = []

    started = time.monotonic()
    page = _open(browser, html, errors)
    load_seconds = time.monotonic() - started
    assert len(_shown(page)[0]) == 5000

    started = time.monotonic()
    page.get_by_role("tab", name=f"AWS - {ACCOUNT} - Infrastructure").click()
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    switch_seconds = time.monotonic() - started
    assert _shown(page)[0] == infrastructure

    started = time.monotonic()
    page.fill("#search", "team:team7")
    expected = sum(
        1
        for c in snapshot.components
        if c["externalId"] in infrastructure and c["data"]["Tags"]["team"] == "team7"
    )
    page.wait_for_function(f"document.getElementById('search-count').textContent === '{expected} matches'")
    search_seconds = time.monotonic() - started

    started = time.monotonic()  # zoom into the middle of the view, as a wheel would, and wait for the frame
    page.evaluate(
        "() => new Promise(r => { const cy = topologyPage.cy;"
        " cy.zoom({level: 1, renderedPosition: {x: cy.width() / 2, y: cy.height() / 2}});"
        " requestAnimationFrame(() => requestAnimationFrame(r)); })"
    )
    zoom_seconds = time.monotonic() - started
    timings = {
        "components": 5000, "relations": len(snapshot.relations), "html_bytes": html.stat().st_size,
        "load_to_ready_seconds": round(load_seconds, 2),
        "first_draw_ms": round(page.evaluate("topologyPage.timings.firstDrawMs")),
        "page_ready_ms": round(page.evaluate("topologyPage.timings.readyMs")),
        "tab_switch_seconds": round(switch_seconds, 2), "search_seconds": round(search_seconds, 2),
        "zoom_seconds": round(zoom_seconds, 2),
    }  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "topology-5000.json").write_text(json.dumps(timings, indent=2) + "\n")
    page.screenshot(path=str(ARTIFACTS / "topology-5000.png"))
    print("topology page at 5,000 components:", timings)
    assert errors == []
    # Generous bounds for a loaded 2-core CI machine; the figures themselves are in the artifact.
    assert load_seconds < 30 and switch_seconds < 10 and search_seconds < 10 and zoom_seconds < 10, timings


def test_a_relation_seen_only_in_traces_is_drawn_dashed_with_its_own_legend(browser, tmp_path: Path):
    snapshot = generated_estate(40)
    source, target = snapshot.components[0]["externalId"], snapshot.components[1]["externalId"]
    snapshot.relations.append(relation(source, target, "uses-service", {"Source": TRACE_SOURCE}))
    html = tmp_path / "traced.html"
    views = views_for(Instance(role_arn=ROLE, regions=("eu-west-1",)), load_mappings())
    html.write_text(render(snapshot, views))
    errors: list[str] = []
    page = _open(browser, html, errors)
    traced = page.evaluate(
        "() => topologyPage.cy.edges('.traced').map(e => [e.data('type'), e.style('line-style'),"
        " topologyPage.data.nodes[e.source().data('idx')].id,"
        " topologyPage.data.nodes[e.target().data('idx')].id])"
    )
    assert traced == [["uses-service (traces)", "dashed", source, target]]
    plain = "() => topologyPage.cy.edges('[type = \"uses-service\"]').filter('.traced').length"
    assert page.evaluate(plain) == 0
    assert "uses-service (traces)" in page.inner_text("#legend")
    assert errors == []
