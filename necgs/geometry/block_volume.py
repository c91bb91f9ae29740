"""Block-sparse TSDF-Def volumes: the band's blocks in full, every other block as one value.

A fitted volume (4, K, K, K) differs from a truncated TSDF of +-1 with no deformation only in the
band of nodes near the surface (docs/ARCHITECTURE.md, 'Decisions and why', "Fitting only near the
surface"). Cut into B^3 blocks, most blocks are therefore one constant (s, 0, 0, 0): a
:class:`BlockVolume` keeps such a block as its one TSDF value (the far field, at block resolution)
and every other block in full, so the dense volume comes back bit for bit and the memory grows with
the number of band blocks instead of K^3.

On disk (the fitting cache, :mod:`necgs.geometry.fit`) a volume is one file: an 8-byte magic, a
little-endian uint32 length and a JSON header (``resolution``, ``block``, ``blocks``), padded so the
arrays start on a 64-byte boundary, then the far values (G^3 float32, G = K / B), the slots (G^3
int32: -1 for a constant block, else the row of its data) and the stored blocks' data
(blocks x 4 x B^3 float32). :meth:`BlockVolume.open` maps the data read-only from the file, so a set
of volumes reads only the blocks training touches.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

#: Side B of a stored block. 8 is training's block side (``TrainConfig.block_size``): a drawn
#: block then overlaps at most 8 stored blocks, and a smaller B would store fewer far nodes
#: beside the band at a larger index.
BLOCK = 8

MAGIC = b"NCGSVOL1"
_ALIGN = 64


class BlockVolume:
    """One TSDF-Def volume (4, K, K, K) as blocks of side B: constant blocks by value, the others in full.

    Args:
        resolution: K.
        block: B (divides K).
        far: (G^3,) float32: a constant block's TSDF value; a stored block's mean TSDF (coarse only).
        slots: (G^3,) int32: -1 for a constant block, else its row in ``data``.
        data: (blocks, 4, B, B, B) float32, in memory or mapped from a file.
    """

    def __init__(self, resolution: int, block: int, far: np.ndarray, slots: np.ndarray, data: np.ndarray) -> None:
        self.resolution, self.block = resolution, block
        self.far, self.slots, self.data = far, slots, data

    @property
    def grid(self) -> int:
        """G = K / B, blocks per axis."""
        return self.resolution // self.block

    @property
    def blocks(self) -> int:
        """The number of stored (non-constant) blocks."""
        return int(self.data.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the index and of the stored blocks."""
        return int(self.far.nbytes + self.slots.nbytes + self.data.nbytes)

    @classmethod
    def from_dense(cls, volume: torch.Tensor | np.ndarray, block: int = BLOCK) -> BlockVolume:
        """Split a dense (4, K, K, K) float32 volume; a block is constant when every TSDF value has the
        same bits and every deformation value is 0, so :meth:`dense` gives the same bits back (a -0.0
        deformation in a constant block, as a mirror image makes, comes back as +0.0: the same value)."""
        v = volume.numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
        if v.ndim != 4 or v.shape[0] != 4 or len(set(v.shape[1:])) != 1:
            raise ValueError(f"a TSDF-Def volume is (4, K, K, K), got {tuple(v.shape)}")
        K = v.shape[-1]
        block = min(block, K)
        if K % block:
            raise ValueError(f"block side {block} does not divide K = {K}")
        G = K // block
        cells = np.ascontiguousarray(
            v.astype(np.float32, copy=False)
            .reshape(4, G, block, G, block, G, block)
            .transpose(1, 3, 5, 0, 2, 4, 6)
            .reshape(G**3, 4, block**3)
        )
        bits = cells.view(np.uint32)
        constant = (bits[:, 0] == bits[:, 0, :1]).all(1) & (cells[:, 1:] == 0).all((1, 2))
        stored = np.flatnonzero(~constant)
        slots = np.full(G**3, -1, dtype=np.int32)
        slots[stored] = np.arange(len(stored), dtype=np.int32)
        far = cells[:, 0, 0].copy()
        far[stored] = cells[stored, 0].mean(1)
        data = cells[stored].reshape(len(stored), 4, block, block, block)
        return cls(K, block, far, slots, data)

    def dense(self) -> torch.Tensor:
        """The (4, K, K, K) float32 volume."""
        G, B = self.grid, self.block
        cells = np.zeros((G**3, 4, B, B, B), dtype=np.float32)
        constant = self.slots < 0
        cells[constant, 0] = self.far[constant, None, None, None]
        cells[~constant] = self.data[self.slots[~constant]]
        K = self.resolution
        dense = cells.reshape(G, G, G, 4, B, B, B).transpose(3, 0, 4, 1, 5, 2, 6).reshape(4, K, K, K)
        return torch.from_numpy(np.ascontiguousarray(dense))

    def tsdf(self) -> torch.Tensor:
        """The (K, K, K) TSDF channel alone."""
        G, B = self.grid, self.block
        cells = np.empty((G**3, B, B, B), dtype=np.float32)
        constant = self.slots < 0
        cells[constant] = self.far[constant, None, None, None]
        cells[~constant] = self.data[self.slots[~constant], 0]
        K = self.resolution
        dense = cells.reshape(G, G, G, B, B, B).transpose(0, 3, 1, 4, 2, 5).reshape(K, K, K)
        return torch.from_numpy(np.ascontiguousarray(dense))

    def crop(self, origin: Sequence[int], size: int) -> torch.Tensor:
        """The (4, P, P, P) block of side ``size`` at node ``origin`` (inside the grid), from the blocks it overlaps."""
        B, G = self.block, self.grid
        out = np.empty((4, size, size, size), dtype=np.float32)
        a, b, c = (int(o) for o in origin)
        for bx in range(a // B, (a + size - 1) // B + 1):
            x0, x1 = max(a, bx * B), min(a + size, (bx + 1) * B)
            for by in range(b // B, (b + size - 1) // B + 1):
                y0, y1 = max(b, by * B), min(b + size, (by + 1) * B)
                for bz in range(c // B, (c + size - 1) // B + 1):
                    z0, z1 = max(c, bz * B), min(c + size, (bz + 1) * B)
                    dst = out[:, x0 - a : x1 - a, y0 - b : y1 - b, z0 - c : z1 - c]
                    flat = (bx * G + by) * G + bz
                    slot = self.slots[flat]
                    if slot < 0:
                        dst[0] = self.far[flat]
                        dst[1:] = 0.0
                    else:
                        x, y, z = bx * B, by * B, bz * B
                        dst[...] = self.data[slot, :, x0 - x : x1 - x, y0 - y : y1 - y, z0 - z : z1 - z]
        return torch.from_numpy(out)

    def save(self, path: Path) -> None:
        """Write the volume to ``path`` atomically (the module's file layout)."""
        header = json.dumps({"resolution": self.resolution, "block": self.block, "blocks": self.blocks}).encode()
        start = len(MAGIC) + 4 + len(header)
        header += b" " * (-start % _ALIGN)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # fitting threads too
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + struct.pack("<I", len(header)) + header)
            fh.write(self.far.astype("<f4").tobytes())
            fh.write(self.slots.astype("<i4").tobytes())
            fh.write(np.ascontiguousarray(self.data, dtype="<f4").tobytes())
        os.replace(tmp, path)

    @classmethod
    def open(cls, path: Path) -> BlockVolume:
        """Read a volume written by :meth:`save`: the index into memory, the blocks mapped read-only.

        Raises:
            ValueError: The file is not such a volume or is truncated.
        """
        with open(path, "rb") as fh:
            head = fh.read(len(MAGIC) + 4)
            if len(head) < len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
                raise ValueError(f"{path}: not a block volume")
            (length,) = struct.unpack("<I", head[len(MAGIC) :])
            try:
                meta = json.loads(fh.read(length))
                K, B, n = int(meta["resolution"]), int(meta["block"]), int(meta["blocks"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}: bad block volume header") from exc
            if B <= 0 or K % B or n < 0:
                raise ValueError(f"{path}: bad block volume header")
            cells = (K // B) ** 3
            offset = len(MAGIC) + 4 + length
            if os.fstat(fh.fileno()).st_size != offset + 8 * cells + 16 * n * B**3:
                raise ValueError(f"{path}: truncated block volume")
            far = np.frombuffer(fh.read(4 * cells), dtype="<f4").astype(np.float32)
            slots = np.frombuffer(fh.read(4 * cells), dtype="<i4").astype(np.int32)
        if slots.max(initial=-1) >= n:
            raise ValueError(f"{path}: block volume slots out of range")
        data = np.zeros((0, 4, B, B, B), dtype=np.float32)
        if n:
            data = np.memmap(path, dtype="<f4", mode="r", offset=offset + 8 * cells, shape=(n, 4, B, B, B))
        return cls(K, B, far, slots, data)


class VolumeSet:
    """The volumes of a set of shapes, each a :class:`BlockVolume`: what fitting gives and training reads.

    Indexing gives dense tensors: ``volumes[i]`` is (4, K, K, K); a slice, a list or a 1-D tensor of
    indices gives (b, 4, K, K, K). Only those volumes are made dense; training reads blocks
    (:meth:`crop`) and the TSDF channel (:meth:`tsdf`).

    Args:
        volumes: One per shape, all of the same resolution.
        resolution: K (needed when ``volumes`` is empty).
    """

    def __init__(self, volumes: Sequence[BlockVolume], resolution: int | None = None) -> None:
        self.volumes = list(volumes)
        if resolution is None:
            if not self.volumes:
                raise ValueError("an empty volume set needs its resolution")
            resolution = self.volumes[0].resolution
        if any(v.resolution != resolution for v in self.volumes):
            raise ValueError("the volumes of a set must share one resolution")
        self.resolution = resolution

    @classmethod
    def from_dense(cls, volumes: torch.Tensor, block: int = BLOCK) -> VolumeSet:
        """Split every volume of an (N, 4, K, K, K) tensor."""
        if volumes.dim() != 5 or volumes.shape[1] != 4:
            raise ValueError(f"volumes must be (N, 4, K, K, K), got {tuple(volumes.shape)}")
        return cls([BlockVolume.from_dense(v, block) for v in volumes], volumes.shape[-1])

    @property
    def shape(self) -> torch.Size:
        """(N, 4, K, K, K), as the dense tensor would have."""
        K = self.resolution
        return torch.Size((len(self.volumes), 4, K, K, K))

    def __len__(self) -> int:
        return len(self.volumes)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (v.dense() for v in self.volumes)

    def __getitem__(self, key: int | slice | Sequence[int] | torch.Tensor) -> torch.Tensor:
        if isinstance(key, (int, np.integer)) or (isinstance(key, torch.Tensor) and key.dim() == 0):
            return self.volumes[int(key)].dense()
        if isinstance(key, slice):
            key = range(*key.indices(len(self.volumes)))
        elif isinstance(key, torch.Tensor):
            key = key.tolist()
        rows = [self.volumes[int(i)].dense() for i in key]
        K = self.resolution
        return torch.stack(rows) if rows else torch.zeros((0, 4, K, K, K))

    def dense(self) -> torch.Tensor:
        """Every volume, (N, 4, K, K, K) in memory (the old form; small sets only)."""
        return self[:]

    def tsdf(self, i: int) -> torch.Tensor:
        """Shape ``i``'s TSDF channel, (K, K, K)."""
        return self.volumes[i].tsdf()

    def crop(self, i: int, origin: Sequence[int], size: int) -> torch.Tensor:
        """The (4, P, P, P) block of side ``size`` at ``origin`` of shape ``i``."""
        return self.volumes[i].crop(origin, size)

    def subset(self, indices: Sequence[int]) -> VolumeSet:
        """The volumes ``indices`` (shared, not copied)."""
        return VolumeSet([self.volumes[i] for i in indices], self.resolution)

    @property
    def blocks(self) -> int:
        """Stored (band) blocks over all shapes."""
        return sum(v.blocks for v in self.volumes)

    @property
    def nbytes(self) -> int:
        """Bytes of every index and stored block (mapped or in memory)."""
        return sum(v.nbytes for v in self.volumes)


#: What training and fitting accept: the set's volumes dense or as blocks.
Volumes = torch.Tensor | VolumeSet


def as_volume_set(volumes: Volumes) -> VolumeSet:
    """``volumes`` as a :class:`VolumeSet` (a dense (N, 4, K, K, K) tensor is split into blocks)."""
    return volumes if isinstance(volumes, VolumeSet) else VolumeSet.from_dense(volumes)
