"""``maskrcnn eval --results`` on results files as other libraries write them (detectron2, MMDetection,
Ultralytics, torchvision): read with a warning saying how, or refused naming the file and the field."""

import json

import numpy as np
import pytest
from hostile_helpers import coco_dataset, gt_as_results

from maskrcnn.data.mask_codec import annotation_to_mask


def _write(path, results):
    path.write_text(json.dumps(results))
    return path


def _eval(cli, tmp_path, *results_args, gt=None):
    """(rc, text, metrics or None, the warnings' text)."""
    path = gt or coco_dataset(tmp_path)[0]
    out = tmp_path / "m"
    args = [a for r in results_args for a in ("--results", r)]
    with _warnings() as caught:
        rc, text = cli("eval", *args, "--json", path, "--output", out)
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else None
    return rc, text, metrics, " | ".join(str(w.message) for w in caught)


def _warnings():
    import warnings

    manager = warnings.catch_warnings(record=True)
    warnings.simplefilter("always")
    return manager


def _uncompressed(rle: dict) -> dict:
    """The same mask as uncompressed RLE (counts a list of runs, column-major, zeros first)."""
    mask = annotation_to_mask(rle, *rle["size"]).numpy().flatten(order="F")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask, [1 - mask[-1]]])))
    return {"size": rle["size"], "counts": np.diff(np.concatenate([[0], edges])).tolist()}


def _polygon(box) -> list:
    x, y, w, h = box
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


@pytest.mark.parametrize(
    "convert, words",
    [(lambda r: dict(r, segmentation=_uncompressed(r["segmentation"])), "4 segmentations as uncompressed"),
     (lambda r: dict(r, segmentation=_polygon(r["bbox"])), "4 segmentations as polygons")],
)  # fmt: skip
def test_uncompressed_rle_and_polygons_are_encoded_and_scored(cli, tmp_path, convert, words):
    """Before: uncompressed RLE crashed in pycocotools (TypeError), polygons were left out (AP 0)."""
    _, _, data = coco_dataset(tmp_path)
    res = _write(tmp_path / "res.json", [convert(r) for r in gt_as_results(data)])
    rc, text, metrics, notes = _eval(cli, tmp_path, res)
    assert rc == 0, text
    assert metrics["segm"]["AP"] == pytest.approx(100.0) and metrics["bbox"]["AP"] == pytest.approx(100.0)
    assert str(res) in notes and words in notes and "compressed RLE" in notes


def test_torchvision_segmentation_results_without_bbox_score_segm_only(cli, tmp_path):
    _, _, data = coco_dataset(tmp_path)
    results = [{k: v for k, v in r.items() if k != "bbox"} for r in gt_as_results(data)]
    res = _write(tmp_path / "res.json", results)
    rc, text, metrics, notes = _eval(cli, tmp_path, res)
    assert rc == 0, text
    assert set(metrics) == {"segm", "results", "json", "artefacts"}
    assert metrics["segm"]["AP"] == pytest.approx(100.0)
    assert "4 of 4 results have no bbox" in notes and "bbox AP is not scored" in notes


def _mmdet_files(tmp_path, data, prefix="results"):
    """MMDetection's format_only pair: perfect boxes in .bbox.json; perfect masks in .segm.json, whose
    own boxes are off (so that scoring bbox on the segm file shows in the AP)."""
    bbox = [{k: v for k, v in r.items() if k != "segmentation"} for r in gt_as_results(data)]
    segm = [dict(r, bbox=[r["bbox"][0] + 4, r["bbox"][1] + 4, 2, 2]) for r in gt_as_results(data)]
    return (_write(tmp_path / f"{prefix}.bbox.json", bbox), _write(tmp_path / f"{prefix}.segm.json", segm))


@pytest.mark.parametrize("form", ["two", "comma", "prefix"])
def test_mmdetection_bbox_and_segm_files_are_scored_each_for_its_kind(cli, tmp_path, form):
    _, _, data = coco_dataset(tmp_path)
    bbox, segm = _mmdet_files(tmp_path, data)
    given = {"two": [bbox, segm], "comma": [f"{segm},{bbox}"], "prefix": [tmp_path / "results"]}[form]
    rc, text, metrics, notes = _eval(cli, tmp_path, *given)
    assert rc == 0, text
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and metrics["segm"]["AP"] == pytest.approx(100.0)
    assert ("MMDetection's prefix" in notes) == (form == "prefix")


@pytest.mark.parametrize("form", ["two", "comma", "prefix"])
def test_a_segm_file_without_boxes_beside_its_bbox_file_is_not_said_to_leave_bbox_out(cli, tmp_path, form):
    """It was: "results.segm.json: 4 of 4 results have no bbox ...: bbox AP is not scored, only segm", and
    then a bbox row from results.bbox.json."""
    _, _, data = coco_dataset(tmp_path)
    bbox, segm = _mmdet_files(tmp_path, data)
    _write(segm, [{k: v for k, v in r.items() if k != "bbox"} for r in gt_as_results(data)])
    given = {"two": [bbox, segm], "comma": [f"{segm},{bbox}"], "prefix": [tmp_path / "results"]}[form]
    rc, text, metrics, notes = _eval(cli, tmp_path, *given)
    assert rc == 0, text
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and metrics["segm"]["AP"] == pytest.approx(100.0)
    assert "have no bbox" not in notes and "bbox AP is not scored" not in notes, notes
    # the segm file alone: its missing boxes are said, as before
    rc, text, metrics, notes = _eval(cli, tmp_path, segm)
    assert rc == 0 and set(metrics) == {"segm", "results", "json", "artefacts"}, text
    assert f"{segm}: 4 of 4 results have no bbox" in notes and "bbox AP is not scored, only segm" in notes


def test_two_files_of_one_kind_are_refused_by_name(cli, tmp_path):
    _, _, data = coco_dataset(tmp_path)
    _, segm = _mmdet_files(tmp_path, data)
    other = _write(tmp_path / "other.segm.json", gt_as_results(data))
    rc, text, metrics, _ = _eval(cli, tmp_path, segm, other)
    assert rc == 1 and metrics is None
    assert f"{segm} and {other} all hold segm results" in text and len(text.strip().splitlines()) == 1


def test_ultralytics_image_ids_are_matched_by_file_stem(cli, tmp_path):
    """Ultralytics writes the image's stem as image_id: an int for an all-digit stem, else a string."""
    path, _, data = coco_dataset(tmp_path)
    data["images"][0]["file_name"] = "val/0007.png"  # id 1: Ultralytics writes image_id 7
    data["images"][1]["file_name"] = "val/cat.png"  # id 2: image_id "cat"
    path.write_text(json.dumps(data))
    stems = {1: 7, 2: "cat"}
    res = _write(tmp_path / "predictions.json",
                 [dict(r, image_id=stems[r["image_id"]]) for r in gt_as_results(data)])
    rc, text, metrics, notes = _eval(cli, tmp_path, res, gt=path)
    assert rc == 0, text
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and metrics["segm"]["AP"] == pytest.approx(100.0)
    assert "image_id matched by file name" in notes and "7 -> image id 1" in notes


def test_ids_that_are_also_other_images_file_names_are_read_as_ids_and_said(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    data["images"][0]["file_name"] = "2.png"
    data["images"][1]["file_name"] = "1.png"
    path.write_text(json.dumps(data))
    res = _write(tmp_path / "res.json", gt_as_results(data))
    rc, text, metrics, notes = _eval(cli, tmp_path, res, gt=path)
    assert rc == 0 and metrics["bbox"]["AP"] == pytest.approx(100.0)
    assert "read as ids" in notes


def _over_100(results):
    extra = [dict(results[0], bbox=[30, 30, 2, 2], score=0.95 + i * 1e-4) for i in range(101)]
    return results + extra


@pytest.mark.parametrize(
    "edit, words",
    [(lambda r: [], "no detections in the results: every AP is 0"),
     (lambda r: [x for x in r if x["image_id"] == 1],
      "1 of 2 ground-truth images with objects have no detection"),
     (lambda r: r + r[:2], "2 results repeat another exactly"),
     (_over_100, "1 image-category pairs have more than 100 detections"),
     (lambda r: [dict(x, score=s) for x, s in zip(r, (90, 0.5, -2.5, 1))],
      "2 of 4 scores are outside [0, 1] (from -2.5 to 90; percentages or logits?): AP only ranks")],
)  # fmt: skip
def test_what_cocoeval_does_unexpectedly_is_said(cli, tmp_path, edit, words):
    _, _, data = coco_dataset(tmp_path)
    res = _write(tmp_path / "res.json", edit(gt_as_results(data)))
    rc, text, metrics, notes = _eval(cli, tmp_path, res)
    assert rc == 0, text
    assert str(res) in notes and words in notes


def test_images_without_objects_are_not_counted_as_missing_detections(tmp_path):
    """Before: an image with no (non-crowd) object and no detection was said to hold missed objects."""
    from pycocotools.coco import COCO

    from maskrcnn.engine.results_file import note_scoring_conventions

    _, _, data = coco_dataset(tmp_path)
    data["images"] += [{"id": 3, "file_name": "im3.png", "height": 40, "width": 50},
                       {"id": 4, "file_name": "im4.png", "height": 40, "width": 50}]
    data["annotations"].append(dict(data["annotations"][0], id=9, image_id=4, iscrowd=1))  # crowd only
    gt = COCO()
    gt.dataset = data
    gt.createIndex()
    results = gt_as_results(data)
    with _warnings() as caught:
        note_scoring_conventions([r for r in results if r["image_id"] in (1, 2)], gt, "r.json")
        assert not caught  # images 3 and 4 have nothing to miss
        note_scoring_conventions([r for r in results if r["image_id"] == 1], gt, "r.json")
    notes = [str(w.message) for w in caught]
    assert len(notes) == 1 and notes[0].startswith("r.json: 1 of 2 ground-truth images with objects have no")


def test_zero_based_category_ids_are_refused_with_a_hint(cli, tmp_path):
    _, _, data = coco_dataset(tmp_path)
    results = [dict(r, category_id=r["category_id"] - 1) for r in gt_as_results(data)]
    res = _write(tmp_path / "res.json", results)
    rc, text, metrics, _ = _eval(cli, tmp_path, res)
    assert rc == 1 and metrics is None
    assert "category ids 0 are not in the ground truth" in text and "pass --category-offset 1" in text
    assert str(res) in text and len(text.strip().splitlines()) == 1


def test_zero_based_category_ids_are_scored_with_an_offset_or_a_map(cli, tmp_path):
    """--category-offset 1 and --category-map read 0-based ids (Ultralytics) as the ground truth's."""
    gt, _, data = coco_dataset(tmp_path)
    zero_based = [dict(r, category_id=r["category_id"] - 1) for r in gt_as_results(data)]
    res = _write(tmp_path / "res.json", zero_based)
    rc, text, metrics, notes = _eval_with(cli, tmp_path, gt, res, "--category-offset", "1")
    assert rc == 0, text
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and metrics["segm"]["AP"] == pytest.approx(100.0)
    assert f"{res}: +1 added to every category_id" in notes
    mapping = _write(tmp_path / "map.json", {"0": 1, "1": 2})
    rc, text, metrics, notes = _eval_with(cli, tmp_path, gt, res, "--category-map", mapping)
    assert rc == 0 and metrics["segm"]["AP"] == pytest.approx(100.0), text
    # a map that lacks an id, both options, an offset without --results: one line each
    short = _write(tmp_path / "short.json", {"0": 1})
    rc, text, _, _ = _eval_with(cli, tmp_path, gt, res, "--category-map", short)
    assert rc == 1 and f"{res}: category ids 1 are not in the category map" in text
    rc, text, _, _ = _eval_with(cli, tmp_path, gt, res, "--category-map", mapping, "--category-offset", "1")
    assert rc == 1 and "not both" in text
    rc, text, _, _ = _eval_with(cli, tmp_path, gt, res, "--category-map", tmp_path / "nope.json")
    assert rc == 1 and "nope.json: cannot read the category map" in text


def test_zero_based_ids_whose_zero_was_never_predicted_are_said(cli, tmp_path):
    """Results of class index 1 only (0-based: the ground truth's category 2), so every id is a ground-
    truth id: scored against category 1 silently before; now a warning names the file and the option."""
    gt, _, data = coco_dataset(tmp_path)
    shifted = [dict(r, category_id=1) for r in gt_as_results(data) if r["category_id"] == 2]
    res = _write(tmp_path / "res.json", shifted)
    rc, text, metrics, notes = _eval_with(cli, tmp_path, gt, res)
    assert rc == 0, text
    assert f"{res}: no result has category 2" in notes and "pass --category-offset 1" in notes
    right = _write(tmp_path / "right.json", [r for r in gt_as_results(data) if r["category_id"] == 2])
    _, _, _, notes = _eval_with(cli, tmp_path, gt, right)
    assert "--category-offset" not in notes


def _eval_with(cli, tmp_path, gt, res, *options):
    out = tmp_path / "m"
    with _warnings() as caught:
        rc, text = cli("eval", "--results", res, "--json", gt, "--output", out, *options)
    metrics = json.loads((out / "metrics.json").read_text()) if rc == 0 else None
    return rc, text, metrics, " | ".join(str(w.message) for w in caught)


# --------------------------------------------------------------------------------------------
# MMDetection's tools/test.py --out results.pkl


def _xyxy(box):
    x, y, w, h = box
    return [x, y, x + w, y + h]


def _bytes_rle(rle):
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}  # as encode_mask_results leaves it


def _v3_results(data, bitmaps=False):
    """MMDetection 3.x DumpDetResults: one dict per image (tensors, 0-based labels, RLE counts as bytes)."""
    import torch

    out = []
    for img in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == img["id"]]
        masks = ([_bytes_rle(a["segmentation"]) for a in anns] if not bitmaps else torch.stack(
            [torch.from_numpy(annotation_to_mask(a["segmentation"], 40, 50).numpy()) for a in anns]))
        pred = {"bboxes": torch.tensor([_xyxy(a["bbox"]) for a in anns], dtype=torch.float32),
                "scores": torch.full((len(anns),), 0.9),
                "labels": torch.tensor([a["category_id"] - 1 for a in anns]), "masks": masks}
        out.append({"img_id": img["id"], "img_path": f"data/{img['file_name']}", "ori_shape": (40, 50),
                    "pred_instances": pred})
    return out


def _v2_results(data, with_masks=True):
    """MMDetection 2.x: per image (in the ground truth's order) per class arrays (n, 5), RLE lists."""
    out = []
    for img in data["images"]:
        boxes, segms = [], []
        for cat in (1, 2):
            anns = [a for a in data["annotations"] if a["image_id"] == img["id"] and a["category_id"] == cat]
            boxes.append(np.array([_xyxy(a["bbox"]) + [0.9] for a in anns], np.float32).reshape(-1, 5))
            segms.append([_bytes_rle(a["segmentation"]) for a in anns])
        out.append((boxes, segms) if with_masks else boxes)
    return out


def _pickle(path, obj):
    import pickle

    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


@pytest.mark.parametrize("make, kinds", [
    (lambda d: _v3_results(d), ("bbox", "segm")),
    (lambda d: _v3_results(d, bitmaps=True), ("bbox", "segm")),
    (lambda d: _v2_results(d), ("bbox", "segm")),
    (lambda d: _v2_results(d, with_masks=False), ("bbox",)),
])  # fmt: skip
def test_mmdetection_out_pickles_are_scored(cli, tmp_path, make, kinds):
    """tools/test.py --out results.pkl of MMDetection 3.x (dicts with pred_instances) and 2.x (per-class
    arrays, in the ground truth's image order) is read and scored: the ground truth as detections, AP 100."""
    gt, _, data = coco_dataset(tmp_path)
    res = _pickle(tmp_path / "results.pkl", make(data))
    rc, text, metrics, notes = _eval_with(cli, tmp_path, gt, res)
    assert rc == 0, text
    assert sorted(metrics) == sorted([*kinds, "results", "json", "artefacts"])
    assert all(metrics[k]["AP"] == pytest.approx(100.0) for k in kinds)
    assert f"{res}: read as MMDetection" in notes and "4 detections" in notes


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("make, words", [
    # refused as predict refuses it (was read as an inert object, then refused as not results)
    (lambda m: _Hostile(m), "asks to run code (global posix.system) when unpickled; refused"),
    (lambda m: [{"img_id": 1, "pred_instances": _Hostile(m)}],
     "asks to run code (global posix.system) when unpickled; refused"),
    (lambda m: {"bbox": []}, "it holds a dict"),
    (lambda m: [[np.zeros((0, 5), np.float32)]], "2.x results hold 1 images, the ground truth 2"),
])  # fmt: skip
def test_a_pickle_that_is_not_mmdetection_results_is_refused_without_running_it(cli, tmp_path, make, words):
    """A pickle whose __reduce__ calls os.system is read without calling it (the marker file is never
    made) and refused in one line naming the file, as is any other object."""
    import os

    if os.name != "posix":
        pytest.skip("the hostile pickle names posix.system")
    gt, _, _ = coco_dataset(tmp_path)
    marker = tmp_path / "ran"
    res = _pickle(tmp_path / "results.pkl", make(marker))
    rc, text, _, _ = _eval_with(cli, tmp_path, gt, res)
    assert rc == 1 and not marker.exists()
    said = f"{res} asks to run code" if "run code" in words else f"{res}: not MMDetection results"
    assert said in text and words in text and len(text.strip().splitlines()) == 1
