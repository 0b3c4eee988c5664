"""``eval --results``' ``--results-image-ids``: auto takes the reading under which every image_id names an
image, and when both readings do (numbered file stems that are other images' ids) the one the
detections' boxes clearly agree with, else ids with a note; most values file names, the rest are
named; quoted ids read as the ids; ``id``'s refusal says only ids were tried; and our own writer writes
"7" as 7."""

import json
import warnings

import pytest
import torch
from hostile_helpers import coco_dataset, gt_as_results

from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.engine.evaluator import evaluate_results_file


def _write(path, results):
    path.write_text(json.dumps(results))
    return path


def _swapped_names(tmp_path):
    """The hostile dataset with image 1 stored as '2.png' and image 2 as '1.png': every value 1 or 2 is
    an id of one image and the file stem of the other."""
    path, _, data = coco_dataset(tmp_path)
    data["images"][0]["file_name"], data["images"][1]["file_name"] = "2.png", "1.png"
    path.write_text(json.dumps(data))
    return path, data


def _score(gt, results_path, **kw):
    """(bbox AP, the warnings' text)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_results_file(gt, results_path, iou_types=["bbox"], **kw)
    return metrics["bbox"]["AP"], " | ".join(str(w.message) for w in caught)


@pytest.mark.parametrize("as_str", [False, True])
def test_stems_that_are_other_images_ids_are_read_as_file_names_as_the_boxes_say(tmp_path, as_str):
    # Ultralytics' image_id = the stem: it was read as ids (each box on the other image: AP 0, one note)
    gt, data = _swapped_names(tmp_path)
    stem = {1: 2, 2: 1}
    results = [dict(r, image_id=str(stem[r["image_id"]]) if as_str else stem[r["image_id"]])
               for r in gt_as_results(data)]
    ap, notes = _score(gt, _write(tmp_path / "predictions.json", results))
    assert ap == pytest.approx(100.0)
    assert "read as file names, as the detections say (0 of the 4 detections" in notes
    assert "4 read as file names); --results-image-ids id reads them the other way" in notes


def test_ids_that_are_other_images_file_names_stay_ids_as_the_boxes_say(tmp_path):
    gt, data = _swapped_names(tmp_path)  # detectron2's / MMDetection's: the ground truth's ids
    ap, notes = _score(gt, _write(tmp_path / "coco_instances_results.json", gt_as_results(data)))
    assert ap == pytest.approx(100.0) and "read as ids, as the detections say (4 of the 4" in notes


def test_two_fitting_readings_the_boxes_cannot_tell_apart_are_read_as_ids_with_the_other_option(tmp_path):
    gt, data = _swapped_names(tmp_path)
    res = _write(tmp_path / "r.json", [dict(r, bbox=[40, 30, 3, 3]) for r in gt_as_results(data)])
    ap, notes = _score(gt, res)  # ids, as every tool but Ultralytics writes them; the note names the other
    assert ap == pytest.approx(0.0)
    assert notes.startswith(f"{res}: the image_id values are ids of the ground truth's images and also file "
                            f"names of others (2 differ; e.g. 1 is image id 1 and the file of image id 2): "
                            f"read as ids, as most tools write them; the detections do not say which (0 of "
                            f"the 4")
    assert "--results-image-ids file-name reads them as file names" in notes


def _cell(k):
    """Image k's one object: a 4 x 4 box of its own place on a 10 x 4 grid (no two overlap)."""
    return [5.0 * (k % 10), 5.0 * (k // 10), 4.0, 4.0]


def _square(box):
    x, y, w, h = box
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def test_a_chance_box_hit_or_two_does_not_turn_every_image_around(tmp_path):
    # 20 images whose files are numbered in another order than their ids; results carry the true ids
    # (detectron2's) from an untrained model: 2 of its boxes happen to hit an object of the image their
    # id is the file of, none of their own. 2 > 2 * 0 read them as file names before.
    path, _, data = coco_dataset(tmp_path)
    first = data["images"][0]
    images, annotations = [], []
    for k in range(20):
        images.append(dict(first, id=k + 1, file_name=f"{(k + 7) % 20 + 1}.png"))
        annotations.append(dict(id=k + 1, image_id=k + 1, category_id=data["annotations"][0]["category_id"],
                                bbox=_cell(k), area=16.0, iscrowd=0, segmentation=[_square(_cell(k))]))
    data["images"], data["annotations"] = images, annotations
    path.write_text(json.dumps(data))
    by_name = {int(img["file_name"][:-4]): img["id"] for img in images}  # v as a file: image by_name[v]
    results = []
    for k in range(20):
        v = k + 1
        target = by_name[v]  # the image v names as a file
        box = _cell(target - 1) if k < 2 else [40.0, 32.0, 4.0, 4.0]  # two chance hits; the rest: none
        results.append(dict(image_id=v, category_id=annotations[0]["category_id"], score=0.9, bbox=box))
    ap, notes = _score(path, _write(tmp_path / "r.json", results))
    assert "read as ids, as most tools write them; the detections do not say which (0 of the 20" in notes
    assert "2 read as file names" in notes


def test_mostly_file_names_are_read_so_and_the_value_of_no_image_is_named(tmp_path):
    path, _, data = coco_dataset(tmp_path)
    data["images"][0]["file_name"], data["images"][1]["file_name"] = "0002.png", "0005.png"
    path.write_text(json.dumps(data))
    stem = {1: 2, 2: 5}  # 2 is also image 2's id: it was refused as ids "mixed" with file names
    results = [dict(r, image_id=stem[r["image_id"]]) for r in gt_as_results(data)]
    res = _write(tmp_path / "r.json", results + [dict(results[0], image_id=9)])
    with pytest.raises(ValueError) as e:
        evaluate_results_file(path, res, iou_types=["bbox"])
    assert str(e.value) == (f"{res}: image_id read as file names (2 of its 3 values name one image of the "
                            f"ground truth by file name, base name or stem; 1 is an id of its images), but 9 "
                            f"names none of its images: predictions of images it does not list?")


def test_quoted_ids_are_read_as_the_ids_with_a_note(tmp_path):
    path, _, data = coco_dataset(tmp_path)  # files im1.png, im2.png: "1" names no file
    results = [dict(r, image_id=str(r["image_id"])) for r in gt_as_results(data)]
    for reading in ("auto", "id"):  # refused before, "write image_id as a JSON number"
        ap, notes = _score(path, _write(tmp_path / "r.json", results), image_ids=reading)
        assert ap == pytest.approx(100.0)
        assert "image_id '1' -> 1, '2' -> 2: strings (quoted in the file) of the ground truth's" in notes


def test_integer_ids_of_a_ground_truth_of_string_ids_are_read_as_them(tmp_path):
    path, _, data = coco_dataset(tmp_path)
    data["images"] = [dict(img, id=f"{img['id']}") for img in data["images"]]
    data["annotations"] = [dict(a, image_id=f"{a['image_id']}") for a in data["annotations"]]
    path.write_text(json.dumps(data))
    results = [dict(r, image_id=int(r["image_id"])) for r in gt_as_results(data)]
    ap, notes = _score(path, _write(tmp_path / "r.json", results))
    assert ap == pytest.approx(100.0) and "numbers where the ground truth's image ids are strings" in notes


def test_the_id_readings_refusal_says_it_tried_ids_only(tmp_path):
    path, _, data = coco_dataset(tmp_path)
    res = _write(tmp_path / "r.json", gt_as_results(data) + [dict(gt_as_results(data)[0], image_id=7)])
    with pytest.raises(ValueError) as e:  # said "(neither as ids nor as file names of its images)"
        evaluate_results_file(path, res, iou_types=["bbox"], image_ids="id")
    assert str(e.value) == (f"{res}: image ids 7 are not ids of the ground truth's images (read as ids only: "
                            f"--results-image-ids id)")
    names = _write(tmp_path / "n.json",
                   [dict(r, image_id=f"im{r['image_id']}.png") for r in gt_as_results(data)])
    with pytest.raises(ValueError) as e:
        evaluate_results_file(path, names, iou_types=["bbox"], image_ids="id")
    assert ("file names of its images: --results-image-ids file-name (or auto) matches them by name"
            in str(e.value))
    assert "neither as ids nor as file names" not in str(e.value)


@pytest.mark.parametrize("given, written", [("7", 7), ("123", 123), ("0", 0), ("007", "007"), (" 7", " 7"),
                                            ("img_7", "img_7"), ("٣", "٣")])
def test_our_writer_writes_an_integers_spelling_as_the_integer(given, written):
    det = {"boxes": torch.tensor([[1.0, 2.0, 5.0, 6.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([1])}
    out = detections_to_coco_results(det, image_id=given)[0]["image_id"]
    assert out == written and type(out) is type(written)  # "7" was kept a string: eval refused it


def test_our_writers_records_score_without_a_note(tmp_path):
    path, _, data = coco_dataset(tmp_path)
    records = []
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        det = {"boxes": torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32),
               "scores": torch.tensor([0.9]), "labels": torch.tensor([a["category_id"]])}
        records += detections_to_coco_results(det, image_id=str(a["image_id"]))
    ap, notes = _score(path, _write(tmp_path / "r.json", records))
    assert ap == pytest.approx(100.0) and "image_id" not in notes


def test_zero_based_categories_do_not_hide_which_image_is_which(cli, tmp_path):
    # Ultralytics' stems and its 0-based class indices together: the boxes still tell the images apart,
    # and the categories are then refused with their own hint (one line on the command line)
    gt, data = _swapped_names(tmp_path)
    stem = {1: 2, 2: 1}
    res = _write(tmp_path / "predictions.json", [dict(r, image_id=stem[r["image_id"]],
                                                      category_id=r["category_id"] - 1)
                                                 for r in gt_as_results(data)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc, text = cli("eval", "--results", res, "--json", gt)
        assert rc == 1 and "pass --category-offset 1" in text and len(text.strip().splitlines()) == 1
        ap, notes = _score(gt, res, category_offset=1)
    assert ap == pytest.approx(100.0) and "read as file names, as the detections say" in notes
