"""Human pose end to end: a tiny keypoint model learns the synthetic pose set (data/poses.py) through
``maskrcnn train``'s builder, is evaluated with OKS keypoint AP during training, and its checkpoint
predicts keypoints (COCO results format) and draws skeletons through ``maskrcnn predict``."""

import json

import pytest
import torch
from tiny_model import small_training  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.config import load_config
from maskrcnn.data.poses import POSE_KEYPOINTS, POSE_SKELETON, generate_pose_dataset
from maskrcnn.engine.logger import read_metrics
from maskrcnn.engine.training import build_training

SIZE = 128
ITERS = 70
# Keypoint AP on the 4 training images after 70 iterations, measured for dataset / model seeds 0-3:
# 93.3, 95.0, 56.9, 95.0 (box AP 75.4, 90.4, 58.2, 72.5); the test runs seed 0. About 25 s of CPU on
# one thread, setup and evaluation included.
KP_AP_MIN = 50.0
TINY = {
    **small_training(SIZE),
    "model.roi_heads.keypoint_head_dim": 32,
    "solver.warmup_iters": 10,
    "solver.iters": ITERS,
    "solver.steps": (int(ITERS * 0.8),),
    "solver.checkpoint_period": 10000,
}


@pytest.mark.slow
def test_keypoint_model_learns_poses_and_predicts_them(tmp_path):
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    paths = generate_pose_dataset(tmp_path / "data", num_train=4, num_val=0, image_size=(SIZE, SIZE),
                                  max_figures=2, seed=0)
    trainer, cfg = build_training(
        load_config("demo_keypoints", TINY),
        train_json=paths["train_json"],
        train_images=paths["train_images"],
        val_json=paths["train_json"],  # evaluate on the training figures: learning them is the point
        val_images=paths["train_images"],
        output=tmp_path / "run",
        trainer_kwargs={"tensorboard": False},
    )
    assert cfg.data.keypoint_names == POSE_KEYPOINTS and cfg.model.roi_heads.num_keypoints == 14
    assert [tuple(p) for p in cfg.data.keypoint_skeleton] == list(POSE_SKELETON)
    result = trainer.train()
    kp, bbox = result["eval"]["keypoints"], result["eval"]["bbox"]
    print(f"keypoint AP {kp['AP']:.1f} (AP50 {kp['AP50']:.1f}), box AP {bbox['AP']:.1f}")
    assert kp["AP"] >= KP_AP_MIN, (kp, bbox)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert any("keypoints/AP" in r for r in records)
    losses = [r["loss_keypoint"] for r in records if "loss_keypoint" in r]
    assert losses[-1] < 0.6 * losses[0]

    image = sorted((tmp_path / "data" / "train").glob("*.png"))[0]
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(tmp_path / "run" / "model_final.pth"), str(image),
                 "--output", str(out), "--score-thresh", "0.5"]) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and all(len(p["keypoints"]) == 3 * 14 for p in predictions)
    assert (out / "overlays" / f"{image.stem}.png").is_file()
