"""Point-cloud coding + screened Poisson reconstruction (the paper's G-PCC/V-PCC/PCGCv2 family).

Encoder: area-weighted surface samples, coded by Draco's point-cloud mode (a real
point-cloud coder: kd-tree position coding). Decoder: normals estimated and oriented
from the decoded points (open3d), screened Poisson reconstruction (open3d, depth 8),
low-density vertices trimmed. Normals are not transmitted: estimating them costs no bits.

MPEG's reference encoders run through :mod:`necgs.baselines.mpeg` when installed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from necgs.baselines.base import Codec, ProgressFn, register_codec, report_progress
from necgs.baselines.draco import load_dracopy
from necgs.errors import CorruptArchiveError, DependencyError, StopCheck, stop_if_asked
from necgs.io.mesh import Mesh
from necgs.metrics import sample_surface


def _open3d():
    try:
        # optional/heavy, imported when this codec first runs (listing codecs stays light)
        import open3d as o3d
    except ImportError as exc:
        raise DependencyError(f"open3d is needed for Poisson reconstruction ({exc})") from None
    return o3d


def poisson_mesh(points: np.ndarray, depth: int = 8, trim_quantile: float = 0.02, name: str = "") -> Mesh:
    """Screened Poisson surface of a point cloud (normals estimated and oriented here).

    A cloud that has no surface to give (all points in one plane, as a coarse octree leaves of a
    flat part) yields an empty mesh, which the metrics count as an empty shape, rather than an
    error that would lose the codec's whole setting.

    Args:
        points: (P, 3) points.
    """
    o3d = _open3d()
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    extent = float(np.ptp(points, axis=0).max()) if len(points) else 0.0
    if len(points) < 4 or extent == 0.0:
        return Mesh.empty(name)
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=0.05 * extent, max_nn=30))
    try:
        pcd.orient_normals_consistent_tangent_plane(12)
    except RuntimeError as exc:
        if not str(exc).startswith("QH"):  # only Qhull's refusal of a degenerate (flat) cloud
            raise
        return Mesh.empty(name)
    center = points.mean(0)
    normals = np.asarray(pcd.normals)
    if np.mean(np.einsum("ij,ij->i", points - center, normals)) < 0:  # point outward overall
        pcd.normals = o3d.utility.Vector3dVector(-normals)
    mesh, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=depth, linear_fit=True)
    density = np.asarray(density)
    if density.size and trim_quantile > 0:
        mesh.remove_vertices_by_mask(density < np.quantile(density, trim_quantile))
    bbox = pcd.get_axis_aligned_bounding_box()
    mesh = mesh.crop(bbox.scale(1.05, bbox.get_center()))
    return Mesh(np.asarray(mesh.vertices), np.asarray(mesh.triangles), name)


@register_codec
class PointCloudPoissonCodec(Codec):
    """Surface samples -> Draco point cloud -> screened Poisson."""

    name = "pointcloud-spsr"
    label = "Point cloud (Draco) + SPSR"
    knob = "points"

    def available(self) -> tuple[bool, str]:
        try:
            load_dracopy()
            _open3d()
        except DependencyError as exc:
            return False, str(exc)
        return True, ""

    def sweep(self) -> list[dict]:
        return [{"points": n, "bits": b} for n, b in ((10000, 10), (5000, 10), (2500, 9), (1200, 9))]

    def encode(
        self,
        meshes: Sequence[Mesh],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[bytes]:
        out = []
        for i, m in enumerate(meshes):
            stop_if_asked(cancel)
            pts, _ = sample_surface(m, int(setting["points"]), seed=i)
            out.append(
                load_dracopy().encode(
                    pts.astype(np.float32), quantization_bits=int(setting["bits"]), compression_level=10
                )
            )
            report_progress(progress, "encode", i, len(meshes))
        return out

    def decode(
        self,
        blobs: Sequence[bytes],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[Mesh]:
        out = []
        for i, b in enumerate(blobs):
            stop_if_asked(cancel)
            try:
                pts = np.asarray(load_dracopy().decode(b).points, dtype=np.float64)
            except Exception as exc:
                raise CorruptArchiveError(f"point stream {i} is corrupt ({exc})") from None
            out.append(poisson_mesh(pts, name=f"shape{i}"))
            report_progress(progress, "decode", i, len(blobs))
        return out

    def setting_label(self, setting: dict) -> str:
        return f"{setting['points']} pts q{setting['bits']}"
