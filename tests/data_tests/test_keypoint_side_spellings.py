"""Side spellings the probe found neither paired nor warned: a fly's legs ``L1``..``R3`` (side letter and
a digit), quadrupeds' ``LF``/``RF``/``LH``/``RH`` and the lowercase prefix ``lEye``/``rEye`` pair for the
flip when the mirrored name exists; the side word after the part (``eye_left``, ``ShoulderLeft``) gets
COCO's OKS sigma as ``left_eye`` does; a category's keypoint names are checked once at load, for every
command (non-empty distinct strings), naming the file and the category."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.keypoints import (
    COCO_KEYPOINT_NAMES,
    COCO_KEYPOINT_SIGMAS,
    DEFAULT_KEYPOINT_SIGMA,
    flip_map_from_names,
    flip_pairs,
    keypoint_sigmas,
)
from maskrcnn.engine.evaluator import load_ground_truth

FLY = ["head", "thorax", "wingL", "wingR", "L1", "R1", "L2", "R2", "L3", "R3", "abdomen_tip", "antennaL",
       "antennaR"]


def _pairs(names):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = flip_pairs(flip_map_from_names(names), names)
    said = [str(w.message) for w in caught if "like one side" in str(w.message)]
    return {frozenset(p) for p in pairs}, said


def test_fly_legs_pair_left_with_right_by_number():
    pairs, lone = _pairs(FLY)  # before: only wingL/wingR, antennaL/antennaR; the legs kept, unsaid
    legs = {frozenset((f"L{k}", f"R{k}")) for k in (1, 2, 3)}
    assert legs <= pairs and frozenset(("wingL", "wingR")) in pairs and len(pairs) == 5 and lone == []


@pytest.mark.parametrize("names,expected", [
    (["head", "LF", "LH", "RF", "RH", "tail"], [("LF", "RF"), ("LH", "RH")]),
    (["nose", "lEye", "rEye", "lEar", "rEar"], [("lEye", "rEye"), ("lEar", "rEar")]),
    (["L1_tip", "R1_tip", "paw_LF", "paw_RF"], [("L1_tip", "R1_tip"), ("paw_LF", "paw_RF")]),
])
def test_quadruped_limbs_and_lowercase_side_prefixes_pair(names, expected):
    pairs, lone = _pairs(names)
    assert pairs == {frozenset(p) for p in expected} and lone == []


def test_words_starting_with_l_or_r_stay_unpaired_and_lone_numbers_unsaid():
    pairs, lone = _pairs(["Lear", "Rear", "leg", "rump", "Lip", "C7", "L1", "L5", "LF"])
    assert pairs == set() and lone == []  # L1, L5: vertebrae; no mirror, no side
    pairs, lone = _pairs(["nose", "lEye", "LThumb"])
    assert pairs == set() and len(lone) == 1 and "lEye" in lone[0] and "LThumb" in lone[0]


def test_side_after_the_part_gets_coco_sigmas_as_the_flip_map_pairs_it():
    coco = dict(zip(COCO_KEYPOINT_NAMES, COCO_KEYPOINT_SIGMAS))
    spellings = {
        "eye": ["eye_left", "eye_right"], "knee": ["knee_left", "knee_right"],
        "shoulder": ["ShoulderLeft", "ShoulderRight"], "hip": ["HIP_LEFT", "HIP_RIGHT"],
        "ear": ["ear.left", "ear.right"], "wrist": ["wristleft", "wristright"], "elbow": ["lElbow", "rElbow"],
    }
    for part, names in spellings.items():
        pairs, _ = _pairs(names)
        assert pairs == {frozenset(names)}  # the flip map reads them as sided ...
        # ... and so does the sigma lookup (before: the default for all but lElbow's none)
        assert keypoint_sigmas(names, 2) == (coco[f"left_{part}"], coco[f"right_{part}"]), names
    assert keypoint_sigmas(["tail_left", "copyright", "leftover"], 3) == (DEFAULT_KEYPOINT_SIGMA,) * 3


def _file(tmp_path, names):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "1.png")
    path = tmp_path / "kp.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.png", "width": 16, "height": 16}],
        "categories": [{"id": 1, "name": "fly", "keypoints": names}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64,
                         "iscrowd": 0, "keypoints": [4, 4, 2] * len(names)}]}))
    return path


@pytest.mark.parametrize("names,said", [
    (["head", ""], "non-empty strings"), (["head", 7], "non-empty strings .*got 7"),
    (["head", "Head", "tail"], "distinct .*head appears more than once"), ("head", "must be a list"),
])
def test_bad_keypoint_names_are_refused_at_load_for_every_command(tmp_path, names, said):
    path = _file(tmp_path, names)
    for keypoints in ("auto", False, True):  # show-data / eval, a mask model, a keypoint model
        with pytest.raises(ValueError, match=f"kp.json: category fly: .*{said}"):
            CocoDataset(json_path=path, image_dir=tmp_path, keypoints=keypoints)
    with pytest.raises(ValueError, match=f"category 1: .*{said}"):  # eval --results' ground truth
        load_ground_truth(json.loads(path.read_text()), source=str(path))
    CocoDataset(json_path=_file(tmp_path, ["head", "tail"]), image_dir=tmp_path, keypoints=True)


def test_back_and_rear_legs_pair_and_a_lone_leg_in_a_lettered_set_is_warned():
    """Reader r4_kpcity: LF/RF/LB/RB (or LR/RR) paired only the front legs, and the set's pairs switched
    the 'pairs nothing' warning off: the back legs' labels were swapped by every flip without a word."""
    import warnings

    from maskrcnn.data.keypoints import flip_map_from_names

    for names in (["nose", "LF", "RF", "LB", "RB"], ["nose", "LF", "RF", "LR", "RR"]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            flips = flip_map_from_names(names)
        assert flips == (0, 2, 1, 4, 3), (names, flips)
    with pytest.warns(UserWarning, match=r"keypoints? L2 looks? like one side"):
        assert flip_map_from_names(["head", "L1", "R1", "L2"]) == (0, 2, 1, 3)
