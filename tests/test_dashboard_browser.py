"""The whole dashboard in a real browser: ``matstore dashboard`` driven by Debian's Chromium.

Starts ``matstore dashboard`` on a free port against the populated test database, visits
every page with Playwright, checks that its content renders without a Streamlit exception
or error box, and saves a screenshot of each page to ``artifacts/screenshots/``.
Skipped when ``/usr/bin/chromium`` is missing (``apt-get install chromium``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.conftest import DATA_TABLES, REPO_ROOT
from tests.dashboard_fixtures import Populated, populate

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

#: (url path, title, texts that must appear once the page has run, needs a Plotly chart)
PAGES = (
    ("", "Overview", ["Materials", "Latest job runs", "Failures"], True),
    ("jobs", "Jobs", ["Task queue", "ingest_compute) failed at"], True),
    ("bulk", "Bulk properties", ["Property vs property", "Pearson r"], True),
    ("surfaces", "Surfaces", ["Per orientation", "Shape factor", "Weighted γ"], True),
    ("provenance", "Provenance", ["Method", "Source", "Job run", "Configuration"], False),
    ("equations", "Equations", ["Pareto front", "Residual std"], True),
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium "
                                                      "(apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def populated(session_engine: Engine) -> Iterator[Populated]:
    """The dashboard fixture store, emptied again after this module."""
    out = populate(session_engine)
    yield out
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="module")
def dashboard(database_url: str, populated: Populated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ``matstore dashboard`` running on a free port against the test database."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MATSTORE_DASHBOARD_DATABASE_URL"}
    env["MATSTORE_DATABASE_URL"] = database_url
    log = tmp_path_factory.mktemp("dashboard") / "streamlit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from matstore.cli import main; main()", "dashboard",
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as resp:
                    if resp.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dashboard did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """A headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_every_page_renders_in_a_browser(dashboard: str, browser) -> None:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(30_000)
    problems = []
    for path, title, texts, has_chart in PAGES:
        page.goto(f"{dashboard}/{path}")
        page.get_by_role("heading", name=title, exact=True).first.wait_for()
        for wanted in texts:
            page.get_by_text(wanted, exact=False).first.wait_for()
        if has_chart:
            page.locator(".js-plotly-plot").first.wait_for()
        # Let the script run finish (the status widget shows "Running..." meanwhile).
        page.wait_for_function(
            "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
            " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')"
        )
        page.wait_for_timeout(700)
        name = path or "overview"
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        exceptions = page.locator('[data-testid="stException"]').count()
        errors = page.locator('[data-testid="stAlertContentError"]').count()
        if exceptions or errors:
            problems.append(f"{name}: {exceptions} exception(s), {errors} error box(es)")
    # Tabs of the equations page: the orientation function g and the parity plot.
    for tab, name in (("Orientation function g", "equations_g"), ("Parity and residuals", "equations_parity")):
        page.get_by_role("tab", name=tab).click()
        page.get_by_role("tabpanel", name=tab).locator(".js-plotly-plot").first.wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        if page.locator('[data-testid="stException"]').count():
            problems.append(f"{name}: exception")
    page.close()
    assert not problems, problems
    assert {f"{p or 'overview'}.png" for p, *_ in PAGES} <= {p.name for p in SCREENSHOTS.glob("*.png")}
