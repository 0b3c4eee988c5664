"""Review findings on ``evaluate_results_file`` / ``maskrcnn eval --results``: the unknown image ids named
without the file names among them, a dict ground truth's errors naming ``gt_source``, and a record that
carries no field of any scored type refused."""

import json

import pytest
from hostile_helpers import coco_dataset, gt_as_results

from maskrcnn.engine.evaluator import evaluate_results_file


def _write(tmp_path, results, name="res.json"):
    res = tmp_path / name
    res.write_text(json.dumps(results))
    return res


def _refusal_with_image_ids(tmp_path, image_ids: dict):
    """The ground truth's own annotations as results, with ``image_ids`` ({record index: image_id})
    written over theirs; the results file and the message ``evaluate_results_file`` refuses it with."""
    path, _, data = coco_dataset(tmp_path)
    results = gt_as_results(data)
    for index, image_id in image_ids.items():
        results[index]["image_id"] = image_id
    res = _write(tmp_path, results)
    with pytest.raises(ValueError) as e:
        evaluate_results_file(path, res)
    return res, str(e.value)


def test_unknown_ids_mixed_with_file_names_name_only_the_unknown(tmp_path):
    # it said "image ids 999, im2.png are not in the ground truth (neither as ids nor as file names of
    # its images)" although im2.png is image 2's file name
    res, message = _refusal_with_image_ids(tmp_path, {0: 999, 1: "im1.png", 2: "im2.png", 3: "im2.png"})
    # mostly file names (2 of 3 values, none an id): read so, the one value of no image named
    assert message == (f"{res}: image_id read as file names (2 of its 3 values name one image of the "
                            "ground truth by file name, base name or stem; none is an id of its images), but "
                            "999 names none of its images: predictions of images it does not list?")


def test_unknown_ids_beside_more_ids_than_file_names_name_only_the_unknown(tmp_path):
    res, message = _refusal_with_image_ids(tmp_path, {0: 999, 1: "im1.png"})  # ids 2 and 2 beside them
    assert message == (f"{res}: image ids 999 are not in the ground truth (neither as ids nor as file "
                            "names of its images); 1 other value(s) are file names of its images: matched "
                            "by file name only when more values are file names than ids")


def test_a_dict_ground_truths_errors_name_gt_source(tmp_path):
    path, _, data = coco_dataset(tmp_path)
    data["annotations"][0]["image_id"] = 77  # no such image
    res = _write(tmp_path, gt_as_results(data))
    with pytest.raises(ValueError, match=r"^my_gt\.json: ") as e:
        evaluate_results_file(data, res, gt_source="my_gt.json")
    assert "ground truth:" not in str(e.value)


@pytest.mark.parametrize("keep", ["segmentation", "keypoints"])
def test_a_record_with_no_field_of_a_scored_type_is_refused(tmp_path, keep):
    # without bbox in the file, segm / keypoints are scored on the records that have them; one with
    # neither (only ids and a score) was accepted silently and scored nowhere
    path, _, data = coco_dataset(tmp_path)
    for cat in data["categories"]:
        cat["keypoints"] = ["head"]
    for a in data["annotations"]:
        a["keypoints"], a["num_keypoints"] = [a["bbox"][0] + 1, a["bbox"][1] + 1, 2], 1
    path.write_text(json.dumps(data))
    results = [{k: v for k, v in r.items() if k != "bbox"} for r in gt_as_results(data)]
    for r, a in zip(results, data["annotations"]):
        if keep == "keypoints":
            r["keypoints"] = a["keypoints"]
            del r["segmentation"]
    del results[1][keep], results[3][keep]  # 1 and 3: ids and a score only
    res = _write(tmp_path, results)
    with pytest.warns(UserWarning), pytest.raises(ValueError) as e:
        evaluate_results_file(path, res)
    assert str(e.value) == f"{res}: {keep!r} missing in results 1, 3"
