"""Mask R-CNN in pure PyTorch: no compiled extension, checkpoints from torchvision and detectron2.

The names users reach for first are here, imported on first use (PEP 562) so that ``import maskrcnn``
(and ``maskrcnn --help``) stays quick and imports no torch::

    import maskrcnn
    predictor = maskrcnn.Predictor.from_weights("model_final.pth")
    detections = predictor(["street.jpg"])
    maskrcnn.draw_instances(image, detections[0], predictor.class_names).save("out.png")
    final = maskrcnn.train(train_json="train.json", output="runs/mine", init="maskrcnn_resnet50_fpn_coco")
"""

__version__ = "0.1.0"

# name -> module that defines it
_LAZY = {
    "Predictor": "maskrcnn.predictor",
    "TileOptions": "maskrcnn.engine.tiling",
    "build_model": "maskrcnn.modeling.mask_rcnn",
    "draw_instances": "maskrcnn.visualize",
    "ImageReadError": "maskrcnn.data.images",
    "read_image": "maskrcnn.data.images",
    "train": "maskrcnn.fine_tune",
    "TrainingStopped": "maskrcnn.fine_tune",
    "reuse_freed_memory": "maskrcnn.cpu_memory",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'maskrcnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
