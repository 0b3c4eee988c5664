"""The dense part of the model as a ``torch.export`` program (``maskrcnn export --format pt2``).

``features(batch)``: a normalised, padded batch (N, 3, Hp, Wp) -> the FPN maps as a tuple in the order
of ``FeatureExtractor.names`` (``p2..p6``; a C4 model: its one map ``res4``, ``res5`` with
``model.roi_features=res5``), each (N, C, Hp / stride, Wp / stride). Only the batch size is dynamic
(1-64): Hp x Wp is the example's ``size_hw``, fixed (``torch.export`` specialises the graph to it and
refuses another size with a guard such as ``batch.size()[2] == 128``); pad each batch to it, or export
one program per size.
Proposals, NMS and the RoI heads stay in Python (``maskrcnn.predictor``).

The archive says how to make its input, in an extra file ``maskrcnn.json`` (``METADATA_FILE``; read it
with ``torch.export.load(path, extra_files={"maskrcnn.json": ""})``): ``input`` (RGB floats in
``pixel_range`` [0, 1], normalised as ``(image - pixel_mean) / pixel_std`` per channel, zero-padded at the
bottom and right to ``size_hw``, after ``resize``: the config's test sizes), ``outputs`` (each map's name
and stride), ``class_names`` and ``config`` (the checkpoint's, as the .onnx stores it). Without it a user
of the .pt2 alone had to guess the scale and the statistics, and a wrong guess gives plausible maps.
"""

from __future__ import annotations

import io
import json
import warnings

import torch
from torch import nn

from maskrcnn.io_utils import atomic_write_bytes

METADATA_FILE = "maskrcnn.json"
METADATA_VERSION = 1
MAX_BATCH = 64  # the dynamic batch dimension's upper bound


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

    def strides(self) -> list:
        """Each output's stride (input pixels per map cell), as the model's FPN or backbone declares it."""
        declared = self.model.fpn.strides if self.model.fpn is not None else self.model.backbone.strides
        return [int(declared[n]) for n in self.names]


def _shortest(values: torch.Tensor) -> list:
    """A float32 buffer's values as the shortest decimals that give them back (0.485, not 0.48500001...):
    numpy prints each at its own precision."""
    return [float(str(v)) for v in values.detach().flatten().cpu().numpy()]


def pt2_metadata(wrapper: FeatureExtractor, *, size_hw, cfg=None, class_names=None) -> dict:
    """What ``METADATA_FILE`` holds (see the module's doc). The mean and std are the model's own buffers,
    what ``preprocess`` applies (the config's ``model.pixel_mean`` / ``pixel_std``)."""
    model = wrapper.model
    meta = {
        "maskrcnn_format": "maskrcnn-pt2-features",
        "maskrcnn_format_version": METADATA_VERSION,
        "input": {
            "layout": "NCHW",
            "channels": "RGB",
            "pixel_range": [0.0, 1.0],
            "pixel_mean": _shortest(model.pixel_mean),
            "pixel_std": _shortest(model.pixel_std),
            "normalise": "(image - pixel_mean) / pixel_std, per channel",
            "size_hw": [int(size_hw[0]), int(size_hw[1])],
            "padding": "zeros at the bottom and right, after normalisation",
            "batch": [1, MAX_BATCH],
        },
        "outputs": [{"name": n, "stride": s} for n, s in zip(wrapper.names, wrapper.strides())],
    }
    if cfg is not None:
        meta["input"]["resize"] = {"min_size_test": int(cfg.input.min_size_test),
                                   "max_size_test": int(cfg.input.max_size_test)}
        meta["config"] = cfg.to_dict()
    if class_names is not None:
        meta["class_names"] = [str(c) for c in class_names]
    return meta


def export_features(model: nn.Module, path, *, size_hw=(800, 1088), cfg=None, class_names=None) -> dict:
    """Write ``model``'s feature extractor to ``path`` with ``torch.export``, with ``pt2_metadata`` as the
    archive's ``METADATA_FILE``; returns that metadata. (pt2 only; ONNX: ``maskrcnn.export.onnx_export``.)"""
    model.eval()
    wrapper = FeatureExtractor(model).eval()
    h, w = size_hw
    example = torch.zeros(2, 3, h, w)  # batch 2: an example batch of 1 would be specialised to 1
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.export.export(wrapper, (example,), dynamic_shapes=({0: batch},))
    meta = pt2_metadata(wrapper, size_hw=size_hw, cfg=cfg, class_names=class_names)
    buf = io.BytesIO()  # in memory, then written atomically: a failed save leaves no half file
    with warnings.catch_warnings():
        # torch's archive writer warns when weights that share one storage (views of one tensor) have no
        # whole tensor among them, and stores the first; it can only matter for weights off the CPU, and
        # the program is exported from the CPU here. Only that message, only around this call.
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, buf, extra_files={METADATA_FILE: json.dumps(meta, indent=1)})
    atomic_write_bytes(path, buf.getvalue())
    return meta
