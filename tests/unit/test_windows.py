"""Windows of whole-grid tensors: crops with a zero halo, and which of their positions lie inside the grid."""

import torch

from necgs.model.windows import crop_windows, outside_mask


def test_outside_mask_marks_positions_beyond_the_grid():
    m = outside_mask(torch.tensor([[-2, 0, 6]]), 4, 8)
    assert m.shape == (1, 1, 4, 4, 4)
    assert m[0, 0, :2].sum() == 0 and m[0, 0, 2:, :, :2].all() and not m[0, 0, 2:, :, 2:].any()


def test_crop_windows_cut_the_asked_shape_with_a_zero_halo():
    x = torch.arange(2 * 4**3, dtype=torch.float32).reshape(2, 1, 4, 4, 4)
    crops = crop_windows(x, torch.tensor([1, 0]), torch.tensor([[0, 0, 0], [2, 2, 2]]), 2, 1)
    assert crops.shape == (2, 1, 4, 4, 4)
    assert crops[0, 0, 0].abs().sum() == 0  # the halo before the grid's first voxel is zero
    assert torch.equal(crops[0, 0, 1:, 1:, 1:], x[1, 0, :3, :3, :3])
    assert torch.equal(crops[1, 0, :3, :3, :3], x[0, 0, 1:, 1:, 1:]) and crops[1, 0, 3].abs().sum() == 0
