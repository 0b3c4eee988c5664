"""ONNX round trip of an R50-FPN Mask R-CNN on the golden images: one exported file, two image sizes.

The golden 320 model's weights (tests/data/golden, rebuilt by the weight recipe and converted from
torchvision's keys) are saved as a checkpoint, exported once by ``maskrcnn export``, and both run
through ``Predictor`` on ``img_simple0`` (256 x 256 -> 320 x 320) and ``img_hard2`` (264 x 379 ->
320 x 459): the same number of detections, >= 99 % matched (same class, box IoU > 0.99), scores within
1e-3, pasted masks at IoU >= 0.98 (the acceptance of issue 12). The checkpoint runs as the plain PyTorch
model (``optimise=False``: the Winograd set-up would double the test's time; the optimised path's
agreement with the plain one is ``tests/interop/test_golden_parity.py``'s), the file by onnxruntime.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from export_matching import match  # tests/export is on the path

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.cli import main
from maskrcnn.data.images import read_image
from maskrcnn.interop.torchvision import convert_torchvision
from maskrcnn.predictor import Predictor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_weights import recipe_state_dict  # noqa: E402

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow  # R50 export and two R50 forwards each way

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden_onnx")
    g = torch.load(GOLDEN / "maskrcnn_r50fpn_320.pt", weights_only=True)
    c = g["constructor"]
    conv = convert_torchvision(recipe_state_dict(g["state_dict_keys"]), overrides={
        "model.frozen_bn_eps": 1e-5,  # weights=None models use plain BatchNorm (eps 1e-5)
        "input.min_size_test": c["min_size"], "input.max_size_test": c["max_size"],
    })  # fmt: skip
    cfg = conv["config"]
    names = ["__background__"] + [f"class{i}" for i in range(1, cfg.model.num_classes)]
    save_checkpoint(root / "r50.pth", model_state=conv["state_dict"], config=cfg, class_names=names)
    assert main(["export", "--weights", str(root / "r50.pth"), "--output", str(root / "r50.onnx")]) == 0
    return root


def test_onnx_equals_checkpoint_on_golden_images_of_two_sizes(r50):
    ckpt = Predictor.from_checkpoint(r50 / "r50.pth", device="cpu", optimise=False)
    onnx = Predictor.from_onnx(r50 / "r50.onnx")
    images = [read_image(GOLDEN / name) for name in ("img_simple0.png", "img_hard2.png")]
    sizes = set()
    for image, a, b in zip(images, ckpt(images), onnx(images)):
        m = match(a, b)
        assert m["n_ref"] == m["n_other"] > 0, m
        assert m["matched"] >= 0.99 and m["score_diff"] < 1e-3 and m["mask_iou"] >= 0.98, m
        assert b["masks"].shape == (m["n_ref"], *image.shape[-2:])
        sizes.add(tuple(image.shape[-2:]))
    assert len(sizes) == 2
