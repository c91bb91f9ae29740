"""A real browser (Debian chromium through Playwright) uses the page as a person would.

After every step (first load, a run, an ablation, a run with a prior beside a trained decoder,
loading past runs, a bad upload) no element may show Gradio's red "Error" and the server may
not have printed a traceback. The archive is downloaded through the page and decoded with
``necgs decompress``. The server sees one tiny prior (``tiny``, trained by a fixture).
"""

import subprocess
import sys
from pathlib import Path

import pytest

from necgs.webapp.export import ARGS as EXPORT_ARGS
from necgs.webapp.export import CHROMIUM

# The page export's flags plus what a page with WebGL viewers needs (software GL, no extras).
ARGS = [*EXPORT_ARGS, "--disable-sync", "--disable-quic", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]
#: Leaf elements reading exactly "Error" (Gradio's badge on a failed output) and error toasts.
ERROR_BADGES_JS = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.children.length === 0 && (e.innerText || '').trim() === 'Error'
          || e.matches('.toast-body.error, .toast-wrap .error'))
  .map(e => e.outerHTML.slice(0, 200))"""

pytestmark = pytest.mark.browser
#: Every text the status box shows, in order (a job with a prior shows its first part, then the whole).
RECORD_STATUS_JS = """() => {
  window.__statuses = [];
  new MutationObserver(() => window.__statuses.push(document.querySelector('#status').innerText))
    .observe(document.querySelector('#status'), {childList: true, subtree: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def app_priors(tiny_prior_dir):
    """The app of this module sees the tiny prior, and only it."""
    return tiny_prior_dir


def choose(page, elem_id: str, option: str) -> None:
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=option, exact=True).click()


def set_number(page, selector: str, value: str) -> None:
    box = page.locator(selector)
    box.fill(value)
    box.press("Enter")


def wait_status(page, text: str, timeout: int = 300_000) -> str:
    page.wait_for_function(
        "t => (document.querySelector('#status') || {}).innerText?.includes(t)", arg=text, timeout=timeout
    )
    return page.inner_text("#status")


def assert_clean(page, capfd, step: str, shots: Path) -> None:
    """No Gradio error badge or toast on the page, no traceback in the server's output."""
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / f"{step}.png"), full_page=True)
    badges = page.evaluate(ERROR_BADGES_JS)
    assert not badges, f"{step}: error shown on the page: {badges}"
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, f"{step}: server traceback:\n{out}{err}"


def download(page, elem_id: str, dest: Path) -> Path:
    with page.expect_download() as info:
        page.locator(f"#{elem_id} a[download]").first.click()
    path = dest / info.value.suggested_filename
    info.value.save_as(path)
    return path


@pytest.mark.timeout(1500)  # six jobs' worth of clicking on 2 shared cores
def test_the_page_as_a_person_uses_it(app_url, tmp_path: Path, capfd):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian chromium is installed by scripts/setup.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1800}, accept_downloads=True)
        page.goto(app_url, wait_until="load")
        page.wait_for_selector("#run", timeout=60_000)
        page.wait_for_selector("#rd_cd .js-plotly-plot", timeout=60_000)
        wait_status(page, "Showing", timeout=60_000)  # the newest run, or the shipped benchmark when there is none
        assert_clean(page, capfd, "1_first_load", tmp_path)
        page.click("#shipped")
        assert "all 88 shapes" in wait_status(page, "shipped benchmark", timeout=60_000)
        assert "decimate-draco" in page.inner_text("#summary")
        page.wait_for_selector("#dl_csv a[download]", timeout=60_000)
        assert_clean(page, capfd, "1b_shipped_benchmark", tmp_path)

        # one run
        choose(page, "dataset", "cad")
        choose(page, "width", "tiny")
        set_number(page, "#limit input[type=number]", "2")
        set_number(page, "#epochs input", "60")
        page.click("#run")
        status = wait_status(page, "done")
        run_id = int(status.split("Run ")[1].split(" ")[0])
        page.wait_for_function(
            "() => ['necgs', 'draco', 'floor'].every(c => document.querySelector('#summary').innerText.includes(c))",
            timeout=60_000,
        )
        page.wait_for_selector("#view_original canvas", timeout=120_000)
        page.wait_for_selector("#view_necgs canvas", timeout=120_000)
        page.wait_for_selector("#dl_archive a[download]", timeout=60_000)
        assert "x1e-3" in page.inner_text("#view_necgs") or "CD" in page.inner_text("#view_necgs")
        assert_clean(page, capfd, "2_after_run", tmp_path)
        archive = download(page, "dl_archive", tmp_path)
        assert archive.suffix == ".ncgs"
        out = tmp_path / "decoded"
        done = subprocess.run(
            [sys.executable, "-m", "necgs.cli", "decompress", str(archive), "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert sorted(f.name for f in out.glob("*.ply")) == ["cad_000.ply", "cad_001.ply"]

        # a two-variant ablation
        page.get_by_role("tab", name="ablation").click()
        page.wait_for_selector("#run_ablation")
        page.click("#run_ablation")
        wait_status(page, f"Run {run_id + 1} done")
        # the table and figure may render a moment after the status line on a loaded machine
        page.wait_for_function(
            "() => document.querySelector('#summary').innerText.includes('dCD vs ref')", timeout=60_000
        )
        legend = " | ".join(
            page.evaluate("() => [...document.querySelectorAll('#rd_cd .legendtext')].map(e => e.textContent)")
        )
        table = page.inner_text("#summary")
        for name in ("quick tiny", "quick tiny (no ssim)"):
            assert f"necgs {name}" in legend and name in table
        assert "dCD vs ref" in table
        page.wait_for_selector("#view_variant_0 canvas", timeout=120_000)
        assert "no ssim" in page.inner_text("#view_variant_1")
        assert_clean(page, capfd, "3_after_ablation", tmp_path)

        # a decoder trained on the set and the prior, beside the peers: the prior's part shows first
        page.get_by_role("tab", name="one run").click()
        choose(page, "decoder", "both: train a decoder + prior tiny")
        page.evaluate(RECORD_STATUS_JS)
        page.click("#run")
        wait_status(page, f"Run {run_id + 2} done")
        statuses = page.evaluate("() => window.__statuses")
        first = next((k for k, t in enumerate(statuses) if "necgs prior tiny ready after" in t), None)
        assert first is not None and "pending" in statuses[first], statuses
        assert not any("done" in t for t in statuses[:first]), statuses
        legend = " | ".join(
            page.evaluate("() => [...document.querySelectorAll('#rd_cd .legendtext')].map(e => e.textContent)")
        )
        table = page.inner_text("#summary")
        for name in ("necgs quick tiny", "necgs prior tiny", "draco"):
            assert name in legend, legend
        assert "prior tiny" in table and "pending" not in table
        page.wait_for_selector("#view_necgs canvas", timeout=120_000)
        page.wait_for_selector("#view_variant_1 canvas", timeout=120_000)
        assert "prior tiny" in page.inner_text("#view_variant_1")
        assert "prior tiny" in page.inner_text("#status")  # the run's label names the prior
        assert_clean(page, capfd, "3b_after_prior_run", tmp_path)

        # past runs: a good id, then the default 0
        page.click("#past_runs")
        set_number(page, "#run_id input", str(run_id))
        page.click("#load_run")
        wait_status(page, f"Showing run {run_id}:")
        page.wait_for_selector("#view_necgs canvas", timeout=120_000)
        page.wait_for_selector("#run", state="visible")  # its switches are restored: a single-setting run
        assert page.locator("#epochs input").input_value() == "60"
        page.wait_for_function(  # and its decoder: trained on the set
            "() => document.querySelector('#decoder input').value === 'train a decoder for this set'"
        )
        assert_clean(page, capfd, "4_after_load_run", tmp_path)
        set_number(page, "#run_id input", "0")
        page.click("#load_run")
        assert "There is no run 0" in wait_status(page, "no run 0")
        assert_clean(page, capfd, "5_after_load_run_0", tmp_path)

        # a bad upload: its name and the reason, visible, and the old results cleared
        bad = tmp_path / "broken_part.obj"
        bad.write_text("this is not a mesh\n")
        page.set_input_files("#upload input[type=file]", str(bad))
        page.wait_for_function("() => document.querySelector('#dataset input').value === '(my upload)'")
        page.get_by_role("tab", name="one run").click()
        page.click("#run")
        wait_status(page, "broken_part.obj", timeout=120_000)
        alert = page.locator("#status [role=alert]")
        text = alert.inner_text()
        assert "broken_part.obj" in text and "no usable mesh" in text and "/tmp" not in text, text
        assert alert.is_visible() and "necgs" not in page.inner_text("#summary")
        assert_clean(page, capfd, "6_after_bad_upload", tmp_path)
        print(f"screenshots: {tmp_path}")
        browser.close()
