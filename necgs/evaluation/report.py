"""A run's results as files in a folder of the user's choosing (``necgs evaluate -o``, the benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

from necgs.evaluation.figures import rd_figure
from necgs.evaluation.runner import EvaluationResult


def write_results(result: EvaluationResult, out_dir: str | Path) -> Path:
    """summary.csv, per_shape.csv, results.json, rd_cd.html and rd_f1.html under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.summary.to_csv(out / "summary.csv", index=False)
    result.per_shape.to_csv(out / "per_shape.csv", index=False)
    payload = {
        "dataset": result.dataset,
        "statuses": result.statuses,
        "summary": json.loads(result.summary.to_json(orient="records")),
        "per_shape": json.loads(result.per_shape.to_json(orient="records")),
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    rd_figure(result.summary, "cd").write_html(out / "rd_cd.html", include_plotlyjs="cdn")
    rd_figure(result.summary, "f1_005").write_html(out / "rd_f1.html", include_plotlyjs="cdn")
    return out
