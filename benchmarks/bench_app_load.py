"""Load check of the shared page: simulated visitors browsing and queuing on 127.0.0.1.

Starts ``python app.py`` on a free port (its own cache and temp folders, no first-launch run),
then runs ``--visitors`` simulated visitors for ``--minutes``. Each visitor is a
``gradio_client.Client`` (a session of its own, with the page's heartbeat) that repeatedly:

1. opens the page (``GET /``, timed: the page latency) and browses (``/on_load_run`` on its own
   last run and on a run id of another visitor, which must be refused);
2. queues a small job on the built-in ``cad`` set (NeCGS tiny + Draco), timing how long until the
   status names its place or the worker, and until the job is done (its queue wait and run time);
3. one cycle in three cancels its job after a moment, and one in three closes its "tab" (the
   client, which ends its heartbeat) while the job runs, then comes back as a new session.

Bounded in count and time: at most ``--cycles`` jobs per visitor and ``--minutes`` in all; a job
is given up after ``--job-timeout`` seconds. At the end it checks the server is still up, that the
worker is free (a last job runs at once), and that every closed session's folder is gone (the
folders under ``<tmp>/necgs-sessions/<server pid>/`` left once all visitors have closed).

Usage:
    python benchmarks/bench_app_load.py --visitors 4 --minutes 10

Writes benchmarks/results/app_load.json: per-visitor events, page latency and queue-wait
percentiles, the server's peak resident memory (sampled every second), and the folder count.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from necgs.webapp.sessions import IDLE_TIMEOUT_S, SWEEP_INTERVAL_S

from _common import write_json

REPO = Path(__file__).resolve().parents[1]
DECODER = "train a decoder for this set"
#: The longest a closed session's folder may stay: a lost unload's session is swept once quiet.
FOLDER_WAIT_S = IDLE_TIMEOUT_S + 2 * SWEEP_INTERVAL_S


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text(html: str) -> str:
    """The words of a status box (its HTML tags removed)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", str(html)))


def job_args(epochs: int) -> tuple:
    """The inputs of ``/on_run`` for a small job: 2 cad shapes, tiny decoder, NeCGS + Draco."""
    return ("cad", None, 2, "tiny", "quick", epochs, False, True, False, ["draco"], DECODER)


@dataclass
class Tally:
    """What every visitor measured (appended from the visitor threads)."""

    page_s: list[float] = field(default_factory=list)
    placed_s: list[float] = field(default_factory=list)
    wait_s: list[float] = field(default_factory=list)
    run_s: list[float] = field(default_factory=list)
    cancel_s: list[float] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    runs: dict[int, int] = field(default_factory=dict)  # run id -> visitor
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, visitor: int, kind: str, **values) -> None:
        with self.lock:
            self.events.append({"visitor": visitor, "kind": kind, "t": time.time(), **values})


def open_page(url: str, tally: Tally) -> None:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    tally.page_s.append(time.perf_counter() - t)


def follow(job, started: float, deadline: float, cancel_after: float | None, client) -> dict:
    """Watch a submitted job's statuses: when it was placed, got the worker, ended (and how)."""
    seen: dict = {}
    cancelled_at = None
    while time.perf_counter() < deadline:
        statuses = [text(out[-1]) for out in job.outputs()]
        now = time.perf_counter() - started
        for status in statuses:
            if not status.strip():
                continue
            if "placed" not in seen:
                seen["placed"] = now  # the first status: the job's place, or the worker at once
            if "worker" not in seen and "Waiting for the worker" not in status:
                seen["worker"] = now
        if cancel_after is not None and cancelled_at is None and "worker" in seen and now > cancel_after:
            client.predict(api_name="/on_cancel")
            cancelled_at = now
        if job.done() or any("done" in s or "Cancelled" in s for s in statuses[-1:]):
            seen["end"] = now
            seen["last"] = statuses[-1] if statuses else ""
            break
        time.sleep(0.25)
    if cancelled_at is not None:
        seen["cancelled_at"] = cancelled_at
    return seen


def visitor(index: int, url: str, args: argparse.Namespace, tally: Tally, stop_at: float) -> None:
    """One simulated visitor: browse, queue, sometimes cancel or close the tab, until time or cycles end."""
    from gradio_client import Client

    rng = random.Random(index)
    client = Client(url, verbose=False)
    mine: list[int] = []
    for cycle in range(args.cycles):
        if time.perf_counter() > stop_at:
            break
        try:
            open_page(url, tally)
            if mine:
                out = client.predict(mine[-1], [], api_name="/on_load_run")
                tally.add(index, "reload", ok=f"run {mine[-1]}" in text(out[-1]))
            others = [r for r, v in tally.runs.items() if v != index]
            if others:
                out = client.predict(others[-1], [], api_name="/on_load_run")
                refused = "belongs to another visitor" in text(out[-1])
                tally.add(index, "foreign run", run=others[-1], refused=refused)
                if not refused:
                    tally.errors.append(f"visitor {index} was shown run {others[-1]} of another visitor")
            mode = ("finish", "cancel", "close")[cycle % 3]
            started = time.perf_counter()
            job = client.submit(*job_args(args.epochs), api_name="/on_run")
            cancel_after = rng.uniform(2.0, 6.0) if mode == "cancel" else None
            if mode == "close":
                seen = follow(job, started, started + rng.uniform(3.0, 8.0), None, client)
                client.close()  # the tab closes: its heartbeat ends and the server's unload fires
                tally.add(index, "closed tab", **seen)
                client = Client(url, verbose=False)  # the visitor comes back as a new session
                mine = []
                continue
            seen = follow(job, started, started + args.job_timeout, cancel_after, client)
            tally.add(index, mode, **seen)
            if "placed" in seen:
                tally.placed_s.append(seen["placed"])
            if "worker" in seen:
                tally.wait_s.append(seen["worker"])
            if mode == "cancel" and "cancelled_at" in seen and "end" in seen:
                tally.cancel_s.append(seen["end"] - seen["cancelled_at"])
            match = re.search(r"Run (\d+) done", seen.get("last", ""))
            if match:
                mine.append(int(match.group(1)))
                with tally.lock:
                    tally.runs[int(match.group(1))] = index
                if "worker" in seen:
                    tally.run_s.append(seen["end"] - seen["worker"])
            elif mode == "finish":
                tally.errors.append(f"visitor {index} cycle {cycle}: job did not finish: {seen}")
            if "Error" in seen.get("last", "") or "Traceback" in seen.get("last", ""):
                tally.errors.append(f"visitor {index}: error status {seen['last'][:200]}")
        except Exception as exc:  # a failed request is a finding of the load check, not a crash of it
            tally.errors.append(f"visitor {index} cycle {cycle}: {type(exc).__name__}: {exc}"[:300])
    client.close()


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (from /proc)."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids] + [g for k in kids for g in children(int(k))]


def start_server(port: int, tmp: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "GRADIO_SERVER_PORT": str(port),
        "NECGS_SKIP_INITIAL": "1",
        "TMPDIR": str(tmp),
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "PYTHONPATH": str(REPO),
    }
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status == 200:
                return proc
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit(f"app.py did not answer on port {port}: see {tmp / 'server.log'}")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {"n": len(a), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "max": float(a.max())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--visitors", type=int, default=4)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--cycles", type=int, default=6, help="jobs per visitor at most")
    p.add_argument("--epochs", type=int, default=20, help="epochs of each small job")
    p.add_argument("--job-timeout", type=float, default=300.0)
    p.add_argument("--tag", default="")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="necgs-load-"))
    port = free_port()
    proc = start_server(port, tmp)
    url = f"http://127.0.0.1:{port}/"
    tally, memory, done = Tally(), [], threading.Event()

    def sample() -> None:
        while not done.is_set():
            memory.append(rss_mb(proc.pid))
            time.sleep(1.0)

    threading.Thread(target=sample, daemon=True).start()
    stop_at = time.perf_counter() + 60 * args.minutes
    threads = [
        threading.Thread(target=visitor, args=(i, url, args, tally, stop_at), daemon=True) for i in range(args.visitors)
    ]
    t0 = time.perf_counter()
    for i, thread in enumerate(threads):
        thread.start()
        time.sleep(1.0 + i)  # visitors arrive a little apart
    for thread in threads:
        thread.join(timeout=60 * args.minutes + args.job_timeout + 60)
    wall = time.perf_counter() - t0

    up = proc.poll() is None
    last = None
    if up:  # the worker is free: a last visitor's job gets it at once
        from gradio_client import Client

        client = Client(url, verbose=False)
        started = time.perf_counter()
        last = follow(client.submit(*job_args(3), api_name="/on_run"), started, started + 120, None, client)
        client.close()
    folders_root = tmp / "necgs-sessions" / str(proc.pid)
    left, waited = None, 0.0
    t = time.perf_counter()
    # Unload fires when a heartbeat ends (Gradio checks every 15 s); a session whose unload was lost
    # goes when the sweeper finds it quiet: wait for either.
    while up and time.perf_counter() - t < FOLDER_WAIT_S:
        left = sorted(f.name for f in folders_root.iterdir()) if folders_root.is_dir() else []
        if not left:
            break
        time.sleep(2)
    waited = time.perf_counter() - t
    done.set()
    proc.terminate()
    proc.wait(timeout=30)
    server_log = (tmp / "server.log").read_text(errors="replace")
    tracebacks = server_log.count("Traceback")

    payload = {
        "args": vars(args),
        "wall_seconds": wall,
        "server_up_at_end": up,
        "last_job": last,
        "session_folders_left": left,
        "seconds_waited_for_folders": waited,
        "server_tracebacks": tracebacks,
        "peak_rss_mb": max(memory) if memory else None,
        "final_rss_mb": memory[-1] if memory else None,
        "page_latency_s": percentiles(tally.page_s),
        "place_shown_s": percentiles(tally.placed_s),
        "queue_wait_s": percentiles(tally.wait_s),
        "run_s": percentiles(tally.run_s),
        "cancel_to_end_s": percentiles(tally.cancel_s),
        "jobs_done": len(tally.runs),
        "errors": tally.errors,
        "events": tally.events,
        "loadavg_end": os.getloadavg(),
    }
    path = write_json(f"app_load{args.tag}", payload)
    summary = {k: v for k, v in payload.items() if k not in ("events", "args")}
    print(summary)
    print(f"wrote {path}")
    if tracebacks:
        print(server_log[-3000:])


if __name__ == "__main__":
    main()
