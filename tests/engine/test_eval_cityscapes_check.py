"""eval --cityscapes without the cityscapesscripts package: refused before the inference (the scorer's own
check came after the whole of it). Runs whether or not the package is installed."""

import importlib.util

from maskrcnn.cli import main


def test_missing_cityscapesscripts_is_said_before_the_weights_are_read(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "cityscapesscripts" else real(name, *a, **k))
    (tmp_path / "cs").mkdir()
    code = main(["eval", "--weights", str(tmp_path / "absent.pth"), "--json", str(tmp_path / "val.json"),
                 "--images", str(tmp_path / "cs"), "--cityscapes", str(tmp_path / "cs")])
    err = capsys.readouterr().err
    assert code == 1
    assert "--cityscapes: the Cityscapes evaluation needs the cityscapesscripts package: " \
           "pip install 'maskrcnn[cityscapes]'" in err
    assert "absent.pth" not in err  # nothing else was opened first


def _ground_truth(path, split="val"):
    import json

    name = f"leftImg8bit/{split}/lindau/lindau_000000_000019_leftImg8bit.png"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": name, "height": 8, "width": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 26, "bbox": [1, 1, 4, 4], "area": 16,
                         "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]}],
        "categories": [{"id": 26, "name": "car"}]}))
    return path


def test_a_root_without_gtfine_of_the_split_is_refused_before_the_results_are_read(
        tmp_path, scorer_installed, capsys):
    root = tmp_path / "cs"
    (root / "gtFine" / "val" / "lindau").mkdir(parents=True)
    gt = _ground_truth(tmp_path / "cs_val.json")
    absent = tmp_path / "absent_results.json"
    code = main(["eval", "--json", str(gt), "--results", str(absent), "--cityscapes", str(root / "gtFine")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"--cityscapes {root / 'gtFine'}: {root / 'gtFine' / 'gtFine' / 'val'}: no such folder" in err, err
    assert (f"{root / 'gtFine'} is Cityscapes' gtFine folder itself: pass its parent, the folder that holds "
            f"gtFine and leftImg8bit ({root})") in err, err
    assert "absent_results" not in err  # refused before the results were opened
    # the split of the images, not a fixed one: a root with gtFine/val only lacks gtFine/test
    code = main(["eval", "--json", str(_ground_truth(tmp_path / "cs_test.json", "test")), "--results",
                 str(absent), "--cityscapes", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and f"{root / 'gtFine' / 'test'}: no such folder" in err, err
    assert "(splits in gtFine: ['val'])" in err and "pass its parent" not in err, err


def _gtfine(root):
    import json

    folder = root / "gtFine" / "val" / "lindau"
    folder.mkdir(parents=True)
    (folder / "lindau_000000_000019_gtFine_polygons.json").write_text(
        json.dumps({"imgHeight": 8, "imgWidth": 8, "objects": []}))


def test_the_right_root_passes_the_check_and_goes_on_to_the_results(tmp_path, scorer_installed, capsys):
    root = tmp_path / "cs"
    _gtfine(root)
    code = main(["eval", "--json", str(_ground_truth(tmp_path / "cs_val.json")), "--results",
                 str(tmp_path / "absent_results.json"), "--cityscapes", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and "absent_results.json" in err and "no such folder" not in err, err


def test_categories_or_image_names_not_cityscapes_are_refused_before_the_results_are_read(
        tmp_path, scorer_installed, capsys):
    """A COCO file that is not Cityscapes' (its classes, its image names) failed only in the scoring,
    after the whole inference."""
    import json

    root = tmp_path / "cs"
    (root / "gtFine" / "val" / "lindau").mkdir(parents=True)
    absent = tmp_path / "absent_results.json"
    gt = json.loads(_ground_truth(tmp_path / "cs_val.json").read_text())
    shapes = dict(gt, categories=[{"id": 26, "name": "circle"}])
    (tmp_path / "shapes.json").write_text(json.dumps(shapes))
    code = main(["eval", "--json", str(tmp_path / "shapes.json"), "--results", str(absent),
                 "--cityscapes", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and "absent_results" not in err, err
    assert f"--cityscapes {root}: categories ['circle'] are not Cityscapes instance classes" in err, err
    renamed = dict(gt, images=[dict(gt["images"][0], file_name="val_00000.png")])
    (tmp_path / "renamed.json").write_text(json.dumps(renamed))
    code = main(["eval", "--json", str(tmp_path / "renamed.json"), "--results", str(absent),
                 "--cityscapes", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and "absent_results" not in err, err
    assert (f"--cityscapes {root}: image 'val_00000.png' is not named as Cityscapes names its "
            "images") in err, err


def test_an_image_without_its_gtfine_is_refused_before_the_results_are_read(tmp_path, scorer_installed,
                                                                            capsys):
    """Only the split folder was checked: an image whose gtFine files are missing failed in the scoring,
    after the whole inference. Now check_root names the count and the first up front."""
    import json

    root = tmp_path / "cs"
    _gtfine(root)
    gt = json.loads(_ground_truth(tmp_path / "cs_val.json").read_text())
    gt["images"].append(dict(gt["images"][0], id=2,
                             file_name="leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png"))
    (tmp_path / "two.json").write_text(json.dumps(gt))
    code = main(["eval", "--json", str(tmp_path / "two.json"), "--results", str(tmp_path / "absent.json"),
                 "--cityscapes", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and "absent.json" not in err, err
    assert (f"--cityscapes {root}: 1 of the 2 image(s) have no gtFine ground truth (neither "
            "*_gtFine_instanceIds.png nor *_gtFine_polygons.json), e.g. "
            "lindau_000001_000019_gtFine_instanceIds.png") in err, err


def test_caravan_and_background_categories_pass_the_check(tmp_path, scorer_installed, capsys):
    """caravan is a Cityscapes instance class (not scored by the benchmark) and '__background__' a
    torchvision-style class 0: both were refused as 'not Cityscapes instance classes'."""
    import json

    root = tmp_path / "cs"
    _gtfine(root)
    gt = json.loads(_ground_truth(tmp_path / "cs_val.json").read_text())
    gt["categories"] += [{"id": 29, "name": "caravan"}, {"id": 0, "name": "__background__"}]
    (tmp_path / "more.json").write_text(json.dumps(gt))
    code = main(["eval", "--json", str(tmp_path / "more.json"), "--results", str(tmp_path / "absent.json"),
                 "--cityscapes", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and "absent.json" in err and "not Cityscapes instance classes" not in err, err


def test_box_only_results_keep_the_coco_metrics_and_say_cityscapes_was_not_scored(
        tmp_path, scorer_installed, capsys):
    """Probe p10_kp: box-only --results with --cityscapes printed the COCO table, then an error, and wrote
    no metrics.json. Now as when the official script fails: the COCO metrics kept, one line, exit 1."""
    import json

    root = tmp_path / "cs"
    _gtfine(root)
    results = tmp_path / "box_only.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 26, "bbox": [1, 1, 4, 4], "score": 0.9}]))
    out = tmp_path / "out"
    code = main(["eval", "--json", str(_ground_truth(tmp_path / "cs_val.json")), "--results", str(results),
                 "--cityscapes", str(root), "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    lines = [s for s in captured.err.splitlines() if "--cityscapes" in s]
    assert lines == ["--cityscapes: not scored: Cityscapes scores instance masks and the results have none; "
                     f"the COCO metrics are in {out / 'metrics.json'}"], captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bbox"]["AP"] > 99.9 and "cityscapes" not in metrics, metrics
    assert not (out / "cityscapes_predictions").exists()
