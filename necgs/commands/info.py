"""``necgs info set.ncgs``: header, bytes per section, ratio, per-shape costs."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a .ncgs archive")
    p.add_argument("archive")
    p.add_argument("--json", action="store_true", help="print the full description as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.compression import describe

    d = describe(args.archive)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"{d['file']}: necgs archive v{d['version']}, {d['n_shapes']} shapes, {d['bytes']} bytes")
    where = f"{d['weights_bytes']} bytes"
    if d.get("prior"):
        where = f"in prior {d['prior']['name']!r} (id {d['prior']['id']}), " + (
            f"plus a fine-tuned delta of {d['weights_bytes']} bytes" if d["weights_bytes"] else "not in the archive"
        )
    print(
        f"  decoder  K={d['decoder']['resolution']} widths={d['decoder']['widths']} "
        + (f"first {d['decoder']['tied_modules']} modules tied " if d["decoder"].get("tied_modules") else "")
        + f"({d['decoder_parameters']} parameters): {where}"
    )
    print(
        f"  features {d['feature_bytes']} bytes + models {d['feature_model_bytes']} bytes; "
        f"header {d['header_bytes']} bytes"
    )
    print(f"  coders   {', '.join(f'{k}={v}' for k, v in d['coders'].items())}")
    est = d.get("rate_estimate")
    if est:
        print(
            f"  estimate training's rate term: weights {est['weights_bytes']:.0f} bytes, "
            f"features {est['features_bytes']:.0f} bytes (payloads, Laplace models)"
        )
    if d["ratio_ply"]:
        print(f"  ratio    {d['ratio_files']:.1f}x vs source files, {d['ratio_ply']:.1f}x vs binary PLY")
    for b in d["batches"]:
        members = [s for s in d["shapes"] if s["batch"] == b["batch"]]
        cost = sum(s["feature_bytes"] for s in members)
        print(
            f"  batch {b['batch']} ({b['mode']}): {len(members)} shapes, {cost} feature bytes"
            + (f", {cost / len(members):.0f} bytes per shape" if members else "")
        )
        if b["batch"] > 0:
            for s in members:
                print(f"    + {s['name']}: {s['feature_bytes']} bytes")
    return 0
