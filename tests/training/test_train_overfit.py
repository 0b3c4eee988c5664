"""End to end through ``maskrcnn train``'s builder: a tiny model overfits a handful of synthetic images.

Also checks what a run folder holds (config.yaml, checkpoints with class names and the category map,
metrics.jsonl, curves) and that the loss went down.
"""

import pytest
import torch
import yaml
from tiny_model import small_training  # tests/ is on the path

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.config import load_config
from maskrcnn.data.shapes import generate_shapes_dataset
from maskrcnn.engine.logger import read_metrics
from maskrcnn.engine.training import build_training

SIZE = 128
TINY = {
    **small_training(SIZE),
    "model.roi_heads.mask_head_dim": 32,
    "solver.warmup_iters": 20,
}


@pytest.mark.slow
def test_overfit_two_images(tmp_path):
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    paths = generate_shapes_dataset(
        tmp_path / "data", num_train=2, num_val=0, image_size=(SIZE, SIZE), max_objects=3, seed=0
    )
    iters = 200
    cfg = load_config(
        "demo",
        {**TINY, "solver.iters": iters, "solver.steps": (170,), "solver.checkpoint_period": 100},
    )
    trainer, cfg = build_training(
        cfg,
        train_json=paths["train_json"],
        train_images=paths["train_images"],
        val_json=paths["train_json"],  # evaluate on the training images: memorisation is the point
        val_images=paths["train_images"],
        output=tmp_path / "run",
        trainer_kwargs={"tensorboard": False},
    )
    result = trainer.train()
    segm, bbox = result["eval"]["segm"], result["eval"]["bbox"]
    print(f"overfit: segm AP {segm['AP']:.1f} (AP50 {segm['AP50']:.1f}, AP75 {segm['AP75']:.1f}), "
          f"bbox AP {bbox['AP']:.1f}")
    # Every object found and segmented at IoU >= 0.75, and mask AP >= 90 over all thresholds. Measured
    # 100.0 (box and mask AP, AP50, AP75) at 200 iterations on dataset seeds 0-3, model seeds 0-2, 1 or 2
    # threads (mask AP 96.7 once: model seed 1 on one thread), with the demo preset's aligned mask
    # conventions (at 150 iterations mask AP fell to 90.8 on two of these: too close); torchvision's
    # (pooler aligned=False, its paste) reached only 87-92 even at 600 iterations: its half-pixel shifts
    # cap the IoU of a perfectly learnt 28x28 mask of these small objects at 0.89-0.97.
    assert bbox["AP"] >= 90, (segm, bbox)
    assert segm["AP50"] == 100 and segm["AP75"] == 100, (segm, bbox)
    assert segm["AP"] >= 90, (segm, bbox)

    run = tmp_path / "run"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["num_classes"] == 6 and saved["data"]["class_names"][0] == "__background__"
    final = load_checkpoint(run / "model_final.pth")
    assert final["class_names"] == ["__background__", "circle", "square", "triangle", "star", "cross"]
    assert final["label_to_category_id"] == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}
    assert final["iteration"] == iters
    assert (run / "last_checkpoint").read_text().strip() == f"model_{iters:07d}.pth"
    assert (run / "model_0000100.pth").is_file() and (run / "curves.png").is_file()
    records = read_metrics(run / "metrics.jsonl")
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == iters // 10 and losses[-1] < 0.5 * losses[0]
    assert any("segm/AP" in r for r in records)
