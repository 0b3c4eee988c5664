"""The quantized engine of a command's process: ``maskrcnn quantize --engine`` and the INT8 file's own.

PyTorch's quantized engine (``torch.backends.quantized.engine``) is process-wide state, so library code
only reads it (``modeling/quantize.int8_engine``) and a ``Predictor`` refuses an INT8 file calibrated
under an engine that quantizes differently. A command owns its process, so it may choose: ``quantize
--engine NAME`` calibrates under NAME (``set_engine_from_args``), and ``predict`` / ``eval`` / ``serve`` /
``benchmark`` run an INT8 file under the engine it was calibrated under when this build offers it and
the current one would be refused (``use_file_engine``), saying so in one note.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

ENGINES = ("x86", "onednn", "fbgemm", "qnnpack")


def add_engine_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="PyTorch quantized engine to calibrate under (default: PyTorch's current one, "
                             "x86 on x86 CPUs); predict / eval / serve / benchmark run the file under it")


def offered_engines() -> list:
    """The quantized engines this PyTorch build and CPU offer."""
    import torch

    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


def set_engine_from_args(args) -> None:
    """``--engine NAME``: this process's quantized engine, refused when this build does not offer it."""
    import torch

    name = getattr(args, "engine", None)
    if name is None:
        return
    offered = offered_engines()
    if name not in offered:
        raise ValueError(f"--engine {name}: this PyTorch build or CPU does not offer it (it has "
                         f"{', '.join(offered)})")
    torch.backends.quantized.engine = name  # the command's own process: chosen on its command line


def file_engine(weights) -> Optional[str]:
    """The quantized engine an INT8 checkpoint records, or None (no file, an .onnx file, not INT8, or a
    file that cannot be read here: its loading says why)."""
    import torch

    from maskrcnn.engine.int8 import INT8_KEY
    from maskrcnn.interop.weights import split_ema

    if not weights:
        return None
    path = str(split_ema(str(weights))[0])
    if path.lower().endswith(".onnx"):
        return None
    try:  # mmap: the tensors are not read; weights_only: no code from the file runs
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # noqa: BLE001 -- the real load names the problem
        return None
    section = ckpt.get(INT8_KEY) if isinstance(ckpt, dict) else None
    saved = section.get("engine") if isinstance(section, dict) else None
    return saved if isinstance(saved, str) else None


def use_file_engine(weights, command: str) -> Optional[str]:
    """Set this process's quantized engine to the one ``weights`` (an INT8 file) was calibrated under,
    when the current one would be refused and this build offers it; prints one note and returns the
    engine set, else None (nothing changed)."""
    import torch

    from maskrcnn.engine.int8 import engine_problem

    saved = file_engine(weights)
    if saved is None or engine_problem(saved) is None:
        return None
    if saved not in offered_engines():
        return None  # the load refuses it, saying what to do
    current = torch.backends.quantized.engine
    torch.backends.quantized.engine = saved  # the command's own process
    print(f"maskrcnn {command}: note: {weights} was calibrated under the {saved!r} quantized engine: "
          f"running it under {saved!r} (this process had {current!r})", file=sys.stderr)
    return saved
