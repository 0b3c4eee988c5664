"""eval --cityscapes without the cityscapesscripts package: refused before the inference (the scorer's own
check came after the whole of it). Runs whether or not the package is installed."""

import importlib.util

import pytest

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


@pytest.fixture
def scorer_installed(monkeypatch):
    """cityscapesscripts found, installed or not: the root's check comes after that of the package."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: (object() if name == "cityscapesscripts"
                                               else real(name, *a, **k)))


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


def test_the_right_root_passes_the_check_and_goes_on_to_the_results(tmp_path, scorer_installed, capsys):
    root = tmp_path / "cs"
    (root / "gtFine" / "val" / "lindau").mkdir(parents=True)
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
