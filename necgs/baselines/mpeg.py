"""Adapters for MPEG's point-cloud reference software, and the PCGCv2 entry.

G-PCC (``tmc3``) and V-PCC (``PccAppEncoder`` / ``PccAppDecoder``) are not on any
package registry: build them from MPEG's repositories and put the binaries on PATH, and
these codecs run them (voxelized points in a PLY, subprocess with a timeout, decoded
points back, then screened Poisson like ``pointcloud-spsr``). Without the binaries they
report "not installed" and are skipped. PCGCv2 needs MinkowskiEngine (a CUDA build) and
its authors' trained weights, which are not distributed with necgs: it is listed, never run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from necgs.baselines.base import Codec, ProgressFn, register_codec
from necgs.baselines.pointcloud import poisson_mesh
from necgs.errors import CorruptArchiveError, DependencyError, NecgsError
from necgs.io.mesh import Mesh
from necgs.metrics import sample_surface

#: Seconds one encoder or decoder call may take.
TIMEOUT = 600


def write_points_ply(path: Path, points: np.ndarray) -> None:
    """ASCII PLY of integer (voxelized) points, as the MPEG tools read them."""
    lines = [f"{int(x)} {int(y)} {int(z)}" for x, y, z in points]
    header = (
        f"ply\nformat ascii 1.0\nelement vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    path.write_text(header + "\n".join(lines) + "\n")


def read_points_ply(path: Path) -> np.ndarray:
    """Points of a PLY written by an MPEG decoder (ASCII or binary, via trimesh)."""
    import trimesh

    try:
        cloud = trimesh.load(path, process=False)
        return np.asarray(cloud.vertices, dtype=np.float64)
    except Exception as exc:
        raise CorruptArchiveError(f"{path}: decoded point cloud is unreadable ({exc})") from None


def voxelize(mesh: Mesh, depth: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Unique integer points on a 2^depth grid from surface samples; plus origin and scale."""
    pts, _ = sample_surface(mesh, n, seed)
    lo = pts.min(0)
    scale = (2**depth - 1) / max(float(np.ptp(pts, axis=0).max()), 1e-12)
    vox = np.unique(np.round((pts - lo) * scale).astype(np.int64), axis=0)
    return vox, lo, scale


class _ExternalPointCodec(Codec):
    """Shared plumbing: a per-shape blob = 32-byte origin/scale header + the tool's bitstream."""

    binaries: tuple[str, ...] = ()

    def available(self) -> tuple[bool, str]:
        missing = [b for b in self.binaries if shutil.which(b) is None]
        if missing:
            return False, (
                f"{', '.join(missing)} not found on PATH: MPEG's reference software is not on any "
                "package registry; build it from MPEG's repository and put it on PATH"
            )
        return True, ""

    def sweep(self) -> list[dict]:
        return [{"depth": d, "points": 20000} for d in (10, 9, 8, 7)]

    def encode(self, meshes: Sequence[Mesh], setting: dict, progress: ProgressFn | None = None) -> list[bytes]:
        self.require_available()
        out = []
        with tempfile.TemporaryDirectory(prefix=f"necgs-{self.name}-") as tmp:
            for i, m in enumerate(meshes):
                vox, lo, scale = voxelize(m, int(setting["depth"]), int(setting["points"]), seed=i)
                src, bits = Path(tmp) / f"{i}.ply", Path(tmp) / f"{i}.bin"
                write_points_ply(src, vox)
                self._run(self.encode_command(src, bits, setting))
                head = np.array([*lo, scale], dtype="<f8").tobytes()
                out.append(head + bits.read_bytes())
        return out

    def decode(self, blobs: Sequence[bytes], setting: dict, progress: ProgressFn | None = None) -> list[Mesh]:
        self.require_available()
        out = []
        with tempfile.TemporaryDirectory(prefix=f"necgs-{self.name}-") as tmp:
            for i, blob in enumerate(blobs):
                if len(blob) < 32:
                    raise CorruptArchiveError(f"{self.name} stream {i} is truncated")
                lo_scale = np.frombuffer(blob[:32], dtype="<f8")
                bits, rec = Path(tmp) / f"{i}.bin", Path(tmp) / f"{i}.dec.ply"
                bits.write_bytes(blob[32:])
                self._run(self.decode_command(bits, rec, setting))
                pts = read_points_ply(rec) / lo_scale[3] + lo_scale[:3]
                out.append(poisson_mesh(pts, name=f"shape{i}"))
        return out

    def _run(self, cmd: list[str]) -> None:
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=TIMEOUT, env=dict(os.environ))
        except subprocess.TimeoutExpired:
            raise NecgsError(f"{cmd[0]} took longer than {TIMEOUT} s") from None
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise NecgsError(f"{cmd[0]} failed with exit code {exc.returncode}: {tail[0][:200]}") from None

    def encode_command(self, src: Path, bits: Path, setting: dict) -> list[str]:
        raise NotImplementedError

    def decode_command(self, bits: Path, rec: Path, setting: dict) -> list[str]:
        raise NotImplementedError

    def setting_label(self, setting: dict) -> str:
        return f"depth {setting['depth']}"


@register_codec
class GpccCodec(_ExternalPointCodec):
    """MPEG G-PCC (TMC13) in octree mode, lossless on the voxelized points; depth is the knob."""

    name = "gpcc"
    label = "G-PCC (tmc3) + SPSR"
    knob = "depth"
    binaries = ("tmc3",)

    def encode_command(self, src: Path, bits: Path, setting: dict) -> list[str]:
        return [
            "tmc3",
            "--mode=0",
            f"--uncompressedDataPath={src}",
            f"--compressedStreamPath={bits}",
            "--positionQuantizationScale=1",
            "--trisoupNodeSizeLog2=0",
            "--mergeDuplicatedPoints=1",
        ]

    def decode_command(self, bits: Path, rec: Path, setting: dict) -> list[str]:
        return ["tmc3", "--mode=1", f"--compressedStreamPath={bits}", f"--reconstructedDataPath={rec}"]


@register_codec
class VpccCodec(_ExternalPointCodec):
    """MPEG V-PCC (TMC2) all-intra; depth is the knob."""

    name = "vpcc"
    label = "V-PCC (TMC2) + SPSR"
    knob = "depth"
    binaries = ("PccAppEncoder", "PccAppDecoder")

    def encode_command(self, src: Path, bits: Path, setting: dict) -> list[str]:
        return [
            "PccAppEncoder",
            f"--uncompressedDataPath={src}",
            f"--compressedStreamPath={bits}",
            "--frameCount=1",
            f"--geometryNBit={setting['depth']}",
            "--configurationFolder=cfg/",
        ]

    def decode_command(self, bits: Path, rec: Path, setting: dict) -> list[str]:
        return ["PccAppDecoder", f"--compressedStreamPath={bits}", f"--reconstructedDataPath={rec}"]


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

    def encode(self, meshes, setting, progress=None):
        self.require_available()
        raise DependencyError("PCGCv2 is not available")  # pragma: no cover - require_available raises

    def decode(self, blobs, setting, progress=None):
        self.require_available()
        raise DependencyError("PCGCv2 is not available")  # pragma: no cover
