"""Settings accepted without a word although they cannot act as set: input.min_size above input.max_size
(every image trained at the longer side max_size, min_size without effect) and a solver.batch_size larger
than the training set (each batch repeats images). One note line each."""

import io
import json

import numpy as np
from PIL import Image

from maskrcnn.config import load_config
from maskrcnn.engine.training import build_training, input_size_notes
from tests.tiny_model import TINY


def test_min_size_above_max_size_is_noted():
    inp = load_config("demo", {"input.min_size": [64, 80], "input.max_size": 32}).input
    assert input_size_notes(inp) == [
        "note: input.min_size 64, 80 above input.max_size 32 never applies: every training image is scaled "
        "to a longer side of 32 pixels (raise input.max_size to train at the shorter side asked for; the "
        "presets' ratio is 800 to 1333)"]
    inp = load_config("demo", {"input.min_size": [16, 64, 80], "input.max_size": 64,
                               "input.min_size_test": 100, "input.max_size_test": 90}).input
    train, test = input_size_notes(inp)
    # one size of several above: that one named (was "an image drawn at one of them is, so they act as
    # one size: scaled ...", garbled)
    assert train.startswith("note: input.min_size 80 above input.max_size 64 never applies: an image drawn "
                            "at 80 is scaled to a longer side of 64 pixels instead (raise"), train
    inp = load_config("demo", {"input.min_size": [16, 64, 80], "input.max_size": 32}).input
    assert input_size_notes(inp)[0].startswith(
        "note: input.min_size 64, 80 above input.max_size 32 never applies: an image drawn at any of 64, 80 "
        "is scaled to a longer side of 32 pixels instead, so they act as one size (raise")
    assert test.startswith("note: input.min_size_test 100 above input.max_size_test 90 never applies")
    assert input_size_notes(load_config("demo").input) == []
    assert input_size_notes(load_config("r50_fpn").input) == []


def test_batch_larger_than_the_training_set_is_noted(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    path = tmp_path / "t.json"
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in (1, 2)],
        "categories": [{"id": 1, "name": "box"}],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 16, 16], "area": 256,
                         "iscrowd": 0} for i in (1, 2)]}))
    said = []
    for batch in (2, 8):
        log = io.StringIO()
        cfg = load_config("demo", {**TINY, "solver.batch_size": batch, "solver.iters": 1,
                                   "solver.warmup_iters": 1, "data.num_workers": 0})
        build_training(cfg, train_json=path, train_images=images, output=tmp_path / f"run{batch}",
                       log_stream=log, trainer_kwargs={"tensorboard": False})
        said.append([x for x in log.getvalue().splitlines() if "solver.batch_size" in x])
    assert said == [[], [f"note: solver.batch_size 8 is more than the 2 usable training images of {path}: "
                         "each batch holds some of them more than once"]]
