"""Low-precision CPU inference of a trained checkpoint: speed and COCO AP of each mode, and the change
against float32.

    python benchmarks/low_precision.py --weights CKPT --json VAL.json --images VAL_DIR \\
        --calib-images TRAIN_DIR [--calib-json TRAIN.json] [--calib-count 16] \\
        [--modes fp32,fp32-opt,bf16-opt,int8,int8-features] [--threads 2] [--rounds 3] [--timed 20] \\
        [--output-json OUT.json]

Modes (all through ``maskrcnn.predictor.Predictor``, what ``predict`` and ``eval`` run):
- ``fp32``: the model as built; ``fp32-opt``: after ``modeling.fuse.optimise_for_inference`` (folded
  batch norm, channels_last, Winograd 3x3 convolutions, fused residual additions; ``predict``'s default);
- ``bf16-opt``: the same with bfloat16 autocast on the network's layers (backbone, FPN, RPN head, RoI
  heads; the box predictor and decoding stay float32; pays off only on CPUs with
  native bfloat16, reported in the header);
- ``int8``: ``engine.int8.quantize_predictor`` on every part (backbone + FPN, RPN conv, box head fcs
  dynamic, mask head), calibrated on ``--calib-count`` images of ``--calib-images`` (keep them apart from
  the evaluated images); ``int8-features``: only the backbone + FPN quantized.
INT8 with bfloat16 is not a mode: the quantized part is the one autocast would touch.

AP: each mode's COCO AP over every image of ``--json`` through ``engine.inference.evaluate_dataset``
(the path of ``maskrcnn eval``). Speed: the first ``--timed`` images, held in memory, one at a time
(resize, model, masks pasted as RLE, as ``eval`` does), the modes alternating image by image for
``--rounds`` rounds after one warm-up image each, so that a slow phase of a shared machine hits every
mode alike; s/image is the median, with the spread of the rounds' means.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODES = ("fp32", "fp32-opt", "bf16-opt", "int8", "int8-features")


def build(mode: str, args, calib_files: list):
    from maskrcnn.engine.int8 import quantize_predictor
    from maskrcnn.predictor import Predictor

    common = dict(device="cpu", masks="rle", int8=False, overrides=args.overrides or None)
    if mode == "fp32":
        return Predictor.from_checkpoint(args.weights, optimise=False, **common)
    if mode == "fp32-opt":
        return Predictor.from_checkpoint(args.weights, optimise=True, **common)
    if mode == "bf16-opt":
        return Predictor.from_checkpoint(args.weights, optimise=True, dtype="bfloat16", **common)
    if mode in ("int8", "int8-features"):
        p = Predictor.from_checkpoint(args.weights, optimise=True, winograd=False, fused_add=False, **common)
        t0 = time.perf_counter()
        quantize_predictor(p, calib_files, parts=["features"] if mode == "int8-features" else None)
        print(f"{mode}: calibrated on {len(calib_files)} images in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        return p
    raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def evaluate(predictor, dataset) -> dict:
    from maskrcnn.engine.inference import build_evaluator, evaluate_dataset

    metrics = evaluate_dataset(predictor, dataset, build_evaluator(predictor, dataset))
    return {iou: float(metrics[iou]["AP"]) for iou in ("bbox", "segm") if iou in metrics}


def main(argv=None) -> int:
    from maskrcnn.engine.device import cpu_has_native_bf16, cpu_name
    from maskrcnn.engine.int8 import DEFAULT_CALIBRATION_IMAGES, calibration_files

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--json", required=True, help="COCO ground truth of the evaluated images")
    p.add_argument("--images", required=True, help="their folder")
    p.add_argument("--calib-images", help="calibration image folder (needed for int8 modes)")
    p.add_argument("--calib-json")
    p.add_argument("--calib-count", type=int, default=DEFAULT_CALIBRATION_IMAGES)
    p.add_argument("--modes", default="fp32,fp32-opt,bf16-opt,int8,int8-features")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timed", type=int, default=20, help="images timed per round")
    p.add_argument("--label", default="", help="a name for the model in the table")
    p.add_argument("--output-json", "--out", dest="out", help="write the results here")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every mode, e.g. input.min_size_test=800")
    args = p.parse_args(argv)
    from maskrcnn.config import parse_set_args

    args.overrides = parse_set_args(args.set)
    torch.set_num_threads(args.threads)  # this script's process: the benchmark's stated thread count

    from maskrcnn.data.coco import CocoDataset

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    calib = []
    if any(m.startswith("int8") for m in modes):
        if not args.calib_images:
            p.error("int8 modes need --calib-images (images apart from the evaluated ones)")
        calib = calibration_files(args.calib_images, json_path=args.calib_json, count=args.calib_count)
    predictors = {m: build(m, args, calib) for m in modes}
    first = next(iter(predictors.values()))
    dataset = CocoDataset(json_path=args.json, image_dir=args.images)

    ap = {}
    for m, pred in predictors.items():
        t0 = time.perf_counter()
        ap[m] = evaluate(pred, dataset)
        print(f"{m}: AP {ap[m]} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    n = min(args.timed, len(dataset))
    images = [first.load(dataset.image_info(i)["path"]) for i in range(n)]
    sizes = sorted(tuple(im.shape[-2:]) for im in images)
    times = {m: [[] for _ in range(args.rounds)] for m in modes}
    with torch.inference_mode():
        for pred in predictors.values():
            pred.predict_tensors(images[:1])  # warm-up: oneDNN primitives, allocator
        for r in range(args.rounds):
            for img in images:
                for m, pred in predictors.items():  # alternate modes image by image
                    t0 = time.perf_counter()
                    pred.predict_tensors([img])
                    times[m][r].append(time.perf_counter() - t0)

    ref = "fp32" if "fp32" in modes else modes[0]  # AP changes are against float32
    speed_refs = [m for m in ("fp32", "fp32-opt") if m in modes] or [modes[0]]
    rows = []
    for m in modes:
        flat = [t for rnd in times[m] for t in rnd]
        means = [statistics.mean(rnd) for rnd in times[m]]
        rows.append({
            "mode": m, "s_per_image": statistics.median(flat), "round_means": means,
            "box_ap": ap[m].get("bbox"), "mask_ap": ap[m].get("segm"),
        })  # fmt: skip
    by_mode = {r["mode"]: r for r in rows}
    base = by_mode[ref]
    cfg = first.cfg
    header = {
        "label": args.label or Path(args.weights).name,
        "model": f"{cfg.model.backbone}{'-FPN' if cfg.model.fpn else ''}, "
                 f"{cfg.model.num_classes - 1} classes",
        "evaluated_images": len(dataset), "timed_images": n, "rounds": args.rounds,
        "image_size": f"{sizes[len(sizes) // 2][0]}x{sizes[len(sizes) // 2][1]} (median of the timed)",
        "cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
        "native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine, "machine": platform.machine(),
        "calibration": f"{len(calib)} images of {args.calib_json or args.calib_images}" if calib else None,
        "ap_reference": ref, "speed_references": speed_refs,
    }  # fmt: skip
    print(f"\n{header['label']}: {header['model']}, {header['evaluated_images']} images evaluated, "
          f"{n} timed x {args.rounds} rounds, input {header['image_size']}; CPU {header['cpu']} "
          f"({header['cores']} cores, {args.threads} threads, native bf16: {header['native_bf16']}), "
          f"torch {header['torch']}, quantized engine {header['quantized_engine']}")
    if calib:
        print(f"int8 calibration: {header['calibration']}")
    speed_head = "".join(f" vs {m} |" for m in speed_refs)
    print(f"\n| mode | s/image | rounds' means |{speed_head} box AP | Δ box | mask AP | Δ mask |")
    print("|---|---|---|" + "---|" * len(speed_refs) + "---|---|---|---|")
    def delta(r, key):
        return "-" if r[key] is None or base[key] is None else f"{r[key] - base[key]:+.1f}"

    for r in rows:
        spread = f"{min(r['round_means']):.3f}-{max(r['round_means']):.3f}"
        box = "-" if r["box_ap"] is None else f"{r['box_ap']:.1f}"
        mask = "-" if r["mask_ap"] is None else f"{r['mask_ap']:.1f}"
        speed = "".join(f" {by_mode[m]['s_per_image'] / r['s_per_image']:.2f}x |" for m in speed_refs)
        print(f"| {r['mode']} | {r['s_per_image']:.3f} | {spread} |{speed} {box} | {delta(r, 'box_ap')} | "
              f"{mask} | {delta(r, 'mask_ap')} |")
    if args.out:
        from maskrcnn.io_utils import atomic_write_json

        atomic_write_json(args.out, {"setup": header, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
