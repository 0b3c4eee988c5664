"""``maskrcnn export``: write a checkpoint for deployment.

    maskrcnn export --weights CKPT --output FILE [--format onnx|pt2] [--set KEY=VALUE ...] [--size HxW]
                    [--float]

``onnx``: the whole model in one graph (``maskrcnn.export.onnx_export``): normalisation and padding,
backbone, FPN, RPN with its NMS, RoI heads, class-specific box decoding, per-class NMS and the mask
head. Input ``image`` (3, H, W) float RGB in [0, 1], any H and W (resized as the config says: the
graph never resizes); outputs ``boxes`` (D, 4), ``labels`` (D,), ``scores`` (D,), ``masks``
(D, 1, 28, 28) (C4 models: 14 x 14) probabilities (+ ``keypoint_heatmaps`` (D, J, 56, 56) for
keypoint models), D >= 0.
The checkpoint's config (with the ``--set`` overrides, e.g. ``model.roi_heads.score_thresh``) and
class names go into the file's metadata, so ``maskrcnn predict --weights FILE.onnx`` needs nothing
else. Needs ``pip install 'maskrcnn[onnx]'``. ``--size``: the traced example's size (default: the
config's test size). ``--size`` sides above ``MAX_SIDE`` (4096, ``commands/size_arg.py``) are refused up
front, in one line.

A model that cannot become a graph is refused in one line naming the checkpoint, before tracing: an
INT8 checkpoint of ``maskrcnn quantize`` (``--float`` exports its float32 weights, without the
calibration), RoIPool heads. A flag that does nothing here is accepted with a one-line note saying so
(``--no-optimise`` with ONNX, whose graph is always traced from the plain model; ``--float`` on a
checkpoint that is not INT8), not silently. ``--output`` is written atomically (a failed export leaves
the old file, or none) and replaced if it exists, like every file the commands write, but never when it is the
``--weights`` file itself. A ``--format`` that contradicts the ``--output`` suffix (``--format pt2`` with
``x.onnx``, or the reverse) is refused; another suffix takes either format.

``pt2``: the dense part only, ``features(batch)``: a normalised, padded batch (N, 3, Hp, Wp) -> the
FPN maps ``p2..p6``, with BN folded (``torch.export``; load with ``torch.export.load``; written by
``maskrcnn.export.pt2``). Only N (1-64) is free: Hp x Wp is fixed at ``--size`` (torch.export
specialises the graph to it), so pad each batch to that size (zeros past the image, after
normalisation, as ``maskrcnn.predictor`` pads) or export one file per size. Normalised: RGB floats in
[0, 1], resized as the config says, then ``(x - model.pixel_mean) / model.pixel_std`` per channel. The
``wrote`` line says the mean and std and each output's stride, and the archive holds them (with the
resize sizes, the class names and the config) in its extra file ``maskrcnn.json`` (``maskrcnn.export.pt2``).

Everything that needs torch is imported in ``run``: ``maskrcnn export --help`` needs no torch.
"""


from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskrcnn.commands.size_arg import MAX_SIDE, parse_size
from maskrcnn.shell import shell_word

HELP = "export a checkpoint: the whole model as ONNX, or the feature extractor as pt2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True,
                        help="checkpoint to export (FILE#ema: the EMA copy 'model_ema' it keeps; a bare "
                             "state dict of ours with --config)")
    from maskrcnn.commands.weights_args import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--output", required=True, help="output file (.onnx or .pt2)")
    parser.add_argument("--format", choices=["onnx", "pt2"], default=None, help="default: from the suffix")
    parser.add_argument(
        "--size", default=None,
        help="HxW of the traced example (onnx: an image, default the config's test size; pt2: the padded "
        "batch, multiples of 32, default 800x1088, and fixed: the .pt2 takes only that HxW, any N; pad "
        f"to it or export one file per size); each side at most {MAX_SIDE}",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help="config overrides stored with the export (e.g. model.roi_heads.score_thresh=0.5)",
    )  # fmt: skip
    parser.add_argument("--no-optimise", action="store_true", help="pt2: keep BN layers unfolded")
    parser.add_argument("--float", action="store_true",
                        help="an INT8 checkpoint (maskrcnn quantize): export its float32 weights")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


# what export allocates at --size, for parse_size's message
ALLOCATED = "the traced example"


def run(args: argparse.Namespace) -> int:
    from maskrcnn.commands.weights_args import config_kwargs, print_weights_notes
    from maskrcnn.config import parse_set_args
    from maskrcnn.io_utils import check_output_file, check_output_not_input
    from maskrcnn.predictor import Predictor

    check_output_file(args.output, "--output")
    # before loading: a wrong size is refused in a second, not after the model is built
    size_hw = parse_size(args.size, allocated=ALLOCATED) if args.size else None
    from maskrcnn.export.onnx_runtime import is_onnx_file

    weights = Path(args.weights)
    if is_onnx_file(weights):
        raise ValueError(f"--weights {weights}: an exported ONNX file; export reads the checkpoint it came "
                         "from (run the .onnx itself with `maskrcnn predict --weights`)")
    check_output_not_input(args.output, args.weights, result="the export")  # a link or ./ spelling too
    by_suffix = {".onnx": "onnx", ".pt2": "pt2"}.get(Path(args.output).suffix.lower())
    if args.format and by_suffix and args.format != by_suffix:
        # a pt2 archive named .onnx would later be blamed as a cut-short ONNX file, and the reverse
        raise ValueError(f"--format {args.format} contradicts --output {args.output!r}, whose suffix says "
                         f"{by_suffix}: name the file .{args.format}, or drop --format")
    fmt = args.format or by_suffix
    if fmt is None:
        raise ValueError(f"cannot tell the format from {args.output!r}: use --format onnx|pt2")
    overrides = parse_set_args(args.set) or None
    if fmt == "onnx" and args.no_optimise:  # said now: the load and the tracing take a while
        print("note: --no-optimise applies to pt2 only: an ONNX export is always traced from the plain model "
              "(BN layers as the checkpoint has them)", file=sys.stderr)
    if fmt == "onnx":
        from maskrcnn.export.onnx_export import export_onnx, require_onnx
        from maskrcnn.export.onnx_model import export_problem

        require_onnx()  # before the minutes of loading and tracing
        # the plain model: the CPU speed-ups (Winograd, fused additions) are this library's kernels
        predictor = Predictor.from_checkpoint(args.weights, device="cpu", overrides=overrides, optimise=False,
                                              int8=False if args.float else None, keep_checkpoint=args.float,
                                              **config_kwargs(args))
        print_weights_notes(predictor, args.weights)
        _note_float_without_int8(predictor, args)
        if predictor.int8_parts:
            raise ValueError(f"{args.weights}: an INT8 checkpoint (written by `maskrcnn quantize`): "
                             "PyTorch's quantized kernels have no ONNX operators; add --float to export its "
                             "float32 weights (the calibration is not kept)")
        problem = export_problem(predictor.model)
        if problem:
            raise ValueError(f"{args.weights}: cannot export to ONNX: {problem}")
        names = export_onnx(
            predictor.model, predictor.cfg, predictor.source_class_names, args.output,  # as given
            label_to_category_id=predictor.label_to_category_id,
            example_hw=size_hw,
        )  # fmt: skip
        print(f"wrote {args.output} (onnx): image (3, H, W) -> {', '.join(names)}; run it with "
              f"`maskrcnn predict --weights {shell_word(args.output)} IMAGES --output DIR`",
              file=sys.stderr)  # quoted: "exp 葉/m#ema.onnx" pasted into a shell as it is
        return 0
    h, w = parse_size(args.size or "800x1088", multiple=32, allocated=ALLOCATED)
    predictor = Predictor.from_checkpoint(
        args.weights, device="cpu", overrides=overrides, optimise=not args.no_optimise, winograd=False,
        fused_add=False, int8=False if args.float else None, keep_checkpoint=args.float,
        **config_kwargs(args),
    )  # fmt: skip
    print_weights_notes(predictor, args.weights)
    _note_float_without_int8(predictor, args)
    if predictor.int8_parts:
        raise ValueError(f"{args.weights}: an INT8 checkpoint (written by `maskrcnn quantize`): add --float "
                         "to export its float32 weights (the calibration is not kept)")
    from maskrcnn.export.pt2 import METADATA_FILE, export_features

    meta = export_features(predictor.model, args.output, size_hw=(h, w), cfg=predictor.cfg,
                           class_names=predictor.source_class_names)  # as given, like the .onnx
    print(f"wrote {args.output} (pt2): {pt2_input_line(meta)}; N 1-64 is free, H x W is fixed at {h}x{w}: "
          "pad each batch to it (zeros past the image, after normalisation) or export again with --size HxW "
          "per size; proposals, NMS and the RoI heads stay in Python (maskrcnn.predictor); these settings "
          f"and the class names are in the archive's {METADATA_FILE}", file=sys.stderr)
    return 0


def pt2_input_line(meta: dict) -> str:
    """The pt2 archive's input and outputs in words, from its metadata: "batch (N, 3, H, W) of RGB in [0, 1]
    normalised as (x - mean) / std, mean (...), std (...) -> p2 (stride 4), ..."."""
    inp = meta["input"]
    lo, hi = (f"{v:g}" for v in inp["pixel_range"])
    h, w = inp["size_hw"]

    def numbers(values) -> str:
        return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"

    outputs = ", ".join(f"{o['name']} (stride {o['stride']})" for o in meta["outputs"])
    return (f"batch (N, 3, {h}, {w}) of {inp['channels']} in [{lo}, {hi}] normalised as (x - mean) / std, "
            f"mean {numbers(inp['pixel_mean'])}, std {numbers(inp['pixel_std'])} -> {outputs}")


def _note_float_without_int8(predictor, args: argparse.Namespace) -> None:
    """With ``--float``: one note when the checkpoint has no INT8 section (the flag changed nothing). The
    checkpoint was kept for this look only (``keep_checkpoint``): dropped, it is a second copy of the
    weights."""
    if not args.float:
        return
    from maskrcnn.engine.int8 import INT8_KEY

    int8 = INT8_KEY in (getattr(predictor, "checkpoint", None) or {})
    predictor.checkpoint = None
    if not int8:
        print(f"note: --float has no effect: {args.weights} is not an INT8 checkpoint (`maskrcnn quantize` "
              "writes those); its weights are exported as they are", file=sys.stderr)
