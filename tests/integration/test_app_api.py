"""The app through gradio_client against a real server, and `python app.py` itself."""

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_run_and_reload_through_the_api(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    decoder = "train a decoder for this set"
    out = client.predict("cad", None, 2, "tiny", "quick", 20, True, True, False, ["draco"], decoder, api_name="/on_run")
    # gr.State outputs are not part of the API: plots, table, per-shape, pickers, overlay, runs table, status
    status = status_text(out[-1])
    match = re.search(r"Run (\d+) done", status)
    assert match, status
    run_id = int(match.group(1))
    assert out[0]["type"] == "plotly" and "necgs" in out[0]["plot"]
    table = out[2]
    assert {"floor", "necgs", "draco"} <= {row[0] for row in table["data"]}
    reloaded = client.predict(run_id, [], api_name="/on_load_run")
    assert f"run {run_id}" in status_text(reloaded[-1]) and reloaded[2]["data"] == table["data"]
    missing = client.predict(0, [], api_name="/on_load_run")
    assert "There is no run 0" in status_text(missing[-1])


def wait_for(job, predicate, timeout_s: float) -> tuple[str, float]:
    """The first status of a submitted job's outputs that ``predicate`` accepts, and after how many seconds."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        for out in job.outputs():
            if predicate(status_text(out[-1])):
                return status_text(out[-1]), time.perf_counter() - t0
        if job.done():
            break
        time.sleep(0.2)
    raise AssertionError(f"no such status within {timeout_s} s: {[status_text(o[-1]) for o in job.outputs()]}")


def test_two_visitors_queue_cancel_and_see_only_their_own_runs(app_url):
    from gradio_client import Client

    alice, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    decoder = "train a decoder for this set"
    small = ("cad", None, 2, "tiny", "quick", 3, False, True, False, [], decoder)
    long = ("cad", None, 2, "tiny", "quick", 600, False, True, False, [], decoder)
    out = alice.predict(*small, api_name="/on_run")
    mine = int(re.search(r"Run (\d+) done", status_text(out[-1])).group(1))
    assert mine in [row[0] for row in out[-2]["data"]]  # alice's runs table lists her run
    refused = bob.predict(mine, [], api_name="/on_load_run")
    assert f"run {mine} belongs to another visitor" in status_text(refused[-1])

    running = alice.submit(*long, api_name="/on_run")
    time.sleep(2.0)  # alice's job holds the worker
    waiting = bob.submit(*long, api_name="/on_run")
    status, seconds = wait_for(waiting, lambda s: "number 2 of 2" in s, 15.0)
    print(f"queue place shown after {seconds:.1f} s: {status}")
    assert "1 ahead" in status
    again = bob.predict(*small, api_name="/on_run")  # one job per session
    assert "already have a job running or waiting" in status_text(again[-1])

    t0 = time.perf_counter()
    alice.predict(api_name="/on_cancel")
    wait_for(running, lambda s: "Cancelled" in s, 10.0)
    wait_for(waiting, lambda s: "has the worker" in s, 10.0)
    freed = time.perf_counter() - t0
    print(f"cancel to worker handed on: {freed:.1f} s")
    assert freed < 5.0 * 2  # the 5 s, with room for this loaded machine's slow polls
    bob.predict(api_name="/on_cancel")
    wait_for(waiting, lambda s: "Cancelled" in s, 10.0)
    cleared = waiting.outputs()[-1]  # a cancelled job clears the results and lists bob's runs: none of alice's
    assert "Cancelled" in status_text(cleared[-1]) and mine not in [row[0] for row in cleared[-2]["data"]]


def test_bad_upload_is_reported_not_crashing(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    out = client.predict("(my upload)", None, 2, "tiny", "quick", 5, True, True, False, [], api_name="/on_run")
    assert "role='alert'" in out[-1] and "no files uploaded" in out[-1]


def test_app_answers_at_once_on_the_port_it_is_given(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_PORT": str(port),
        "NECGS_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline, answered = time.time() + 90, False
        while time.time() < deadline and not answered:
            try:  # the first-launch run (empty cache) computes in the background meanwhile
                answered = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status == 200
            except OSError:
                time.sleep(1)
        assert answered, f"app.py did not answer on GRADIO_SERVER_PORT={port}"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
