"""Deployment: the whole model as one ONNX graph (``onnx_model``, ``onnx_ops``, ``onnx_export``) and an
exported file run by onnxruntime behind ``Predictor`` (``onnx_runtime``); the dense part alone as a
``torch.export`` program (``pt2``). Export needs torch >= 2.4
(``torch.library.custom_op``) and ``onnx``; running a file needs only ``onnxruntime``."""

# the file format written into an ONNX file's metadata (``maskrcnn_format``, ``maskrcnn_format_version``)
FORMAT = "maskrcnn-onnx"
FORMAT_VERSION = 1
