"""Merge the summaries of several RD runs on the same shapes into one results folder.

Runs of one set that differ only in the NeCGS preset (for example ``bench_rd.py --preset quick``
and ``--preset standard``) each carry the same peer rows and the same metric floor; the merged
summary keeps every NeCGS row and the first run's floor and peer rows, so the app and
``render_png.py`` draw all presets in one figure.

Usage:
    python benchmarks/merge_summaries.py benchmarks/results/rd_humans_ama_band_presets \\
        benchmarks/results/rd_humans_ama_quick_band benchmarks/results/rd_humans_ama_standard_band

Writes <output>/summary.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def merge(folders: list[Path]) -> pd.DataFrame:
    """The first summary whole, then the NeCGS rows of the others; refuses different shape sets."""
    summaries = [pd.read_csv(f / "summary.csv") for f in folders]
    shapes = {(s.dataset.iloc[0], int(s.n_shapes.max())) for s in summaries}
    if len(shapes) != 1:
        raise SystemExit(f"the runs are on different sets: {sorted(shapes)}")
    rest = [s[s.codec == "necgs"] for s in summaries[1:]]
    return pd.concat([summaries[0], *rest], ignore_index=True)


def main() -> None:
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    merge([Path(a) for a in sys.argv[2:]]).to_csv(out / "summary.csv", index=False)
    print(out / "summary.csv")


if __name__ == "__main__":
    main()
