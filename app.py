"""necgs web app: `python app.py`.

Binds GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 127.0.0.1:7860). The server answers at
once: the page shows the benchmark shipped with the project while the first-launch run on
the built-in set computes in the background (cached after the first time; NECGS_SKIP_INITIAL=1
skips it).
"""

import os

from necgs.webapp import INITIAL_RUN, build_demo, start_sweeper

if __name__ == "__main__":
    if not os.environ.get("NECGS_SKIP_INITIAL"):
        INITIAL_RUN.start()
    start_sweeper()
    build_demo().queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
