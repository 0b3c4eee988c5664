"""``maskrcnn eval --results`` findings of the p_eval / p_keypoints probes: partial masks or keypoints,
integer-valued float ids, a category id listed twice, model-run flags given with --results, and the
messages naming the file, the value and the records in numeric order."""

import json
import warnings

import pytest
from hostile_helpers import coco_dataset, gt_as_results


def _write(tmp_path, results, name="res.json"):
    res = tmp_path / name
    res.write_text(json.dumps(results))
    return res


def _metrics(tmp_path):
    return json.loads((tmp_path / "m" / "metrics.json").read_text())


def test_some_results_without_segmentation_score_segm_on_the_others_and_say_it(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    results = gt_as_results(data)
    del results[0]["segmentation"]  # a box-only model's record joined to a mask model's
    res = _write(tmp_path, results)
    with pytest.warns(UserWarning) as caught:
        rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    said = [str(w.message) for w in caught if "no segmentation" in str(w.message)]
    assert said == [f"{res}: 1 of 4 results have no segmentation: segm AP is scored on the 3 that have one "
                    f"(those without count as absent from it)"]
    metrics = _metrics(tmp_path)
    assert metrics["bbox"]["AP"] == 100.0  # every box scored
    assert 50.0 < metrics["segm"]["AP"] < 100.0  # its object a miss of segm AP: segm was dropped silently


def test_some_results_without_keypoints_score_keypoints_on_the_others(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    for cat in data["categories"]:
        cat["keypoints"] = ["head", "left", "right"]
    results = []
    for a, r in zip(data["annotations"], gt_as_results(data)):
        x, y, w, h = a["bbox"]
        a["keypoints"] = [x + 1, y + 1, 2, x + w - 1, y + 1, 2, x + 1, y + h - 1, 2]
        results.append(dict(r, keypoints=a["keypoints"]))
    path.write_text(json.dumps(data))
    del results[3]["keypoints"]
    res = _write(tmp_path, results)
    with pytest.warns(UserWarning, match="1 of 4 results have no keypoints: keypoint AP is scored on the 3"):
        rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    metrics = _metrics(tmp_path)
    assert metrics["bbox"]["AP"] == 100.0 and 50.0 < metrics["keypoints"]["AP"] < 100.0


def test_results_of_a_class_without_keypoints_are_no_gap_in_the_keypoints(cli, tmp_path):
    """Category ``a`` owns the skeleton, ``b`` (a ball) has none: the model's ``b`` detections carry no
    keypoints, which the warning called half the file lacking them."""
    path, _, data = coco_dataset(tmp_path)
    data["categories"][0]["keypoints"] = ["head", "left", "right"]
    results = []
    for a, r in zip(data["annotations"], gt_as_results(data)):
        if a["category_id"] == 1:
            x, y, w, h = a["bbox"]
            a["keypoints"] = [x + 1, y + 1, 2, x + w - 1, y + 1, 2, x + 1, y + h - 1, 2]
            a["num_keypoints"] = 3
            r = dict(r, keypoints=a["keypoints"])
        results.append(r)
    path.write_text(json.dumps(data))
    res = _write(tmp_path, results)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    assert not [w for w in caught if "have no keypoints" in str(w.message)], [str(w.message) for w in caught]
    assert _metrics(tmp_path)["keypoints"]["AP"] == 100.0
    del results[0]["keypoints"]  # one of the skeleton's class without: said, over that class's records
    res = _write(tmp_path, results)
    with pytest.warns(UserWarning, match="1 of 2 results of a category with keypoints have no keypoints"):
        rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m2")
    assert rc == 0, text


def test_integer_valued_float_ids_are_read_as_ids_in_ground_truth_and_results(cli, tmp_path):
    """As CocoDataset (train, show-data) reads them; eval refused both files."""
    path, _, data = coco_dataset(tmp_path)
    results = gt_as_results(data)
    for a in data["annotations"]:
        a["image_id"], a["category_id"] = float(a["image_id"]), float(a["category_id"])
    data["images"][0]["id"] = 1.0
    path.write_text(json.dumps(data))
    for r in results:
        r["image_id"], r["category_id"] = float(r["image_id"]), float(r["category_id"])
    res = _write(tmp_path, results)
    rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    assert _metrics(tmp_path)["bbox"]["AP"] == 100.0 and _metrics(tmp_path)["segm"]["AP"] == 100.0


def test_a_ground_truth_id_of_the_wrong_type_is_not_called_unknown(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    data["annotations"][0]["image_id"] = 1.5
    path.write_text(json.dumps(data))
    res = _write(tmp_path, gt_as_results(data))
    rc, text = cli("eval", "--results", res, "--json", path)
    assert rc == 1 and "annotation id 1 image_id 1.5 is not an integer or a string" in text
    assert "not an image of the file" not in text


def test_result_indices_are_listed_in_numeric_order(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    results = gt_as_results(data) * 3  # 12 records
    results = [{k: v for k, v in r.items() if k != "score"} for r in results]
    res = _write(tmp_path, results)
    rc, text = cli("eval", "--results", res, "--json", path)
    assert rc == 1 and "'score' missing in results 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... (12 in all)" in text


def test_a_category_id_listed_twice_is_refused_as_an_image_id_is(cli, tmp_path):
    """pycocotools kept the last name, CocoDataset the first: eval scored under another name."""
    path, _, data = coco_dataset(tmp_path)
    data["categories"].append({"id": 1, "name": "again"})
    path.write_text(json.dumps(data))
    res = _write(tmp_path, gt_as_results(data))
    rc, text = cli("eval", "--results", res, "--json", path)
    assert rc == 1 and str(path) in text and "category id 1 appears twice" in text


@pytest.mark.parametrize("flags, named", [
    (["--max-images", "2"], "--max-images applies to --weights"),
    (["--tta", "--device", "cpu"], "--device, --tta apply to --weights"),
    (["--tile", "64", "--batch-size", "4"], "--batch-size, --tile apply to --weights"),
    (["--int8", "--dtype", "bfloat16", "--parts", "rpn"], "--dtype, --int8, --parts apply to --weights"),
    (["--exif-frame", "stored"], "--exif-frame applies to --weights"),  # was accepted and ignored
])  # fmt: skip
def test_model_run_flags_with_results_are_refused_naming_them(cli, tmp_path, flags, named):
    path, _, data = coco_dataset(tmp_path)
    res = _write(tmp_path, gt_as_results(data))
    rc, text = cli("eval", "--results", res, "--json", path, *flags)
    assert rc == 1 and named in text and "Traceback" not in text


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_images_below_one_is_a_flag_error(cli, capsys, tmp_path, value):
    """It was 'none of its -1 images could be evaluated (each named above)', after loading the model."""
    path, _, data = coco_dataset(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli("eval", "--weights", tmp_path / "none.pth", "--json", path, "--max-images", value)
    assert exit_.value.code == 2
    assert f"argument --max-images: must be >= 1, got {value}" in capsys.readouterr().err


def test_a_bad_mask_leaves_its_box_in_bbox_ap(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    results = gt_as_results(data)
    results[0]["segmentation"] = {"size": [10, 10], "counts": [100]}  # a mask of another image size
    res = _write(tmp_path, results)
    with pytest.warns(UserWarning, match=r"result 0 \(image_id 1\): .*image size .*left out of segm AP only"):
        rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    assert _metrics(tmp_path)["bbox"]["AP"] == 100.0 and _metrics(tmp_path)["segm"]["AP"] < 100.0


def test_a_string_score_is_shown_quoted(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    results = gt_as_results(data)
    results[1]["score"] = "0.9"
    res = _write(tmp_path, results)
    with pytest.warns(UserWarning, match=r"result 1 \(image_id 1\): score '0.9' is a string, not a number"):
        rc, text = cli("eval", "--results", res, "--json", path)
    assert rc == 0, text


def test_different_keypoint_sets_error_names_the_ground_truth_file(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    data["categories"][0]["keypoints"] = ["head", "left", "right"]
    data["categories"][1]["keypoints"] = ["a", "b"]
    for a in data["annotations"]:
        a["keypoints"] = [1, 1, 2] * (3 if a["category_id"] == 1 else 2)
    path.write_text(json.dumps(data))
    results = [dict(r, keypoints=[1, 1, 2] * (3 if r["category_id"] == 1 else 2))
               for r in gt_as_results(data)]
    res = _write(tmp_path, results)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc, text = cli("eval", "--results", res, "--json", path)
    assert rc == 1 and f"{path}: categories with different keypoint sets" in text


def test_ids_mixed_with_file_names_are_refused_as_such(cli, tmp_path):
    """It said "image ids im2.png are not in the ground truth (neither as ids nor as file names of its
    images)", while im2.png is image 2's file name."""
    path, _, data = coco_dataset(tmp_path)
    results = gt_as_results(data)
    results[2]["image_id"] = "im2.png"
    res = _write(tmp_path, results)
    rc, text = cli("eval", "--results", res, "--json", path)
    assert rc == 1 and "mix the ground truth's ids and file names" in text
    assert "'im2.png' is the file name of image 2" in text
