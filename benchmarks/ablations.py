"""The paper's mask-branch ablations, reproduced in direction on a synthetic set of small objects.

    python benchmarks/ablations.py [--backbone runs/demo/run/model_final.pth] [--work runs/ablations]
        [--iters 400] [--variants align pool ...] [--num-train 400] [--num-val 60] [--threads 1]

One small configuration (ResNet-18, no FPN, RoIs pooled from a single stage into the light
FPN-style heads: a 2fc box head and a 4-conv FCN mask head) trained once per variant on the same data,
with the same seed (so the same batches and, where shapes agree, the same initial weights) and the same
schedule; only the switch under test differs:

    align          RoIAlign, stride 16 (res4), per-class sigmoid masks: the reference
    pool           RoIPool instead of RoIAlign (paper Table 2c, C4: 26.9 vs 30.3 mask AP)
    softmax        a per-pixel softmax over the classes instead of per-class sigmoids (Table 2b: 24.8
                   vs 30.3)
    agnostic       one mask for all classes (text of section 4.2: 29.7 vs 30.3)
    c5_align       RoIAlign on res5, stride 32 (Table 2d: 30.9 mask AP, 34.0 box AP)
    c5_pool        RoIPool on res5, stride 32 (Table 2d: 23.6 mask AP, 28.2 box AP)

The ResNet-18 starts from the backbone of the demo's model (``maskrcnn demo``, trained on the default,
larger shapes; without ``--backbone`` the demo is trained first, about 10 minutes), as the paper's runs
start from an ImageNet backbone: from random weights a few hundred iterations learn next to nothing
(measured: 1.2 mask AP after 400), and it stays frozen, so that a run of minutes goes into the heads
(250 iterations training it too reached 3.9 mask AP). Everything else starts fresh. On a machine
shared with other jobs, ``--threads 1`` is often several times faster than more threads.

The data: ``generate_shapes_dataset`` with many small shapes (up to 8 an image, circumradius 5% to 12%
of the shorter side, so 13 to 31 pixels across on 128-pixel images, all "small" by COCO's measure: one
or two cells of a stride-16 feature map, one or less of a stride-32 map), where RoIPool's quantisation
to the feature grid costs the most. The table gives mask and box AP (COCO, percent) on the validation
images beside the paper's figures (COCO minival, ResNet-50). The paper's C4 design runs res5 on every
RoI, which is too slow for a CPU run of minutes; here stride 16 means res4 features into the light
heads (see docs/ablations.md).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from pathlib import Path

# name -> (what, config overrides over BASE, paper (mask AP, box AP or None))
VARIANTS = {
    "align": ("RoIAlign, stride 16", {}, (30.3, None)),
    "pool": ("RoIPool, stride 16", {"model.roi_heads.pooler": "roipool"}, (26.9, None)),
    "softmax": ("softmax masks", {"model.roi_heads.mask_loss": "softmax"}, (24.8, None)),
    "agnostic": ("class-agnostic masks", {"model.roi_heads.mask_class_agnostic": True}, (29.7, None)),
    "c5_align": ("RoIAlign, stride 32", {"model.roi_features": "res5"}, (30.9, 34.0)),
    "c5_pool": ("RoIPool, stride 32", {"model.roi_features": "res5", "model.roi_heads.pooler": "roipool"},
                (23.6, 28.2)),
}
# (variant, reference, the paper's gain of the reference over the variant in mask AP)
COMPARISONS = (
    ("pool", "align", 30.3 - 26.9),
    ("c5_pool", "c5_align", 30.9 - 23.6),
    ("softmax", "align", 30.3 - 24.8),
    ("agnostic", "align", 30.3 - 29.7),
)
# AP: one seed per variant; the class-agnostic run, whose box branch is the same as the reference's
# but initialised from another random state, differs by 1.1 box AP from it (docs/ablations.md)
NOISE_AP = 1.5
SIZE = 128
BASE = {
    "model.fpn": False,
    "model.roi_features": "res4",
    "model.rpn.anchor_sizes": (8, 16, 32, 64),  # all on the one level
    "model.rpn.pre_nms_topk_train": 300,
    "model.rpn.post_nms_topk_train": 150,
    "model.rpn.pre_nms_topk_test": 300,
    "model.rpn.post_nms_topk_test": 150,
    "model.roi_heads.box_pool_size": 7,
    "model.roi_heads.mask_pool_size": 14,
    "model.roi_heads.box_head_dim": 128,
    "model.roi_heads.mask_head_convs": 4,
    "model.roi_heads.mask_head_dim": 32,
    "model.freeze_at": 5,  # the whole pretrained ResNet: the runs train the heads (and the RPN) only
    "model.roi_heads.batch_size_per_image": 32,
    "input.min_size": (SIZE,),
    "input.max_size": 160,
    "input.min_size_test": SIZE,
    "input.max_size_test": 160,
    "solver.batch_size": 4,
    "solver.lr": 0.01,
    "solver.eval_period": 0,
}
DATA = {"image_size": ((SIZE, SIZE), (SIZE, 160)), "max_objects": 8, "radius_range": (0.05, 0.12),
        "min_area": 30}


def _schedule(iters: int) -> dict:
    return {"solver.iters": iters, "solver.warmup_iters": max(1, min(100, iters // 5)),
            "solver.steps": (int(iters * 0.75), int(iters * 0.92)), "solver.checkpoint_period": iters}


def _backbone_state(path) -> dict:
    """The ``backbone.*`` tensors of a checkpoint of ours, without the prefix."""
    from maskrcnn.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    model = ckpt["config"]["model"]
    if (model["backbone"], model["norm"]) != ("resnet18", "bn"):
        raise ValueError(f"{path}: a ResNet-18 with batch norm is needed (the demo's), got "
                         f"{model['backbone']} with {model['norm']}")
    return {k[len("backbone."):]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}


def _train(overrides: dict, data: dict, out: Path, backbone: dict) -> dict:
    from maskrcnn.config import load_config
    from maskrcnn.engine.training import build_training

    cfg = load_config("demo", overrides)
    log = io.StringIO()
    t0 = time.perf_counter()
    trainer, cfg = build_training(cfg, train_json=data["train_json"], train_images=data["train_images"],
                                  val_json=data["val_json"], val_images=data["val_images"], output=out,
                                  device="cpu", log_stream=log, trainer_kwargs={"plot": False},
                                  weights_given=True)  # the demo's backbone, loaded below
    # res4 variants stop before res5: its tensors are the only ones left unused
    missing, unused = trainer.model.backbone.load_state_dict(backbone, strict=False)
    if missing or any(not k.startswith("res5.") for k in unused):
        raise ValueError(f"backbone weights do not fit: missing {missing[:3]}, unused {unused[:3]}")
    result = trainer.train()
    (out / "stdout.log").write_text(log.getvalue())
    ev = result["eval"] or {}
    return {"segm": ev.get("segm", {}), "bbox": ev.get("bbox", {}), "seconds": time.perf_counter() - t0}


def _f(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_tables(runs: dict) -> str:
    """The measured table and the directions table, in Markdown."""
    lines = ["| variant | mask AP | mask AP50 | mask AP75 | mask APs | box AP | box APs | paper mask AP | "
             "paper box AP | s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        what, _, (paper_mask, paper_box) = VARIANTS[name]
        m, b = r["segm"], r["bbox"]
        lines.append(f"| {name} ({what}) | {_f(m.get('AP'))} | {_f(m.get('AP50'))} | {_f(m.get('AP75'))} | "
                     f"{_f(m.get('APs'))} | {_f(b.get('AP'))} | {_f(b.get('APs'))} | {_f(paper_mask)} | "
                     f"{_f(paper_box)} | {r['seconds']:.0f} |")
    lines += ["", "| comparison | measured mask AP gain | paper | measured box AP gain | same direction |",
              "|---|---|---|---|---|"]
    for variant, ref, paper_gain in COMPARISONS:
        if any("AP" not in runs.get(name, {}).get("segm", {}) for name in (variant, ref)):
            continue  # not run, or stopped before its evaluation
        gain = runs[ref]["segm"]["AP"] - runs[variant]["segm"]["AP"]
        box_gain = runs[ref]["bbox"]["AP"] - runs[variant]["bbox"]["AP"]
        lines.append(f"| {ref} over {variant} | {gain:+.1f} | {paper_gain:+.1f} | {box_gain:+.1f} | "
                     f"{'within noise' if abs(gain) < NOISE_AP else 'yes' if gain > 0 else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", help="a checkpoint whose ResNet-18 starts every run (default: train the "
                                      "demo into WORK/demo first)")
    p.add_argument("--work", default="runs/ablations", help="folder for data, runs and results.json")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--iters", type=int, default=400, help="training iterations per variant")
    p.add_argument("--num-train", type=int, default=400)
    p.add_argument("--num-val", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)

    import torch

    from maskrcnn.commands.demo import demo_checkpoint
    from maskrcnn.data.shapes import generate_shapes_dataset
    from maskrcnn.engine.device import cpu_name

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    source = demo_checkpoint(args.backbone, work)
    if source is None:
        return 1
    backbone = _backbone_state(source)
    data = generate_shapes_dataset(work / "data", num_train=args.num_train, num_val=args.num_val, seed=11,
                                   **DATA)
    results = {"backbone": source, "cpu": cpu_name(), "threads": torch.get_num_threads(), "iters": args.iters,
               "seed": args.seed, "num_train": args.num_train, "num_val": args.num_val, "runs": {}}
    for name in args.variants:
        out = work / name
        shutil.rmtree(out, ignore_errors=True)  # a fresh run each time
        overrides = {**BASE, **_schedule(args.iters), **VARIANTS[name][1], "seed": args.seed}
        r = _train(overrides, data, out, backbone)
        results["runs"][name] = r
        print(f"{name:9s}: mask AP {r['segm'].get('AP', float('nan')):5.1f}  box AP "
              f"{r['bbox'].get('AP', float('nan')):5.1f}  ({r['seconds']:.0f} s)", flush=True)
        (work / "results.json").write_text(json.dumps(results, indent=2))
    batch = BASE["solver.batch_size"]
    print(f"\nAblations: ResNet-18 from {source}, {args.iters} iterations of {batch} images, "
          f"{args.num_train} train / {args.num_val} val images of small shapes, seed {args.seed}; "
          f"{results['cpu']}, {results['threads']} threads\n")
    print(format_tables(results["runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
