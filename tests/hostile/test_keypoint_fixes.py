"""What a probe of keypoint datasets found after the first round: a keypoint model scored on a file
without keypoints (pycocotools' KeyError after the inference), a model scored on a file of other classes
(refused after the inference), unpaired glued side names, visibility flags outside 0/1/2, the flip map
a run used unrecorded, mask configs dropping keypoints silently, keypoint configs on mask-only files."""

import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.config import load_config

# a paper preset trained from random weights: nothing frozen (frozen parts need --init)
FROM_SCRATCH = ("model.norm=bn", "model.freeze_at=0")


def _file(folder, categories, annotations, *, size=(32, 32), name="data.json"):
    """A COCO file with two ``size`` images written beside it (folder/images)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in (1, 2):
        Image.fromarray(np.full((h, w, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    path = folder / name
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i in (1, 2)],
        "categories": categories, "annotations": annotations}))
    return path, images


def _box(aid, image_id, category_id=1, **extra):
    return {"id": aid, "image_id": image_id, "category_id": category_id, "bbox": [4, 4, 20, 20],
            "area": 400.0, "iscrowd": 0, **extra}


# ---------------------------------------------------------------------------- 1. no keypoints in the file


def test_keypoint_model_on_a_file_without_keypoints_scores_boxes_and_says_why(tmp_path, capsys):
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.inference import build_evaluator

    path, images = _file(tmp_path, [{"id": 1, "name": "person"}], [_box(1, 1, segmentation=[])])
    cfg = load_config("demo_keypoints", {"model.roi_heads.num_keypoints": 17})
    ds = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    predictor = types.SimpleNamespace(cfg=cfg, class_names=["__background__", "person"],
                                      label_to_category_id={1: 1})
    capsys.readouterr()
    evaluator = build_evaluator(predictor, ds)
    err = capsys.readouterr().err
    assert f"note: {path} defines no keypoints" in err and "no keypoint AP" in err, err
    evaluator.process(1, {"boxes": torch.tensor([[4.0, 4, 24, 24]]), "scores": torch.tensor([0.9]),
                          "labels": torch.tensor([1]), "keypoints": torch.ones(1, 17, 3)})
    metrics = evaluator.evaluate()  # was: KeyError 'num_keypoints' inside pycocotools
    assert set(metrics) == {"bbox"} and metrics["bbox"]["AP"] == pytest.approx(100.0)


# ---------------------------------------------------------------------------- 2. no class in common


def test_eval_refuses_a_file_of_other_classes_before_the_inference(cli, tmp_path, tiny_checkpoint):
    path, images = _file(tmp_path, [{"id": 1, "name": "person"}], [_box(1, 1), _box(2, 2)])
    rc, text = cli("eval", "--weights", tiny_checkpoint, "--json", path, "--images", images,
                   "--device", "cpu")
    assert rc == 1, text
    assert (f"{path}: none of its categories (person) is among the classes of {tiny_checkpoint} (a, b): "
            "no detection could be scored") in text, text
    assert "s/image" not in text, text  # refused before the inference (no progress line)


# ---------------------------------------------------------------------------- 3. keypoint config, none


def test_keypoint_config_on_a_file_without_keypoints_names_the_way_out(cli, tmp_path):
    path, images = _file(tmp_path, [{"id": 1, "name": "circle"}],
                         [_box(1, 1, segmentation=[[4, 4, 24, 4, 24, 24]]), _box(2, 2)])
    rc, text = cli("train", "--config", "keypoint_r50_fpn", "--train-json", path, "--train-images", images,
                   "--output", tmp_path / "run", "--device", "cpu", "--set", *FROM_SCRATCH)
    assert rc == 1, text
    assert (f"{path}: no category defines keypoints (a 'keypoints' list of names) and no annotation holds "
            "any, but --config keypoint_r50_fpn trains keypoints (model.roi_heads.keypoint_on); train boxes "
            "and masks with a mask config (--config r50_fpn), or --set model.roi_heads.keypoint_on=false"
            ) in text, text
    assert "no usable training image" not in text


def test_no_usable_training_image_says_the_skips_in_words(cli, tmp_path):
    from maskrcnn.engine.training import skip_words

    assert skip_words({"missing_image_file": 3, "image_without_annotations": 47}) == (
        "image without annotations: 47; missing image file: 3")
    path, images = _file(tmp_path, [{"id": 1, "name": "circle"}], [_box(1, 1), _box(2, 2)])
    rc, text = cli("train", "--config", "r50_fpn", "--train-json", path, "--train-images", tmp_path,
                   "--output", tmp_path / "run", "--device", "cpu", "--set", *FROM_SCRATCH)
    assert rc == 1, text
    assert (f"{path}: no usable training image (skipped: annotation of skipped image: 2; missing image "
            "file: 2)") in text


# ---------------------------------------------------------------------------- 4. mask config, keypoint file


def _person(aid, image_id, points, **extra):
    """points: [(x, y, v), ...]"""
    return _box(aid, image_id, keypoints=[float(c) for p in points for c in p], **extra)


def test_mask_config_on_keypoint_annotations_warns_once_and_calls_them_no_rectangles(tmp_path, caplog):
    from maskrcnn.data.coco import CocoDataset

    cats = [{"id": 1, "name": "person", "keypoints": ["a", "b"], "skeleton": []}]
    anns = [_person(1, 1, [(6, 6, 2), (9, 9, 1)], segmentation=[]),
            _person(2, 2, [(6, 6, 2), (9, 9, 2)], segmentation=[[4, 4, 24, 4, 24, 24]]),
            _box(3, 2, segmentation=[])]  # a rectangle without keypoints
    path, images = _file(tmp_path, cats, anns)
    with caplog.at_level("WARNING"):
        ds = CocoDataset(json_path=path, image_dir=images, keypoints=False)
    assert ds.notes == [
        f"{path}: 1 annotations have a box and no segmentation (rectangles, as CVAT, Label Studio and "
        "Roboflow export them): they train the box and class losses, not the mask loss",
        f"{path}: 2 annotations hold keypoints, which a model without a keypoint head ignores: train them "
        "with a keypoint config (--config keypoint_r50_fpn); 1 of them have no segmentation: their boxes "
        "train the box and class losses, not the mask loss"]
    assert CocoDataset(json_path=path, image_dir=images, keypoints=True).notes == []


# ---------------------------------------------------------------------------- 6. visibility flags


def test_visibility_flags_other_than_0_1_2_are_read_as_cocoeval_reads_them_and_said(tmp_path):
    from maskrcnn.data.coco import CocoDataset

    cats = [{"id": 1, "name": "person", "keypoints": ["a", "b", "c"], "skeleton": []}]
    path, images = _file(tmp_path, cats, [_person(7, 1, [(6, 6, 3), (9, 9, -1), (12, 12, 1)]),
                                          _person(8, 2, [(6, 6, 2), (9, 9, 0.5), (12, 12, 0)])])
    ds = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    assert ds.notes == [f"{path}: 3 keypoint visibility flags are not 0, 1 or 2 (the first: 3.0 in "
                        "annotation id 7): read as COCOeval reads them, labelled (2) when > 0, "
                        "unlabelled (0) otherwise"]
    kp = ds.to_coco_dict()["annotations"]
    assert kp[0]["keypoints"] == [6, 6, 2, 0, 0, 0, 12, 12, 1]
    assert kp[1]["keypoints"] == [6, 6, 2, 9, 9, 2, 12, 12, 0]


def test_eval_results_says_the_visibility_flags_and_default_sigmas_as_the_model_path_does(tmp_path, cli):
    """eval --results read odd flags as COCOeval does but said nothing, nor which OKS sigmas were the
    default: both lines now come from the functions the --weights path uses."""
    from maskrcnn.data.coco import CocoDataset

    cats = [{"id": 1, "name": "person", "keypoints": ["head", "neck", "left_knee"], "skeleton": []}]
    path, images = _file(tmp_path, cats, [_person(7, 1, [(6, 6, 3), (9, 9, -1), (12, 12, 1)]),
                                          _person(8, 2, [(6, 6, 2), (9, 9, 0.5), (12, 12, 0)])])
    (note,) = CocoDataset(json_path=path, image_dir=images, keypoints=True).notes  # the --weights path's
    results = tmp_path / "res.json"
    results.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "score": 0.9,
         "keypoints": [6, 6, 2, 9, 9, 2, 12, 12, 2]},
        {"image_id": 2, "category_id": 1, "bbox": [4, 4, 20, 20], "score": 0.9,
         "keypoints": [6, 6, 2, 9, 9, 2, 12, 12, 2]}]))
    with pytest.warns(UserWarning) as caught:  # pytest records the warnings the CLI would print
        rc, text = cli("eval", "--json", path, "--results", results)
    assert rc == 0, text
    assert [str(w.message) for w in caught if "visibility" in str(w.message)] == [note]
    assert note == (f"{path}: 3 keypoint visibility flags are not 0, 1 or 2 (the first: 3.0 in annotation id "
                    "7): read as COCOeval reads them, labelled (2) when > 0, unlabelled (0) otherwise")
    (line,) = [s for s in text.splitlines() if s.startswith("OKS sigmas")]
    assert line.startswith("OKS sigmas: 0.0669 (default) for head, neck; "), line
    assert any(s.startswith("keypoints ") for s in text.splitlines()), text
    # COCO names only: no sigma line
    cats[0]["keypoints"] = ["nose", "neck", "left_knee"]
    path, _ = _file(tmp_path / "coco", cats, [_person(7, 1, [(6, 6, 2), (9, 9, 2), (12, 12, 1)])])
    rc, text = cli("eval", "--json", path, "--results", results)
    assert rc == 0 and "OKS sigmas: 0.0669 (default) for neck;" in text, text
    cats[0]["keypoints"] = ["nose", "left_eye", "left_knee"]
    path, _ = _file(tmp_path / "named", cats, [_person(7, 1, [(6, 6, 2), (9, 9, 2), (12, 12, 1)])])
    rc, text = cli("eval", "--json", path, "--results", results)
    assert rc == 0 and "OKS sigmas" not in text and "keypoints " in text, text


# ---------------------------------------------------------------------------- 5. glued sides, unpaired sides


def test_glued_side_words_pair_and_every_unpaired_sided_name_is_warned():
    import warnings

    from maskrcnn.data.keypoints import flip_map_from_names

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # paired: no warning
        assert flip_map_from_names(["nose", "left_eye", "right_eye", "leftshoulder", "rightshoulder"]) == (
            0, 2, 1, 4, 3)
        assert flip_map_from_names(["LeftHand", "RightHand", "hand.L", "hand.R", "SHOULDERLEFT",
                                    "SHOULDERRIGHT", "knee_l", "knee_r", "l_toe", "r_toe", "bright"]) == (
            1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 10)
    # never across spellings: leftover / RIGHTOVER are no pair
    with pytest.warns(UserWarning) as caught:
        names = ["nose", "leftshoulder", "L_Eye", "hand.R", "leftover", "RIGHTOVER", "LEar", "Rear"]
        assert flip_map_from_names(names, source="kp.json") == tuple(range(8))
    (w,) = caught
    assert str(w.message) == (
        "kp.json: keypoints leftshoulder, L_Eye, hand.R, leftover, RIGHTOVER, LEar look like one side but "
        "pair with no other name, so a horizontal flip keeps them in place; give the pairs with "
        "data.keypoint_flip_map, or train without flips (input.flip_prob=0)")


def test_keypoint_names_in_the_flip_map_lines_are_escaped():
    """Names from the file were printed raw in the unpaired-side warning, the flip pairs line and the stale
    flip map note: a newline forged a line of its own, an ANSI escape recoloured or cleared the terminal.
    Now shown as every problem line shows a name from a COCO file (``shown_text.display_name``)."""
    import warnings

    from maskrcnn.data.keypoints import flip_map_from_names, flip_pairs_line
    from maskrcnn.engine.training import stale_flip_map_note

    forged, ansi = "L_Eye\nmaskrcnn train: error: forged", "hand.R\x1b[31m\u202e"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert flip_map_from_names(["nose", forged, ansi], source="kp.json") == (0, 1, 2)
    (w,) = caught
    assert str(w.message).startswith(
        "kp.json: keypoints 'L_Eye\\nmaskrcnn train: error: forged', 'hand.R\\x1b[31m\\u202e' look like "
        "one side but pair with no other name")
    lines = [flip_pairs_line([("left\neye", "right\x1beye")]),
             stale_flip_map_note([["left\x1b[2Jeye", "b"]], None, ["x", "y"], source="t.json"),
             stale_flip_map_note([[0, 1]], ["a\nb", "c"], ["x", "y"], source="t.json")]
    assert lines[0] == "'left\\neye'<->'right\\x1beye'"
    assert "names 'left\\x1b[2Jeye', b, not among its keypoints" in lines[1]
    assert "the config's keypoints ('a\\nb', c)" in lines[2]
    for text in [str(w.message), *lines]:
        assert "\n" not in text and "\x1b" not in text and "\u202e" not in text, text


# ---------------------------------------------------------------------------- 7. the flip map a run used


def test_training_prints_the_flip_pairs_and_stores_them_in_the_run_config(tmp_path):
    import io

    from maskrcnn.config import load_config as load
    from maskrcnn.data.keypoints import keypoint_flip_map
    from maskrcnn.engine.training import build_training

    names = ["nose", "leftshoulder", "rightshoulder", "L_Eye", "R_Eye"]
    cats = [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}]
    path, images = _file(tmp_path, cats, [_person(1, 1, [(8, 8, 2)] * 5)])
    cfg = load_config("demo_keypoints", {"model.backbone": "resnet18", "model.fpn_dim": 8,
                                         "data.num_workers": 0})
    stream = io.StringIO()
    _, cfg = build_training(cfg, train_json=path, train_images=images, output=tmp_path / "run",
                            log_stream=stream, overwrite=True, trainer_kwargs={"tensorboard": False})
    (line,) = [s for s in stream.getvalue().splitlines() if s.startswith("keypoint flip pairs")]
    assert line == "keypoint flip pairs: leftshoulder<->rightshoulder, L_Eye<->R_Eye"
    stored = load(str(tmp_path / "run" / "config.yaml"))
    assert [list(p) for p in stored.data.keypoint_flip_map] == [["leftshoulder", "rightshoulder"],
                                                                 ["L_Eye", "R_Eye"]]
    # read back (predict's TTA, --resume): the same map, whatever names a later file brings
    assert keypoint_flip_map(stored.data.keypoint_names, 5,
                             configured=stored.data.keypoint_flip_map) == (0, 2, 1, 4, 3)
    # --resume with the preset named: the stored pairs are the run's, not a setting the preset differs on
    stream = io.StringIO()
    fresh = load_config("demo_keypoints", {"model.backbone": "resnet18", "model.fpn_dim": 8,
                                           "data.num_workers": 0})
    build_training(fresh, train_json=path, train_images=images, output=tmp_path / "run", log_stream=stream,
                   resume=True, overrides={}, config_named="demo_keypoints",
                   trainer_kwargs={"tensorboard": False})
    assert "keypoint_flip_map" not in stream.getvalue(), stream.getvalue()


def test_the_stored_flip_pairs_do_not_warn_again_at_resume_or_predict_a_users_partial_map_does(tmp_path):
    """Before: the unpaired-side warning for a configured map blamed data.keypoint_flip_map also when the
    map was the run's own stored pairs (derived from the names), on every --resume and at predict with
    flip TTA. Now it is said once, at the first build, and a user's partial map still gets it."""
    import io
    import warnings

    from maskrcnn.config import load_config as load
    from maskrcnn.data.keypoints import keypoint_flip_map
    from maskrcnn.engine.training import build_training
    from maskrcnn.predictor import Predictor

    names = ["nose", "left_eye", "right_eye", "L_marker"]
    cats = [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}]
    path, images = _file(tmp_path, cats, [_person(1, 1, [(8, 8, 2)] * 4)])
    settings = {"model.backbone": "resnet18", "model.fpn_dim": 8, "data.num_workers": 0}
    stream = io.StringIO()
    trainer, _ = build_training(load_config("demo_keypoints", settings), train_json=path,
                                train_images=images, output=tmp_path / "run", log_stream=stream,
                                overwrite=True, trainer_kwargs={"tensorboard": False})
    assert stream.getvalue().count("L_marker looks like one side") == 1  # the first build: from the names
    stored = load(str(tmp_path / "run" / "config.yaml"))
    assert [list(p) for p in stored.data.keypoint_flip_map] == [["left_eye", "right_eye"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        Predictor(trainer.model, stored, tta=True)  # flip TTA reads the stored pairs
        stream = io.StringIO()
        build_training(load_config("demo_keypoints", settings), train_json=path, train_images=images,
                       output=tmp_path / "run", log_stream=stream, resume=True, overrides={},
                       config_named="demo_keypoints", trainer_kwargs={"tensorboard": False})
    assert "L_marker" not in stream.getvalue(), stream.getvalue()
    # the same pairs given by a user: their map leaves L_marker in place, said
    with pytest.warns(UserWarning, match="L_marker looks like one side but data.keypoint_flip_map pairs it"):
        keypoint_flip_map(names, 4, configured=[["left_eye", "right_eye"]], source="kp.json")


# ---------------------------------------------------------------------------- 8. Cityscapes root too deep


@pytest.mark.parametrize("inner", ["gtFine", "leftImg8bit", "mine"])
def test_cityscapes_root_given_one_level_too_deep_says_to_pass_its_parent(cli, tmp_path, inner):
    root = tmp_path / "cs"
    (root / inner / "val" / "frankfurt").mkdir(parents=True)
    rc, text = cli("convert-data", "--from", "cityscapes", root / inner, "--split", "val",
                   "--output", tmp_path / "t.json")
    assert rc == 1, text
    what = (f"is Cityscapes' {inner} folder itself" if inner != "mine"
            else "holds val/<city>/ as Cityscapes' gtFine and leftImg8bit do")
    hint = f"{root / inner} {what}: pass its parent, the folder that holds gtFine and leftImg8bit ({root})"
    assert hint in text, text
    rc, text = cli("convert-data", "--from", "cityscapes", root, "--split", "test",
                   "--output", tmp_path / "t.json")
    assert rc == 1 and "pass its parent" not in text, text


# ---------------------------------------------------------------------------- mends after review


def test_class_overlap_compares_names_as_fine_tuning_does():
    from maskrcnn.engine.inference import check_class_overlap

    data = types.SimpleNamespace(json_path="val.json",
                                 class_names=["__background__", "person", "car", "bike"])
    check_class_overlap(["__background__", "Person", "Car"], data)  # was refused: no exact name in common
    check_class_overlap(["__background__", "Traffic_Light", "bike "], data)
    with pytest.raises(ValueError, match=r"val.json: none of its categories \(person, car, bike\)"):
        check_class_overlap(["__background__", "Dog", "Cat"], data)


def test_a_val_file_without_keypoints_is_no_keypoint_count_mismatch(tmp_path):
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.inference import check_keypoint_count

    cfg = load_config("demo_keypoints", {"model.roi_heads.num_keypoints": 5})
    path, images = _file(tmp_path, [{"id": 1, "name": "person"}], [_box(1, 1, segmentation=[])])
    plain = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    assert plain.defines_keypoints is False
    check_keypoint_count(cfg, plain)  # was: "the model predicts 5 keypoints, ... read as COCO's 17"
    path, images = _file(tmp_path, [{"id": 1, "name": "person"}],
                         [_person(1, 1, [(6, 6, 2)] * 17, segmentation=[])], name="unnamed.json")
    unnamed = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    assert unnamed.defines_keypoints is True  # unnamed keypoints, read as COCO's 17
    with pytest.raises(ValueError, match="the model predicts 5 keypoints, .* read as COCO's 17"):
        check_keypoint_count(cfg, unnamed)


# a section-level --set names only the keys inside it: it was read as asking for the stale flip map
@pytest.mark.parametrize("overrides", [{}, {"data": "{num_workers: 0}"}])
def test_a_run_config_reused_with_other_keypoints_derives_the_flip_pairs_again_and_logs_warnings(
        tmp_path, overrides):
    import io
    import warnings

    from maskrcnn.engine.training import build_training, stale_flip_map_note

    names = ["nose", "left_eye", "right_eye", "LEar"]  # LEar: sided, unpaired
    cats = [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}]
    path, images = _file(tmp_path, cats, [_person(1, 1, [(8, 8, 2)] * 4)])
    # another run's stored pairs: names this file lacks (failed as unknown names)
    cfg = load_config("demo_keypoints", {"model.backbone": "resnet18", "model.fpn_dim": 8,
                                         "data.num_workers": 0,
                                         "data.keypoint_flip_map": [["leftshoulder", "rightshoulder"]]})
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unpaired-name warning goes to the log, not to stderr
        _, cfg = build_training(cfg, train_json=path, train_images=images, output=tmp_path / "run",
                                log_stream=stream, overwrite=True, overrides=overrides,
                                trainer_kwargs={"tensorboard": False})
    text = stream.getvalue()
    assert (f"note: {path}: the config's data.keypoint_flip_map (leftshoulder<->rightshoulder) names "
            "leftshoulder, rightshoulder, not among its keypoints: the pairs are derived from its keypoint "
            "names instead") in text, text
    assert f"warning: {path}: keypoint LEar looks like one side but pairs with no other name" in text, text
    assert "keypoint flip pairs: left_eye<->right_eye" in text, text
    assert [list(p) for p in cfg.data.keypoint_flip_map] == [["left_eye", "right_eye"]]
    # index pairs of another keypoint set: derived again; of this one, or asked with --set: kept
    note = stale_flip_map_note([[0, 3]], ["a", "b", "c", "d"], names, source="x.json")
    assert note.startswith("note: x.json: the config's data.keypoint_flip_map (0<->3) is by index into the "
                           "config's keypoints (a, b, c, d), not its own"), note
    assert stale_flip_map_note([[0, 3]], names, names, source="x.json") == ""
    assert stale_flip_map_note([["left_eye", "LEar"]], (), names, source="x.json") == ""


def test_a_side_word_glued_at_the_end_alone_is_no_warning_and_only_the_first_side_swaps():
    import warnings

    from maskrcnn.data.keypoints import flip_map_from_names

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert flip_map_from_names(["copyright", "downright", "nose"]) == (0, 1, 2)  # was warned as sided
        assert flip_map_from_names(["shoulderleft", "shoulderright"]) == (1, 0)
    # the first side word swaps, not both: rightleft was paired with leftright
    with pytest.warns(UserWarning, match="keypoints rightleft, leftright look like one side"):
        assert flip_map_from_names(["rightleft", "leftright"]) == (0, 1)
