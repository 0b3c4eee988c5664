"""Cityscapes end to end: a tree in the official layout -> convert-data -> the ground truth, written back
as predictions, scored by the official cityscapesscripts evaluation through ``eval --cityscapes``."""

import json
import os

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image

from maskrcnn.cli import main

pytest.importorskip("cityscapesscripts")

H, W = 48, 64


def _rect(x1, y1, x2, y2):
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def _image(root, city, stem):
    path = root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(path)
    gt = root / "gtFine" / "val" / city
    gt.mkdir(parents=True, exist_ok=True)
    return gt / stem


def _tree(root):
    # 1. polygons only (the evaluation draws its instanceIds with the package's json2instanceImg): two
    # cars, a person partly hidden by the later car, a crowd of people, a bicycle cut by the right border.
    prefix = _image(root, "frankfurt", "frankfurt_000000_000294")
    objects = [{"label": "road", "polygon": _rect(0, 0, W - 1, H - 1)},
               {"label": "car", "polygon": _rect(2, 2, 20, 14)},
               {"label": "person", "polygon": _rect(24, 4, 36, 30)},
               {"label": "car", "polygon": _rect(30, 20, 46, 34)},
               {"label": "persongroup", "polygon": _rect(2, 34, 22, 46)},
               {"label": "bicycle", "polygon": _rect(50, 10, 80, 28)}]
    (prefix.parent / f"{prefix.name}_gtFine_polygons.json").write_text(
        json.dumps({"imgHeight": H, "imgWidth": W, "objects": objects}))
    # 2. an instanceIds PNG (what the official evaluation reads): a truck and a rider, a car group.
    prefix = _image(root, "lindau", "lindau_000001_000019")
    ids = np.full((H, W), 7, np.int32)
    ids[5:25, 5:35] = 27000
    ids[28:44, 40:52] = 25000
    ids[30:46, 0:20] = 26
    Image.fromarray(ids.astype(np.uint16)).save(prefix.parent / f"{prefix.name}_gtFine_instanceIds.png")


def _converted_tree(root, gt_json) -> dict:
    """The small Cityscapes tree under ``root``, its val split converted to ``gt_json``; that file read."""
    _tree(root)
    assert main(["convert-data", "--from", "cityscapes", str(root), "--split", "val",
                 "--output", str(gt_json)]) == 0
    return json.loads(gt_json.read_text())


def _as_results(coco, drop=()):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "bbox": a["bbox"],
             "score": 0.9} for a in coco["annotations"] if not a["iscrowd"] and a["id"] not in drop]


def test_ground_truth_as_predictions_scores_100_with_the_official_script(tmp_path, capsys):
    root = tmp_path / "cityscapes"
    gt_json = tmp_path / "val.json"
    coco = _converted_tree(root, gt_json)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = [(a["image_id"], names[a["category_id"]], a["iscrowd"], a["bbox"], a["area"])
           for a in coco["annotations"]]
    assert got == [
        (1, "person", 1, [2.0, 34.0, 21.0, 13.0], 273),  # the group: a crowd region
        (1, "person", 0, [24.0, 4.0, 13.0, 27.0], 351 - 7 * 11),  # minus the car drawn over it
        (1, "car", 0, [2.0, 2.0, 19.0, 13.0], 247),
        (1, "car", 0, [30.0, 20.0, 17.0, 15.0], 255),
        (1, "bicycle", 0, [50.0, 10.0, 14.0, 19.0], 266),  # clipped at x = 63
        (2, "car", 1, [0.0, 30.0, 20.0, 16.0], 320),
        (2, "rider", 0, [40.0, 28.0, 12.0, 16.0], 192),
        (2, "truck", 0, [5.0, 5.0, 30.0, 20.0], 600),
    ]
    environ = dict(os.environ)

    results = tmp_path / "gt_as_results.json"
    results.write_text(json.dumps(_as_results(coco)))
    out = tmp_path / "eval"
    assert main(["eval", "--results", str(results), "--json", str(gt_json), "--cityscapes", str(root),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    cs = json.loads((out / "metrics.json").read_text())["cityscapes"]
    assert cs["AP"] == pytest.approx(100.0) and cs["AP50"] == pytest.approx(100.0)
    assert {n for n, v in cs["classes"].items() if v["AP"] is not None} == {
        "person", "rider", "car", "truck", "bicycle"}  # bus, train, motorcycle: no ground truth (NaN)
    assert "average" in printed and "100.00" in printed
    # the files the benchmark takes: one txt per image, masks as PNGs, label ids of labels.py
    lines = (out / "cityscapes_predictions" / "lindau_000001_000019.txt").read_text().splitlines()
    assert sorted(line.split(" ", 1)[1] for line in lines) == ["25 0.900000", "27 0.900000"]
    assert dict(os.environ) == environ  # the script's settings never reach this process

    # One car left out: the official score drops (car AP 50: one of its two instances is found).
    car = next(a["id"] for a in coco["annotations"] if names[a["category_id"]] == "car" and not a["iscrowd"])
    results.write_text(json.dumps(_as_results(coco, drop={car})))
    assert main(["eval", "--results", str(results), "--json", str(gt_json), "--cityscapes", str(root),
                 "--output", str(out)]) == 0
    cs = json.loads((out / "metrics.json").read_text())["cityscapes"]
    assert cs["classes"]["car"]["AP"] == pytest.approx(50.0)
    assert cs["AP"] == pytest.approx((4 * 100 + 50) / 5)


def test_objects_the_official_drawing_cannot_read_are_left_out_as_convert_data_leaves_them(tmp_path):
    """An object without polygon or of an unknown label (convert-data names and skips them) made the
    package's json2instanceImg fail: the whole evaluation ended with its traceback."""
    root = tmp_path / "cs"
    prefix = _image(root, "frankfurt", "frankfurt_000000_000294")
    objects = [{"label": "car", "polygon": _rect(2, 2, 20, 14)}, {"label": "car", "polygon": None},
               {"label": "spaceship", "polygon": _rect(30, 20, 46, 34)},
               {"label": "person", "polygon": _rect(24, 4, 36, 30)}]
    polygons = prefix.parent / f"{prefix.name}_gtFine_polygons.json"
    polygons.write_text(json.dumps({"imgHeight": H, "imgWidth": W, "objects": objects}))
    gt_json = tmp_path / "val.json"
    assert main(["convert-data", "--from", "cityscapes", str(root), "--split", "val",
                 "--output", str(gt_json)]) == 0
    results = tmp_path / "r.json"
    results.write_text(json.dumps(_as_results(json.loads(gt_json.read_text()))))
    with pytest.warns(UserWarning, match="cityscapesScripts cannot draw it") as caught:
        assert main(["eval", "--results", str(results), "--json", str(gt_json), "--cityscapes", str(root),
                     "--output", str(tmp_path / "eval")]) == 0
    (note,) = [str(w.message) for w in caught if "cityscapesScripts" in str(w.message)]
    assert note.startswith(f"{polygons}: ")
    cs = json.loads((tmp_path / "eval" / "metrics.json").read_text())["cityscapes"]
    assert cs["AP"] == pytest.approx(100.0)


def test_cityscapes_eval_errors(tmp_path, capsys):
    root = tmp_path / "cs"
    gt_json = tmp_path / "val.json"
    coco = _converted_tree(root, gt_json)
    results = tmp_path / "r.json"
    results.write_text(json.dumps(_as_results(coco)))
    capsys.readouterr()
    assert main(["eval", "--results", str(results), "--json", str(gt_json), "--cityscapes",
                 str(tmp_path / "missing")]) == 1
    assert "--cityscapes" in capsys.readouterr().err
    (root / "gtFine" / "val" / "lindau" / "lindau_000001_000019_gtFine_instanceIds.png").unlink()
    assert main(["eval", "--results", str(results), "--json", str(gt_json), "--cityscapes", str(root)]) == 1
    err = capsys.readouterr().err  # refused up front, before the results are read
    assert "1 of the 2 image(s) have no gtFine ground truth" in err and "lindau_000001_000019_gtFine" in err
    coco["categories"][0]["name"] = "pedestrian"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(coco))
    assert main(["eval", "--results", str(results), "--json", str(other), "--cityscapes", str(root)]) == 1
    assert "['pedestrian'] are not Cityscapes instance classes" in capsys.readouterr().err


def test_rle_round_trip_of_written_masks(tmp_path):
    from maskrcnn.engine.cityscapes_eval import write_predictions

    mask = np.zeros((H, W), np.uint8)
    mask[3:9, 4:20] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    paths = write_predictions([{"image_id": 7, "category_id": 1, "segmentation": rle, "score": 0.25}],
                              {7: "a b", 8: "empty"}, tmp_path, label_ids={1: 26})
    assert paths[7].read_text() == "masks/a_b_0000.png 26 0.250000\n" and paths[8].read_text() == ""
    written = np.asarray(Image.open(tmp_path / "masks" / "a_b_0000.png"))
    assert ((written > 0) == (mask > 0)).all()


@pytest.mark.slow
def test_eval_weights_writes_cityscapes_predictions_and_scores(tmp_path, capsys):
    import torch
    from tiny_model import TINY  # tests/ is on the path

    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.config import load_config
    from maskrcnn.modeling.mask_rcnn import build_model

    root = tmp_path / "cityscapes"
    _tree(root)
    gt_json = tmp_path / "val.json"
    assert main(["convert-data", "--from", "cityscapes", str(root), "--split", "val",
                 "--output", str(gt_json)]) == 0
    names = ["__background__"] + [c["name"] for c in json.loads(gt_json.read_text())["categories"]]
    cfg = load_config("r18_fpn", {**TINY, "model.num_classes": len(names)})
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pth", model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=names)
    out = tmp_path / "eval"
    assert main(["eval", "--weights", str(tmp_path / "tiny.pth"), "--json", str(gt_json),
                 "--images", str(root), "--cityscapes", str(root), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and 0.0 <= metrics["cityscapes"]["AP"] < 100.0  # random weights: a real, low score
    txts = sorted((out / "cityscapes_predictions").glob("*.txt"))
    assert [t.name for t in txts] == ["frankfurt_000000_000294.txt", "lindau_000001_000019.txt"]
    assert sum(len(t.read_text().splitlines()) for t in txts) == len(predictions)


def test_relative_root_scores_and_a_scorer_failure_keeps_the_coco_metrics(tmp_path, monkeypatch, capsys):
    """ROOT relative (as the README writes it): the scorer ran in a temporary folder with relative paths
    and always failed after the whole inference; a failure there also lost metrics.json."""
    _tree(tmp_path / "cityscapes")
    monkeypatch.chdir(tmp_path)
    assert main(["convert-data", "--from", "cityscapes", "cityscapes", "--split", "val",
                 "--output", "val.json"]) == 0
    (tmp_path / "r.json").write_text(json.dumps(_as_results(json.loads((tmp_path / "val.json").read_text()))))
    assert main(["eval", "--results", "r.json", "--json", "val.json", "--cityscapes", "cityscapes",
                 "--output", "ev"]) == 0
    scored = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert scored["cityscapes"]["AP"] == pytest.approx(100)

    import maskrcnn.engine.cityscapes_eval as cs

    def broken(*a, **k):
        raise RuntimeError("the Cityscapes evaluation script failed:\nTraceback\nKeyError: 'x'")

    monkeypatch.setattr(cs, "evaluate_cityscapes", broken)
    capsys.readouterr()
    assert main(["eval", "--results", "r.json", "--json", "val.json", "--cityscapes", "cityscapes",
                 "--output", "ev2"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "--cityscapes" in line]
    assert len(err) == 1 and "script failed: Traceback KeyError: 'x'" in err[0] and "metrics.json" in err[0]
    metrics = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert metrics["segm"]["AP"] == pytest.approx(100.0) and "cityscapes" not in metrics


def test_predictions_only_on_a_group_region_score_0_not_a_scorer_crash(tmp_path, capsys):
    """A class whose only predictions lie on a *group region (every one ignored) while none of its ground
    truth is found: cityscapesScripts' evaluateMatches indexes an empty ranking (IndexError), which ended
    the whole Cityscapes evaluation with a 1500-character flattened traceback and no Cityscapes AP."""
    root = tmp_path / "cs"
    gt_json = tmp_path / "val.json"
    coco = _converted_tree(root, gt_json)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    group = next(a for a in coco["annotations"] if a["iscrowd"] and names[a["category_id"]] == "car")
    results = tmp_path / "r.json"
    keys = ("image_id", "category_id", "segmentation", "bbox")
    # the other classes found exactly: their AP 100 beside car's 0 (an index swap in the guard shows)
    others = [r for r in _as_results(coco) if names[r["category_id"]] != "car"]
    results.write_text(json.dumps([{**{k: group[k] for k in keys}, "score": 0.8}, *others]))
    with pytest.warns(UserWarning, match="Cityscapes AP: class car: no ground truth matched and every "
                                         "prediction lies on a group or void region at overlap 0.50..0.95"):
        assert main(["eval", "--results", str(results), "--json", str(gt_json), "--cityscapes", str(root),
                     "--output", str(tmp_path / "ev")]) == 0
    assert "evaluation failed" not in capsys.readouterr().err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    classes = metrics["cityscapes"]["classes"]
    assert classes["car"] == {"AP": 0.0, "AP50": 0.0}
    for name in ("person", "rider", "truck", "bicycle"):
        assert classes[name]["AP"] == pytest.approx(100.0) and classes[name]["AP50"] == pytest.approx(100.0)
    assert metrics["cityscapes"]["AP"] == pytest.approx(4 * 100 / 5) and "segm" in metrics


def _matches_and_args():
    """evaluateMatches' input for one image: a person found exactly (AP 1 at every overlap) and a car whose
    one prediction lies on a car group while its ground truth is missed (the script's IndexError)."""
    from types import SimpleNamespace

    def gt(inst_id, pixels, matched):
        return {"instID": inst_id, "pixelCount": pixels, "medDist": -1, "distConf": 0.0,
                "matchedPred": matched}

    def pred(pixels, on, confidence):
        return {"matchedGt": on, "voidIntersection": 0, "pixelCount": pixels, "confidence": confidence}

    person = {"instID": 24001, "pixelCount": 200, "medDist": -1, "distConf": 0.0, "intersection": 200}
    group = {"instID": 26, "pixelCount": 150, "medDist": -1, "distConf": 0.0, "intersection": 150}
    found = {"intersection": 200, "pixelCount": 200, "confidence": 0.9}
    matches = {"img": {
        "prediction": {"person": [pred(200, [person], 0.9)], "car": [pred(150, [group], 0.8)]},
        "groundTruth": {"person": [gt(24001, 200, [found])], "car": [gt(26001, 200, [])]},
    }}
    args = SimpleNamespace(overlaps=np.arange(0.5, 1.0, 0.05), minRegionSizes=np.array([100, 1000, 1000]),
                           distanceThs=np.array([float("inf"), 100, 50]),
                           distanceConfs=np.array([-float("inf"), 0.5, 0.5]), distanceAvailable=False,
                           instLabels=["person", "car"])
    return matches, args


def test_the_guard_scores_the_crashing_class_0_and_the_others_as_the_script_does():
    """The guard's test had every cell 0 or NaN: an index swap (ap[:, oI, lI]) passed it."""
    from cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling import evaluateMatches

    from maskrcnn.engine.cityscapes_eval import _guarded_evaluate_matches

    matches, args = _matches_and_args()
    with pytest.raises(IndexError):  # the script's own failure on this input
        evaluateMatches(matches, args)
    notes = []
    ap = _guarded_evaluate_matches(evaluateMatches, notes)(matches, args)  # (distances, classes, overlaps)
    assert ap.shape == (1, 2, 10)
    assert (ap[0, 0] == 1.0).all() and (ap[0, 1] == 0.0).all()
    assert args.instLabels == ["person", "car"] and len(args.overlaps) == 10  # given back
    assert notes == ["Cityscapes AP: class car: no ground truth matched and every prediction lies on a group "
                     "or void region at overlap 0.50..0.95: scored 0 there (cityscapesScripts fails on this "
                     "case with an IndexError)"]


def test_the_guard_lets_any_other_index_error_through():
    """Any IndexError in a cell was scored 0: a bug of the script, or of another version, gave AP 0 in
    silence. Only the known failure (an empty ranking where there are ground truth and predictions) is."""
    from cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling import evaluateMatches

    from maskrcnn.engine.cityscapes_eval import _guarded_evaluate_matches

    def broken(matches, args):
        return [][0]

    matches, args = _matches_and_args()
    with pytest.raises(IndexError):
        _guarded_evaluate_matches(broken, [])(matches, args)
    del matches["img"]["prediction"]["person"][0]["matchedGt"][0]["pixelCount"]  # a KeyError: the script's
    with pytest.raises(KeyError):
        _guarded_evaluate_matches(evaluateMatches, [])(matches, args)


def test_a_scorer_failure_is_its_last_line_not_the_traceback():
    from maskrcnn.engine.cityscapes_eval import _failure

    output = ('Traceback (most recent call last):\n'
              '  File "<frozen runpy>", line 198, in _run_module_as_main\n'
              '  File "/x/evalInstanceLevelSemanticLabeling.py", line 509, in evaluateMatches\n'
              '    nbTrueExamples = yTrueSortedCumsum[-1]\n'
              'IndexError: index -1 is out of bounds for axis 0 with size 0\n')
    assert _failure(output) == (
        " in evaluateMatches: IndexError: index -1 is out of bounds for axis 0 with size 0")
    assert _failure("ERROR: Found no prediction for ground truth x\n") == (
        ": ERROR: Found no prediction for ground truth x")
    assert _failure("") == " (no output)"


def _resize_images(root, size):
    for path in sorted((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")):
        Image.open(path).resize(size).save(path)


def test_a_resized_copy_has_its_masks_written_at_the_ground_truths_size(tmp_path, capsys):
    """leftImg8bit resized to half (which convert-data converts): the masks were written at the image's size
    and the official scorer failed on them (assignGt2Preds: shapes (48,64) (24,32)) after the whole
    inference. Now they are resized (nearest) to the gtFine size, said once, and scored."""
    root = tmp_path / "cs"
    _tree(root)
    _resize_images(root, (W // 2, H // 2))
    gt_json = tmp_path / "val.json"
    assert main(["convert-data", "--from", "cityscapes", str(root), "--split", "val",
                 "--output", str(gt_json)]) == 0
    results = tmp_path / "r.json"
    results.write_text(json.dumps(_as_results(json.loads(gt_json.read_text()))))
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="2 image.s. not at their gtFine size, resized copies") as caught:
        assert main(["eval", "--results", str(results), "--json", str(gt_json), "--cityscapes", str(root),
                     "--output", str(out)]) == 0
    (note,) = [str(w.message) for w in caught if "gtFine size" in str(w.message)]
    assert f"{W // 2}x{H // 2}" in note and f"{W}x{H}" in note
    assert "resized to the ground truth's size" in note
    masks = sorted((out / "cityscapes_predictions" / "masks").glob("*.png"))
    assert masks and {Image.open(m).size for m in masks} == {(W, H)}
    cs = json.loads((out / "metrics.json").read_text())["cityscapes"]
    assert cs["AP50"] == pytest.approx(100.0)  # the even-edged rectangles survive the half size


def test_an_image_of_another_shape_than_its_ground_truth_is_refused_before_the_results_are_read(
        tmp_path, capsys):
    """Images of another shape than gtFine (a crop, a padded copy) cannot be laid on the ground truth: said
    up front, naming the image and both sizes, not by the scorer after the whole inference."""
    root = tmp_path / "cs"
    _tree(root)
    gt_json = tmp_path / "val.json"
    assert main(["convert-data", "--from", "cityscapes", str(root), "--split", "val",
                 "--output", str(gt_json)]) == 0
    coco = json.loads(gt_json.read_text())
    for image in coco["images"]:
        image["height"] = H // 3  # as a converted JSON of cropped images gives them
    other = tmp_path / "other.json"
    other.write_text(json.dumps(coco))
    capsys.readouterr()
    assert main(["eval", "--results", str(tmp_path / "absent.json"), "--json", str(other), "--cityscapes",
                 str(root)]) == 1
    err = capsys.readouterr().err
    assert "2 image(s) not of the shape of their gtFine ground truth, e.g. " \
           f"leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png: {W}x{H // 3}" in err, err
    assert f"frankfurt_000000_000294_gtFine_polygons.json: {W}x{H}" in err, err
    assert "absent.json" not in err  # before the results are read


def test_caravan_and_background_categories_are_left_out_of_the_scoring_not_refused(tmp_path, capsys):
    """A JSON that kept caravan (an instance class the benchmark does not score) was refused as 'not a
    Cityscapes instance class', and a torchvision-style '__background__' category too. Now caravan's
    results are left out of the Cityscapes scoring with a note, the background ignored: the others score
    as before (100 for the ground truth as predictions)."""
    root = tmp_path / "cityscapes"
    gt_json = tmp_path / "val.json"
    coco = _converted_tree(root, gt_json)
    results = _as_results(coco)
    coco["categories"] += [{"id": 29, "name": "caravan"}, {"id": 0, "name": "__background__"}]
    gt_json.write_text(json.dumps(coco))
    results.append(dict(results[0], category_id=29))  # a caravan prediction: not written, not scored
    res = tmp_path / "r.json"
    res.write_text(json.dumps(results))
    out = tmp_path / "eval"
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"categories \['caravan'\] are Cityscapes instance classes the "
                                         r"benchmark does not score") as caught:
        assert main(["eval", "--results", str(res), "--json", str(gt_json), "--cityscapes", str(root),
                     "--output", str(out)]) == 0
    assert not any("__background__" in str(w.message) for w in caught)
    cs = json.loads((out / "metrics.json").read_text())["cityscapes"]
    assert cs["AP"] == pytest.approx(100.0)
    written = [line.split()[1] for txt in (out / "cityscapes_predictions").glob("*.txt")
               for line in txt.read_text().splitlines()]
    assert len(written) == len(results) - 1 and "29" not in written
