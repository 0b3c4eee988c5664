"""Probe p10_kp: the evaluation replaced a file's num_keypoints by the count of its labelled keypoints
without a word (eval --results scored 42 keypoint AP where pycocotools on the same file scored 55). The
recount stays (a stale 0 made COCOeval ignore a person); it is said in one line, with the count."""

import warnings

from maskrcnn.engine.evaluator import load_ground_truth


def _person(aid, flags, **extra):
    kp = [v for i, f in enumerate(flags) for v in (4.0 + i, 4.0 + i, f)]
    return {"id": aid, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20], "area": 400.0, "iscrowd": 0,
            "keypoints": kp, **extra}


def _ground_truth(annotations):
    return {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
            "categories": [{"id": 1, "name": "person", "keypoints": ["a", "b", "c"], "skeleton": []}],
            "annotations": annotations}


def test_a_num_keypoints_unlike_the_flags_is_recounted_and_said_with_the_count():
    gt = _ground_truth([_person(7, [2, 2, 0], num_keypoints=0), _person(8, [2, 1, 2], num_keypoints=3),
                        _person(9, [2, 0, 0], num_keypoints=3), _person(10, [0, 0, 0])])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coco = load_ground_truth(gt, source="nk_val.json")
    lines = [str(w.message) for w in caught if "num_keypoints" in str(w.message)]
    assert lines == ["nk_val.json: 2 annotations' num_keypoints differ from their labelled keypoints (the "
                     "first: annotation id 7, 0 for 2): counted from the visibility flags, as training reads "
                     "them (COCOeval ignores a person whose num_keypoints is 0)"], lines
    assert [a["num_keypoints"] for a in coco.dataset["annotations"]] == [2, 3, 1, 0]


def test_counts_that_agree_with_the_flags_say_nothing():
    gt = _ground_truth([_person(1, [2, 1, 0], num_keypoints=2), _person(2, [0, 0, 0], num_keypoints=0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_ground_truth(gt, source="ok.json")
