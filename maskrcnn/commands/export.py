"""``maskrcnn export``: export a checkpoint's feature extractor (backbone + FPN) for deployment.

    maskrcnn export --weights CKPT --output FILE [--format pt2|onnx] [--size 800x1088] [--no-optimise]

What is exported: the dense part of the network, ``features(batch)``: a normalised, padded batch
(N, 3, Hp, Wp) -> the FPN maps ``p2..p6`` (N, C, Hp/4, Wp/4) ... (N, C, Hp/64, Wp/64), with BN folded
into the convolutions. This is where almost all of the computation is. Proposal selection, NMS, RoI
pooling and the heads have data-dependent shapes and loops; they stay in Python (``maskrcnn.predictor``),
so an exported graph is a building block, not a drop-in replacement for the whole model.

Formats: ``pt2`` (``torch.export``; load with ``torch.export.load``; no extra dependency) and ``onnx``
(needs the ``onnx`` package: ``pip install maskrcnn[onnx]``). Shapes: N images, C = ``model.fpn_dim``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

HELP = "export a checkpoint (ONNX, TorchScript-free)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint to export")
    parser.add_argument("--output", required=True, help="output file (.pt2 or .onnx)")
    parser.add_argument("--format", choices=["pt2", "onnx"], default=None, help="default: from the suffix")
    parser.add_argument(
        "--size", default="800x1088", help="HxW of the example padded batch (multiples of 32)"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (onnx format only)")
    parser.add_argument("--no-optimise", action="store_true", help="keep BN layers unfolded")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


class FeatureExtractor(nn.Module):
    """``model.features`` as a module returning a tuple (export formats want tensors, not dicts)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        with torch.no_grad():
            names = list(model.features(torch.zeros(1, 3, 64, 64)).keys())
        self.names = names

    def forward(self, batch: torch.Tensor) -> tuple:
        feats = self.model.features(batch)
        return tuple(feats[n] for n in self.names)


def export_features(model: nn.Module, path, *, fmt: str, size_hw=(800, 1088), opset: int = 17) -> list:
    """Write ``model``'s feature extractor to ``path``; returns the output names (``p2``...)."""
    model.eval()
    wrapper = FeatureExtractor(model).eval()
    h, w = size_hw
    example = torch.zeros(2, 3, h, w)  # batch 2: an example batch of 1 would be specialised to 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pt2":
        batch = torch.export.Dim("batch", min=1, max=64)
        program = torch.export.export(wrapper, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise RuntimeError("ONNX export needs the onnx package: pip install 'maskrcnn[onnx]'") from None
        torch.onnx.export(
            wrapper, (example,), str(path), input_names=["images"], output_names=wrapper.names,
            opset_version=opset, dynamic_axes={"images": {0: "batch"}},
        )  # fmt: skip
    else:
        raise ValueError(f"unknown export format {fmt!r} (pt2 or onnx)")
    return wrapper.names


def run(args: argparse.Namespace) -> int:
    from maskrcnn.io_utils import check_output_file
    from maskrcnn.predictor import Predictor

    check_output_file(args.output, "--output")
    fmt = args.format or {".onnx": "onnx", ".pt2": "pt2"}.get(Path(args.output).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format from {args.output!r}: use --format pt2|onnx")
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size expects HxW, got {args.size!r}") from None
    if h % 32 or w % 32:
        raise ValueError(f"--size {args.size}: the model pads to multiples of 32; use such a size")
    # Winograd convolutions are a CPU-kernel choice of this library: an exported graph keeps plain
    # convolutions for the runtime to choose its own algorithm
    predictor = Predictor.from_checkpoint(
        args.weights, device="cpu", optimise=not args.no_optimise, winograd=False
    )
    names = export_features(predictor.model, args.output, fmt=fmt, size_hw=(h, w), opset=args.opset)
    print(
        f"wrote {args.output} ({fmt}): normalised batch (N, 3, {h}, {w}) -> {', '.join(names)}; "
        "proposals, NMS and the RoI heads stay in Python (maskrcnn.predictor)",
        file=sys.stderr,
    )
    return 0
