"""Low precision on a trained model at a realistic input size: the demo's model fine-tuned to larger
images, then ``benchmarks/low_precision.py`` on it (speed and COCO AP change of each mode).

    python benchmarks/low_precision_scaled.py [--source runs/demo/run/model_final.pth]
        [--work runs/low_precision_scaled] [--size 512] [--iters 300] [--modes fp32,fp32-opt,bf16-opt,int8]
        [--rounds 3] [--threads 2]

Why: the demo trains on ~145x150 images, where the per-image fixed costs (RoI heads, NMS, pasting)
outweigh the convolutions that INT8 speeds up, so its INT8 figures say little about photos. Here the
same kind of data is drawn at ``--size`` (shorter side about SIZE, longer about 1.25x), the demo's model
(``--source``; without it the demo is trained first, ~5 minutes on 2 cores) is fine-tuned on it for
``--iters`` iterations at that scale, and every mode is measured on the fine-tuned model with the
images at that size: AP over all validation images through the eval path, speed alternated image by
image, INT8 calibrated on 16 training images (never the evaluated ones).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

# the demo draws its shapes with at least 80 pixels at a ~144-pixel shorter side; the same share here
_DEMO_SIDE, _DEMO_MIN_AREA = 144, 80


def _data(work: Path, size: int, num_train: int, num_val: int) -> dict:
    from maskrcnn.data.shapes import generate_shapes_dataset

    image_size = ((round(0.94 * size), round(1.06 * size)), (round(1.17 * size), round(1.33 * size)))
    min_area = int(_DEMO_MIN_AREA * (size / _DEMO_SIDE) ** 2)
    return generate_shapes_dataset(work / f"data_{size}", num_train=num_train, num_val=num_val,
                                   image_size=image_size, seed=1, min_area=min_area)


def _fine_tune(source: str, data: dict, size: int, iters: int, out: Path) -> Path:
    from maskrcnn.config import load_config
    from maskrcnn.engine.training import build_training

    longest = round(1.375 * size)
    overrides = {
        "model.init_weights": source,
        "input.min_size": (size - 32, size, size + 32), "input.max_size": longest,
        "input.min_size_test": size, "input.max_size_test": longest,
        "solver.iters": iters, "solver.batch_size": 2, "solver.lr": 0.005,
        "solver.warmup_iters": max(1, iters // 8), "solver.steps": (int(iters * 0.75), int(iters * 0.92)),
        "solver.checkpoint_period": iters,
    }  # fmt: skip
    log = io.StringIO()
    trainer, _ = build_training(load_config("demo", overrides), train_json=data["train_json"],
                                train_images=data["train_images"], output=out, device="cpu",
                                log_stream=log, trainer_kwargs={"plot": False})
    trainer.train()
    (out / "stdout.log").write_text(log.getvalue())
    return out / "model_final.pth"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", help="the model to fine-tune (default: train the demo into WORK/demo)")
    p.add_argument("--work", default="runs/low_precision_scaled", help="folder for data, run and results")
    p.add_argument("--size", type=int, default=512, help="shorter image side of the data and the test size")
    p.add_argument("--iters", type=int, default=300, help="fine-tuning iterations (batch 2)")
    p.add_argument("--num-train", type=int, default=300)
    p.add_argument("--num-val", type=int, default=50)
    p.add_argument("--modes", default="fp32,fp32-opt,bf16-opt,int8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.size < 64 or args.iters < 1:
        p.error("--size must be >= 64 and --iters >= 1")
    if args.source and not Path(args.source).is_file():
        p.error(f"--source {args.source}: no such checkpoint file")

    import low_precision
    import torch

    from maskrcnn.commands.demo import demo_checkpoint

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    source = demo_checkpoint(args.source, work)
    if source is None:
        return 1
    data = _data(work, args.size, args.num_train, args.num_val)
    run = work / f"finetuned_{args.size}"
    shutil.rmtree(run, ignore_errors=True)  # a fresh run each time
    try:
        weights = _fine_tune(source, data, args.size, args.iters, run)
    except (OSError, ValueError) as e:  # an unreadable or incompatible source checkpoint, said in one line
        print(f"low_precision_scaled.py: error: {e}", file=sys.stderr)
        return 1
    return low_precision.main([
        "--weights", str(weights), "--json", data["val_json"], "--images", data["val_images"],
        "--calib-images", data["train_images"], "--modes", args.modes, "--rounds", str(args.rounds),
        "--threads", str(args.threads), "--label", f"demo fine-tuned at {args.size} px ({args.iters} iters)",
        "--output-json", str(work / f"low_precision_{args.size}.json"),
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
