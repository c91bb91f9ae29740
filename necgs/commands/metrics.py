"""``necgs metrics A B``: CD / NC / F1 of mesh A against mesh B (paper Eq. 9-12)."""

from __future__ import annotations

import json

from necgs.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("metrics", help="compare a mesh (A) with a reference (B)")
    p.add_argument("a", help="reconstructed mesh")
    p.add_argument("b", help="reference mesh (defines the [-1,1] metric frame)")
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from necgs.io.loading import load_mesh
    from necgs.metrics import compare_meshes, sampling_floor

    if not 100 <= args.samples <= 10_000_000:
        raise ConfigError(f"--samples must be in [100, 1e7], got {args.samples}")
    a, b = load_mesh(args.a), load_mesh(args.b)
    m = compare_meshes(a, b, args.samples, args.seed)
    floor = sampling_floor(b, args.samples, args.seed)
    if args.json:
        print(json.dumps({"metrics": m.to_dict(), "floor": floor.to_dict()}))
        return 0
    print(f"{'':8s}{'CD':>10s}{'NC':>8s}{'F1@0.005':>10s}{'F1@0.01':>9s}")
    for label, x in (("A vs B", m), ("floor", floor)):
        print(f"{label:8s}{x.cd:10.3e}{x.nc:8.4f}{x.f1_005:10.4f}{x.f1_01:9.4f}")
    return 0
