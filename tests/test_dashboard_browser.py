"""The whole dashboard in a real browser: ``matstore dashboard`` driven by Debian's Chromium.

Starts ``matstore dashboard`` on a free port against the pipeline-built store
(:mod:`tests.dashboard_fixtures`), visits every page with Playwright, checks the key element
of each (the g map of the pipeline model, a flagged marker, the Wulff shape, …), that no page
shows a Streamlit exception or error box, and that each page has settled within
:data:`SETTLE_S` of a click on its sidebar link (after one warm-up visit of every page).  Screenshots go to ``artifacts/screenshots/`` (kept by CI).
Skipped when ``/usr/bin/chromium`` is missing (``apt-get install chromium``).  The server is
stopped with SIGTERM and must exit (no orphaned Streamlit holding the port).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.dashboard_fixtures import Store, dashboard_store, free_port, start_dashboard  # noqa: F401 - a fixture

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-unsafe-swiftshader",  # software WebGL for the 3D Wulff shape
]
#: Seconds a page may take from navigation until it has settled (script run finished).
SETTLE_S = 3.0

#: (url path, page title, texts that must appear, CSS selector of the key element)
PAGES = (
    ("", "Overview", ["Materials", "Latest job runs"], ".js-plotly-plot"),
    ("jobs", "Jobs", ["Task queue"], '[data-testid="stDataFrame"]'),
    ("bulk", "Bulk properties", ["Pearson r", "flagged left out"], ".js-plotly-plot .scatterlayer"),
    ("surfaces", "Surfaces", ["Per orientation", "Shape factor"], ".js-plotly-plot"),
    ("compare", "Compare methods", ["Surface property per orientation"], ".js-plotly-plot"),
    ("configurations", "Configurations", ["configurations"], ".js-plotly-plot"),
    ("provenance", "Provenance", ["Method", "Source", "Job run"], '[data-testid="stTable"]'),
    ("equations", "Equations", ["Residual σ", "Selected (star)"], ".js-plotly-plot"),
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium "
                                                      "(apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def dashboard(dashboard_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """Base URL of ``matstore dashboard`` running on a free port against the pipeline store."""
    port = free_port()
    proc = start_dashboard(dashboard_store.url, port, tmp_path_factory.mktemp("dashboard") / "streamlit.log")
    base = f"http://127.0.0.1:{port}"
    try:
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)  # the exec'd Streamlit server itself receives it
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("the dashboard did not stop on SIGTERM")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """A headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


_SETTLED = ("() => { const w = document.querySelector('[data-testid=\"stStatusWidget\"]');"
            " return !w || !w.innerText.includes('Running'); }")


def _settle(page, title: str, texts: list[str], key: str) -> None:  # noqa: ANN001
    """Wait for a page's title, texts and key element, then for the end of its script run."""
    page.get_by_role("heading", name=title, exact=True).first.wait_for()
    for wanted in texts:
        page.get_by_text(wanted, exact=False).first.wait_for()
    page.locator(key).first.wait_for(state="attached")  # WebGL scenes stay "hidden" to Playwright
    page.wait_for_function(_SETTLED)


def _check(page, name: str, problems: list[str]) -> None:  # noqa: ANN001
    page.wait_for_timeout(300)  # let canvas-drawn tables paint before the screenshot
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]').count()
    errors = page.locator('[data-testid="stAlertContentError"]').count()
    if exceptions or errors:
        problems.append(f"{name}: {exceptions} exception(s), {errors} error box(es)")


def test_every_page_renders_in_a_browser(dashboard: str, browser, dashboard_store: Store) -> None:  # noqa: ANN001, F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(30_000)
    problems, timings = [], {}
    # Warm-up: each page opened once by URL loads the server's imports and fills its query
    # cache (TTL 60 s).  Then each page is timed as a user moves to it: a click in the sidebar,
    # until its title, texts and key element are there and its script run has finished.
    for path, title, texts, key in PAGES:
        page.goto(f"{dashboard}/{path}")
        _settle(page, title, texts, key)
    for path, title, texts, key in PAGES:
        start = time.monotonic()
        page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
        _settle(page, title, texts, key)
        timings[path or "overview"] = time.monotonic() - start
        _check(page, path or "overview", problems)
    # Shared links: the g map of the pipeline model, a configuration value's provenance.
    page.goto(f"{dashboard}/equations?model={dashboard_store.surface_model_id}&view=g")
    _settle(page, "Equations", ["g over the stereographic triangle", "normal_"], ".js-plotly-plot")
    _check(page, "equations_g", problems)
    # The rotatable 3D Wulff shape (WebGL) by its shared link.
    page.goto(f"{dashboard}/surfaces?wulff=3d")
    _settle(page, "Surfaces", ["Shape factor"], ".js-plotly-plot .gl-container")
    _check(page, "surfaces_3d", problems)
    # The flagged markers of the scatter (the legend entry of their trace).
    page.goto(f"{dashboard}/bulk")
    page.locator(".js-plotly-plot .legendtext", has_text="flagged values").first.wait_for()
    slow = {k: round(v, 2) for k, v in timings.items() if v > SETTLE_S}
    (SCREENSHOTS / "timings.json").write_text(json.dumps({k: round(v, 3) for k, v in timings.items()}, indent=1))
    page.close()
    assert not problems, problems
    assert not slow, f"pages slower than {SETTLE_S} s to settle: {slow} (all: {timings})"
    assert {f"{n}.png" for n in timings} <= {p.name for p in SCREENSHOTS.glob("*.png")}
