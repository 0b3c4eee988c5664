"""COCO AP of a model on a COCO-format dataset, through the one inference path (``Predictor``): used by
validation during training (``make_evaluate_fn``) and by ``maskrcnn eval``.

Shapes: D detections of one image, in its original coordinates.

Each image file of the dataset is read at its original size and given to ``Predictor.predict_files``
(resize, model, map back, paste masks); its detections go to a ``CocoEvaluator`` whose ground truth is
the dataset's validated records (``CocoDataset.to_coco_dict``); the result is
``CocoEvaluator.evaluate()``'s dict (AP in percent). Validation during training runs an optimised copy
of the model, so it reports what ``maskrcnn eval`` reports on the saved checkpoint, and the model being
trained is left as it was.
"""

from __future__ import annotations

import copy
import sys
from typing import Callable, Optional

from torch import nn


def iou_types(cfg) -> tuple:
    """The COCO evaluations a model of ``cfg`` supports: bbox, then segm and keypoints when it has them."""
    rh = cfg.model.roi_heads
    return ("bbox",) + (("segm",) if rh.mask_on else ()) + (("keypoints",) if rh.keypoint_on else ())


def label_mapping(predictor, dataset) -> dict:
    """Label -> the dataset's category id: the predictor's own mapping (the checkpoint's), else the
    dataset's when the classes agree, else identity when labels already are the dataset's category ids
    (torchvision's COCO models)."""
    if predictor.label_to_category_id:
        return dict(predictor.label_to_category_id)
    num_classes = len(predictor.class_names)
    if num_classes == dataset.num_classes:
        mine, theirs = predictor.class_names[1:], dataset.class_names[1:]
        if any(not n.startswith("class_") for n in mine) and mine != theirs:
            print(
                f"warning: model classes {mine[:5]}... differ from the dataset's {theirs[:5]}...; "
                "matching them by position",
                file=sys.stderr,
            )
        return dict(dataset.label_to_category_id)
    cat_ids = list(dataset.category_id_to_label)
    if max(cat_ids) < num_classes:
        return {label: label for label in range(1, num_classes)}
    raise ValueError(
        f"the model predicts {num_classes - 1} classes, {dataset.json_path} has "
        f"{dataset.num_classes - 1} categories, and no label -> category id mapping is known"
    )


def build_evaluator(predictor, dataset):
    """A CocoEvaluator for ``predictor``'s model on ``dataset`` (its validated ground truth)."""
    from maskrcnn.engine.evaluator import CocoEvaluator

    return CocoEvaluator(
        dataset.to_coco_dict(),
        iou_types=iou_types(predictor.cfg),
        label_to_category_id=label_mapping(predictor, dataset),
    )


def evaluate_dataset(
    predictor,
    dataset,
    evaluator,
    *,
    max_images: Optional[int] = None,
    on_error: Optional[Callable] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> dict:
    """Run ``predictor`` over the first ``max_images`` images of ``dataset`` (all by default), feed
    ``evaluator`` and return its ``evaluate()``. An unreadable image file is left out after
    ``on_error(index, path, error)`` (raised when None); ``progress(done, total)`` after each window."""
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    infos = [dataset.image_info(i) for i in range(n)]
    for window in predictor.predict_files([info["path"] for info in infos], on_error=on_error):
        for index, _image, det in window:
            evaluator.process(infos[index]["id"], det)
        if progress is not None:
            progress(window[-1][0] + 1, n)
    return evaluator.evaluate()


def make_evaluate_fn(cfg, dataset, json_path, *, device="cpu", optimise: bool = True):
    """``model -> results``, for ``Trainer(evaluate_fn=...)``: a fresh evaluator each call.

    ``dataset`` is the ``CocoDataset`` read from ``json_path``; its validated records are the ground
    truth. With ``optimise`` (the default) an optimised copy of the model is evaluated, exactly as
    ``maskrcnn eval`` evaluates the checkpoint; otherwise the model itself, as built. Either way the
    model is left unchanged, in the mode it was in.
    """
    del json_path  # the dataset was read from it

    def evaluate(model: nn.Module) -> dict:
        from maskrcnn.predictor import Predictor

        was_training = model.training
        try:
            # a copy: optimise_for_inference folds norms and swaps modules in place
            subject = copy.deepcopy(model) if optimise else model
            predictor = Predictor(
                subject, cfg, device=device, optimise=optimise, masks="rle",
                label_to_category_id=getattr(dataset, "label_to_category_id", None),
            )  # fmt: skip
            return evaluate_dataset(predictor, dataset, build_evaluator(predictor, dataset))
        finally:
            model.train(was_training)

    return evaluate
