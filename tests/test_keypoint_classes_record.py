"""The record of the classes that own the keypoint set (``data.keypoint_classes``) beyond prediction:
``convert --class-names`` renames it with the classes, a record naming no class of the model is said,
eval's own predictions.json leaves keypoints out for the other classes as predict does, and eval's note
about images without a scored detection does not count a class that rightly has no keypoints."""

import json
import warnings

import pytest
import torch

from maskrcnn.checkpoint import config_from_checkpoint, load_checkpoint, save_checkpoint
from maskrcnn.cli import main
from maskrcnn.config import load_config
from maskrcnn.data.keypoint_classes import keypoint_labels
from maskrcnn.engine.evaluator import CocoEvaluator, evaluate_results_file
from tests.test_keypoint_classes import NAMES, _det, _file
from tests.tiny_model import TINY

CLASSES = ("__background__", "ball", "critter")


def _checkpoint(path, keypoint_classes):
    from maskrcnn.modeling import build_model

    cfg = load_config("demo_keypoints", {**TINY, "model.roi_heads.keypoint_on": True,
                                         "model.roi_heads.mask_on": False, "model.roi_heads.num_keypoints": 3,
                                         "data.class_names": CLASSES, "data.keypoint_names": tuple(NAMES),
                                         "data.keypoint_classes": keypoint_classes})
    torch.manual_seed(0)
    save_checkpoint(path, model_state=build_model(cfg).state_dict(), config=cfg, class_names=list(CLASSES))
    return path


@pytest.mark.parametrize("owners,renamed", [(("critter",), ("animal",)),
                                            (("critter", "ball"), ("animal", "sphere"))])
def test_convert_class_names_renames_the_keypoint_classes_with_them(tmp_path, capsys, owners, renamed):
    ours = _checkpoint(tmp_path / "kc.pth", owners)
    out = tmp_path / "renamed.pth"
    assert main(["convert", "--from", "maskrcnn", str(ours), str(out), "--class-names", "sphere,animal"]) == 0
    cfg = config_from_checkpoint(load_checkpoint(out))
    assert tuple(cfg.data.class_names) == ("__background__", "sphere", "animal")
    assert tuple(cfg.data.keypoint_classes) == renamed  # before: ('critter',...) kept, naming no class
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the renamed record names the model's classes: nothing to say
        expected = keypoint_labels(("critter",), CLASSES) if len(owners) == 1 else frozenset({1, 2})
        assert keypoint_labels(cfg.data.keypoint_classes, cfg.data.class_names) == expected


def test_a_record_naming_no_class_of_the_model_is_said_naming_both_lists():
    said = (r"data\.keypoint_classes \['critter'\] names \['critter'\], no class of the model "
            r"\(class names \['sphere', 'animal'\]\): every class")
    with pytest.warns(UserWarning, match=said):
        assert keypoint_labels(("critter",), ("__background__", "sphere", "animal")) is None
    with pytest.warns(UserWarning, match=r"names \['ball'\], no class .*kept for \['animal'\] only"):
        assert keypoint_labels(("animal", "ball"), ("__background__", "sphere", "animal")) == frozenset({2})


def test_eval_predictions_leave_keypoints_out_for_classes_without_them(tmp_path):
    path, _ = _file(tmp_path)
    evaluator = CocoEvaluator(str(path), iou_types=("bbox", "keypoints"), label_to_category_id={1: 1, 2: 7},
                              class_names=CLASSES, keypoint_labels=frozenset({2}))
    for image_id in (1, 2):
        evaluator.process(image_id, _det())  # label 1: ball, label 2: critter
    records = evaluator.results()
    # before: every ball record carried keypoints ([0] * 9 once the predictor zeroed them)
    assert {(r["category_name"], "keypoints" in r) for r in records} == {("ball", False), ("critter", True)}
    metrics = evaluator.evaluate()  # COCOeval reads keypoints of every record it is given: only owners'
    assert metrics["keypoints"]["AP"] >= 0


def test_eval_predictions_keep_keypoints_for_every_class_without_the_record(tmp_path):
    path, _ = _file(tmp_path)
    evaluator = CocoEvaluator(str(path), iou_types=("bbox", "keypoints"), label_to_category_id={1: 1, 2: 7})
    evaluator.process(1, _det())
    assert all("keypoints" in r for r in evaluator.results())


def _record(image_id, category_id, box, points=None):
    out = {"image_id": image_id, "category_id": category_id, "bbox": box, "score": 0.9}
    if points is not None:
        out["keypoints"] = points
    return out


def _scored_notes(path, results):
    if not isinstance(results, str):
        (path.parent / "results.json").write_text(json.dumps(results))
        results = str(path.parent / "results.json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate_results_file(path, results, iou_types=("bbox", "keypoints"))
    return [str(w.message) for w in caught if "detection scored in keypoints AP" in str(w.message)]


def test_no_lost_data_note_for_an_image_whose_detections_are_all_of_classes_without_keypoints(tmp_path):
    path, _ = _file(tmp_path)
    critter = _record(1, 7, [4, 4, 20, 20], [8, 8, 1, 12, 8, 1, 16, 8, 1])
    # image 2: only a ball, rightly without keypoints: its critter is an ordinary miss, nothing was lost
    # (before: "though they have some in the results (... or without its field)")
    assert _scored_notes(path, [critter, _record(1, 1, [2, 2, 8, 8]), _record(2, 1, [2, 2, 8, 8])]) == []
    # a critter detection without its keypoints is lost data: still said
    notes = _scored_notes(path, [critter, _record(2, 7, [4, 4, 20, 20])])
    assert len(notes) == 1 and "(2.png)" in notes[0]


def test_the_evaluator_results_round_trip_through_eval_results(tmp_path):
    path, _ = _file(tmp_path)
    evaluator = CocoEvaluator(str(path), iou_types=("bbox", "keypoints"), label_to_category_id={1: 1, 2: 7},
                              class_names=CLASSES, keypoint_labels=frozenset({2}))
    evaluator.process(1, _det())
    evaluator.process(2, {k: v[:1] for k, v in _det().items()})  # image 2: a ball only
    (tmp_path / "p.json").write_text(json.dumps(evaluator.results()))
    assert _scored_notes(path, str(tmp_path / "p.json")) == []


def test_eval_weights_evaluator_takes_the_predictors_keypoint_classes(tmp_path):
    import types

    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.inference import build_evaluator

    path, images = _file(tmp_path)
    cfg = load_config("demo_keypoints", {"data.keypoint_names": list(NAMES), "data.class_names": CLASSES,
                                         "model.roi_heads.num_keypoints": 3,
                                         "data.keypoint_classes": ("critter",)})
    ds = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    names = ["__background__", "ball", "critter"]  # the dataset's (its category order)
    predictor = types.SimpleNamespace(cfg=cfg, class_names=names, label_to_category_id={1: 1, 2: 7},
                                      keypoint_labels=keypoint_labels(("critter",), names))
    evaluator = build_evaluator(predictor, ds, quiet=True)
    evaluator.process(1, _det())
    # before: ('ball', True), the ball's zeroed points written as keypoints in eval's predictions.json
    assert {(r["category_name"], "keypoints" in r) for r in evaluator.results()} == {("ball", False),
                                                                                   ("critter", True)}
