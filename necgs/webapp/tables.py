"""The page's tables of a run: every codec and setting, and every shape, with readable headers and
each number rounded to what it shows (the CSV download keeps the run's every column)."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Columns of the metrics table, in order, with the decimals each shows (those a run lacks, and
#: those that would be empty, are left out; the CSV download keeps every column of the run).
TABLE_COLUMNS = {
    "codec": ("codec", None),
    "label": ("setting", None),
    "ratio_ply": ("ratio vs PLY", 1),
    "kb": ("kB", 1),
    "cd_1e3": ("CD x1e-3", 2),
    "f1_005": ("F1", 3),
    "nc": ("NC", 3),
    "cd_fitted_1e3": ("CD fitted x1e-3", 2),
    "cd_compression_1e3": ("CD from coding x1e-3", 2),
    "d_ratio": ("ratio vs ref", 2),
    "d_cd_1e3": ("dCD vs ref x1e-3", 2),
    "d_f1": ("dF1 vs ref", 3),
    "cd_median_1e3": ("CD median x1e-3", 2),
    "empty_shapes": ("empty shapes", 0),
    "encode_s_shape": ("encode s/shape", 2),
    "decode_s_shape": ("decode s/shape", 2),
    "status": ("status", None),
    "error": ("error", None),
}
#: Columns shown only where some row needs them (a shape decoded empty, a setting not done or failed).
SPARSE_COLUMNS = ("cd_median_1e3", "empty_shapes", "status", "error")
#: The per-shape table's columns, in order, with the decimals each shows.
PER_SHAPE_COLUMNS = {
    "codec": ("codec", None),
    "label": ("setting", None),
    "shape": ("shape", None),
    "cd_1e3": ("CD x1e-3", 2),
    "f1_005": ("F1", 3),
    "nc": ("NC", 3),
    "f1_01": ("F1 at 0.01", 3),
    "cd_fitted_1e3": ("CD fitted x1e-3", 2),
    "f1_fitted": ("F1 fitted", 3),
    "floor_cd_1e3": ("floor CD x1e-3", 2),
}


def metrics_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The metrics of every codec and setting, CD split into representation and coding, and the
    NeCGS variants' differences to the reference (the first variant), each rounded to what it shows."""
    s = summary.copy()
    for col in ("cd", "cd_fitted", "cd_median"):
        if col in s:
            s[f"{col}_1e3"] = s[col].astype(float) * 1e3
    if "bytes" in s:
        s["kb"] = s["bytes"].astype(float) / 1e3
    if "encode_s" in s and "n_shapes" in s:
        s["encode_s_shape"] = s.encode_s.astype(float) / s.n_shapes.astype(float).clip(lower=1)
    if "decode_ms_per_shape" in s:
        s["decode_s_shape"] = s.decode_ms_per_shape.astype(float) / 1e3
    if "cd_fitted" in s:
        s["cd_compression_1e3"] = (s.cd.astype(float) - s.cd_fitted.astype(float)) * 1e3
    nec = s[(s.codec == "necgs") & (s.status == "ok")]
    if len(nec) > 1:
        ref = nec.iloc[0]
        sel = (s.codec == "necgs") & (s.status == "ok")
        s.loc[sel, "d_ratio"] = s.loc[sel, "ratio_ply"].astype(float) / float(ref.ratio_ply)
        s.loc[sel, "d_cd_1e3"] = (s.loc[sel, "cd"].astype(float) - float(ref.cd)) * 1e3
        s.loc[sel, "d_f1"] = s.loc[sel, "f1_005"].astype(float) - float(ref.f1_005)
    return _shown(s, TABLE_COLUMNS, sparse=SPARSE_COLUMNS)


def per_shape_table(per_shape: pd.DataFrame) -> pd.DataFrame:
    """The per-shape metrics with readable headers (CD x1e-3), rounded to what each shows."""
    if not len(per_shape):
        return pd.DataFrame()
    s = per_shape.copy()
    for col in ("cd", "cd_fitted", "floor_cd"):
        if col in s:
            s[f"{col}_1e3"] = s[col].astype(float) * 1e3
    return _shown(s, PER_SHAPE_COLUMNS)


def _shown(frame: pd.DataFrame, columns: dict[str, tuple[str, int | None]], sparse=()) -> pd.DataFrame:
    """``frame``'s ``columns`` that hold something (a sparse one only where a row needs it), renamed
    and rounded; infinities shown as empty cells."""

    def needed(col: str) -> bool:
        values = frame[col]
        if col == "status":
            return bool((values.astype(str) != "ok").any())
        if col == "empty_shapes":
            return bool((pd.to_numeric(values, errors="coerce").fillna(0) > 0).any())
        if col == "cd_median_1e3":
            return "empty_shapes" in frame and needed("empty_shapes")
        return bool(values.notna().any() and values.astype(str).str.len().gt(0).any())

    cols = [c for c in columns if c in frame and (needed(c) if c in sparse else frame[c].notna().any())]
    out = frame[cols].replace([np.inf, -np.inf], np.nan)
    out = out.round({c: d for c, (_, d) in columns.items() if c in cols and d is not None})
    return out.rename(columns={c: name for c, (name, _) in columns.items()})
