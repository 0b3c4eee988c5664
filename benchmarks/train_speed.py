"""Training speed: seconds per iteration and peak memory, ours vs torchvision, side by side.

    python benchmarks/train_speed.py [--iters 5] [--warmup 2] [--rounds 1] [--device cpu] [--tv-python PATH]

Setting: Mask R-CNN with R18-FPN and R50-FPN, both libraries with the fine-tuning recipe (frozen batch
norm, stem and first stage frozen), 4 classes, a batch of 2 synthetic images whose shorter side is 320
(320 x 427, 3 objects each with masks), SGD step included. Each (implementation, backbone) runs in its
own subprocess so that the peak memory (max RSS on CPU, max allocated on CUDA) is its own. torchvision
runs under the Python given by ``--tv-python`` (an environment with torchvision; this project never
imports it), and is skipped without one. The table reports the median s/iter over ``--iters`` timed
iterations and the ratio torchvision / ours (> 1: we are faster). It also reports the process CPU time
per iteration, which on a busy machine with ``--threads 1`` tracks the work done better than the wall
clock.

Initial weights: random, and the same for both. The speed does depend on them: the RPN's proposals
decide how many RoIs the box head and how many positive RoIs the mask head train on (~15 ms of a step
per mask RoI at this size), so two independently initialised models do different amounts of work. With
``--tv-python`` torchvision's model is built once (seed 0), its frozen norms take the statistics of
the batch (``normalise_frozen_norms``: sane activations, as from a pretrained backbone, so that the
recipe's 512 RoIs an image are sampled) and its weights are converted into ours
(``maskrcnn.interop.torchvision``);
the first-iteration losses printed under the table show both start from the same point, and the
mask-head RoIs a step how much mask work each does. ``--amp``: both under bfloat16 autocast (a
different recipe from the float32 default; worth it on CPUs with native bfloat16).

Ours sets glibc's allocator to reuse freed memory, as ``maskrcnn train`` does (``maskrcnn.cpu_memory``;
``MASKRCNN_MALLOC=default`` in the environment: not); ``--tv-reuse-memory`` starts torchvision's runs
with the same setting (a separate run of this script: the table's columns are the two libraries).

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
import tempfile
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
    """torchvision's Mask R-CNN for ``backbone`` with its fine-tuning recipe: frozen batch norm, the
    stem and layer1 frozen (``trainable_layers=3``), as ``maskrcnn_resnet50_fpn`` builds it from
    pretrained weights and as our presets train (``freeze_at=2``). Built from the parts because
    ``maskrcnn_resnet50_fpn(weights=None)`` would switch to trainable BatchNorm and train every layer,
    a heavier recipe than ours."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    body = resnet_fpn_backbone(backbone_name=backbone, weights=None, trainable_layers=3)
    return MaskRCNN(body, num_classes=4, min_size=MIN_SIZE, max_size=MAX_SIZE).to(device)


def normalise_frozen_norms(torch, model, images):
    """Set every frozen batch norm's statistics to those of its input on ``images`` (one forward pass,
    layer after layer), as a pretrained backbone's would be. With the identity statistics of a fresh
    frozen norm, activations grow through the ResNet (an R50's first loss is ~300), the RPN's scores
    saturate and few proposals survive, so the box head would train on a handful of RoIs instead of the
    recipe's 512 an image: not the work a real fine-tuning step does."""

    def set_statistics(module, inputs):
        x = inputs[0].detach()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)))

    frozen = [m for m in model.modules() if type(m).__name__ == "FrozenBatchNorm2d"]
    hooks = [m.register_forward_pre_hook(set_statistics) for m in frozen]
    model.eval()
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()


def load_shared_weights(model, path):
    """Our model gets torchvision's initial weights (``maskrcnn.interop.torchvision``): with the same
    weights both propose the same boxes, so both heads train on the same number of positive RoIs (the
    mask head's cost grows with it: ~15 ms per RoI here)."""
    import torch

    from maskrcnn.interop.torchvision import convert_torchvision

    converted = convert_torchvision(torch.load(path, weights_only=True), frozen_bn_eps=1e-5)
    model.load_state_dict(converted["state_dict"], strict=True)


def worker(args) -> None:
    import torch

    allocator = "glibc's defaults" if args.impl != "ours" else None
    if args.impl == "ours":  # as maskrcnn train does at start (MASKRCNN_MALLOC=default: not)
        from maskrcnn.cpu_memory import reuse_freed_memory

        allocator = reuse_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = (build_ours if args.impl == "ours" else build_torchvision)(args.backbone, device)
    if args.save_state:  # torchvision's initial weights, for our model to start from
        normalise_frozen_norms(torch, model, synthetic_batch(torch, device)[0])
        torch.save(model.state_dict(), args.save_state)
        return
    if args.state and args.impl == "ours":
        load_shared_weights(model, args.state)
    elif args.state:
        model.load_state_dict(torch.load(args.state, weights_only=True))
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
    mask_rois = []  # RoIs through the mask head each step: the work that depends on the weights
    model.roi_heads.mask_head.register_forward_hook(lambda m, inp, out: mask_rois.append(inp[0].shape[0]))
    times, cpu_times = [], []
    for i in range(args.warmup + args.iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            first_loss = float(loss)
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
                "first_loss": first_loss,
                "mask_rois": statistics.median(mask_rois) if mask_rois else 0,
                "loss": float(loss),
                "allocator": allocator,
            }
        )
    )


def run_one(python, impl, backbone, args, *extra):
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
        *(["--amp"] if args.amp else []),
        *extra,
    ]
    from maskrcnn.cpu_memory import REUSE_ENVIRONMENT

    env = {**os.environ, **REUSE_ENVIRONMENT} if impl == "torchvision" and args.tv_reuse_memory else None
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="repeat ours/torchvision pairs, alternated")
    p.add_argument("--amp", action="store_true",
                   help="both sides under bfloat16 autocast (mixed precision; native bfloat16 CPUs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--backbones", default="resnet18,resnet50")
    p.add_argument("--tv-python", default=os.environ.get("TV_PYTHON"), help="a Python with torchvision")
    p.add_argument("--json", help="also write the medians here (benchmarks/roofline.py reads them)")
    p.add_argument("--tv-reuse-memory", action="store_true",
                   help="start torchvision's runs with glibc set to reuse freed memory, as ours runs")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    p.add_argument("--backbone", default="resnet18", help=argparse.SUPPRESS)
    p.add_argument("--save-state", default="", help=argparse.SUPPRESS)
    p.add_argument("--state", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        p.error(f"--json {args.json}: its folder does not exist")
    if args.worker:
        worker(args)
        return 0
    backbones = args.backbones.split(",")
    results = {(b, impl): [] for b in backbones for impl in ("ours", "torchvision")}
    states = {}
    tmp = tempfile.TemporaryDirectory()
    if args.tv_python:  # both start from torchvision's initial weights (seed 0)
        for backbone in backbones:
            states[backbone] = os.path.join(tmp.name, f"{backbone}.pt")
            cmd = [args.tv_python, os.path.abspath(__file__), "--worker", "--impl", "torchvision",
                   "--backbone", backbone, "--save-state", states[backbone]]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"could not build torchvision's {backbone} model: {r.stderr.strip()[-500:]}")
    for r in range(args.rounds):
        for backbone in backbones:
            order = ("ours", "torchvision") if r % 2 == 0 else ("torchvision", "ours")
            for impl in order:
                if impl == "torchvision" and not args.tv_python:
                    results[backbone, impl].append({"error": "skipped"})
                    continue
                python = sys.executable if impl == "ours" else args.tv_python
                extra = ("--state", states[backbone]) if backbone in states else ()
                results[backbone, impl].append(run_one(python, impl, backbone, args, *extra))
    print(
        f"training step, batch 2 at {IMAGE_HW[0]}x{IMAGE_HW[1]}, device {args.device}, "
        f"{args.iters} timed iterations (median), {args.rounds} round(s) alternated"
        + (", bfloat16 autocast" if args.amp else ", float32")
        + ("; torchvision started with freed memory reused" if args.tv_reuse_memory else
           "; torchvision with glibc's allocator defaults")
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
        said = {run.get("allocator") for run in ours_runs if run.get("allocator")}
        if said:  # what maskrcnn.cpu_memory did in our runs (e.g. left alone under MASKRCNN_MALLOC=default)
            print(f"  {backbone}: ours' allocator: {', '.join(sorted(said))}")
        first = [cell(runs, "first_loss", ".3f") for runs in (ours_runs, tv_runs)]
        rois = [cell(runs, "mask_rois", ".0f") for runs in (ours_runs, tv_runs)]
        print(f"  {backbone}: first-iteration loss ours {first[0]}, torchvision {first[1]}; "
              f"mask-head RoIs a step ours {rois[0]}, torchvision {rois[1]}")
        for name, runs in (("ours", ours_runs), ("torchvision", tv_runs)):
            for run in runs:
                if "error" in run and run["error"] != "skipped":
                    print(f"  {backbone} {name}: {run['error']}")
    if args.json:
        medians = {b: {impl: statistics.median(times) if times else None
                       for impl in ("ours", "torchvision")
                       for times in [[r["s_per_iter"] for r in results[b, impl] if "s_per_iter" in r]]}
                   for b in backbones}
        with open(args.json, "w") as f:
            json.dump({"amp": args.amp, "device": args.device, "s_per_iter": medians}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
