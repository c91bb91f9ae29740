"""A real browser (Debian chromium through Playwright) runs a tiny job on the page."""

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]

pytestmark = pytest.mark.browser


def choose(page, elem_id: str, option: str) -> None:
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=option, exact=True).click()


def test_page_runs_a_tiny_job(app_url, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian chromium is installed by scripts/setup.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1800})
        page.goto(app_url, wait_until="load")
        page.wait_for_selector("#run", timeout=60_000)
        choose(page, "dataset", "cad")
        choose(page, "width", "tiny")
        limit = page.locator("#limit input[type=number]")
        limit.fill("2")
        limit.press("Enter")
        epochs = page.locator("#epochs input")
        epochs.fill("100")
        epochs.press("Enter")
        page.click("#run")
        page.wait_for_function(
            "() => (document.querySelector('#status') || {}).innerText?.includes('done')", timeout=300_000)
        page.wait_for_selector("#rd_cd .js-plotly-plot", timeout=60_000)
        page.wait_for_selector("#rd_f1 .js-plotly-plot", timeout=60_000)
        page.wait_for_function(
            "() => ['necgs', 'draco', 'floor'].every(c => document.querySelector('#summary').innerText.includes(c))",
            timeout=60_000)
        page.wait_for_selector("#view_original canvas", timeout=120_000)
        page.wait_for_selector("#view_necgs canvas", timeout=120_000)
        page.wait_for_timeout(2000)
        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
        browser.close()
