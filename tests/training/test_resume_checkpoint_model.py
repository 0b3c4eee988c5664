"""``--resume`` builds the model the checkpoint holds (``engine/training._checkpoints_model``): a run's
``config.yaml`` whose model section was edited (or copied from another run) gave torch's kilobytes of
``load_state_dict`` errors for a shape, and applied a shape-neutral setting (``pooler_aligned``) without a
word; now one warning names each differing key with both values and the checkpoint's model is used. A
resume whose ``--set solver.iters`` cuts the run to its checkpoint's iteration says its lines in causal
order, without "nothing left to train" before writing the end's weights. A tiny model, through the real
``build_training`` and ``Trainer`` (one iteration of 32-pixel images, trained once for the module)."""

import io
import json
import shutil
import warnings

import numpy as np
import pytest
import yaml
from PIL import Image

from maskrcnn.config import load_config
from maskrcnn.engine.training import build_training

_TINY = {
    "model.fpn_dim": 8, "model.roi_heads.box_head_dim": 16, "model.roi_heads.mask_head_dim": 8,
    "input.min_size": 32, "input.max_size": 32, "input.flip_prob": 0.0, "solver.batch_size": 2,
    "solver.iters": 1, "solver.checkpoint_period": 1, "solver.warmup_iters": 0, "data.num_workers": 0,
}


def _dataset(folder):
    images = folder / "images"
    images.mkdir(parents=True)
    for i in (1, 2):
        Image.fromarray(np.full((24, 24, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    ann = [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 10, 10], "area": 100.0, "iscrowd": 0,
            "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]]} for i in (1, 2)]
    path = folder / "train.json"
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": 24, "height": 24} for i in (1, 2)],
        "categories": [{"id": 1, "name": "box"}], "annotations": ann}))
    return path, images

# how a resume names a value of config.yaml that differs from the checkpoint's (an edit, or an earlier
# resume's --set): not "(from config.yaml)" alone, which read as the user's edit
_FROM_FILE = "config.yaml, not the checkpoint's: an edit, or an earlier --resume's --set"


def _build(cfg, data, run, **kwargs):
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer, cfg = build_training(cfg, train_json=data[0], train_images=data[1], output=run,
                                      log_stream=stream, trainer_kwargs={"tensorboard": False, "plot": False},
                                      **kwargs)
    return trainer, cfg, stream


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run folder (run/) that trained its one iteration, and its data."""
    root = tmp_path_factory.mktemp("resume_model")
    data = _dataset(root)
    trainer, _, _ = _build(load_config("demo", _TINY), data, root / "run")
    trainer.train()
    return root, data


@pytest.fixture
def run(finished, tmp_path):
    root, data = finished
    shutil.copytree(root / "run", tmp_path / "run")
    return tmp_path / "run", data


def _edit(path, section: tuple, **values):
    data = yaml.safe_load(path.read_text())
    node = data
    for name in section:
        node = node[name]
    node.update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_an_edited_config_yaml_model_is_named_and_the_checkpoints_is_built(run):
    out, data = run
    saved = out / "config.yaml"
    # a shape (torch's load_state_dict error before) and a shape-neutral setting (applied silently before)
    _edit(saved, ("model", "roi_heads"), box_head_dim=32, pooler_aligned=False)
    trainer, cfg, stream = _build(load_config("demo"), data, out, resume=True, overrides={})
    assert trainer.iteration == 1
    assert (f"warning: --resume: {saved} differs from the checkpoint it continues from (model_0000001.pth) "
            "in model.roi_heads.box_head_dim=32 (the checkpoint's: 16), model.roi_heads.pooler_aligned=False "
            "(the checkpoint's: True); the checkpoint's model is used (its weights are of that model), and "
            "config.yaml is written back with it\n") in stream.getvalue(), stream.getvalue()
    assert (cfg.model.roi_heads.box_head_dim, cfg.model.roi_heads.pooler_aligned) == (16, True)
    written = load_config(str(saved), stored=True).model.roi_heads
    assert (written.box_head_dim, written.pooler_aligned) == (16, True)


def test_another_runs_config_yaml_lists_a_few_keys_and_counts_the_rest(run):
    out, data = run
    saved = out / "config.yaml"
    other = load_config("r50_fpn").to_dict()
    other["data"]["class_names"] = ["__background__", "box"]
    saved.write_text(yaml.safe_dump(other, sort_keys=False))
    _, cfg, stream = _build(load_config("demo"), data, out, resume=True, overrides={})
    line = next(s for s in stream.getvalue().splitlines() if "differs from the checkpoint" in s)
    assert "model.backbone='resnet50' (the checkpoint's: 'resnet18')" in line
    assert line.count("(the checkpoint's:") == 8
    assert " more model keys; the checkpoint's model is used" in line
    assert cfg.model.backbone == "resnet18" and cfg.model.fpn_dim == 8


def test_a_resume_cut_to_its_checkpoint_says_its_lines_in_causal_order(run):
    out, data = run
    (out / "model_final.pth").unlink()  # as a run stopped after iteration 1 of 5 leaves it
    _edit(out / "config.yaml", ("solver",), iters=5)
    trainer, cfg, stream = _build(load_config("demo", {**_TINY, "solver.iters": 1}), data, out, resume=True,
                                  overrides={"solver.iters": "1"})
    trainer.train()
    log = stream.getvalue()
    lines = ["resumed from", "resume: solver.iters 5 -> 1 (from --set)",
             "--resume: the run is already at iteration 1 of solver.iters 1: no iteration left to train\n",
             "the run was stopped before it had finished: writing model_final.pth now"]
    at = [log.find(s) for s in lines]
    assert -1 not in at and at == sorted(at), log
    assert "nothing left to train" not in log
    assert (out / "model_final.pth").is_file()

    # finished now: said so, and nothing more is done
    before = (out / "model_final.pth").stat().st_mtime_ns
    trainer, _, stream = _build(load_config("demo", {**_TINY, "solver.iters": 1}), data, out, resume=True,
                                overrides={})
    trainer.train()
    assert ("--resume: the run is already at iteration 1 of solver.iters 1: nothing left to train (raise "
            "solver.iters to train on)") in stream.getvalue()
    assert (out / "model_final.pth").stat().st_mtime_ns == before


def test_a_solver_value_edited_in_config_yaml_is_said_as_a_set_one_is(run):
    """``solver.lr`` edited in the run's config.yaml (0.01 -> 0.5) was applied without a word, while the same
    change by ``--set`` got a ``resume:`` line; now both are said, each naming where it came from."""
    out, data = run
    lr = load_config("demo", _TINY).solver.lr
    _edit(out / "config.yaml", ("solver",), lr=0.5)
    _, cfg, stream = _build(load_config("demo"), data, out, resume=True, overrides={})
    assert f"resume: solver.lr {lr} -> 0.5 (from {_FROM_FILE})\n" in stream.getvalue(), stream.getvalue()
    assert cfg.solver.lr == 0.5
    # unedited: nothing said (the checkpoint's config and config.yaml agree)
    _edit(out / "config.yaml", ("solver",), lr=lr)
    _, _, stream = _build(load_config("demo"), data, out, resume=True, overrides={})
    assert not [s for s in stream.getvalue().splitlines() if s.startswith("resume: ")], stream.getvalue()


def test_input_and_data_values_edited_in_config_yaml_are_said_as_solver_ones_are(run):
    """``input.min_size``/``max_size`` and ``data.*`` loader keys edited in the run's config.yaml were
    applied without a word (only ``solver.*`` edits were said); now each is said with where it came from,
    the ones that change the images drawn with the warning ``--set`` gets; an edited key ``--set`` again is
    said once, from ``--set``."""
    out, data = run
    _edit(out / "config.yaml", ("input",), min_size=[40], max_size=48)
    _edit(out / "config.yaml", ("data",), aspect_ratio_grouping=False, repeat_threshold=0.5)
    _edit(out / "config.yaml", ("solver",), lr=0.5)
    # a key the data fills in, written otherwise in config.yaml (its PNGs tell no EXIF frame: ""): no edit
    assert load_config(str(out / "config.yaml")).data.exif_frame_seen == ""
    _edit(out / "config.yaml", ("data",), exif_frame_seen="stored")
    _, cfg, stream = _build(load_config("demo", {"solver.lr": 0.25}), data, out, resume=True,
                            overrides={"solver.lr": "0.25"})
    log = stream.getvalue()
    for line in (f"resume: input.min_size 32 -> [40] (from {_FROM_FILE})\n",
                 f"resume: input.max_size 32 -> 48 (from {_FROM_FILE})\n",
                 f"resume: data.aspect_ratio_grouping True -> False (from {_FROM_FILE})\n",
                 f"warning: --resume with data.repeat_threshold=0.5 (from {_FROM_FILE}), the run's was 0: "
                 "the "
                 "images drawn from now on differ from the run's\n",
                 "resume: solver.lr 0.5 -> 0.25 (from --set)\n"):
        assert line in log, (line, log)
    assert log.count("resume: solver.lr") == 1, log  # edited and --set again: said once, from --set
    assert (cfg.input.min_size, cfg.input.max_size, cfg.data.aspect_ratio_grouping) == ((40,), 48, False)
    # class names and the EXIF frame are filled from the data, not edits: nothing said of them
    assert "data.class_names" not in log and "exif_frame_seen" not in log, log


def test_a_value_an_earlier_resumes_set_wrote_is_not_said_to_be_an_edit(run):
    """``--resume --set solver.iters=3`` writes 3 into config.yaml; stopped before its next checkpoint, the
    next resume found config.yaml differing from the checkpoint and said "(from config.yaml)", as if the
    user had edited the file: the line now says what is known, that config.yaml differs from the
    checkpoint, by an edit or an earlier resume's --set."""
    out, data = run
    _, cfg, stream = _build(load_config("demo", {"solver.iters": 3}), data, out, resume=True,
                            overrides={"solver.iters": "3"})
    assert "resume: solver.iters 1 -> 3 (from --set)\n" in stream.getvalue(), stream.getvalue()
    assert load_config(str(out / "config.yaml")).solver.iters == 3  # no iteration trained, no checkpoint
    _, cfg, stream = _build(load_config("demo"), data, out, resume=True, overrides={})
    assert cfg.solver.iters == 3
    assert f"resume: solver.iters 1 -> 3 (from {_FROM_FILE})\n" in stream.getvalue(), stream.getvalue()
