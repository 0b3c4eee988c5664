"""Fine-tuning from a trained model against training from scratch, on a second synthetic domain.

    python benchmarks/finetune_transfer.py [--source runs/demo/run/model_final.pth] [--work runs/transfer]
        [--budgets 100 200 400] [--num-train 300] [--num-val 50]

Source: the demo's model (``maskrcnn demo``: flat-coloured circles, squares, triangles, stars and crosses on
a muted field); without ``--source`` the demo is trained first (about 10 minutes on a 2-core CPU).
Target: another domain with other classes and another look, hexagons, ellipses, arrows and crescents drawn
with two-colour gradients and dark outlines on a dark grid (``generate_shapes_dataset(classes=OTHER_SHAPES,
style="gradient")``). For each budget the demo preset trains twice on the target, from the source
(``model.init_weights``) and from random initialisation, with the same seed, batches and schedule shape
(warm-up, steps at 75% and 92%); the table gives mask and box AP on the target's validation images.
A last run fine-tunes, at the smallest budget, on a target that reuses two of the demo's class names
(circle, star, plus hexagon and crescent) and prints the class rows its report says were kept.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from pathlib import Path


def _train(cfg_overrides: dict, data: dict, out: Path) -> dict:
    from maskrcnn.config import load_config
    from maskrcnn.engine.training import build_training

    cfg = load_config("demo", cfg_overrides)
    log = io.StringIO()
    t0 = time.perf_counter()
    trainer, cfg = build_training(cfg, train_json=data["train_json"], train_images=data["train_images"],
                                  val_json=data["val_json"], val_images=data["val_images"], output=out,
                                  device="cpu", log_stream=log, trainer_kwargs={"plot": False})
    result = trainer.train()
    (out / "stdout.log").write_text(log.getvalue())
    ev = result["eval"] or {}
    nan = float("nan")
    return {"mask_ap": ev.get("segm", {}).get("AP", nan), "box_ap": ev.get("bbox", {}).get("AP", nan),
            "seconds": time.perf_counter() - t0}


def _schedule(iters: int) -> dict:
    return {"solver.iters": iters, "solver.warmup_iters": max(1, min(100, iters // 5)),
            "solver.steps": (int(iters * 0.75), int(iters * 0.92)), "solver.checkpoint_period": iters}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", help="the model to fine-tune from (default: train the demo into WORK/demo)")
    p.add_argument("--work", default="runs/transfer", help="folder for data, runs and results.json")
    p.add_argument("--budgets", type=int, nargs="+", default=[100, 200, 400], help="training iterations")
    p.add_argument("--num-train", type=int, default=300)
    p.add_argument("--num-val", type=int, default=50)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)

    import torch

    from maskrcnn.commands.demo import IMAGE_SIZE, demo_checkpoint
    from maskrcnn.data.shapes import OTHER_SHAPES, generate_shapes_dataset
    from maskrcnn.engine.device import cpu_name

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    source = demo_checkpoint(args.source, work)
    if source is None:
        return 1
    sizes = dict(num_train=args.num_train, num_val=args.num_val, image_size=IMAGE_SIZE, style="gradient")
    target = generate_shapes_dataset(work / "target", classes=OTHER_SHAPES, seed=7, **sizes)
    reused = ("circle", "star", "hexagon", "crescent")
    shared = generate_shapes_dataset(work / "target_shared", classes=reused, seed=8, **sizes)
    rows, results = [], {"source": source, "cpu": cpu_name(), "threads": torch.get_num_threads(), "runs": {}}
    for budget in args.budgets:
        row = {"budget": budget}
        for name, init in (("scratch", ""), ("finetuned", source)):
            out = work / f"{name}_{budget}"
            shutil.rmtree(out, ignore_errors=True)  # a fresh run each time
            r = _train({**_schedule(budget), "model.init_weights": init}, target, out)
            row[name] = r
            print(f"budget {budget:4d} {name:9s}: mask AP {r['mask_ap']:5.1f}  box AP {r['box_ap']:5.1f}  "
                  f"({r['seconds']:.0f} s)", flush=True)
        rows.append(row)
        results["runs"][budget] = row
    out = work / f"shared_names_{args.budgets[0]}"
    shutil.rmtree(out, ignore_errors=True)
    r = _train({**_schedule(args.budgets[0]), "model.init_weights": source}, shared, out)
    report = json.loads((out / "init_report.json").read_text(encoding="utf-8"))
    results["shared_names"] = {**r, "copied_classes": report["copied_classes"],
                               "fresh_classes": report["fresh_classes"]}

    print(f"\nFine-tuning from {source} vs random initialisation, demo preset, target: "
          f"{', '.join(OTHER_SHAPES)} (gradient style), {args.num_train} train / {args.num_val} val images; "
          f"{results['cpu']}, {results['threads']} threads\n")
    print("| iterations | mask AP scratch | mask AP fine-tuned | gain | box AP scratch | box AP fine-tuned | "
          "s per run |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        s, f = row["scratch"], row["finetuned"]
        gain = f["mask_ap"] - s["mask_ap"]
        print(f"| {row['budget']} | {s['mask_ap']:.1f} | {f['mask_ap']:.1f} | {gain:+.1f} | "
              f"{s['box_ap']:.1f} | {f['box_ap']:.1f} | {(s['seconds'] + f['seconds']) / 2:.0f} |")
    sh = results["shared_names"]
    print(f"\nShared names (circle, star, hexagon, crescent), {args.budgets[0]} iterations: mask AP "
          f"{sh['mask_ap']:.1f}; rows kept: {sh['copied_classes']}; fresh: {sh['fresh_classes']}")
    (work / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
