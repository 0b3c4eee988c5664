"""Hostile results files at ``maskrcnn eval --results``: wrong types, NaN, garbage or oversized RLE
(a hang before), ids of the wrong kind, files that are not results at all."""

import json
import subprocess
import sys

import pytest
from hostile_helpers import coco_dataset, gt_as_results

from maskrcnn.data.coco import CocoDataset

# field -> (a bad value, words of the reason); the bad record is result 1, the other three are perfect
BAD_RESULTS = {
    "score_string": ("score", "0.9", "score"),
    "score_nan": ("score", float("nan"), "score"),
    "bbox_3_numbers": ("bbox", [1, 2, 3], "bbox"),
    "bbox_nan": ("bbox", [float("nan"), 1, 2, 3], "bbox"),
    "bbox_negative": ("bbox", [1, 1, -4, 3], "negative"),
    "rle_garbage": ("segmentation", {"size": [40, 50], "counts": "\x01\x02"}, "segmentation"),
    "rle_wrong_size": ("segmentation", {"size": [4, 5], "counts": [20]}, "image size"),
    "rle_counts_float": ("segmentation", {"size": [40, 50], "counts": [1.5, 1998.5]}, "integers"),
    "rle_counts_overflow": ("segmentation", {"size": [40, 50], "counts": [0, 2**40, 5]}, "2**32"),
    "polygon_far_outside": ("segmentation", [[1, 1, 5, 1, 5, 1e7]], "far outside"),
}


def _run_with(cli, tmp_path, edit):
    path, _, data = coco_dataset(tmp_path)
    results = gt_as_results(data)
    edit(results)
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    return rc, text, res


@pytest.mark.parametrize("case", sorted(BAD_RESULTS))
def test_bad_result_is_left_out_with_a_warning_naming_it(cli, tmp_path, case):
    field, value, words = BAD_RESULTS[case]
    with pytest.warns(UserWarning) as caught:
        rc, text, res = _run_with(cli, tmp_path, lambda r: r[1].__setitem__(field, value))
    assert rc == 0, text
    message = " ".join(str(w.message) for w in caught)
    assert str(res) in message and "1 of 4 results left out" in message and "result 1 " in message
    assert words in message
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    # the other three still count; the bad one is a miss of the AP its field is scored by. A bad mask
    # leaves its box in bbox AP (it was dropped from both, bbox AP moving for a mask problem)
    hit = "segm" if field == "segmentation" else "bbox"
    assert 50.0 < metrics[hit]["AP"] < 100.0
    if field == "segmentation":
        assert metrics["bbox"]["AP"] == 100.0 and "left out of segm AP only" in message


@pytest.mark.parametrize(
    "edit, words",
    [(lambda r: r[0].__setitem__("image_id", [1]), "not an integer or a string"),
     (lambda r: r[2].__setitem__("category_id", None), "not an integer or a string"),
     (lambda r: r[0].__setitem__("image_id", 999), "image ids 999 are not in the ground truth"),
     (lambda r: r[3].pop("score"), "'score' missing in results 3")],
)  # fmt: skip
def test_results_for_another_dataset_are_refused(cli, tmp_path, edit, words):
    rc, text, res = _run_with(cli, tmp_path, edit)
    assert rc == 1 and str(res) in text and words in text
    assert not (tmp_path / "m" / "metrics.json").exists()


@pytest.mark.parametrize(
    "content, words",
    [("{\"image_id\": 1}", "results are a JSON list"), ("[1, 2]", "result 0 is not an object"),
     ("[{\"image_id\": 1,", "not valid JSON"), ("[" * 100000 + "]" * 100000, "not valid JSON")],
)  # fmt: skip
def test_file_that_is_not_results_is_named(cli, tmp_path, content, words):
    path, _, _ = coco_dataset(tmp_path)
    res = tmp_path / "res.json"
    res.write_text(content)
    rc, text = cli("eval", "--results", res, "--json", path)
    assert rc == 1 and str(res) in text and words in text


def test_rle_covering_more_pixels_than_its_size_does_not_hang(tmp_path):
    """Before validation this results file made pycocotools loop for ever."""
    path, _, data = coco_dataset(tmp_path)
    results = gt_as_results(data)
    # compressed counts 0, 2**31 - 1, 0, 2**31 - 1 (as pycocotools' own encoder writes them)
    results[0]["segmentation"] = {"size": [40, 50], "counts": "0oooooo100"}
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    proc = subprocess.run(
        [sys.executable, "-m", "maskrcnn.cli", "eval", "--results", str(res), "--json", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "result 0" in proc.stderr and "cover" in proc.stderr


def _keypoint_dataset(tmp_path, categories=(1, 2)):
    """coco_dataset with 3 keypoints (head, left, right) on the given categories' instances:
    (gt path, data, the ground truth's instances as results, keypoints given to every one)."""
    path, _, data = coco_dataset(tmp_path)
    for cat in data["categories"]:
        if cat["id"] in categories:
            cat["keypoints"] = ["head", "left", "right"]
    results = []
    for a, r in zip(data["annotations"], gt_as_results(data)):
        x, y, w, h = a["bbox"]
        kp = [x + 1, y + 1, 2, x + w - 1, y + 1, 2, x + 1, y + h - 1, 2]
        results.append(dict(r, keypoints=kp))
        if a["category_id"] in categories:
            a["keypoints"], a["num_keypoints"] = kp, 3
    path.write_text(json.dumps(data))
    return path, data, results


def test_keypoints_of_another_skeleton_are_left_out_by_name(cli, tmp_path):
    path, data, results = _keypoint_dataset(tmp_path)
    results[2]["keypoints"] = results[2]["keypoints"][:6]  # two points: pycocotools would fail on it
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    with pytest.warns(UserWarning, match=r"result 2 \(image_id 2\): keypoints hold 2 points"):
        rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    # its box is fine: only keypoint AP misses it (bbox AP lost it too)
    assert 50.0 < metrics["keypoints"]["AP"] < 100.0 and metrics["bbox"]["AP"] == 100.0


def test_keypoint_ground_truth_of_another_length_keeps_its_box_and_mask(cli, tmp_path):
    """A person whose keypoints list has another length than the category's names refused the whole
    evaluation, where training keeps its box and mask with its keypoints unlabelled: now bbox and segm
    score it, keypoint AP counts it as a person without a labelled keypoint (num_keypoints 0, which
    COCOeval ignores), said in one line with the count and the file."""
    path, data, results = _keypoint_dataset(tmp_path)
    data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:6]  # 2 points of 3
    data["annotations"][2]["keypoints"] = data["annotations"][2]["keypoints"] + [1, 1]  # 11 numbers
    path.write_text(json.dumps(data))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    with pytest.warns(UserWarning) as caught:
        rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    line = (f"{path}: 2 annotations (the first id 2) hold 2 keypoints (6 numbers) or 11 numbers, not the 3 "
            f"the categories name: their boxes and masks are scored, their keypoints read as unlabelled")
    said = [str(w.message) for w in caught]
    assert [m.startswith(line) for m in said].count(True) == 1, said
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["bbox"]["AP"] == 100.0 and metrics["segm"]["AP"] == 100.0
    # the two people are ignored by OKS (as unlabelled ones are): the other two are matched perfectly
    assert metrics["keypoints"]["AP"] == pytest.approx(100.0)


def test_keypoint_ground_truth_all_of_another_length_says_keypoint_ap_cannot_be_computed(tmp_path):
    from maskrcnn.engine.evaluator import evaluate_results_file

    path, data, results = _keypoint_dataset(tmp_path)
    for ann in data["annotations"]:
        ann["keypoints"] = ann["keypoints"][:6]
    path.write_text(json.dumps(data))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    with pytest.warns(UserWarning) as caught:
        metrics = evaluate_results_file(path, res)
    said = [str(w.message) for w in caught]
    assert sum("hold 2 keypoints (6 numbers), not the 3 the categories name" in m for m in said) == 1, said
    assert metrics["bbox"]["AP"] == 100.0 and metrics["segm"]["AP"] == 100.0
    why = metrics["keypoints"]["not_scored"]
    assert metrics["keypoints"]["AP"] != metrics["keypoints"]["AP"]  # NaN: '-' in the table, not 0
    assert why.startswith(f"{path}: keypoint AP not defined: no ground-truth object has a labelled "
                          "keypoint"), why
    assert "all 4 hold keypoints of another count than the categories' 3 names" in why, why


def test_people_with_keypoints_null_or_empty_are_unlabelled(cli, tmp_path):
    """'keypoints': [] or null (exporters write them for people without keypoints) are none labelled, as
    a missing field: they refused the evaluation (null) or broke COCOeval's broadcasting ([])."""
    path, data, results = _keypoint_dataset(tmp_path)
    data["annotations"][1]["keypoints"], data["annotations"][3]["keypoints"] = [], None
    path.write_text(json.dumps(data))
    res = tmp_path / "res.json"
    res.write_text(json.dumps([r for k, r in enumerate(results) if k not in (1, 3)]))
    rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["keypoints"]["AP"] == pytest.approx(100.0)  # the unlabelled two are ignored, not missed
    ds = CocoDataset(json_path=path, image_dir=path.parent / "images", keypoints=True)
    assert ds.skipped == {} and ds[1][1]["keypoints"][1].sum() == 0


def test_keypoints_holding_true_or_false_are_skipped_by_name(tmp_path):
    """A visibility written as true was taken as 1 in training while eval --weights refused the whole
    ground truth as 'ground truth: 1 problems', naming no file."""
    path, data, _ = _keypoint_dataset(tmp_path)
    data["annotations"][0]["keypoints"][2] = True
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="skipped 1 bad_keypoints"):
        ds = CocoDataset(json_path=path, image_dir=path.parent / "images", keypoints=True)
    assert "annotation id 1 (image id 1) keypoints must be 9 finite numbers" in ds.problems[0]


def test_keypoint_count_is_taken_from_the_visibility_flags(cli, tmp_path):
    """num_keypoints 0 (a converter's stale count) on people with labelled keypoints made COCOeval ignore
    every one of them: keypoint AP n/a for perfect results."""
    path, data, results = _keypoint_dataset(tmp_path)
    for a in data["annotations"]:
        a["num_keypoints"] = 0
    path.write_text(json.dumps(data))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["keypoints"]["AP"] == pytest.approx(100.0)


def test_keypoint_ap_is_over_the_categories_with_keypoints(cli, tmp_path):
    """A dataset of people with keypoints and objects without (a keypoint model predicts keypoints for
    every detection) failed with 'error: num_keypoints' (COCOeval's KeyError)."""
    path, data, results = _keypoint_dataset(tmp_path, categories=(1,))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    keypoints = json.loads((tmp_path / "m" / "metrics.json").read_text())["keypoints"]
    assert keypoints["AP"] == pytest.approx(100.0) and list(keypoints["per_category"]) == ["a"]


def test_rle_size_written_as_floats_is_scored(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    for a in data["annotations"]:
        a["segmentation"]["size"] = [40.0, 50.0]  # as some tools write it; pycocotools' C code takes no float
    path.write_text(json.dumps(data))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(gt_as_results(data)))
    rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["segm"]["AP"] == pytest.approx(100.0)


def test_categories_of_different_keypoint_sets_are_refused_by_name(cli, tmp_path):
    """COCOeval has one set of OKS sigmas: it failed on 'operands could not be broadcast together'."""
    path, data, results = _keypoint_dataset(tmp_path, categories=(1,))
    data["categories"][1]["keypoints"] = ["beak", "tail"]
    for a, r in zip(data["annotations"], results):
        if a["category_id"] == 2:
            a["keypoints"] = r["keypoints"] = r["keypoints"][:6]
    path.write_text(json.dumps(data))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    rc, text = cli("eval", "--results", res, "--json", path)
    assert rc == 1 and "categories with different keypoint sets {'a': 3, 'b': 2}" in text, text


@pytest.mark.parametrize("command", ["eval", "train"])
def test_keypoint_model_on_a_dataset_of_another_keypoint_count_is_refused(cli, tmp_path, command):
    """Every detection was left out as 'keypoints hold 5 points, the category has 3' (box AP 0 too),
    during training at each validation, hours in."""
    from tiny_model import TINY

    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model

    path, _, _ = _keypoint_dataset(tmp_path)
    cfg = apply_overrides(PRESETS["r18_fpn"](), {
        **TINY, "model.norm": "bn", "model.freeze_at": 0,  # trainable from random weights
        "model.roi_heads.mask_on": False, "model.roi_heads.keypoint_on": True,
        "model.roi_heads.num_keypoints": 5, "model.roi_heads.keypoint_head_dim": 8,
        "model.roi_heads.keypoint_head_convs": 1, "solver.iters": 1, "solver.batch_size": 1,
        "input.min_size": 40, "input.max_size": 64, "data.num_workers": 0})  # fmt: skip
    weights = tmp_path / "kp.pth"
    save_checkpoint(weights, model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=["__background__", "a", "b"])
    if command == "eval":
        args = ["--weights", weights, "--json", path, "--images", path.parent / "images", "--device", "cpu"]
    else:  # a training set of 5 keypoints, validated on the file of 3
        train = _keypoint_dataset(tmp_path / "train")[0]
        data = json.loads(train.read_text())
        for cat in data["categories"]:
            cat["keypoints"] = ["p1", "p2", "p3", "p4", "p5"]
        for a in data["annotations"]:
            a["keypoints"] = a["keypoints"] + a["keypoints"][:6]
        train.write_text(json.dumps(data))
        config = tmp_path / "cfg.yaml"
        config.write_text(json.dumps(cfg.to_dict()))
        args = ["--config", config, "--train-json", train, "--train-images", train.parent / "images",
                "--val-json", path, "--val-images", path.parent / "images", "--output", tmp_path / "run"]
    rc, text = cli(command, *args)
    assert rc == 1 and f"the model predicts 5 keypoints, {path} has 3 (head, left, right)" in text, text
