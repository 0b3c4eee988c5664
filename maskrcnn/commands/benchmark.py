"""``maskrcnn benchmark``: time inference of a checkpoint (or a preset with random weights).

    maskrcnn benchmark (--weights CKPT | --config PRESET_OR_YAML) [IMAGE_OR_DIR ...] [--size 800x1067]
                       [--images 5] [--batch-size 1] [--threads N] [--device D] [--dtype bfloat16]
                       [--no-optimise] [--no-winograd]

Times the path a user gets from ``Predictor`` (what ``predict`` and ``eval`` run: resize, model, masks
pasted at the image size) on the given image files, or on ``--images`` synthetic images of ``--size``,
after one warm-up batch, and prints seconds per image, images per second, how many images were timed,
their size (``HxW 1x300 (300 wide, 1 high)``: labelled, as ``predict`` prints sizes width first) and the
process's peak resident memory. Images are made (or read) one window at a time (the predictor's
window: one image at batch 1, else 4 batches, ``batch_size * WINDOW_BATCHES`` images, held together with
their detections)
and each window's detections are counted and dropped, so memory and s/image do not grow with the number
of images (they grow with ``--batch-size`` x 4 x H x W instead; ``--batch-size`` is at most
``MAX_BATCH_SIZE``, 64); only the model's calls are timed, not the reading. An input file that cannot be
read is skipped with a warning naming it and counted by reason as ``predict`` counts it
(``unreadable_image``; ``image_too_large``, a good file over the pixel limit, with the line saying the
limit and how to raise it); only inputs of which none can be read are refused.
So is a readable file the model fails on (``prediction_failed``; ``time_inference``: its window run
again without it), unless it is in the first batch, or every image of its window fails alone too: either
stops the run, with a note (a failure there, before anything has run, or on every image, is the model's
or the device's far more often than the files': every image would meet it).
``--size`` sides above ``size_arg.MAX_SIDE`` (4096) and ``--threads`` above 4 x the usable cores are
refused in one line; ``--threads 0`` (or leaving it out) is torch's own choice. For the comparison with
torchvision see ``benchmarks/inference.py``. Shapes: N images per batch, H x W the image size.

torch is imported inside the functions that run: ``maskrcnn benchmark --help`` needs no torch.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

from maskrcnn.commands.flag_options import NO_OPTIMISE_HELP
from maskrcnn.commands.size_arg import MAX_SIDE, parse_size

HELP = "time inference of a checkpoint"
DEFAULT_SIZE = "800x1067"
DEFAULT_IMAGES = 5
# More threads than this many per core only oversubscribes the cores (and a huge count makes torch's
# thread pool crash the process): refused rather than timed.
MAX_THREADS_PER_CORE = 4
# A window of batch_size x 4 images is held at once: at 64 and the largest --size (4096x4096) that is
# 256 float32 images, 51 GB; more than 64 per forward is refused in one line rather than left to the
# allocator.
MAX_BATCH_SIZE = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--weights",
        help="checkpoint to time (train / convert / quantize: INT8), or an .onnx file written by export "
             "(run by onnxruntime)",
    )  # fmt: skip
    src.add_argument("--config", help="preset or YAML: time a randomly initialised model")
    parser.add_argument(
        "inputs", nargs="*", metavar="IMAGE_OR_DIR",
        help="time these images, each once (default: synthetic ones; --images and --size are for those)",
    )  # fmt: skip
    parser.add_argument(
        "--size", default=None,
        help=f"HxW of the synthetic images (default {DEFAULT_SIZE}; each side at most {MAX_SIDE})",
    )  # fmt: skip
    parser.add_argument("--images", type=int, default=None,
                        help=f"how many synthetic images to time (default {DEFAULT_IMAGES})")
    parser.add_argument("--batch-size", type=int, default=1,
                        help=f"images per forward, 1 to {MAX_BATCH_SIZE} (default 1; up to 4 batches are "
                             "held at once)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (and onnxruntime's intra-op threads), up to 4 x the cores "
                             "(default, or 0: torch's own choice)")  # fmt: skip
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N or mps (default auto: CUDA when available; INT8 files: cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="float32 (default), or autocast of the network (backbone, FPN, RPN and RoI "
                             "heads) to bfloat16 / float16")
    parser.add_argument("--no-optimise", action="store_true", help=NO_OPTIMISE_HELP)
    parser.add_argument("--no-winograd", action="store_true", help="direct 3x3 convolutions on CPU")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the platform has one), else
    ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def check_threads(threads, cores=None):
    """``--threads`` refused (ValueError) below 0 or above ``MAX_THREADS_PER_CORE`` x ``cores`` (default
    ``usable_cores()``); returns a warning when it is above the core count, else None. None (not given)
    and 0 are torch's own choice."""
    if threads is not None and threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's own choice), got {threads}")
    if not threads:
        return None
    cores = cores or usable_cores()
    if threads > MAX_THREADS_PER_CORE * cores:
        limit = MAX_THREADS_PER_CORE * cores
        raise ValueError(f"--threads {threads}: at most {limit} ({MAX_THREADS_PER_CORE} x the {cores} cores "
                         "here)")
    if threads > cores:
        return (f"--threads {threads} is more than the {cores} cores here: the threads share cores, so the "
                "timing is slower and noisier than with one thread per core")
    return None


def build_predictor(args: argparse.Namespace):
    """The Predictor the options describe (a checkpoint, or a preset with seeded random weights)."""
    from maskrcnn.predictor import Predictor

    options = dict(
        device=args.device, optimise=not args.no_optimise, winograd=False if args.no_winograd else None,
        batch_size=args.batch_size, dtype=None if args.dtype == "float32" else args.dtype,
    )  # fmt: skip
    if args.weights:  # an .onnx file runs with onnxruntime, with --threads intra-op threads
        from maskrcnn.commands.int8_engine import use_file_engine
        from maskrcnn.commands.weights_args import no_config_kwargs, print_weights_notes

        use_file_engine(args.weights, "benchmark")  # an INT8 file: the engine it was calibrated under
        predictor = Predictor.from_weights(args.weights, threads=args.threads or None, **options,
                                           **no_config_kwargs("benchmark"))
        print_weights_notes(predictor, args.weights)
        return predictor
    import torch

    from maskrcnn.config import load_config
    from maskrcnn.modeling.mask_rcnn import build_model

    cfg = load_config(args.config)
    with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG untouched
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
    return Predictor(model, cfg, **options)


class SyntheticImages:
    """``count`` smooth random (3, H, W) images of ``size_hw``, made one at a time on each pass (the same
    images every pass): memory holds a batch of them, however many are timed."""

    def __init__(self, *, size_hw: tuple, count: int):
        self.size_hw, self.count = size_hw, count

    def __iter__(self):
        import torch

        h, w = self.size_hw
        g = torch.Generator().manual_seed(0)
        for _ in range(self.count):
            # Upsampled noise, so that the RPN sees structure rather than white noise.
            noise = torch.rand(1, 3, h // 16 + 1, w // 16 + 1, generator=g)
            yield torch.nn.functional.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[0]


class ImageFiles:
    """Image files read one at a time on each pass. A file that cannot be read is reported once, by
    ``on_unreadable(path, reason)`` (the reason names the file), and skipped on every pass; ``skipped``
    counts them, ``reasons`` by the key predict and eval count them under (``unreadable_image``,
    ``image_too_large``: a good file over the pixel limit). ``named()``: (path, image) pairs, so that a
    failure on an image can name its file."""

    def __init__(self, paths: list, *, on_unreadable):
        self.paths, self.on_unreadable = list(paths), on_unreadable
        self._unreadable = {}  # index into paths -> skip reason

    @property
    def skipped(self) -> int:
        return len(self._unreadable)

    @property
    def reasons(self) -> Counter:
        """{skip reason: files}, as ``data.images.reason_counts`` and ``too_large_line`` take them."""
        return Counter(self._unreadable.values())

    def __iter__(self):
        return (image for _, image in self.named())

    def named(self):
        from maskrcnn.data.images import ImageReadError, read_image, skip_reason

        for index, path in enumerate(self.paths):
            if index in self._unreadable:
                continue
            try:
                image = read_image(path)
            except (ImageReadError, OSError) as e:  # what predict and quantize skip
                self._unreadable[index] = skip_reason(e)
                self.on_unreadable(path, str(e))
                continue
            yield path, image


def _warn_unreadable(path, reason: str) -> None:
    text = reason if reason.startswith(str(path)) else f"{path}: {reason}"  # read errors name the file
    print(f"maskrcnn benchmark: warning: skipped {text}", file=sys.stderr)


def load_images(args: argparse.Namespace):
    """The images to time, as a re-iterable that makes or reads them one at a time: the input files
    (unreadable ones skipped with a warning, ``ImageFiles``), or ``--images`` synthetic images of
    ``--size`` (``SyntheticImages``)."""
    if args.inputs:
        from maskrcnn.commands.predict import expand_inputs

        return ImageFiles(expand_inputs(args.inputs), on_unreadable=_warn_unreadable)
    count = DEFAULT_IMAGES if args.images is None else args.images
    if count < 1:
        raise ValueError(f"--images must be >= 1, got {count}")
    size = DEFAULT_SIZE if args.size is None else args.size  # "" was given: refused, not the default
    return SyntheticImages(size_hw=parse_size(size, allocated="each synthetic image"), count=count)


@dataclass
class Timing:
    """What ``time_inference`` measured: images timed, their detections (a count: the detections
    themselves are dropped), the seconds of the model's calls, the image sizes seen ((H, W)), and the
    images the model failed on, left out (``failed``)."""

    images: int = 0
    failed: int = 0
    detections: int = 0
    seconds: float = 0.0
    sizes: set = field(default_factory=set)


def _named(images):
    """(name, image) pairs: an ``ImageFiles``' paths, else "image N" (1-based)."""
    named = getattr(images, "named", None)
    if callable(named):
        return named()
    return ((f"image {i}", image) for i, image in enumerate(images, 1))


def time_inference(predictor, images, *, on_detections=None, on_failure=None) -> Timing:
    """Time ``predictor.predict_tensors`` on ``images`` (an iterable of (3, H, W) images that can be
    iterated twice), one window (``predictor.window`` images) at a time, after a warm-up on the first
    batch. Only the calls are timed, not making or reading the images. Each window's detections are
    counted, handed to ``on_detections(images, detections)`` when given, and dropped: memory does not
    grow with the number of images.

    ``on_failure(name, error, stop=...)``: an image the model fails on is reported (``stop=None``), counted
    (``Timing.failed``) and left out. A one-image window that fails is that image's failure; a larger one
    is run again one image at a time, untimed, and the rest of it timed again as one call (a failure that
    no single image repeats is raised). The run stops (the error reported, then raised) when the warm-up
    batch fails (``stop="first"``; ``name``: its images), before anything has run, or when every image of
    a larger window fails alone too (``stop="window"``): either is the model's or the device's (a wrong
    device, out of memory), which every image would meet, far more often than the files'. Without
    ``on_failure`` every failure is raised."""
    import torch

    dev = predictor.device

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    warm_up = list(itertools.islice(_named(images), predictor.batch_size))
    if warm_up:
        try:
            predictor.predict_tensors([image for _, image in warm_up])
            sync()
        except Exception as e:
            if on_failure is not None:
                on_failure(_names(name for name, _ in warm_up), e, stop="first")
            raise
    del warm_up
    timing = Timing()
    stream = _named(images)
    while True:
        window = list(itertools.islice(stream, predictor.window))
        if not window:
            break
        dets = None
        try:
            dets, seconds = _timed_predict(predictor, window, sync)
        except Exception as e:
            if on_failure is None:
                raise
            if len(window) == 1:  # the failure is this image's: not run again
                on_failure(window[0][0], e, stop=None)
                timing.failed += 1
                continue
        if dets is None:  # retried out here: the error's traceback (the failed call's tensors) is gone
            window = _without_failures(predictor, window, sync, on_failure, timing)
            if not window:
                continue
            dets, seconds = _timed_predict(predictor, window, sync)
        timing.seconds += seconds
        timing.images += len(window)
        timing.detections += sum(int(d["boxes"].shape[0]) for d in dets)
        timing.sizes.update((int(im.shape[-2]), int(im.shape[-1])) for _, im in window)
        if on_detections is not None:
            on_detections([image for _, image in window], dets)
        del dets, window  # before the next window is made: one window's images and detections at a time
    return timing


def _timed_predict(predictor, window: list, sync) -> tuple[list, float]:
    """``window``'s (name, image) pairs predicted in one call: (detections, seconds of the call)."""
    t0 = time.perf_counter()
    dets = predictor.predict_tensors([image for _, image in window])
    sync()
    return dets, time.perf_counter() - t0


def _names(names) -> str:
    """The first name, and how many more: a window's names may be 256 paths."""
    names = [str(name) for name in names]
    return names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def _without_failures(predictor, window: list, sync, on_failure, timing: Timing) -> list:
    """``window``'s (name, image) pairs less those the model fails on alone (run untimed, one at a time),
    each reported by ``on_failure`` and counted in ``timing.failed``. When every one fails alone the last
    error is reported (``stop="window"``) and raised: a fault of the model or the device, not the files'."""
    kept, failed = [], []
    for name, image in window:
        try:
            predictor.predict_tensors([image])
            sync()
        except Exception as e:
            traceback.clear_frames(e.__traceback__)  # keep the error, not the failed call's tensors
            failed.append((name, e))
        else:
            kept.append((name, image))
    if not kept:
        error = failed[-1][1]
        on_failure(_names(name for name, _ in failed), error, stop="window")
        raise error
    for name, error in failed:
        on_failure(name, error, stop=None)
        timing.failed += 1
    return kept


def _note(text: str) -> None:
    print(f"maskrcnn benchmark: note: {text}", file=sys.stderr)


def _report_failure(name, error: BaseException, *, stop: str | None) -> None:
    """``time_inference``'s ``on_failure``: an image skipped, or why the run stops (the error itself is
    then printed as the command's error)."""
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    why = ("a failure there is the model's or the device's (every image would meet it) far more often than "
           "one file's")
    if stop == "first":
        _note(f"the model failed on the first batch ({name}), before anything was timed: stopped, as {why}")
    elif stop == "window":
        _note(f"the model failed on every image of a window ({name}), each alone too: stopped, as such a "
              "failure is the model's or the device's far more often than every file's")
    else:
        print(f"maskrcnn benchmark: warning: skipped {name}: the model failed on it ({reason})",
              file=sys.stderr)


def size_words(sizes) -> str:
    """The images' size for the result line: one (H, W) as "HxW 1x300 (300 wide, 1 high)", labelled
    because ``predict`` prints an image's size width first ("(300x1)") and ``--size`` is height first:
    bare, the two read as different images. Several: "3 sizes"."""
    if len(sizes) != 1:
        return f"{len(sizes)} sizes"
    (h, w), = sizes
    return f"HxW {h}x{w} ({w} wide, {h} high)"


def run(args: argparse.Namespace) -> int:
    import torch

    from maskrcnn.data.images import reason_counts, too_large_line

    oversubscribed = check_threads(args.threads)
    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"--batch-size must be 1 to {MAX_BATCH_SIZE}, got {args.batch_size} (a window of up "
                         "to 4 batches is held at once)")
    if args.inputs:
        given = (("--images", args.images), ("--size", args.size))
        ignored = [flag for flag, value in given if value is not None]
        if ignored:
            verb = "applies" if len(ignored) == 1 else "apply"
            _note(f"{' and '.join(ignored)} {verb} to synthetic images only: ignored, every readable input "
                  "file is timed once at its own size")
    images = load_images(args)
    if isinstance(images, ImageFiles):  # refused before the model is built when no file can be read
        if not images.paths:
            raise ValueError(f"no image files found in the inputs: {', '.join(map(str, args.inputs))}")
        if next(iter(images), None) is None:
            too_large = too_large_line(images.reasons)
            raise ValueError(f"none of the {len(images.paths)} input image file(s) could be read (each is "
                             f"named above: {reason_counts(images.reasons)})"
                             + (f"; {too_large}" if too_large else ""))
    if oversubscribed:
        print(f"maskrcnn benchmark: warning: {oversubscribed}", file=sys.stderr)
    if args.threads:  # None or 0: torch's own choice
        torch.set_num_threads(args.threads)  # this process's choice, made on its command line
    predictor = build_predictor(args)
    from maskrcnn.commands.flag_options import not_applying

    flags = [("--no-optimise", args.no_optimise), ("--no-winograd", args.no_winograd)]
    note = None  # predict's notes, the same words
    if predictor.int8_parts:
        note = not_applying(flags, "an INT8 file", "it always runs its INT8 kernels")
    elif predictor.runtime:
        note = not_applying(flags, "an .onnx file", "onnxruntime runs its graph as exported")
    if note:
        _note(note)
    dev = predictor.device
    timing = time_inference(predictor, images, on_failure=_report_failure)
    if timing.images == 0:  # every file became unreadable after the first look, or failed in the model
        raise ValueError("none of the input images could be timed: each was unreadable or failed in the "
                         "model (each is named above)")
    size = size_words(timing.sizes)
    # counted by reason as predict counts them: a file over the pixel limit is good, and the line after
    # says how to read it
    reasons = Counter(getattr(images, "reasons", {}))
    if timing.failed:
        reasons["prediction_failed"] += timing.failed
    skipped = f", {sum(reasons.values())} skipped ({reason_counts(reasons)})" if reasons else ""
    too_large = too_large_line(reasons)
    if too_large:
        print(too_large, file=sys.stderr)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    engine = f"{args.dtype}{'' if args.no_optimise else ', optimised'}"
    if predictor.runtime:
        engine = "onnxruntime"
    elif predictor.int8_parts:
        engine = f"int8 ({', '.join(predictor.int8_parts)})"
    n, elapsed = timing.images, timing.seconds
    print(
        f"{predictor.cfg.model.backbone} fpn={predictor.cfg.model.fpn} on {dev} "
        f"({torch.get_num_threads()} threads), "
        f"{engine}, batch {args.batch_size}, {n} image(s) timed{skipped}, {size}: "
        f"{elapsed / n:.3f} s/image ({n / elapsed:.2f} images/s), "
        f"{timing.detections / n:.1f} detections/image, peak RSS {rss:.0f} MB",
        file=sys.stdout,
    )
    if dev.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MB")
    return 0
