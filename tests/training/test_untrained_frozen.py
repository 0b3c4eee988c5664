"""Frozen layers or frozen batch norm over random weights: a paper preset (r50_fpn: freeze_at 2, frozen_bn)
trained with no --init kept its random stem and res2 for the whole run and normalised nothing, its losses
in the hundred thousands, and ended "done". Refused before anything is read or written."""

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
    with pytest.raises(ValueError, match=r"--config r50_fpn_v2 starts from random weights .* "
                                         r"train from scratch with --set model.freeze_at=0$"):
        maskrcnn.train(train_json=path, train_images=images, output=tmp_path / "run", config="r50_fpn_v2",
                       device="cpu")
    assert not (tmp_path / "run").exists()


def test_which_configs_are_refused():
    refused = {name for name, make in PRESETS.items() if untrained_frozen_refusal(make())}
    # the demo presets train from scratch (bn, nothing frozen); finetune and cityscapes start from COCO
    assert refused == set(PRESETS) - {"demo", "demo_keypoints", "finetune", "cityscapes_r50_fpn"}
    assert untrained_frozen_refusal(load_config("r50_fpn", {"model.init_weights": "resnet50"})) == ""
    assert untrained_frozen_refusal(load_config("r50_fpn", {"model.norm": "bn", "model.freeze_at": 0})) == ""
    # a frozen norm elsewhere than the backbone is named with its key; a backbone nobody publishes: resnet50
    line = untrained_frozen_refusal(load_config("demo", {"model.fpn_norm": "frozen_bn",
                                                         "model.backbone": "resnext101_32x4d"}))
    assert line.startswith("the config starts from random weights") and "model.fpn_norm frozen_bn" in line
    assert "--init resnet50 " in line and line.endswith("--set model.fpn_norm=bn")
