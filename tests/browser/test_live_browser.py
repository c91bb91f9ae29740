"""A real browser (Debian chromium through Playwright) watches jobs as they compute.

A small set-trained job: the live panel's loss curve and its decoded shape appear before the
job ends. A job with a prior: its first decoded shape appears in the live viewer before the run
ends, then every shape in the live table. Throughout, the progress display shows the visitor's
own job and never blinks blank, no element shows Gradio's red "Error" and the server prints no
traceback. Screenshots go to /tmp/shots-live/.
"""

from pathlib import Path

import pytest
from test_app_browser import ARGS, assert_clean, choose, set_number, wait_status

from necgs.webapp.decoders import TRAIN_DECODER
from necgs.webapp.export import CHROMIUM

pytestmark = pytest.mark.browser
SHOTS = Path("/tmp/shots-live")

#: Records when each live element first shows (ms, page clock) and samples the progress display.
WATCH_JS = """() => {
  const seen = window.__seen = {};
  const samples = window.__progress = [];
  const mark = (key, ok) => { if (ok && !(key in seen)) seen[key] = performance.now(); };
  const text = sel => (document.querySelector(sel) || {}).innerText || '';
  // the previous job's "done" is not this one's: this job's "done" follows this job's own status
  // ("your job has the worker now", its place, its first part), whatever showed when the watch began
  let started = false;
  clearInterval(window.__watch);
  window.__watch = setInterval(() => {
    mark('curve', !!document.querySelector('#live_curve .js-plotly-plot .scatterlayer .trace'));
    mark('shape', !!document.querySelector('#live_shape canvas'));
    mark('epoch', text('#live_caption').includes('epoch'));
    mark('start', text('#live_shape').includes('start feature'));
    const status = text('#status');
    started = started || /your job|still computing/i.test(status);
    mark('done', started && status.includes('done'));
    samples.push([performance.now(), text('#progress .html-container')]);  // not Gradio's hidden timer
  }, 100);
}"""


@pytest.fixture(scope="module")
def app_priors(tiny_prior_dir):
    """The app of this module sees the tiny prior, and only it."""
    return tiny_prior_dir


def progress_while_running(page) -> list[str]:
    """The progress display's texts from its first non-empty sample until the job was done."""
    seen, samples = page.evaluate("() => [window.__seen, window.__progress]")
    first = next(k for k, (_, t) in enumerate(samples) if t.strip())
    return [t for ms, t in samples[first:] if ms < seen["done"]]


@pytest.mark.timeout(1500)  # two jobs on 2 shared cores
def test_a_job_is_watched_as_it_computes(app_url, capfd):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    assert Path(CHROMIUM).exists(), "Debian chromium is installed by scripts/setup.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(app_url, wait_until="load")
        page.wait_for_selector("#run", timeout=60_000)
        wait_status(page, "Showing", timeout=60_000)
        assert not page.locator("#live").is_visible()  # nothing live before a job

        # a decoder trained on the set: its loss and one decoded shape, live
        choose(page, "dataset", "cad")
        set_number(page, "#limit input[type=number]", "2")
        page.wait_for_function(
            "() => document.querySelector('#advice').innerText.includes('2 shapes')", timeout=120_000
        )
        choose(page, "decoder", TRAIN_DECODER)  # two shapes start from the prior; this test trains
        choose(page, "width", "tiny")
        set_number(page, "#epochs input", "40")
        page.evaluate(WATCH_JS)
        page.click("#run")
        page.wait_for_function("() => 'shape' in window.__seen", timeout=600_000)
        page.screenshot(path=str(SHOTS / "1_training_live.png"))
        page.wait_for_function("() => 'done' in window.__seen", timeout=900_000)
        seen = page.evaluate("() => window.__seen")
        assert seen["curve"] < seen["done"] and seen["shape"] < seen["done"] and seen["epoch"] < seen["done"], seen
        assert "epoch" in page.inner_text("#live_caption") and "CD" in page.inner_text("#live_caption")
        running = progress_while_running(page)
        assert running and all(t.strip() for t in running), running  # never blank while the job runs
        assert any("your job" in t for t in running) and not any("first launch" in t for t in running)
        assert_clean(page, capfd, "live_1_training_done", SHOTS)

        # a prior: each shape from its start feature, the first before the run ends
        choose(page, "decoder", "prior: tiny")
        set_number(page, "#limit input[type=number]", "6")
        page.evaluate(WATCH_JS)
        page.click("#run")
        page.wait_for_function("() => 'start' in window.__seen", timeout=300_000)
        page.screenshot(path=str(SHOTS / "2_prior_first_shape.png"))
        page.wait_for_function("() => 'done' in window.__seen", timeout=600_000)
        seen = page.evaluate("() => window.__seen")
        assert seen["start"] < seen["done"], seen
        table = page.inner_text("#live_table")  # Gradio's table draws its rows in its own structure
        assert all(f"cad_{k:03d}" in table for k in range(6)), table
        assert "prior tiny" in page.inner_text("#live_table")
        running = progress_while_running(page)
        assert running and all(t.strip() for t in running), running
        assert_clean(page, capfd, "live_2_prior_done", SHOTS)
        browser.close()
