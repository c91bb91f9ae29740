"""``necgs view ORIGINAL DECODED [-o figure.png]``: original vs decoded with error colours.

With a display and no ``-o``, opens an interactive polyscope window; otherwise renders the
same comparison off-screen (polyscope's EGL backend) to a PNG.
"""

from __future__ import annotations

import os

from necgs.errors import NecgsError


def register(sub) -> None:
    p = sub.add_parser("view", help="compare an original and a decoded mesh in polyscope (or render a PNG)")
    p.add_argument("original")
    p.add_argument("decoded")
    p.add_argument("-o", "--output", help="write a PNG instead of opening a window")
    p.set_defaults(func=run)


def run(args) -> int:
    from necgs.io.loading import load_mesh
    from necgs.visualize import render_comparison_png, vertex_errors

    original, decoded = load_mesh(args.original), load_mesh(args.decoded)
    if args.output or not os.environ.get("DISPLAY"):
        out = args.output or "necgs_view.png"
        render_comparison_png(original, decoded, out)
        print(f"wrote {out}")
        return 0
    try:
        # imported when the command runs: keeps torch and trimesh off `necgs --help`
        import polyscope as ps
    except ImportError:
        raise NecgsError("polyscope is not installed (pip install polyscope)") from None
    ps.init()
    ps.register_surface_mesh("original", original.vertices, original.faces)
    m = ps.register_surface_mesh("decoded", decoded.vertices, decoded.faces)
    m.add_scalar_quantity("distance to original", vertex_errors(decoded, original), enabled=True)
    ps.show()
    return 0
