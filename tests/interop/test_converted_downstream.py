"""Converted checkpoints through the downstream paths: a file written by ``maskrcnn convert`` carries
designs our own presets never produce (caffe-style BGR stem with 0..255 statistics, mmdet's mask
threshold / RoIAlign sampling / test sizes, GroupNorm with a 4conv1fc box head, detectron2's C4 with
res5 as the box head, keypoint heads of another count). Each must give the same detections through
``Predictor``'s optimised rewrite (folded norms, Winograd) as through the plain model, and through the
exported ONNX file as through the checkpoint.

The synthetic source files come from the converter tests' builders (random tiny models written out
under the foreign key names); the converted configs keep every score (score_thresh 0) so that there is
something to compare.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.config import Config, apply_overrides
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import test_detectron2_convert as d2t  # noqa: E402  (tests/interop is on the path)
import test_mmdetection_convert as mmt  # noqa: E402
from export_matching import match  # noqa: E402
from tiny_model import randomise_norms  # noqa: E402

KEEP_ALL = ["model.roi_heads.score_thresh=0", "model.roi_heads.detections_per_image=10"]
SMALL_TEST = ["input.min_size_test=64", "input.max_size_test=96"]


def _mm_caffe(tmp_path):
    """mmdet caffe style: BGR 0..255 input (std 1), stride in the 1x1, mask threshold 0.45, RoIAlign
    sampling_ratio 0, the config's own test size (64 / 96)."""
    sd = mmt.to_mmdet(mmt._random_model(), bgr=True)
    text = mmt._config_text(style="caffe", mean=(103.53, 116.28, 123.675), std=(1.0, 1.0, 1.0), to_rgb=False,
                            v3=False, score_thr=0.0)
    return "mmdetection", mmt._save_v2(tmp_path / "mm_caffe.pth", sd, text), []


def _d2_gn(tmp_path):
    """detectron2 *_gn: GroupNorm in backbone, FPN, 4conv1fc box head and mask head (nothing to fold)."""
    model = d2t._random_model(**{
        "model.backbone": "resnet18", "model.num_classes": 3, "model.stride_in_1x1": False,
        "model.norm": "gn", "model.fpn_norm": "gn", "model.roi_heads.box_head": "4conv1fc",
        "model.roi_heads.box_head_norm": "gn", "model.roi_heads.mask_head_norm": "gn"})  # fmt: skip
    return "detectron2", d2t._save_pkl(tmp_path / "d2_gn.pkl", d2t.to_detectron2(model)), SMALL_TEST


def _d2_c4(tmp_path):
    """detectron2 C4: no FPN, res5 as the box head (frozen BN folded there too), no size divisibility."""
    torch.manual_seed(0)
    model = randomise_norms(build_model(apply_overrides(
        Config(), {"model.fpn": False, "model.backbone": "resnet18", "model.num_classes": 3})))
    with torch.no_grad():  # smaller norm scales keep res5's activations near 1, where 1e-3 px is rounding
        for k, v in model.state_dict().items():
            if k.endswith("norm.weight"):
                v.mul_(0.5)
    d2 = {}
    for k, v in model.state_dict().items():  # as test_c4_layout_converts_with_detectron2_anchor_order
        name = re.sub(r"\.conv\.weight$", ".weight", k) if ".res" in k or ".stem." in k else k
        name = name.replace("rpn.head.convs.0.conv.", "proposal_generator.rpn_head.conv.")
        name = name.replace("rpn.head.objectness.", "proposal_generator.rpn_head.objectness_logits.")
        name = name.replace("rpn.head.deltas.", "proposal_generator.rpn_head.anchor_deltas.")
        d2[name] = d2t._d2_value(k, v).numpy().copy()
    return "detectron2", d2t._save_pkl(tmp_path / "d2_c4.pkl", d2), SMALL_TEST


def _convert(tmp_path, builder):
    fmt, src, sets = builder(tmp_path)
    out = tmp_path / "converted.pth"
    assert main(["convert", "--from", fmt, str(src), str(out), "--set", *KEEP_ALL, *sets]) == 0
    return out


def _images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, h, w, generator=g) for h, w in ((60, 80), (72, 56))]


@pytest.mark.slow  # 4-5 s each on 2 cores: a conversion, an ONNX export and four forward paths
@pytest.mark.parametrize("builder", [_mm_caffe, _d2_gn, _d2_c4],
                         ids=["mmdet_caffe_bgr", "d2_gn_4conv", "d2_c4"])
def test_converted_model_agrees_optimised_and_exported(tmp_path, builder):
    pytest.importorskip("onnxruntime")
    ckpt = _convert(tmp_path, builder)
    images = _images()
    plain = Predictor.from_checkpoint(ckpt, device="cpu", optimise=False)
    ref = plain.predict_tensors(images)
    assert all(len(d["boxes"]) for d in ref)
    optimised = Predictor.from_checkpoint(ckpt, device="cpu", optimise=True, winograd=True)
    assert optimised.model.folded_norms > 0 or plain.cfg.model.norm == "gn"
    for a, b in zip(ref, optimised.predict_tensors(images)):  # float rounding only
        assert torch.equal(a["labels"], b["labels"])
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3, rtol=0)
        assert torch.allclose(a["scores"], b["scores"], atol=1e-4, rtol=0)
    onnx_path = tmp_path / "converted.onnx"
    assert main(["export", "--weights", str(ckpt), "--output", str(onnx_path)]) == 0
    exported = Predictor.from_onnx(onnx_path)
    assert exported.mask_threshold == plain.mask_threshold and exported.min_size == plain.min_size
    for a, b in zip(ref, exported.predict_tensors(images)):
        m = match(a, b)
        assert m["n_ref"] == m["n_other"] and m["matched"] >= 0.9 and m["score_diff"] < 1e-4, m
        assert m["mask_iou"] >= 0.95, m


def test_keypoint_model_on_a_file_without_keypoint_names_is_refused(tmp_path, capsys):
    """A converted keypoint model of another count than COCO's 17 (detectron2 / mmdet models trained on
    other sets) evaluated on a COCO file whose categories name no keypoints: the file is read as 17
    points, and COCOeval failed with numpy's "operands could not be broadcast together"."""
    from tiny_model import TINY

    from maskrcnn.checkpoint import save_checkpoint

    cfg = apply_overrides(Config(), {
        **TINY, "model.num_classes": 2, "model.roi_heads.mask_on": False, "model.roi_heads.keypoint_on": True,
        "model.roi_heads.num_keypoints": 5, "model.roi_heads.keypoint_head_dim": 8,
        "model.roi_heads.keypoint_head_convs": 1})  # fmt: skip
    weights = tmp_path / "kp.pth"
    save_checkpoint(weights, model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=["__background__", "person"])
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(tmp_path / "images" / "a.png")
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": "person"}],  # no "keypoints" list: COCO's 17 are assumed
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 30], "area": 600,
                         "iscrowd": 0, "keypoints": [10, 10, 2] * 17, "num_keypoints": 17}]}))
    rc = main(["eval", "--weights", str(weights), "--json", str(gt), "--images", str(tmp_path / "images"),
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1
    assert (f"the model predicts 5 keypoints, {gt} names no keypoints in its categories, so its annotations "
            "are read as COCO's 17; give the category a 'keypoints' list of 5 names") in err, err
    assert "broadcast" not in err
