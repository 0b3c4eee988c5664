"""benchmarks/ablations.py freezes the whole ResNet (model.freeze_at=5) and loads a demo's backbone into
it after build_training: the refusal of frozen parts over random weights stopped every variant before
its first iteration. It says so with build_training(weights_given=True)."""

import json

import numpy as np
from PIL import Image

from maskrcnn.config import load_config
from maskrcnn.modeling.mask_rcnn import build_model


def _split(folder, name):
    images = folder / name
    images.mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / "1.png")
    path = folder / f"{name}.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.png", "width": 64, "height": 64}],
        "categories": [{"id": 1, "name": "box"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 24, 24], "area": 576,
                         "iscrowd": 0, "segmentation": [[8, 8, 32, 8, 32, 32, 8, 32]]}]}))
    return str(path), str(images)


def test_an_ablation_variant_trains_over_the_backbone_it_loads(tmp_path, benchmark_script):
    ablations = benchmark_script("ablations")
    train_json, train_images = _split(tmp_path / "data", "train")
    val_json, val_images = _split(tmp_path / "data", "val")
    data = {"train_json": train_json, "train_images": train_images, "val_json": val_json,
            "val_images": val_images}
    backbone = build_model(load_config("demo")).backbone.state_dict()  # a ResNet-18 as the demo's
    overrides = {**ablations.BASE, **ablations._schedule(1), "seed": 0, "solver.batch_size": 1,
                 "input.min_size": (64,), "input.max_size": 64, "input.min_size_test": 64,
                 "input.max_size_test": 64}
    result = ablations._train(overrides, data, tmp_path / "align", backbone)  # was: ValueError, refused
    assert set(result) == {"segm", "bbox", "seconds"} and (tmp_path / "align" / "model_final.pth").is_file()
