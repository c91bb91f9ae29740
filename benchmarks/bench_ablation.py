"""Fig. 8 of the paper at CPU scale: auto-decoder vs auto-encoder (8a) and with vs without
the SSIM term (8b), each at several decoder widths, on the same evenly spaced shapes, in one
run, beside decimation + Draco and the metric floor.

Usage: python benchmarks/bench_ablation.py [--dataset humans_ama] [--shapes 16] [--widths tiny small]
Writes benchmarks/results/fig8_ablation/ (summary.csv with a ``variant`` column, per_shape.csv,
fig8_cd.html, fig8_f1.html) and fig8_ablation.json.
"""

from __future__ import annotations

import argparse
import json

from necgs.settings import parse_width

from _common import RESULTS, run_rd

#: variant name -> NeCGS setting switches
VARIANTS = {
    "auto-decoder + SSIM (NeCGS)": {},
    "auto-decoder, no SSIM (Fig. 8b)": {"ssim": False},
    "auto-encoder + SSIM (Fig. 8a)": {"autoencoder": True},
}


def variant_of(setting: str) -> str:
    """The variant a summary row's JSON setting belongs to."""
    s = json.loads(setting)
    for name, switches in VARIANTS.items():
        if all(s.get(k) == v for k, v in switches.items()) and not any(
            k in s for k in ("ssim", "autoencoder") if k not in switches
        ):
            return name
    return "other"


def figure(summary, metric: str):
    """One curve per variant (and per peer codec): ``metric`` against the ratio vs binary PLY."""
    import plotly.graph_objects as go

    fig = go.Figure()
    ok = summary[(summary.status == "ok") & (summary.codec != "floor")]
    for name, grp in ok.groupby("variant", sort=False):
        grp = grp.sort_values("ratio_ply")
        fig.add_trace(go.Scatter(x=grp.ratio_ply, y=grp[metric], mode="lines+markers", name=name, text=grp.label))
    floor = summary[summary.codec == "floor"]
    fig.add_hline(y=float(floor[metric].iloc[0]), line_dash="dash", line_color="gray", annotation_text="metric floor")
    fig.update_layout(
        xaxis_type="log",
        xaxis_title="compression ratio vs binary PLY (log)",
        yaxis_title=metric,
        template="plotly_white",
        title=f"Fig. 8 ablations: {metric}",
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--shapes", type=int, default=16)
    p.add_argument("--preset", default="quick")
    p.add_argument("--widths", nargs="+", default=["tiny", "small"])
    p.add_argument("--epochs", type=int)
    args = p.parse_args()
    extra = {"epochs": args.epochs} if args.epochs else {}
    settings = [
        {"preset": args.preset, "width": parse_width(w), **extra, **switches}
        for switches in VARIANTS.values()
        for w in args.widths
    ]
    result = run_rd(
        args.dataset, ["necgs", "decimate-draco"], settings, "fig8_ablation", shapes=args.shapes, args=vars(args)
    )
    summary = result.summary
    summary["variant"] = [variant_of(s) if c == "necgs" else c for s, c in zip(summary.setting, summary.codec)]
    out = RESULTS / "fig8_ablation"
    summary.to_csv(out / "summary.csv", index=False)
    for metric, stem in (("cd", "fig8_cd"), ("f1_005", "fig8_f1")):
        figure(summary, metric).write_html(out / f"{stem}.html", include_plotlyjs="cdn")
        (out / f"rd_{stem[5:]}.html").unlink(missing_ok=True)  # one curve for all variants: replaced above
    print(summary[["variant", "label", "bytes", "ratio_ply", "cd", "f1_005"]].to_string(index=False))


if __name__ == "__main__":
    main()
