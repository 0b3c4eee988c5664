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

A file that cannot serve is refused at load, in one line naming it and what is wrong (``OnnxModelError``):
not ONNX or cut short, external data (``*.onnx.data``) missing or cut short, another program's graph
(no ``maskrcnn_format`` metadata, or not one ``image`` input (3, H, W) float), metadata fields of the
wrong type (``config`` an object, ``class_names`` a list of num_classes strings, ``label_to_category_id``
an object of integers or null). onnxruntime's own log of a failed load is silenced: the error says it.

An image onnxruntime fails on (a node's error, memory) raises ``OnnxRunError``, a ``RuntimeError`` like
the PyTorch model's failures: onnxruntime's own types (``Fail``, ``InvalidArgument``, ...) derive from
``Exception`` only, so they would escape the places that skip and count an image the model fails on
(``engine/inference.predict_files_skipping``: predict, eval), which catch the model's error types.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from maskrcnn.export import FORMAT, FORMAT_VERSION


class OnnxModelError(ValueError):
    """An ONNX file that is missing, unreadable or not written by ``maskrcnn export``."""


class OnnxRunError(RuntimeError):
    """onnxruntime failed on one image (the file loaded): its message in one line, the image's size named."""


def is_onnx_file(path: Union[str, os.PathLike]) -> bool:
    """``path`` ends in ``.onnx``, or is a file whose first bytes are an ONNX model's (its ``ir_version``
    field: tag 0x08, a version 1..127; checkpoints start with ``PK`` (zip) or 0x80 (pickle)), whatever
    its name (``model.bin``). Never a safetensors file, whose header length may start with the same two
    bytes (0x08 0x01: a 264-byte header)."""
    from maskrcnn.safetensors_io import is_safetensors

    path = Path(path)
    if is_safetensors(path):  # (by its bytes, whatever its name)
        return False
    if path.suffix.lower() == ".onnx":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x08 and 1 <= head[1] < 0x80


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
    # errors only as exceptions (worded below): onnxruntime would also log a failed load to stderr itself
    options.log_severity_level = 4
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
        raise OnnxModelError(f"{path}: {_load_problem(path, str(e))}") from None


def _external_data_problem(path: Path) -> Optional[str]:
    """What is wrong with the external data files a graph names (missing, or shorter than a tensor's
    offset + length), read with ``onnx`` without loading the data; None when all is there (or ``onnx``
    is not installed)."""
    try:
        import onnx
        from onnx.external_data_helper import ExternalDataInfo, uses_external_data
    except ImportError:
        return None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx's parser raises its own types: not ours to word again
        return None
    for tensor in proto.graph.initializer:  # where exporters put weights (ours, onnx.save)
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        location = Path(info.location)
        data = path.parent / location
        if location.is_absolute() or ".." in location.parts:
            # onnxruntime reads external data only beside the graph: said as it is, whatever is there
            return (f"its external data path {info.location!r} (tensor {tensor.name!r}) leads outside the "
                    "folder of the .onnx (an absolute path or '..'): onnxruntime reads external data only "
                    "from beside the .onnx")
        if data.exists() and not data.is_file():
            return (f"its external data {data} (tensor {tensor.name!r}) is not a regular file (a folder, a "
                    "device or a pipe): refused")
        if not data.is_file():
            return (f"its external data file {data} (tensor {tensor.name!r}) is missing: keep it beside the "
                    ".onnx")
        end = (info.offset or 0) + (info.length or 0)
        size = data.stat().st_size
        if end > size:
            return (f"its external data file {data} is cut short ({size} bytes; tensor {tensor.name!r} ends "
                    f"at byte {end})")
    return None


def _load_problem(path: Path, message: str) -> str:
    """onnxruntime's load error -> one line for a user."""
    if "Protobuf parsing failed" in message or "No graph was found" in message:
        return "not an ONNX file, or one cut short (its protobuf cannot be parsed)"
    if "xternal" in message:  # "External data path ...", "External initializer ..."
        problem = _external_data_problem(path)
        if problem:
            return problem
    message = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", message)  # ort's status prefix
    message = re.sub(r"Load model from .*? failed:", "", message)  # it names the file, as we do
    return "onnxruntime cannot load this file: " + " ".join(_without_source_locations(message).split())


def _run_problem(message: str) -> str:
    """onnxruntime's error while running -> one line: without its status prefix and C++ places."""
    message = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", message)
    message = re.sub(r"Non-zero status code returned while running (\w+) node\. Name:('[^']*') Status "
                     r"Message:", r"\1 node \2:", message)  # -> "Reshape node '/Reshape_53': ..."
    return " ".join(_without_source_locations(message).split()) or "no message"


def _without_source_locations(message: str) -> str:
    """onnxruntime's message without the C++ places it came from: "x.cc:79 void onnxruntime::F(const
    std::function<bool(int)>&) text" and "x.cc:2201 GetData text" -> "text"."""
    while True:
        place = re.search(r"\S+\.(?:cc|h):\d+ ", message)
        if place is None:
            return message
        rest = message[place.end():]
        paren = rest.find("(")
        if paren >= 0 and "::" in rest[:paren]:  # a C++ signature: skip to its closing parenthesis
            depth, i = 0, paren
            for i in range(paren, len(rest)):
                depth += {"(": 1, ")": -1}.get(rest[i], 0)
                if depth == 0:
                    break
            rest = re.sub(r"^\s*const\b", "", rest[i + 1:])
        else:  # a plain function name
            rest = rest.split(" ", 1)[1] if " " in rest else ""
        message = message[:place.start()] + rest.lstrip()


def _metadata(path: Path, meta: dict) -> dict:
    """The JSON fields of our metadata, each checked for its type."""
    fields = {}
    for key, kind, what in (("config", dict, "an object"), ("class_names", list, "a list"),
                            ("label_to_category_id", (dict, type(None)), "an object or null")):
        try:
            fields[key] = json.loads(meta[key])
        except (KeyError, ValueError) as e:
            raise OnnxModelError(f"{path}: metadata field {key!r} is missing or not JSON ({e})") from None
        if not isinstance(fields[key], kind):
            raise OnnxModelError(f"{path}: metadata field {key!r} must be {what}, got "
                                 f"{type(fields[key]).__name__}")
    if not all(isinstance(c, str) for c in fields["class_names"]):
        raise OnnxModelError(f"{path}: metadata field 'class_names' must be a list of strings")
    l2c = fields["label_to_category_id"]
    try:
        fields["label_to_category_id"] = {int(k): int(v) for k, v in l2c.items()} if l2c else None
    except (TypeError, ValueError):
        raise OnnxModelError(f"{path}: metadata field 'label_to_category_id' must map labels to integer "
                             f"category ids, got {json.dumps(l2c)[:80]}") from None
    return fields


class OnnxModel:
    """One exported file; ``model(image)`` -> the detections dict of one resized image (see above).

    Attributes: ``cfg`` (``Config``), ``class_names`` (index = label), ``label_to_category_id``
    (dict or None), ``path``."""

    def __init__(self, path: Union[str, os.PathLike], *, device: Union[str, torch.device] = "cpu",
                 threads: Optional[int] = None):
        from maskrcnn.config import from_dict

        self.path = Path(path)
        if self.path.is_dir():
            raise OnnxModelError(f"{self.path}: is a folder, not an ONNX file")
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
        fields = _metadata(self.path, meta)
        try:
            self.cfg = from_dict(fields["config"], stored=True)
        except (ValueError, TypeError, AttributeError) as e:  # AttributeError: a section not an object
            raise OnnxModelError(f"{self.path}: metadata field 'config': {e}") from None
        self.class_names = fields["class_names"]
        if len(self.class_names) != int(self.cfg.model.num_classes):
            raise OnnxModelError(
                f"{self.path}: metadata field 'class_names' has {len(self.class_names)} names for a model "
                f"with num_classes={self.cfg.model.num_classes} (index 0 is '__background__')")
        self.cfg.data.class_names = tuple(self.class_names)
        self.label_to_category_id = fields["label_to_category_id"]
        inputs = [(i.name, i.type, len(i.shape or ())) for i in self.session.get_inputs()]
        if inputs != [("image", "tensor(float)", 3)]:
            raise OnnxModelError(f"{self.path}: the graph's inputs are {inputs} (name, type, rank); an "
                                 "export has one: ('image', 'tensor(float)', 3)")
        self.output_names = [o.name for o in self.session.get_outputs()]
        missing = {"boxes", "labels", "scores"} - set(self.output_names)
        if missing:
            raise OnnxModelError(f"{self.path}: the graph has no output(s) {sorted(missing)}")

    def __call__(self, image: torch.Tensor) -> dict:
        """image (3, h, w) float in [0, 1] -> ``boxes`` (D, 4), ``scores`` (D,), ``labels`` (D,) int64,
        ``mask_probs`` (D, 1, M, M) (+ ``keypoints`` (D, J, 3), ``keypoint_scores`` (D, J)) as the model has
        them."""
        array = np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32)
        try:
            outputs = self.session.run(None, {"image": array})
        except Exception as e:  # onnxruntime's own types, not RuntimeErrors: one type for every caller
            raise OnnxRunError(f"onnxruntime failed on the {'x'.join(map(str, array.shape[1:]))} (resized) "
                               f"image: {_run_problem(str(e))}") from e
        out = dict(zip(self.output_names, outputs))
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
