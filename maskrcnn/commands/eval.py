"""``maskrcnn eval``: COCO AP of a checkpoint on a COCO-format dataset, or of an existing results file.

    maskrcnn eval --weights CKPT --json J --images D [--output DIR] [--device D] [--max-images N]
    maskrcnn eval --results R.json --json J [--output DIR]

Prints a table (rows bbox, segm, keypoints; columns AP AP50 AP75 APs APm APl, in percent) and, with
``--output``, writes ``DIR/metrics.json`` ({"bbox": {...}, "segm": {...}}, NaN written as null) and, for
a checkpoint, ``DIR/predictions.json`` (COCO results). Images are read at their original size and
given to ``maskrcnn.predictor.Predictor``; an unreadable image is reported and left out of the score.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

HELP = "COCO AP of a checkpoint on a COCO-format dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="checkpoint written by train / convert")
    source.add_argument("--results", help="evaluate this COCO results JSON instead of running a model")
    parser.add_argument("--json", required=True, help="COCO ground-truth annotation file")
    parser.add_argument("--images", help="image folder of the annotation file (needed with --weights)")
    parser.add_argument("--output", help="folder for metrics.json (and predictions.json)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward (default: 1)")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument(
        "--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _plain(value):
    """NaN -> None so that metrics.json stays valid JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _label_mapping(predictor, dataset) -> dict:
    """Label -> category id: the checkpoint's own mapping, else the dataset's when the classes agree,
    else identity when labels already are the dataset's category ids (torchvision's COCO models)."""
    if predictor.label_to_category_id:
        return dict(predictor.label_to_category_id)
    num_classes = len(predictor.class_names)
    if num_classes == dataset.num_classes:
        mine, theirs = predictor.class_names[1:], dataset.class_names[1:]
        if any(not n.startswith("class_") for n in mine) and mine != theirs:
            print(
                f"warning: checkpoint classes {mine[:5]}... differ from the dataset's {theirs[:5]}...; "
                "matching them by position",
                file=sys.stderr,
            )
        return dict(dataset.label_to_category_id)
    cat_ids = list(dataset.category_id_to_label)
    if max(cat_ids) < num_classes:
        return {label: label for label in range(1, num_classes)}
    raise ValueError(
        f"the checkpoint predicts {num_classes - 1} classes, {dataset.json_path} has "
        f"{dataset.num_classes - 1} categories, and the checkpoint stores no label -> category id mapping"
    )


def _predict(args) -> tuple:
    """Run the checkpoint over the dataset: (metrics, results list)."""
    import torch

    from maskrcnn.config import parse_set_args
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.images import ImageReadError, read_image
    from maskrcnn.engine.evaluator import CocoEvaluator
    from maskrcnn.predictor import Predictor

    if not args.images:
        raise ValueError("--images is required with --weights")
    overrides = parse_set_args(args.set)
    predictor = Predictor.from_checkpoint(
        args.weights, device=args.device, overrides=overrides or None, batch_size=args.batch_size
    )
    dataset = CocoDataset(
        json_path=args.json, image_dir=args.images, keypoints=predictor.cfg.model.roi_heads.keypoint_on
    )
    iou_types = ["bbox"]
    if predictor.cfg.model.roi_heads.mask_on:
        iou_types.append("segm")
    if predictor.cfg.model.roi_heads.keypoint_on:
        iou_types.append("keypoints")
    evaluator = CocoEvaluator(
        dataset.to_coco_dict(),
        iou_types=iou_types,
        label_to_category_id=_label_mapping(predictor, dataset),
    )
    n = len(dataset) if args.max_images is None else min(len(dataset), args.max_images)
    start = time.perf_counter()
    unreadable = 0
    batch_ids, batch_images = [], []

    def flush():
        for image_id, det in zip(batch_ids, predictor.predict_tensors(batch_images)):
            evaluator.process(image_id, det)
        batch_ids.clear()
        batch_images.clear()

    with torch.inference_mode():
        for i in range(n):
            info = dataset.image_info(i)
            try:
                batch_images.append(read_image(info["path"]))
                batch_ids.append(info["id"])
            except ImageReadError as e:
                unreadable += 1
                print(f"skipping unreadable image: {e}", file=sys.stderr)
                continue
            if len(batch_images) >= args.batch_size:
                flush()
            if (i + 1) % 50 == 0 or i + 1 == n:
                elapsed = time.perf_counter() - start
                print(f"[{i + 1}/{n}] {elapsed / (i + 1):.3f} s/image", file=sys.stderr)
        if batch_images:
            flush()
    if unreadable:
        print(f"{unreadable} unreadable images left out of the evaluation", file=sys.stderr)
    return evaluator.evaluate(), evaluator.results()


def run(args: argparse.Namespace) -> int:
    from maskrcnn.engine.evaluator import evaluate_results_file, format_metrics_table

    if args.results:
        metrics, results = evaluate_results_file(args.json, args.results), None
    else:
        metrics, results = _predict(args)
    print(format_metrics_table(metrics))
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "metrics.json", _plain(metrics))
        if results is not None:
            _write_json(out / "predictions.json", results)
        print(
            f"wrote {out / 'metrics.json'}"
            + (f" and {out / 'predictions.json'}" if results is not None else "")
        )
    return 0


def _write_json(path: Path, data) -> None:
    """Atomic write: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
