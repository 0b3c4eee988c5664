"""Write a checkpoint's whole model as one ONNX graph, with its config and class names as metadata.

Input ``image`` (3, H, W) float RGB in [0, 1], H and W dynamic (the image already resized as the
config's ``input.min_size_test`` / ``max_size_test`` say: the graph, like the model, never resizes).
Outputs: see ``onnx_model.py`` (D detections, D >= 0).

The graph is traced with torch's TorchScript-based exporter (``dynamo=False``): it records shape
arithmetic with dynamic sizes and takes ``symbolic`` functions for the two ONNX operators we need
(``onnx_ops.py``), and it needs no package beyond ``onnx``. The metadata (``metadata_props``) holds
``maskrcnn_format`` / ``maskrcnn_format_version``, ``config`` (the checkpoint's config as JSON),
``class_names`` (JSON list, index = label) and ``label_to_category_id`` (JSON, may be ``null``);
``onnx_runtime.OnnxModel`` reads them back, so a file is all ``predict`` needs.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import warnings
from typing import Optional, Union

import torch
from torch import nn

from maskrcnn.export import FORMAT, FORMAT_VERSION
from maskrcnn.export.onnx_model import OnnxMaskRCNN
from maskrcnn.export.onnx_ops import ONNX_OPSET, register_symbolics
from maskrcnn.io_utils import atomic_write_bytes


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise RuntimeError("ONNX export needs the onnx package: pip install 'maskrcnn[onnx]'") from None


def _torchscript_exporter() -> dict:
    """torch >= 2.5 has both exporters (``dynamo=True`` the default from 2.9); older ones only ours."""
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def export_onnx(
    model: nn.Module, cfg, class_names, path: Union[str, os.PathLike], *,
    label_to_category_id: Optional[dict] = None, example_hw: Optional[tuple] = None,
) -> list:
    """Trace ``model`` (a plain ``build_model`` model with its weights) and write ``path`` atomically.

    ``example_hw``: size of the image traced (default: the config's test size, 4:3); any size works at
    run time. Returns the output names."""
    require_onnx()
    import onnx

    model = model.eval()
    wrapper = OnnxMaskRCNN(model).eval()
    names = wrapper.output_names()
    if example_hw is None:
        side = int(cfg.input.min_size_test)
        example_hw = (side, min(int(cfg.input.max_size_test), side * 4 // 3))
    example = torch.rand((3, *example_hw), generator=torch.Generator().manual_seed(0))
    dynamic = {"image": {1: "height", 2: "width"}, **{n: {0: "detections"} for n in names}}
    register_symbolics()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about every shape it reads; those it must not freeze are traced as tensors
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper, (example,), buf, input_names=["image"], output_names=names, dynamic_axes=dynamic,
                opset_version=ONNX_OPSET, do_constant_folding=True, **_torchscript_exporter(),
            )  # fmt: skip
        except Exception as e:  # torch's messages run to pages (a whole graph); the first line says it
            first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
            raise RuntimeError(f"ONNX export failed: {first}") from e
    proto = onnx.load_from_string(buf.getvalue())
    meta = {
        "maskrcnn_format": FORMAT,
        "maskrcnn_format_version": str(FORMAT_VERSION),
        "config": json.dumps(cfg.to_dict()),
        "class_names": json.dumps([str(c) for c in class_names]),
        "label_to_category_id": json.dumps(
            {str(k): int(v) for k, v in label_to_category_id.items()} if label_to_category_id else None
        ),
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    atomic_write_bytes(path, proto.SerializeToString())
    return names
