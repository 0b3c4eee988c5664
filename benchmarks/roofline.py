"""How fast could it be? The floating-point work of inference and of a training step, against this
machine's own matrix-product speed: the floor no exact float32 implementation of the same algorithms
goes below, and so the best speed-up over torchvision that is possible here.

    python benchmarks/roofline.py [--threads 2] [--size 800x1067] [--backbones resnet18,resnet50]
                                  [--inference-json I.json] [--train-json T.json]

Work is counted by ``torch.utils.flop_counter.FlopCounterMode`` (every convolution, matrix product and
batched product PyTorch dispatches, forward and backward; elementwise ops, RoIAlign's gathers, NMS and
mask pasting are not floating-point products and are left out, so the floors below are optimistic):

- inference: R50-FPN with the recipe weights of ``benchmarks/inference.py`` on its first image at
  ``--size``, through ``Predictor`` as built (every 3x3 convolution direct: the work torchvision does,
  the same layers on the same detections) and optimised (what ``predict`` runs: Winograd's F(4x4, 3x3)
  for the 3x3 convolutions of 128+ channels, its transforms counted too);
- training: one step of ``benchmarks/train_speed.py``'s setting (batch 2 at 320x427, the fine-tuning
  recipe), forward and backward, from torchvision's initial weights with ``--tv-python`` (the work
  ``train_speed.py --tv-python`` times: the RPN's proposals decide how many RoIs the mask head trains
  on), else from ours with the frozen norms set to the batch's statistics.

The machine's rate is the best float32 matrix-product rate at a few shapes (a large square product and
the (tiles x 256) @ (256 x 256) products of the Winograd and 1x1 layers), at ``--threads``, through
both of PyTorch's CPU engines: ``torch.mm`` (the BLAS, MKL on x86) and oneDNN (its matmul, the
operator of ``OneDnnLinear``); on AMD CPUs with AVX-512 MKL runs its AVX2 path at a third of oneDNN's rate
(``maskrcnn.ops.gemm_rates``). The floor is work / rate: the time if every product ran at that rate and
nothing else took any time. The optimised work is counted with Winograd's 3x3 convolutions, whether or
not this CPU's rates leave them out of ``Predictor``'s model (the floor of that algorithm).

With the JSON files of ``benchmarks/inference.py --json`` and ``benchmarks/train_speed.py --json`` run
on the same machine, their measured seconds are set beside the floors: the GFLOP/s each run reaches
and torchvision's time divided by our floor, the largest speed-up over torchvision that these
algorithms can reach on this machine in float32.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import inference as inference_bench  # noqa: E402  (benchmarks/inference.py: weights and images)
import train_speed as train_bench  # noqa: E402  (benchmarks/train_speed.py: model, batch, recipe)

# (M, K, N) float32 products timed for the machine's rate: a large square one and those of the
# Winograd chunks / 1x1 convolutions of 256 channels
GEMM_SHAPES = ((2048, 2048, 2048), (3350, 256, 256), (4096, 1024, 256), (1024, 256, 1024))


def gemm_rate(shapes=GEMM_SHAPES, *, repeats: int = 5, earlier: Optional[dict] = None) -> dict:
    """Best float32 matrix-product rate over ``shapes`` and both engines: {"gflops": best, "by_shape":
    {"MxKxN mm" / "MxKxN oneDNN": GFLOP/s}}. With ``earlier`` (a result of this function), each entry
    keeps the better of both: a virtual machine's speed drifts over minutes, and the floor is meant for
    its best."""
    from maskrcnn.ops.gemm_rates import best_seconds, onednn_matmul

    by_shape = dict(earlier["by_shape"]) if earlier else {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        b_t = b.t().contiguous()  # (N, K)
        engines = (("mm", lambda a=a, b=b: torch.mm(a, b)),
                   ("oneDNN", lambda a=a, b_t=b_t: onednn_matmul(a, b_t)))
        for engine, fn in engines:
            key = f"{m}x{k}x{n} {engine}"
            rate = 2 * m * k * n / best_seconds(fn, repeats) / 1e9
            by_shape[key] = max(by_shape.get(key, 0.0), rate)
    return {"gflops": max(by_shape.values()), "by_shape": by_shape}


def counted(fn) -> dict:
    """Run ``fn()`` under a FLOP counter: {"gflop": total, "by_op": {aten op: GFLOP}}."""
    with FlopCounterMode(display=False) as counter:
        fn()
    by_op = {str(op).replace("aten.", ""): v / 1e9 for op, v in counter.get_flop_counts()["Global"].items()}
    return {"gflop": counter.get_total_flops() / 1e9, "by_op": by_op}


def inference_work(size_hw) -> dict:
    """GFLOP of one R50-FPN image through Predictor: {"as built": ..., "optimised": ...}."""
    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model
    from maskrcnn.predictor import Predictor

    # the image is processed at its own size (for 800x1067 the preset's resize is a no-op too)
    cfg = apply_overrides(PRESETS["r50_fpn"](), {"model.num_classes": 91, "input.min_size_test": min(size_hw),
                                                  "input.max_size_test": max(size_hw)})
    image = inference_bench.load_images(size_hw)[0]
    # built and given the recipe's weights once (seconds of numpy for an R50); each Predictor gets a copy,
    # as the optimised one folds the norms of the model it is given
    built = build_model(cfg)
    keys_shapes = [(k, tuple(v.shape)) for k, v in built.state_dict().items()]
    built.load_state_dict(inference_bench.recipe_state_dict(keys_shapes), strict=True)
    work = {}
    for name, optimise in (("as built", False), ("optimised", True)):
        model = copy.deepcopy(built)
        # fused_add off: oneDNN's fused conv + add is the same products, under an op the counter
        # does not know
        # oneDNN's linear is an operator the counter does not know either: counted as the plain layer
        predictor = Predictor(model, cfg, device="cpu", batch_size=1, optimise=optimise, fused_add=False,
                              winograd=optimise, onednn_linear=False)
        dets = []
        work[name] = counted(lambda p=predictor, d=dets: d.append(p.predict_tensors([image])[0]))
        work[name]["detections"] = int(dets[0]["scores"].numel())
    return work


def torchvision_initial_weights(tv_python: str, backbone: str, path: str) -> None:
    """torchvision's initial weights for ``backbone`` as ``train_speed.py --tv-python`` makes them (seed
    0, frozen norms set to the batch's statistics), written to ``path``."""
    cmd = [tv_python, str(HERE / "train_speed.py"), "--worker", "--impl", "torchvision",
           "--backbone", backbone, "--save-state", path]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"could not build torchvision's {backbone} model with {tv_python}: "
                         f"{(r.stderr.strip().splitlines() or ['failed'])[-1]}")


def train_work(backbone: str, initial_weights: Optional[str] = None) -> dict:
    """GFLOP of one training step (forward + backward) of ``train_speed.py``'s setting for ``backbone``,
    from torchvision's ``initial_weights`` when given (then both libraries' steps train the same RoIs,
    as in ``train_speed.py --tv-python``), else from our own initialisation."""
    from maskrcnn.engine.training import place_for_training
    from maskrcnn.ops.onednn_linear import plain_linears

    torch.manual_seed(0)
    model = train_bench.build_ours(backbone, "cpu")
    images, targets = train_bench.synthetic_batch(torch, torch.device("cpu"))
    if initial_weights:
        train_bench.load_shared_weights(model, initial_weights)
    else:
        train_bench.normalise_frozen_norms(torch, model, images)
    model = place_for_training(model, "cpu")
    plain_linears(model)  # oneDNN's linear is an operator the FLOP counter does not know
    model.train()
    mask_rois = []
    model.roi_heads.mask_head.register_forward_hook(lambda m, inp, out: mask_rois.append(inp[0].shape[0]))

    def step():
        losses = model(images, targets)
        sum(losses.values()).backward()

    work = counted(step)
    work["mask_rois"] = mask_rois[-1] if mask_rois else 0
    return work


def _measured_inference(path) -> dict:
    """{"torchvision": s/image, "ours": s/image} from ``inference.py --json`` (fp32 runs only)."""
    out = {}
    try:
        for row in json.loads(Path(path).read_text()):
            name = str(row.get("name", ""))
            if name.startswith("torchvision") and "fp32" in name:
                out["torchvision"] = float(row["s_per_image"])
            elif name == "ours fp32-opt":
                out["ours"] = float(row["s_per_image"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(f"{path}: not the JSON benchmarks/inference.py --json writes ({e!r})") from None
    return out


def _measured_training(path) -> dict:
    """{backbone: {"torchvision": s/it, "ours": s/it}} from ``train_speed.py --json`` (float32 only)."""
    try:
        table = json.loads(Path(path).read_text())
        amp, rows = table.get("amp"), table["s_per_iter"].items()
        measured = {b: {k: float(v) for k, v in row.items() if k in ("torchvision", "ours") and v}
                    for b, row in rows}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(f"{path}: not the JSON benchmarks/train_speed.py --json writes ({e!r})") from None
    if amp:
        raise SystemExit(f"{path}: measured under bfloat16 autocast; the floors here are float32's")
    return measured


def _size(text: str) -> tuple:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size: expected HxW such as 800x1067, got {text!r}") from None
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"--size: at least 32x32, got {text!r}")
    return h, w


def _existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=_size, default=(800, 1067), help="inference image HxW")
    p.add_argument("--backbones", default="resnet18,resnet50", help="training steps to count ('' for none)")
    p.add_argument("--no-inference", action="store_true", help="count training only")
    p.add_argument("--inference-json", type=_existing_file, help="benchmarks/inference.py --json output")
    p.add_argument("--train-json", type=_existing_file, help="benchmarks/train_speed.py --json output")
    p.add_argument("--tv-python", default=os.environ.get("TV_PYTHON"),
                   help="a Python with torchvision: count the training steps from torchvision's initial "
                        "weights, as train_speed.py --tv-python measures them")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        p.error(f"--json {args.json}: its folder does not exist")
    if args.threads < 1:
        p.error(f"--threads: at least 1, got {args.threads}")
    backbones = [b for b in args.backbones.split(",") if b]
    for b in backbones:
        if b not in ("resnet18", "resnet50"):
            p.error(f"--backbones: resnet18 and/or resnet50, got {b!r}")
    measured_inf = _measured_inference(args.inference_json) if args.inference_json else {}
    measured_train = _measured_training(args.train_json) if args.train_json else {}
    torch.set_num_threads(args.threads)

    rate = gemm_rate()  # measured before and after the counting (see gemm_rate)
    inference = inference_work(args.size) if not args.no_inference else None
    training = {}
    with tempfile.TemporaryDirectory() as scratch:
        for backbone in backbones:
            initial = None
            if args.tv_python:
                initial = os.path.join(scratch, f"{backbone}.pt")
                torchvision_initial_weights(args.tv_python, backbone, initial)
            training[backbone] = train_work(backbone, initial)
    rate = gemm_rate(earlier=rate)
    peak = rate["gflops"]
    print(f"float32 matrix products (torch.mm and oneDNN), {args.threads} threads, "
          f"torch {torch.__version__}, CPU: {inference_bench._cpu_name()}, "
          "best of runs before and after the counting")
    print("  " + ", ".join(f"{s}: {g:.0f} GFLOP/s" for s, g in rate["by_shape"].items()))
    print(f"  rate used for the floors: {peak:.0f} GFLOP/s\n")
    result = {"gemm": rate, "threads": args.threads}

    header = (f"{'work':<34} {'GFLOP':>7} {'floor s':>8} {'measured s':>10} {'GFLOP/s':>8} "
              f"{'torchvision s':>13} {'tv / floor':>10}")

    def row(name, gflop, measured=None, tv=None, tv_gflop=None):
        floor = gflop / peak
        cells = [f"{name:<34}", f"{gflop:>7.1f}", f"{floor:>8.3f}",
                 f"{measured:>10.3f}" if measured else f"{'-':>10}",
                 f"{gflop / measured:>8.0f}" if measured else f"{'-':>8}",
                 f"{tv:>13.3f}" if tv else f"{'-':>13}",
                 f"{tv / floor:>9.2f}x" if tv else f"{'-':>10}"]
        print(" ".join(cells))
        if tv and tv_gflop:
            print(f"{'':<34} (torchvision: {tv_gflop:.1f} GFLOP in {tv:.3f} s = {tv_gflop / tv:.0f} GFLOP/s)")
        return {"gflop": gflop, "floor_s": floor, "measured_s": measured, "torchvision_s": tv,
                "best_speedup": tv / floor if tv else None}

    if inference is not None:
        h, w = args.size
        print(f"Inference, R50-FPN, one {h}x{w} image ({inference['optimised']['detections']} detections)")
        print(header)
        print("-" * len(header))
        direct, fast = inference["as built"]["gflop"], inference["optimised"]["gflop"]
        result["inference"] = {
            "work": inference,
            "as built": row("as built (direct 3x3, = torchvision)", direct),
            "optimised": row("optimised (Winograd F(4x4,3x3))", fast, measured_inf.get("ours"),
                             measured_inf.get("torchvision"), direct),
        }
        for name in ("as built", "optimised"):
            by_op = sorted(inference[name]["by_op"].items(), key=lambda kv: -kv[1])
            ops = ", ".join(f"{op} {g:.1f}" for op, g in by_op)
            print(f"  {name}: {ops} GFLOP")
        print()

    if training:
        print("Training step, batch 2 at 320x427, forward + backward, float32")
        print(header)
        print("-" * len(header))
        result["training"] = {}
        for backbone, work in training.items():
            m = measured_train.get(backbone, {})
            name = f"{backbone}-FPN ({work['mask_rois']} mask RoIs)"
            result["training"][backbone] = {"work": work, **row(name, work["gflop"], m.get("ours"),
                                                                m.get("torchvision"))}
        print()
    print("floor: GFLOP / the rate above; tv / floor: the most any exact float32 implementation of these\n"
          "algorithms could be faster than the torchvision run measured beside it, on this machine")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
