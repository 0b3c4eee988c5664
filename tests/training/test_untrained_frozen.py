"""Frozen layers or frozen batch norm over random weights: a paper preset (r50_fpn: freeze_at 2, frozen_bn)
trained with no --init kept its random stem and res2 for the whole run and normalised nothing, its losses
in the hundred thousands, and ended "done". Refused before the model is built or anything is written."""

import json

import numpy as np
import pytest
from PIL import Image

import maskrcnn
from maskrcnn.cli import main
from maskrcnn.config import PRESETS, load_config
from maskrcnn.engine.frozen_parts import untrained_frozen_refusal


def _dataset(folder):
    images = folder / "images"
    images.mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(images / "1.png")
    path = folder / "train.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.png", "width": 32, "height": 32}],
        "categories": [{"id": 1, "name": "box"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 16, 16], "area": 256,
                         "iscrowd": 0, "segmentation": [[4, 4, 20, 4, 20, 20, 4, 20]]}]}))
    return path, images


def test_train_without_init_on_a_frozen_preset_is_refused_with_the_fix(tmp_path, capsys):
    path, images = _dataset(tmp_path / "d")
    run = tmp_path / "run"
    assert main(["train", "--config", "r18_fpn", "--train-json", str(path), "--train-images", str(images),
                 "--output", str(run), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("maskrcnn train: error: --config r18_fpn starts from random weights (no --init, "
                          "model.init_weights is empty)"), err
    assert "model.freeze_at=2 keeps the backbone's stem, res2 at their random initialisation" in err
    assert "model.norm frozen_bn fixes batch norm at mean 0, variance 1" in err
    assert "--init resnet18 " in err  # the preset's own backbone, published by torchvision
    assert err.rstrip().endswith("train from scratch with --set model.norm=bn model.freeze_at=0"), err
    assert err.count("\n") == 1 and not run.exists()  # one line, before anything is written


def test_python_train_raises_the_same_refusal(tmp_path):
    path, images = _dataset(tmp_path / "d")
    # its keywords, not the command's options (was "... with --init resnet50 ... --set model.freeze_at=0")
    with pytest.raises(ValueError, match=r"--config r50_fpn_v2 starts from random weights \(no init=, "
                                         r"model.init_weights is empty\) .* with init='resnet50' .* "
                                         r"train from scratch with set=\{'model.freeze_at': 0\}$"):
        maskrcnn.train(train_json=path, train_images=images, output=tmp_path / "run", config="r50_fpn_v2",
                       device="cpu")
    assert not (tmp_path / "run").exists()


def test_which_configs_are_refused():
    refused = {name for name, make in PRESETS.items() if untrained_frozen_refusal(make())}
    # the demo presets train from scratch (bn, nothing frozen); finetune and cityscapes start from COCO
    assert refused == set(PRESETS) - {"demo", "demo_keypoints", "finetune", "cityscapes_r50_fpn"}
    assert untrained_frozen_refusal(load_config("r50_fpn", {"model.init_weights": "resnet50"})) == ""
    assert untrained_frozen_refusal(load_config("r50_fpn", {"model.norm": "bn", "model.freeze_at": 0})) == ""
    # a frozen norm elsewhere than the backbone is named with its key; a backbone nobody publishes gets no
    # other backbone's weights (model.backbone follows them: was "--init resnet50", an R-50 trained)
    line = untrained_frozen_refusal(load_config("demo", {"model.fpn_norm": "frozen_bn",
                                                         "model.backbone": "resnext101_32x4d"}))
    assert line.startswith("the config starts from random weights") and "model.fpn_norm frozen_bn" in line
    assert "No ImageNet resnext101_32x4d is published: start from a checkpoint of yours with --init FILE" \
        in line and "resnet50" not in line and line.endswith("--set model.fpn_norm=bn")
    # the R-50's other sources are for an R-50 only
    assert "R-50.pkl" not in untrained_frozen_refusal(load_config("r18_fpn"))
    assert "R-50.pkl" in untrained_frozen_refusal(load_config("r50_fpn"))


def test_no_normalisation_over_random_weights_is_refused_as_frozen_bn_is():
    # model.norm=none is frozen_bn over random weights plus a conv bias: measured loss 4.8e10, accepted
    line = untrained_frozen_refusal(load_config("r50_fpn", {"model.norm": "none", "model.freeze_at": 0}))
    assert "(no --init, model.init_weights is empty) but normalises nothing, which only pretrained weights " \
        "train through: model.norm none normalises nothing" in line and line.endswith("--set model.norm=bn")
    both = untrained_frozen_refusal(load_config("r50_fpn", {"model.norm": "none"}))  # freeze_at 2 too
    assert "but freezes parts" in both and both.endswith("--set model.norm=bn model.freeze_at=0")
    assert untrained_frozen_refusal(load_config("r50_fpn", {"model.norm": "none", "model.freeze_at": 0,
                                                            "model.init_weights": "resnet50"})) == ""
    # the heads' none (their default) is not the backbone's: the demo preset trains
    assert untrained_frozen_refusal(load_config("demo", {"model.roi_heads.mask_head_norm": "none"})) == ""


def test_the_way_out_is_spelt_for_who_asks():
    cfg = load_config("r50_fpn")
    demo = untrained_frozen_refusal(cfg, caller="maskrcnn demo")
    assert "--init" not in demo and "--set model.init_weights=resnet50 " in demo  # demo has no --init
    built = untrained_frozen_refusal(cfg, caller="build_training")
    assert "model.init_weights='resnet50' in the Config" in built and "--" not in built
    assert built.endswith("{'model.norm': 'bn', 'model.freeze_at': 0} in the Config, or pass "
                          "weights_given=True when you load trained weights into trainer.model yourself")


def test_the_default_config_is_named_when_none_was_given(tmp_path, capsys):
    path, images = _dataset(tmp_path / "d")
    assert main(["train", "--train-json", str(path), "--train-images", str(images),
                 "--output", str(tmp_path / "run"), "--device", "cpu"]) == 1
    # was "the config starts from random weights", where freeze_at=2 and frozen_bn came from unsaid
    assert "error: the default config r50_fpn (no --config given) starts from random weights" in \
        capsys.readouterr().err


def test_demo_is_told_its_own_option(tmp_path, capsys):
    out = tmp_path / "demo"
    data = out / "data"
    for split in ("train", "val"):  # the demo's data already there: not generated
        path, images = _dataset(tmp_path / split)
        (data / split).mkdir(parents=True)
        (images / "1.png").rename(data / split / "1.png")
        path.rename(data / f"{split}.json")
    assert main(["demo", "--output", str(out), "--set", "model.norm=frozen_bn", "--iters", "1",
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "the demo's config starts from random weights (model.init_weights is empty)" in err, err
    assert "--init" not in err and "--set model.init_weights=resnet18 " in err


def test_build_training_takes_weights_the_caller_loads(tmp_path):
    from maskrcnn.engine.training import build_training
    from tests.tiny_model import TINY

    path, images = _dataset(tmp_path / "d")
    cfg = load_config("demo", {**TINY, "model.freeze_at": 2})
    with pytest.raises(ValueError, match="or pass weights_given=True"):
        build_training(cfg, train_json=path, train_images=images, output=tmp_path / "a", device="cpu")
    trainer, _ = build_training(cfg, train_json=path, train_images=images, output=tmp_path / "b",
                                device="cpu", weights_given=True)
    assert not any(p.requires_grad for p in trainer.model.backbone.stem.parameters())
