"""Evaluation during and after training: run a model over a dataset and score it with COCO AP.

Shapes: one image at a time, (3, H, W) at its original size; D detections.

Each image is resized for testing (``resize_image``, as the Predictor does), run through the model in
eval mode, mapped back to the original size with masks pasted (``detections_to_original``) and fed to
a ``CocoEvaluator``; the result is ``CocoEvaluator.evaluate()``'s dict (AP in percent).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def build_evaluator(cfg, dataset, json_path):
    """A CocoEvaluator for ``dataset`` (its label -> category id map and class names)."""
    from maskrcnn.engine.evaluator import CocoEvaluator

    rh = cfg.model.roi_heads
    iou_types = ["bbox"]
    if rh.mask_on:
        iou_types.append("segm")
    if rh.keypoint_on:
        iou_types.append("keypoints")
    return CocoEvaluator(
        str(json_path),
        iou_types=tuple(iou_types),
        label_to_category_id=getattr(dataset, "label_to_category_id", None),
        class_names=getattr(dataset, "class_names", None),
    )


@torch.no_grad()
def run_inference(
    model: nn.Module,
    dataset,
    evaluator,
    *,
    min_size: int,
    max_size: int,
    device="cpu",
    resize_method: str = "torchvision",
    mask_threshold: float = 0.5,
    paste_method: str = "torchvision",
    max_images: Optional[int] = None,
) -> dict:
    """Feed every image of ``dataset`` (items ``(image, target)`` with ``image_id``) to ``evaluator``."""
    from maskrcnn.data.transforms import resize_image
    from maskrcnn.modeling.postprocess import detections_to_original

    was_training = model.training
    model.eval()
    device = torch.device(device)
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    try:
        for i in range(n):
            image, target = dataset[i]
            orig_hw = tuple(int(s) for s in image.shape[-2:])
            resized = resize_image(image, min_size=min_size, max_size=max_size, method=resize_method)
            det = model([resized.to(device)])[0]
            det = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in det.items()}
            det = detections_to_original(
                det,
                tuple(resized.shape[-2:]),
                orig_hw,
                paste_masks="mask_probs" in det,
                mask_threshold=mask_threshold,
                paste_method=paste_method,
            )
            image_id = target["image_id"]
            evaluator.process(int(image_id) if torch.is_tensor(image_id) else image_id, det)
    finally:
        model.train(was_training)
    return evaluator.evaluate()


def make_evaluate_fn(cfg, dataset, json_path, *, device="cpu"):
    """``model -> results``, for ``Trainer(evaluate_fn=...)``: a fresh evaluator each call."""

    def evaluate(model: nn.Module) -> dict:
        return run_inference(
            model,
            dataset,
            build_evaluator(cfg, dataset, json_path),
            min_size=cfg.input.min_size_test,
            max_size=cfg.input.max_size_test,
            device=device,
            resize_method=cfg.input.resize_method,
            mask_threshold=cfg.model.roi_heads.mask_threshold,
            paste_method=cfg.model.roi_heads.mask_paste,
        )

    return evaluate
