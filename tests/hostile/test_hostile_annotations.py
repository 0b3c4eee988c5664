"""Hostile ground truth: annotation records pycocotools' C code cannot take (a fatal signal before),
values that clipping would hide, ids that made pycocotools mis-score, unreadable files."""

import json
import subprocess
import sys

import pytest
from hostile_helpers import box_rle, coco_dataset, gt_as_results

from maskrcnn.data.coco import CocoDataset

# (field words expected in the message, the hostile annotation's fields); each joins the good four as id 5
BAD_ANNOTATIONS = {
    "polygon_1e10": ("far outside", {"segmentation": [[1e10, 1.0, 2e10, 5.0, 3.0, 1e10]]}),
    "rle_overflow": ("2**32", {"segmentation": {"size": [40, 50], "counts": [2**40, 10, 2**40]}}),
    "rle_too_long": ("cover", {"segmentation": {"size": [40, 50], "counts": [1000, 1000, 1000]}}),
    "rle_garbage": ("RLE counts", {"segmentation": {"size": [40, 50], "counts": "\x01\x02~~~~"}}),
    "bbox_nan": ("bbox", {"bbox": [1.0, float("nan"), 5.0, 5.0]}),
    "bbox_1e30": ("past the 50x40 image", {"bbox": [0, 0, 1e30, 1e30]}),
    "category_list": ("category_id", {"category_id": [1]}),
    "image_id_dict": ("unknown or skipped image", {"image_id": {"id": 1}}),
}


def _with_bad(fields):
    def edit(anns):
        bad = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 2, 6, 6], "iscrowd": 0,
               "segmentation": box_rle(40, 50, [2, 2, 6, 6])}  # fmt: skip
        bad.update(fields)
        return anns + [bad]

    return edit


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotation_is_skipped_by_name(tmp_path, case):
    words, fields = BAD_ANNOTATIONS[case]
    path, images, _ = coco_dataset(tmp_path, _with_bad(fields))
    with pytest.warns(UserWarning, match="skipped 1 "):
        ds = CocoDataset(json_path=path, image_dir=images)
    assert len(ds.problems) == 1, ds.problems
    assert str(path) in ds.problems[0] and "annotation id 5" in ds.problems[0] and words in ds.problems[0]
    assert sum(len(ds[i][1]["labels"]) for i in range(len(ds))) == 4  # the good four are all kept


def test_native_crashes_are_gone_from_eval(tmp_path):
    """Before validation, pycocotools died of SIGSEGV on the first file and looped on the second."""
    path, _, data = coco_dataset(tmp_path, _with_bad(BAD_ANNOTATIONS["polygon_1e10"][1]))
    results = tmp_path / "res.json"
    results.write_text(json.dumps(gt_as_results(data)[:4]))
    proc = subprocess.run(
        [sys.executable, "-m", "maskrcnn.cli", "eval", "--results", str(results), "--json", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # not a negative (signal) status
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and "annotation id 5" in proc.stderr and "segmentation" in proc.stderr


@pytest.mark.parametrize("ids", [[0, 1, 2, 3], [7, 7, 7, 7], ["a", "b", "c", "d"], [0, 0, "x", 2.5]])
def test_ground_truth_as_predictions_scores_100_whatever_the_ids(cli, tmp_path, ids):
    def renumber(anns):
        return [dict(a, id=i) for a, i in zip(anns, ids)]

    path, _, data = coco_dataset(tmp_path, renumber)
    results = tmp_path / "res.json"
    results.write_text(json.dumps(gt_as_results(data)))
    rc, text = cli("eval", "--results", results, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and metrics["segm"]["AP"] == pytest.approx(100.0)


def test_ground_truth_polygon_list_starting_with_two_points_is_scored(cli, tmp_path):
    """A 2-point polygon first in the list (CVAT and Roboflow export such slivers) made pycocotools read
    the whole list as boxes: a TypeError traceback in COCOeval. It is left out, as training leaves it."""
    results = tmp_path / "res.json"
    results.write_text(json.dumps(gt_as_results(coco_dataset(tmp_path / "ok")[2])))

    def sliver_first(anns):
        x, y, w, h = anns[2]["bbox"]
        anns[2]["segmentation"] = [[30, 30, 40, 30], [x, y, x + w, y, x + w, y + h, x, y + h]]
        return anns

    path, _, _ = coco_dataset(tmp_path, sliver_first)
    rc, text = cli("eval", "--results", results, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["segm"]["AP"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "field, value, words",
    [("bbox", [1, float("nan"), 5, 5], "bbox"), ("area", float("nan"), "area"),
     ("iscrowd", "yes", "iscrowd"), ("segmentation", [[1e10, 1, 2, 3, 4, 5]], "segmentation")],
)  # fmt: skip
def test_bad_ground_truth_value_is_refused_by_name(cli, tmp_path, field, value, words):
    def spoil(anns):
        anns[2][field] = value
        return anns

    path, _, data = coco_dataset(tmp_path, spoil)
    results = tmp_path / "res.json"
    results.write_text(json.dumps(gt_as_results(coco_dataset(tmp_path / "ok")[2])))
    out = tmp_path / "m"
    out.mkdir()
    (out / "metrics.json").write_text("{\"earlier\": 1}")
    rc, text = cli("eval", "--results", results, "--json", path, "--output", out)
    assert rc == 1 and str(path) in text and "annotation id 3" in text and words in text
    assert (out / "metrics.json").read_text() == "{\"earlier\": 1}"  # nothing half-done written


def test_training_set_without_one_usable_record_is_named(cli, tmp_path):
    path, images, _ = coco_dataset(tmp_path, lambda anns: [dict(a, bbox=[0, 0, -1, 3]) for a in anns])
    with pytest.warns(UserWarning, match="skipped 4 bad_bbox"):
        rc, text = cli("train", "--config", "demo", "--train-json", path, "--train-images", images,
                       "--output", tmp_path / "run", "--device", "cpu")  # fmt: skip
    assert rc == 1 and str(path) in text and "no usable training image" in text
    assert "--train-images" not in text  # the files were found: the folder is not the fault
    assert not (tmp_path / "run").exists()


def test_training_images_in_another_folder_than_guessed_get_a_hint(cli, tmp_path):
    path, _, _ = coco_dataset(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.warns(UserWarning, match="missing_image_file"):
        rc, text = cli("train", "--config", "demo", "--train-json", path, "--train-images", elsewhere,
                       "--output", tmp_path / "run", "--device", "cpu")  # fmt: skip
    assert rc == 1 and "no usable training image" in text
    hint = f"of its image files are not under {elsewhere}: give the folder that holds them with --train-"
    assert hint + "images" in text


@pytest.mark.parametrize(
    "content, words",
    [(b'{"images": [', "not valid JSON"), (b"\xff\xfe\x00garbage", "not valid JSON"),
     (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
     (b'{"images": [' + b"9" * 5000 + b"]}", "not valid JSON"),
     (b"[1, 2]", "a COCO file is a JSON object"), (b'{"images": 3, "categories": []}', "'images'")],
)  # fmt: skip
def test_unreadable_annotation_file_is_named(cli, tmp_path, content, words):
    _, images, _ = coco_dataset(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    rc, text = cli("show-data", "--json", bad, "--images", images, "--output", tmp_path / "show")
    assert rc == 1 and str(bad) in text and words in text


def test_categories_sharing_a_name_stay_apart(cli, tmp_path):
    """Two categories named alike (merged exports): per-category AP keyed by name kept one of the two,
    show-data merged their counts and overlays could not tell them apart."""

    def rename(data):
        data["categories"][1]["name"] = "a"
        return data

    path, images, data = coco_dataset(tmp_path)
    path.write_text(json.dumps(rename(data)))
    with pytest.warns(UserWarning, match=r"categories share the names \['a'\]"):
        ds = CocoDataset(json_path=path, image_dir=images)
    assert ds.class_names == ["__background__", "a (id 1)", "a (id 2)"]
    results = tmp_path / "res.json"
    results.write_text(json.dumps(gt_as_results(data)))
    rc, text = cli("eval", "--results", results, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    per_category = json.loads((tmp_path / "m" / "metrics.json").read_text())["bbox"]["per_category"]
    assert per_category == {"a (id 1)": pytest.approx(100.0), "a (id 2)": pytest.approx(100.0)}


def test_a_dataset_numbering_the_classes_otherwise_is_matched_by_name(tiny_checkpoint, tmp_path, capsys):
    """The same classes exported with other ids (b = 1, a = 2): eval --weights, and validation during
    training (both map labels by label_mapping), scored every 'a' detection as a 'b', silently."""
    from maskrcnn.engine.inference import label_mapping
    from maskrcnn.predictor import Predictor

    path, images, data = coco_dataset(tmp_path)
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(dict(
        data, categories=[{"id": 1, "name": "b"}, {"id": 2, "name": "a"}],
        annotations=[dict(a, category_id=3 - a["category_id"]) for a in data["annotations"]])))
    predictor = Predictor.from_weights(tiny_checkpoint, device="cpu", optimise=False)  # classes a, b
    assert label_mapping(predictor, CocoDataset(json_path=path, image_dir=images)) == {1: 1, 2: 2}
    assert capsys.readouterr().err == ""
    assert label_mapping(predictor, CocoDataset(json_path=swapped, image_dir=images)) == {1: 2, 2: 1}
    assert "numbers the model's classes differently; matching them by name" in capsys.readouterr().err


def test_a_split_without_some_of_the_models_classes_is_matched_by_name(tiny_checkpoint, tmp_path, capsys):
    """A validation split converted on its own lists only the classes it holds (here: b, as id 1):
    the model's 'a' detections were scored as 'b' (by position), its 'b' ones named an id the file
    lacks, and validation at the end of training failed ('labels [2] have no category id') after
    the whole run. Now the classes are matched by name and the missing class's detections left out."""
    import torch

    from maskrcnn.engine.inference import build_evaluator, label_mapping
    from maskrcnn.predictor import Predictor

    _, images, data = coco_dataset(tmp_path)
    only_b = tmp_path / "only_b.json"
    b_anns = [dict(a, category_id=1) for a in data["annotations"] if a["category_id"] == 2]
    only_b.write_text(json.dumps(dict(data, categories=[{"id": 1, "name": "b"}], annotations=b_anns)))
    predictor = Predictor.from_weights(tiny_checkpoint, device="cpu", optimise=False)  # classes a, b
    dataset = CocoDataset(json_path=only_b, image_dir=images)
    assert label_mapping(predictor, dataset) == {2: 1}
    assert "not in it, their detections left out: a" in capsys.readouterr().err
    evaluator = build_evaluator(predictor, dataset)
    for image_id in (1, 2):
        mine = [a for a in b_anns if a["image_id"] == image_id]
        xyxy = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in mine)] + [[0, 0, 9, 9]]
        rles = [a["segmentation"] for a in mine] + [mine[0]["segmentation"]]  # the 'a' one covers a 'b'
        labels = torch.tensor([2] * len(mine) + [1])
        evaluator.process(image_id, {"boxes": torch.tensor(xyxy).float(), "labels": labels,
                                     "scores": torch.full((len(xyxy),), 0.9), "masks_rle": rles})
    metrics = evaluator.evaluate()
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and metrics["segm"]["AP"] == pytest.approx(100.0)
    assert {r["category_id"] for r in evaluator.results()} == {1}
