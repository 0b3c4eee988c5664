"""GPU readiness check: AMP training steps, inference images/s and peak memory, torchvision side by side.

    python benchmarks/gpu_check.py [--dry-run] [--device cuda] [--tv-python PATH] [--workdir DIR]

Run by ``benchmarks/gpu_check.sh`` (which also runs the CUDA tests). Steps, each one row of the table:

- train: Mask R-CNN R50-FPN, random initial weights (trainable batch norm, nothing frozen), a synthetic
  shapes dataset (800 x 1067 images, ``maskrcnn.data.shapes``), batch 8, shorter side 800,
  ``solver.amp=true``, a few iterations through ``build_training`` (the loader, transforms and Trainer
  that ``maskrcnn train`` runs). Reports the median s/iter after the warm-up iterations, the last total
  loss (finite) and the peak GPU memory.
- infer: the trained model through ``Predictor`` (what ``maskrcnn predict`` runs: resize, BN folded,
  channels_last, masks pasted at the original size) on the dataset's images at batch 1 and batch 8
  (float32, and float16 autocast at batch 8), with ``score_thresh=0`` so every image yields the full
  100 detections. Reports images/s and peak GPU memory.
- torchvision: the same measurements with torchvision's ``maskrcnn_resnet50_fpn`` on the same images
  and targets, in a subprocess of ``--tv-python`` (default: this Python, if it imports torchvision);
  skipped with a message when torchvision is not available.

``--dry-run`` runs every step at toy size on the CPU (ResNet-18, 64 x 80 images, batch 2, 2 iterations,
bfloat16 autocast) in seconds, so that the script is exercised by the test suite and never rots.
The exit status is 1 if any step failed (a skipped torchvision is not a failure).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the package from this checkout, installed or not

FULL = dict(backbone="resnet50", image_hw=(800, 1067), min_size=800, max_size=1333, batch=8, iters=10,
            warmup=3, num_images=16, infer_batches=(1, 8), num_workers=4, device="cuda", overrides={},
            detections=100)
# The RoI heads cost the same whatever the image size (1000 proposals through a 1024-wide box head,
# 100 masks through four 256-channel convolutions): a toy run shrinks them too.
DRY = dict(backbone="resnet18", image_hw=(64, 80), min_size=64, max_size=96, batch=2, iters=2, warmup=1,
           num_images=4, infer_batches=(1, 2), num_workers=0, device="cpu", detections=10, overrides={
               "model.fpn_dim": 32, "model.roi_heads.box_head_dim": 64, "model.roi_heads.mask_head_dim": 16,
               "model.rpn.pre_nms_topk_train": 200, "model.rpn.post_nms_topk_train": 100,
               "model.rpn.pre_nms_topk_test": 100, "model.rpn.post_nms_topk_test": 50,
               "model.roi_heads.batch_size_per_image": 32})


# ------------------------------------------------------------------------------------------ helpers


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(torch, device) -> float:
    """Peak GPU memory allocated since the last reset; on the CPU the process's peak RSS (whole run)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _low_precision(device) -> str:
    return "float16" if device.type == "cuda" else "bfloat16"


def make_dataset(workdir: Path, size: dict) -> dict:
    """The synthetic shapes set (train split only; its images also serve inference)."""
    from maskrcnn.data.shapes import generate_shapes_dataset

    return generate_shapes_dataset(workdir / "data", num_train=size["num_images"], num_val=0,
                                   image_size=size["image_hw"], max_objects=6, seed=0)


def load_images(paths: dict, limit: int):
    """(images [(3, H, W)] at their size, targets [dict]) of the first ``limit`` training images."""
    from maskrcnn.data.coco import CocoDataset

    data = CocoDataset(json_path=paths["train_json"], image_dir=paths["train_images"])
    items = [data[i] for i in range(min(limit, len(data)))]
    return [im for im, _ in items], [t for _, t in items]


def time_inference(torch, device, run_batch, images: list, batch: int) -> dict:
    """images/s of ``run_batch(list of images) -> detections`` over ``images`` in batches of ``batch``
    after one warm-up batch, and the peak memory of the timed part."""
    run_batch(images[:batch])  # warm-up: kernels, allocator, cuDNN autotuning
    _sync(torch, device)
    _reset_peak(torch, device)
    t0 = time.perf_counter()
    dets = []
    for start in range(0, len(images), batch):
        dets.extend(run_batch(images[start:start + batch]))
    _sync(torch, device)
    elapsed = time.perf_counter() - t0
    return {"images_per_s": len(images) / elapsed, "peak_mb": _peak_mb(torch, device),
            "detections": statistics.mean(len(d["boxes"]) for d in dets)}


def infer_row(impl: str, dtype, batch: int, r: dict = None, error: str = None) -> dict:
    """A table row for an inference measurement (``r`` from time_inference) or its failure."""
    row = dict(step=f"infer {dtype or 'float32'}", impl=impl, setting=f"batch {batch}", ok=error is None)
    if error is not None:
        return {**row, "result": error}
    return {**row, "peak_mb": r["peak_mb"],
            "result": f"{r['images_per_s']:.2f} images/s, {r['detections']:.0f} dets/image"}


# ------------------------------------------------------------------------------------------ ours


def check_ours(args, size: dict, paths: dict, workdir: Path) -> list:
    import torch

    from maskrcnn.config import load_config
    from maskrcnn.engine.logger import read_metrics
    from maskrcnn.engine.training import build_training
    from maskrcnn.predictor import Predictor

    device = torch.device(args.device)
    rows = []
    cfg = load_config(f"r{size['backbone'][len('resnet'):]}_fpn", {
        "solver.batch_size": size["batch"], "solver.iters": size["iters"], "solver.amp": True,
        "solver.checkpoint_period": 0, "solver.log_period": 1, "solver.warmup_iters": 0,
        "solver.lr": 0.01, "input.min_size": size["min_size"], "input.max_size": size["max_size"],
        "input.min_size_test": size["min_size"], "input.max_size_test": size["max_size"],
        "data.num_workers": size["num_workers"], "model.roi_heads.score_thresh": 0.0,
        "model.roi_heads.detections_per_image": size["detections"],
        # random weights: trained whole with batch norm, as torchvision's weights=None model is (frozen
        # parts over random weights are refused by build_training)
        "model.norm": "bn", "model.freeze_at": 0, **size["overrides"],
    })
    setting = f"R{size['backbone'][len('resnet'):]}-FPN, batch {size['batch']}, {size['min_size']} px"
    log = io.StringIO()
    try:
        _reset_peak(torch, device)
        trainer, cfg = build_training(cfg, train_json=paths["train_json"], train_images=paths["train_images"],
                                      output=workdir / "run", device=device, log_stream=log,
                                      trainer_kwargs={"tensorboard": False, "plot": False})
        result = trainer.train()
        _sync(torch, device)
        records = [r for r in read_metrics(workdir / "run" / "metrics.jsonl") if "loss" in r]
        if result["iteration"] != size["iters"] or len(records) != size["iters"]:
            raise RuntimeError(f"ran {result['iteration']} of {size['iters']} iterations")
        timed = [r["time"] for r in records[size["warmup"]:]] or [r["time"] for r in records]
        loss = records[-1]["loss"]
        if not loss == loss or loss in (float("inf"), float("-inf")):
            raise RuntimeError(f"non-finite loss {loss}")
        rows.append(dict(step="train (AMP)", impl="ours", setting=setting,
                         result=f"{statistics.median(timed):.3f} s/iter, loss {loss:.3f}",
                         peak_mb=_peak_mb(torch, device), ok=True))
    except Exception as e:
        rows.append(dict(step="train (AMP)", impl="ours", setting=setting, result=_failure(e, log), ok=False))
        return rows  # inference needs the trained model

    images, _ = load_images(paths, size["num_images"])
    model = trainer.model
    for batch in size["infer_batches"]:
        for dtype in ([None, _low_precision(device)] if batch > 1 else [None]):
            try:
                predictor = Predictor(model, cfg, device=device, batch_size=batch, dtype=dtype,
                                      optimise=not hasattr(model, "folded_norms"))
                r = time_inference(torch, device, predictor.predict_tensors, images, batch)
                rows.append(infer_row("ours", dtype, batch, r))
            except Exception as e:
                rows.append(infer_row("ours", dtype, batch, error=_failure(e)))
    return rows


def _failure(e: BaseException, log: io.StringIO = None) -> str:
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    print(text, file=sys.stderr)
    if log is not None and log.getvalue():
        print(log.getvalue()[-4000:], file=sys.stderr)
    return f"FAILED: {type(e).__name__}: {e}"[:200]


# ------------------------------------------------------------------------------------------ torchvision


def tv_worker(args, size: dict, paths: dict) -> None:
    """In a subprocess with torchvision: the same training steps and inference, rows as JSON lines."""
    import torch
    import torchvision
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    device = torch.device(args.device)
    torch.manual_seed(0)
    images, targets = load_images(paths, size["num_images"])
    num_classes = 1 + max(int(t["labels"].max()) for t in targets if len(t["labels"]))
    kwargs = dict(weights=None, weights_backbone=None, num_classes=max(num_classes, 2),
                  min_size=size["min_size"], max_size=size["max_size"], box_score_thresh=0.0,
                  box_detections_per_img=size["detections"])
    if size["backbone"] == "resnet50":
        model = maskrcnn_resnet50_fpn(**kwargs)
    else:  # dry run: the toy backbone
        from torchvision.models.detection import MaskRCNN
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        body = resnet_fpn_backbone(backbone_name=size["backbone"], weights=None, trainable_layers=3)
        model = MaskRCNN(body, **{k: v for k, v in kwargs.items() if not k.startswith("weights")})
    model.to(device).train()
    setting = f"torchvision {torchvision.__version__}"
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                          weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    b = size["batch"]
    ims = [im.to(device) for im in images[:b]]
    tgs = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets[:b]]
    times = []
    _reset_peak(torch, device)
    for _ in range(size["iters"]):
        _sync(torch, device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype):
            losses = model(ims, tgs)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        _sync(torch, device)
        times.append(time.perf_counter() - t0)
    timed = times[size["warmup"]:] or times
    print(json.dumps(dict(step="train (AMP)", impl="torchvision", setting=setting,
                          result=f"{statistics.median(timed):.3f} s/iter, loss {float(loss):.3f}",
                          peak_mb=_peak_mb(torch, device), ok=True)))
    model.eval()
    for batch in size["infer_batches"]:
        for dtype in ([None, _low_precision(device)] if batch > 1 else [None]):

            def run_batch(chunk, dtype=dtype):
                autocast = torch.autocast(device.type, dtype=getattr(torch, dtype or "float32"),
                                          enabled=dtype is not None)
                with torch.inference_mode(), autocast:
                    out = model([im.to(device) for im in chunk])
                # torchvision pastes masks inside the model; bring them to the CPU as Predictor does
                return [{k: v.float().cpu() for k, v in d.items()} for d in out]

            r = time_inference(torch, device, run_batch, images, batch)
            print(json.dumps(infer_row("torchvision", dtype, batch, r)))


def check_torchvision(args, paths: dict) -> list:
    python = args.tv_python or sys.executable
    probe = subprocess.run([python, "-c", "import torchvision"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["not importable"])[-1]
        return [dict(step="torchvision", impl="torchvision", setting="-",
                     result=f"skipped: torchvision not available to {python} ({last[:80]})", ok=None)]
    cmd = [python, str(Path(__file__).resolve()), "--tv-worker", "--device", args.device,
           "--paths", json.dumps(paths)] + (["--dry-run"] if args.dry_run else [])
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    if r.returncode != 0:
        print(r.stderr[-4000:], file=sys.stderr)
        last = (r.stderr.strip().splitlines() or ["failed"])[-1]
        rows.append(dict(step="torchvision", impl="torchvision", setting="-", result=f"FAILED: {last[:160]}",
                         ok=False))
    return rows


# ------------------------------------------------------------------------------------------ main


def print_table(rows: list, header: str) -> None:
    print(header)
    print(f"{'step':<16}{'impl':<13}{'setting':<30}{'peak MB':>9}  result")
    for r in rows:
        peak = f"{r['peak_mb']:.0f}" if r.get("peak_mb") is not None else "-"
        print(f"{r['step']:<16}{r['impl']:<13}{r['setting'][:29]:<30}{peak:>9}  {r['result']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU (seconds)")
    p.add_argument("--device", default=None, help="default: cuda, or cpu with --dry-run")
    p.add_argument("--tv-python", default=os.environ.get("TV_PYTHON"), help="a Python with torchvision")
    p.add_argument("--workdir", default=None, help="where the dataset and the run go (default: a temp dir)")
    p.add_argument("--tv-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--paths", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    size = DRY if args.dry_run else FULL
    args.device = args.device or size["device"]
    if args.tv_worker:
        tv_worker(args, size, json.loads(args.paths))
        return 0

    import torch

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: device {args.device} asked for but torch {torch.__version__} sees no CUDA device")
        return 1
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        workdir = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        paths = make_dataset(workdir, size)
        rows = check_ours(args, size, paths, workdir) + check_torchvision(args, paths)
        elapsed = time.perf_counter() - t0
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    mode = " --dry-run" if args.dry_run else ""
    print_table(rows, f"gpu_check{mode}: torch {torch.__version__} on {where}, "
                      f"{size['image_hw'][0]}x{size['image_hw'][1]} synthetic images, {elapsed:.0f} s")
    failed = [r for r in rows if r["ok"] is False]
    if failed:
        print(f"{len(failed)} step(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
