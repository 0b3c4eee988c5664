"""``predict --export`` findings: a keypoint model's COCO export carries the keypoints (and the category's
names and skeleton) and trains as it is, the other formats say they carry none; YOLO labels carry their
class names in ``labels/classes.txt`` (README's round trip copies the labels folder alone); files of an
input folder that are not images are counted in one line; an ONNX predictor asked for a threshold below
its own warns. No model is run: detections are made by hand."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.config import PRESETS
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.pre_annotations.export import PreAnnotationExport, keypoint_set
from maskrcnn.data.pre_annotations.instances import KEYPOINT_VISIBLE_SCORE

NAMES = ["head", "left_hand", "right_hand"]
SKELETON = [[1, 2], [1, 3]]


def _image(folder: Path, name: str, h: int = 40, w: int = 60) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, dtype=np.uint8)).save(folder / name)
    return folder / name


def _det():
    """Two box detections (no masks) of a 3-keypoint model: the second's last point scores too low."""
    return {
        "boxes": torch.tensor([[5.0, 5.0, 30.0, 35.0], [30.0, 2.0, 55.0, 30.0]]),
        "scores": torch.tensor([0.9, 0.7]),
        "labels": torch.tensor([1, 1]),
        "keypoints": torch.tensor([[[10.0, 8.0, 1.0], [7.0, 20.0, 1.0], [25.0, 21.5, 1.0]],
                                   [[40.0, 5.0, 1.0], [33.0, 15.0, 1.0], [50.0, 16.0, 1.0]]]),
        "keypoint_scores": torch.tensor([[3.0, 2.0, 1.0], [4.0, 0.5, KEYPOINT_VISIBLE_SCORE - 0.01]]),
    }


def _export(tmp_path, formats, **kw):
    image = _image(tmp_path / "imgs", "a.png")
    export = PreAnnotationExport(out_dir=tmp_path / "out", formats=formats, root=tmp_path / "imgs",
                                 class_names=["__background__", "person"], masks=False, **kw)
    export.add(1, image, 40, 60, _det())
    export.finish()
    return export


def test_coco_export_of_a_keypoint_model_carries_keypoints_and_trains_as_it_is(tmp_path):
    _export(tmp_path, ["coco"], keypoint_names=NAMES, skeleton=SKELETON)
    coco = json.loads((tmp_path / "out" / "coco_instances.json").read_text())
    assert coco["categories"] == [{"id": 1, "name": "person", "keypoints": NAMES, "skeleton": SKELETON}]
    first, second = coco["annotations"]
    assert first["keypoints"] == [10.0, 8.0, 2, 7.0, 20.0, 2, 25.0, 21.5, 2] and first["num_keypoints"] == 3
    # below KEYPOINT_VISIBLE_SCORE: not labelled, written as COCO writes it (0, 0, 0)
    assert second["keypoints"] == [40.0, 5.0, 2, 33.0, 15.0, 2, 0, 0, 0] and second["num_keypoints"] == 2
    # what train --config keypoint_... reads: the set and the points, as in the file
    data = CocoDataset(json_path=str(tmp_path / "out" / "coco_instances.json"),
                       image_dir=str(tmp_path / "imgs"), keypoints=True)
    assert data.keypoint_names == NAMES and data.keypoint_skeleton == SKELETON
    _, target = data[0]
    assert target["keypoints"].shape == (2, 3, 3)
    assert target["keypoints"][1, :, 2].tolist() == [2, 2, 0]


def test_the_python_api_without_keypoint_names_still_writes_a_coco_file_that_trains(tmp_path):
    """Before: PreAnnotationExport without keypoint_names (its default) wrote the annotations' keypoints
    under categories without a keypoint set, and CocoDataset(keypoints=True) dropped every annotation.
    Now the set is named as predict names an unnamed one: keypoint_1.. (COCO's 17 names for 17)."""
    _export(tmp_path, ["coco"])
    coco = json.loads((tmp_path / "out" / "coco_instances.json").read_text())
    names = ["keypoint_1", "keypoint_2", "keypoint_3"]
    assert coco["categories"] == [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}]
    data = CocoDataset(json_path=str(tmp_path / "out" / "coco_instances.json"),
                       image_dir=str(tmp_path / "imgs"), keypoints=True)
    assert data.keypoint_names == names
    _, target = data[0]
    assert target["keypoints"][:, :, 2].tolist() == [[2, 2, 2], [2, 2, 0]]
    seventeen = {**_det(), "keypoints": torch.ones(2, 17, 3), "keypoint_scores": torch.ones(2, 17)}
    export = PreAnnotationExport(out_dir=tmp_path / "out17", formats=["coco"], root=tmp_path / "imgs",
                                 class_names=["__background__", "person"], masks=False)
    export.add(1, tmp_path / "imgs" / "a.png", 40, 60, seventeen)
    assert export.keypoint_names[:3] == ["nose", "left_eye", "right_eye"] and len(export.keypoint_names) == 17


def test_a_model_without_keypoints_exports_none_and_says_nothing(tmp_path):
    det = _det()
    del det["keypoints"], det["keypoint_scores"]
    image = _image(tmp_path / "imgs", "a.png")
    export = PreAnnotationExport(out_dir=tmp_path / "out", formats=["coco", "yolo"], root=tmp_path / "imgs",
                                 class_names=["__background__", "person"], masks=False)
    export.add(1, image, 40, 60, det)
    export.finish()
    coco = json.loads((tmp_path / "out" / "coco_instances.json").read_text())
    assert "keypoints" not in coco["categories"][0] and "keypoints" not in coco["annotations"][0]
    assert export.keypoints_note() is None


def test_the_formats_without_keypoints_are_named_in_one_line(tmp_path):
    export = _export(tmp_path, ["coco", "labelme", "yolo"], keypoint_names=NAMES, skeleton=SKELETON)
    assert export.keypoints_note() == ("pre-annotations: keypoints are not exported to labelme, yolo "
                                       "(only coco carries them); predictions.json keeps them")
    coco_only = PreAnnotationExport(out_dir=tmp_path / "o2", formats=["coco"], root=tmp_path,
                                    class_names=["bg", "p"], keypoint_names=NAMES)
    assert coco_only.keypoints_note() is None


def test_keypoint_set_of_a_config():
    cfg = PRESETS["r18_fpn"]()
    assert keypoint_set(cfg) == (None, [])
    cfg.model.roi_heads.keypoint_on, cfg.model.roi_heads.num_keypoints = True, 3
    cfg.data.keypoint_names, cfg.data.keypoint_skeleton = tuple(NAMES), tuple(map(tuple, SKELETON))
    assert keypoint_set(cfg) == (NAMES, SKELETON)
    cfg.data.keypoint_names, cfg.data.keypoint_skeleton = (), ()  # a converted model without names
    assert keypoint_set(cfg) == (["keypoint_1", "keypoint_2", "keypoint_3"], [])
    cfg.model.roi_heads.num_keypoints = 17
    assert keypoint_set(cfg)[0][:2] == ["nose", "left_eye"]


def test_yolo_labels_copied_alone_keep_the_class_names(tmp_path, capsys):
    image = _image(tmp_path / "imgs", "a.png")
    export = PreAnnotationExport(out_dir=tmp_path / "out", formats=["yolo"], root=tmp_path / "imgs",
                                 class_names=["__background__", "cat", "dog"], masks=False)
    det = {"boxes": torch.tensor([[5.0, 5.0, 30.0, 35.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([2])}
    export.add(1, image, 40, 60, det)
    export.finish()
    assert (tmp_path / "out" / "yolo" / "labels" / "classes.txt").read_text() == "cat\ndog\n"
    # README's recipe: the images in DATA/images, the labels folder copied to DATA/labels (no data.yaml)
    data = tmp_path / "DATA"
    _image(data / "images", "a.png")
    (data / "labels").mkdir()
    for f in (tmp_path / "out" / "yolo" / "labels").iterdir():
        (data / "labels" / f.name).write_bytes(f.read_bytes())
    assert main(["convert-data", "--from", "yolo", str(data), "--output", str(tmp_path / "rb.json"),
                 "--boxes-as-masks"]) == 0
    rb = json.loads((tmp_path / "rb.json").read_text())
    assert [c["name"] for c in rb["categories"]] == ["cat", "dog"]
    assert [a["category_id"] for a in rb["annotations"]] == [c["id"] for c in rb["categories"]
                                                            if c["name"] == "dog"]


def test_files_that_are_not_images_are_counted_and_named(tmp_path):
    from maskrcnn.commands.predict import _OutputFolders, other_files, other_files_line

    _image(tmp_path / "in", "a.png")
    _image(tmp_path / "in" / "sub", "b.jpg")
    for name in ("notes.txt", "sub/data.csv", "sub/c.json", "clip.mp4"):
        (tmp_path / "in" / name).write_text("x")
    out = tmp_path / "in" / "out"  # an output folder inside the inputs: its files are the run's own
    out.mkdir()
    (out / "predictions.json").write_text("[]")
    found = other_files([str(tmp_path / "in")], _OutputFolders({out.resolve()}))
    assert [f.relative_to(tmp_path / "in").as_posix() for f in found] == ["notes.txt", "sub/c.json",
                                                                           "sub/data.csv"]
    line = other_files_line(found)
    assert line.startswith("maskrcnn predict: left out 3 file(s) that are not images or videos")
    assert "notes.txt" in line and "data.csv" in line and "..." not in line
    assert other_files_line([Path(f"f{i}.txt") for i in range(5)]).endswith("f0.txt, f1.txt, f2.txt, ...")
    assert other_files_line([]) is None


def test_predict_names_the_files_it_does_not_predict(tmp_path, capsys, monkeypatch):
    from maskrcnn.commands import predict

    _image(tmp_path / "in", "a.png")
    (tmp_path / "in" / "notes.txt").write_text("hello")

    def stop(*args, **kwargs):  # the listing is what is tested: no model
        raise SystemExit(7)

    monkeypatch.setattr("maskrcnn.predictor.Predictor.from_weights", stop)
    with pytest.raises(SystemExit):
        predict.run(predict_args(tmp_path))
    err = capsys.readouterr().err
    assert "left out 1 file(s) that are not images or videos (by their extension): " in err
    assert "notes.txt" in err


def predict_args(tmp_path):
    import argparse

    from maskrcnn.commands.predict import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--weights", str(tmp_path / "w.pth"), str(tmp_path / "in"),
                              "--output", str(tmp_path / "out")])


def test_an_onnx_predictor_asked_for_a_lower_threshold_warns(monkeypatch, tmp_path):
    from maskrcnn.predictor import FixedThresholdWarning, Predictor

    cfg = PRESETS["r18_fpn"]()
    cfg.model.roi_heads.score_thresh, cfg.model.num_classes = 0.05, 2

    class FakeOnnx:  # what from_onnx reads of an OnnxModel
        def __init__(self, path, *, device, threads):
            self.cfg, self.class_names, self.label_to_category_id = cfg, ["__background__", "a"], None

    monkeypatch.setattr("maskrcnn.export.onnx_runtime.OnnxModel", FakeOnnx)
    with pytest.warns(FixedThresholdWarning, match=r"m\.onnx: note: a score threshold of 0.01 keeps nothing"):
        Predictor.from_onnx(tmp_path / "m.onnx", score_thresh=0.01)
    with pytest.warns(FixedThresholdWarning) as record:  # through from_weights: still the caller's line
        Predictor.from_weights(tmp_path / "m.onnx", score_thresh=0.01)
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", FixedThresholdWarning)
        Predictor.from_onnx(tmp_path / "m.onnx", score_thresh=0.1)  # at or above its own: nothing to say
        Predictor.from_onnx(tmp_path / "m.onnx")
