"""``maskrcnn train --init DETECTOR`` without ``--config`` says which preset it took ("--config not given:
... finetune preset ..."). That note was printed at once, so a run refused on its data printed it before
its one error; it is now one of build_training's held set-up lines, said once every check has passed."""

import json

import numpy as np
import pytest
from PIL import Image
from tiny_model import TINY, build_tiny, save_tiny_checkpoint  # tests/ is on the path

import maskrcnn

NOTE = "config= not given: init="  # maskrcnn.train()'s words for --config, --init


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("preset_note")
    return save_tiny_checkpoint(root / "tiny.pth", *build_tiny(TINY, seed=0),
                                class_names=("__background__", "x", "y"))


def _write(root, *, crowd: bool):
    (root / "images").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / "a.png")
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 12, 12], "area": 144.0, "iscrowd": 0,
           "segmentation": [[4, 4, 16, 4, 16, 16, 4, 16]]}
    if crowd:  # the only object a crowd region: no image to train on
        ann.update(iscrowd=1, segmentation={"counts": [0, 1024], "size": [32, 32]})
    (root / "train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
        "categories": [{"id": 1, "name": "x"}], "annotations": [ann]}))
    return root / "train.json"


def test_a_refused_run_says_no_preset_note_before_its_error(weights, tmp_path, capsys):
    train_json = _write(tmp_path, crowd=True)
    with pytest.raises(ValueError, match="no usable training image"):
        maskrcnn.train(train_json=str(train_json), train_images=str(tmp_path / "images"),
                       output=str(tmp_path / "run"), init=str(weights))
    said = capsys.readouterr()
    assert NOTE not in said.out + said.err, said


def test_a_run_that_passes_its_checks_still_says_the_note(weights, tmp_path, capsys):
    train_json = _write(tmp_path, crowd=False)
    maskrcnn.train(train_json=str(train_json), train_images=str(tmp_path / "images"),
                   output=str(tmp_path / "run"), init=str(weights),
                   set={"solver.iters": 1, "solver.batch_size": 1, "solver.checkpoint_period": 0,
                        "solver.eval_period": 0, "input.min_size": [32], "input.max_size": 32})
    said = capsys.readouterr()
    assert NOTE in said.out + said.err, said
