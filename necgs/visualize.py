"""Error-coloured meshes for the 3D viewers, a colour legend, and the polyscope reviewer figure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.spatial import cKDTree

from necgs.errors import DependencyError
from necgs.io.mesh import Mesh, fit_transform
from necgs.metrics import sample_surface

#: Colour ramp (distance 0 -> vmax): blue, cyan, green, yellow, red.
_RAMP = np.array([[49, 54, 149], [69, 170, 209], [102, 189, 99], [254, 224, 99], [215, 48, 39]], dtype=np.float64)


def colormap(t: np.ndarray) -> np.ndarray:
    """(N,) values in [0, 1] -> (N, 4) uint8 RGBA on the ramp."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0, 1) * (len(_RAMP) - 1)
    lo = np.floor(t).astype(int).clip(0, len(_RAMP) - 2)
    frac = (t - lo)[:, None]
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    return np.concatenate([rgb, np.full((len(t), 1), 255.0)], 1).astype(np.uint8)


def vertex_errors(rec: Mesh, gt: Mesh, samples: int = 100_000) -> np.ndarray:
    """(V,) distance of each ``rec`` vertex to the ``gt`` surface, in gt's [-1, 1] metric frame."""
    frame = fit_transform(gt.vertices, 1.0)
    pts, _ = sample_surface(gt.transformed(frame), samples, seed=0)
    d, _ = cKDTree(pts).query(frame.apply(rec.vertices), workers=-1)
    return d


def error_colored_glb(rec: Mesh, gt: Mesh, path: str | Path, vmax: float | None = None) -> tuple[Path, float]:
    """Write ``rec`` as GLB with per-vertex colours showing its distance to ``gt``.

    Returns:
        The path and the distance mapped to the top colour (``vmax``).
    """
    import trimesh  # imported when used: trimesh is slow to import and most commands never need it

    err = vertex_errors(rec, gt) if rec.n_vertices else np.zeros(0)
    if vmax is None:
        vmax = float(max(np.percentile(err, 98), 1e-4)) if err.size else 1e-2
    mesh = trimesh.Trimesh(rec.vertices, rec.faces, vertex_colors=colormap(err / vmax), process=False)
    path = Path(path)
    mesh.export(path)
    return path, vmax


def plain_glb(mesh: Mesh, path: str | Path) -> Path:
    """Write a mesh as a light-grey GLB."""
    import trimesh  # imported when used: trimesh is slow to import and most commands never need it

    colors = np.tile(np.array([[200, 200, 205, 255]], np.uint8), (mesh.n_vertices, 1))
    trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colors, process=False).export(Path(path))
    return Path(path)


def legend_html(vmax: float) -> str:
    """An HTML colour bar for distances 0 .. vmax (metric frame units)."""
    stops = ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in _RAMP)
    return (
        f"<div style='font-size:12px'>distance to the original surface (shape scaled to [-1,1])"
        f"<div style='height:12px;background:linear-gradient(to right,{stops});border-radius:3px'></div>"
        f"<div style='display:flex;justify-content:space-between'><span>0</span><span>{vmax / 2:.4f}</span>"
        f"<span>&ge; {vmax:.4f}</span></div></div>"
    )


def render_comparison_png(
    original: Mesh, decoded: Mesh, path: str | Path, title: str = "", vmax: float | None = None
) -> Path:
    """Polyscope rendering of original (left) and error-coloured decoded (right) to PNG, both seen
    from the same direction (an orthographic camera).

    The decoded mesh is coloured with the same ramp and scale as the page's GLB viewers
    (:func:`colormap`, distance / ``vmax``); the image gets a title, a caption over each
    mesh and the colour bar. Uses a display when there is one, else polyscope's EGL
    backend (Mesa, off-screen).

    Args:
        original: The ground truth.
        decoded: The reconstruction.
        path: The PNG to write.
        title: A line above the rendering.
        vmax: Distance mapped to the top colour (default: the 98th percentile, as the GLB).
    """
    try:  # imported when used: polyscope is an optional extra (necgs[view]) and opens a window
        import polyscope as ps
    except ImportError:
        raise DependencyError("polyscope is not installed (pip install polyscope)") from None
    backend = "" if os.environ.get("DISPLAY") else "openGL3_egl"
    if not getattr(render_comparison_png, "_initialized", False):
        ps.set_use_prefs_file(False)  # no imgui.ini / .polyscope.ini in the working folder
        ps.init(backend)
        ps.set_ground_plane_mode("none")
        # one view direction for both meshes: a perspective camera sees the two side by side from
        # two different angles
        ps.set_view_projection_mode("orthographic")
        render_comparison_png._initialized = True  # type: ignore[attr-defined]
    ps.remove_all_structures()
    frame = fit_transform(original.vertices, 1.0)
    a, b = original.transformed(frame), decoded.transformed(frame)
    shift = np.array([2.3, 0, 0])
    ps.register_surface_mesh("original", a.vertices - shift / 2, a.faces, color=(0.8, 0.8, 0.82))
    err = vertex_errors(decoded, original)
    if vmax is None:
        vmax = float(max(np.percentile(err, 98), 1e-4))
    m = ps.register_surface_mesh("decoded", b.vertices + shift / 2, b.faces)
    m.add_color_quantity("error", colormap(err / vmax)[:, :3] / 255.0, defined_on="vertices", enabled=True)
    ps.reset_camera_to_home_view()
    path = Path(path)
    ps.screenshot(str(path), transparent_bg=False)
    annotate_comparison(path, title, ("original", "decoded (distance to the original)"), vmax)
    return path


def annotate_comparison(path: Path, title: str, captions: tuple[str, str], vmax: float) -> None:
    """Add a title, a caption over each half and the colour bar (0 .. vmax) to a rendering."""
    shot = Image.open(path).convert("RGB")
    w, h = shot.size
    font = ImageFont.load_default(size=max(14, w // 70))
    small = ImageFont.load_default(size=max(12, w // 90))
    top, bottom = 3 * font.size, 4 * small.size + 24
    canvas = Image.new("RGB", (w, h + top + bottom), "white")
    canvas.paste(shot, (0, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((w // 2, 4), title, fill="black", font=font, anchor="ma")
    for k, caption in enumerate(captions):
        draw.text((w // 4 + k * w // 2, font.size + 10), caption, fill="black", font=small, anchor="ma")
    x0, x1, y0 = w // 4, 3 * w // 4, h + top + 8
    bar = colormap(np.linspace(0, 1, x1 - x0))[:, :3]
    for i, rgb in enumerate(bar):
        draw.line([(x0 + i, y0), (x0 + i, y0 + small.size)], fill=tuple(int(c) for c in rgb))
    for frac, text in ((0.0, "0"), (0.5, f"{vmax / 2:.4f}"), (1.0, f">= {vmax:.4f}")):
        draw.text((x0 + frac * (x1 - x0), y0 + small.size + 4), text, fill="black", font=small, anchor="ma")
    draw.text(
        (w // 2, y0 + 2 * small.size + 10),
        "distance to the original surface (shape scaled to [-1, 1])",
        fill="black",
        font=small,
        anchor="ma",
    )
    canvas.save(path)
