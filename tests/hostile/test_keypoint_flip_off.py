"""What probe p10_kp found in the keypoint flip map: a one-sided keypoint set stopped training even with
flips off (input.flip_prob=0, which the error itself recommended), an explicit empty
data.keypoint_flip_map was read as "derive the pairs from the names", and a configured pair of a sided
name with an unsided one (L_ear<->nose) passed without a word."""

import io
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from maskrcnn.config import load_config

SETTINGS = {"model.backbone": "resnet18", "model.fpn_dim": 8, "data.num_workers": 0}
ONE_SIDED = ["nose", "left_eye", "right_eye", "left_ankle", "foot"]  # left_ankle: no right_ankle


def _file(folder, names):
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in (1, 2):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    person = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400.0,
              "iscrowd": 0, "keypoints": [8.0, 8.0, 2.0] * len(names)}
    path = folder / "kp.json"
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in (1, 2)],
        "categories": [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}],
        "annotations": [person]}))
    return path, images


def _build(tmp_path, path, images, overrides, **kwargs):
    from maskrcnn.engine.training import build_training

    stream = io.StringIO()
    trainer, cfg = build_training(load_config("demo_keypoints", {**SETTINGS, **overrides}), train_json=path,
                                  train_images=images, output=tmp_path / "run", log_stream=stream,
                                  overrides=overrides, trainer_kwargs={"tensorboard": False}, **kwargs)
    return trainer, cfg, stream.getvalue()


def test_a_one_sided_set_trains_without_flips_and_flip_tta_on_it_refuses_naming_the_names(tmp_path):
    from maskrcnn.predictor import Predictor

    path, images = _file(tmp_path, ONE_SIDED)
    with pytest.raises(ValueError, match="'left_ankle' has no mirror keypoint 'right_ankle'.*"
                                         r"data.keypoint_flip_map \(\[\] for none"):
        _build(tmp_path, path, images, {}, overwrite=True)  # flips on: the map is needed
    trainer, cfg, text = _build(tmp_path, path, images, {"input.flip_prob": 0}, overwrite=True)
    (line,) = [s for s in text.splitlines() if "no flip map is needed" in s]
    assert line.startswith(f"note: {path}: keypoint 'left_ankle' has no mirror keypoint 'right_ankle': "
                           "input.flip_prob=0 flips no training image, so no flip map is needed"), line
    assert "--tta-no-flip" in line and "data.keypoint_flip_map" in line, line
    assert "keypoint flip pairs" not in text
    assert tuple(cfg.data.keypoint_flip_map) == ()
    # flip TTA on that model: refused naming the one-sided name, the way out given; without mirrors it works
    with pytest.raises(ValueError, match="tta: .*'left_ankle' has no mirror keypoint 'right_ankle'.*"
                                         r"--tta-no-flip"):
        Predictor(trainer.model, cfg, tta=True)
    from maskrcnn.engine.tta import TTAOptions

    Predictor(trainer.model, cfg, tta=TTAOptions(flip=False))
    # --resume with flips still off: the same note, no refusal
    _, _, text = _build(tmp_path, path, images, {"input.flip_prob": 0}, resume=True,
                        config_named="demo_keypoints")
    assert "no flip map is needed" in text, text


def test_an_explicit_empty_flip_map_means_no_pairs_and_is_stored_so(tmp_path):
    from maskrcnn.config import load_config as load
    from maskrcnn.data.keypoints import keypoint_flip_map
    from maskrcnn.predictor import Predictor

    path, images = _file(tmp_path, ONE_SIDED)
    trainer, cfg, text = _build(tmp_path, path, images, {"data.keypoint_flip_map": []}, overwrite=True)
    assert "keypoint flip pairs: none (a flip keeps every keypoint's label)" in text, text
    assert (f"warning: {path}: keypoints left_eye, right_eye, left_ankle look like one side but "
            "data.keypoint_flip_map pairs them with no other name") in text, text
    assert "pair no left with a right" not in text  # the user's own choice: not the names' warning
    stored = load(str(tmp_path / "run" / "config.yaml"))
    identity = tuple(range(len(ONE_SIDED)))
    # read back (predict's flip TTA, --resume): still no pairs, not the names' (here: an error)
    assert keypoint_flip_map(stored.data.keypoint_names, len(ONE_SIDED),
                             configured=stored.data.keypoint_flip_map, warn_unpaired=False) == identity
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Predictor(trainer.model, stored, tta=True)._tta_flip_map == identity
    # a set whose names do pair: [] still means none, where () derives left_eye<->right_eye
    path, images = _file(tmp_path / "b", ["nose", "left_eye", "right_eye"])
    _, cfg, text = _build(tmp_path / "b", path, images, {"data.keypoint_flip_map": []}, overwrite=True)
    assert "keypoint flip pairs: none" in text and "left_eye, right_eye look like one side" in text, text
    assert keypoint_flip_map(cfg.data.keypoint_names, 3, configured=cfg.data.keypoint_flip_map,
                             warn_unpaired=False) == (0, 1, 2)
    _, cfg, text = _build(tmp_path / "b", path, images, {}, overwrite=True)
    assert "keypoint flip pairs: left_eye<->right_eye" in text, text


def test_a_configured_pair_of_a_sided_name_with_an_unsided_one_is_warned_naming_both():
    from maskrcnn.data.keypoints import keypoint_flip_map

    names = ["nose", "L_ear", "R_ear"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert keypoint_flip_map(names, 3, configured=[["L_ear", "nose"]], source="kp.json") == (1, 0, 2)
    text = [str(w.message) for w in caught]
    assert any(t.startswith("kp.json: data.keypoint_flip_map pairs nose<->L_ear: it pairs a name that looks "
                            "like one side with one that looks like no side") for t in text), text
    assert any("R_ear looks like one side" in t for t in text), text
    with warnings.catch_warnings():  # a left with its right: no word
        warnings.simplefilter("error")
        keypoint_flip_map(names, 3, configured=[["L_ear", "R_ear"]], source="kp.json")


def test_resuming_a_flips_off_one_sided_run_with_flips_on_is_refused_naming_the_keypoint(tmp_path):
    """A one-sided set trained with input.flip_prob=0 stores no flip map; resuming it with
    --set input.flip_prob=0.5 would flip images with no map for 'left_ankle': refused, naming it."""
    path, images = _file(tmp_path, ONE_SIDED)
    trainer, _, _ = _build(tmp_path, path, images, {"input.flip_prob": 0, "solver.iters": 1}, overwrite=True)
    trainer.train()
    with pytest.raises(ValueError, match="'left_ankle' has no mirror keypoint 'right_ankle'"):
        _build(tmp_path, path, images, {"input.flip_prob": 0.5}, resume=True, config_named="demo_keypoints")
