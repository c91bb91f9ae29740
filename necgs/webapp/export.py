"""Plotly figures to PNG with the system's chromium (installed by scripts/setup.sh; no downloads).

Plotly's own ``write_image`` needs kaleido and a browser build; the project already has
Debian chromium and Playwright (for the browser test), so the figure is drawn by plotly.js
in a headless page and screenshotted.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from necgs.errors import DependencyError

#: The browser used; ``NECGS_CHROMIUM`` overrides it.
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def plotly_pngs(figures: list, targets: list[Path], width: int = 1000, height: int = 600) -> list[Path]:
    """Write each Plotly figure to its PNG target.

    Raises:
        DependencyError: Playwright or chromium is missing.
    """
    executable = os.environ.get("NECGS_CHROMIUM", CHROMIUM)
    if not Path(executable).is_file():
        raise DependencyError(f"PNG export needs chromium at {executable} (scripts/setup.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise DependencyError("PNG export needs playwright (pip install -r requirements.txt)") from None
    with tempfile.TemporaryDirectory(prefix="necgs-png-") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            for k, (fig, target) in enumerate(zip(figures, targets)):
                html = Path(tmp) / f"fig{k}.html"
                fig.write_html(
                    html,
                    include_plotlyjs=True,
                    full_html=True,
                    default_width=f"{width - 20}px",
                    default_height=f"{height - 20}px",
                )
                page.goto(html.as_uri())
                page.wait_for_selector(".js-plotly-plot .main-svg")
                page.screenshot(path=str(target))
        finally:
            browser.close()
    return targets
