"""Compact masks: RLE encoded band by band equals the RLE of the dense pasted masks, bit for bit."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from maskrcnn.data.mask_codec import compress_runs, masks_to_rles, row_windows_to_runs
from maskrcnn.ops.paste import paste_masks_as_rles, paste_masks_in_image


def _boxes(n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    """Random boxes, some sticking out of the image, plus the cases that stress the encoder."""
    xy = torch.rand(n, 2, generator=g) * torch.tensor([width * 1.2, height * 1.2]) - torch.tensor(
        [width * 0.1, height * 0.1])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([float(width), float(height)])
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[0] = torch.tensor([-5.0, -5.0, width + 5.0, height + 5.0])  # band = every row
    boxes[1] = torch.tensor([0.0, 0.0, float(width), float(height)])
    boxes[2] = torch.tensor([width - 3.0, height - 3.0, width + 9.0, height + 9.0])  # bottom-right corner
    boxes[3] = float("nan")  # pastes nothing
    boxes[4] = torch.tensor([2.0, 2.0, 1.0, 1.0])  # inverted
    return boxes


@pytest.mark.parametrize("method", ["torchvision", "grid_sample"])
@pytest.mark.parametrize("height,width", [(50, 70), (37, 23), (1, 9), (9, 1)])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools on numpy 2
def test_rle_paste_equals_rle_of_dense_paste(method, height, width):
    g = torch.Generator().manual_seed(height * 100 + width)
    n = 24
    probs = torch.rand(n, 1, 28, 28, generator=g)
    probs[:3] = 1.0  # full masks: runs of ones that span whole columns (and cross column ends)
    probs[5] = 0.0  # an empty mask inside a valid box
    boxes = _boxes(n, height, width, g)
    dense = paste_masks_in_image(probs, boxes, (height, width), method=method, threshold=0.5)
    assert dense[:3].any() and not dense[3].any()
    rles = paste_masks_as_rles(probs, boxes, (height, width), method=method, threshold=0.5)
    assert rles == masks_to_rles(dense)
    decoded = mask_utils.decode([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
    assert np.array_equal(decoded.transpose(2, 0, 1).astype(bool), dense.numpy())


def test_rle_paste_of_no_detections():
    assert paste_masks_as_rles(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (10, 12)) == []


@pytest.mark.parametrize("height", [1, 5, 6])
def test_row_windows_to_runs_equals_pycocotools(height):
    """Every band position, including bands spanning the whole height (changes that cancel) and bands
    touching the last pixel."""
    g = torch.Generator().manual_seed(height)
    width = 4
    for length in range(1, height + 1):
        for y0 in range(0, height - length + 1):
            windows = torch.rand(6, length, width, generator=g) > 0.5
            windows[0] = True
            windows[1] = False
            full = torch.zeros(6, height, width, dtype=torch.bool)
            full[:, y0 : y0 + length] = windows
            runs = row_windows_to_runs(windows, torch.full((6,), y0), height)
            assert compress_runs(runs, height, width) == masks_to_rles(full)
