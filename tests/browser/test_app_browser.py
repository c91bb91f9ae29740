"""A real browser (Debian chromium through Playwright) uses the page as a person would.

After every step (first load, a run, an ablation, a run with a prior beside a trained decoder,
loading past runs, a bad upload) no element may show Gradio's red "Error" and the server may
not have printed a traceback. The archive is downloaded through the page and decoded with
``necgs decompress``. The server sees one tiny prior (``tiny``, trained by a fixture). A 1280x800
window shows Run and the progress without scrolling; the viewers turn together; G-PCC runs like
any codec where ``tmc3`` is built. Screenshots go to ``NECGS_BROWSER_SHOTS`` when set (else pytest's
temporary folder).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from necgs.webapp.decoders import TRAIN_DECODER
from necgs.webapp.export import ARGS as EXPORT_ARGS
from necgs.webapp.export import CHROMIUM
from necgs.webapp.glossary import TERMS

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


#: Every viewer's camera, [alpha, beta, radius] by element id (see necgs.webapp.page_js).
CAMERAS_JS = "() => window.necgsCameras ? window.necgsCameras() : {}"
#: Links to an e-mail address (Markdown turns "name@domain" into one).
MAILTO_JS = "() => [...document.querySelectorAll('a[href^=\"mailto:\"]')].map(a => a.outerHTML)"


def box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def check_first_view(browser, url: str, capfd, shots: Path) -> None:
    """In a 1280x800 window: Run, the progress and the status without scrolling, the advice, the
    glossary, the epochs of the preset, and why the viewers are empty."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url, wait_until="load")
    page.wait_for_selector("#rd_cd .js-plotly-plot", timeout=90_000)
    wait_status(page, "Showing", timeout=60_000)
    assert page.evaluate("() => window.scrollY") == 0
    for selector in ("#run", "#cancel", "#progress", "#status"):
        where = box(page, selector)
        assert where and where["y"] >= 0 and where["y"] + where["height"] <= 800, (selector, where)
    advice = page.inner_text("#advice")
    assert "6 shapes" in advice and "prior 'tiny'" in advice, advice
    assert page.locator("#decoder input").input_value() == "prior: tiny"
    glossary = page.inner_text("#glossary")
    assert all(term in glossary for term in TERMS), glossary
    assert "keeps its numbers, not its meshes" in page.inner_text("#legend")  # the shipped benchmark
    page.get_by_label("standard", exact=True).check()
    page.wait_for_function("() => document.querySelector('#epochs input').value === '600'")
    page.get_by_label("quick", exact=True).check()
    page.wait_for_function("() => document.querySelector('#epochs input').value === '200'")
    assert not page.evaluate(MAILTO_JS)
    page.screenshot(path=str(shots / "0_first_view_1280x800.png"))
    assert_clean(page, capfd, "0_first_view_full", shots)
    page.close()


def check_viewers_turn_together(page) -> None:
    """A drag on the NeCGS viewer turns the original and the baseline the same way."""
    page.locator("#view_necgs").scroll_into_view_if_needed()
    page.wait_for_function(f"() => Object.keys(({CAMERAS_JS})()).length >= 3", timeout=60_000)
    before = page.evaluate(CAMERAS_JS)
    c = box(page, "#view_necgs canvas")
    x, y = c["x"] + c["width"] / 2, c["y"] + c["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 30, steps=12)
    page.mouse.up()
    page.wait_for_timeout(2500)
    after = page.evaluate(CAMERAS_JS)
    turned = {k: v[:2] for k, v in after.items() if k in ("view_original", "view_necgs", "view_other")}
    assert len(turned) == 3 and turned["view_necgs"] != before["view_necgs"][:2], (before, after)
    assert all(v == pytest.approx(turned["view_necgs"], abs=1e-6) for v in turned.values()), after


#: The page's scroll positions over 3 s (the live tick runs every second meanwhile).
HOLDS_STILL_JS = """() => new Promise(done => {
  const ys = new Set([window.scrollY]);
  const id = setInterval(() => ys.add(window.scrollY), 50);
  setTimeout(() => { clearInterval(id); done([...ys]); }, 3000);
})"""


def check_run_details(page, capfd, shots: Path) -> None:
    """The teaching viewer is drawn at its height, the per-shape table reads, no e-mail links,
    and neither the page's tick nor choosing a shape scrolls the page."""
    page.click("#teaching")
    page.wait_for_selector("#view_fitted canvas", timeout=120_000)
    assert box(page, "#view_fitted")["height"] > 100
    assert "lower is better" in page.inner_text("#breakdown")
    page.get_by_text("per-shape metrics").click()
    headers = page.inner_text("#per_shape")
    assert "CD x1e-3" in headers and "f1_005" not in headers and "floor_cd" not in headers, headers[:300]
    assert not page.evaluate(MAILTO_JS)
    page.locator("#shape").scroll_into_view_if_needed()
    scrolled = page.evaluate("() => window.scrollY")
    held = page.evaluate(HOLDS_STILL_JS)  # the once-a-second tick must not move what the visitor reads
    assert held == [scrolled], held
    choose(page, "shape", "cad_001")
    page.wait_for_timeout(1500)
    assert abs(page.evaluate("() => window.scrollY") - scrolled) < 5
    assert_clean(page, capfd, "2b_run_details", shots)


def download(page, elem_id: str, dest: Path) -> Path:
    with page.expect_download() as info:
        page.locator(f"#{elem_id} a[download]").first.click()
    path = dest / info.value.suggested_filename
    info.value.save_as(path)
    return path


@pytest.mark.timeout(2400)  # six jobs' worth of clicking on 2 shared cores, G-PCC's among them
def test_the_page_as_a_person_uses_it(app_url, tmp_path: Path, capfd):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian chromium is installed by scripts/setup.sh"
    shots = Path(os.environ.get("NECGS_BROWSER_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        check_first_view(browser, app_url, capfd, shots)
        page = browser.new_page(viewport={"width": 1500, "height": 1800}, accept_downloads=True)
        page.goto(app_url, wait_until="load")
        page.wait_for_selector("#run", timeout=60_000)
        page.wait_for_selector("#rd_cd .js-plotly-plot", timeout=60_000)
        wait_status(page, "Showing", timeout=60_000)  # the newest run, or the shipped benchmark when there is none
        assert_clean(page, capfd, "1_first_load", shots)
        page.click("#shipped")
        assert "all 88 shapes" in wait_status(page, "shipped benchmark", timeout=60_000)
        assert "decimate-draco" in page.inner_text("#summary")
        page.wait_for_selector("#dl_csv a[download]", timeout=60_000)
        assert_clean(page, capfd, "1b_shipped_benchmark", shots)

        # one run: a few shapes start from the prior; a decoder trained on them is chosen instead
        choose(page, "dataset", "cad")
        page.wait_for_function("() => document.querySelector('#decoder input').value === 'prior: tiny'")
        set_number(page, "#limit input[type=number]", "2")
        page.wait_for_function("() => document.querySelector('#advice').innerText.includes('2 shapes')")
        choose(page, "decoder", TRAIN_DECODER)
        choose(page, "width", "tiny")
        set_number(page, "#epochs input", "60")
        gpcc = page.locator("#baselines label", has_text="gpcc").count() > 0  # where tmc3 is built
        if gpcc:
            page.locator("#baselines label", has_text="gpcc").first.click()
        else:
            page.click("#unavailable")
            assert "gpcc: tmc3 not installed" in page.inner_text("#unavailable")
        page.click("#run")
        status = wait_status(page, "done", timeout=900_000)
        run_id = int(status.split("Run ")[1].split(" ")[0])
        page.wait_for_function(
            "() => ['necgs', 'draco', 'floor'].every(c => document.querySelector('#summary').innerText.includes(c))",
            timeout=60_000,
        )
        page.wait_for_selector("#view_original canvas", timeout=120_000)
        page.wait_for_selector("#view_necgs canvas", timeout=120_000)
        page.wait_for_selector("#dl_archive a[download]", timeout=60_000)
        assert "x1e-3" in page.inner_text("#view_necgs") or "CD" in page.inner_text("#view_necgs")
        table = page.inner_text("#summary")
        assert "encode s/shape" in table and "decode s/shape" in table
        check_viewers_turn_together(page)
        assert_clean(page, capfd, "2_after_run", shots)
        if gpcc:  # its rows, its points, its viewer
            assert "octree" in table and "gpcc" in table
            legend = page.evaluate("() => [...document.querySelectorAll('#rd_cd .legendtext')].map(e => e.textContent)")
            assert "gpcc" in legend, legend
            choose(page, "other_variant", "gpcc::octree d5 1k pts + SPSR")
            page.wait_for_function(
                "() => document.querySelector('#view_other').innerText.includes('gpcc octree d5')", timeout=120_000
            )
            page.wait_for_selector("#view_other canvas", timeout=120_000)
            assert_clean(page, capfd, "2a_gpcc_viewer", shots)
        check_run_details(page, capfd, shots)
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
        assert_clean(page, capfd, "3_after_ablation", shots)

        # a decoder trained on the set and the prior, beside the peers: the prior's part shows first
        page.get_by_role("tab", name="one run").click()
        choose(page, "decoder", "both: train a decoder + prior tiny")
        page.evaluate(RECORD_STATUS_JS)
        page.click("#run")
        wait_status(page, f"Run {run_id + 2} done")
        statuses = page.evaluate("() => window.__statuses")
        first = next((k for k, t in enumerate(statuses) if "necgs prior tiny ready after" in t), None)
        assert first is not None and "pending" in statuses[first], statuses
        # the previous run's "done" may stay under Gradio's timer until the job's first update
        assert not any(f"Run {run_id + 2} done" in t for t in statuses[:first]), statuses
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
        assert_clean(page, capfd, "3b_after_prior_run", shots)

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
        assert_clean(page, capfd, "4_after_load_run", shots)
        set_number(page, "#run_id input", "0")
        page.click("#load_run")
        assert "There is no run 0" in wait_status(page, "no run 0")
        assert_clean(page, capfd, "5_after_load_run_0", shots)

        # a bad upload: its name and the reason, visible, and the results shown before kept
        bad = tmp_path / "broken_part.obj"
        bad.write_text("this is not a mesh\n")
        page.click("#upload_box")
        page.set_input_files("#upload input[type=file]", str(bad))
        page.wait_for_function("() => document.querySelector('#dataset input').value === '(my upload)'")
        page.get_by_role("tab", name="one run").click()
        page.click("#run")
        wait_status(page, "broken_part.obj", timeout=120_000)
        alert = page.locator("#status [role=alert]")
        text = alert.inner_text()
        assert "broken_part.obj" in text and "no usable mesh" in text and "/tmp" not in text, text
        assert alert.is_visible() and "necgs" in page.inner_text("#summary")
        assert page.locator("#rd_cd .js-plotly-plot").count() == 1
        assert_clean(page, capfd, "6_after_bad_upload", shots)
        print(f"screenshots: {shots}")
        browser.close()
