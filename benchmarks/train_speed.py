"""Training speed: seconds per iteration and peak memory, ours vs torchvision, side by side.

    python benchmarks/train_speed.py [--iters 5] [--warmup 2] [--rounds 1] [--device cpu] [--tv-python PATH]

Setting: Mask R-CNN with R18-FPN and R50-FPN, random initial weights (the speed does not depend on
them), 4 classes, a batch of 2 synthetic images whose shorter side is 320 (320 x 427, 3 objects each
with masks), SGD step included. Each (implementation, backbone) runs in its own subprocess so that
the peak memory (max RSS on CPU, max allocated on CUDA) is its own. torchvision runs under the Python
given by ``--tv-python`` (an environment with torchvision; this project never imports it), and is
skipped without one. The table reports the median s/iter over ``--iters`` timed iterations and the
ratio torchvision / ours (> 1: we are faster). It also reports the process CPU time per iteration,
which on a busy machine with ``--threads 1`` tracks the work done better than the wall clock.

Each side trains as its users get it: ours placed by ``engine.training.place_for_training`` and with
``engine.trainer.build_optimizer`` (what ``maskrcnn train`` does: channels_last weights on the CPU; SGD,
momentum 0.9, weight decay 1e-4, the fused update), torchvision with the SGD
of its reference scripts (the same hyperparameters, PyTorch's default update). ``--rounds N`` repeats
the pair N times, alternating which side goes first, and reports every round's ratio and their
median: a virtual machine's speed drifts over minutes, so only runs side by side compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MIN_SIZE, MAX_SIZE = 320, 533
IMAGE_HW = (320, 427)


def synthetic_batch(torch, device):
    """2 images (3, 320, 427) in [0, 1] and targets with 3 boxes / masks / labels each (seeded)."""
    g = torch.Generator().manual_seed(0)
    images, targets = [], []
    h, w = IMAGE_HW
    for _ in range(2):
        images.append(torch.rand(3, h, w, generator=g).to(device))
        xy = torch.rand(3, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 30 + torch.rand(3, 2, generator=g) * 100
        boxes = torch.cat([xy, xy + wh], 1).round()
        masks = torch.zeros(3, h, w, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        targets.append(
            {
                "boxes": boxes.to(device),
                "labels": torch.tensor([1, 2, 3], device=device),
                "masks": masks.to(device),
            }
        )
    return images, targets


def build_ours(backbone, device):
    from maskrcnn.config import load_config
    from maskrcnn.modeling.mask_rcnn import build_model

    cfg = load_config(f"{backbone}_fpn".replace("resnet", "r"), {"model.num_classes": 4})
    return build_model(cfg).to(device)


def build_torchvision(backbone, device):
    import torchvision
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    if backbone == "resnet50":
        model = torchvision.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=4, min_size=MIN_SIZE, max_size=MAX_SIZE
        )
    else:
        body = resnet_fpn_backbone(backbone_name=backbone, weights=None, trainable_layers=3)
        model = MaskRCNN(body, num_classes=4, min_size=MIN_SIZE, max_size=MAX_SIZE)
    return model.to(device)


def worker(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = (build_ours if args.impl == "ours" else build_torchvision)(args.backbone, device)
    model.train()
    if args.impl == "ours":
        from maskrcnn.config import load_config
        from maskrcnn.engine.trainer import build_optimizer
        from maskrcnn.engine.training import place_for_training

        model = place_for_training(model, device)
        solver = {"solver.lr": 0.001, "solver.momentum": 0.9, "solver.weight_decay": 1e-4}
        opt = build_optimizer(model, load_config("r50_fpn", solver))
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=1e-4)
    images, targets = synthetic_batch(torch, device)
    times, cpu_times = [], []
    for i in range(args.warmup + args.iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "s_per_iter": statistics.median(times),
                "cpu_s_per_iter": statistics.median(cpu_times),
                "peak_mb": peak_mb,
                "loss": float(loss),
            }
        )
    )


def run_one(python, impl, backbone, args):
    cmd = [
        python,
        os.path.abspath(__file__),
        "--worker",
        "--impl",
        impl,
        "--backbone",
        backbone,
        "--iters",
        str(args.iters),
        "--warmup",
        str(args.warmup),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="repeat ours/torchvision pairs, alternated")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--backbones", default="resnet18,resnet50")
    p.add_argument("--tv-python", default=os.environ.get("TV_PYTHON"), help="a Python with torchvision")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    p.add_argument("--backbone", default="resnet18", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    backbones = args.backbones.split(",")
    results = {(b, impl): [] for b in backbones for impl in ("ours", "torchvision")}
    for r in range(args.rounds):
        for backbone in backbones:
            order = ("ours", "torchvision") if r % 2 == 0 else ("torchvision", "ours")
            for impl in order:
                if impl == "torchvision" and not args.tv_python:
                    results[backbone, impl].append({"error": "skipped"})
                    continue
                python = sys.executable if impl == "ours" else args.tv_python
                results[backbone, impl].append(run_one(python, impl, backbone, args))
    print(
        f"training step, batch 2 at {IMAGE_HW[0]}x{IMAGE_HW[1]}, device {args.device}, "
        f"{args.iters} timed iterations (median), {args.rounds} round(s) alternated"
    )
    print(
        f"{'model':<14}{'ours s/it':>10}{'cpu s/it':>9}{'ours MB':>9}"
        f"{'tv s/it':>10}{'cpu s/it':>9}{'tv MB':>9}{'tv/ours':>9}  rounds' tv/ours"
    )
    for backbone in backbones:
        ours_runs, tv_runs = results[backbone, "ours"], results[backbone, "torchvision"]
        ratios = [t["s_per_iter"] / o["s_per_iter"] for o, t in zip(ours_runs, tv_runs)
                  if "s_per_iter" in o and "s_per_iter" in t]

        def cell(runs, key, fmt):
            values = [r[key] for r in runs if key in r]
            return format(statistics.median(values), fmt) if values else "-"

        ratio = f"{statistics.median(ratios):.2f}" if ratios else "-"
        print(
            f"{backbone + '-FPN':<14}{cell(ours_runs, 's_per_iter', '.3f'):>10}"
            f"{cell(ours_runs, 'cpu_s_per_iter', '.3f'):>9}{cell(ours_runs, 'peak_mb', '.0f'):>9}"
            f"{cell(tv_runs, 's_per_iter', '.3f'):>10}{cell(tv_runs, 'cpu_s_per_iter', '.3f'):>9}"
            f"{cell(tv_runs, 'peak_mb', '.0f'):>9}{ratio:>9}  {' '.join(f'{x:.2f}' for x in ratios)}"
        )
        for name, runs in (("ours", ours_runs), ("torchvision", tv_runs)):
            for run in runs:
                if "error" in run and run["error"] != "skipped":
                    print(f"  {backbone} {name}: {run['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
