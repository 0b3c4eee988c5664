"""Mask targets computed a block of gt masks at a time equal one roi_align over every mask, bit for bit."""

import pytest
import torch

from maskrcnn.modeling import roi_losses
from maskrcnn.ops import roi_align


@pytest.mark.parametrize("aligned", [False, True])
def test_project_masks_blocks_equal_one_roi_align(aligned, monkeypatch):
    g = torch.Generator().manual_seed(int(aligned))
    num_gt, height, width, num_props = 20, 30, 40, 60
    masks = torch.rand(num_gt, height, width, generator=g) > 0.5
    xy = torch.rand(num_props, 2, generator=g) * 35 - 3
    props = torch.cat([xy, xy + 1 + torch.rand(num_props, 2, generator=g) * 20], dim=1)
    matched = torch.randint(0, num_gt, (num_props,), generator=g)
    matched[matched == 3] = 4  # some gts matched by no proposal
    rois = torch.cat([matched[:, None].float(), props], dim=1)
    ref = roi_align(masks[:, None].float(), rois, (14, 14), spatial_scale=1.0, aligned=aligned)[:, 0]
    for pixels in (1, 3 * height * width, 10**9):  # one mask a block, three, all
        monkeypatch.setattr(roi_losses, "_MASK_TARGET_PIXELS", pixels)
        out = roi_losses.project_masks(masks, props, matched, 14, aligned=aligned)
        assert torch.equal(out, ref)
    assert roi_losses.project_masks(masks, props[:0], matched[:0], 14).shape == (0, 14, 14)
