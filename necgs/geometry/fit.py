"""TSDF-Def fitting (paper Algorithm 1) and the on-disk cache of fitted volumes.

Start from the TSDF with zero deformation and optimize the 4-channel volume with Adam
so that DMC(V) matches the mesh. The paper's error renders depth and silhouettes
(nvdiffrast, CUDA only: :mod:`necgs.geometry.render_loss`). The CPU default
(``backend="points"``) needs no rasterizer: a two-sided point distance between samples
drawn on DMC(V) (differentiable barycentric sampling) and samples of the target mesh,
point-to-plane towards the target, with KD-tree nearest-neighbour *indices* and
differentiable distances.

Only the band of nodes near the surface is optimized (:func:`optimize_volume`): a node gets a
gradient only as an end of an edge that the surface crosses, and Adam cannot move a value by
more than :func:`adam_travel` over the whole schedule, so the surface cannot reach a node more
than :func:`band_margin` nodes outside the nodes that are not truncated. The band's fit is the
dense fit (every K^3 node, the paper's loop, ``dense=True``) to float rounding, at the band's
cost, and shares its cache (measurements: benchmarks/README.md, "Fitting only near the surface").

The cache holds each volume as blocks (:mod:`necgs.geometry.block_volume`: the band's 8^3 blocks in
full, every other block one value) and :func:`fit_volumes` maps them from it, so a set's volumes
cost what their bands cost rather than N x 4 x K^3 floats; a dense ``.npy`` entry from before is
converted once (the same bits).
"""

from __future__ import annotations

import hashlib
import math
import resource
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
from necgs.geometry.block_volume import BlockVolume, VolumeSet
from necgs.geometry.dmc import Band, band_marching_cubes, deformable_marching_cubes
from necgs.geometry.render_loss import rendering_error
from necgs.geometry.tsdf import band_nodes, tsdf_volume, voxel_size
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
    vertices: np.ndarray, faces: np.ndarray, cfg: FitConfig, cancel: StopCheck | None = None, dense: bool = False
) -> torch.Tensor:
    """Fit one TSDF-Def volume to a mesh given in the grid frame.

    Args:
        vertices: (V, 3) mesh vertices in the grid frame.
        faces: (F, 3) triangles.
        cfg: Settings (validated).
        cancel: Called before every iteration; True stops with :class:`necgs.errors.Cancelled`.
        dense: Optimize every node (the paper's loop) instead of the band; the same volume to
            float rounding at a K^3 cost (:func:`optimize_volume`).

    Returns:
        (4, K, K, K) float32 CPU tensor, all channels in [-1, 1].
    """
    K = cfg.resolution
    tsdf0 = torch.from_numpy(tsdf_volume(vertices, faces, K, cfg.truncation_voxels, cfg.thin_voxels))
    if cfg.backend == "none" or cfg.iterations == 0:
        return torch.cat([tsdf0[None], torch.zeros((3, K, K, K))])
    if cfg.backend == "nvdiffrast":
        error = rendering_error(vertices, faces, cfg.seed)
        return optimize_volume(tsdf0, cfg, error, torch.device("cuda"), cancel, dense)
    device = resolve_device(cfg.device)
    return optimize_volume(tsdf0, cfg, points_error(vertices, faces, cfg, device), device, cancel, dense)


#: reconstruction error of a DMC mesh: (vertices (V,3), faces (F,3)) -> scalar tensor
ReconstructionError = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


#: Adam's decay rates of the fitting loop (torch's defaults); :func:`adam_travel` bounds its steps with them.
BETAS = (0.9, 0.999)


def adam_travel(cfg: FitConfig, betas: tuple[float, float] = BETAS) -> float:
    """An upper bound on how far the fitting loop's Adam can move one value, whatever its gradients.

    At step t, with first and second moments m_t, v_t gathered since the value's first gradient,
    Cauchy-Schwarz gives |m_t| <= (1 - b1) / sqrt(1 - b2) * sqrt(sum_j (b1^2 / b2)^j) * sqrt(v_t),
    so one step moves it by at most lr_t * that factor * sqrt(1 - b2^t) / (1 - b1^t) (bias
    corrections; eps only shrinks it). The bound is the sum over the schedule lr_t = lr * decay^t.

    Args:
        cfg: Iterations, learning rate and its decay.
        betas: Adam's decay rates.

    Returns:
        The bound, in TSDF units (a truncated node sits at +-1, the surface at 0).
    """
    b1, b2 = betas
    decay = cfg.lr_decay ** (1.0 / max(cfg.iterations, 1))
    ratio, terms, travel = b1 * b1 / b2, 0.0, 0.0
    for k in range(cfg.iterations):
        terms += ratio**k
        t = k + 1
        step = (1 - b1) / math.sqrt(1 - b2) * math.sqrt(terms) * math.sqrt(1 - b2**t) / (1 - b1**t)
        travel += cfg.lr * decay**k * step
    return travel


def band_margin(cfg: FitConfig) -> int:
    """Nodes of margin around the untruncated nodes that keep the band's fit equal to the dense fit.

    A node that is not a seed of the band (:func:`necgs.geometry.tsdf.band_nodes`) starts at +-1
    with the sign of all its neighbours, and it only gets a gradient once a neighbour has crossed
    0, which takes a travel of at least 1 from that neighbour's first gradient. So the surface
    reaches a node ``d`` nodes out only after a travel of ``d``; a margin above
    :func:`adam_travel` keeps it off every node outside the band.
    """
    return math.floor(adam_travel(cfg)) + 1


def optimize_volume(
    tsdf0: torch.Tensor,
    cfg: FitConfig,
    error: ReconstructionError,
    device: torch.device,
    cancel: StopCheck | None = None,
    dense: bool = False,
) -> torch.Tensor:
    """Algorithm 1's loop: Adam on the TSDF and the (tanh-bounded) deformations.

    Args:
        tsdf0: (K, K, K) initial TSDF; deformations start at zero.
        cfg: Iterations, learning rate and decay, deformation penalty.
        error: The reconstruction error of DMC(V) against the target mesh.
        device: Where to optimize.
        cancel: Called before every iteration; True stops with :class:`necgs.errors.Cancelled`.
        dense: Optimize all K^3 nodes (the paper's loop) instead of the band of
            :func:`band_margin` nodes around the surface; every node outside the band keeps its
            +-1 and no deformation in either, so both give the same volume to float rounding.

    Returns:
        (4, K, K, K) float32 CPU volume.
    """
    K = cfg.resolution
    if dense:
        tsdf, raw, band = tsdf0.clone().to(device), torch.zeros((K, K, K, 3), device=device), None
    else:
        band = Band.of(band_nodes(tsdf0.to(device), band_margin(cfg)))
        tsdf = tsdf0.to(device).reshape(-1)[band.nodes]
        raw = torch.zeros((band.nodes.numel(), 3), device=device)
    tsdf, raw = _adam_loop(tsdf.requires_grad_(), raw.requires_grad_(), band, cfg, error, cancel)
    if band is None:
        return torch.cat([tsdf[None], torch.tanh(raw).permute(3, 0, 1, 2)]).float().cpu()
    volume = torch.cat([tsdf0[None].float(), torch.zeros((3, K, K, K))]).reshape(4, -1)
    nodes = band.nodes.cpu()
    volume[0, nodes] = tsdf.float().cpu()
    volume[1:, nodes] = torch.tanh(raw).float().cpu().T
    return volume.reshape(4, K, K, K)


def _adam_loop(
    tsdf: torch.Tensor,
    raw: torch.Tensor,
    band: Band | None,
    cfg: FitConfig,
    error: ReconstructionError,
    cancel: StopCheck | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimize the TSDF values and raw deformations (of the band's nodes, or of all for ``band=None``)."""
    h, count = voxel_size(cfg.resolution), 3 * cfg.resolution**3
    opt = Adam([{"params": [tsdf, raw], "lr": cfg.lr}], betas=BETAS)
    decay = cfg.lr_decay ** (1.0 / max(cfg.iterations, 1))
    for k in range(cfg.iterations):
        stop_if_asked(cancel)
        deform = torch.tanh(raw)
        if band is None:
            v, f = deformable_marching_cubes(tsdf, 0.5 * h * deform)
        else:
            v, f = band_marching_cubes(tsdf, 0.5 * h * deform, band)
        if f.shape[0] == 0:
            break
        # the mean over all K^3 nodes in both: a node outside the band has no deformation
        loss = error(v, f) + cfg.deform_weight * deform.abs().sum() / count
        opt.zero_grad()
        loss.backward()
        opt.param_groups[0]["lr"] = cfg.lr * decay**k
        opt.step()
        with torch.no_grad():
            tsdf.clamp_(-1.0, 1.0)
    return tsdf.detach(), raw.detach()


def points_error(vertices: np.ndarray, faces: np.ndarray, cfg: FitConfig, device: torch.device) -> ReconstructionError:
    """The CPU backend's reconstruction error against a mesh in the grid frame (see the module).

    Args:
        vertices: (V, 3) mesh vertices in the grid frame.
        faces: (F, 3) triangles.
        cfg: Samples per surface and the seed of their sampling.
        device: Where the DMC mesh lives.

    Returns:
        The error of a DMC mesh; each call draws new samples on it from one seeded generator.
    """
    pts, nrm = sample_surface(Mesh(vertices, faces), cfg.samples, cfg.seed)
    target = torch.as_tensor(pts, dtype=torch.float32, device=device)
    target_normals = torch.as_tensor(nrm, dtype=torch.float32, device=device)
    from scipy.spatial import cKDTree  # imported when used: scipy is slow to import and most commands never fit

    tree = cKDTree(pts)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    def error(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return _points_loss(_sample_dmc(v, f, cfg.samples, gen), target, target_normals, tree)

    return error


@dataclass
class FittedSet:
    """Fitted volumes of a set of meshes.

    Attributes:
        volumes: (N, 4, K, K, K) as blocks: the band's blocks mapped from the cache (in memory
            when fitted without it), every other block one value
            (:class:`necgs.geometry.block_volume.VolumeSet`; ``volumes[i]`` is a dense volume).
        transforms: Original -> grid frame, one per shape.
        names: Shape names.
        seconds: Fitting time of each shape (0 for a cache hit).
    """

    volumes: VolumeSet
    transforms: list[Transform]
    names: list[str]
    seconds: list[float] = field(default_factory=list)


def mesh_digest(mesh: Mesh) -> str:
    """sha256 of a mesh's geometry (vertices and faces), independent of its name."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes())
    return h.hexdigest()


#: The cache's file of a volume (:mod:`necgs.geometry.block_volume`); ``.npy`` was the dense form before it.
CACHE_SUFFIX = ".ncgv"


def _cache_path(mesh: Mesh, cfg: FitConfig) -> Path:
    return cache_dir("volumes", cfg.cache_key()) / f"{mesh_digest(mesh)}{CACHE_SUFFIX}"


def _cached(path: Path) -> BlockVolume | None:
    """The cached volume at ``path``, converting a dense ``.npy`` entry written before the block form
    (the same bits; the old file is removed); None when there is none or it is damaged (removed)."""
    if path.is_file():
        try:
            return BlockVolume.open(path)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a damaged cache entry is refitted
    dense = path.with_suffix(".npy")
    if not dense.is_file():
        return None
    try:
        BlockVolume.from_dense(np.load(dense, mmap_mode="r", allow_pickle=False)).save(path)
        volume = BlockVolume.open(path)
    except (ValueError, OSError):
        path.unlink(missing_ok=True)
        volume = None
    dense.unlink(missing_ok=True)
    return volume


def stored_volume(
    mesh: Mesh, cfg: FitConfig, cache: bool = True, cancel: StopCheck | None = None
) -> tuple[BlockVolume, Transform, float]:
    """:func:`fitted_volume` as blocks: with ``cache``, the band's blocks are mapped from the cache's
    file rather than held in memory."""
    stop_if_asked(cancel)
    transform = grid_transform(mesh, cfg)
    path = _cache_path(mesh, cfg)
    if cache and (volume := _cached(path)) is not None:
        return volume, transform, 0.0
    start = time.perf_counter()
    volume = BlockVolume.from_dense(fit_volume(transform.apply(mesh.vertices), mesh.faces, cfg, cancel))
    seconds = time.perf_counter() - start
    if cache:
        volume.save(path)
        volume = BlockVolume.open(path)
    return volume, transform, seconds


def fitted_volume(
    mesh: Mesh, cfg: FitConfig, cache: bool = True, cancel: StopCheck | None = None
) -> tuple[torch.Tensor, Transform, float]:
    """Volume (4,K,K,K), grid transform and seconds spent for one mesh (cached on disk; ``cancel``
    as in :func:`fit_volume`, also asked before the mesh is started)."""
    volume, transform, seconds = stored_volume(mesh, cfg, cache, cancel)
    return volume.dense(), transform, seconds


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
    if cache:
        _allow_open_files(len(mine))
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
            futures = {pool.submit(stored_volume, meshes[i], cfg, cache, cancel): i for i in mine}
            try:
                for future in as_completed(futures):
                    done_one(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # the running shape stops at its next check
                raise
    else:
        for i in mine:
            done_one(i, stored_volume(meshes[i], cfg, cache, cancel))
    if bar is not None:
        bar.close()
    volumes = [results[i][0] for i in mine]
    transforms = [results[i][1] for i in mine]
    seconds = [results[i][2] for i in mine]
    return FittedSet(VolumeSet(volumes, cfg.resolution), transforms, [meshes[i].name for i in mine], seconds)


def _allow_open_files(volumes: int) -> None:
    """Raise this process's soft limit of open files (up to the hard one) so ``volumes`` mapped cache
    files fit beside what else it opens: every mapping keeps a descriptor of its file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = volumes + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
