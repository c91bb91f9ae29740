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
