"""Block-sparse volumes give back the dense fitted volume bit for bit, in memory and mapped from a file."""

import numpy as np
import pytest
import torch
import trimesh

from necgs.config import FitConfig
from necgs.geometry.block_volume import BlockVolume, VolumeSet, as_volume_set
from necgs.geometry.fit import fit_volume


def fitted(shape: str, K: int) -> torch.Tensor:
    """A short CPU fit of a sphere or a torus: a TSDF with deformations on the band."""
    if shape == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.55)
    else:
        mesh = trimesh.creation.torus(major_radius=0.5, minor_radius=0.2)
    cfg = FitConfig(resolution=K, iterations=3, samples=2000, device="cpu")
    return fit_volume(np.asarray(mesh.vertices), np.asarray(mesh.faces), cfg)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and np.array_equal(a.numpy().view(np.uint32), b.numpy().view(np.uint32))


@pytest.fixture(scope="module", params=[("sphere", 32), ("torus", 32), ("sphere", 64), ("torus", 64)])
def volume(request) -> torch.Tensor:
    return fitted(*request.param)


def test_dense_to_blocks_to_dense_is_bit_identical(volume):
    blocks = BlockVolume.from_dense(volume)
    assert same_bits(blocks.dense(), volume)
    assert same_bits(blocks.tsdf(), volume[0])
    # the far field is the constant blocks: at K = 64 a sphere's or a torus's band holds 14-25% of them
    share = 0.5 if volume.shape[-1] == 32 else 0.3
    assert volume[1:].abs().sum() > 0 and 0 < blocks.blocks <= share * blocks.grid**3
    assert blocks.nbytes < (share + 0.01) * volume.numpy().nbytes


def test_every_block_away_from_the_band_is_constant(volume):
    blocks = BlockVolume.from_dense(volume)
    G, B = blocks.grid, blocks.block
    cells = volume.reshape(4, G, B, G, B, G, B).permute(1, 3, 5, 0, 2, 4, 6).reshape(G**3, 4, -1)
    far = (cells[:, 0].abs() == 1).all(1) & (cells[:, 1:] == 0).all((1, 2)) & (cells[:, 0] == cells[:, 0, :1]).all(1)
    assert torch.equal(torch.from_numpy(blocks.slots < 0), far)


def test_crops_equal_the_dense_blocks_aligned_or_not(volume):
    blocks = BlockVolume.from_dense(volume)
    K = volume.shape[-1]
    rng = np.random.default_rng(0)
    for size in (8, 5, 16):
        for _ in range(20):
            a, b, c = rng.integers(0, K - size + 1, 3)
            assert same_bits(blocks.crop((a, b, c), size), volume[:, a : a + size, b : b + size, c : c + size])


def test_a_saved_volume_is_mapped_back_bit_for_bit(volume, tmp_path):
    path = tmp_path / "v.ncgv"
    BlockVolume.from_dense(volume).save(path)
    back = BlockVolume.open(path)
    assert isinstance(back.data, np.memmap)
    assert same_bits(back.dense(), volume)
    assert same_bits(back.crop((3, 9, 17), 8), volume[:, 3:11, 9:17, 17:25])


def test_a_damaged_file_is_refused(tmp_path):
    vol = fitted("sphere", 32)
    path = tmp_path / "v.ncgv"
    BlockVolume.from_dense(vol).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ValueError, match="truncated"):
        BlockVolume.open(path)
    path.write_bytes(b"\x93NUMPY" + data[6:])
    with pytest.raises(ValueError, match="not a block volume"):
        BlockVolume.open(path)


def test_an_all_constant_volume_stores_no_block(tmp_path):
    vol = torch.cat([torch.ones(1, 16, 16, 16), torch.zeros(3, 16, 16, 16)])
    vol[0, :8] = -1.0
    blocks = BlockVolume.from_dense(vol)
    assert blocks.blocks == 0
    blocks.save(tmp_path / "c.ncgv")
    assert same_bits(BlockVolume.open(tmp_path / "c.ncgv").dense(), vol)


def test_a_mirror_image_s_negative_zero_deformations_are_far_field():
    vol = torch.cat([torch.ones(1, 16, 16, 16), -torch.zeros(3, 16, 16, 16)])
    vol[0, 3, 3, 3] = -0.0
    blocks = BlockVolume.from_dense(vol)
    assert blocks.blocks == 1 and torch.equal(blocks.dense(), vol)
    back = blocks.dense()
    assert same_bits(back[0], vol[0]) and same_bits(back[:, :8, :8, :8], vol[:, :8, :8, :8])  # the stored block
    assert same_bits(back[1:, 8:], torch.zeros(3, 8, 16, 16))  # the far blocks' deformations: +0.0


def test_a_volume_set_indexes_like_the_dense_tensor():
    dense = torch.stack([fitted("sphere", 32), fitted("torus", 32)])
    volumes = as_volume_set(dense)
    assert volumes.shape == dense.shape and len(volumes) == 2
    assert same_bits(volumes[1], dense[1])
    assert same_bits(volumes[[1, 0, 1]], dense[[1, 0, 1]])
    assert same_bits(volumes[torch.tensor([0, 1])], dense)
    assert same_bits(volumes[0:1], dense[0:1])
    assert same_bits(volumes.dense(), dense)
    assert all(same_bits(a, b) for a, b in zip(volumes, dense))
    assert as_volume_set(volumes) is volumes
    assert same_bits(volumes.subset([1]).dense(), dense[1:])
    with pytest.raises(ValueError, match="one resolution"):
        VolumeSet([*volumes.volumes, BlockVolume.from_dense(fitted("sphere", 64))])
