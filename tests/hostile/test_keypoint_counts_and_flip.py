"""Keypoint lists of another count (kept objects, one line), the keypoint flip's pixel-index convention,
a singular ground-truth problem, and a text-mode file given to the Predictor."""

import json
import logging
import warnings

import pytest
import torch
from hostile_helpers import coco_dataset
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.transforms import flip_target
from maskrcnn.engine.evaluator import load_ground_truth
from maskrcnn.predictor import load_image

FROM_SCRATCH = ("model.norm=bn", "model.freeze_at=0")


def _with_keypoints(tmp_path, *, names, points=3):
    """coco_dataset with ``points`` keypoints (3 numbers each, all labelled) on every annotation, the
    categories naming ``names`` (None: no names)."""
    path, images, data = coco_dataset(tmp_path)
    for cat in data["categories"]:
        if names is not None:
            cat["keypoints"] = list(names)
    for a in data["annotations"]:
        x, y, _, _ = a["bbox"]
        a["keypoints"] = [v for k in range(points) for v in (x + 1 + k, y + 1, 2)]
        a["num_keypoints"] = points
    path.write_text(json.dumps(data))
    return path, images, data


def test_keypoints_of_another_count_keep_the_object_said_once(tmp_path, caplog):
    """A 2-point list where the categories name 3 dropped the whole annotation: that person's box and
    mask became background."""
    path, images, data = _with_keypoints(tmp_path, names=["head", "left", "right"])
    data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:6]
    data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:6]
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipped" summary
        ds = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    assert ds.skipped == {}
    _, target = ds[0]
    assert target["boxes"].shape[0] == 2 and target["masks"].shape[0] == 2
    assert target["keypoints"][:2, :, 2].sum() == 0  # unlabelled, as a person drawn without keypoints
    lines = [r.getMessage() for r in caplog.records if "keypoints" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "2 annotations" in lines[0] and "2 keypoints (6 numbers)" in lines[0], lines[0]
    assert "the 3 the categories name" in lines[0] and "boxes and masks kept" in lines[0], lines[0]


def test_unnamed_keypoint_set_is_said_once_and_training_says_why(cli, tmp_path):
    """Without a category's names the set is COCO's 17: one 'skipped' line per annotation, then the
    false 'no category defines keypoints ... and no annotation holds any'."""
    path, images, _ = _with_keypoints(tmp_path, names=None, points=5)
    rc, text = cli("train", "--config", "keypoint_r50_fpn", "--train-json", path, "--train-images", images,
                   "--output", tmp_path / "run", "--device", "cpu", "--set", *FROM_SCRATCH)
    assert rc == 1, text
    assert "skipped" not in text and "no annotation holds any" not in text, text
    assert (f"{path}: its annotations' keypoints hold 5 keypoints (15 numbers) but no category names them "
            "(COCO's 17 were assumed), and --config keypoint_r50_fpn trains keypoints") in text, text
    assert "name them in the category's 'keypoints' list (and 'skeleton')" in text, text


def test_keypoint_flip_keeps_the_pixel_index():
    """Keypoints are COCO pixel indices: index 40 of a 160-wide image mirrors to index 119 (W - 1 - x),
    where the flipped image has that pixel; W - x put the flipped samples 1 px off."""
    image = torch.zeros(3, 4, 160)
    image[:, 2, 40] = 1.0
    target = {"boxes": torch.tensor([[30.0, 0.0, 50.0, 4.0]]),
              "keypoints": torch.tensor([[[40.0, 2.0, 2.0], [0.0, 0.0, 0.0]]])}
    out = flip_target(target, 160)
    x, y = out["keypoints"][0, 0, :2].tolist()
    flipped = image.flip(-1)
    assert (x, y) == (119.0, 2.0) and flipped[0, int(y), int(x)] == 1.0
    assert out["keypoints"][0, 1].tolist() == [0.0, 0.0, 0.0]  # unlabelled stays (0, 0, 0)
    assert out["boxes"].tolist() == [[110.0, 0.0, 130.0, 4.0]]  # boxes are continuous: W - x


def test_one_ground_truth_problem_is_said_in_the_singular(tmp_path):
    path, _, data = coco_dataset(tmp_path)
    data["annotations"][0]["bbox"] = [1, 2, 3]
    with pytest.raises(ValueError, match="1 problem in the ground truth"):
        load_ground_truth(data, source="gt.json")


def test_a_text_mode_file_is_a_type_error_before_reading(tmp_path):
    """open(path) (text mode) raised a raw UnicodeDecodeError and moved the file's position."""
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 6), (200, 10, 10)).save(path)
    with open(path) as f:
        with pytest.raises(TypeError, match="opened in text mode.*open it with mode 'rb'"):
            load_image(f, "image 0")
        assert f.tell() == 0


@pytest.mark.parametrize("aug_w", [160, 240])
def test_tta_keypoint_boxes_bring_both_passes_to_the_same_pixel_index(aug_w):
    """A point on pixel index 40 (centre 40.5) of a 160-wide image, which a model trained on index labels
    places at 40 * s in an input of scale s = w / 160 and at w - 41 * s in its mirror: decoded, both
    passes give 40 * s; the continuous mirror alone gave the mirrored pass 41 * s, a pixel off."""
    from maskrcnn.engine import tta

    s = aug_w / 160
    box, hw, aug = torch.tensor([[30.0, 0.0, 50.0, 4.0]]), (120, 160), (90 * s, aug_w)
    frame = tta.keypoint_boxes(tta.boxes_to_augmentation(box, hw, aug, False), hw, aug, True)
    mirrored = tta.keypoint_boxes(tta.boxes_to_augmentation(box, hw, aug, True), hw, aug, True)
    # the unmirrored pass: offset from its box's left edge, decoded against the same (frame) box
    assert float(frame[0, 0]) + (40 * s - float(frame[0, 0])) == pytest.approx(40 * s)
    # the mirrored pass: offset from its box's right edge (columns reversed), decoded against the frame box
    assert float(frame[0, 0]) + (float(mirrored[0, 2]) - (aug_w - 41 * s)) == pytest.approx(40 * s)
    plain = tta.boxes_to_augmentation(box, hw, aug, False)
    assert tta.keypoint_boxes(plain, hw, aug, False) is plain  # no mirrored pass: plain prediction
