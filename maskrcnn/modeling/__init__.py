"""The network: backbone, FPN, RPN, RoI heads and ``build_model(cfg)`` (see mask_rcnn.py).

``build_model`` and ``MaskRCNN`` are importable from here; submodules load on first use.
"""


def __getattr__(name):
    if name in ("build_model", "MaskRCNN"):
        from maskrcnn.modeling import mask_rcnn

        return getattr(mask_rcnn, name)
    raise AttributeError(f"module 'maskrcnn.modeling' has no attribute {name!r}")
