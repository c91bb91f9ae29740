"""Seconds from the page's Run to the first decoded shape with a prior (issue #29: within 10 s).

Each case calls the function the page's Run button calls (``necgs.webapp.handlers.on_run``) with
the decoder choice "prior: NAME" and no peers, as a visitor of its own, and watches that
visitor's live feed (:mod:`necgs.webapp.live`) for the first decoded shape (its viewer file
written; the page's once-a-second tick shows it at most ``live_panel.TICK_S`` later). Cases:
the first ``--shapes`` shapes of each built-in set and ``--shapes`` evenly spaced humans_ama
bodies (read from ../shared/data, never copied), each cold (an empty fitting cache) and warm
(the same cache again: for the built-in sets what the first launch prepares). A cold case is
cancelled once every shape has been shown; a warm one runs to the end, so it also gives the
time of the first stored results (the prior's rows and the main viewers) and of the whole job,
and the seconds the job's feature fitting spent on live decodes (``watch_s``).

Usage: python benchmarks/bench_first_result.py [--prior bodies] [--shapes 6] [--sets figures creatures cad]
    [--no-ama] [--threads 2]
Writes benchmarks/results/first_result.json (with the machine's load average before and after
each case: the numbers are only comparable on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from necgs.paths import cache_dir
from necgs.webapp import handlers, live, sessions
from necgs.webapp.decoders import PRIOR_CHOICE
from necgs.webapp.live_panel import TICK_S

from _common import evenly_spaced, write_json

#: The issue's budget: seconds from Run to the first decoded shape in the viewers.
BUDGET_S = 10.0


def run_case(name: str, dataset, shapes: int, prior: str, full: bool) -> dict:
    """One Run as a new visitor; the seconds to its first shape, to every shape, to its first stored
    stage and to its end (the last two only when ``full``; else it is cancelled after the shapes)."""
    session = f"bench-{name}-{time.monotonic_ns()}"
    request = SimpleNamespace(session_hash=session)
    times: dict[str, float] = {}
    stop = threading.Event()

    def watch(t0: float) -> None:  # polls the visitor's feed as the page's tick does, but finer
        while not stop.is_set():
            feed = live.feed_of(session)
            state = feed.state() if feed is not None else None
            shown = [s for s in (state.shapes if state else ()) if s.glb]
            if shown and "first_shape_s" not in times:
                times["first_shape_s"] = time.perf_counter() - t0
                times["first_shape_cd"] = shown[0].cd
            if state is not None:
                times["watch_s"] = state.watch_s
            if len(shown) >= shapes and "all_shapes_s" not in times:
                times["all_shapes_s"] = time.perf_counter() - t0
                if not full:
                    sessions.cancel_event(session).set()
            time.sleep(0.02)

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    poller = threading.Thread(target=watch, args=(t0,), daemon=True)
    poller.start()
    statuses = []
    for out in handlers.on_run(
        dataset, None, shapes, "tiny", "quick", 150, True, True, False, [], f"{PRIOR_CHOICE}{prior}", request
    ):
        status = str(out[-2])
        statuses.append(status)
        if ("ready after" in status or "done" in status) and "first_stage_s" not in times:
            times["first_stage_s"] = time.perf_counter() - t0
    times["end_s"] = time.perf_counter() - t0
    stop.set()
    poller.join()
    sessions.end_session(session)
    case = {"case": name, **times, "load_before": load_before, "load_after": os.getloadavg(), "full": full}
    if not full:
        case.pop("end_s")
    if "first_shape_s" not in times:
        case["error"] = statuses[-1][:300] if statuses else "no update"
    print({k: round(v, 2) if isinstance(v, float) else v for k, v in case.items()}, flush=True)
    return case


def cold_cache(root: Path) -> None:
    """An empty cache (no fitted volume, no run) that still has the built-in sets generated."""
    datasets = cache_dir("datasets")
    os.environ["NECGS_CACHE_DIR"] = str(root)
    (root / "datasets").symlink_to(datasets, target_is_directory=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prior", default="bodies")
    p.add_argument("--shapes", type=int, default=6)
    p.add_argument("--sets", nargs="*", default=["figures", "creatures", "cad"])
    p.add_argument("--no-ama", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.sets:  # generated once, outside the timed runs (the first launch does it too)
        evenly_spaced(name, None)
    sources = [(name, name) for name in args.sets]
    if not args.no_ama:
        sources.append((f"humans_ama x{args.shapes} evenly spaced", evenly_spaced("humans_ama", args.shapes)))
    cases = []
    with tempfile.TemporaryDirectory(prefix="necgs-first-result-") as tmp:
        cold_cache(Path(tmp))
        for name, dataset in sources:
            for warmth in ("cold", "warm"):
                cases.append(run_case(f"{name} ({warmth})", dataset, args.shapes, args.prior, warmth == "warm"))
    payload = {
        "args": vars(args),
        "budget_s": BUDGET_S,
        "page_tick_s": TICK_S,
        "cases": cases,
        "within_budget": all(c.get("first_shape_s", float("inf")) + TICK_S <= BUDGET_S for c in cases),
    }
    print(write_json("first_result", payload))


if __name__ == "__main__":
    main()
