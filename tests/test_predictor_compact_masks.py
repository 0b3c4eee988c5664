"""``Predictor(masks="rle")``: the same detections as the dense default, masks as COCO RLE that equal
the dense masks' RLE; COCO results and overlays built from either are identical."""

import numpy as np
import pytest
import torch
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.data.mask_codec import masks_to_rles
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor
from maskrcnn.visualize import draw_instances

# tiny forwards: extra intra-op threads only add synchronisation (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools on numpy 2
@pytest.mark.parametrize("paste", ["torchvision", "grid_sample"])
def test_rle_masks_equal_dense_masks(paste):
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), {**TINY, "model.roi_heads.mask_paste": paste})
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(3)
    images = [torch.rand(3, 90, 70, generator=g), torch.rand(3, 41, 150, generator=g)]
    dense = Predictor(model, cfg)(images)
    compact = Predictor(model, cfg, masks="rle")(images)
    for d, c, image in zip(dense, compact, images):
        assert "masks" not in c and len(c["masks_rle"]) == d["boxes"].shape[0] > 0
        assert d["masks"].any()
        assert c["masks_rle"] == masks_to_rles(d["masks"])
        torch.testing.assert_close(c["boxes"], d["boxes"], rtol=0, atol=0)
        assert detections_to_coco_results(c, image_id=1) == detections_to_coco_results(d, image_id=1)
        for min_size in (0, 300):  # at the image's size and enlarged
            a = np.asarray(draw_instances(image, d, min_size=min_size))
            b = np.asarray(draw_instances(image, c, min_size=min_size))
            assert np.array_equal(a, b)


def test_unknown_mask_format_is_an_error():
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    with pytest.raises(ValueError, match="masks must be 'dense' or 'rle'"):
        Predictor(build_model(cfg), cfg, masks="png")
