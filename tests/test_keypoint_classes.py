"""A keypoint model trained on a file where one category has keypoints (``critter``) and another has none
(``ball``): training records the owners (``data.keypoint_classes``), and at inference the other class's
detections carry no keypoints: zeroed rows in the predictor's tensors (shapes kept), no ``keypoints`` in
predictions.json records, no keypoint names or points for that category in the COCO export, no points
drawn. A config without the record (an older checkpoint, a COCO person model) keeps every keypoint."""

import io
import json

import numpy as np
import torch
from PIL import Image

from maskrcnn.config import load_config
from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.data.keypoint_classes import keypoint_labels, without_foreign_keypoints
from maskrcnn.data.pre_annotations.export import PreAnnotationExport
from tests.tiny_model import TINY

NAMES = ["nose", "left_ear", "right_ear"]


def _file(folder):
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in (1, 2):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    cats = [{"id": 1, "name": "ball"}, {"id": 7, "name": "critter", "keypoints": NAMES, "skeleton": [[1, 2]]}]
    anns = []
    for i in (1, 2):
        anns.append({"id": 10 + i, "image_id": i, "category_id": 7, "bbox": [4, 4, 20, 20], "area": 400.0,
                     "iscrowd": 0, "keypoints": [8, 8, 2, 12, 8, 2, 16, 8, 2], "num_keypoints": 3})
        anns.append({"id": 20 + i, "image_id": i, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64.0,
                     "iscrowd": 0})
    path = folder / "data.json"
    path.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32}
                                           for i in (1, 2)], "categories": cats, "annotations": anns}))
    return path, images


def test_training_records_the_classes_that_own_the_keypoint_set(tmp_path):
    from maskrcnn.engine.training import build_training

    path, images = _file(tmp_path)
    cfg = load_config("demo_keypoints", {"model.backbone": "resnet18", "model.fpn_dim": 8,
                                         "data.num_workers": 0})
    _, cfg = build_training(cfg, train_json=path, train_images=images, output=tmp_path / "run",
                            log_stream=io.StringIO(), overwrite=True, trainer_kwargs={"tensorboard": False})
    assert tuple(cfg.data.keypoint_classes) == ("critter",)
    stored = load_config(str(tmp_path / "run" / "config.yaml"))
    assert tuple(stored.data.keypoint_classes) == ("critter",)
    assert keypoint_labels(stored.data.keypoint_classes, stored.data.class_names) == frozenset({2})


def _det():
    return {"boxes": torch.tensor([[1.0, 1, 9, 9], [4, 4, 24, 24]]), "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([1, 2]),
            "keypoints": torch.tensor([[[2.0, 2, 1], [3, 3, 1], [4, 4, 1]],
                                       [[8.0, 8, 1], [12, 8, 1], [16, 8, 1]]]),
            "keypoint_scores": torch.tensor([[5.0, 5, 5], [6.0, 6, 6]])}


def test_the_predictor_zeroes_the_keypoints_of_classes_without_them():
    from maskrcnn.modeling import build_model
    from maskrcnn.predictor import Predictor

    overrides = {**TINY, "model.roi_heads.keypoint_on": True, "model.roi_heads.mask_on": False,
                 "model.roi_heads.num_keypoints": 3,
                 "data.class_names": ("__background__", "ball", "critter"),
                 "data.keypoint_names": tuple(NAMES)}
    image = torch.rand(3, 48, 64)
    torch.manual_seed(0)
    cfg = load_config("demo_keypoints", {**overrides, "data.keypoint_classes": ("critter",)})
    model = build_model(cfg)
    with torch.no_grad():  # every class equally likely: both classes detected on every box
        model.roi_heads.box_predictor.cls_score.weight.zero_()
        model.roi_heads.box_predictor.cls_score.bias.zero_()
    (det,) = Predictor(model, cfg)([image])
    old = load_config("demo_keypoints", overrides)  # no record: every class keeps its keypoints
    (every,) = Predictor(model, old)([image])
    balls, critters = det["labels"] == 1, det["labels"] == 2
    assert balls.any() and critters.any()
    assert det["keypoints"].shape == every["keypoints"].shape == (len(det["labels"]), 3, 3)
    assert (det["keypoints"][balls] == 0).all() and (det["keypoint_scores"][balls] == 0).all()
    assert (every["keypoints"][balls, :, 2] == 1).all()
    assert torch.equal(det["keypoints"][critters], every["keypoints"][critters])
    records = detections_to_coco_results(det, image_id=1, keypoint_labels=frozenset({2}))
    assert ["keypoints" in r for r in records] == critters.tolist()


def test_predictions_and_the_coco_export_give_keypoints_only_to_their_classes(tmp_path):
    det = without_foreign_keypoints(_det(), frozenset({2}))
    assert det["keypoints"][0].eq(0).all() and det["keypoints"][1, :, 2].eq(1).all()
    records = detections_to_coco_results(det, image_id=1, keypoint_labels=frozenset({2}))
    assert "keypoints" not in records[0] and len(records[1]["keypoints"]) == 9
    # without the record (an older checkpoint): as before, every detection has its keypoints
    assert all("keypoints" in r for r in detections_to_coco_results(_det(), image_id=1))
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    export = PreAnnotationExport(out_dir=tmp_path / "out", formats=["coco"], root=tmp_path / "imgs",
                                 class_names=["__background__", "ball", "critter"], masks=False,
                                 label_to_category_id={1: 1, 2: 7}, keypoint_names=NAMES, skeleton=[[1, 2]],
                                 keypoint_labels=frozenset({2}))
    export.add(1, tmp_path / "imgs" / "a.png", 32, 32, det)
    export.finish()
    coco = json.loads((tmp_path / "out" / "coco_instances.json").read_text())
    assert coco["categories"] == [{"id": 1, "name": "ball"},
                                  {"id": 7, "name": "critter", "keypoints": NAMES, "skeleton": [[1, 2]]}]
    ball, critter = coco["annotations"]
    assert "keypoints" not in ball and "num_keypoints" not in ball
    assert critter["num_keypoints"] == 3
    # read back for training: ball stays a category without keypoints
    from maskrcnn.data.coco import CocoDataset

    data = CocoDataset(json_path=str(tmp_path / "out" / "coco_instances.json"),
                       image_dir=str(tmp_path / "imgs"), keypoints=True)
    assert data.keypoint_category_ids == {7}


def test_overlays_draw_no_point_for_a_class_without_keypoints():
    from maskrcnn.visualize import draw_instances

    img = np.zeros((32, 32, 3), np.uint8)
    det = without_foreign_keypoints(_det(), frozenset({2}))
    drawn = np.asarray(draw_instances(img, {**det, "labels": torch.tensor([1, 2])}, show_boxes=False,
                                      show_labels=False, skeleton=()))
    alone = {k: (v[1:] if torch.is_tensor(v) else v) for k, v in det.items()}
    critter_only = np.asarray(draw_instances(img, alone, show_boxes=False, show_labels=False, skeleton=()))
    # the ball's zeroed points would be drawn at the corner (0, 0)
    assert not drawn[:3, :3].any()
    assert drawn.shape == critter_only.shape


def test_the_onnx_tta_refusal_names_the_heads_the_model_has():
    """Before: "the mask head runs on merged boxes" for a keypoint-only model, which has none."""
    import pytest

    from maskrcnn.predictor import Predictor

    def onnx_like(image):  # not an nn.Module: an exported graph
        return {}

    keypoints = load_config("demo_keypoints", {"model.roi_heads.mask_on": False})
    with pytest.raises(ValueError, match=r"^tta needs the PyTorch model's stages \(the keypoint head runs on "
                                         r"merged boxes\)"):
        Predictor(onnx_like, keypoints, tta=True)
    both = load_config("demo_keypoints", {"model.roi_heads.mask_on": True})
    with pytest.raises(ValueError, match=r"\(the mask and keypoint heads run on merged boxes\)"):
        Predictor(onnx_like, both, tta=True)
