"""What a probe of keypoint datasets found after the first round: a keypoint model scored on a file
without keypoints (pycocotools' KeyError after the inference), a model scored on a file of other classes
(refused after the inference), unpaired glued side names, visibility flags outside 0/1/2, the flip map
a run used unrecorded, mask configs dropping keypoints silently, keypoint configs on mask-only files."""

import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.config import load_config


def _file(folder, categories, annotations, *, size=(32, 32), name="data.json"):
    """A COCO file with two ``size`` images written beside it (folder/images)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in (1, 2):
        Image.fromarray(np.full((h, w, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    path = folder / name
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i in (1, 2)],
        "categories": categories, "annotations": annotations}))
    return path, images


def _box(aid, image_id, category_id=1, **extra):
    return {"id": aid, "image_id": image_id, "category_id": category_id, "bbox": [4, 4, 20, 20],
            "area": 400.0, "iscrowd": 0, **extra}


# ---------------------------------------------------------------------------- 1. no keypoints in the file


def test_keypoint_model_on_a_file_without_keypoints_scores_boxes_and_says_why(tmp_path, capsys):
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.inference import build_evaluator

    path, images = _file(tmp_path, [{"id": 1, "name": "person"}], [_box(1, 1, segmentation=[])])
    cfg = load_config("demo_keypoints", {"model.roi_heads.num_keypoints": 17})
    ds = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    predictor = types.SimpleNamespace(cfg=cfg, class_names=["__background__", "person"],
                                      label_to_category_id={1: 1})
    capsys.readouterr()
    evaluator = build_evaluator(predictor, ds)
    err = capsys.readouterr().err
    assert f"note: {path} defines no keypoints" in err and "no keypoint AP" in err, err
    evaluator.process(1, {"boxes": torch.tensor([[4.0, 4, 24, 24]]), "scores": torch.tensor([0.9]),
                          "labels": torch.tensor([1]), "keypoints": torch.ones(1, 17, 3)})
    metrics = evaluator.evaluate()  # was: KeyError 'num_keypoints' inside pycocotools
    assert set(metrics) == {"bbox"} and metrics["bbox"]["AP"] == pytest.approx(100.0)


# ---------------------------------------------------------------------------- 2. no class in common


def test_eval_refuses_a_file_of_other_classes_before_the_inference(cli, tmp_path, tiny_checkpoint):
    path, images = _file(tmp_path, [{"id": 1, "name": "person"}], [_box(1, 1), _box(2, 2)])
    rc, text = cli("eval", "--weights", tiny_checkpoint, "--json", path, "--images", images,
                   "--device", "cpu")
    assert rc == 1, text
    assert (f"{path}: none of its categories (person) is among the classes of {tiny_checkpoint} (a, b): "
            "no detection could be scored") in text, text
    assert "s/image" not in text, text  # refused before the inference (no progress line)


# ---------------------------------------------------------------------------- 3. keypoint config, none


def test_keypoint_config_on_a_file_without_keypoints_names_the_way_out(cli, tmp_path):
    path, images = _file(tmp_path, [{"id": 1, "name": "circle"}],
                         [_box(1, 1, segmentation=[[4, 4, 24, 4, 24, 24]]), _box(2, 2)])
    rc, text = cli("train", "--config", "keypoint_r50_fpn", "--train-json", path, "--train-images", images,
                   "--output", tmp_path / "run", "--device", "cpu")
    assert rc == 1, text
    assert (f"{path}: no category defines keypoints (a 'keypoints' list of names) and no annotation holds "
            "any, but --config keypoint_r50_fpn trains keypoints (model.roi_heads.keypoint_on); train boxes "
            "and masks with a mask config (--config r50_fpn), or --set model.roi_heads.keypoint_on=false"
            ) in text, text
    assert "no usable training image" not in text


def test_no_usable_training_image_says_the_skips_in_words(cli, tmp_path):
    from maskrcnn.engine.training import skip_words

    assert skip_words({"missing_image_file": 3, "image_without_annotations": 47}) == (
        "image without annotations: 47; missing image file: 3")
    path, images = _file(tmp_path, [{"id": 1, "name": "circle"}], [_box(1, 1), _box(2, 2)])
    rc, text = cli("train", "--config", "r50_fpn", "--train-json", path, "--train-images", tmp_path,
                   "--output", tmp_path / "run", "--device", "cpu")
    assert rc == 1, text
    assert f"{path}: no usable training image (skipped: missing image file: 2; unknown image: 2)" in text
