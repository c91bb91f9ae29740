"""Distortion and rate: the paper's geometry metrics (appendix C.1, Eq. 9-12) and compression ratios.

Both meshes are sampled (area-weighted, ``n_samples`` points each, with the normal of
the face each point lies on) in the ground truth's metric frame: its bounding box
centred and scaled so the longest side spans [-1, 1]. The reconstruction and the
ground truth are sampled with different seeds, so comparing a mesh with itself gives
the metric's sampling floor rather than zero.

The rate is honest: the ratio is always original bytes / compressed bytes with the
compressed size being the whole output (archive header included). The original is
reported two ways: the files as given, and the canonical binary PLY
(:mod:`necgs.io.ply`) of the same meshes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from necgs.io.mesh import Mesh, fit_transform
from necgs.io.ply import binary_ply_bytes

if TYPE_CHECKING:
    from scipy.spatial import cKDTree

#: F-score distance thresholds of the paper, in the [-1, 1] metric frame.
F_THRESHOLDS = (0.005, 0.01)


@dataclass(frozen=True)
class MeshMetrics:
    """Distortion of a reconstruction against its ground truth.

    Attributes:
        cd: Chamfer distance, Eq. 9 (lower is better). ``inf`` for an empty reconstruction.
        nc: Normal consistency, Eq. 10, in [0, 1] (higher is better).
        f1_005: F-score at distance 0.005, Eq. 11-12, in [0, 1].
        f1_01: F-score at distance 0.01, in [0, 1].
    """

    cd: float
    nc: float
    f1_005: float
    f1_01: float

    def to_dict(self) -> dict[str, float]:
        """Plain ``dict`` of the four metrics."""
        return asdict(self)


#: What an empty reconstruction scores: infinitely far, no matching normals or points.
EMPTY_METRICS = MeshMetrics(cd=float("inf"), nc=0.0, f1_005=0.0, f1_01=0.0)


def sample_surface(mesh: Mesh, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform samples of a mesh surface with face normals.

    Args:
        mesh: The mesh to sample; must have at least one face of positive area.
        n: Number of samples.
        seed: Seed of the NumPy generator.

    Returns:
        points (n, 3) float64 and unit normals (n, 3) float64 of the faces sampled.

    Raises:
        ValueError: If the mesh has no face of positive area.
    """
    tri = mesh.vertices[mesh.faces]  # (F, 3, 3)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    total = double_area.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"mesh {mesh.name!r} has no face of positive area to sample")
    rng = np.random.default_rng(seed)
    face = rng.choice(len(double_area), size=n, p=double_area / total)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    t = tri[face]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    normals = cross[face] / double_area[face, None]
    return points, normals


def _has_area(mesh: Mesh) -> bool:
    if mesh.n_faces == 0:
        return False
    tri = mesh.vertices[mesh.faces]
    return bool(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum() > 0)


def _one_way(src_pts, src_nrm, tree: cKDTree, dst_nrm) -> tuple[np.ndarray, np.ndarray]:
    dist, idx = tree.query(src_pts, k=1, workers=-1)
    return dist, np.abs(np.einsum("ij,ij->i", src_nrm, dst_nrm[idx]))


def compare_meshes(rec: Mesh, gt: Mesh, n_samples: int = 100_000, seed: int = 0) -> MeshMetrics:
    """CD, NC and F-scores of ``rec`` against ``gt`` (both in original coordinates).

    Args:
        rec: The reconstructed (decoded) mesh.
        gt: The ground-truth mesh; defines the metric frame.
        n_samples: Points sampled on each surface (paper: 1e5).
        seed: ``rec`` is sampled with ``seed``, ``gt`` with ``seed + 1``.

    Returns:
        The :class:`MeshMetrics`; :data:`EMPTY_METRICS` if ``rec`` has no surface.
    """
    if not _has_area(rec):
        return EMPTY_METRICS
    from scipy.spatial import cKDTree  # imported when used: scipy is slow to import and most commands never compare

    frame = fit_transform(gt.vertices, 1.0)
    p_rec, n_rec = sample_surface(rec.transformed(frame), n_samples, seed)
    p_gt, n_gt = sample_surface(gt.transformed(frame), n_samples, seed + 1)
    d_rg, c_rg = _one_way(p_rec, n_rec, cKDTree(p_gt), n_gt)
    d_gr, c_gr = _one_way(p_gt, n_gt, cKDTree(p_rec), n_rec)
    cd = 0.5 * (d_rg.mean() + d_gr.mean())
    nc = 0.5 * (c_rg.mean() + c_gr.mean())
    f = [_f_score(d_rg, d_gr, eps) for eps in F_THRESHOLDS]
    return MeshMetrics(float(cd), float(nc), f[0], f[1])


def _f_score(d_rg: np.ndarray, d_gr: np.ndarray, eps: float) -> float:
    precision = float((d_rg < eps).mean())
    recall = float((d_gr < eps).mean())
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def sampling_floor(gt: Mesh, n_samples: int = 100_000, seed: int = 0) -> MeshMetrics:
    """The metric's floor: ``gt`` against itself with two independent samplings."""
    return compare_meshes(gt, gt, n_samples=n_samples, seed=seed)


def mean_metrics(items: Sequence[MeshMetrics]) -> MeshMetrics:
    """Mean of each metric over shapes (``inf`` CD propagates)."""
    if not items:
        raise ValueError("mean_metrics needs at least one MeshMetrics")
    arr = np.array([[m.cd, m.nc, m.f1_005, m.f1_01] for m in items], dtype=np.float64)
    return MeshMetrics(*(float(x) for x in arr.mean(axis=0)))


@dataclass(frozen=True)
class RateReport:
    """Rate of a compressed set.

    Attributes:
        compressed_bytes: Size of everything the decoder needs.
        source_bytes: Size of the input files as given.
        ply_bytes: Size of the same meshes as canonical binary PLY.
        n_vertices: Total number of original vertices.
        ratio_files: source_bytes / compressed_bytes.
        ratio_ply: ply_bytes / compressed_bytes.
        bits_per_vertex: 8 * compressed_bytes / n_vertices.
    """

    compressed_bytes: int
    source_bytes: int
    ply_bytes: int
    n_vertices: int
    ratio_files: float
    ratio_ply: float
    bits_per_vertex: float

    def to_dict(self) -> dict:
        """Plain ``dict`` of the fields."""
        return asdict(self)


def rate_report(compressed_bytes: int, source_bytes: int, meshes: Sequence[Mesh]) -> RateReport:
    """Build a :class:`RateReport` for ``meshes`` compressed into ``compressed_bytes``."""
    if compressed_bytes <= 0:
        raise ValueError("compressed size must be positive")
    ply = sum(binary_ply_bytes(m) for m in meshes)
    n_vertices = sum(m.n_vertices for m in meshes)
    return RateReport(
        compressed_bytes=int(compressed_bytes),
        source_bytes=int(source_bytes),
        ply_bytes=int(ply),
        n_vertices=int(n_vertices),
        ratio_files=source_bytes / compressed_bytes,
        ratio_ply=ply / compressed_bytes,
        bits_per_vertex=8.0 * compressed_bytes / max(n_vertices, 1),
    )
