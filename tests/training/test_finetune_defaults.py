"""train's defaults when fine-tuning: without --config a detector as --init trains with the finetune preset
(an ImageNet backbone keeps r50_fpn); --val-images defaults to the --train-images folder when the validation
JSON's layout does not hold its images, and a validation set none of whose images is found is refused before
training; a DataLoader worker's death is told apart from the user's SIGTERM (exit 143) and from a worker
killed alone (out of memory: data.num_workers=0)."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import write_box_coco  # tests/ is on the path

from maskrcnn.cli import main

_coco = write_box_coco  # (path, names) -> path


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        Image.fromarray(np.full((24, 24, 3), 40 * (i + 1), np.uint8)).save(folder / n)
    return folder


class _Stop(ValueError):
    pass


@pytest.fixture
def seen(monkeypatch):
    """build_training replaced: what train handed it, then a stop (no model, no training)."""
    import maskrcnn.engine.training as training

    got = {}

    def fake(cfg, **kw):
        got.update(kw, cfg=cfg)
        raise _Stop("stop here")

    monkeypatch.setattr(training, "build_training", fake)
    return got


def _tv_detector_file(path):
    torch.save({"model": {"backbone.body.conv1.weight": torch.zeros(1)}}, path)
    return str(path)


def test_a_detector_as_init_without_config_takes_the_finetune_preset(tmp_path, seen, capsys):
    from maskrcnn.interop.weights import init_kind

    assert init_kind("maskrcnn_resnet50_fpn_coco") == init_kind("mask_rcnn_R_50_FPN_3x") == "detector"
    assert init_kind("resnet50") == init_kind("detectron2://ImageNetPretrained/MSRA/R-50.pkl") == "imagenet"
    weights = _tv_detector_file(tmp_path / "tv.pth")
    assert init_kind(weights) == "detector" and init_kind(str(tmp_path / "none.pth")) is None
    assert init_kind(f"{weights}#ema") == "detector" and init_kind(str(tmp_path / "none.pth#ema")) is None
    train = _coco(tmp_path / "train.json", ["1.png"])
    _images(tmp_path, ["1.png"])
    common = ["train", "--train-json", str(train), "--output", str(tmp_path / "run")]
    assert main([*common, "--init", weights, "--set", "solver.lr=0.001"]) == 1
    cfg = seen["cfg"]
    # finetune's recipe, --set over it, --init over the preset's own weights
    assert (cfg.solver.lr, cfg.solver.iters, cfg.solver.batch_size) == (0.001, 2000, 4)
    assert cfg.model.init_weights == weights and seen["config_named"] is None
    # held for build_training to say once its checks pass (a refused run says only its error)
    assert "--config not given" not in capsys.readouterr().out
    out = "\n".join(seen["held_lines"])
    assert (f"--config not given: --init {weights} is a detector, so the finetune preset's recipe is used "
            "(4 images per iteration, lr 0.005, 2000 iterations") in out
    assert "--config r50_fpn for the from-scratch recipe" in out
    # asked for: the from-scratch recipe, no line; an ImageNet backbone: r50_fpn as before
    assert main([*common, "--init", weights, "--config", "r50_fpn"]) == 1
    assert (seen["cfg"].solver.lr, seen["cfg"].solver.iters) == (0.02, 90000)
    assert main([*common, "--init", "resnet50"]) == 1
    assert (seen["cfg"].solver.lr, seen["cfg"].solver.iters) == (0.02, 90000)
    assert seen["held_lines"] == []


def test_a_url_is_told_by_its_cached_file_or_its_name_never_fetched(tmp_path, monkeypatch):
    """Every torchrun rank decides before rank 0 downloads: an uncached URL is never fetched for it."""
    from maskrcnn.interop import download
    from maskrcnn.interop.weights import init_kind

    monkeypatch.setenv("MASKRCNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "download", lambda *a, **k: pytest.fail("fetched"))
    assert init_kind("https://example.invalid/models/mask_rcnn_custom.pth") == "detector"
    url = "https://example.invalid/models/mine.pth"
    assert init_kind(url) is None  # unknown: the default recipe
    cached = tmp_path / "cache" / download.cache_name(url)
    cached.parent.mkdir(parents=True)
    _tv_detector_file(cached)
    assert init_kind(url) == "detector"


def test_val_images_default_to_the_train_images_folder(tmp_path, seen, capsys):
    names = ["a.png", "b.png"]
    pics = _images(tmp_path / "pics", names)
    (tmp_path / "ann").mkdir()
    train = _coco(tmp_path / "ann" / "train.json", names)
    val = _coco(tmp_path / "ann" / "val.json", names[:1])
    args = ["train", "--train-json", str(train), "--train-images", str(pics), "--val-json", str(val),
            "--config", "demo", "--output", str(tmp_path / "run")]
    assert main(args) == 1
    assert seen["val_images"] == str(pics)
    assert (f"--val-images not given: images of {val} read from {pics} (as --train-images)"
            in capsys.readouterr().out)
    # a folder of the val JSON's own layout that holds its images still wins
    own = _images(tmp_path / "ann" / "val", names[:1])
    assert main(args) == 1 and seen["val_images"] == str(own)


def test_a_validation_set_without_any_image_found_is_refused_before_training(tmp_path):
    from maskrcnn.config import load_config
    from maskrcnn.engine.training import build_training

    names = ["a.png", "b.png"]
    pics = _images(tmp_path / "pics", names)
    train, val = _coco(tmp_path / "train.json", names), _coco(tmp_path / "val.json", ["x.png", "y.png"])
    cfg = load_config("demo", {"model.backbone": "resnet18", "model.fpn_dim": 8, "data.num_workers": 0})
    with pytest.raises(ValueError) as info:
        build_training(cfg, train_json=train, train_images=pics, val_json=val, val_images=pics,
                       output=tmp_path / "run", trainer_kwargs={"tensorboard": False})
    assert str(info.value) == (f"{val}: none of its 2 image files is under {pics}: give the folder that "
                               "holds them with --val-images")


def test_a_refused_run_leaves_nothing_that_blocks_its_corrected_retry(tmp_path):
    """The validation refusal came after config.yaml was written: the retry with the fixed file was then
    refused as "already holds a training run", and --resume said there was no run to resume."""
    from maskrcnn.config import load_config
    from maskrcnn.engine.training import build_training

    names = ["a.png", "b.png"]
    pics = _images(tmp_path / "pics", names)
    train, val = _coco(tmp_path / "train.json", names), _coco(tmp_path / "val.json", ["x.png", "y.png"])
    cfg = load_config("demo", {"model.backbone": "resnet18", "model.fpn_dim": 8, "data.num_workers": 0})
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="none of its 2 image files"):
        build_training(cfg, train_json=train, train_images=pics, val_json=val, val_images=pics, output=run,
                       trainer_kwargs={"tensorboard": False})
    assert not run.exists() or not any(run.iterdir()), list(run.iterdir())
    fixed = _coco(tmp_path / "val_fixed.json", names[:1])
    trainer, _ = build_training(cfg, train_json=train, train_images=pics, val_json=fixed, val_images=pics,
                                output=run, trainer_kwargs={"tensorboard": False})
    assert (run / "config.yaml").is_file() and trainer.iteration == 0


def test_a_missing_train_json_is_the_only_line(tmp_path, monkeypatch, capsys):
    """A mistyped --train-json first got "images of nope.json read from images", about a file that is not
    there, then the not-found error."""
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "images", ["a.png"])
    assert main(["train", "--train-json", "nope.json", "--config", "demo", "--output", "runs/z"]) == 1
    out, err = capsys.readouterr()
    assert "read from" not in out + err, out + err
    assert err.strip().splitlines() == ["maskrcnn train: error: nope.json: no such annotation file"], err
    assert not (tmp_path / "runs" / "z").exists()  # the run's folder is not left behind
    val = ["train", "--train-json", str(_coco(tmp_path / "t.json", ["a.png"])), "--val-json", "nope_val.json",
           "--config", "demo", "--output", "runs/z"]
    assert main(val) == 1
    out, err = capsys.readouterr()
    # a line on the training set's images (that file is there), none on the missing validation file's
    assert "images of nope_val.json" not in out and "nope_val.json: no such annotation file" in err, out + err


def test_a_missing_train_json_in_a_missing_folder_names_the_json(tmp_path, monkeypatch, capsys):
    """With the JSON's folder missing too, the error named the image folder derived from it ("nope: no
    such image folder"), not the file the user mistyped."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--train-json", "nope/train.json", "--config", "demo", "--output", "runs/z"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"maskrcnn train: error: {os.path.join('nope', 'train.json')}: no "
                                        "such annotation file"], err
    assert not (tmp_path / "runs" / "z").exists()


def _toy_trainer(tmp_path, toy, *, sigterm: bool):
    from maskrcnn.config import load_config
    from maskrcnn.engine.trainer import build_trainer

    make = toy.make_batches_fn(rank=0, world_size=1, per_rank=2, nan_at=-1)

    def batches(start_iter):
        for i, batch in enumerate(make(start_iter)):
            if i == 3:  # as PyTorch reports a worker that a signal ended
                if sigterm:  # the process group's SIGTERM: the main process got it too
                    os.kill(os.getpid(), signal.SIGTERM)
                raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Terminated. ")
            yield batch

    cfg = load_config("demo", {"solver.iters": 50, "solver.checkpoint_period": 2})
    return build_trainer(cfg, toy.Toy(), make_batches=batches, output_dir=tmp_path, tensorboard=False,
                         class_names=["__background__", "x"], plot=False)


def test_a_worker_killed_with_the_main_process_is_the_signals_stop(tmp_path, toy, monkeypatch, capsys):
    from maskrcnn.engine.trainer import StoppedBySignal

    trainer = _toy_trainer(tmp_path, toy, sigterm=True)
    with pytest.raises(StoppedBySignal) as info:
        trainer.train()
    assert info.value.signum == signal.SIGTERM
    assert str(info.value) == ("stopped by SIGTERM during iteration 4, which ended the DataLoader workers "
                               "too; not saved: the last good checkpoint is "
                               f"{tmp_path / 'model_0000002.pth'} (continue with --resume)")
    # the command: that line and 143, not "error: DataLoader worker ..."
    import maskrcnn.engine.training as training

    monkeypatch.setattr(training, "build_training", lambda cfg, **kw: (trainer, cfg))
    trainer.train = lambda: (_ for _ in ()).throw(info.value)
    (tmp_path / "d").mkdir()
    _images(tmp_path / "d", ["1.png"])
    argv = ["train", "--config", "demo", "--train-json", str(_coco(tmp_path / "d" / "t.json", ["1.png"])),
            "--output", str(tmp_path / "run")]
    assert main(argv) == 143
    err = capsys.readouterr().err
    assert str(info.value) in err and "error" not in err


def test_a_worker_killed_alone_says_why_and_the_way_round(tmp_path, toy):
    trainer = _toy_trainer(tmp_path, toy, sigterm=False)
    with pytest.raises(RuntimeError) as info:
        trainer.train()
    assert str(info.value) == (
        "DataLoader worker (pid 4242) is killed by signal: Terminated: a process reading the training images "
        "was ended (most likely out of memory, or killed from outside); fewer workers (--set "
        "data.num_workers=1) or none (data.num_workers=0: the images are read in the training process "
        "itself) work around it")


def test_a_validation_ground_truth_the_scorer_refuses_is_refused_before_training(tmp_path):
    """p_formats F9: the loader kept "area": -3, the scorer refused it: the run trained to its end and
    died at the first evaluation with 'ground truth: ... (record 1)', naming no file. Now the scorer reads
    it before anything is written, the file and the annotation (by id, not by its position) named. (The
    loader now skips such an area itself; keypoints a mask model does not read are still kept by it.)"""
    from maskrcnn.config import load_config
    from maskrcnn.engine.training import build_training

    names = ["a.png", "b.png"]
    pics = _images(tmp_path / "pics", names)
    train, val = _coco(tmp_path / "train.json", names), _coco(tmp_path / "val.json", names)
    data = json.loads(val.read_text())
    data["annotations"][0]["iscrowd"] = "0"  # skipped by the loader: the kept records' positions shift
    data["annotations"][1]["keypoints"] = [1, 2]  # not read by a mask model's loader; refused by the scorer
    val.write_text(json.dumps(data))
    cfg = load_config("demo", {"model.backbone": "resnet18", "model.fpn_dim": 8, "data.num_workers": 0})
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="bad_iscrowd"), pytest.raises(ValueError) as info:
        build_training(cfg, train_json=train, train_images=pics, val_json=val, val_images=pics, output=run,
                       trainer_kwargs={"tensorboard": False})
    assert str(info.value) == (f"{val}: 1 problem in the ground truth, which must be right to score "
                               "against: annotation id 2 keypoints must be a flat list [x1, y1, v1, ...] "
                               "of finite numbers")
    assert not run.exists()
