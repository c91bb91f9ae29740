"""Merge the summaries of several RD runs on the same shapes into one results folder.

Runs of one set that differ only in the NeCGS preset (for example ``bench_rd.py --preset quick``
and ``--preset standard``) each carry the same peer rows and the same metric floor; the merged
summary keeps the first run whole and the rows of the ``--take`` codecs (NeCGS by default) of the
others, so the app and ``render_png.py`` draw all of them in one figure. The metric is
deterministic (fixed sampling seed), so rows that two runs share (the floor, a peer's settings)
must agree: the merge refuses runs whose shared rows differ, which is the check that they were
made on the same shapes by the same code.

Usage:
    python benchmarks/merge_summaries.py benchmarks/results/rd_humans_ama_band_presets \\
        benchmarks/results/rd_humans_ama_quick_band benchmarks/results/rd_humans_ama_standard_band
    python benchmarks/merge_summaries.py --take gpcc-trisoup,necgs OUT RUN_WITH_GPCC RUN_WITH_TRISOUP ...

Writes <output>/summary.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

#: Relative difference allowed between the CD of a row two runs share.
SHARED_ROW_RTOL = 1e-6


def check_shared_rows(first: pd.DataFrame, other: pd.DataFrame, name: str, take: tuple[str, ...]) -> None:
    """Refuse ``other`` when a (codec, label) row of a codec not taken (the floor, a peer) that it
    shares with ``first`` has another CD or size."""
    joined = first.merge(other[~other.codec.isin(take)], on=["codec", "label"], suffixes=("", "_other"))
    for row in joined.itertuples():
        if abs(row.cd - row.cd_other) > SHARED_ROW_RTOL * abs(row.cd) or row.bytes != row.bytes_other:
            raise SystemExit(
                f"{name}: row '{row.codec} {row.label}' differs from the first run's "
                f"(CD {row.cd_other:.6g} vs {row.cd:.6g}, {row.bytes_other} vs {row.bytes} B): "
                "not the same shapes or code"
            )


def merge(folders: list[Path], take: tuple[str, ...] = ("necgs",)) -> pd.DataFrame:
    """The first summary whole, then the ``take`` codecs' rows of the others.

    Raises:
        SystemExit: On runs over different sets, or shared rows that disagree.
    """
    summaries = [pd.read_csv(f / "summary.csv") for f in folders]
    shapes = {(s.dataset.iloc[0], int(s.n_shapes.max())) for s in summaries}
    if len(shapes) != 1:
        raise SystemExit(f"the runs are on different sets: {sorted(shapes)}")
    merged = summaries[0]
    for folder, summary in zip(folders[1:], summaries[1:], strict=True):
        check_shared_rows(summaries[0], summary, str(folder), take)
        new = summary[summary.codec.isin(take)]
        merged = pd.concat([merged, new], ignore_index=True)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--take", default="necgs", help="comma-separated codecs taken from the later runs")
    parser.add_argument("output", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("give the output folder and at least two runs")
    args.output.mkdir(parents=True, exist_ok=True)
    merge(args.runs, tuple(args.take.split(","))).to_csv(args.output / "summary.csv", index=False)
    print(args.output / "summary.csv")


if __name__ == "__main__":
    main()
