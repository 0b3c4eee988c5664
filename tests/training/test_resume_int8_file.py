"""A run folder whose last checkpoint is an INT8 file (``quantize --output RUN/model_N.pth``) or any file
without training state: ``--resume`` said only "error: optimizer" (a KeyError in load_training_state).
``--init`` from an INT8 file starts from its float32 weights: one note says so."""

import json

import numpy as np
from PIL import Image

from maskrcnn.checkpoint import load_checkpoint, save_checkpoint
from maskrcnn.cli import main
from maskrcnn.config import load_config, save_config
from maskrcnn.engine.int8 import save_int8_checkpoint
from maskrcnn.engine.trainer import (
    LAST_CHECKPOINT,
    no_training_state,
    read_resume_checkpoint,
    set_aside_stateless,
)
from maskrcnn.interop.weights import read_weights
from maskrcnn.modeling.mask_rcnn import build_model
from tests.tiny_model import TINY

NAMES = ["__background__", "a", "b"]
SECTION = {"format_version": 1, "parts": ["features"]}  # the key marks the file; its content is not read


def _int8_file(folder):
    cfg = load_config("demo", {**TINY, "model.num_classes": 3, "data.class_names": NAMES})
    plain = folder / "plain.pth"
    save_checkpoint(plain, model_state=build_model(cfg).state_dict(), config=cfg, class_names=NAMES,
                    iteration=4)
    path = folder / "model_0000004.pth"
    save_int8_checkpoint(path, load_checkpoint(plain), SECTION)
    plain.unlink()
    return cfg, path


def _dataset(folder):
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(folder / "1.png")
    path = folder / "train.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.png", "width": 32, "height": 32}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 16, 16], "area": 256,
                         "iscrowd": 0, "segmentation": [[4, 4, 20, 4, 20, 20, 4, 20]]}]}))
    return path


def test_resume_from_an_int8_file_says_what_it_is_and_the_way_out(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg, path = _int8_file(run)
    save_config(cfg, run / "config.yaml")
    (run / LAST_CHECKPOINT).write_text(path.name)
    data = _dataset(tmp_path / "d")
    assert main(["train", "--output", str(run), "--resume", "--train-json", str(data), "--train-images",
                 str(data.parent), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err == (f"maskrcnn train: error: --resume: {path} is an INT8 file written by `maskrcnn quantize`: "
                   "it holds no training state (no optimizer, scheduler), so the run cannot go on from it; "
                   f"train on from its weights in a new run: --init {path} --config {run / 'config.yaml'} "
                   "--output ANOTHER_FOLDER (the run holds no other checkpoint)\n"), err


def test_a_weights_only_file_names_the_runs_other_checkpoints(tmp_path):
    path = tmp_path / "model_0000009.pth"
    line = no_training_state(path, {"model": {}, "iteration": 9},
                             [path, tmp_path / "model_0000008.pth", tmp_path / "model_0000004.pth"])
    assert line.startswith(f"--resume: {path} is a weights-only file: it holds no training state (no "
                           "optimizer, scheduler)")
    assert (f"point {tmp_path / LAST_CHECKPOINT} at a checkpoint the run wrote (model_0000008.pth, "
            "model_0000004.pth), or train on from its weights") in line
    assert no_training_state(path, {"optimizer": {}, "scheduler": {}, "iteration": 9}) == ""


def test_init_from_an_int8_file_notes_its_float_weights_are_used(tmp_path):
    _, path = _int8_file(tmp_path)
    notes = read_weights(str(path)).notes
    assert [n for n in notes if "INT8" in n] == [
        f"{path} is an INT8 file (written by quantize): the run starts from the float32 weights it holds; "
        "its INT8 calibration is not used (quantize the new weights again)"]


def _run_with_an_int8_file(tmp_path) -> tuple:
    """(run folder, its INT8 file (``_int8_file``), its own training checkpoint of iteration 2)."""
    run = tmp_path / "run"
    run.mkdir()
    cfg, int8_path = _int8_file(run)
    own = run / "model_0000002.pth"
    save_checkpoint(own, model_state={}, config=cfg, class_names=NAMES, optimizer={}, scheduler={},
                    iteration=2)
    return run, int8_path, own


def test_without_a_pointer_an_int8_file_sorted_newest_is_skipped_for_the_runs_checkpoint(tmp_path):
    # quantize --output RUN/model_0000009.pth after a kill left no last_checkpoint: the resume was refused,
    # pointing at a last_checkpoint file that did not exist; it goes on from the run's own checkpoint now
    run, int8_path, own = _run_with_an_int8_file(tmp_path)
    found = read_resume_checkpoint(run)
    assert found["path"] == own and found["checkpoint"]["iteration"] == 2
    assert found["errors"] == [f"{int8_path}: an INT8 file written by `maskrcnn quantize`, not a checkpoint "
                               "of the run (no training state)"]
    # the run goes on to iteration 4 and would write its own model_0000004.pth over the INT8 file: moved
    aside = run / "int8_model_0000004.pth"
    assert set_aside_stateless(found, 2, max_iter=4, checkpoint_period=2) == [
        f"moved {int8_path} to {aside}: the run writes its own checkpoint of iteration 4 under that name"]
    assert aside.is_file() and not int8_path.exists()
    assert read_resume_checkpoint(run)["errors"] == []  # no longer taken for a checkpoint
    aside.rename(int8_path)
    (run / LAST_CHECKPOINT).write_text(int8_path.name)  # named by the pointer: refused, as before
    assert read_resume_checkpoint(run)["path"] == int8_path
    (run / LAST_CHECKPOINT).unlink()
    own.unlink()  # nothing but state-less files: the first is refused (no_training_state says why)
    assert read_resume_checkpoint(run)["path"] == int8_path


def test_an_int8_file_is_set_aside_with_a_pointer_too_and_only_when_the_run_writes_its_name(tmp_path):
    # last_checkpoint named the run's own checkpoint: the loop stopped there, nothing was set aside, and
    # the resumed run wrote its model_0000004.pth over the INT8 file unsaid; without a pointer it was moved
    # whatever the schedule ("the run writes its own checkpoint" of an iteration it never saved)
    run, int8_path, own = _run_with_an_int8_file(tmp_path)
    aside = run / "int8_model_0000004.pth"
    for pointer in (True, False):
        if pointer:
            (run / LAST_CHECKPOINT).write_text(own.name + "\n")
        else:
            (run / LAST_CHECKPOINT).unlink()
        found = read_resume_checkpoint(run)
        assert found["path"] == own
        for never in (dict(max_iter=3, checkpoint_period=1), dict(max_iter=10, checkpoint_period=5000),
                      dict(max_iter=10, checkpoint_period=3)):  # past the end; not a multiple of the period
            assert set_aside_stateless(found, 2, **never) == [] and int8_path.is_file(), (pointer, never)
        for writes in (dict(max_iter=4, checkpoint_period=5000), dict(max_iter=10, checkpoint_period=2)):
            assert set_aside_stateless(found, 2, **writes) == [
                f"moved {int8_path} to {aside}: the run writes its own checkpoint of iteration 4 under "
                "that name"], (pointer, writes)
            assert aside.is_file() and not int8_path.exists()
            aside.rename(int8_path)
