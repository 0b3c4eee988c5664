"""Results files and ground truths that used to end ``eval --results`` in a traceback: malformed result
masks (left out of segm AP by name, the rest scored), a flat polygon (read as the ground truth's reader
reads it), ids mixing integers and strings (refused up front), integer file stems that are also ids
(the boxes choose the reading; ``--results-image-ids`` too), and records passed where paths are taken."""

import json
import warnings

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.data.mask_codec import mask_to_rle
from maskrcnn.engine.evaluator import evaluate_results_file

H, W = 40, 60
A, B = (4, 5, 20, 15), (30, 10, 50, 30)  # two squares (x1, y1, x2, y2)


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def _poly(box):
    x1, y1, x2, y2 = box
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def _rle(box) -> dict:
    x1, y1, x2, y2 = box
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y1:y2, x1:x2] = True
    rle = mask_to_rle(m)
    return dict(rle, counts=rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"])


def _xywh(box):
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def _gt(tmp_path, *, image_ids=(1,), category_id=1, boxes=(A, B)):
    """One object per box, on each image in turn when there are several; file names 0001.png, ..."""
    images = [{"id": i, "file_name": f"{n + 1:04d}.png", "height": H, "width": W}
              for n, i in enumerate(image_ids)]
    anns = [{"id": k + 1, "image_id": image_ids[k % len(image_ids)], "category_id": category_id, "iscrowd": 0,
             "bbox": _xywh(box), "segmentation": [_poly(box)]} for k, box in enumerate(boxes)]
    return _write(tmp_path / "gt.json", {"images": images, "categories": [{"id": category_id, "name": "sq"}],
                                         "annotations": anns})


def _results(segs):
    """A (score 0.9) and B (0.8) found on image 1, with the segmentations ``segs``."""
    return [{"image_id": 1, "category_id": 1, "bbox": _xywh(box), "score": score, "segmentation": seg}
            for box, score, seg in zip((A, B), (0.9, 0.8), segs)]


def _scores(metrics) -> str:
    """The AP and AR figures, as text: NaN (no object of a size) equals NaN there."""
    return json.dumps({kind: {k: v for k, v in m.items() if k in ("AP", "AP50", "AP75", "AR", "per_category")}
                       for kind, m in metrics.items()}, sort_keys=True)


@pytest.mark.parametrize("bad", [
    {"counts": "x", "size": None},
    {"counts": "x", "size": ["a", "b"]},
    {"counts": "x"},
    [_poly(A), 5],
], ids=["size-null", "size-strings", "size-missing", "bare-number-in-polygons"])
def test_a_malformed_result_mask_is_left_out_by_name_and_the_rest_scored(tmp_path, bad):
    gt = _gt(tmp_path)
    path = _write(tmp_path / "r.json", _results([bad, _rle(B)]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_results_file(gt, path)  # was a TypeError / KeyError / "invalid literal" traceback
    said = [str(w.message) for w in caught if "left out of the evaluation" in str(w.message)]
    assert len(said) == 1
    assert said[0].startswith(f"{path}: 1 of 2 results left out")
    assert "result 0 (image_id 1): segmentation: " in said[0] and "(left out of segm AP only)" in said[0]
    # scored as if the record had no mask: its box still counts, its mask is absent from segm AP
    without = _results([None, _rle(B)])
    del without[0]["segmentation"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = evaluate_results_file(gt, _write(tmp_path / "r_without.json", without))
    assert _scores(metrics) == _scores(expected)
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and metrics["segm"]["AP"] < 100.0


def test_a_flat_polygon_in_results_is_read_as_wrapped_as_in_the_ground_truth(tmp_path):
    gt = _gt(tmp_path)
    flat = _write(tmp_path / "flat.json", _results([_poly(A), _poly(B)]))
    with pytest.warns(UserWarning, match=rf"^{flat}: 2 segmentations are one flat polygon \[x1, y1, \.\.\.\] "
                                         r"not wrapped in a list: read as \[\[x1, y1, \.\.\.\]\]"):
        metrics = evaluate_results_file(gt, flat)  # was "object of type 'float' has no len()"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = evaluate_results_file(gt, _write(tmp_path / "wrapped.json",
                                                   _results([[_poly(A)], [_poly(B)]])))
    assert _scores(metrics) == _scores(wrapped)
    assert metrics["segm"]["AP"] == pytest.approx(100.0)


@pytest.mark.parametrize("field", ["images", "categories"])
def test_ground_truth_ids_mixing_integers_and_strings_are_refused_up_front(tmp_path, capsys, field):
    if field == "images":  # two datasets merged: one numbers its images, the other names them
        gt = _gt(tmp_path, image_ids=(1, "img_b"))
        results = _results([_rle(A), _rle(B)])
        example = "(1, 'img_b')"
    else:
        data = json.loads(_gt(tmp_path).read_text())
        data["categories"].append({"id": "2", "name": "other"})
        gt = _write(tmp_path / "gt.json", data)
        results = _results([_rle(A), _rle(B)])
        example = "(1, '2')"
    path = _write(tmp_path / "r.json", results)
    mixed = rf"^{gt}: .*{field}' id values mix integers and strings \({example[1:-1]}\)"
    with pytest.raises(ValueError, match=mixed):  # was "'<' not supported between 'int' and 'str'"
        evaluate_results_file(gt, path)
    assert main(["eval", "--results", str(path), "--json", str(gt)]) == 1
    err = capsys.readouterr().err
    assert "mix integers and strings" in err and "Traceback" not in err


def test_records_given_where_paths_are_taken_say_what_is_taken(tmp_path):
    gt = _gt(tmp_path)
    with pytest.raises(TypeError, match=r"a path, a comma-separated list of paths or a list of paths, got a "
                                        r"list holding a dict .*write them to a JSON file"):
        evaluate_results_file(gt, _results([_rle(A), _rle(B)]))  # was "expected str, bytes or os.PathLike"
    with pytest.raises(TypeError, match=r"got a dict \(a results record\?\)"):
        evaluate_results_file(gt, _results([_rle(A)])[0])  # was "image_id: no such results file"
    for nothing in ("", []):  # was a StopIteration traceback ("") and an empty dict ([])
        with pytest.raises(ValueError, match="no results file named"):
            evaluate_results_file(gt, nothing)


def _stem_results():
    """Ultralytics' image_id = int(stem) for files 0001.png (image id 0) and 0002.png (id 1): A and B
    found; 0003.png (id 2, its object C) has none, so every value is also an id of the ground truth."""
    return [{"image_id": stem, "category_id": 1, "bbox": _xywh(box), "score": 0.9}
            for stem, box in ((1, A), (2, B))]


C = (10, 20, 25, 35)


def test_integer_stems_that_are_also_ids_say_both_readings_and_the_option_chooses(tmp_path):
    gt = _gt(tmp_path, image_ids=(0, 1, 2), boxes=(A, B, C))
    path = _write(tmp_path / "r.json", _stem_results())
    # both readings fit: auto takes the one the boxes agree with (it took ids: AP 0, with a note)
    with pytest.warns(UserWarning, match=r"read as file names, as the detections say \(0 of the 2 .* 2 "
                                         r"read as file names\); --results-image-ids id reads them the "
                                         r"other way"):
        auto = evaluate_results_file(gt, path, iou_types=["bbox"])
    # the same detections written with the ground truth's ids, read as ids
    ids = _write(tmp_path / "ids.json", [dict(r, image_id=r["image_id"] - 1) for r in _stem_results()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        by_name = evaluate_results_file(gt, path, iou_types=["bbox"], image_ids="file-name")
        expected = evaluate_results_file(gt, ids, iou_types=["bbox"], image_ids="id")
        as_ids = evaluate_results_file(gt, path, iou_types=["bbox"], image_ids="id")
    assert not [w for w in caught if "image_id" in str(w.message)]  # a choice made is no news
    assert _scores(by_name) == _scores(expected) == _scores(auto)
    assert by_name["bbox"]["AP"] > 50 and as_ids["bbox"]["AP"] < 1  # each box on its neighbour's image
    out = tmp_path / "ev"
    assert main(["eval", "--results", str(path), "--json", str(gt), "--results-image-ids", "file-name",
                 "--output", str(out)]) == 0
    written = json.loads((out / "metrics.json").read_text())
    assert written["bbox"]["AP"] == pytest.approx(by_name["bbox"]["AP"])


def test_file_name_reading_refuses_a_value_that_names_no_image(tmp_path):
    gt = _gt(tmp_path, image_ids=(0, 1, 2), boxes=(A, B, C))
    path = _write(tmp_path / "r.json", _stem_results() + [dict(_stem_results()[0], image_id=7)])
    with pytest.raises(ValueError, match=rf"^{path}: --results-image-ids file-name: image_id 7 is not "
                                         r"the file name, base name or stem of one image"):
        evaluate_results_file(gt, path, iou_types=["bbox"], image_ids="file-name")
