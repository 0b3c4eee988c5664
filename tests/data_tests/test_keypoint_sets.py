"""Keypoint sets (data/keypoints.py) and their use: the flip map from names, OKS sigmas, the skeleton,
the visible-keypoint image filter and the synthetic pose set's left / right convention."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.keypoints import (
    COCO_KEYPOINT_NAMES,
    COCO_KEYPOINT_SIGMAS,
    DEFAULT_KEYPOINT_SIGMA,
    flip_map_from_names,
    keypoint_flip_map,
    keypoint_sigmas,
    skeleton_edges,
)
from maskrcnn.data.poses import POSE_KEYPOINTS, POSE_SKELETON, generate_pose_dataset
from maskrcnn.data.transforms import COCO_KEYPOINT_FLIP_MAP, flip_target


def test_flip_map_from_names():
    assert flip_map_from_names(COCO_KEYPOINT_NAMES) == COCO_KEYPOINT_FLIP_MAP
    # the pose set: head, neck stay; then (left, right) pairs
    assert flip_map_from_names(POSE_KEYPOINTS) == (0, 1, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12)
    # any spelling of the side word, any position; words merely containing "left" are not sides
    names = ["Left-Paw", "tail", "RIGHT_EAR", "right-paw", "LEFT_EAR", "ear.left.tip", "ear.right.tip",
             "leftover"]
    assert flip_map_from_names(names) == (3, 1, 4, 0, 2, 6, 5, 7)
    # one-letter sides (the Animal-Pose set's names) swap when both exist; a lone one stays
    names = ["Nose", "L_Eye", "R_Eye", "L_F_Paw", "r_f_paw", "TailBase", "L_only", "Lr"]
    assert flip_map_from_names(names) == (0, 2, 1, 4, 3, 5, 6, 7)
    names = ["nose", "leftEye", "rightEye", "LeftHip", "RightHip", "handLeft", "handRight", "leftover",
             "RIGHTOVER", "cleftRight"]  # the last three: no side word (cleftRight: no partner)
    assert flip_map_from_names(names) == (0, 2, 1, 4, 3, 6, 5, 7, 8, 9)
    assert keypoint_flip_map(None, 17) == COCO_KEYPOINT_FLIP_MAP  # unnamed 17: COCO's
    assert keypoint_flip_map(None, 5) is None
    with pytest.raises(ValueError, match="'left_fin' has no mirror keypoint 'right_fin'"):
        flip_map_from_names(["left_fin", "tail"], source="fish.json")
    with pytest.raises(ValueError, match="distinct"):
        flip_map_from_names(["a", "A"])


def test_oks_sigmas_by_name_config_or_default():
    assert keypoint_sigmas(COCO_KEYPOINT_NAMES, 17) == COCO_KEYPOINT_SIGMAS
    assert keypoint_sigmas(None, 17) == COCO_KEYPOINT_SIGMAS
    assert keypoint_sigmas(None, 3) == (DEFAULT_KEYPOINT_SIGMA,) * 3
    assert DEFAULT_KEYPOINT_SIGMA == pytest.approx(np.mean(COCO_KEYPOINT_SIGMAS), abs=1e-4)
    pose = keypoint_sigmas(POSE_KEYPOINTS, 14)
    assert pose[:2] == (DEFAULT_KEYPOINT_SIGMA,) * 2  # head, neck: not COCO names
    assert pose[2:4] == (0.079, 0.079) and pose[-1] == 0.089  # shoulders, ankles: COCO's
    assert keypoint_sigmas(POSE_KEYPOINTS, 14, [0.1] * 14) == (0.1,) * 14
    with pytest.raises(ValueError, match="data.keypoint_sigmas: expected 14 positive"):
        keypoint_sigmas(POSE_KEYPOINTS, 14, [0.1] * 13)


def test_skeleton_edges():
    assert skeleton_edges([[1, 2], [2, 3]], 3) == ((0, 1), (1, 2))
    with pytest.raises(ValueError, match="pose.json: each skeleton entry"):
        skeleton_edges([[1, 4]], 3, source="pose.json")


def _pose_json(tmp_path, anns, skeleton=((1, 2),)):
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "b.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 50},
                   {"id": 2, "file_name": "b.png", "height": 40, "width": 50}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": ["left_hand", "right_hand"],
                        "skeleton": [list(p) for p in skeleton]}],
    }
    path = tmp_path / "kp.json"
    path.write_text(json.dumps(data))
    return path


def test_dataset_skeleton_and_visible_keypoint_filter(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20],
         "keypoints": [10, 10, 2, 20, 10, 1]},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "keypoints": [0, 0, 0, 0, 0, 0]},
    ]
    path = _pose_json(tmp_path, anns)
    everything = CocoDataset(json_path=path, image_dir=tmp_path, keypoints=True)
    assert len(everything) == 2 and everything.keypoint_skeleton == [[1, 2]]
    assert everything.to_coco_dict()["categories"][0]["skeleton"] == [[1, 2]]
    filtered = CocoDataset(json_path=path, image_dir=tmp_path, keypoints=True, min_keypoints_per_image=1)
    assert filtered.ids == [1] and filtered.skipped["image_with_too_few_keypoints"] == 1
    with pytest.raises(ValueError, match="kp.json: category 'person': each skeleton entry"):
        CocoDataset(json_path=_pose_json(tmp_path, anns, skeleton=((1, 3),)), image_dir=tmp_path,
                    keypoints=True)


def test_pose_set_left_is_on_the_right_before_and_after_a_flip(tmp_path):
    """The figures face the viewer (left shoulder on the image's right); a flip with the map derived
    from the names keeps that true, a flip without the swap would break it."""
    paths = generate_pose_dataset(tmp_path, num_train=6, num_val=0, seed=3)
    data = json.loads(open(paths["train_json"]).read())
    assert data["categories"][0]["keypoints"] == list(POSE_KEYPOINTS)
    assert [tuple(p) for p in data["categories"][0]["skeleton"]] == list(POSE_SKELETON)
    ds = CocoDataset(json_path=paths["train_json"], image_dir=paths["train_images"], keypoints=True)
    flip = flip_map_from_names(ds.keypoint_names)
    pairs = [(POSE_KEYPOINTS.index(f"left_{p}"), POSE_KEYPOINTS.index(f"right_{p}"))
             for p in ("shoulder", "hip")]
    checked = 0
    for i in range(len(ds)):
        image, target = ds[i]
        kp = target["keypoints"]  # (M, 14, 3)
        flipped = flip_target(target, image.shape[-1], flip)["keypoints"]
        unswapped = flip_target(target, image.shape[-1], None)["keypoints"]
        for a, b in pairs:
            both = (kp[:, a, 2] > 0) & (kp[:, b, 2] > 0)
            checked += int(both.sum())
            assert bool((kp[both, a, 0] > kp[both, b, 0]).all())
            assert bool((flipped[both, a, 0] > flipped[both, b, 0]).all())
            assert not bool((unswapped[both, a, 0] > unswapped[both, b, 0]).any())
        vis = kp[..., 2] > 0
        assert torch.allclose(flip_target({"keypoints": flipped}, image.shape[-1], flip)["keypoints"][vis],
                              kp[vis])  # twice is the identity
    assert checked > 10
