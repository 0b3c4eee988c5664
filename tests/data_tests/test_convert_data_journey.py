"""The whole user journey from a CVAT project export: convert-data (Train and Validation subsets apart)
-> show-data -> train (a few iterations, with --val-json) -> eval -> predict, through the command line.

The export is built the way CVAT writes one ("CVAT for images 1.1", images under images/<subset>/,
the project's labels in <meta>, is_crowd as a shape attribute) and holds what tripped the chain
before: a class the validation subset lacks (its ids shifted, then validation failed after the whole
run), a crowd region, an image without objects, an EXIF-turned image, a one-pixel object and class
names beyond ASCII.
"""

import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main

H, W = 48, 64
LABELS = ("chat", "chien", "Größe")
TRAINING = ["--config", "demo", "--device", "cpu", "--set", "solver.iters=3", "solver.batch_size=2",
            "solver.warmup_iters=1", "solver.checkpoint_period=0", "solver.log_period=1",
            "input.min_size=[48]", "input.max_size=64", "input.min_size_test=48", "input.max_size_test=64",
            "model.fpn_dim=16",
            "model.roi_heads.box_head_dim=32", "model.roi_heads.mask_head_dim=8",
            "model.roi_heads.score_thresh=0.0", "model.roi_heads.detections_per_image=10"]


def _box(label, x1, y1, x2, y2, crowd=False):
    return (f'<box label="{label}" source="manual" occluded="0" xtl="{x1}" ytl="{y1}" xbr="{x2}" ybr="{y2}" '
            f'z_order="0"><attribute name="is_crowd">{str(crowd).lower()}</attribute></box>')


def _polygon(label, points):
    xy = ";".join(f"{x:.2f},{y:.2f}" for x, y in points)
    return f'<polygon label="{label}" source="manual" occluded="0" points="{xy}" z_order="0"></polygon>'


def _project_export(root):
    """(subset, name, shapes, EXIF orientation) as a CVAT project export under ``root``."""
    images = [
        ("Train", "a.jpg", [_polygon("chat", [(4, 4), (30, 4), (30, 30), (4, 30)]),
                            _box("chien", 34, 8, 60, 40)], 0),
        ("Train", "b.jpg", [_box("Größe", 8, 8, 40, 40), _box("chien", 44, 30, 62, 46, crowd=True),
                            _box("chat", 1, 1, 2, 2)], 0),
        ("Train", "c.jpg", [], 0),
        ("Train", "d.jpg", [_box("chien", 4, 4, 40, 60)], 6),  # stored 64 x 48, shown (and annotated) 48 x 64
        ("Validation", "e.jpg", [_box("chat", 4, 4, 30, 30), _box("Größe", 34, 8, 60, 40)], 0),
        ("Validation", "f.jpg", [_box("Größe", 8, 8, 40, 40, crowd=True)], 0),
    ]
    rng = np.random.default_rng(0)
    body = []
    for i, (subset, name, shapes, orientation) in enumerate(images):
        path = root / "images" / subset / name
        path.parent.mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        if orientation:
            exif[0x0112] = orientation
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, exif=exif)
        h, w = (W, H) if orientation else (H, W)
        body.append(f'<image id="{i}" name="{name}" subset="{subset}" task_id="{1 + (subset != "Train")}" '
                    f'width="{w}" height="{h}">{"".join(shapes)}</image>')
    labels = "".join(f"<label><name>{n}</name><color>#aa0000</color><type>any</type><attributes><attribute>"
                     "<name>is_crowd</name><input_type>checkbox</input_type></attribute></attributes></label>"
                     for n in LABELS)
    (root / "annotations.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><project><id>1</id>'
        f"<name>p</name><labels>{labels}</labels><subsets>Train\nValidation</subsets></project></meta>"
        + "".join(body) + "</annotations>", encoding="utf-8")


def _cli(capsys, *args):
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return rc, text


@pytest.mark.slow
def test_cvat_project_export_through_convert_show_train_eval_predict(tmp_path, capsys, single_thread):
    export = tmp_path / "export"
    _project_export(export)
    train_json, val_json = tmp_path / "train.json", tmp_path / "val.json"
    convert = ["convert-data", "--from", "cvat", export, "--output"]
    rc, text = _cli(capsys, *convert, train_json, "--split", "Train")
    assert rc == 0 and f"use --train-images {export}" in text
    assert _cli(capsys, *convert, val_json, "--split", "Validation")[0] == 0
    train, val = (json.loads(p.read_text(encoding="utf-8")) for p in (train_json, val_json))
    # one numbering for both files, although Validation has no 'chien': the project's, in <meta>'s order
    assert train["categories"] == val["categories"] == [
        {"id": 1, "name": "chat"}, {"id": 2, "name": "chien"}, {"id": 3, "name": "Größe"}]
    assert [(i["file_name"], i["width"], i["height"]) for i in train["images"]] == [
        ("images/Train/a.jpg", W, H), ("images/Train/b.jpg", W, H), ("images/Train/c.jpg", W, H),
        ("images/Train/d.jpg", H, W)]
    assert [(a["category_id"], a["iscrowd"], a["area"]) for a in train["annotations"]] == [
        (1, 0, 26 * 26), (2, 0, 26 * 32), (3, 0, 32 * 32), (2, 1, 18 * 16), (1, 0, 1), (2, 0, 36 * 56)]

    rc, text = _cli(capsys, "show-data", "--json", train_json, "--images", export,
                    "--output", tmp_path / "look")
    assert rc == 0 and "4 images (1 without instances), 5 instances, 1 crowd regions" in text
    assert len(list((tmp_path / "look" / "overlays").rglob("*.png"))) == 4

    run = tmp_path / "run"
    rc, text = _cli(capsys, "train", *TRAINING[:4], "--train-json", train_json, "--train-images", export,
                    "--val-json", val_json, "--val-images", export, "--output", run, "--set", *TRAINING[5:])
    assert rc == 0 and (run / "model_final.pth").is_file(), text
    assert "bbox" in text and "segm" in text  # the validation table at the end of training

    rc, text = _cli(capsys, "eval", "--weights", run / "model_final.pth", "--json", val_json,
                    "--images", export, "--output", tmp_path / "eval", "--device", "cpu")
    assert rc == 0, text
    scored = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    assert scored and {r["category_id"] for r in scored} <= {1, 2, 3}

    rc, text = _cli(capsys, "predict", "--weights", run / "model_final.pth", export / "images" / "Validation",
                    "--output", tmp_path / "pred", "--device", "cpu")
    assert rc == 0, text
    predicted = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert {r["file_name"].rsplit("/", 1)[-1] for r in predicted} <= {"e.jpg", "f.jpg"}
    assert {r["category_id"] for r in predicted} <= {1, 2, 3}
    assert sorted(p.name for p in (tmp_path / "pred" / "overlays").glob("*.png")) == ["e.png", "f.png"]
