"""Does cost grow with the work, or with the image? Time and peak memory of inference as images and
detections grow, and of one training step as ground-truth instances grow.

    python benchmarks/scaling.py [--cases infer-0.5mp,infer-2mp,...] [--threads 2] [--masks auto|dense|rle]
                                 [--before OTHER_CHECKOUT]

Every case runs in a fresh process, which reports its peak resident memory (``VmHWM`` of
/proc/self/status, read in the child, so the figure is that case's alone) and its RSS just before the
measured call (the "base": interpreter, model, input image / targets), so that the growth the call
itself causes is visible (the peak is read before anything else runs); time as wall-clock and as the
process's CPU time (all threads) of that call, and, for inference, "masks s": the fastest of three runs
of the step that grows with the photo alone (detections mapped back, masks pasted and encoded as COCO
results), the figure a busy shared machine disturbs least.

- ``infer-<P>mp`` / ``infer-<P>mp-<D>det``: a random-weight R18-FPN (the tiny test model's widths)
  whose RoI heads keep every detection (score threshold 0, NMS off), so it returns exactly D (100
  default) detections, on a random (3, H, W) float image of P megapixels (4:3). The model sees the
  image resized to 800 px, so its own cost is fixed: what grows with P is the resize, the mask pasting
  and the output. The measured call is what ``maskrcnn predict`` does per image: ``Predictor`` then
  COCO results with RLE masks. ``--masks rle`` asks the Predictor for compact RLE masks
  (``Predictor(masks="rle")``); ``dense`` for (D, H, W) bool masks encoded afterwards (the only way
  before compact masks existed); ``auto`` picks rle when the Predictor has it.
- ``tiled-<P>mp[-<D>det]``: the same, predicted in 1024-pixel tiles with 20 % overlap plus the whole
  image (``Predictor(tile=1024)``, ``engine/tiling.py``): every tile returns D detections, all merged
  (box-local masks), then the best ``detections_per_image`` (D) kept; the time grows with the tiles.
- ``train-<M>gt``: one forward + backward of the same model in training mode on one 800x1067 image
  with M ground-truth instances (random boxes, masks filled inside them, (M, H, W) bool as the data
  loader gives them; their memory, M x 0.85 MB, is in the base).

``--before DIR`` runs every case also against another checkout (e.g. ``git archive`` of an older
commit unpacked in DIR), alternately, for a before/after table: the script only uses APIs every version
has, and says which mask mode each run used. Shapes: D detections, M ground-truth instances, H x W the image.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

DEFAULT_CASES = (
    "infer-0.5mp,infer-2mp,infer-12mp,infer-48mp,infer-2mp-1000det,infer-12mp-1000det,"
    "train-10gt,train-100gt,train-1000gt"
)
TINY_WIDTHS = {
    "model.backbone": "resnet18",
    "model.num_classes": 3,
    "model.fpn_dim": 32,
    "model.roi_heads.box_head_dim": 64,
    "model.roi_heads.mask_head_dim": 16,
}


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _model(detections: int):
    import torch

    from maskrcnn.config import load_config
    from maskrcnn.modeling.mask_rcnn import build_model

    cfg = load_config("r50_fpn", {
        **TINY_WIDTHS,
        "model.roi_heads.score_thresh": 0.0,  # random weights: keep everything ...
        "model.roi_heads.nms_thresh": 1.0,  # ... and suppress nothing, so exactly D detections come out
        "model.roi_heads.detections_per_image": detections,
        "model.rpn.pre_nms_topk_test": 2000,
        "model.rpn.post_nms_topk_test": max(1000, detections),
        "input.min_size_test": 800,
        "input.max_size_test": 1333,
    })
    torch.manual_seed(0)
    return build_model(cfg), cfg


def _infer(megapixels: float, detections: int, masks_mode: str, tile=None) -> dict:
    import inspect

    import torch

    from maskrcnn.data.coco_results import detections_to_coco_results
    from maskrcnn.predictor import Predictor

    model, cfg = _model(detections)
    has_rle = "masks" in inspect.signature(Predictor.__init__).parameters
    if masks_mode == "auto":
        masks_mode = "rle" if has_rle else "dense"
    if masks_mode == "rle" and not has_rle:
        raise SystemExit("this checkout's Predictor has no masks='rle'")
    kwargs = {"masks": masks_mode} if has_rle else {}
    if tile is not None:
        if "tile" not in inspect.signature(Predictor.__init__).parameters:
            raise SystemExit("this checkout's Predictor has no tile")
        kwargs["tile"] = tile
    predictor = Predictor(model, cfg, device="cpu", optimise=True, **kwargs)
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    height = int(round(width * 3 / 4))
    g = torch.Generator().manual_seed(0)
    predictor.predict_tensors([torch.rand(3, 480, 640, generator=g)])  # warm-up at a small size
    image = torch.rand(3, height, width, generator=g)
    base = _status_mb("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    (det,) = predictor.predict_tensors([image])
    results = detections_to_coco_results(det, image_id=1)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_mb("VmHWM")
    out = {"size": f"{width}x{height}", "detections": len(results), "masks": masks_mode,
           "seconds": seconds, "cpu_seconds": cpu, "base_mb": base, "peak_mb": peak}
    if tile is None:  # (tiled, the masks step is spread over the tiles)
        out["masks_seconds"] = _masks_step_seconds(model, cfg, image, masks_mode)
    return out


def _masks_step_seconds(model, cfg, image, masks_mode: str, repeats: int = 3) -> float:
    """The part that grows with the photo, alone: the model's detections mapped to the original image,
    masks pasted and encoded as COCO results; the fastest of ``repeats`` runs (a busy machine only
    ever slows a run down)."""
    import torch

    from maskrcnn.data.coco_results import detections_to_coco_results
    from maskrcnn.data.transforms import resize_image
    from maskrcnn.modeling.postprocess import detections_to_original

    with torch.inference_mode():
        small = resize_image(image, min_size=int(cfg.input.min_size_test),
                             max_size=int(cfg.input.max_size_test), method=cfg.input.resize_method)
        (det,) = model([small])
        extra = {"mask_format": "rle"} if masks_mode == "rle" else {}
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = detections_to_original(det, tuple(small.shape[-2:]), tuple(image.shape[-2:]),
                                         mask_threshold=float(cfg.model.roi_heads.mask_threshold),
                                         paste_method=cfg.model.roi_heads.mask_paste, **extra)
            detections_to_coco_results(out, image_id=1)
            best = min(best, time.perf_counter() - t0)
            del out
    return best


def _train(instances: int) -> dict:
    import torch

    model, _ = _model(100)
    model.train()
    g = torch.Generator().manual_seed(0)
    height, width = 800, 1067
    xy = torch.rand(instances, 2, generator=g) * torch.tensor([width - 40.0, height - 40.0])
    wh = 8 + torch.rand(instances, 2, generator=g) * 300
    boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([width - 1.0, height - 1.0]))], dim=1)
    masks = torch.zeros(instances, height, width, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
        masks[i, y1:y2, x1:x2] = True
    target = {"boxes": boxes, "labels": torch.randint(1, 3, (instances,), generator=g), "masks": masks}
    image = torch.rand(3, height, width, generator=g)
    base = _status_mb("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    losses = model([image], [target], generator=torch.Generator().manual_seed(1))
    sum(losses.values()).backward()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"size": f"{width}x{height}", "instances": instances, "seconds": seconds, "cpu_seconds": cpu,
            "base_mb": base}


CASE_FORMS = "infer-<P>mp[-<D>det], tiled-<P>mp[-<D>det], train-<M>gt"


def parse_case(case: str) -> tuple:
    """A case name -> (kind, megapixels or None, detections or instances): ``("infer", 2.0, 100)``,
    ``("tiled", 48.0, 1000)``, ``("train", None, 10)``; ValueError naming the case and the forms otherwise."""
    parts = case.split("-")
    try:
        if parts[0] in ("infer", "tiled") and len(parts) in (2, 3) and parts[1].endswith("mp"):
            mp = float(parts[1].removesuffix("mp"))
            if len(parts) == 3 and not parts[2].endswith("det"):
                raise ValueError
            count = int(parts[2].removesuffix("det")) if len(parts) == 3 else 100
            if math.isfinite(mp) and mp > 0 and count > 0:
                return parts[0], mp, count
        elif parts[0] == "train" and len(parts) == 2 and parts[1].endswith("gt"):
            count = int(parts[1].removesuffix("gt"))
            if count > 0:
                return "train", None, count
    except ValueError:
        pass
    raise ValueError(f"unknown case {case!r} (the cases: {CASE_FORMS}, with positive numbers)")


def parse_cases(text: str) -> list:
    """``--cases`` -> the case names, every one checked by ``parse_case`` before any runs."""
    cases = [c.strip() for c in text.split(",") if c.strip()]
    if not cases:
        raise ValueError(f"--cases: none given (the cases: {CASE_FORMS})")
    for case in cases:
        parse_case(case)
    return cases


def run_case(case: str, threads: int, masks_mode: str) -> dict:
    import torch

    if threads:  # 0: torch's own choice
        torch.set_num_threads(threads)
    kind, mp, count = parse_case(case)
    if kind == "train":
        out = _train(count)
    else:
        out = _infer(mp, count, masks_mode, tile=1024 if kind == "tiled" else None)
    out.setdefault("peak_mb", _status_mb("VmHWM"))
    return out


def _run_child(case: str, args, pythonpath: str):
    """One case in a fresh interpreter whose ``maskrcnn`` comes from ``pythonpath`` -> (result, error)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH"))
                                                      if p))
    cmd = [sys.executable, __file__, "--case", case, "--threads", str(args.threads), "--masks", args.masks]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        killed = " (killed: out of memory?)" if proc.returncode == -9 else ""
        return None, f"failed, exit {proc.returncode}{killed}: {tail[:60]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads of each case, up to 4 x the cores; 0: torch's own choice")
    parser.add_argument("--masks", default="auto", choices=["auto", "dense", "rle"])
    parser.add_argument(
        "--before", metavar="DIR",
        help="another checkout (e.g. `git archive` of an older commit): each case runs with its maskrcnn "
        "first, then with this one's, alternately, so that a busy phase of the machine hits both alike",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.threads, args.masks)))
        return 0
    from maskrcnn.commands.benchmark import check_threads

    try:  # every case checked before the table starts: a typo is not found after an hour of cases
        cases = parse_cases(args.cases)
        # as maskrcnn benchmark: below 0 or above 4 x the cores refused (a huge count crashed torch's pool)
        oversubscribed = check_threads(args.threads)
    except ValueError as e:
        parser.error(str(e))
    if oversubscribed:
        print(f"warning: {oversubscribed}", file=sys.stderr)
    from maskrcnn.engine.device import cpu_name

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    versions = [("before", os.path.abspath(args.before))] if args.before else []
    versions.append(("after" if args.before else "this", here))
    threads = args.threads or "torch's default"  # each case's child chooses; torch not loaded here for it
    print(f"CPU: {cpu_name()}; {threads} threads; {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f} at the start; code: " + ", ".join(f"{n} = {d}" for n, d in versions))
    print(f"| {'case':<20} | {'code':<6} | {'size':>9} | {'n':>5} | {'masks':>5} | {'wall s':>7} | "
          f"{'CPU s':>7} | {'masks s':>7} | {'base MB':>7} | {'peak MB':>7} |")
    print(f"|{'-' * 22}|{'-' * 8}|{'-' * 11}|{'-' * 7}|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|"
          f"{'-' * 9}|")
    failed = 0
    for case in cases:
        for name, path in versions:
            r, error = _run_child(case, args, path)
            if error:
                failed += name != "before"  # a cliff of the old code is a finding, not a failure
                print(f"| {case:<20} | {name:<6} | {error}", flush=True)
                continue
            n = r.get("detections", r.get("instances"))
            masks_s = f"{r['masks_seconds']:.2f}" if "masks_seconds" in r else "-"
            print(f"| {case:<20} | {name:<6} | {r['size']:>9} | {n:>5} | {r.get('masks', '-'):>5} | "
                  f"{r['seconds']:>7.2f} | {r['cpu_seconds']:>7.2f} | {masks_s:>7} | {r['base_mb']:>7.0f} | "
                  f"{r['peak_mb']:>7.0f} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
