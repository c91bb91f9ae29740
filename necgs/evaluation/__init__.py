"""Rate-distortion evaluation, split by job (this package face re-exports nothing).

- :mod:`necgs.evaluation.runner`: the RD runner (:func:`~necgs.evaluation.runner.evaluate`,
  its progress events and result rows).
- :mod:`necgs.evaluation.runs`: the run store (settings, results and files of every run, keyed
  by run id), written by ``necgs evaluate``, the benchmarks and the app.
- :mod:`necgs.evaluation.figures`: the Plotly RD figures and the codecs' colours.
- :mod:`necgs.evaluation.report`: a run's results as files in a chosen folder.
"""
