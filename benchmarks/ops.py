"""Benchmark of the detection ops, optionally side by side with torchvision's compiled kernels.

    python benchmarks/ops.py                      # ours only
    /path/to/python-with-torchvision benchmarks/ops.py   # adds torchvision and the ratio ours / tv
    python benchmarks/ops.py --device cuda --no-conv     # on a GPU, against torchvision's CUDA kernels

Cases (forward + backward where the op is trained): the box head's RoIAlign (512 RoIs per image x 2
images, 256 channels, 7x7, sampling 2) over an FPN pyramid P2-P5 of an 800x1088 input with the FPN
level assignment; the mask head's (128 RoIs per image, 14x14); the same at inference (forward only,
one image, 1000 / 100 RoIs, channels_last maps as the optimised model has them); RoIPool 7x7 on one
stride-16 map; NMS on 1k / 2k / 10k / 50k RPN-like boxes (clustered around objects, IoU 0.7, as per FPN
level after top-k) and the box head's batched NMS (3,000 boxes over 8 classes, IoU 0.5); pasting 100
28x28 masks into the image (torchvision's method, thresholded at 0.5). Then the 3x3
convolutions of R50-FPN at 800x1088 (inference): our Winograd F(4x4, 3x3) against torch's own direct
``conv2d`` (oneDNN on CPU; what torchvision runs), with the relative error of each against float64.
Times are medians of repeats. ``--device cuda`` runs every case on the GPU (synchronised around each
timed call); ``--image-size`` shrinks the cases for a quick check (``gpu_check.sh --dry-run``).

On a machine shared with other jobs, compare with ``--threads 1`` as well: torchvision's CPU kernels
are single-threaded, while our ops are made of multi-threaded torch operations whose thread
synchronisation stalls badly when the cores are oversubscribed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from maskrcnn.ops import MultiScaleRoIAlign, batched_nms, nms, roi_pool  # noqa: E402
from maskrcnn.ops.paste import paste_masks_in_image  # noqa: E402
from maskrcnn.ops.winograd import conv3x3_winograd, winograd_weight  # noqa: E402

try:
    import torchvision.ops as tv_ops
except ImportError:  # torchvision is optional: only for the side-by-side columns
    tv_ops = None

IMAGE_HW = (800, 1088)
LEVELS = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}


def _cpu_name() -> str:
    from maskrcnn.engine.device import cpu_name

    return cpu_name()


def random_boxes(n: int, gen: torch.Generator, min_side: float = 16.0,
                 max_side: float = 700.0) -> torch.Tensor:
    """Proposal-like boxes: log-uniform size, aspect ratio 1:2..2:1, clipped to the image -> (n, 4)."""
    h, w = IMAGE_HW
    side = torch.exp(torch.empty(n).uniform_(float(torch.tensor(min_side).log()),
                                             float(torch.tensor(max_side).log()), generator=gen))
    ratio = torch.exp(torch.empty(n).uniform_(-0.69, 0.69, generator=gen))
    bw, bh = side * ratio.sqrt(), side / ratio.sqrt()
    cx = torch.rand(n, generator=gen) * w
    cy = torch.rand(n, generator=gen) * h
    boxes = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return boxes


def rpn_like_boxes(n: int, gen: torch.Generator):
    """Boxes clustered around 30 objects (as RPN proposals are) and scores -> (n, 4), (n,)."""
    h, w = IMAGE_HW
    centers = torch.rand(30, 2, generator=gen) * torch.tensor([float(w), float(h)])
    sizes = torch.exp(torch.rand(30, 2, generator=gen) * 3 + 3)
    k = torch.randint(0, 30, (n,), generator=gen)
    c = centers[k] + torch.randn(n, 2, generator=gen) * sizes[k] * 0.3
    s = sizes[k] * torch.exp(torch.randn(n, 2, generator=gen) * 0.3)
    return torch.cat((c - s / 2, c + s / 2), 1), torch.rand(n, generator=gen)


def anchor_grid_boxes(stride: int, size: float, k: int, gen: torch.Generator):
    """The top-k of one FPN level's anchors (3 aspect ratios, jittered as decoded proposals are) by a
    smooth random objectness -> (k, 4), (k,): dense chains of overlapping boxes, as real RPN input."""
    h, w = IMAGE_HW[0] // stride, IMAGE_HW[1] // stride
    ys, xs = torch.meshgrid(torch.arange(h) * stride + stride / 2, torch.arange(w) * stride + stride / 2,
                            indexing="ij")  # (h, w) each
    boxes = torch.cat([torch.stack((xs - size / r ** 0.5 / 2, ys - size * r ** 0.5 / 2,
                                    xs + size / r ** 0.5 / 2, ys + size * r ** 0.5 / 2), -1).reshape(-1, 4)
                       for r in (0.5, 1.0, 2.0)])  # (3 h w, 4)
    objectness = torch.nn.functional.avg_pool2d(torch.randn(1, 3, h, w, generator=gen), 9, 1, 4).reshape(-1)
    boxes = boxes + torch.randn(boxes.shape, generator=gen) * (0.05 * size)
    scores, idx = objectness.topk(min(k, objectness.numel()))  # small images have fewer anchors
    return boxes[idx], scores


# set by --device; inputs are drawn on the CPU (the same values on every device), then moved
DEVICE = torch.device("cpu")


def on_device(t):
    """A tensor (or a dict / list of them) moved to the benchmark's device."""
    if isinstance(t, dict):
        return {k: on_device(v) for k, v in t.items()}
    if isinstance(t, (list, tuple)):
        return type(t)(on_device(v) for v in t)
    return t.to(DEVICE)


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def pooler_case(pooler_fn, features, boxes):
    feats = {k: v.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
             for k, v in features.items()}

    def run():
        out = pooler_fn(feats, boxes)
        out.backward(torch.ones_like(out))
        for v in feats.values():
            v.grad = None
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torchvision", action="store_true", help="require torchvision (auto if importable)")
    parser.add_argument("--skip-50k", action="store_true", help="skip NMS on 50k boxes (slow)")
    parser.add_argument("--nms-only", action="store_true", help="only the NMS cases")
    parser.add_argument("--no-conv", action="store_true", help="skip the 3x3 convolution cases")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--image-size", default="800x1088", help="HxW of the image the cases model")
    args = parser.parse_args()
    if args.torchvision and tv_ops is None:
        sys.exit("--torchvision given but torchvision is not importable in this Python")
    global DEVICE, IMAGE_HW
    try:
        h, w = (int(v) for v in args.image_size.lower().split("x"))
        if h < 32 or w < 32:
            raise ValueError
    except ValueError:
        sys.exit(f"--image-size: expected HxW of at least 32x32, got {args.image_size!r}")
    IMAGE_HW = (h, w)
    try:
        DEVICE = torch.device(args.device)
    except RuntimeError:
        sys.exit(f"--device: expected cpu, cuda or cuda:N, got {args.device!r}")
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: this Python's torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    where = (f"GPU {torch.cuda.get_device_name(DEVICE)}" if DEVICE.type == "cuda"
             else f"machine: {_cpu_name()}, {os.cpu_count()} logical CPUs")
    print(f"{where}; torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats} "
          f"(median), image {h}x{w}")
    if tv_ops is not None:
        import torchvision
        print(f"torchvision {torchvision.__version__} (compiled ops) on the same inputs")

    def add(name, ours_fn, tv_fn, repeats):
        ours = timed(ours_fn, repeats)
        tv = timed(tv_fn, repeats) if (tv_fn is not None and tv_ops is not None) else None
        ratio = f"{ours / tv:8.2f}" if tv else "       -"
        tv_s = f"{tv:10.1f}" if tv else "         -"
        print(f"{name:<44}{ours:10.1f}{tv_s}{ratio}", flush=True)

    print(f"{'case':<44}{'ours ms':>10}{'tv ms':>10}{'ratio':>8}")
    if not args.nms_only:
        roi_cases(gen, add, args.repeats)
        roi_inference_cases(gen, add, args.repeats)
    nms_cases(gen, add, args.repeats, args.skip_50k)
    if not args.nms_only:
        paste_cases(gen, add, args.repeats)
    if not args.nms_only and not args.no_conv:
        if DEVICE.type == "cpu":
            conv_cases(gen, args.repeats)
        else:  # Winograd is a CPU path; on a GPU cuDNN picks its own algorithm
            print("\n3x3 convolution cases: CPU only (skipped on this device)")


def roi_cases(gen, add, repeats) -> None:
    h, w = IMAGE_HW
    features = on_device({k: torch.randn(2, 256, h // s, w // s, generator=gen) for k, s in LEVELS.items()})
    features_cl = {k: v.contiguous(memory_format=torch.channels_last) for k, v in features.items()}
    for label, per_image, size, min_side, max_side, feats in (
            ("RoIAlign box head fwd+bwd (2x512, 7x7)", 512, 7, 16.0, 700.0, features),
            ("  same, channels_last features", 512, 7, 16.0, 700.0, features_cl),
            ("RoIAlign mask head fwd+bwd (2x128, 14x14)", 128, 14, 32.0, 500.0, features)):
        boxes = on_device([random_boxes(per_image, gen, min_side, max_side) for _ in range(2)])
        ours = MultiScaleRoIAlign(featmap_names=list(LEVELS), strides=LEVELS, output_size=size,
                                  sampling_ratio=2)
        ours_fn = pooler_case(lambda f, b, m=ours: m(f, b), feats, boxes)
        tv_fn = None
        if tv_ops is not None:
            tv = tv_ops.MultiScaleRoIAlign(featmap_names=list(LEVELS), output_size=size, sampling_ratio=2)
            tv_fn = pooler_case(lambda f, b, m=tv: m(f, b, [IMAGE_HW, IMAGE_HW]), feats, boxes)
        add(label, ours_fn, tv_fn, repeats)

    c4 = on_device(torch.randn(2, 256, h // 16, w // 16, generator=gen))
    rois = on_device(torch.cat([torch.cat((torch.full((512, 1), float(i)), random_boxes(512, gen)), 1)
                                for i in range(2)]))

    def pool_case(fn):
        x = c4.clone().requires_grad_(True)

        def run():
            out = fn(x, rois, 7, 1.0 / 16)
            out.backward(torch.ones_like(out))
            x.grad = None
        return run
    add("RoIPool fwd+bwd (1024 RoIs, 7x7, stride 16)", pool_case(roi_pool),
        pool_case(tv_ops.roi_pool) if tv_ops is not None else None, repeats)


def roi_inference_cases(gen, add, repeats) -> None:
    """Forward only, no autograd, one image, channels_last maps: the pooler as the predictor runs it."""
    h, w = IMAGE_HW
    cl = torch.channels_last
    feats = on_device({k: torch.randn(1, 256, h // s, w // s, generator=gen).contiguous(memory_format=cl)
                       for k, s in LEVELS.items()})
    for label, count, size, min_side, max_side in (
            ("RoIAlign box head inference (1000, 7x7)", 1000, 7, 16.0, 700.0),
            ("RoIAlign mask head inference (100, 14x14)", 100, 14, 32.0, 500.0)):
        boxes = on_device([random_boxes(count, gen, min_side, max_side)])
        ours = MultiScaleRoIAlign(featmap_names=list(LEVELS), strides=LEVELS, output_size=size,
                                  sampling_ratio=2)
        tv_fn = None
        if tv_ops is not None:
            tv = tv_ops.MultiScaleRoIAlign(featmap_names=list(LEVELS), output_size=size, sampling_ratio=2)
            tv_fn = torch.inference_mode()(lambda m=tv, b=boxes: m(feats, b, [IMAGE_HW]))
        add(label, torch.inference_mode()(lambda m=ours, b=boxes: m(feats, b)), tv_fn, repeats)


def paste_cases(gen, add, repeats) -> None:
    """100 detections' 28x28 mask probabilities pasted into the image and thresholded at 0.5, as the
    predictor returns full-size masks (torchvision's method, which its own paste implements)."""
    boxes = on_device(random_boxes(100, gen, 16.0, 700.0 * min(IMAGE_HW) / 800))
    probs = on_device(torch.rand(100, 1, 28, 28, generator=gen))
    tv_fn = None
    if tv_ops is not None:
        from torchvision.models.detection.roi_heads import paste_masks_in_image as tv_paste

        def tv_fn():
            return tv_paste(probs, boxes, IMAGE_HW, padding=1) > 0.5
    with torch.inference_mode():
        add("paste 100 masks 28x28, threshold 0.5", lambda: paste_masks_in_image(probs, boxes, IMAGE_HW,
                                                                                 threshold=0.5),
            tv_fn, repeats)


def conv_cases(gen, repeats) -> None:
    """R50-FPN's stride-1 3x3 convolutions of >= 128 channels at 800x1088, one image (N=1) or the mask
    head's 100 RoIs: Winograd vs torch's direct convolution, both channels_last."""
    h, w = IMAGE_HW
    cases = [
        ("res3 3x3 128ch (x3)", 1, 128, h // 8, w // 8),
        ("res4 3x3 256ch (x5)", 1, 256, h // 16, w // 16),
        ("res5 3x3 512ch (x2)", 1, 512, h // 32, w // 32),
        ("FPN/RPN 3x3 256ch P2 (x2)", 1, 256, h // 4, w // 4),
        ("FPN/RPN 3x3 256ch P3 (x2)", 1, 256, h // 8, w // 8),
        ("mask head 3x3 256ch 100x14x14 (x4)", 100, 256, 14, 14),
    ]
    print(f"\n{'3x3 convolution, inference':<44}{'ours ms':>10}{'direct ms':>10}{'ratio':>8}"
          f"{'err ours':>10}{'err direct':>11}")
    for label, n, c, hh, ww in cases:
        x = torch.randn(n, c, hh, ww, generator=gen).contiguous(memory_format=torch.channels_last)
        weight = (torch.randn(c, c, 3, 3, generator=gen) / (9 * c) ** 0.5).contiguous(
            memory_format=torch.channels_last)
        bias = torch.randn(c, generator=gen)
        wt = winograd_weight(weight)

        def run_ours(x=x, wt=wt, bias=bias):
            return conv3x3_winograd(x, wt, bias)

        def run_direct(x=x, weight=weight, bias=bias):
            return torch.nn.functional.conv2d(x, weight, bias, padding=1)

        with torch.inference_mode():
            ours, direct = timed(run_ours, repeats), timed(run_direct, repeats)
            ref = torch.nn.functional.conv2d(x.double(), weight.double(), bias.double(), padding=1)
            scale = ref.abs().max()
            err_ours = float((run_ours().double() - ref).abs().max() / scale)
            err_direct = float((run_direct().double() - ref).abs().max() / scale)
        print(f"{label:<44}{ours:10.1f}{direct:10.1f}{ours / direct:8.2f}{err_ours:10.1e}{err_direct:11.1e}",
              flush=True)


def nms_cases(gen, add, repeats, skip_50k) -> None:
    for n in (1000, 2000, 10000, 50000):
        if n == 50000 and skip_50k:
            continue
        boxes, scores = on_device(rpn_like_boxes(n, gen))
        reps = max(repeats, 11) if n <= 2000 else (repeats if n <= 10000 else 1)
        add(f"NMS {n} RPN-like boxes, IoU 0.7", lambda b=boxes, s=scores: nms(b, s, 0.7),
            (lambda b=boxes, s=scores: tv_ops.nms(b, s, 0.7)) if tv_ops is not None else None, reps)
    for stride, size in ((4, 32), (16, 128)):
        boxes, scores = on_device(anchor_grid_boxes(stride, size, 2000, gen))
        tv_fn = (lambda b=boxes, s=scores: tv_ops.nms(b, s, 0.7)) if tv_ops is not None else None
        add(f"NMS 2000 anchor-grid boxes (s{stride}), IoU 0.7", lambda b=boxes, s=scores: nms(b, s, 0.7),
            tv_fn, max(repeats, 11))
    # box head: per-class NMS of the boxes above the score threshold, a few classes per image
    boxes, scores = on_device(rpn_like_boxes(3000, gen))
    labels = on_device(torch.randint(1, 9, (3000,), generator=gen))
    add("batched NMS 3000 boxes, 8 classes, IoU 0.5",
        lambda: batched_nms(boxes, scores, labels, 0.5),
        (lambda: tv_ops.batched_nms(boxes, scores, labels, 0.5)) if tv_ops is not None else None,
        max(repeats, 11))


if __name__ == "__main__":
    main()
