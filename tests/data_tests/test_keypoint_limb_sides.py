"""Side letters after a limb's capital (DeepLabCut's ``pawFL``/``FL_paw``, the fly's legs ``T1L``) pair for
the flip, or are warned about when alone; OpenPose's side letters (``LEye``, ``l_eye``) read as COCO's
names for the OKS sigmas and the drawn skeleton, as the flip map reads them; COCO's 17 names in another
order are joined by name."""

import warnings

import pytest

from maskrcnn.data.keypoints import (
    COCO_KEYPOINT_NAMES,
    COCO_KEYPOINT_SIGMAS,
    COCO_SKELETON,
    DEFAULT_KEYPOINT_SIGMA,
    drawing_skeleton,
    flip_map_from_names,
    flip_pairs,
    keypoint_sigmas,
)


def _pairs(names):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = {frozenset(p) for p in flip_pairs(flip_map_from_names(names), names)}
    return pairs, [str(w.message) for w in caught if "like one side" in str(w.message)]


@pytest.mark.parametrize("names,expected", [
    (["nose", "pawFL", "pawFR", "pawHL", "pawHR", "earL", "earR"],
     [("pawFL", "pawFR"), ("pawHL", "pawHR"), ("earL", "earR")]),
    (["nose", "FL_paw", "FR_paw", "HL_paw", "HR_paw"], [("FL_paw", "FR_paw"), ("HL_paw", "HR_paw")]),
    (["T1L", "T1R", "T2L", "T2R", "head", "wingL", "wingR"],
     [("T1L", "T1R"), ("T2L", "T2R"), ("wingL", "wingR")]),
])
def test_limb_side_letters_pair(names, expected):
    pairs, lone = _pairs(names)  # before: only earL/earR and wingL/wingR, the paws and legs kept in place
    assert pairs == {frozenset(p) for p in expected} and lone == []


def test_a_lone_limb_side_letter_is_warned_about_and_capitals_alone_are_no_side():
    pairs, lone = _pairs(["nose", "pawFL", "T1L", "earL", "earR"])
    assert pairs == {frozenset({"earL", "earR"})}
    assert len(lone) == 1 and "pawFL" in lone[0] and "T1L" in lone[0]  # before: nothing said
    pairs, lone = _pairs(["ACL", "PCL", "ACR", "PCR", "Lip", "C7", "L1", "legL1R"])
    assert pairs == set() and lone == []


def test_openpose_side_letters_get_coco_sigmas_as_the_flip_map_pairs_them():
    coco = dict(zip(COCO_KEYPOINT_NAMES, COCO_KEYPOINT_SIGMAS))
    names = ["LEye", "REye", "l_eye", "eyeR", "Nose"]
    assert keypoint_sigmas(names, 5) == (coco["left_eye"], coco["right_eye"], coco["left_eye"],
                                         coco["right_eye"], coco["nose"])  # before: 0.0669 for the eyes
    assert keypoint_sigmas(["Lip", "Rear", "tail_l"], 3) == (DEFAULT_KEYPOINT_SIGMA,) * 3  # no COCO name


def test_coco_names_in_openpose_spelling_or_another_order_get_coco_limbs_by_name():
    openpose = ["nose"] + [("L" if n.startswith("left") else "R") + n.split("_")[1].capitalize()
                           for n in COCO_KEYPOINT_NAMES[1:]]  # LEye, REye, ..., RAnkle
    assert openpose[1:3] == ["LEye", "REye"]
    assert drawing_skeleton(openpose, [], 17) == COCO_SKELETON  # before: () (points only)
    shuffled = list(reversed(COCO_KEYPOINT_NAMES))
    edges = drawing_skeleton(shuffled, [], 17)
    by_name = {frozenset((shuffled[a], shuffled[b])) for a, b in edges}
    assert by_name == {frozenset((COCO_KEYPOINT_NAMES[a], COCO_KEYPOINT_NAMES[b])) for a, b in COCO_SKELETON}
