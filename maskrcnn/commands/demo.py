"""``maskrcnn demo``: generate a synthetic dataset, train a small model on it, evaluate, draw.

    maskrcnn demo [--task shapes|keypoints] [--output DIR] [--iters N] [--device D]

``--task shapes`` (the default): instance segmentation of flat shapes (data/shapes.py, the "demo"
preset); ``--task keypoints``: human pose on articulated figures with 14 named keypoints
(data/poses.py, the "demo_keypoints" preset). Writes DIR/data (the dataset, COCO format), DIR/run
(checkpoints, metrics.jsonl, curves.png, config.yaml), DIR/predictions/*.png (overlays of validation
predictions, with skeletons for keypoints), DIR/metrics.json (the AP tables: bbox and segm, or bbox
and keypoints) and prints the AP. Sized to finish in minutes on a laptop CPU; an existing run in DIR
is resumed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

from maskrcnn.io_utils import atomic_write_json

HELP = "generate a synthetic dataset, train, evaluate and draw predictions (CPU, minutes)"

NUM_TRAIN = 600
NUM_VAL = 50
IMAGE_SIZE = ((128, 160), (128, 160))
NUM_OVERLAYS = 8
# task -> (preset, default output, the AP types printed at the end)
TASKS = {
    "shapes": ("demo", "runs/demo", ("segm", "bbox")),
    "keypoints": ("demo_keypoints", "runs/demo_keypoints", ("keypoints", "bbox")),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=sorted(TASKS), default="shapes",
                   help="shapes: instance segmentation (default); keypoints: human pose")
    p.add_argument("--output", default=None,
                   help="folder for data, run and overlays (default runs/demo or runs/demo_keypoints)")
    p.add_argument("--iters", type=int, default=None, help="training iterations (default: the preset's)")
    p.add_argument("--device", default="auto",
                   help="auto | cpu | cuda | cuda:N; mps, xpu accepted, untested")
    p.add_argument(
        "--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def write_overlays(trainer, cfg, val_json, val_images, out_dir: Path, n: int = NUM_OVERLAYS) -> list:
    """Predictions on the first ``n`` validation images, drawn over them (the trained model is run as
    built, not optimised in place, and left in training mode)."""
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.overlay_defaults import OVERLAY_MIN_SIZE, OVERLAY_SCORE_THRESH
    from maskrcnn.predictor import Predictor
    from maskrcnn.visualize import draw_instances, skeleton_for

    # read as the training's validation read it: a keypoint model's file draws no note that its keypoints
    # go unread
    val = CocoDataset(json_path=val_json, image_dir=val_images, keypoints=cfg.model.roi_heads.keypoint_on,
                      crowd_as_objects=cfg.data.crowd_as_objects)
    predictor = Predictor(trainer.model, cfg, device=trainer.device, optimise=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    paths = [val.image_info(i)["path"] for i in range(min(n, len(val)))]
    try:
        for window in predictor.predict_files(paths):
            for i, image, det in window:
                path = out_dir / f"val_{i:03d}.png"
                draw_instances(image, det, predictor.class_names, score_thresh=OVERLAY_SCORE_THRESH,
                               min_size=OVERLAY_MIN_SIZE,
                               skeleton=skeleton_for(cfg)).save(path)
                written.append(path)
    finally:
        trainer.model.train()
    return written


def _generate(task: str, data_dir: Path, seed: int) -> dict:
    seed %= 2**64  # a config's seed may be negative (torch.manual_seed takes it); numpy's SeedSequence not
    if task == "keypoints":
        from maskrcnn.data.poses import generate_pose_dataset

        return generate_pose_dataset(data_dir, num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=IMAGE_SIZE,
                                     seed=seed)
    from maskrcnn.data.shapes import generate_shapes_dataset

    return generate_shapes_dataset(data_dir, num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=IMAGE_SIZE,
                                   seed=seed)


def demo_checkpoint(given, work: Path) -> Optional[str]:
    """``given`` if set, else the final checkpoint of a demo trained into ``work/demo`` (the source
    model of the benchmarks that start from the demo's weights); None if that training failed."""
    if given:
        return str(given)
    from maskrcnn.cli import main as cli

    if cli(["demo", "--output", str(Path(work) / "demo")]) != 0:
        return None
    return str(Path(work) / "demo" / "run" / "model_final.pth")


def run(args) -> int:
    from maskrcnn.config import load_config, parse_set_args
    from maskrcnn.engine.device import resolve_device
    from maskrcnn.engine.training import build_training
    from maskrcnn.io_utils import check_output_dir

    t0 = time.perf_counter()
    preset, default_out, shown = TASKS[args.task]
    out = check_output_dir(args.output or default_out)
    overrides = parse_set_args(args.set)
    if args.iters is not None:
        overrides["solver.iters"] = args.iters
    cfg = load_config(preset, overrides)
    if args.iters is not None:  # keep the schedule's shape for a shorter or longer run
        base = load_config(preset)
        ratio = args.iters / base.solver.iters
        cfg.solver.steps = tuple(max(1, int(s * ratio)) for s in base.solver.steps)
        cfg.solver.warmup_iters = min(base.solver.warmup_iters, max(1, args.iters // 10))
        cfg.solver.checkpoint_period = max(1, int(base.solver.checkpoint_period * ratio))
    device = resolve_device(args.device, what="--device")

    data_dir = out / "data"
    if (data_dir / "train.json").is_file() and (data_dir / "val.json").is_file():
        paths = {
            "train_json": str(data_dir / "train.json"),
            "train_images": str(data_dir / "train"),
            "val_json": str(data_dir / "val.json"),
            "val_images": str(data_dir / "val"),
        }
    else:
        print(f"generating the {args.task} dataset in {data_dir} ...", flush=True)
        paths = _generate(args.task, data_dir, cfg.seed)
    run_dir = out / "run"
    resume = (run_dir / "last_checkpoint").is_file()
    trainer, cfg = build_training(
        cfg,
        train_json=paths["train_json"],
        train_images=paths["train_images"],
        val_json=paths["val_json"],
        val_images=paths["val_images"],
        output=run_dir,
        device=device,
        resume=resume,
        caller="maskrcnn demo",  # its refusals name --set, not train's --init
    )
    print(f"training the {preset} model on {device} for {cfg.solver.iters} iterations", flush=True)
    result = trainer.train()
    if result["interrupted"]:
        print(f"stopped at iteration {result['iteration']}; run the same command again to continue")
        return 0
    results = result["eval"] or {}
    overlays = write_overlays(trainer, cfg, paths["val_json"], paths["val_images"], out / "predictions")
    from maskrcnn.io_utils import json_safe  # NaN (no object in a size range) -> null: valid JSON

    summary = {k: {m: v for m, v in r.items() if m != "per_category"} for k, r in results.items()}
    atomic_write_json(out / "metrics.json", json_safe(summary), indent=2)
    names = {"segm": "mask", "bbox": "box", "keypoints": "keypoint"}
    print(", ".join(f"{names[k]} AP {results.get(k, {}).get('AP', float('nan')):.1f}" for k in shown)
          + f" on {NUM_VAL} validation images")
    print(
        f"overlays: {overlays[0].parent if overlays else '-'}; curves: {run_dir / 'curves.png'}; "
        f"weights: {run_dir / 'model_final.pth'}"
    )
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0
