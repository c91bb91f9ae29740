"""Render the RD figures of a results folder to PNG with Debian chromium (no internet needed).

Usage: python benchmarks/render_png.py benchmarks/results/rd_humans_ama_quick
Writes rd_cd.png and rd_f1.png beside summary.csv.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

from necgs.evaluation.figures import rd_figure, series_by_preset


def render(folder: Path) -> None:
    from playwright.sync_api import sync_playwright

    summary = series_by_preset(pd.read_csv(folder / "summary.csv"))
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 900, "height": 560})
        for metric, name in (("cd", "rd_cd"), ("f1_005", "rd_f1")):
            fig = rd_figure(summary, metric, highlight="necgs")
            fig.update_layout(width=880, height=540, title=f"{summary.dataset.iloc[0]}: {fig.layout.title.text}")
            html = Path(tmp) / f"{name}.html"
            fig.write_html(html, include_plotlyjs=True, full_html=True)
            page.goto(html.as_uri())
            page.wait_for_selector(".js-plotly-plot")
            page.wait_for_timeout(500)
            page.screenshot(path=str(folder / f"{name}.png"))
        browser.close()


if __name__ == "__main__":
    render(Path(sys.argv[1]))
