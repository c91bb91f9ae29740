"""The Gradio page, split by what each part does (importing it does no work).

- :mod:`necgs.webapp.layout`: the Blocks layout and its wiring (``build_demo``).
- :mod:`necgs.webapp.handlers`: plain event handlers, component values -> updates.
- :mod:`necgs.webapp.views`: what is shown of a stored run (labels, tables, figures, viewer
  files, downloads); :mod:`necgs.webapp.teaching`: fitted vs decoded volume.
- :mod:`necgs.webapp.jobs`: uploads, runs and ablations, what a run keeps, the first-launch
  run; :mod:`necgs.webapp.progress`: one monotone, cost-weighted progress figure.
- :mod:`necgs.webapp.sessions`: per-tab folders, removed on close or when stale.
- :mod:`necgs.webapp.export`: Plotly figures to PNG with the system chromium.
"""

from necgs.webapp.jobs import INITIAL_RUN, ensure_initial_run
from necgs.webapp.layout import build_demo
from necgs.webapp.sessions import start_sweeper

__all__ = ["INITIAL_RUN", "build_demo", "ensure_initial_run", "start_sweeper"]
