"""A keypoint model (no mask head, as torchvision's Keypoint R-CNN) exported and run by onnxruntime:
the graph gives the keypoint heatmaps, decoded by the same ``heatmaps_to_keypoints`` as in eager mode."""

from __future__ import annotations

import pytest
import torch
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]  # one export, ~10 s


def test_keypoint_model_round_trip(tmp_path):
    from maskrcnn.export.onnx_export import export_onnx

    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), {
        **TINY, "model.roi_heads.mask_on": False, "model.roi_heads.keypoint_on": True,
        "model.roi_heads.num_keypoints": 5, "model.roi_heads.keypoint_head_convs": 2,
        "model.roi_heads.keypoint_head_dim": 16,
    })  # fmt: skip
    model = build_model(cfg).eval()
    names = ["__background__", "person", "other"]
    assert export_onnx(model, cfg, names, tmp_path / "kp.onnx") == ["boxes", "labels", "scores",
                                                                   "keypoint_heatmaps"]
    image = torch.rand(3, 60, 80, generator=torch.Generator().manual_seed(2))
    a = Predictor(model, cfg, names)(image)[0]
    b = Predictor.from_onnx(tmp_path / "kp.onnx")(image)[0]
    assert "masks" not in b and b["keypoints"].shape == (10, 5, 3)
    # one image, one model: the same order up to float rounding (random weights, distinct scores)
    torch.testing.assert_close(b["boxes"], a["boxes"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(b["labels"], a["labels"])
    torch.testing.assert_close(b["keypoints"], a["keypoints"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(b["keypoint_scores"], a["keypoint_scores"], rtol=1e-4, atol=1e-4)
