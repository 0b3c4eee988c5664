"""``maskrcnn eval`` (p_eval4): a results file's ``category_name`` read against the ground truth's names
(predict's own predictions.json scored against a file numbering the classes otherwise swapped them
silently), a predictions.json in ``--output`` that --weights would replace, keypoint AP without any
labelled keypoint, the per-kind "no detection" note, the file-name note, and AR in metrics.json."""

import contextlib
import io
import json
import warnings

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tiny_model import cat_dog_inputs  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.engine.evaluator import evaluate_results_file

pytestmark = pytest.mark.usefixtures("single_thread")

BOXES = {1: [10, 10, 20, 20], 2: [50, 50, 30, 30]}  # category id -> its object's box on image 1


def _gt(tmp_path, names=("circle", "square")) -> str:
    """One image with a circle (id 1) and a square (id 2), each a square-ish box; its path."""
    cats = [{"id": i, **({"name": n} if n is not None else {})} for i, n in enumerate(names, 1)]
    anns = [{"id": c, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for c, b in BOXES.items()]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
                                "annotations": anns, "categories": cats}))
    return str(path)


def _records(ids: dict, names: dict = None) -> list:
    """A perfect detection of each object, its category_id ``ids[true id]`` (and category_name)."""
    return [{"image_id": 1, "category_id": ids[c], "bbox": b, "score": 0.9,
             **({"category_name": names[c]} if names else {})} for c, b in BOXES.items()]


def _score(tmp_path, records, gt, **kwargs) -> tuple:
    path = tmp_path / f"r{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(records))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_results_file(gt, str(path), **kwargs)
    return metrics["bbox"]["AP"], " | ".join(str(w.message) for w in caught)


SWAPPED = {1: 2, 2: 1}  # the model numbers circle 2 and square 1
NAMES = {1: "circle", 2: "square"}


def test_category_names_of_a_renumbered_ground_truth_are_matched_by_name(tmp_path):
    gt = _gt(tmp_path)
    right, _ = _score(tmp_path, _records({1: 1, 2: 2}), gt)
    by_id, _ = _score(tmp_path, _records(SWAPPED), gt)  # no names: matched by id, as before
    got, said = _score(tmp_path, _records(SWAPPED, NAMES), gt)
    assert by_id < right  # the swap matters here
    assert got == right, said  # was by_id: every circle scored as a square, without a word
    assert "category_id matched to" in said and "by category_name" in said
    assert "2 'circle' -> 1 (2 is 'square' there)" in said, said


def test_category_names_that_agree_or_are_absent_change_nothing(tmp_path):
    gt = _gt(tmp_path)
    right, said = _score(tmp_path, _records({1: 1, 2: 2}, NAMES), gt)
    plain, _ = _score(tmp_path, _records({1: 1, 2: 2}), gt)
    assert right == plain and "by category_name" not in said
    # a --category-map says which is which itself: names are not read then
    mapped, said = _score(tmp_path, _records({1: 1, 2: 2}, {1: "x", 2: "y"}), gt,
                          category_map={1: 2, 2: 1})
    by_id, _ = _score(tmp_path, _records(SWAPPED), gt)
    assert mapped == by_id and "by category_name" not in said
    # a model converted without its class names ("class_1"): no names, by id as before
    got, said = _score(tmp_path, _records(SWAPPED, {1: "class_2", 2: "class_1"}), gt)
    assert got == by_id and "category_name" not in said.replace(str(tmp_path), "")
    # a ground truth without names cannot say: by id, said
    unnamed = _gt(tmp_path, names=(None, None))
    got, said = _score(tmp_path, _records(SWAPPED, NAMES), unnamed)
    assert got == _score(tmp_path, _records(SWAPPED), unnamed)[0]
    assert "category_name not compared" in said


def test_a_named_class_the_ground_truth_lacks_is_left_out_and_said(tmp_path):
    gt = _gt(tmp_path)
    records = _records(SWAPPED, NAMES) + [{"image_id": 1, "category_id": 7, "category_name": "star",
                                           "bbox": [1, 1, 5, 5], "score": 0.99}]
    got, said = _score(tmp_path, records, gt)
    assert got == _score(tmp_path, _records({1: 1, 2: 2}), gt)[0]
    assert "class 'star' (category_id 7, 1 results) is no category of" in said, said


@pytest.mark.parametrize("gt_names", [("disc", "square"), ("Kreis", "Quadrat")])
def test_names_a_renamed_ground_truth_lacks_keep_the_ids_as_eval_weights_does(tmp_path, gt_names):
    """One class renamed in the ground truth, or all translated, the ids unchanged: eval --weights keeps
    the checkpoint's ids (its names match neither every class nor every category), so --results keeps
    the file's; the 'circle' was left out (one renamed) or the file refused (all)."""
    from types import SimpleNamespace

    from maskrcnn.engine.inference import _ids_by_name

    gt = _gt(tmp_path, names=gt_names)
    right, _ = _score(tmp_path, _records({1: 1, 2: 2}), gt)
    got, said = _score(tmp_path, _records({1: 1, 2: 2}, NAMES), gt)
    assert got == right, said
    assert "matched by category_id, as eval --weights keeps" in said and f"'{gt_names[0]}' there" in said
    dataset = SimpleNamespace(label_to_category_id={1: 1, 2: 2}, class_names=["__background__", *gt_names],
                              json_path=gt)
    assert _ids_by_name(["__background__", *NAMES.values()], dataset) is None  # the same rule, one function
    # the ids permuted as well: the names cannot say, the ids are kept (by id, as eval --weights scores)
    by_id, _ = _score(tmp_path, _records(SWAPPED), gt)
    assert _score(tmp_path, _records(SWAPPED, NAMES), gt)[0] == by_id


def test_a_class_of_neither_a_name_nor_an_id_of_the_ground_truth_is_left_out(tmp_path):
    """torchvision's 'N/A' (COCO id 12) beside a ground truth that has the other names under their ids:
    by id it could not be scored (refused as an unknown id), by name it is no category: left out."""
    gt = _gt(tmp_path, names=("disc", "square"))
    right, _ = _score(tmp_path, _records({1: 1, 2: 2}), gt)
    records = _records({1: 1, 2: 2}, NAMES) + [{"image_id": 1, "category_id": 12, "category_name": "N/A",
                                                "bbox": [1, 1, 5, 5], "score": 0.99}]
    got, said = _score(tmp_path, records, gt)
    assert got == right and "'N/A' (category_id 12, 1 results) is no category of" in said, said


def test_quoted_ids_confirmed_by_their_names_are_read_as_numbers_not_renumbered(tmp_path):
    gt = _gt(tmp_path)
    right, _ = _score(tmp_path, _records({1: 1, 2: 2}), gt)
    got, said = _score(tmp_path, _records({1: "1", 2: "2"}, NAMES), gt)
    assert got == right
    assert "are strings (quoted in the file): read as the numbers" in said and "otherwise" not in said, said


def test_refusal_of_unnamed_records_names_only_renumbered_classes(tmp_path):
    path = tmp_path / "gt3.json"
    gt = json.loads(open(_gt(tmp_path, names=("circle", "square", "star"))).read())
    path.write_text(json.dumps(gt))
    star = {"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], "score": 0.5}
    records = _records(SWAPPED, NAMES) + [dict(star, category_name="star"), star]  # the last unnamed
    with pytest.raises(ValueError) as e:
        _score(tmp_path, records, str(path))
    assert "2 'circle' -> 1" in str(e.value) and "'star'" not in str(e.value), str(e.value)


def test_ids_that_agree_with_a_ground_truth_repeating_a_name_are_kept(tmp_path):
    # two datasets merged: 'circle' is ids 1 and 3 there; a file whose circle says id 1 was refused ("names
    # 2 categories ... give --category-map") though its id is one of them
    gt = json.loads(open(_gt(tmp_path)).read())
    gt["categories"].append({"id": 3, "name": "circle"})
    path = tmp_path / "gt_merged.json"
    path.write_text(json.dumps(gt))
    right, _ = _score(tmp_path, _records({1: 1, 2: 2}), str(path))
    got, said = _score(tmp_path, _records({1: 1, 2: 2}, NAMES), str(path))
    assert got == right and said.count("repeats a category name") == 1, said
    assert "('circle' names ids 1, 3)" in said and "matched by category_id" in said, said
    quoted, said = _score(tmp_path, _records({1: "1", 2: "2"}, NAMES), str(path))  # read as the numbers
    assert quoted == right and "read as the numbers" in said, said
    with pytest.raises(ValueError) as e:  # an id its repeated name does not name: still no way to tell
        _score(tmp_path, _records(SWAPPED, NAMES), str(path))
    assert "names 2 categories of" in str(e.value) and "--category-map" in str(e.value), str(e.value)


@pytest.mark.parametrize("records, words", [
    (_records({1: 1, 2: 1}, NAMES), "category_id 1 is named both 'circle' and 'square'"),
    (_records(SWAPPED, {1: 3, 2: "square"}), "has category_name '3', not a name"),
    (_records(SWAPPED, {1: "Circle", 2: "circle"}), "category_ids 2 ('Circle') and 1 ('circle') both name "
                                                    "category 1"),
    (_records(SWAPPED, NAMES)[:1] + _records(SWAPPED)[1:], "1 of 2 results have no category_name"),
])  # fmt: skip
def test_category_names_that_cannot_say_which_is_which_are_refused(tmp_path, records, words):
    gt = _gt(tmp_path)
    with pytest.raises(ValueError) as e:
        _score(tmp_path, records, gt)
    assert words in str(e.value) and "--category-map" in str(e.value), str(e.value)


def test_a_box_left_out_of_bbox_ap_only_is_not_called_no_detection(tmp_path):
    gt = json.loads(open(_gt(tmp_path)).read())
    gt["images"].append({"id": 2, "file_name": "b.png", "width": 100, "height": 100})
    gt["annotations"].append(dict(gt["annotations"][0], id=3, image_id=2))
    path = tmp_path / "gt2.json"
    path.write_text(json.dumps(gt))
    m = np.zeros((100, 100), np.uint8, order="F")
    m[10:30, 10:30] = 1
    mask = mask_utils.encode(m)
    mask["counts"] = mask["counts"].decode()
    records = [{"image_id": i, "category_id": 1, "bbox": [10, 10, 20, 20], "segmentation": mask,
                "score": 0.9} for i in (1, 2)]
    records[1]["bbox"] = [30, 10, -20, 20]  # image 2's box is bad: left out of bbox AP only
    _, said = _score(tmp_path, records, str(path))
    assert "have no detection in the results" not in said, said
    assert "1 of 2 ground-truth images with objects have no detection scored in bbox AP (b.png)" in said


def test_file_name_note_gives_no_example_when_no_id_changed(tmp_path):
    gt = _gt(tmp_path)
    records = [dict(r, file_name="imgs/a.png") for r in _records({1: 1, 2: 2})]
    _, said = _score(tmp_path, records, gt)
    assert "(1 images; each already had its image id in the file)" in said, said
    assert "->" not in said


def test_keypoint_ap_without_any_labelled_keypoint_says_why(tmp_path, capsys):
    names = ["tip", "base"]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600,
             "iscrowd": 0, "keypoints": [0] * 6, "num_keypoints": 0}]
    gt = tmp_path / "kp.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
                              "annotations": anns,
                              "categories": [{"id": 1, "name": "arrow", "keypoints": names}]}))
    res = tmp_path / "kp_res.json"
    res.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9,
                                "keypoints": [20, 20, 1, 30, 30, 1]}]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", "--results", str(res), "--json", str(gt), "--output", str(tmp_path / "o")]) == 0
    said = capsys.readouterr().err + " | ".join(str(w.message) for w in caught)
    row = json.loads((tmp_path / "o" / "metrics.json").read_text())["keypoints"]
    assert row["AP"] is None and "no ground-truth object has a labelled keypoint" in row["not_scored"]
    assert "keypoint AP not defined" in said and "OKS sigmas" not in said, said


def _kp_gt(tmp_path, arrow_points: list) -> str:
    """Image 1 with an arrow (a keypoint category, its points ``arrow_points``), image 2 with a blob (a
    category without keypoints); its path."""
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0,
             "keypoints": arrow_points, "num_keypoints": sum(1 for v in arrow_points[2::3] if v)},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0}]
    gt = tmp_path / "kp2.json"
    gt.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100}
                                         for i in (1, 2)], "annotations": anns,
                              "categories": [{"id": 1, "name": "arrow", "keypoints": ["tip", "base"]},
                                             {"id": 2, "name": "blob"}]}))
    return str(gt)


def test_objects_keypoint_ap_ignores_are_not_called_misses_in_it(tmp_path):
    gt = _kp_gt(tmp_path, [20, 20, 2, 30, 30, 2])
    records = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9,
                "keypoints": [20, 20, 1, 30, 30, 1]},
               {"image_id": 2, "category_id": 2, "bbox": [10, 10, 40, 40], "score": 0.9}]  # no keypoints
    path = tmp_path / "kp2_res.json"
    path.write_text(json.dumps(records))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_results_file(gt, str(path))
    said = " | ".join(str(w.message) for w in caught)
    assert metrics["keypoints"]["AP"] == pytest.approx(100.0)  # the blob is no miss of keypoint AP
    assert "no detection scored in keypoints AP" not in said, said  # was: 2.png named as a miss


def test_keypoint_ap_without_objects_of_a_keypoint_category_says_so(tmp_path):
    from maskrcnn.engine.evaluator import _no_labelled_keypoints, load_ground_truth

    data = json.loads(open(_kp_gt(tmp_path, [0] * 6)).read())
    data["annotations"] = data["annotations"][1:]  # only the blob
    why = _no_labelled_keypoints(load_ground_truth(data, source="kp3.json"), None, "kp3.json")
    assert "no ground-truth object of a keypoint category" in why and "for all 0" not in why, why


def test_metrics_json_has_recall_and_what_it_is_over(tmp_path):
    gt = _gt(tmp_path)
    records = _records({1: 1, 2: 2})[:1]  # the square missed
    path = tmp_path / "one.json"
    path.write_text(json.dumps(records))
    metrics = evaluate_results_file(gt, str(path))["bbox"]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt)
        e = COCOeval(coco, coco.loadRes(records), "bbox")
        e.evaluate(), e.accumulate(), e.summarize()
    assert metrics["AR"]["AR100"] == pytest.approx(e.stats[8] * 100)
    assert metrics["AR"]["AR1"] == pytest.approx(e.stats[6] * 100)
    assert metrics["coco_params"]["max_dets"] == [1, 10, 100]
    assert metrics["coco_params"]["area_ranges"]["small"] == [0.0, 32.0 ** 2]


def _cat_dog_eval(tmp_path) -> tuple:
    """(checkpoint, images folder, ground-truth path) of one 40x40 image with a cat."""
    ckpt, images = cat_dog_inputs(tmp_path, {"a.png": (40, 40)})
    gt = tmp_path / "cd.json"
    gt.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 40}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [5, 5, 10, 10], "area": 100,
                         "iscrowd": 0}],
        "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]}))
    return ckpt, images, gt


def test_weights_output_moves_a_foreign_predictions_json_aside(tmp_path, capsys):
    ckpt, images, gt = _cat_dog_eval(tmp_path)
    out = tmp_path / "ev"
    out.mkdir()
    theirs = '[{"image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2], "score": 0.5}]'
    (out / "predictions.json").write_text(theirs)  # another tool's, copied there
    args = ["eval", "--weights", str(ckpt), "--json", str(gt), "--images", str(images), "--output", str(out),
            "--device", "cpu"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (out / "stale" / "1" / "predictions.json").read_text() == theirs  # was replaced silently
    assert "moved to" in err and "stale" in err, err
    ours = (out / "predictions.json").read_text()
    assert ours != theirs
    assert main(args) == 0  # its own, from the run before: replaced as metrics.json is, nothing said
    assert "moved to" not in capsys.readouterr().err
    assert not (out / "stale" / "2").exists()


def test_a_copied_or_rescored_eval_folder_keeps_its_predictions_json_as_evals(tmp_path, capsys):
    import os
    import shutil

    ckpt, images, gt = _cat_dog_eval(tmp_path)
    out = tmp_path / "ev"
    args = ["eval", "--weights", str(ckpt), "--json", str(gt), "--images", str(images), "--device", "cpu"]
    assert main(args + ["--output", str(out)]) == 0
    copy = tmp_path / "ev2"
    shutil.copytree(out, copy)
    metrics_time = (copy / "metrics.json").stat().st_mtime
    os.utime(copy / "predictions.json", (metrics_time + 5, metrics_time + 5))  # cp -r / unzip: any order
    capsys.readouterr()
    assert main(args + ["--output", str(copy)]) == 0
    assert not (copy / "stale").exists(), capsys.readouterr().err  # was: moved, "not ... --weights run's"
    # --results of the folder's own file, into that folder: the next --weights run's file is still eval's
    rescore = ["eval", "--results", str(out / "predictions.json"), "--json", str(gt), "--output", str(out)]
    assert main(rescore) == 0
    assert main(args + ["--output", str(out)]) == 0
    assert not (out / "stale").exists(), capsys.readouterr().err
    # a file changed since (the user's own written over it): moved, whatever its time
    (out / "predictions.json").write_text("[]")
    metrics_time = (out / "metrics.json").stat().st_mtime
    os.utime(out / "predictions.json", (metrics_time - 5, metrics_time - 5))
    assert main(args + ["--output", str(out)]) == 0
    assert (out / "stale" / "1" / "predictions.json").read_text() == "[]"


def test_a_foreign_predictions_json_that_cannot_be_moved_is_refused_before_inference(tmp_path, capsys):
    ckpt, images, gt = _cat_dog_eval(tmp_path)
    out = tmp_path / "ev"
    out.mkdir()
    (out / "predictions.json").write_text("[]")
    (out / "stale").write_text("")  # a file: nothing can be moved into it
    args = ["eval", "--weights", str(ckpt), "--json", str(gt), "--images", str(images), "--device", "cpu"]
    assert main(args + ["--output", str(out)]) != 0
    err = capsys.readouterr()
    assert "stale is not a folder" in err.err and "AP" not in err.out, err  # refused before any inference
    assert (out / "predictions.json").read_text() == "[]"  # was: replaced after the inference
    assert not (out / "metrics.json").exists()


def test_a_shared_name_under_another_id_is_matched_once_the_unplaceable_classes_are_left_out(tmp_path):
    """circle as 7 and a 'star' 9 (no name, no id of the ground truth's circle 1 and square 2): star was
    left out, then circle kept at 7 failed with "category ids 7 are not in the ground truth"; by the rule
    eval --weights follows it is matched by name (name_match.ids_by_name_or_placed)."""
    gt = _gt(tmp_path)
    circle = [r for r in _records({1: 7, 2: 7}, {1: "circle", 2: "circle"}) if r["bbox"] == BOXES[1]]
    star = {"image_id": 1, "category_id": 9, "category_name": "star", "bbox": [1, 1, 5, 5], "score": 0.99}
    got, said = _score(tmp_path, circle + [star], gt)
    right, _ = _score(tmp_path, [r for r in _records({1: 1, 2: 2}) if r["bbox"] == BOXES[1]], gt)
    assert got == right, said
    assert "class 'star' (category_id 9, 1 results) is no category of" in said, said
    assert "7 'circle' -> 1" in said, said
