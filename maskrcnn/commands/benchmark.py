"""``maskrcnn benchmark``: time inference of a checkpoint (or a preset with random weights).

    maskrcnn benchmark (--weights CKPT | --config PRESET_OR_YAML) [IMAGE_OR_DIR ...] [--size 800x1067]
                       [--images 5] [--batch-size 1] [--threads N] [--device D] [--dtype bfloat16]
                       [--no-optimise] [--no-winograd]

Times the path a user gets from ``Predictor`` (what ``predict`` and ``eval`` run: resize, model, masks
pasted at the image size) on the given image files, or on synthetic images of the given size, after one
warm-up batch, and prints seconds per image, images per second and the process's peak resident memory.
For the comparison with torchvision see ``benchmarks/inference.py``. Shapes: N images per batch, H x W
the image size.

torch is imported inside the functions that run: ``maskrcnn benchmark --help`` needs no torch.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from maskrcnn.commands.flag_options import NO_OPTIMISE_HELP

HELP = "time inference of a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--weights",
        help="checkpoint to time (train / convert / quantize: INT8), or an .onnx file written by export "
             "(run by onnxruntime)",
    )  # fmt: skip
    src.add_argument("--config", help="preset or YAML: time a randomly initialised model")
    parser.add_argument(
        "inputs", nargs="*", metavar="IMAGE_OR_DIR", help="time these images (default: synthetic ones)"
    )
    parser.add_argument("--size", default="800x1067", help="HxW of the synthetic images (default 800x1067)")
    parser.add_argument("--images", type=int, default=5, help="timed images (default 5)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--no-optimise", action="store_true",
                        help=NO_OPTIMISE_HELP)
    parser.add_argument("--no-winograd", action="store_true", help="direct 3x3 convolutions on CPU")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _size(text: str) -> tuple:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size expects HxW (e.g. 800x1067), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"--size must be positive, got {text!r}")
    return h, w


def build_predictor(args: argparse.Namespace):
    """The Predictor the options describe (a checkpoint, or a preset with seeded random weights)."""
    from maskrcnn.predictor import Predictor

    options = dict(
        device=args.device, optimise=not args.no_optimise, winograd=False if args.no_winograd else None,
        batch_size=args.batch_size, dtype=None if args.dtype == "float32" else args.dtype,
    )  # fmt: skip
    if args.weights:  # an .onnx file runs with onnxruntime, with --threads intra-op threads
        return Predictor.from_weights(args.weights, threads=args.threads or None, **options)
    import torch

    from maskrcnn.config import load_config
    from maskrcnn.modeling.mask_rcnn import build_model

    cfg = load_config(args.config)
    with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG untouched
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
    return Predictor(model, cfg, **options)


def load_images(args: argparse.Namespace) -> list:
    """(3, H, W) float images: the input files, or ``--images`` smooth random images of ``--size``."""
    if args.inputs:
        from maskrcnn.commands.predict import expand_inputs
        from maskrcnn.data.images import read_image

        return [read_image(path) for path in expand_inputs(args.inputs)]
    import torch

    h, w = _size(args.size)
    g = torch.Generator().manual_seed(0)
    # Smooth random images (upsampled noise) so the RPN sees structure rather than white noise.
    return [
        torch.nn.functional.interpolate(torch.rand(1, 3, h // 16 + 1, w // 16 + 1, generator=g), size=(h, w),
                                        mode="bilinear", align_corners=False)[0]
        for _ in range(args.images)
    ]  # fmt: skip


def time_inference(predictor, images: list) -> tuple:
    """(detections per image, seconds) of ``predictor`` on ``images``, after a warm-up on the first batch."""
    import torch

    dev = predictor.device

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    predictor.predict_tensors(images[: predictor.batch_size])  # warm-up
    sync()
    dets = []
    t0 = time.perf_counter()
    for start in range(0, len(images), predictor.window):
        dets.extend(predictor.predict_tensors(images[start : start + predictor.window]))
    sync()
    return dets, time.perf_counter() - t0


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)  # this process's choice, made on its command line
    if args.images < 1 or args.batch_size < 1:
        raise ValueError("--images and --batch-size must be >= 1")
    images = load_images(args)
    if not images:
        raise ValueError(f"no image files found in the inputs: {', '.join(map(str, args.inputs))}")
    predictor = build_predictor(args)
    dev = predictor.device
    dets, elapsed = time_inference(predictor, images)
    n_det = sum(int(d["boxes"].shape[0]) for d in dets)
    sizes = sorted({f"{im.shape[-2]}x{im.shape[-1]}" for im in images})
    size = sizes[0] if len(sizes) == 1 else f"{len(sizes)} sizes"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    engine = f"{args.dtype}{'' if args.no_optimise else ', optimised'}"
    if predictor.runtime:
        engine = "onnxruntime"
    elif predictor.int8_parts:
        engine = f"int8 ({', '.join(predictor.int8_parts)})"
    print(
        f"{predictor.cfg.model.backbone} fpn={predictor.cfg.model.fpn} on {dev} "
        f"({torch.get_num_threads()} threads), "
        f"{engine}, batch {args.batch_size}, {size}: "
        f"{elapsed / len(images):.3f} s/image ({len(images) / elapsed:.2f} images/s), "
        f"{n_det / len(images):.1f} detections/image, peak RSS {rss:.0f} MB",
        file=sys.stdout,
    )
    if dev.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MB")
    return 0
