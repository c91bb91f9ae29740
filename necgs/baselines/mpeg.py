"""Adapters for MPEG's point-cloud reference software, and the PCGCv2 entry.

G-PCC (``tmc3``, MPEG's TMC13) runs in two geometry modes, each its own codec: ``gpcc``
codes the voxelized points losslessly with the octree (depth and point budget are the
knobs), ``gpcc-trisoup`` stops the octree at nodes of 2^n voxels and codes a triangle soup
per node, decoded voxelized to points (the node size is the knob). Both decode to points,
and the mesh comes from screened Poisson as in ``pointcloud-spsr``. ``tmc3`` is on no
package registry: ``scripts/build_tmc3.sh`` builds it from MPEG's source into the
checkout's ``build/tmc13/``, looked up before PATH.

V-PCC (``PccAppEncoder`` / ``PccAppDecoder``, MPEG's TMC2) runs the same way when its
binaries are on PATH; its build fetches the HM video codec from outside the package
registries, so it is not built here. PCGCv2 needs MinkowskiEngine (a CUDA build) and its
authors' trained weights, not distributed with necgs: it is listed, never run. Codecs whose
tools are missing report why and are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from necgs.baselines.base import Codec, ProgressFn, register_codec, report_progress
from necgs.baselines.pointcloud import poisson_mesh
from necgs.errors import CorruptArchiveError, DependencyError, NecgsError, StopCheck, stop_if_asked
from necgs.io.mesh import Mesh
from necgs.metrics import sample_surface
from necgs.paths import REPO_ROOT

#: Seconds one encoder or decoder call may take before the shape counts as failed.
TIMEOUT = 600

#: Folders searched for the MPEG tools before PATH (where scripts/build_tmc3.sh puts tmc3).
TOOL_DIRS: tuple[Path, ...] = (REPO_ROOT / "build" / "tmc13" / "tmc3",)

#: Decoded points handed to screened Poisson at most (a random subset beyond this): trisoup
#: decodes hundreds of thousands of voxels, and normal orientation grows faster than linearly.
MAX_POISSON_POINTS = 30_000

#: Per-shape header: origin (3) and scale of the voxel grid, little-endian float32.
_HEADER = np.dtype("<f4")
_HEADER_BYTES = 4 * _HEADER.itemsize


def find_tool(name: str) -> str | None:
    """Path of an executable ``name``: first in :data:`TOOL_DIRS`, then on PATH; None if absent."""
    for folder in TOOL_DIRS:
        path = folder / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


def write_points_ply(path: Path, points: np.ndarray) -> None:
    """Binary little-endian PLY of integer (voxelized) points (N, 3), as the MPEG tools read them."""
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    path.write_bytes(header.encode() + np.asarray(points, dtype="<f4").tobytes())


def read_points_ply(path: Path) -> np.ndarray:
    """Points (N, 3) of a PLY written by an MPEG decoder (ASCII or binary, via trimesh)."""
    # optional/heavy, imported when this codec first runs (listing codecs stays light)
    import trimesh

    try:
        cloud = trimesh.load(path, process=False)
        return np.asarray(cloud.vertices, dtype=np.float64).reshape(-1, 3)
    except Exception as exc:
        raise CorruptArchiveError(f"{path}: decoded point cloud is unreadable ({exc})") from None


def voxelize(mesh: Mesh, grid: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Voxelized surface samples of a mesh: the longest side spans ``grid`` voxels.

    Args:
        mesh: The shape.
        grid: Voxels across the longest side of the bounding box (coordinates 0 .. grid - 1).
        n: Surface samples taken before merging those in one voxel.
        seed: Sampling seed.

    Returns:
        Unique integer points (M, 3) with M <= n, the origin (3,) and the scale (voxels per unit)
        mapping them back: ``points / scale + origin``; origin and scale are float32 values, as stored.
    """
    pts, _ = sample_surface(mesh, n, seed)
    lo = pts.min(0).astype(np.float32).astype(np.float64)
    scale = float(np.float32((grid - 1) / max(float(np.ptp(pts, axis=0).max()), 1e-12)))
    vox = np.unique(np.clip(np.round((pts - lo) * scale), 0, grid - 1).astype(np.int64), axis=0)
    return vox, lo, scale


def _thousands(n: int) -> str:
    """20000 -> "20k" (setting labels)."""
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


class _ExternalPointCodec(Codec):
    """Shared plumbing: a per-shape blob = 16-byte origin/scale header + the tool's bitstream."""

    binaries: tuple[str, ...] = ()
    #: Why the tools may be missing and how to get them (one line, after "<tools> not installed: ").
    install_hint: str = ""

    def available(self) -> tuple[bool, str]:
        missing = [b for b in self.binaries if find_tool(b) is None]
        if missing:
            return False, f"{', '.join(missing)} not installed: {self.install_hint}"
        return True, ""

    def encode(
        self,
        meshes: Sequence[Mesh],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[bytes]:
        self.require_available()
        out = []
        with tempfile.TemporaryDirectory(prefix=f"necgs-{self.name}-") as tmp:
            for i, m in enumerate(meshes):
                stop_if_asked(cancel)
                vox, lo, scale = voxelize(m, self.grid(setting), int(setting["points"]), seed=i)
                src, bits = Path(tmp) / f"{i}.ply", Path(tmp) / f"{i}.bin"
                write_points_ply(src, vox)
                self._run(self.encode_command(src, bits, setting), f"shape {i} ({m.name or 'unnamed'})")
                out.append(np.array([*lo, scale], dtype=_HEADER).tobytes() + bits.read_bytes())
                report_progress(progress, "encode", i, len(meshes))
        return out

    def decode(
        self,
        blobs: Sequence[bytes],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[Mesh]:
        self.require_available()
        out = []
        with tempfile.TemporaryDirectory(prefix=f"necgs-{self.name}-") as tmp:
            for i, blob in enumerate(blobs):
                stop_if_asked(cancel)
                if len(blob) <= _HEADER_BYTES:
                    raise CorruptArchiveError(f"{self.name} stream {i} is truncated")
                head = np.frombuffer(blob[:_HEADER_BYTES], dtype=_HEADER).astype(np.float64)
                bits, rec = Path(tmp) / f"{i}.bin", Path(tmp) / f"{i}.dec.ply"
                bits.write_bytes(blob[_HEADER_BYTES:])
                self._run(self.decode_command(bits, rec, setting), f"shape {i}")
                pts = read_points_ply(rec) / head[3] + head[:3]
                if len(pts) > MAX_POISSON_POINTS:
                    pts = pts[np.random.default_rng(i).choice(len(pts), MAX_POISSON_POINTS, replace=False)]
                out.append(poisson_mesh(pts, name=f"shape{i}"))
                report_progress(progress, "decode", i, len(blobs))
        return out

    def grid(self, setting: dict) -> int:
        """Voxels across a shape's longest side under ``setting``: 2^depth."""
        return 2 ** int(setting["depth"])

    def _run(self, cmd: list[str], shape: str) -> None:
        """Run one tool call; a failure or a hang raises one line naming the codec and the shape."""
        tool = Path(cmd[0]).name
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=TIMEOUT, env=dict(os.environ))
        except subprocess.TimeoutExpired:
            raise NecgsError(f"{self.name}: {tool} took longer than {TIMEOUT} s on {shape}") from None
        except subprocess.CalledProcessError as exc:
            lines = [ln for ln in (exc.stderr or exc.stdout or b"").decode(errors="replace").splitlines() if ln.strip()]
            tail = f": {lines[-1].strip()[:200]}" if lines else ""
            raise NecgsError(f"{self.name}: {tool} failed on {shape} with exit code {exc.returncode}{tail}") from None

    def tool(self, name: str) -> str:
        """The path of one of this codec's tools (``require_available`` has checked it exists)."""
        path = find_tool(name)
        if path is None:
            raise DependencyError(f"codec {self.name!r} is not available: {name} not installed: {self.install_hint}")
        return path

    @abstractmethod
    def encode_command(self, src: Path, bits: Path, setting: dict) -> list[str]:
        """The encoder's command line for one shape: voxelized points ``src`` -> bitstream ``bits``."""

    @abstractmethod
    def decode_command(self, bits: Path, rec: Path, setting: dict) -> list[str]:
        """The decoder's command line for one shape: bitstream ``bits`` -> decoded points ``rec``."""


class _Tmc3Codec(_ExternalPointCodec):
    """G-PCC through ``tmc3``: the encoder options differ per geometry mode, the decoder's do not."""

    binaries = ("tmc3",)
    install_hint = (
        "MPEG's G-PCC reference software is on no package registry; build it with "
        "scripts/build_tmc3.sh from its source (github.com/MPEGGroup/mpeg-pcc-tmc13)"
    )

    def encode_command(self, src: Path, bits: Path, setting: dict) -> list[str]:
        return [
            self.tool("tmc3"),
            "--mode=0",
            f"--uncompressedDataPath={src}",
            f"--compressedStreamPath={bits}",
            "--positionQuantizationScale=1",
            "--mergeDuplicatedPoints=1",
            *self.geometry_options(setting),
        ]

    def decode_command(self, bits: Path, rec: Path, setting: dict) -> list[str]:
        return [
            self.tool("tmc3"),
            "--mode=1",
            f"--compressedStreamPath={bits}",
            f"--reconstructedDataPath={rec}",
            "--outputBinaryPly=1",
        ]

    @abstractmethod
    def geometry_options(self, setting: dict) -> list[str]:
        """tmc3 options selecting and tuning the geometry mode."""


@register_codec
class GpccCodec(_Tmc3Codec):
    """G-PCC octree geometry, lossless on the voxelized points: a coarser grid (depth) and fewer
    sampled points (point budget) trade bytes for detail."""

    name = "gpcc"
    label = "G-PCC octree (tmc3) + SPSR"
    knob = "depth"

    def sweep(self) -> list[dict]:
        depths_and_points = ((8, 12000), (7, 8000), (7, 4000), (6, 2000), (6, 1000), (5, 1000))
        return [{"depth": d, "points": n} for d, n in depths_and_points]

    def geometry_options(self, setting: dict) -> list[str]:
        return ["--trisoupNodeSizeLog2=0"]

    def setting_label(self, setting: dict) -> str:
        return f"octree d{setting['depth']} {_thousands(int(setting['points']))} pts + SPSR"


@register_codec
class GpccTrisoupCodec(_Tmc3Codec):
    """G-PCC trisoup geometry: the octree stops at nodes of 2^node voxels and each node's surface
    is coded as triangles through its edge vertices, so the bytes follow the number of nodes on
    the surface, about (grid / 2^node)^2. The grid (voxels across the longest side, any integer)
    sets the number of nodes between powers of two. The points are dense surface samples so the
    voxelized surface has no holes."""

    name = "gpcc-trisoup"
    label = "G-PCC trisoup (tmc3) + SPSR"
    knob = "grid"

    def sweep(self) -> list[dict]:
        nodes_and_grids = ((4, 1024), (5, 1024), (5, 768), (5, 640), (5, 512))
        return [{"grid": g, "node": n, "points": 300000} for n, g in nodes_and_grids]

    def grid(self, setting: dict) -> int:
        return int(setting["grid"])

    def geometry_options(self, setting: dict) -> list[str]:
        return [f"--trisoupNodeSizeLog2={int(setting['node'])}", "--inferredDirectCodingMode=0"]

    def setting_label(self, setting: dict) -> str:
        return f"trisoup n{setting['node']} grid {setting['grid']} + SPSR"


@register_codec
class VpccCodec(_ExternalPointCodec):
    """MPEG V-PCC (TMC2) all-intra; depth is the knob."""

    name = "vpcc"
    label = "V-PCC (TMC2) + SPSR"
    knob = "depth"
    binaries = ("PccAppEncoder", "PccAppDecoder")
    install_hint = (
        "V-PCC's build (github.com/MPEGGroup/mpeg-pcc-tmc2) fetches the HM video codec from outside "
        "the package registries, so it is not built here; build it elsewhere and put its binaries on PATH"
    )

    def sweep(self) -> list[dict]:
        return [{"depth": d, "points": 20000} for d in (10, 9, 8, 7)]

    def encode_command(self, src: Path, bits: Path, setting: dict) -> list[str]:
        return [
            self.tool("PccAppEncoder"),
            f"--uncompressedDataPath={src}",
            f"--compressedStreamPath={bits}",
            "--frameCount=1",
            f"--geometryNBit={setting['depth']}",
            "--configurationFolder=cfg/",
        ]

    def decode_command(self, bits: Path, rec: Path, setting: dict) -> list[str]:
        return [self.tool("PccAppDecoder"), f"--compressedStreamPath={bits}", f"--reconstructedDataPath={rec}"]

    def setting_label(self, setting: dict) -> str:
        return f"depth {setting['depth']}"


@register_codec
class Pcgcv2Codec(Codec):
    """PCGCv2 (learned point-cloud coder): listed for completeness, never run here."""

    name = "pcgcv2"
    label = "PCGCv2"
    knob = "rate"

    def available(self) -> tuple[bool, str]:
        return False, (
            "needs MinkowskiEngine (a CUDA build) and the authors' trained weights, "
            "which are not distributed with necgs"
        )

    def sweep(self) -> list[dict]:
        return []

    def encode(self, meshes, setting, progress=None, cancel=None):
        self.require_available()
        raise DependencyError("PCGCv2 is not available")  # pragma: no cover - require_available raises

    def decode(self, blobs, setting, progress=None, cancel=None):
        self.require_available()
        raise DependencyError("PCGCv2 is not available")  # pragma: no cover
