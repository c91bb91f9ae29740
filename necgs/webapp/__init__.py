"""The Gradio page, split by what each part does (importing it does no work).

- :mod:`necgs.webapp.layout`: the panels' builders and the events' wiring (``build_demo``).
- :mod:`necgs.webapp.handlers`: the run handlers (page load, jobs, past runs, controls);
  :mod:`necgs.webapp.viewer_handlers`: the viewers, downloads and teaching view;
  :mod:`necgs.webapp.messages`: the status box's HTML, messages without server paths.
- :mod:`necgs.webapp.views`: what is shown of a stored run (labels, figures, viewer files,
  downloads); :mod:`necgs.webapp.tables`: its tables; :mod:`necgs.webapp.teaching`: fitted vs
  decoded volume.
- :mod:`necgs.webapp.choices`: what the run controls offer and the NeCGS settings they make;
  :mod:`necgs.webapp.decoders`: the decoder choice (trained, a prior, both);
  :mod:`necgs.webapp.advice`: the decoder a set starts from and why;
  :mod:`necgs.webapp.control_handlers`: the controls that follow others (advice, preset epochs).
- :mod:`necgs.webapp.glossary`: the header and the glossary; :mod:`necgs.webapp.page_js`: the
  page's style and script (the viewers turning together).
- :mod:`necgs.webapp.uploads`: uploaded meshes and zips, staged and loaded.
- :mod:`necgs.webapp.running`: a job, stored as one run in :mod:`necgs.evaluation.runs`;
  :mod:`necgs.webapp.progress`: one monotone, cost-weighted progress figure;
  :mod:`necgs.webapp.jobs`: the one worker's queue (one job per session, places shown).
- :mod:`necgs.webapp.live`: what a job shows while it computes (each shape against a prior as soon as
  it is decoded, the loss curve, a shape decoded with the weights so far);
  :mod:`necgs.webapp.live_panel`: the live panel and the progress display, refreshed once a second.
- :mod:`necgs.webapp.first_launch`: the shipped benchmark, the first-launch background run and the
  built-in sets' prior volumes.
- :mod:`necgs.webapp.sessions`: per-tab folders and cancel flags, ended on close or when stale;
  which runs a session sees (its own, the first-launch run, the CLI's where allowed).
- :mod:`necgs.webapp.export`: Plotly figures to PNG with the system chromium.
"""

from necgs.webapp.first_launch import INITIAL_RUN, ensure_initial_run
from necgs.webapp.layout import build_demo
from necgs.webapp.sessions import start_sweeper

__all__ = ["INITIAL_RUN", "build_demo", "ensure_initial_run", "start_sweeper"]
