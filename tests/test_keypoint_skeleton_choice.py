"""Overlays join keypoints with COCO's person skeleton only for COCO's 17 keypoints (named so, in any
spelling, or unnamed): another 17-point set without a skeleton of its own (AP-10K's animals) is drawn as
points only, in show-data and in predict's overlays (``skeleton_for``); a set's own skeleton always wins."""

import json

import numpy as np
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.config import load_config
from maskrcnn.data.keypoints import COCO_KEYPOINT_NAMES, COCO_SKELETON, drawing_skeleton
from maskrcnn.visualize import skeleton_for

AP10K = ["left_eye", "right_eye", "nose", "neck", "root_of_tail", "left_shoulder", "left_elbow",
         "left_front_paw", "right_shoulder", "right_elbow", "right_front_paw", "left_hip", "left_knee",
         "left_back_paw", "right_hip", "right_knee", "right_back_paw"]


def _show(tmp_path, names, tag):
    """show-data's overlay of one 64 x 64 grey image with one box-only object whose 17 points sit at
    (8, 8) but for points 13 and 15 (COCO's left knee and left ankle, a limb of COCO's): at (56, 56)."""
    folder = tmp_path / tag
    (folder / "images").mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(folder / "images" / "a.png")
    points = [[8, 8, 2]] * 17
    points[13] = [56, 56, 2]
    cats = [{"id": 1, "name": "dog", "keypoints": names}]
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 64], "area": 4096.0, "iscrowd": 0,
           "keypoints": [v for p in points for v in p], "num_keypoints": 17}
    (folder / "d.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}], "categories": cats,
        "annotations": [ann]}))
    assert main(["show-data", "--json", str(folder / "d.json"), "--images", str(folder / "images"),
                 "--output", str(folder / "out")]) == 0
    (png,) = (folder / "out").rglob("*.png")
    return np.asarray(Image.open(png).convert("RGB"))


def test_a_17_point_set_with_other_names_and_no_skeleton_is_drawn_as_points_only(tmp_path):
    animal = _show(tmp_path, AP10K, "ap10k")
    person = _show(tmp_path, list(COCO_KEYPOINT_NAMES), "coco")
    h, w = animal.shape[:2]
    centre = (slice(h // 2 - 2, h // 2 + 3), slice(w // 2 - 2, w // 2 + 3))  # on the (8,8)-(56,56) limb
    off = animal[h * 3 // 4, w // 4]  # the object's background, off the limb and every point
    assert (person[centre] != person[h * 3 // 4, w // 4]).any()  # COCO's names: COCO's limbs joined
    assert (animal[centre] == off).all()  # AP-10K's: no line across the picture


def test_the_skeleton_overlays_use_follows_the_names():
    assert drawing_skeleton(AP10K, [], 17) == ()
    assert drawing_skeleton(None, [], 17) == COCO_SKELETON  # unnamed 17: a converted COCO model
    spelled = [n.replace("_", " ").title() for n in COCO_KEYPOINT_NAMES]  # "Left Eye"
    assert drawing_skeleton(spelled, [], 17) == COCO_SKELETON
    assert drawing_skeleton(AP10K, [[1, 2], [2, 3]], 17) == ((0, 1), (1, 2))  # its own wins
    cfg = load_config("demo_keypoints", {"model.roi_heads.num_keypoints": 17,
                                         "data.keypoint_names": tuple(AP10K)})
    assert skeleton_for(cfg) == ()
