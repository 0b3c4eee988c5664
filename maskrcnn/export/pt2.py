"""The dense part of the model as a ``torch.export`` program (``maskrcnn export --format pt2``).

``features(batch)``: a normalised, padded batch (N, 3, Hp, Wp) -> the FPN maps as a tuple in the order
of ``FeatureExtractor.names`` (``p2..p6``; a C4 model: its one map ``res4``, ``res5`` with
``model.roi_features=res5``), each (N, C, Hp / stride, Wp / stride). Only the batch size is dynamic
(1-64): Hp x Wp is the example's ``size_hw``, fixed (``torch.export`` specialises the graph to it and
refuses another size with a guard such as ``batch.size()[2] == 128``); pad each batch to it, or export
one program per size.
Proposals, NMS and the RoI heads stay in Python (``maskrcnn.predictor``).
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from maskrcnn.io_utils import atomic_write_bytes


class FeatureExtractor(nn.Module):
    """``model.features`` as a module returning a tuple (export formats want tensors, not dicts).
    ``names``: the maps the heads read, as the model declares them (no forward run to learn them): the
    FPN's outputs, or the one backbone stage of a C4 / res5 model (its earlier stages are left out)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.names = list(model.rpn_in_features)  # every level the RPN and the RoI heads read

    def forward(self, batch: torch.Tensor) -> tuple:
        feats = self.model.features(batch)
        return tuple(feats[n] for n in self.names)


def export_features(model: nn.Module, path, *, size_hw=(800, 1088)) -> list:
    """Write ``model``'s feature extractor to ``path`` with ``torch.export``; returns the output names.
    (pt2 only; ONNX: ``maskrcnn.export.onnx_export``.)"""
    model.eval()
    wrapper = FeatureExtractor(model).eval()
    h, w = size_hw
    example = torch.zeros(2, 3, h, w)  # batch 2: an example batch of 1 would be specialised to 1
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(wrapper, (example,), dynamic_shapes=({0: batch},))
    buf = io.BytesIO()  # in memory, then written atomically: a failed save leaves no half file
    with warnings.catch_warnings():
        # torch's archive writer warns when weights that share one storage (views of one tensor) have no
        # whole tensor among them, and stores the first; it can only matter for weights off the CPU, and
        # the program is exported from the CPU here. Only that message, only around this call.
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, buf)
    atomic_write_bytes(path, buf.getvalue())
    return wrapper.names
