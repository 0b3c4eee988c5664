"""An exported ONNX file run by onnxruntime, as the model behind ``Predictor`` (``predictor.py``).

Shapes: one resized image (3, h, w) float RGB in [0, 1]; D detections, M mask resolution (28),
J keypoints, Hk heatmap size (56).

``OnnxModel(path)`` reads the file's metadata (written by ``onnx_export.export_onnx``: the config, the
class names and the label -> category id map), so a file is all ``Predictor.from_onnx`` needs; no
checkpoint and no training code runs. Calling it on one resized image gives the model's detections in
that image's coordinates, the dict ``MaskRCNN`` returns (``boxes``, ``scores``, ``labels``,
``mask_probs`` (D, 1, M, M) (mask models), keypoints decoded from the graph's heatmaps by the same
``heatmaps_to_keypoints`` as in eager mode), so resizing back, pasting and writing are the
predictor's, shared with checkpoints. The file is data to onnxruntime: loading it runs no Python
code from it, and its metadata is parsed as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from maskrcnn.export import FORMAT, FORMAT_VERSION


class OnnxModelError(ValueError):
    """An ONNX file that is missing, unreadable or not written by ``maskrcnn export``."""


def cuda_provider_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _session(path: Path, device: torch.device, threads: Optional[int]):
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeError(
            f"{path}: running an ONNX file needs onnxruntime: pip install 'maskrcnn[onnx]'") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(f"{path}: device {device} asked, but this onnxruntime has no CUDA provider "
                               "(pip install onnxruntime-gpu)")
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise OnnxModelError(f"{path}: onnxruntime cannot load this file: {e}") from None


class OnnxModel:
    """One exported file; ``model(image)`` -> the detections dict of one resized image (see above).

    Attributes: ``cfg`` (``Config``), ``class_names`` (index = label), ``label_to_category_id``
    (dict or None), ``path``."""

    def __init__(self, path: Union[str, os.PathLike], *, device: Union[str, torch.device] = "cpu",
                 threads: Optional[int] = None):
        from maskrcnn.config import from_dict

        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxModelError(f"{self.path}: ONNX file not found")
        self.device = torch.device(device)
        self.session = _session(self.path, self.device, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("maskrcnn_format") != FORMAT:
            raise OnnxModelError(f"{self.path}: not an ONNX file written by `maskrcnn export` "
                                 f"(metadata field 'maskrcnn_format' is {meta.get('maskrcnn_format')!r})")
        if meta.get("maskrcnn_format_version") != str(FORMAT_VERSION):
            raise OnnxModelError(
                f"{self.path}: metadata field 'maskrcnn_format_version' is "
                f"{meta.get('maskrcnn_format_version')!r}; this library reads {FORMAT_VERSION}")
        fields = {}
        for key in ("config", "class_names", "label_to_category_id"):
            try:
                fields[key] = json.loads(meta[key])
            except (KeyError, ValueError) as e:
                raise OnnxModelError(
                    f"{self.path}: metadata field {key!r} is missing or not JSON ({e})") from None
        try:
            self.cfg = from_dict(fields["config"], stored=True)
        except (ValueError, TypeError) as e:
            raise OnnxModelError(f"{self.path}: metadata field 'config': {e}") from None
        self.class_names = [str(c) for c in fields["class_names"]]
        self.cfg.data.class_names = tuple(self.class_names)
        l2c = fields["label_to_category_id"]
        self.label_to_category_id = {int(k): int(v) for k, v in l2c.items()} if l2c else None
        self.output_names = [o.name for o in self.session.get_outputs()]
        missing = {"boxes", "labels", "scores"} - set(self.output_names)
        if missing:
            raise OnnxModelError(f"{self.path}: the graph has no output(s) {sorted(missing)}")

    def __call__(self, image: torch.Tensor) -> dict:
        """image (3, h, w) float in [0, 1] -> ``boxes`` (D, 4), ``scores`` (D,), ``labels`` (D,) int64,
        ``mask_probs`` (D, 1, M, M) (+ ``keypoints`` (D, J, 3), ``keypoint_scores`` (D, J)) as the model has
        them."""
        array = np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32)
        out = dict(zip(self.output_names, self.session.run(None, {"image": array})))
        det = {
            "boxes": torch.from_numpy(out["boxes"]),
            "scores": torch.from_numpy(out["scores"]),
            "labels": torch.from_numpy(out["labels"]).long(),
        }
        if "masks" in out:
            det["mask_probs"] = torch.from_numpy(out["masks"])
        if "keypoint_heatmaps" in out:
            from maskrcnn.modeling.keypoint_head import heatmaps_to_keypoints

            det["keypoints"], det["keypoint_scores"] = heatmaps_to_keypoints(
                torch.from_numpy(out["keypoint_heatmaps"]), det["boxes"],
                score=self.cfg.model.roi_heads.keypoint_score)
        return det
