"""What the evaluation scores in annotation tools' COCO files: box-only ground truth (segmentation [],
CVAT / Label Studio rectangles) is an ignored region of segm AP and an object of bbox AP; crowd RLE
(CVAT's brush masks, iscrowd 1) stays a crowd unless ``data.crowd_as_objects`` says otherwise, with a
warning for CVAT-looking files; eval refuses a file without ground truth. Hand-made results through
``evaluate_results_file`` (no model)."""

import json
import math
import warnings

import numpy as np
import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.mask_codec import mask_to_rle
from maskrcnn.engine.evaluator import CocoEvaluator, evaluate_results_file

H, W = 40, 60
CVAT = {"occluded": False, "rotation": 0.0}  # CVAT writes this on every annotation


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def _rle(mask: torch.Tensor) -> dict:
    rle = mask_to_rle(mask)
    return dict(rle, counts=rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"])


def _uncompressed_rle(mask: torch.Tensor) -> dict:
    """COCO's uncompressed RLE (as CVAT writes brush masks): column-major runs, starting with zeros."""
    flat = mask.numpy().T.reshape(-1).astype(np.int64)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"counts": ([0] + counts) if flat[0] else counts, "size": [H, W]}


def _ellipse(x1, y1, x2, y2) -> torch.Tensor:
    """(H, W) bool: the ellipse inscribed in the box (a round object drawn as a rectangle)."""
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1


def _square(x1, y1, x2, y2) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y1:y2, x1:x2] = True
    return m


SQUARE = (4, 5, 20, 15)  # a polygon in the ground truth
ROUND = (30, 8, 56, 36)  # a rectangle (segmentation []) in the ground truth; the object is round


def _gt(tmp_path, *, square_box_only=False):
    x1, y1, x2, y2 = SQUARE
    square = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [x1, y1, x2 - x1, y2 - y1],
              "segmentation": [] if square_box_only else [[x1, y1, x2, y1, x2, y2, x1, y2]]}
    x1, y1, x2, y2 = ROUND
    rect = {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "segmentation": []}
    return _write(tmp_path / "gt.json", {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "round"}],
        "annotations": [square, rect]})


def _result(category_id, box, mask, score):
    x1, y1, x2, y2 = box
    return {"image_id": 1, "category_id": category_id, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score,
            "segmentation": _rle(mask)}


@pytest.mark.filterwarnings("ignore:.*no result has category")  # r1.json: the round one left undetected
def test_box_only_ground_truth_is_ignored_by_segm_ap_and_scored_by_bbox_ap(tmp_path):
    gt = _gt(tmp_path)
    # the round object found with its true (round) mask, scored above the square: against the filled box
    # (IoU 0.79) it was a false positive and a miss at IoU 0.8 and above (segm AP 100 -> 70)
    results = [_result(2, ROUND, _ellipse(*ROUND), 0.9), _result(1, SQUARE, _square(*SQUARE), 0.8)]
    with pytest.warns(UserWarning, match=r"^1 ground-truth objects have a box and no mask .*segm AP ignores "
                                         r"detections on them \(neither true nor false positives\)"):
        metrics = evaluate_results_file(gt, _write(tmp_path / "r.json", results))
    assert metrics["bbox"]["AP"] == pytest.approx(100.0)
    assert metrics["segm"]["AP"] == pytest.approx(100.0)
    assert metrics["segm"]["ignored_box_only"] == 1 and "ignored_box_only" not in metrics["bbox"]
    assert math.isnan(metrics["segm"]["per_category"]["round"])  # no object to score its mask by
    # nothing found on the rectangle: a missed object of bbox AP, nothing missed for segm AP
    with pytest.warns(UserWarning, match="1 ground-truth objects have a box and no mask"):
        metrics = evaluate_results_file(gt, _write(tmp_path / "r1.json", results[1:]))
    assert metrics["bbox"]["AP"] == pytest.approx(50.0) and metrics["segm"]["AP"] == pytest.approx(100.0)


def test_segm_ap_is_not_reported_when_no_object_has_a_mask(tmp_path):
    gt = _gt(tmp_path, square_box_only=True)
    results = [_result(2, ROUND, _ellipse(*ROUND), 0.9), _result(1, SQUARE, _square(*SQUARE), 0.8)]
    with pytest.warns(UserWarning, match=r"segm AP not reported: none of the 2 ground-truth objects has a "
                                         r"mask"):
        metrics = evaluate_results_file(gt, _write(tmp_path / "r.json", results))
    assert metrics["bbox"]["AP"] == pytest.approx(100.0)
    segm = metrics["segm"]
    assert math.isnan(segm["AP"]) and math.isnan(segm["AP50"]) and math.isnan(segm["per_category"]["round"])
    assert segm["ignored_box_only"] == 2 and segm["not_reported"].startswith("segm AP not reported")


def test_a_datasets_ground_truth_keeps_box_only_objects_mask_less(tmp_path):
    """The evaluation during training and eval --weights take the dataset's records
    (``to_coco_dict(box_as_mask=False)``, as ``build_evaluator`` asks): the same ignored region."""
    from PIL import Image

    Image.new("RGB", (W, H)).save(tmp_path / "a.png")
    ds = CocoDataset(json_path=_gt(tmp_path), image_dir=tmp_path)
    assert ds.to_coco_dict(box_as_mask=False)["annotations"][1]["segmentation"] == []
    assert ds.to_coco_dict()["annotations"][1]["segmentation"] == [[30.0, 8.0, 56.0, 8.0, 56.0, 36.0, 30.0,
                                                                    36.0]]
    ev = CocoEvaluator(ds.to_coco_dict(box_as_mask=False), label_to_category_id=ds.label_to_category_id)
    ev.process(1, {"boxes": torch.tensor([ROUND, SQUARE], dtype=torch.float32),
                   "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([2, 1]),
                   "masks": torch.stack([_ellipse(*ROUND), _square(*SQUARE)])})
    with pytest.warns(UserWarning, match="1 ground-truth objects have a box and no mask"):
        metrics = ev.evaluate()
    assert metrics["segm"]["AP"] == pytest.approx(100.0) and metrics["segm"]["ignored_box_only"] == 1


def _cvat_crowd(tmp_path, attributes=CVAT):
    """A CVAT "COCO 1.0" file: a polygon square, and a round object drawn with the brush (iscrowd 1,
    uncompressed RLE)."""
    x1, y1, x2, y2 = SQUARE
    extra = {"attributes": attributes} if attributes else {}
    return _write(tmp_path / "instances_default.json", {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "round"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [x1, y1, x2 - x1, y2 - y1],
             "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]], "area": 160.0, **extra},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 1, "bbox": [30, 8, 26, 28],
             "segmentation": _uncompressed_rle(_ellipse(*ROUND)), "area": 570.0, **extra}]})


def test_crowd_rle_of_a_cvat_export_is_said_and_crowd_as_objects_counts_it(tmp_path):
    from PIL import Image

    Image.new("RGB", (W, H)).save(tmp_path / "a.png")
    path = _cvat_crowd(tmp_path)
    ds = CocoDataset(json_path=path, image_dir=tmp_path)
    assert ds.instances_per_class() == [0, 1, 0]  # the brush mask: a crowd region, no instance
    said = [n for n in ds.notes if "looks like a CVAT export" in n]
    assert len(said) == 1 and said[0].startswith(f"{path}: 1 of 2 annotations are crowd regions (iscrowd 1")
    assert "data.crowd_as_objects: true" in said[0] and "--crowd-as-objects" in said[0]
    ds = CocoDataset(json_path=path, image_dir=tmp_path, crowd_as_objects=True)
    assert ds.instances_per_class() == [0, 1, 1] and ds[0][1]["iscrowd"].tolist() == [False, False]
    read = f"{path}: 1 crowd annotations (iscrowd 1) read as ordinary objects (data.crowd_as_objects)"
    assert read in ds.notes
    assert not [n for n in ds.notes if "CVAT" in n]
    # the same crowd region in a file without CVAT's attributes (COCO's own crowds): nothing said
    other = CocoDataset(json_path=_cvat_crowd(tmp_path, attributes=None), image_dir=tmp_path)
    assert not [n for n in other.notes if "CVAT" in n]


def test_crowd_as_objects_in_the_evaluation(tmp_path):
    path = _cvat_crowd(tmp_path)
    results = _write(tmp_path / "r.json", [_result(2, ROUND, _ellipse(*ROUND), 0.9),
                                           _result(1, SQUARE, _square(*SQUARE), 0.8)])
    with pytest.warns(UserWarning, match=r"looks like a CVAT export") as caught:
        metrics = evaluate_results_file(path, results)
    assert len([w for w in caught if "CVAT" in str(w.message)]) == 1
    assert math.isnan(metrics["segm"]["per_category"]["round"])  # a crowd: nothing to score
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say: the user chose
        metrics = evaluate_results_file(path, results, crowd_as_objects=True)
    assert metrics["segm"]["per_category"]["round"] == pytest.approx(100.0)
    assert metrics["bbox"]["per_category"]["round"] == pytest.approx(100.0)


def test_eval_and_show_data_take_crowd_as_objects(tmp_path, capsys):
    from PIL import Image

    from maskrcnn.config import load_config

    assert load_config(None, {"data.crowd_as_objects": "true"}).data.crowd_as_objects is True
    assert load_config(None).data.crowd_as_objects is False  # COCO's crowds stay crowds by default
    path = _cvat_crowd(tmp_path)
    results = _write(tmp_path / "r.json", [_result(2, ROUND, _ellipse(*ROUND), 0.9)])
    out = tmp_path / "ev"
    assert main(["eval", "--results", str(results), "--json", str(path), "--crowd-as-objects",
                 "--output", str(out)]) == 0
    written = json.loads((out / "metrics.json").read_text())
    assert written["segm"]["per_category"]["round"] == pytest.approx(100)
    Image.new("RGB", (W, H)).save(tmp_path / "a.png")
    assert main(["show-data", "--json", str(path), "--images", str(tmp_path), "--output",
                 str(tmp_path / "sd"), "--max", "0", "--crowd-as-objects"]) == 0
    summary = json.loads((tmp_path / "sd" / "summary.json").read_text())
    assert summary["crowd"] == 0 and summary["instances"] == 2


@pytest.mark.parametrize("annotations", [None, []], ids=["no_key", "empty_list"])
def test_eval_refuses_a_file_without_ground_truth(tmp_path, capsys, annotations):
    data = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "square"}]}
    if annotations is not None:
        data["annotations"] = annotations
    path = _write(tmp_path / "images_only.json", data)
    results = _write(tmp_path / "r.json", [_result(1, SQUARE, _square(*SQUARE), 0.8)])
    why = "the file has no 'annotations' list" if annotations is None else "its 'annotations' list is empty"
    for source in (["--results", str(results)], ["--weights", str(tmp_path / "never_read.pth")]):
        assert main(["eval", *source, "--json", str(path), "--output", str(tmp_path / "ev")]) == 1
        err = capsys.readouterr().err
        assert f"{path}: no ground truth to evaluate against: {why}" in err and "Traceback" not in err
        assert not (tmp_path / "ev" / "metrics.json").exists()


def test_segm_error_analysis_ignores_box_only_objects_as_segm_ap_does(tmp_path, capsys):
    """--analysis: the round object's detection was matched, for masks, against its box as a filled
    mask nobody drew (a true positive at IoU 0.79; a thinner shape would be a false positive and a miss);
    now it is ignored, as segm AP ignores it, while the box analysis counts it found."""
    gt = _gt(tmp_path)
    results = _write(tmp_path / "r.json", [_result(2, ROUND, _ellipse(*ROUND), 0.9),
                                           _result(1, SQUARE, _square(*SQUARE), 0.8)])
    out = tmp_path / "ev"
    with pytest.warns(UserWarning, match="1 ground-truth objects have a box and no mask"):
        assert main(["eval", "--results", str(results), "--json", str(gt), "--output", str(out),
                     "--analysis"]) == 0
    lines = capsys.readouterr().out.splitlines()
    bbox = next(line for line in lines if line.startswith("bbox errors"))
    segm = next(line for line in lines if line.startswith("segm errors"))
    assert "2 true positives" in bbox and "0 of 2 objects missed" in bbox
    assert "1 true positives" in segm and "0 on background" in segm and "1 ignored on crowd regions" in segm
    assert "0 of 1 objects missed" in segm


def test_ground_truth_without_a_segmentation_key_is_box_only_for_segm(tmp_path):
    """An annotation with a bbox and no "segmentation" at all (a detection dataset's) crashed segm AP
    (KeyError: 'segmentation' in COCOeval); now box-only as a rectangle is, its area the box's as before."""
    data = json.loads(_gt(tmp_path).read_text())
    del data["annotations"][1]["segmentation"]  # the round object: a box, no segmentation field
    results = [_result(2, ROUND, _ellipse(*ROUND), 0.9), _result(1, SQUARE, _square(*SQUARE), 0.8)]
    with pytest.warns(UserWarning, match="1 ground-truth objects have a box and no mask"):
        metrics = evaluate_results_file(_write(tmp_path / "nokey.json", data),
                                        _write(tmp_path / "r.json", results))
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and metrics["segm"]["AP"] == pytest.approx(100.0)
    assert metrics["segm"]["ignored_box_only"] == 1
    from maskrcnn.engine.evaluator import load_ground_truth

    gt = load_ground_truth(data)
    assert gt.anns[2]["area"] == 26 * 28 and gt.anns[2]["_box_only"]


def test_a_keypoint_person_without_segmentation_scores_with_a_mask_and_keypoint_model(tmp_path):
    """eval --weights of a mask + keypoint model: the dataset's keypoint people keep no segmentation
    field (``to_coco_dict``), which crashed the segm evaluation."""
    x1, y1, x2, y2 = SQUARE
    kps = [8, 8, 2, 16, 12, 2]
    path = _write(tmp_path / "people.json", {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "person", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 2,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "keypoints": kps}]})
    ds = CocoDataset(json_path=path, image_dir=None, keypoints=True)
    truth = ds.to_coco_dict(box_as_mask=False)
    assert "segmentation" not in truth["annotations"][0]
    ev = CocoEvaluator(truth, iou_types=("bbox", "segm", "keypoints"),
                       label_to_category_id=ds.label_to_category_id)
    ev.process(1, {"boxes": torch.tensor([SQUARE], dtype=torch.float32), "scores": torch.tensor([0.9]),
                   "labels": torch.tensor([1]), "masks": _square(*SQUARE)[None],
                   "keypoints": torch.tensor([[[8.0, 8.0, 1.0], [16.0, 12.0, 1.0]]]),
                   "keypoint_scores": torch.tensor([[1.0, 1.0]])})
    with pytest.warns(UserWarning, match="segm AP not reported: none of the 1 ground-truth objects"):
        metrics = ev.evaluate()
    assert metrics["bbox"]["AP"] == pytest.approx(100.0)
    assert metrics["keypoints"]["AP"] == pytest.approx(100.0)
    assert math.isnan(metrics["segm"]["AP"]) and metrics["segm"]["ignored_box_only"] == 1


def test_no_ground_truth_names_null_annotations_as_not_a_list(tmp_path, capsys):
    from maskrcnn.commands.eval import no_ground_truth

    assert no_ground_truth({"images": [], "annotations": None}, "x.json") == (
        "x.json: no ground truth to evaluate against: its 'annotations' is null, not a list")  # not "empty"
    assert no_ground_truth({"annotations": {}}, "x.json").endswith("its 'annotations' is dict, not a list")
    assert no_ground_truth({"annotations": [{}]}, "x.json") == ""
    path = _write(tmp_path / "null.json", {"images": [], "categories": [], "annotations": None})
    results = _write(tmp_path / "r.json", [])
    assert main(["eval", "--results", str(results), "--json", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: 'annotations' must be a list" in err and "empty" not in err


def test_crowd_as_objects_help_says_the_flag_alone_is_enough():
    import argparse

    from maskrcnn.commands.eval import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = " ".join(next(a.help for a in parser._actions if "--crowd-as-objects" in a.option_strings).split())
    assert "also --set" not in text  # the flag was said to need --set data.crowd_as_objects=true too
    assert text.endswith("a model trained with it evaluates so unless --set data.crowd_as_objects=false")
