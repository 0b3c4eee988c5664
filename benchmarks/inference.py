"""CPU inference speed and peak memory of R50-FPN Mask R-CNN at 800x1067: this library vs torchvision.

    python benchmarks/inference.py [--tv-python PYTHON] [--images 3] [--threads 2] [--size 800x1067]
                                   [--variants fp32,fp32-opt,bf16-opt,onnx] [--rounds 1] [--profile]

``--variants`` takes any of fp32, fp32-opt, bf16, bf16-opt, int8, int8-onednn, onnx (``bf16``: bfloat16
autocast on the model as built); another name is refused before anything runs. ``--images N`` times N
images: the three golden images in turn, each with its own noise.

Every measurement runs in its own process (so that the RSS high-water mark belongs to it alone):
- ``torchvision``: ``maskrcnn_resnet50_fpn(weights=None, num_classes=C)`` with the deterministic weights
  of the golden-data recipe (tests/data/golden), run by an interpreter that has torchvision
  (``--tv-python``; the current one if it has torchvision). Its state dict is handed to the others.
- ``ours`` variants: the same weights converted with ``maskrcnn.interop.torchvision``; ``fp32`` is the
  model as built, ``fp32-opt`` after ``modeling.fuse.optimise_for_inference`` (BN folded,
  channels_last, Winograd 3x3 convolutions, or oneDNN linear layers where ``torch.mm`` lags oneDNN,
  fused residual additions: what Predictor runs on CPU; the table's last lines say which it chose),
  ``bf16-opt`` the same with bfloat16 autocast on the backbone, FPN, RPN head and RoI heads (the box
  predictor and decoding stay float32; Winograd then falls back to the
  direct convolution); ``int8`` the model quantized by ``maskrcnn.engine.int8.quantize_predictor``
  (backbone + FPN, RPN conv, mask head static INT8, box head fcs dynamic INT8), calibrated on the timed
  images (for speed only: random-weight detections say nothing about accuracy; see
  ``benchmarks/low_precision.py`` for AP on trained models); ``int8-onednn`` the same under PyTorch's
  ``onednn`` quantized engine (set in its worker process; Intel's choice on AMX CPUs, the default being
  ``x86``); ``onnx`` the model exported by
  ``maskrcnn.export`` (the whole graph) and run by onnxruntime's CPU provider with ``--threads``
  intra-op threads, through the same Predictor (resize and paste are ours; the export is not timed).
Our runs set glibc's allocator to reuse freed memory, as the ``maskrcnn`` program does at start
(``maskrcnn.cpu_memory``; ``MASKRCNN_MALLOC=default`` in the environment runs them without);
``--tv-reuse-memory`` adds a torchvision run started with the same setting (``REUSE_ENVIRONMENT``), so
that the table shows what the allocator alone gives torchvision.
Each times the whole path a user gets (resize, model, paste masks at the original size) for one image
at a time after one warm-up image, and saves its detections. With ``--rounds R`` the runs alternate R
times (torchvision, ours, ..., torchvision, ours, ...) so that a slow phase of a shared machine hits
every run alike; s/image is the median over all rounds' images, with the spread of the rounds' means;
cpu s/img the median CPU time of the process per image (all its threads: on an idle machine about
threads x s/image; on a shared one the steadier figure of the work done).
The table compares every variant's detections (first round) with the reference (torchvision, or ours
fp32 without torchvision) by matching: same label and box IoU > 0.99 (and > 0.9); the worst differences
of matched pairs read "-" when no pair matched.
Shapes: D detections per image, H x W = the image size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
GOLDEN_IMAGES = ["img_simple0.png", "img_simple1.png", "img_hard2.png"]
KNOWN_VARIANTS = ("fp32", "fp32-opt", "bf16", "bf16-opt", "int8", "int8-onednn", "onnx")


def parse_variants(text: str) -> list:
    """``--variants`` -> the list of variant names; ValueError naming the unknown ones and listing the
    known ones (before any run starts, so that a typo is not timed as a run of its own)."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in KNOWN_VARIANTS]
    if unknown:
        raise ValueError(f"--variants: unknown {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(KNOWN_VARIANTS)}")
    if not variants:
        raise ValueError(f"--variants: none given; known: {', '.join(KNOWN_VARIANTS)}")
    return variants


# ------------------------------------------------------------------------------------------------
# Shared helpers (both interpreters)


def recipe_state_dict(keys_shapes) -> dict:
    """The golden-data weight recipe (see tests/data/golden/README or the shared golden README)."""
    out = {}
    for i, (key, shape) in enumerate(keys_shapes):
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[key] = torch.zeros((), dtype=torch.int64)
            continue
        z = np.random.RandomState(i).standard_normal(shape).astype(np.float32)
        if leaf == "running_var":
            v = 1 + 0.1 * np.abs(z)
        elif leaf == "running_mean":
            v = 0.1 * z
        elif len(shape) >= 2:
            transposed = any(s in key for s in ("conv5_mask", "deconv", "score_lowres"))
            fan_in = shape[0] * int(np.prod(shape[2:])) if transposed else int(np.prod(shape[1:]))
            v = z / np.float32(np.sqrt(fan_in))
        elif leaf == "weight":
            v = 1 + 0.1 * z
        else:
            v = 0.1 * z
        out[key] = torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(shape))
    return out


def load_images(size_hw, count: int = len(GOLDEN_IMAGES)) -> list:
    """``count`` images: the golden images in turn, stretched to ``size_hw`` (real-looking content at the
    benchmark size), each with its own noise (the first three are the same for any ``count``)."""
    from PIL import Image

    h, w = size_hw
    out = []
    g = torch.Generator().manual_seed(0)
    for i in range(count):
        name = GOLDEN_IMAGES[i % len(GOLDEN_IMAGES)]
        img = (
            Image.open(REPO / "tests" / "data" / "golden" / name)
            .convert("RGB")
            .resize((w, h), Image.BILINEAR)
        )
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0  # (3, H, W)
        # Sensor-like noise: flat stretched regions would otherwise give many exactly tied scores,
        # whose order (and so NMS) legitimately differs between implementations.
        out.append((x + (torch.rand(x.shape, generator=g) - 0.5) * (4 / 255)).clamp(0, 1))
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def pack_detections(dets) -> list:
    """Detections -> small CPU tensors (masks bit-packed) for the comparison."""
    out = []
    for d in dets:
        masks = d["masks"].reshape(d["masks"].shape[0], -1).cpu().numpy()  # (D, H*W) bool
        out.append(
            {
                "boxes": d["boxes"].float().cpu(),
                "scores": d["scores"].float().cpu(),
                "labels": d["labels"].cpu(),
                "masks": torch.from_numpy(np.packbits(masks, axis=1)),
                "mask_hw": torch.tensor(d["masks"].shape[-2:]),
            }
        )
    return out


def _time_runs(run_one, images, profile: bool) -> tuple:
    run_one(images[0])  # warm-up: allocator, oneDNN primitive caches
    dets, times, cpu = [], [], []
    for img in images:
        t0, c0 = time.perf_counter(), time.process_time()
        dets.append(run_one(img))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)

    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof

        with prof(activities=[ProfilerActivity.CPU]) as p:
            run_one(images[0])
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)
    return dets, times, cpu


# ------------------------------------------------------------------------------------------------
# Workers


def worker_torchvision(args) -> dict:
    import torchvision
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=args.num_classes)
    sd = model.state_dict()
    weights = recipe_state_dict([(k, tuple(v.shape)) for k, v in sd.items()])
    model.load_state_dict(weights)
    model.eval()
    torch.save(weights, args.state)
    images = load_images(args.size, args.images)

    @torch.inference_mode()
    def run_one(img):
        d = model([img])[0]
        return {**d, "masks": d["masks"][:, 0] > 0.5}  # (D, 1, H, W) probabilities -> (D, H, W) bool

    dets, times, cpu = _time_runs(run_one, images, args.profile)
    name = f"torchvision {torchvision.__version__} fp32"
    if args.worker.endswith(":reuse"):  # started with glibc's MALLOC_* variables (REUSE_ENVIRONMENT)
        name += ", reuse"
    return {"name": name, "times": times, "cpu_times": cpu, "dets": dets}


def worker_ours(args) -> dict:
    sys.path.insert(0, str(REPO))
    from maskrcnn.cpu_memory import reuse_freed_memory

    malloc = reuse_freed_memory()  # as the maskrcnn program does at start (MASKRCNN_MALLOC=default: not)
    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model
    from maskrcnn.predictor import Predictor

    if args.state and Path(args.state).is_file():
        from maskrcnn.interop.torchvision import convert_torchvision

        # torchvision's weights=None models use BatchNorm2d with eps 1e-5 (not its COCO weights' 0.0)
        conv = convert_torchvision(torch.load(args.state, weights_only=True), frozen_bn_eps=1e-5)
        cfg = conv["config"]
        model = build_model(cfg)
        model.load_state_dict(conv["state_dict"], strict=True)
    else:  # no torchvision: the same recipe over our own key order
        cfg = apply_overrides(PRESETS["r50_fpn"](), {"model.num_classes": args.num_classes})
        model = build_model(cfg)
        model.load_state_dict(
            recipe_state_dict([(k, tuple(v.shape)) for k, v in model.state_dict().items()]), strict=True
        )
    variant = args.worker.split(":", 1)[1]
    if variant == "onnx":
        import onnxruntime

        from maskrcnn.export.onnx_export import export_onnx

        path = str(Path(args.out).with_suffix(".onnx"))
        names = ["__background__"] + [f"class{i}" for i in range(1, cfg.model.num_classes)]
        export_onnx(model, cfg, names, path)
        predictor = Predictor.from_onnx(path, threads=args.threads or None)
        images = load_images(args.size, args.images)
        dets, times, cpu = _time_runs(lambda img: predictor.predict_tensors([img])[0], images, False)
        name = f"onnxruntime {onnxruntime.__version__}"
        return {"name": name, "times": times, "cpu_times": cpu, "dets": dets}
    images = load_images(args.size, args.images)
    if variant in ("int8", "int8-onednn"):
        from maskrcnn.engine.int8 import quantize_predictor

        if variant == "int8-onednn":  # this worker process's own engine (the default is x86)
            torch.backends.quantized.engine = "onednn"
        predictor = Predictor(model, cfg, device="cpu", optimise=True, winograd=False, fused_add=False)
        quantize_predictor(predictor, images)
        dets, times, cpu = _time_runs(lambda img: predictor.predict_tensors([img])[0], images, args.profile)
        return {"name": f"ours {variant}", "times": times, "cpu_times": cpu, "dets": dets}
    predictor = Predictor(
        model,
        cfg,
        device="cpu",
        batch_size=1,
        optimise=variant.endswith("-opt"),
        dtype="bfloat16" if variant.startswith("bf16") else None,
    )
    dets, times, cpu = _time_runs(lambda img: predictor.predict_tensors([img])[0], images, args.profile)
    return {"name": f"ours {variant}", "times": times, "cpu_times": cpu, "dets": dets,
            "kernels": f"{_kernels(predictor.model)}; allocator: {malloc}"}


def _kernels(model) -> str:
    """What ``optimise_for_inference`` chose for this model on this CPU, as one phrase."""
    from maskrcnn.ops.gemm_rates import PIN_VARIABLE, matmul_rate_ratio

    counts = [(getattr(model, attr, None), what) for attr, what in (
        ("winograd_convs", "Winograd convs"), ("onednn_linears", "oneDNN linears"),
        ("fused_adds", "fused additions"))]  # fmt: skip
    if all(n is None for n, _ in counts):
        return "as built"
    pinned = os.environ.get(PIN_VARIABLE, "").strip().lower()
    why = (f"pinned by {PIN_VARIABLE}={pinned}" if pinned not in ("", "measure") else
           f"oneDNN / torch.mm matrix-product rate here: {matmul_rate_ratio():.2f}x")
    products = {"onednn": " (products on oneDNN)", "bmm": " (products on torch.bmm)"}.get(
        getattr(model, "winograd_products", None), "")
    counts[0] = (counts[0][0], counts[0][1] + products)
    return ", ".join(f"{n or 0} {what}" for n, what in counts) + f" ({why})"


def run_worker(args) -> int:
    if args.threads:  # 0: torch's own choice
        torch.set_num_threads(args.threads)
    fn = worker_torchvision if args.worker.startswith("torchvision") else worker_ours
    res = fn(args)
    res["peak_rss_mb"] = peak_rss_mb()
    res["dets"] = pack_detections(res["dets"])
    torch.save(res, args.out)
    return 0


# ------------------------------------------------------------------------------------------------
# Comparison and the table


def _unpack_masks(d) -> torch.Tensor:
    h, w = (int(v) for v in d["mask_hw"])
    bits = np.unpackbits(d["masks"].numpy(), axis=1)[:, : h * w]  # (D, H*W)
    return torch.from_numpy(bits.astype(bool))


def compare(ref: list, other: list, *, iou_thresh: float = 0.99) -> dict:
    """Match detections per image: same label, box IoU > ``iou_thresh``, greedy in the reference's
    score order; report the worst box / score / mask-IoU differences of matched pairs (None when no pair
    matched: there is no difference to report, not a perfect one)."""
    sys.path.insert(0, str(REPO))
    from maskrcnn.ops.boxes import box_iou

    n_ref = n_other = matched = 0
    worst_box = worst_score = 0.0
    worst_mask_iou = 1.0
    for a, b in zip(ref, other):
        n_ref += a["boxes"].shape[0]
        n_other += b["boxes"].shape[0]
        if a["boxes"].shape[0] == 0 or b["boxes"].shape[0] == 0:
            continue
        iou = box_iou(a["boxes"], b["boxes"])  # (Da, Db)
        iou[a["labels"][:, None] != b["labels"][None, :]] = 0
        ma, mb = _unpack_masks(a), _unpack_masks(b)
        used = torch.zeros(b["boxes"].shape[0], dtype=torch.bool)
        for i in range(a["boxes"].shape[0]):  # D <= 100: a reporting loop, not a hot path
            row = iou[i].masked_fill(used, 0)
            j = int(row.argmax())
            if row[j] <= iou_thresh:
                continue
            used[j] = True
            matched += 1
            worst_box = max(worst_box, float((a["boxes"][i] - b["boxes"][j]).abs().max()))
            worst_score = max(worst_score, float((a["scores"][i] - b["scores"][j]).abs()))
            inter = (ma[i] & mb[j]).sum().item()
            union = (ma[i] | mb[j]).sum().item()
            worst_mask_iou = min(worst_mask_iou, inter / union if union else 1.0)
    return {
        "ref": n_ref,
        "other": n_other,
        "matched": matched / max(n_ref, n_other, 1),
        "box": worst_box if matched else None,
        "score": worst_score if matched else None,
        "mask_iou": worst_mask_iou if matched else None,
    }


def _worst(value, spec: str, width: int) -> str:
    """A worst-difference cell of the table: "-" when nothing matched (``compare`` gives None)."""
    return f"{'-' if value is None else format(value, spec):>{width}}"


def _cpu_name() -> str:
    from maskrcnn.engine.device import cpu_name

    return cpu_name()


def _bf16_supported() -> bool:
    sys.path.insert(0, str(REPO))
    from maskrcnn.engine.device import cpu_has_native_bf16

    return cpu_has_native_bf16()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=3, help="timed images (after one warm-up)")
    p.add_argument("--rounds", type=int, default=1, help="alternate every run this many times")
    p.add_argument("--threads", type=int, default=2,
                   help="torch (and onnxruntime intra-op) threads, up to 4 x the cores; 0: torch's choice")
    p.add_argument("--size", default="800x1067", help="HxW of the images")
    p.add_argument("--num-classes", type=int, default=4, help="as in the golden data (random weights)")
    p.add_argument("--variants", default="fp32,fp32-opt,bf16-opt,onnx")
    p.add_argument(
        "--tv-python", default=os.environ.get("MASKRCNN_TV_PYTHON"), help="python with torchvision"
    )
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops per run")
    p.add_argument("--tv-reuse-memory", action="store_true",
                   help="also run torchvision with glibc set to reuse freed memory, as ours runs")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--workdir", help="keep each run's results here and reuse those already there")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--state", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from maskrcnn.commands.benchmark import check_threads
    from maskrcnn.commands.size_arg import parse_size
    from maskrcnn.cpu_memory import REUSE_ENVIRONMENT

    try:  # the messages show what was typed; sides above size_arg.MAX_SIDE (4096) refused
        args.size = parse_size(args.size, allocated="each image")
        # as maskrcnn benchmark: below 0 or above 4 x the cores refused (a huge count crashed torch's pool)
        oversubscribed = None if args.worker else check_threads(args.threads)
    except ValueError as e:
        p.error(str(e))
    if oversubscribed:
        print(f"warning: {oversubscribed}", file=sys.stderr)
    if args.images < 1:
        p.error(f"--images must be >= 1, got {args.images}")
    if args.worker:
        return run_worker(args)
    try:
        variants = parse_variants(args.variants)
    except ValueError as e:
        p.error(str(e))

    tv_python = args.tv_python
    if tv_python is None:
        try:
            import torchvision  # noqa: F401

            tv_python = sys.executable
        except ImportError:
            pass
    common = [
        "--images",
        str(args.images),
        "--threads",
        str(args.threads),
        "--num-classes",
        str(args.num_classes),
        "--size",
        f"{args.size[0]}x{args.size[1]}",
    ] + (["--profile"] if args.profile else [])
    results = {}  # worker -> [result of each round]
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or scratch
        os.makedirs(tmp, exist_ok=True)
        state = os.path.join(tmp, "tv_state.pt")
        jobs = ([("torchvision", tv_python)] if tv_python else []) + (
            [("torchvision:reuse", tv_python)] if tv_python and args.tv_reuse_memory else []) + [
            (f"ours:{v}", sys.executable) for v in variants
        ]
        for worker, _ in jobs:
            if worker.startswith("ours:bf16") and not _bf16_supported():
                print(
                    f"note: this CPU has no native bfloat16 (avx512_bf16/amx): {worker} is emulated",
                    file=sys.stderr,
                )
        for rnd, (worker, python) in ((r, j) for r in range(max(1, args.rounds)) for j in jobs):
            suffix = f"_round{rnd}" if rnd else ""
            out = os.path.join(tmp, worker.replace(":", "_") + suffix + ".pt")
            if args.workdir and os.path.isfile(out):  # measured before in this workdir: reuse
                print(f"reusing {out}", file=sys.stderr)
                results.setdefault(worker, []).append(torch.load(out, weights_only=True))
                continue
            cmd = [
                python,
                str(Path(__file__).resolve()),
                "--worker",
                worker,
                "--state",
                state,
                "--out",
                out,
            ] + common
            print(f"running {worker} (round {rnd + 1}) ...", file=sys.stderr, flush=True)
            env = {**os.environ, **REUSE_ENVIRONMENT} if worker.endswith(":reuse") else None
            proc = subprocess.run(cmd, cwd=str(REPO), env=env)
            if proc.returncode != 0:
                print(f"{worker} failed (exit {proc.returncode})", file=sys.stderr)
                continue
            results.setdefault(worker, []).append(torch.load(out, weights_only=True))

    runs = []
    for rounds in results.values():  # one row per run: first round's detections, every round's times
        runs.append({**rounds[0], "times": [t for r in rounds for t in r["times"]],
                     "cpu_times": [t for r in rounds for t in r.get("cpu_times", [])],
                     "round_means": [float(np.mean(r["times"])) for r in rounds],
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds)})
    if not runs:
        return 1
    ref = runs[0]
    base = float(np.median(ref["times"]))
    threads = args.threads or "torch's default"
    print(
        f"\nMask R-CNN R50-FPN inference, {args.images} images {args.size[0]}x{args.size[1]} x "
        f"{max(1, args.rounds)} round(s), batch 1, {threads} threads, "
        f"torch {torch.__version__}, "
        f"CPU: {_cpu_name()} ({os.cpu_count()} cores)"
    )
    print(f"reference for speed-up and matching: {ref['name']}")
    header = (
        f"{'run':<28} {'s/image':>8} {'cpu s/img':>9} {'rounds':>11} {'speed-up':>8} {'peak RSS MB':>11} "
        f"{'dets':>5} "
        f"{'match.99':>8} {'match.9':>7} {'max|dbox|':>9} {'max|dscore|':>11} {'min mask IoU':>12}"
    )
    print(header)
    print("-" * len(header))
    table = []
    for r in runs:
        t = float(np.median(r["times"]))
        cpu = f"{float(np.median(r['cpu_times'])):.2f}" if r.get("cpu_times") else "-"
        spread = f"{min(r['round_means']):.2f}-{max(r['round_means']):.2f}"
        c = compare(ref["dets"], r["dets"])
        loose = compare(ref["dets"], r["dets"], iou_thresh=0.9)["matched"]
        table.append(
            {"name": r["name"], "s_per_image": t, "cpu_times": r.get("cpu_times"),
             "round_means": r["round_means"], "speedup": base / t,
             "peak_rss_mb": r["peak_rss_mb"], "matched_iou90": loose, **c}
        )  # fmt: skip
        print(
            f"{r['name']:<28} {t:>8.3f} {cpu:>9} {spread:>11} {base / t:>7.2f}x {r['peak_rss_mb']:>11.0f} "
            f"{c['other']:>5d} {100 * c['matched']:>7.1f}% {100 * loose:>6.1f}% {_worst(c['box'], '.2e', 9)} "
            f"{_worst(c['score'], '.2e', 11)} {_worst(c['mask_iou'], '.4f', 12)}"
        )
    for r, row in zip(runs, table):
        if r.get("kernels"):
            row["kernels"] = r["kernels"]
            print(f"{r['name']}: {r['kernels']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
