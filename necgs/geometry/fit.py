"""TSDF-Def fitting (paper Algorithm 1) and the on-disk cache of fitted volumes.

Start from the TSDF with zero deformation and optimize the 4-channel volume with Adam
so that DMC(V) matches the mesh. The paper's error renders depth and silhouettes
(nvdiffrast, CUDA only: :mod:`necgs.geometry.render_loss`). The CPU default
(``backend="points"``) needs no rasterizer: a two-sided point distance between samples
drawn on DMC(V) (differentiable barycentric sampling) and samples of the target mesh,
point-to-plane towards the target, with KD-tree nearest-neighbour *indices* and
differentiable distances.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from necgs.config import FitConfig
from necgs.device import resolve_device
from necgs.errors import StopCheck, stop_if_asked
from necgs.geometry.dmc import deformable_marching_cubes
from necgs.geometry.render_loss import rendering_error
from necgs.geometry.tsdf import tsdf_volume, voxel_size
from necgs.io.mesh import Mesh, Transform, fit_transform
from necgs.metrics import sample_surface
from necgs.optim import Adam
from necgs.paths import cache_dir

if TYPE_CHECKING:
    from scipy.spatial import cKDTree


def grid_transform(mesh: Mesh, cfg: FitConfig) -> Transform:
    """Transform from the mesh's original coordinates into the grid frame."""
    return fit_transform(mesh.vertices, cfg.fill)


def _sample_dmc(vertices: torch.Tensor, faces: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) differentiable area-weighted samples on a (V,3)/(F,3) mesh."""
    tri = vertices[faces]  # (F, 3, 3)
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1).detach()
    face = torch.multinomial(area + 1e-12, n, replacement=True, generator=gen)
    uv = torch.rand((n, 2), generator=gen, dtype=vertices.dtype)
    flip = uv.sum(1) > 1
    uv[flip] = 1 - uv[flip]
    t = tri[face]
    return t[:, 0] + uv[:, :1] * (t[:, 1] - t[:, 0]) + uv[:, 1:] * (t[:, 2] - t[:, 0])


def _points_loss(
    pred: torch.Tensor, target: torch.Tensor, target_normals: torch.Tensor, target_tree: cKDTree
) -> torch.Tensor:
    """Two-sided distance between (n,3) ``pred`` samples and (m,3) target samples."""
    from scipy.spatial import cKDTree  # imported when used: scipy.spatial slows every command's start

    _, idx = target_tree.query(pred.detach().cpu().numpy(), k=1, workers=-1)
    idx = torch.as_tensor(idx, device=pred.device)
    diff = pred - target[idx]
    to_target = (diff * target_normals[idx]).sum(1).abs().mean() + 0.1 * diff.norm(dim=1).mean()
    _, back = cKDTree(pred.detach().cpu().numpy()).query(target.cpu().numpy(), k=1, workers=-1)
    to_pred = (target - pred[torch.as_tensor(back, device=pred.device)]).norm(dim=1).mean()
    return to_target + to_pred


def fit_volume(
    vertices: np.ndarray, faces: np.ndarray, cfg: FitConfig, cancel: StopCheck | None = None
) -> torch.Tensor:
    """Fit one TSDF-Def volume to a mesh given in the grid frame.

    Args:
        vertices: (V, 3) mesh vertices in the grid frame.
        faces: (F, 3) triangles.
        cfg: Settings (validated).
        cancel: Called before every iteration; True stops with :class:`necgs.errors.Cancelled`.

    Returns:
        (4, K, K, K) float32 CPU tensor, all channels in [-1, 1].
    """
    K = cfg.resolution
    tsdf0 = torch.from_numpy(tsdf_volume(vertices, faces, K, cfg.truncation_voxels, cfg.thin_voxels))
    if cfg.backend == "none" or cfg.iterations == 0:
        return torch.cat([tsdf0[None], torch.zeros((3, K, K, K))])
    if cfg.backend == "nvdiffrast":
        error = rendering_error(vertices, faces, cfg.seed)
        return optimize_volume(tsdf0, cfg, error, torch.device("cuda"), cancel)
    return _fit_points(vertices, faces, tsdf0, cfg, cancel)


#: reconstruction error of a DMC mesh: (vertices (V,3), faces (F,3)) -> scalar tensor
ReconstructionError = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def optimize_volume(
    tsdf0: torch.Tensor,
    cfg: FitConfig,
    error: ReconstructionError,
    device: torch.device,
    cancel: StopCheck | None = None,
) -> torch.Tensor:
    """Algorithm 1's loop: Adam on the TSDF and the (tanh-bounded) deformations.

    Args:
        tsdf0: (K, K, K) initial TSDF; deformations start at zero.
        cfg: Iterations, learning rate and decay, deformation penalty.
        error: The reconstruction error of DMC(V) against the target mesh.
        device: Where to optimize.
        cancel: Called before every iteration; True stops with :class:`necgs.errors.Cancelled`.

    Returns:
        (4, K, K, K) float32 CPU volume.
    """
    K, h = cfg.resolution, voxel_size(cfg.resolution)
    tsdf = tsdf0.clone().to(device).requires_grad_()
    raw = torch.zeros((K, K, K, 3), device=device, requires_grad=True)
    opt = Adam([{"params": [tsdf, raw], "lr": cfg.lr}])
    decay = cfg.lr_decay ** (1.0 / max(cfg.iterations, 1))
    for k in range(cfg.iterations):
        stop_if_asked(cancel)
        deform = torch.tanh(raw)
        v, f = deformable_marching_cubes(tsdf, 0.5 * h * deform)
        if f.shape[0] == 0:
            break
        loss = error(v, f) + cfg.deform_weight * deform.abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.param_groups[0]["lr"] = cfg.lr * decay**k
        opt.step()
        with torch.no_grad():
            tsdf.clamp_(-1.0, 1.0)
    with torch.no_grad():
        return torch.cat([tsdf[None], torch.tanh(raw).permute(3, 0, 1, 2)]).float().cpu()


def _fit_points(
    vertices: np.ndarray, faces: np.ndarray, tsdf0: torch.Tensor, cfg: FitConfig, cancel: StopCheck | None
) -> torch.Tensor:
    device = resolve_device(cfg.device)
    pts, nrm = sample_surface(Mesh(vertices, faces), cfg.samples, cfg.seed)
    target = torch.as_tensor(pts, dtype=torch.float32, device=device)
    target_normals = torch.as_tensor(nrm, dtype=torch.float32, device=device)
    from scipy.spatial import cKDTree  # imported when used: scipy is slow to import and most commands never fit

    tree = cKDTree(pts)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    def error(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return _points_loss(_sample_dmc(v, f, cfg.samples, gen), target, target_normals, tree)

    return optimize_volume(tsdf0, cfg, error, device, cancel)


@dataclass
class FittedSet:
    """Fitted volumes of a set of meshes.

    Attributes:
        volumes: (N, 4, K, K, K) float32.
        transforms: Original -> grid frame, one per shape.
        names: Shape names.
        seconds: Fitting time of each shape (0 for a cache hit).
    """

    volumes: torch.Tensor
    transforms: list[Transform]
    names: list[str]
    seconds: list[float] = field(default_factory=list)


def mesh_digest(mesh: Mesh) -> str:
    """sha256 of a mesh's geometry (vertices and faces), independent of its name."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes())
    return h.hexdigest()


def _cache_path(mesh: Mesh, cfg: FitConfig) -> Path:
    return cache_dir("volumes", cfg.cache_key()) / f"{mesh_digest(mesh)}.npy"


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


def fitted_volume(
    mesh: Mesh, cfg: FitConfig, cache: bool = True, cancel: StopCheck | None = None
) -> tuple[torch.Tensor, Transform, float]:
    """Volume (4,K,K,K), grid transform and seconds spent for one mesh (cached on disk; ``cancel``
    as in :func:`fit_volume`, also asked before the mesh is started)."""
    stop_if_asked(cancel)
    transform = grid_transform(mesh, cfg)
    path = _cache_path(mesh, cfg)
    if cache and path.is_file():
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False)), transform, 0.0
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a damaged cache entry is refitted
    start = time.perf_counter()
    volume = fit_volume(transform.apply(mesh.vertices), mesh.faces, cfg, cancel)
    seconds = time.perf_counter() - start
    if cache:
        _atomic_save(path, volume.numpy())
    return volume, transform, seconds


ProgressFn = Callable[[int, int], None]


def fit_volumes(
    meshes: Sequence[Mesh],
    cfg: FitConfig,
    *,
    cache: bool = True,
    progress: bool | ProgressFn = True,
    rank: int = 0,
    world_size: int = 1,
    workers: int | None = None,
    cancel: StopCheck | None = None,
) -> FittedSet:
    """Fit (or load from the cache) the TSDF-Def volume of every mesh.

    Args:
        meshes: Meshes in original coordinates.
        cfg: Settings.
        cache: Read and write the on-disk cache (keyed by mesh content + settings).
        progress: ``True`` for a tqdm bar (shapes done, ETA), a callback
            ``progress(done, total)``, or ``False``.
        rank: This process's rank; shapes are sharded round-robin across ranks.
        world_size: Number of ranks.
        workers: Shapes fitted at once in threads (default: 2 on the CPU when this process
            is the only rank, else 1), since ray casting, KD-tree queries and convolutions
            release the GIL and overlap. Each shape has its own seeded sampling, so the volumes
            do not depend on it (measurements: docs/ARCHITECTURE.md, 'Decisions and why',
            "Fitting in two threads").
        cancel: Called before every shape and fitting iteration; True stops with
            :class:`necgs.errors.Cancelled` (shapes not started are dropped).

    Returns:
        The :class:`FittedSet` of the shapes this rank owns (all shapes when world_size is 1).
    """
    cfg.validate()
    mine = [i for i in range(len(meshes)) if i % world_size == rank]
    if workers is None:
        workers = 2 if world_size == 1 and resolve_device(cfg.device).type == "cpu" else 1
    bar = None
    if progress is True:
        bar = tqdm(total=len(mine), desc=f"fit K={cfg.resolution}", unit="shape")
    results: dict[int, tuple] = {}

    def done_one(i: int, result: tuple) -> None:
        results[i] = result
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(len(results), len(mine))

    if workers > 1 and len(mine) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(fitted_volume, meshes[i], cfg, cache, cancel): i for i in mine}
            try:
                for future in as_completed(futures):
                    done_one(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # the running shape stops at its next check
                raise
    else:
        for i in mine:
            done_one(i, fitted_volume(meshes[i], cfg, cache, cancel))
    if bar is not None:
        bar.close()
    volumes = [results[i][0] for i in mine]
    transforms = [results[i][1] for i in mine]
    seconds = [results[i][2] for i in mine]
    K = cfg.resolution
    stacked = torch.stack(volumes) if volumes else torch.zeros((0, 4, K, K, K))
    return FittedSet(stacked, transforms, [meshes[i].name for i in mine], seconds)
