"""necgs web app: `python app.py` (binds 127.0.0.1:7860; NECGS_HOST / NECGS_PORT change that)."""

import os

from necgs.webapp import build_demo, ensure_initial_run

if __name__ == "__main__":
    if not os.environ.get("NECGS_SKIP_INITIAL"):
        print("preparing the first-launch results (cached after the first time)...", flush=True)
        ensure_initial_run(progress=lambda stage, frac: print(f"  [{100 * frac:5.1f}%] {stage}", flush=True))
    build_demo().queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("NECGS_HOST", "127.0.0.1"),
        server_port=int(os.environ.get("NECGS_PORT", "7860")),
    )
