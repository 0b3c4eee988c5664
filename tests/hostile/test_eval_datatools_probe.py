"""``maskrcnn eval`` findings of the p_datatools probe: the 0-based hint where +1 cannot work, fake 0.00 for
size ranges without objects when nothing is detected, string ids shown as numbers, a predictions.json
beside a --results metrics.json, and a wrong image record blamed on its annotations."""

import json
import os
import shutil
import warnings

import pytest
from hostile_helpers import coco_dataset, gt_as_results

from maskrcnn.engine.results_file import zero_based_hint


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def _eval(cli, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cli("eval", *args)


def test_zero_based_ids_of_non_contiguous_categories_get_a_category_map_hint(cli, tmp_path):
    """Ground-truth ids 1 and 7, results 0 and 1 (class indices): +1 gives 2, not one of them. The hint
    said "pass --category-offset 1", which then refused id 2."""
    path, _, data = coco_dataset(tmp_path)
    data["categories"][1]["id"] = 7
    for a in data["annotations"]:
        a["category_id"] = 7 if a["category_id"] == 2 else a["category_id"]
    _write(path, data)
    index = {1: 0, 7: 1}
    res = _write(tmp_path / "res.json",
                 [dict(r, category_id=index[r["category_id"]]) for r in gt_as_results(data)])
    rc, text = _eval(cli, "--results", res, "--json", path)
    assert rc == 1 and "category ids 0 are not in the ground truth (which has 1, 7)" in text
    assert "pass --category-offset 1" not in text
    assert "--category-offset 1 would not map them all (+1 gives 2, not a ground-truth id)" in text
    assert 'map each with --category-map MAP.json, e.g. {"0": 1, "1": 7}' in text
    # the hinted map is right
    mapping = _write(tmp_path / "map.json", {"0": 1, "1": 7})
    rc, text = _eval(cli, "--results", res, "--json", path, "--category-map", mapping,
                     "--output", tmp_path / "m")
    assert rc == 0, text
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["segm"]["AP"] == pytest.approx(100.0)


def test_zero_based_hint_offers_the_offset_only_when_it_maps_every_id():
    assert "pass --category-offset 1" in zero_based_hint({0, 1, 2}, [1, 2, 3])
    assert "--category-map" not in zero_based_hint({0, 1, 2}, [1, 2, 3])
    # the bad id alone (0) fits after +1, the file's 2 does not: the old test looked at the bad ids only
    hint = zero_based_hint({0, 1, 2}, [1, 2, 7])
    assert "pass --category-offset 1" not in hint and '{"0": 1, "1": 2, "2": 7}' in hint
    assert zero_based_hint({0, 5}, [1, 2]) == ""  # not indices of its categories: no guess


def _metrics(tmp_path, name="m"):
    return json.loads((tmp_path / name / "metrics.json").read_text())


@pytest.mark.parametrize("kind", ["empty", "all_left_out"])
def test_no_detections_give_null_for_size_ranges_without_objects(cli, tmp_path, kind):
    """The ground truth's objects are all small (under 32x32): APm and APl are undefined ('-', null), as
    COCOeval gives them with any detection; with none they read 0.00. segm is scored too (it vanished)."""
    path, _, data = coco_dataset(tmp_path)
    results = [] if kind == "empty" else [dict(r, score=float("nan")) for r in gt_as_results(data)]
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))  # NaN as JSON's NaN: left out, with a warning
    rc, text = _eval(cli, "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    metrics = _metrics(tmp_path)
    assert set(metrics) >= {"bbox", "segm"}
    for iou_type in ("bbox", "segm"):
        row = metrics[iou_type]
        assert (row["AP"], row["AP50"], row["APs"]) == (0.0, 0.0, 0.0)
        assert row["APm"] is None and row["APl"] is None, row
    table = next(line for line in text.splitlines() if line.startswith("bbox "))
    assert table.split()[1:] == ["0.00", "0.00", "0.00", "0.00", "-", "-"]


def test_evaluator_without_detections_scores_as_cocoeval(tmp_path):
    """A category without objects in the images scored is NaN, not 0, as with detections."""
    import torch

    from maskrcnn.engine.evaluator import CocoEvaluator

    path, _, data = coco_dataset(tmp_path)
    ev = CocoEvaluator(path, iou_types=("bbox",))
    none = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    ev.process(1, none)
    metrics = ev.evaluate()["bbox"]
    assert metrics["AP"] == 0.0 and metrics["APs"] == 0.0
    assert metrics["APm"] != metrics["APm"] and metrics["APl"] != metrics["APl"]  # NaN


def test_string_category_ids_are_said_to_be_strings(cli, tmp_path):
    """It said "category ids 1, 2 are not in the ground truth (which has 1, 2)"."""
    path, _, data = coco_dataset(tmp_path)
    res = _write(tmp_path / "res.json",
                 [dict(r, category_id=str(r["category_id"])) for r in gt_as_results(data)])
    rc, text = _eval(cli, "--results", res, "--json", path)
    assert rc == 1 and len(text.strip().splitlines()) == 1
    assert "category ids '1', '2' are not in the ground truth (which has 1, 2); they are strings" in text
    assert ('write category_id as a JSON number (1, not "1"), or pass --category-map MAP.json with '
            '{"1": 1, "2": 2}') in text
    mapping = _write(tmp_path / "map.json", {"1": 1, "2": 2})  # the hinted way scores them
    rc, text = _eval(cli, "--results", res, "--json", path, "--category-map", mapping,
                     "--output", tmp_path / "m")
    assert rc == 0, text
    assert _metrics(tmp_path)["bbox"]["AP"] == pytest.approx(100.0)


def test_string_image_ids_are_said_to_be_strings(cli, tmp_path):
    # refused before ("write image_id as a JSON number"): "1" names no image but id 1, so it is read so
    path, _, data = coco_dataset(tmp_path)
    res = _write(tmp_path / "res.json", [dict(r, image_id=str(r["image_id"])) for r in gt_as_results(data)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, text = cli("eval", "--results", res, "--json", path, "--output", tmp_path / "m")
    assert rc == 0, text
    assert (f"{res}: image_id '1' -> 1, '2' -> 2: strings (quoted in the file) of the ground truth's integer "
            f"image ids, read as those ids (write image_id as a JSON number)") in [str(w.message)
                                                                                    for w in caught]
    assert _metrics(tmp_path)["bbox"]["AP"] == pytest.approx(100.0)


def test_results_into_a_weights_runs_folder_keep_its_predictions_and_say_so(tmp_path, tiny_checkpoint,
                                                                            monkeypatch, capsys):
    """A --results evaluation into the folder of a --weights run removed that run's predictions.json (the
    user's filtered copy of it scored there lost the inference it came from), saying so on stdout, before
    metrics.json was written; and metrics.json named the weights as typed (relative) while its "json" and
    "results" were absolute. Now predictions.json is never removed: a warning on stderr names it and says
    that metrics.json describes the results file; "weights" is absolute too."""
    from maskrcnn.cli import main

    path, images, data = coco_dataset(tmp_path)
    out = tmp_path / "ev"
    monkeypatch.chdir(tiny_checkpoint.parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["eval", "--weights", tiny_checkpoint.name, "--json", str(path), "--images", str(images),
                     "--output", str(out), "--device", "cpu"]) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert first["weights"] == str(tiny_checkpoint) and first["json"] == os.path.abspath(path)
    predictions = (out / "predictions.json").read_bytes()
    filtered = _write(out / "filtered.json", [r for r in json.loads(predictions) if r["score"] > 0.5])
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["eval", "--results", str(filtered), "--json", str(path), "--output", str(out)]) == 0
    printed = capsys.readouterr()
    assert (out / "predictions.json").read_bytes() == predictions  # untouched
    assert "predictions.json" not in printed.out.replace(str(out / "metrics.json"), "")
    assert (f"warning: {out / 'predictions.json'} is not what this evaluation scored: {out / 'metrics.json'} "
            f"now describes {filtered} (its \"results\" key); {out / 'predictions.json'} is left as it is"
            ) in printed.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["results"] == [str(filtered)] and metrics["json"] == os.path.abspath(path)
    assert "weights" not in metrics and "images_evaluated" not in metrics


def test_weights_with_ema_suffix_are_absolute_in_metrics_json(tmp_path, monkeypatch):
    from maskrcnn.commands.eval import _weights_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.pth").write_bytes(b"x")
    assert _weights_path("m.pth") == str(tmp_path / "m.pth")
    assert _weights_path("m.pth#ema") == str(tmp_path / "m.pth") + "#ema"


def test_a_predictions_file_not_of_a_weights_run_is_named_and_kept(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    out = tmp_path / "ev"
    out.mkdir()
    mine = _write(out / "predictions.json", gt_as_results(data))  # the user's own file
    res = _write(tmp_path / "res.json", gt_as_results(data))
    rc, text = _eval(cli, "--results", res, "--json", path, "--output", out)
    assert rc == 0 and mine.is_file()
    assert f"warning: {mine} is not what this evaluation scored: {out / 'metrics.json'} now describes" in text
    # scoring that very file again into its folder keeps it, without a word
    rc, text = _eval(cli, "--results", mine, "--json", path, "--output", out)
    assert rc == 0 and mine.is_file()
    assert "predictions.json" not in text.replace(str(out / "metrics.json"), "")


def test_a_wrong_image_record_size_is_named_not_its_annotations(cli, tmp_path):
    """Image 1's record says 40x100, its file (and masks) are 40x50: eval blamed the two annotations."""
    path, images, data = coco_dataset(tmp_path)
    data["images"][0]["width"] = 100
    _write(path, data)
    res = _write(tmp_path / "res.json", gt_as_results(data))
    rc, text = _eval(cli, "--results", res, "--json", path, "--images", images)
    assert rc == 1 and len(text.strip().splitlines()) == 1, text
    assert (f"{path}: 1 image record(s) give a width/height other than their file's in {images}, and their "
            f"annotations' masks fit the file, not the record: image id 1 ({images / 'im1.png'}): image is "
            f"40x50 (HxW), {path} says 40x100: correct the records' width and height") in text
    assert "annotation id" not in text
    # what else is wrong is said too, with the record's size taken from its file
    data["annotations"][3]["bbox"] = [1, 1, -8, 8]
    _write(path, data)
    rc, text = _eval(cli, "--results", res, "--json", path, "--images", images)
    assert rc == 1 and "then still: 1 problem in the ground truth" in text
    assert "annotation id 4 bbox [1, 1, -8, 8] has a negative width or height" in text
    assert "annotation id 1" not in text


def test_a_wrong_image_record_without_its_images_suggests_them(cli, tmp_path):
    path, _, data = coco_dataset(tmp_path)
    data["images"][0]["width"] = 100
    alone = _write(tmp_path / "elsewhere.json", data)
    # no folder by the export's layout, and no file of their names under the JSON's folder (a single one
    # there would be taken: record_sizes' unique-name lookup)
    shutil.rmtree(tmp_path / "images")
    rc, text = _eval(cli, "--results", _write(tmp_path / "res.json", gt_as_results(data)), "--json", alone)
    assert rc == 1 and "RLE size [40, 50] does not match the image size [40, 100]" in text
    assert "give --images D, the images' folder, to compare them with the files" in text
