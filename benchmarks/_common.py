"""Helpers shared by the benchmark scripts (results go to benchmarks/results/)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from necgs.evaluation.report import write_results
from necgs.evaluation.runner import EvaluationResult, evaluate
from necgs.evaluation.runs import RunStore, run_record
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import LoadedSet, load_meshes

RESULTS = Path(__file__).resolve().parent / "results"

#: Columns printed and tabulated for every rate-distortion run.
RD_COLUMNS = [
    "codec",
    "label",
    "bytes",
    "ratio_ply",
    "ratio_files",
    "cd",
    "nc",
    "f1_005",
    "f1_01",
    "encode_s",
    "decode_ms_per_shape",
]


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_json(name: str, payload: dict) -> Path:
    """Write ``payload`` (plus the machine description) as benchmarks/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1, default=float))
    return path


def spread(total: int, n: int, offset: int = 0) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (every k-th, from ``offset``)."""
    return [(offset + round(i * total / n)) % total for i in range(n)]


def evenly_spaced(dataset: str, n: int | None, offset: int = 0) -> LoadedSet:
    """The whole set, or ``n`` shapes spread evenly over it (every k-th, in set order, from ``offset``)."""
    loaded = load_meshes(resolve_dataset(dataset))
    if not n or n >= len(loaded.meshes):
        return loaded
    picks = spread(len(loaded.meshes), n, offset)
    return LoadedSet(
        [loaded.meshes[i] for i in picks],
        [],
        [loaded.sources[i] for i in picks],
        [loaded.source_bytes[i] for i in picks],
    )


def run_rd(
    dataset: str,
    codecs: list[str],
    necgs_settings: list[dict],
    name: str,
    *,
    shapes: int | None = None,
    args: dict | None = None,
) -> EvaluationResult:
    """One rate-distortion run of NeCGS settings beside the peers, written as results/<name>/ + <name>.json.

    Args:
        dataset: A data set name.
        codecs: Codec registry names; ``necgs`` runs ``necgs_settings``, the others their sweeps.
        necgs_settings: NeCGS settings (preset, width, epochs, resolution, ablation switches).
        name: Results folder and JSON name under benchmarks/results/.
        shapes: Use this many evenly spaced shapes (default: all).
        args: The script's arguments, stored with the results.
    """
    loaded = evenly_spaced(dataset, shapes)
    t = time.time()
    progress = lambda stage, frac: print(f"[{100 * frac:5.1f}%] {time.time() - t:7.0f}s {stage}", flush=True)  # noqa: E731
    result = evaluate(loaded, codecs, settings={"necgs": necgs_settings}, progress=progress)
    result.dataset = dataset
    result.summary["dataset"] = dataset
    if len(result.per_shape):
        result.per_shape["dataset"] = dataset
    out = write_results(result, RESULTS / name)
    config = run_record(dataset, codecs, necgs_settings, len(loaded.meshes), args=args or {}, benchmark=name)
    RunStore().create(result, config)
    write_json(
        name,
        {
            "args": args or {},
            "dataset": dataset,
            "n_shapes": len(loaded.meshes),
            "wall_seconds": time.time() - t,
            "summary": result.summary.to_dict("records"),
        },
    )
    print(result.summary[RD_COLUMNS].to_string(index=False))
    print(f"written to {out}")
    return result


def load_summary(name: str) -> pd.DataFrame:
    """The summary table of an earlier run under benchmarks/results/<name>/."""
    return pd.read_csv(RESULTS / name / "summary.csv")
