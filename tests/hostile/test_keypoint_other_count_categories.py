"""Ground-truth keypoints of another count than their category's, with two keypoint categories naming
different counts: the evaluation's note (and keypoint AP's reason when none is left) said the first
category's count of them all ("not the 3 the categories name" of a person of a 2-name category)."""

import json
import warnings

from hostile_helpers import coco_dataset, gt_as_results

from maskrcnn.engine.evaluator import evaluate_results_file


def _two_sets(tmp_path, lengths):
    """coco_dataset with category 'a' naming 3 keypoints and 'b' 2; annotation k (ids 1..4; 1 and 3 of
    'a', 2 and 4 of 'b') given ``lengths[k - 1]`` points. (gt path, results with keypoints)."""
    path, _, data = coco_dataset(tmp_path)
    data["categories"][0]["keypoints"], data["categories"][1]["keypoints"] = ["h", "l", "r"], ["p", "q"]
    for a, n in zip(data["annotations"], lengths):
        x, y = a["bbox"][:2]
        a["keypoints"] = [x + 1, y + 1, 2] * n
    path.write_text(json.dumps(data))
    own = {1: 3, 2: 2}
    results = [dict(r, keypoints=[r["bbox"][0] + 1, r["bbox"][1] + 1, 2] * own[r["category_id"]])
               for r in gt_as_results(data)]
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    return path, res


def _said(path, res, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_results_file(path, res, **kw)
    return metrics, [str(w.message) for w in caught]


def test_each_category_is_named_with_its_own_count(tmp_path):
    path, res = _two_sets(tmp_path, (2, 3, 3, 2))  # annotation 1 ('a') holds 2, annotation 2 ('b') 3
    metrics, said = _said(path, res, iou_types=["bbox"])
    line = (f"{path}: 2 annotations (the first id 1) hold 2 keypoints (6 numbers) or 3 keypoints (9 "
            f"numbers), not their category's count ('a' names 3, 'b' names 2): their boxes and masks "
            f"are scored")
    assert [m.startswith(line) for m in said].count(True) == 1, said
    assert metrics["bbox"]["AP"] == 100.0


def test_one_categorys_count_is_said_as_before(tmp_path):
    path, res = _two_sets(tmp_path, (2, 2, 3, 2))  # only annotation 1, of 'a'
    _, said = _said(path, res, iou_types=["bbox"])
    assert any(m.startswith(f"{path}: 1 annotation (id 1) holds 2 keypoints (6 numbers), not the 3 the "
                            f"categories name") for m in said), said


def test_keypoint_ap_undefined_names_each_categorys_count(tmp_path):
    path, res = _two_sets(tmp_path, (2, 3, 2, 3))  # every person of another count than its category's
    metrics, _ = _said(path, res, iou_types=["bbox", "keypoints"])
    why = metrics["keypoints"]["not_scored"]
    assert "all 4 hold keypoints of another count than their category's ('a' names 3, 'b' names 2)" in why, (
        why)
