"""Keypoint evaluation as a probe found it: a ground-truth area of 0 (keypoint AP 0, silently), nested
keypoints in results (a traceback), no way to give --results the run's OKS sigmas, misleading messages
for an unnamed keypoint set, "0.00" for a kind nothing was scored of; and eval's stale artefacts."""

import json
import logging
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.keypoints import COCO_KEYPOINT_NAMES
from maskrcnn.engine.evaluator import evaluate_results_file, load_ground_truth

SIZE = 64


def _points(seed, k):
    rng = np.random.default_rng(seed)
    return [(float(x), float(y), 2) for x, y in rng.uniform(8, 28, size=(k, 2))]


def _gt(folder, *, names=COCO_KEYPOINT_NAMES, k=17, area=400.0, name="gt.json"):
    """Two images with a person each: box [6, 6, 24, 24], its polygon, k labelled keypoints."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    anns = []
    for i in (1, 2):
        Image.fromarray(np.full((SIZE, SIZE, 3), 50 * i, np.uint8)).save(images / f"{i}.png")
        ann = {"id": i, "image_id": i, "category_id": 1, "bbox": [6, 6, 24, 24], "iscrowd": 0,
               "segmentation": [[6, 6, 30, 6, 30, 30, 6, 30]], "num_keypoints": k,
               "keypoints": [c for p in _points(i, k) for c in p]}
        if area is not None:
            ann["area"] = area
        anns.append(ann)
    cat = {"id": 1, "name": "person"}
    if names:
        cat["keypoints"] = list(names)
    path = folder / name
    path.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.png", "width": SIZE, "height": SIZE}
                                           for i in (1, 2)], "categories": [cat], "annotations": anns}))
    return path, images


def _results(gt_path, out, *, shift=1.0, nested=False, keep=None):
    """The ground truth's people as detections, keypoints shifted by ``shift`` px in x."""
    data = json.loads(gt_path.read_text())
    records = []
    for a in data["annotations"]:
        kp = list(a["keypoints"])
        for j in range(0, len(kp), 3):
            kp[j] += shift
            kp[j + 2] = 1.0
        if keep is not None:
            kp = kp[:3 * keep]
        if nested:
            kp = [kp[j:j + 3] for j in range(0, len(kp), 3)]
        records.append({"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9,
                        "keypoints": kp})
    out.write_text(json.dumps(records))
    return out


def _keypoint_ap(gt, results, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate_results_file(gt, results, **kwargs)["keypoints"]["AP"]


# ---------------------------------------------------------------- F1: area 0 with a box of positive size


def test_area_zero_is_filled_and_said_in_results_evaluation(tmp_path):
    true_gt, _ = _gt(tmp_path, area=None, name="true.json")  # area filled from the mask (400)
    zero_gt, _ = _gt(tmp_path, area=0, name="zero.json")
    results = _results(true_gt, tmp_path / "r.json")
    expected = _keypoint_ap(true_gt, results)
    assert 0 < expected < 100  # 1 px off: scored by OKS, not exact
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = evaluate_results_file(zero_gt, results)["keypoints"]["AP"]
    assert got == pytest.approx(expected)  # was 0.0, silently
    said = [str(w.message) for w in caught if "area 0" in str(w.message)]
    assert len(said) == 1 and "2 annotations" in said[0]


def test_area_zero_is_filled_for_training_and_weights_evaluation(tmp_path, caplog):
    """One repair, in the shared reader of tool exports (data/coco_exports.py), one note for both."""
    zero_gt, images = _gt(tmp_path, area=0)
    with caplog.at_level(logging.WARNING):
        dataset = CocoDataset(json_path=zero_gt, image_dir=images, keypoints=True)
    assert any("2 annotations with a box of positive size have area 0" in r.getMessage()
               for r in caplog.records)
    said = [r.getMessage() for r in caplog.records if "area 0" in r.getMessage()]
    with warnings.catch_warnings(record=True) as caught:  # eval --results: the same one note, one reader
        warnings.simplefilter("always")
        load_ground_truth(json.loads(zero_gt.read_text()), source=str(zero_gt))
    assert [str(w.message) for w in caught if "area 0" in str(w.message)] == said
    coco = load_ground_truth(dataset.to_coco_dict(), source=str(zero_gt), from_dataset=True)
    # the mask's pixels (the 24x24 polygon), as a missing area is filled: no longer the OKS scale 0
    assert [a["area"] for a in coco.dataset["annotations"]] == [576.0, 576.0]


# ---------------------------------------------------------------- F2 and F5: nested / unscorable keypoints


@pytest.mark.parametrize("kind", ["nested", "short"])
def test_unscorable_keypoints_give_no_traceback_and_no_ap_of_zero(tmp_path, capsys, kind):
    gt, _ = _gt(tmp_path)
    results = _results(gt, tmp_path / "r.json", nested=kind == "nested", keep=14 if kind == "short" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # nested: TypeError (unhashable type: 'list') in note_scoring_conventions before
        assert main(["eval", "--results", str(results), "--json", str(gt), "--output",
                     str(tmp_path / "o")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("keypoints"))
    assert row.split()[1:] == ["-"] * 6  # was "0.00 0.00 0.00 ..." as if scored
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["keypoints"]["AP"] is None and metrics["bbox"]["AP"] == pytest.approx(100.0)


# ---------------------------------------------------------------- F3: the run's OKS sigmas with --results


def _five(tmp_path):
    names = ["head", "left_wrist", "right_wrist", "left_ankle", "right_ankle"]
    gt, _ = _gt(tmp_path, names=names, k=5)
    return gt, _results(gt, tmp_path / "r.json", shift=2.0)


def _cli_keypoint_ap(args, out):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["eval", *args, "--output", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())["keypoints"]["AP"]


def test_results_take_keypoint_sigmas_from_set(tmp_path, capsys):
    gt, results = _five(tmp_path)
    sigmas = [0.1] * 5
    expected = _keypoint_ap(gt, results, keypoint_sigmas=sigmas)
    assert expected != pytest.approx(_keypoint_ap(gt, results))  # the sigmas matter here
    got = _cli_keypoint_ap(["--results", str(results), "--json", str(gt), "--set",
                            f"data.keypoint_sigmas={sigmas}"], tmp_path / "o")
    assert got == pytest.approx(expected)  # refused before ("--set applies to --weights")
    # any other key is still a model's, refused
    assert main(["eval", "--results", str(results), "--json", str(gt), "--set", "model.rpn.nms_thresh=0.5"])
    assert "--set takes only data.keypoint_sigmas" in capsys.readouterr().err


def _run_folder(tmp_path, gt, results, sigmas, **provenance):
    """A folder as ``eval --weights --output`` leaves it: predictions.json, then metrics.json naming it."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    predictions = run / "predictions.json"
    predictions.write_text(results.read_text())
    names = json.loads(gt.read_text())["categories"][0]["keypoints"]
    metrics = {"weights": "/m.pth", "json": str(gt), "predictions": str(predictions),
               "keypoint_sigmas_from": "weights",
               "keypoints": {"AP": 1.0, "oks_sigmas": dict(zip(names, sigmas))},
               **provenance}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run, predictions


def test_results_of_a_run_are_scored_with_the_sigmas_of_its_metrics(tmp_path, capsys):
    gt, results = _five(tmp_path)
    sigmas = [0.1, 0.05, 0.05, 0.08, 0.08]
    run, predictions = _run_folder(tmp_path, gt, results, sigmas)
    expected = _keypoint_ap(gt, results, keypoint_sigmas=sigmas)
    for _ in range(2):  # again, over the metrics.json the first one wrote: the same AP
        assert _cli_keypoint_ap(["--results", str(predictions), "--json", str(gt)], run) == \
            pytest.approx(expected)
    assert "OKS sigmas from" in capsys.readouterr().err
    # a --set choice is recorded as such, and is not carried to the next plain re-score
    other = [0.2] * 5
    assert _cli_keypoint_ap(["--results", str(predictions), "--json", str(gt), "--set",
                             f"data.keypoint_sigmas={other}"], run) == \
        pytest.approx(_keypoint_ap(gt, results, keypoint_sigmas=other))
    assert json.loads((run / "metrics.json").read_text())["keypoint_sigmas_from"] == "--set"
    capsys.readouterr()
    assert _cli_keypoint_ap(["--results", str(predictions), "--json", str(gt)], run) == \
        pytest.approx(_keypoint_ap(gt, results))
    assert "OKS sigmas from" not in capsys.readouterr().err


@pytest.mark.parametrize("case", ["another_json", "another_file", "modified_after", "no_provenance"])
def test_sigmas_of_a_metrics_json_that_did_not_score_this_file_are_not_used(tmp_path, capsys, case):
    gt, results = _five(tmp_path)
    sigmas = [0.1, 0.05, 0.05, 0.08, 0.08]
    provenance = {"another_json": {"json": str(tmp_path / "another.json")},
                  "another_file": {"predictions": str(tmp_path / "run" / "other.json")},
                  "no_provenance": {"predictions": None, "json": None}}.get(case, {})
    run, predictions = _run_folder(tmp_path, gt, results, sigmas, **provenance)
    if case == "modified_after":  # predict --output wrote over it since
        stamp = (run / "metrics.json").stat().st_mtime
        os.utime(predictions, (stamp + 10, stamp + 10))
    got = _cli_keypoint_ap(["--results", str(predictions), "--json", str(gt)], tmp_path / "o")
    assert got == pytest.approx(_keypoint_ap(gt, results))  # the defaults, as for the file anywhere else
    assert got != pytest.approx(_keypoint_ap(gt, results, keypoint_sigmas=sigmas))
    assert "OKS sigmas from" not in capsys.readouterr().err


def test_sigmas_set_with_nothing_keypoint_scored_are_said_to_change_nothing(tmp_path, capsys):
    gt, _ = _gt(tmp_path, names=None, k=0)
    data = json.loads(gt.read_text())
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"],
                                  "score": 0.9} for a in data["annotations"]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["eval", "--results", str(boxes), "--json", str(gt), "--set",
                     "data.keypoint_sigmas=[0.1, 0.1]"]) == 0
    assert "--set data.keypoint_sigmas changed nothing: no keypoints were scored" in capsys.readouterr().err


# ---------------------------------------------------------------- F4: a keypoint set without names


def test_unnamed_keypoint_set_says_coco_was_assumed(tmp_path, caplog, capsys):
    gt, images = _gt(tmp_path, names=None, k=5)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CocoDataset(json_path=gt, image_dir=images, keypoints=True)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "hold 5 keypoints (15 numbers)" in text and "COCO's 17 were assumed" in text
    results = _results(gt, tmp_path / "r.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["eval", "--results", str(results), "--json", str(gt)]) == 0
    assert "no category of --json lists keypoint names" in capsys.readouterr().err


# ---------------------------------------------------------------- stale artefacts in --output


def _eval(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["eval", *map(str, args)]) == 0


def test_eval_names_in_a_folder_no_evaluation_wrote_are_left_alone(tmp_path, capsys):
    gt, _ = _gt(tmp_path)
    results = _results(gt, tmp_path / "r.json")
    out = tmp_path / "o"
    (out / "analysis_images").mkdir(parents=True)
    (out / "analysis_images" / "my_notes.txt").write_text("mine")
    (out / "stale").mkdir()
    (out / "stale" / "confusion.png").write_text("my stale list")
    for name in ("analysis.json", "confusion.png"):
        (out / name).write_text("my own")
    _eval("--results", results, "--json", gt, "--output", out)  # no metrics.json there before: moved all
    assert (out / "analysis_images" / "my_notes.txt").read_text() == "mine"
    assert (out / "analysis.json").read_text() == "my own" and (out / "confusion.png").read_text() == "my own"
    assert sorted(p.name for p in (out / "stale").iterdir()) == ["confusion.png"]
    assert "moved to" not in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["artefacts"] == []


def test_stale_artefacts_of_an_earlier_evaluation_are_set_aside(tmp_path, capsys):
    gt, _ = _gt(tmp_path)
    results = _results(gt, tmp_path / "r.json")
    out = tmp_path / "o"
    # an earlier evaluation's folder, of a version that did not list its artefacts
    (out / "cityscapes_predictions").mkdir(parents=True)
    (out / "cityscapes_predictions" / "a.txt").write_text("old")
    for name in ("analysis.json", "confusion.csv", "mine.txt", "predictions.json"):
        (out / name).write_text("old")
    (out / "metrics.json").write_text(json.dumps({"bbox": {}, "json": str(gt), "results": [str(results)]}))
    (out / "stale" / "1").mkdir(parents=True)
    (out / "stale" / "1" / "analysis.json").write_text("the user's")
    _eval("--results", results, "--json", gt, "--output", out)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "mine.txt", "predictions.json", "stale"]
    assert (out / "stale" / "1" / "analysis.json").read_text() == "the user's"  # never replaced
    assert sorted(p.name for p in (out / "stale" / "2").iterdir()) == [
        "analysis.json", "cityscapes_predictions", "confusion.csv"]
    assert "beside the metrics.json of an earlier evaluation" in capsys.readouterr().err
    _eval("--results", results, "--json", gt, "--output", out, "--analysis")  # its own analysis stays
    assert (out / "analysis.json").read_text() != "old" and (out / "confusion.csv").is_file()
    listed = json.loads((out / "metrics.json").read_text())["artefacts"]
    assert "analysis.json" in listed and "confusion.csv" in listed
    (out / "notes.txt").write_text("mine")
    _eval("--results", results, "--json", gt, "--output", out)  # the analysis run's files: moved, listed
    assert set(listed) == {p.name for p in (out / "stale" / "3").iterdir()}
    assert "lists them as written by it" in capsys.readouterr().err
    assert (out / "notes.txt").is_file()
    assert sorted(p.name for p in (out / "stale").iterdir()) == ["1", "2", "3"]
