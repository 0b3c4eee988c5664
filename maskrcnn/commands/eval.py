"""``maskrcnn eval``: COCO AP of a checkpoint on a COCO-format dataset, or of an existing results file.

    maskrcnn eval --weights CKPT --json J --images D [--output DIR] [--device D] [--max-images N]
                  [--dtype bfloat16] [--int8 --calib-images PATH [--calib-json J] [--calib-count N]]
                  [--tile SIZE [--tile-overlap F] [--no-full-image] [--tile-scale S]]
                  [--tta [--tta-sizes 400,600,800] [--tta-max-size PX] [--tta-no-flip]]
    maskrcnn eval --results R.json [--results R2.json] --json J [--output DIR]
                  [--category-offset 1 | --category-map MAP.json]
    ... [--cityscapes ROOT] [--analysis [--analysis-score 0.5] [--analysis-images N]] [--crowd-as-objects]

Prints a table (rows bbox, segm, keypoints; columns AP AP50 AP75 APs APm APl, in percent) and, with
``--output``, writes ``DIR/metrics.json`` ({"bbox": {...}, "segm": {...}}, NaN written as null; its
sources, absolute, as ``"weights"`` or ``"results"`` and ``"json"``) and, for a checkpoint,
``DIR/predictions.json`` (COCO results; with ``--results``, a predictions.json there, an earlier --weights
run's or another, is named on stderr and left as it is; with ``--weights``, one there that is not an
earlier --weights run's is moved into ``DIR/stale/N/`` first, said: ``eval_stale.foreign_predictions``);
without ``--output`` a last line says that the
metrics were not saved. predictions.json is written first and metrics.json last: a metrics.json newer
than the run means the run finished (a kill between the two leaves the old metrics.json). A
predictions.json that cannot be written (a full disk) is said, exit 1, but metrics.json is still tried:
written without naming a predictions.json, with ``"predictions_not_written": REASON``.
Ctrl-C during the inference writes nothing and says so: "interrupted: after N of M images; nothing
written". ``--cityscapes ROOT`` (J from ``convert-data --from
cityscapes ROOT``) adds the official Cityscapes instance-level AP and AP50, computed by the
``cityscapesscripts`` package on the same predictions written in its format (``engine/cityscapes_eval.py``;
kept in ``DIR/cityscapes_predictions/``), as ``"cityscapes"`` in metrics.json; without that package (or
without the ROOT folder) it is refused before the inference. Results without masks (``--results`` of
boxes only) are not scored there: said in one line, the COCO metrics kept, exit 1, as when the scorer fails.
A checkpoint written by ``maskrcnn quantize`` is evaluated as INT8 (CPU); ``--int8 --calib-images PATH``
quantizes a plain one in memory first; ``--dtype bfloat16`` autocasts the network's layers
(``Predictor._low_precision``).
``--results`` reads results files as detectron2, MMDetection (one file per kind: ``--results
P.bbox.json --results P.segm.json``, or ``--results P``; its ``tools/test.py --out results.pkl``),
Ultralytics (``image_id`` by file name), ``maskrcnn predict`` (its records' ``file_name`` matched to J's
images: its ``image_id`` numbers them in its own order) and
torchvision write them, saying how each was read (``engine/results_file.py``); 0-based category ids
(a 0 the ground truth lacks, the rest fitting after +1) are refused with a hint: ``--category-offset 1``
adds 1 to each, ``--category-map MAP.json`` ({"results id": ground-truth id}) maps them. A J whose
images have width and height -1 (VIA 3's COCO export) or none gets their files' sizes (under
``--images``, default the export's layout), or is refused naming the images whose masks need them. A J
whose masks do not fit their image record is refused naming the records whose width/height are not
their files' (as show-data names them) and whose masks fit the file, when the files are there.
Images are read at their original size and
given to ``maskrcnn.predictor.Predictor``; an unreadable image is reported and left out of the score
(the AP, the per-class counts and Cityscapes' alike), counted by reason in one line (``unreadable_image``,
``image_too_large`` with a line saying the pixel limit and how to raise it, ``image_size_mismatch``,
``prediction_failed``), and metrics.json records it: ``"images_evaluated": N``, ``"images_skipped":
[{"file_name", "image_id", "reason", "reason_key"}]`` (``reason`` the message, as before; ``reason_key``
one of the keys above) and ``"images_skipped_by_reason": {reason_key: images}`` beside the AP tables (with
a checkpoint only: ``--results`` scores every image of J). No image left: an error. Options that only
change how a model runs (``--max-images``, ``--device``, ``--tta``, ``--tile``, ``--int8`` ...) are
refused with ``--results``, naming them, as ``--config`` is; ``--set`` only with its one key that scores
rather than runs, ``data.keypoint_sigmas=[...]`` (the OKS sigmas; without it, a results file scored
again takes those of the metrics.json beside it only when that one names it and --json and a model's
evaluation chose them: ``_results_sigmas``).
Files an earlier evaluation left in ``--output`` that this one did not rewrite (its analysis, confusion
matrices, Cityscapes predictions) are moved into a new ``DIR/stale/N/`` with a note, only when the
metrics.json there shows eval wrote them (``"artefacts"`` lists what each run wrote; ``eval_stale.py``).

A J without ground truth (no "annotations" list, or an empty one) is refused in one line naming it,
before any inference. Box-only ground truth (a tool's rectangles) is an ignored region of segm AP,
counted in metrics.json (``"segm": {"ignored_box_only": N}``; ``engine/evaluator.py``).
``--crowd-as-objects`` alone scores crowd annotations as objects (with --weights ``--set
data.crowd_as_objects=true`` does too): CVAT writes brush masks as iscrowd 1 (``data/crowd.py``); a model
trained with it evaluates so, unless ``--set data.crowd_as_objects=false``. A J with "annotations" null
is refused as not a list.

After the AP table, a per-class table (``engine/class_table.py``): bbox and segm AP and AP50, ground-truth
instances and detections scoring >= ``--analysis-score`` (0.5), worst class first; in metrics.json as
``per_category_AP50`` and ``per_category_counts`` beside ``per_category``. ``--analysis`` (needs
``--output``) writes the error analysis at that score (``engine/error_analysis.py``: true positives,
false positives on background or of the wrong class, duplicates, poor localisation, missed objects, per
class and per image) as ``analysis.json``, ``confusion.csv`` and ``confusion.png`` (and
``confusion_segm.*``), and ``--analysis-images N`` (needs ``--images``) draws the N images with the most
errors (``engine/analysis_report.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Optional

from maskrcnn.io_utils import atomic_write_json, json_safe

HELP = "COCO AP of a checkpoint on a COCO-format dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--weights",
        help="checkpoint written by train / convert / quantize (INT8) (FILE#ema: the EMA copy 'model_ema' it "
             "keeps; a bare state dict of ours with --config), or an .onnx file written by export (run by "
             "onnxruntime)",
    )  # fmt: skip
    source.add_argument(
        "--results", action="append", metavar="FILE",
        help="evaluate this COCO results JSON instead of running a model (detectron2, MMDetection, "
             "Ultralytics, torchvision; MMDetection's tools/test.py --out .pkl too); repeat it or give a "
             "comma list for one file per kind (MMDetection's PREFIX.bbox.json and PREFIX.segm.json, or "
             "PREFIX alone)")
    from maskrcnn.commands.weights_args import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--category-offset", type=int, default=0, metavar="N",
                        help="with --results: add N to every category_id (1: 0-based class indices, as "
                             "Ultralytics writes for datasets other than COCO)")
    parser.add_argument("--category-map", metavar="FILE.json",
                        help='with --results: {"results id": ground-truth id, ...} for every category_id')
    parser.add_argument("--results-image-ids", choices=("auto", "id", "file-name"), default="auto",
                        help="with --results: how image_id names an image: auto (the reading, id or file "
                             "name/stem, under which every value names an image; both fitting, the one the "
                             "detections' boxes clearly agree with, else ids; a record's file_name first), "
                             "id, or file-name (Ultralytics writes image_id = the file stem)")
    parser.add_argument("--json", required=True, help="COCO ground-truth annotation file")
    from maskrcnn.commands.data_report import IMAGE_DIR_ORDER

    parser.add_argument("--images", help="image folder of the annotation file, with --weights, and with "
                                         "--results when J lacks image sizes (VIA 3's COCO export writes "
                                         "-1): read from the files (default, from the export's layout: "
                                         f"{IMAGE_DIR_ORDER})")
    parser.add_argument("--output", help="folder for metrics.json (and predictions.json, with --weights)")
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda | cuda:N; mps, xpu accepted, untested (default: auto)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per forward, grouped by size (default 1: detections then never depend "
                        "on batch-mates, whose padding changes border features; larger pays off on a GPU)")
    parser.add_argument("--max-images", type=_at_least_one, default=None, metavar="N",
                        help="with --weights: evaluate only the first N images (N >= 1)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="autocast dtype of the network (backbone, FPN, RPN and RoI heads; bfloat16: "
                             "CPU or CUDA; float16: CUDA)")
    parser.add_argument("--int8", action="store_true",
                        help="quantize to INT8 in memory first, calibrated on --calib-images (CPU)")
    from maskrcnn.commands.quantize import add_int8_arguments

    add_int8_arguments(parser)
    parser.add_argument("--cityscapes", metavar="ROOT",
                        help="also report Cityscapes' official instance AP (gtFine under ROOT; the "
                             "'cityscapes' extra)")
    parser.add_argument(
        "--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides"
    )
    parser.add_argument("--exif-frame", choices=("auto", "turned", "stored"), default=None,
                        help="photos whose size does not tell their EXIF turn (turned 180 degrees or "
                             "mirrored, EXIF 2, 3, 4; square and turned by a quarter, 5 to 8): read as the "
                             "file's quarter-turned photos show its tool did (auto), turned, or as stored "
                             "(with --weights, refused with --results; default: the model's "
                             "data.exif_frame, auto)")
    parser.add_argument("--crowd-as-objects", action="store_true",
                        help="count crowd annotations (iscrowd 1) as ordinary objects (data.crowd_as_objects)"
                             ": CVAT's COCO 1.0 export marks masks drawn with its brush so; a model trained "
                             "with it evaluates so unless --set data.crowd_as_objects=false")
    parser.add_argument("--analysis", action="store_true",
                        help="error analysis into --output: analysis.json (per class true and false "
                             "positives by kind, missed objects, precision, recall), confusion.csv/.png")
    parser.add_argument("--analysis-score", type=float, default=0.5, metavar="T",
                        help="score threshold of the error analysis and of the per-class table's "
                             "detection counts, 0 to 1 (default: 0.5)")
    parser.add_argument("--analysis-images", type=int, default=0, metavar="N",
                        help="with --analysis: draw the N images with the most errors (needs --images)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    from maskrcnn.commands.tile_args import add_tile_arguments
    from maskrcnn.commands.tta_args import add_tta_arguments

    add_tile_arguments(parser)
    add_tta_arguments(parser)


def no_ground_truth(data: dict, json_path) -> str:
    """Why ``data`` (a COCO dict) has nothing to score detections against, or "" when it has: without
    annotations every AP is undefined, and the table said only '-' and metrics.json null."""
    anns = data.get("annotations")
    if "annotations" not in data:
        why = "the file has no 'annotations' list (an image list, as written for inference)"
    elif not isinstance(anns, list):
        why = f"its 'annotations' is {'null' if anns is None else type(anns).__name__}, not a list"
    elif not anns:
        why = "its 'annotations' list is empty"
    else:
        return ""
    return f"{json_path}: no ground truth to evaluate against: {why}"


def _predict(args, raw: dict) -> tuple:
    """Run the checkpoint over the dataset (``raw``: ``--json`` as read, with ground truth): (metrics,
    evaluator, ground truth, ids of the images scored, the images skipped as metrics.json records them)."""
    from maskrcnn.commands.data_report import image_dir_or_default
    from maskrcnn.commands.tile_args import tile_from_args
    from maskrcnn.commands.tta_args import tta_from_args
    from maskrcnn.config import parse_set_args
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.images import reason_counts, skip_reason, too_large_line
    from maskrcnn.engine.inference import (
        build_evaluator,
        check_class_overlap,
        evaluate_dataset,
        unscored_classes_warning,
    )
    from maskrcnn.predictor import Predictor
    from maskrcnn.shown_text import display_name, with_shown

    # as train's --train-images; the JSON already read (raw) is not read again to choose the folder
    images = image_dir_or_default(args.images, args.json, "--images", parsed={Path(args.json): raw})
    overrides = parse_set_args(args.set)
    options = {"device": args.device, "dtype": None if args.dtype == "float32" else args.dtype}
    from maskrcnn.commands.quantize import refuse_calibration_without_int8

    refuse_calibration_without_int8(args)  # a forgotten --int8 would evaluate float32 without a word
    if args.int8:
        from maskrcnn.commands.quantize import int8_predictor_kwargs

        options = int8_predictor_kwargs(args)
    from maskrcnn.commands.int8_engine import use_file_engine
    from maskrcnn.commands.weights_args import config_kwargs, print_weights_notes

    use_file_engine(args.weights, "eval")  # an INT8 file runs under the engine it was calibrated under
    predictor = Predictor.from_weights(
        args.weights, overrides=overrides or None, batch_size=args.batch_size,
        masks="rle",  # compact: the evaluator keeps RLE only, so no image-sized masks are needed
        tile=tile_from_args(args, warn=False),  # warned below, after the refusals
        tta=tta_from_args(args),
        **config_kwargs(args),
        **options,
    )
    from maskrcnn.commands.quantize import refuse_int8_without_calibration
    from maskrcnn.commands.tile_args import warn_tile_options

    refuse_int8_without_calibration(predictor, args)  # the run is off: before any warning about tiles
    warn_tile_options(predictor.tile)
    print_weights_notes(predictor, args.weights)
    if args.int8:
        from maskrcnn.commands.quantize import apply_int8_arguments, calibrating_on_evaluated_note

        if apply_int8_arguments(predictor, args) is not None:  # calibrated here, not an INT8 file
            same = calibrating_on_evaluated_note(args.calib_images, images)
            if same:
                print(f"note: {same}", file=sys.stderr)
    if args.cityscapes and not predictor.cfg.model.roi_heads.mask_on:  # before the inference, not after it
        raise ValueError(f"--cityscapes scores instance masks: {args.weights} is a box-only model")
    dataset = CocoDataset(
        json_path=args.json, image_dir=images, keypoints=predictor.cfg.model.roi_heads.keypoint_on, coco=raw,
        crowd_as_objects=args.crowd_as_objects or predictor.cfg.data.crowd_as_objects,
        exif_frame=args.exif_frame or getattr(predictor.cfg.data, "exif_frame", "auto"),
    )
    check_class_overlap(predictor.class_names, dataset, weights=args.weights)  # before the inference
    # once, before the inference: then no header is read again; a file whose own photos do not tell
    # reads them as the model's training file showed (recorded by training)
    seen = getattr(predictor.cfg.data, "exif_frame_seen", "") or None
    exif_note = dataset.settle_exif_frame(borrowed=(seen, f"the training file of {args.weights}"))
    if exif_note:
        print(f"note: {exif_note}", file=sys.stderr)
    evaluator = build_evaluator(predictor, dataset)
    unscored = unscored_classes_warning(evaluator.label_to_category_id, dataset)
    if unscored:  # COCOeval's AP 0 for them stays in the mean: said, not changed
        print(f"warning: {unscored}", file=sys.stderr)
    start = time.perf_counter()
    # [{"file_name", "image_id", "reason", "reason_key"}]: into metrics.json, beside the AP they are out
    # of; reason: the message (as metrics.json always had it), reason_key: the stable key (unreadable_image,
    # image_too_large, ...) that images_skipped_by_reason counts
    unreadable = []
    reasons = Counter()  # skip_reason -> images: image_too_large apart, its limit can be raised

    def skip(index, path, error):
        info = dataset.image_info(index)
        text = str(error)
        unreadable.append({"file_name": info["file_name"], "image_id": info["id"],
                           "reason": text.removeprefix(f"{path}: "), "reason_key": skip_reason(error)})
        reasons[skip_reason(error)] += 1
        text, shown = with_shown(text, path), display_name(path)  # a file_name's "\n" escaped
        print(f"skipping image: {text if shown in text else f'{shown}: {text}'}", file=sys.stderr)

    def progress(done: int, total: int, every: int = 50):
        progress.total = total
        if done // every > progress.reported // every or done == total:
            print(f"[{done}/{total}] {(time.perf_counter() - start) / done:.3f} s/image", file=sys.stderr)
        progress.reported = done

    progress.reported, progress.total = 0, None
    try:
        metrics = evaluate_dataset(
            predictor, dataset, evaluator, max_images=args.max_images, on_error=skip, progress=progress
        )
    except KeyboardInterrupt:  # the command's "interrupted" alone did not say that nothing was written
        total = progress.total or (min(len(dataset), args.max_images) if args.max_images else len(dataset))
        raise KeyboardInterrupt(f"after {progress.reported} of {total} images; nothing written (eval writes "
                                "its files only once every image is scored)") from None
    if unreadable:
        print(f"{len(unreadable)} images left out of the evaluation ({reason_counts(reasons)})",
              file=sys.stderr)
        too_large = too_large_line(reasons)  # good files over the pixel limit: how to read them
        if too_large:
            print(too_large, file=sys.stderr)
    # the images scored, for the per-class counts and Cityscapes: the skipped ones are in neither AP
    evaluated = evaluator.image_ids()  # never none: evaluate_dataset raises NothingEvaluated then
    # the images read on their stored pixels (EXIF not applied), for --analysis's drawings
    return metrics, evaluator, dataset.to_coco_dict(), evaluated, unreadable, dataset.unturned_ids()


def _cityscapes(args, results: list, ground_truth: dict, image_ids) -> dict:
    from maskrcnn.engine.cityscapes_eval import evaluate_cityscapes

    keep = Path(args.output) / "cityscapes_predictions" if args.output else None
    return evaluate_cityscapes(results, ground_truth, args.cityscapes, image_ids=image_ids,
                               predictions_dir=keep)


def _cityscapes_table(cs: dict) -> str:
    lines = ["Cityscapes instance-level (official script)", f"{'':12s}{'AP':>8s}{'AP50':>8s}"]
    for name, v in list(cs["classes"].items()) + [("average", cs)]:
        cells = "".join(f"{'-':>8s}" if math.isnan(v[k]) else f"{v[k]:8.2f}" for k in ("AP", "AP50"))
        lines.append(f"{name:12s}{cells}")
    return "\n".join(lines)


def _check_analysis_args(args) -> None:
    if args.analysis_images and not args.analysis:
        raise ValueError("--analysis-images draws the images of the error analysis: add --analysis")
    if args.analysis and not args.output:
        raise ValueError("--analysis writes analysis.json, confusion.csv and confusion.png into a folder: "
                         "give --output DIR")
    if not math.isfinite(args.analysis_score):
        raise ValueError(f"--analysis-score {args.analysis_score}: not a number")
    if not 0 <= args.analysis_score <= 1:
        raise ValueError(f"--analysis-score {args.analysis_score:g}: a score threshold is between 0 and 1")
    if args.analysis_images < 0:
        raise ValueError(f"--analysis-images {args.analysis_images}: must be 0 or more")
    if args.analysis_images and not args.images:
        raise ValueError("--analysis-images draws the dataset's images: give --images D (their folder)")
    if args.analysis_images and not Path(args.images).is_dir():
        raise FileNotFoundError(f"--images {args.images}: no such folder")


def _classes_and_analysis(args, metrics: dict, ground_truth: dict, records_by_type: dict,
                          image_ids) -> Optional[dict]:
    """Print the per-class table (its counts into ``metrics[kind]["per_category_counts"]``); with
    ``--analysis``, return {iou type: (analysis, matches)} for the kinds scored (bbox, segm)."""
    from maskrcnn.data.coco import category_names
    from maskrcnn.engine.class_table import class_rows, format_class_table
    from maskrcnn.engine.error_analysis import analyse, instance_counts, match_dataset
    from maskrcnn.engine.evaluator import box_only_as_crowd

    kinds = [k for k in ("bbox", "segm") if k in metrics and k in records_by_type]
    # segm: objects without a mask are ignored regions, as in segm AP (not missed, no false positives)
    truth = {k: box_only_as_crowd(ground_truth) if k == "segm" else ground_truth for k in kinds}
    if not kinds:
        if args.analysis:
            print("--analysis: the results hold neither boxes nor masks: no error analysis", file=sys.stderr)
        return None
    names = category_names(ground_truth)
    counts_by_kind = {}
    for kind in kinds:  # beside per_category (a dict: readers of the numbers in metrics.json skip it)
        counts = counts_by_kind[kind] = instance_counts(  # every object, with a mask or not
            ground_truth, records_by_type[kind], score_threshold=args.analysis_score, image_ids=image_ids)
        metrics[kind]["per_category_counts"] = {
            "score_threshold": args.analysis_score,
            "ground_truth": {names[c]: n for c, (n, _) in counts.items()},
            "detections": {names[c]: n for c, (_, n) in counts.items()},
        }
    # the table's detections: the masks' records when masks were scored (MMDetection's two files differ)
    rows = class_rows(metrics, ground_truth, counts_by_kind["segm" if "segm" in counts_by_kind else "bbox"])
    print(format_class_table(rows, args.analysis_score))
    if not args.analysis:
        return None
    out = {}
    for kind in kinds:
        matches = match_dataset(truth[kind], records_by_type[kind], iou_type=kind,
                                score_threshold=args.analysis_score, image_ids=image_ids)
        out[kind] = (analyse(truth[kind], records_by_type[kind], iou_type=kind,
                             score_threshold=args.analysis_score, matches=matches), matches)
    return out


def _analysis_summary(analysis: dict) -> str:
    t = analysis["totals"]
    precision, recall = ("-" if t[k] is None else f"{t[k]:.1%}" for k in ("precision", "recall"))
    return (f"{analysis['iou_type']} errors at score >= {analysis['score_threshold']:g}: {t['tp']} true "
            f"positives, {t['fp_background']} on background, {t['fp_wrong_class']} wrong class, "
            f"{t['duplicate']} duplicates, {t['poor_localisation']} poorly localised, {t['ignored_crowd']} "
            f"ignored on crowd regions, {t['missed']} of {t['ground_truth']} objects missed "
            f"({t['missed_never_detected']} never detected, {t['missed_wrong_class']} found only as another "
            f"class, {t['missed_poor_localisation']} only poorly localised) (precision {precision}, "
            f"recall {recall})" + (f"; {analysis['dropped_by_max_dets']} detections beyond the "
                                   f"{analysis['max_dets']} per image and class COCOeval scores left out"
                                   if analysis.get("dropped_by_max_dets") else ""))


_SIGMAS_KEY = "data.keypoint_sigmas"


# in metrics.json: where the OKS sigmas came from ("weights": the model's config, in an eval --weights
# run or carried over from one; "--set"; "default"): only a model's are carried to a later re-score
_SIGMAS_FROM_KEY = "keypoint_sigmas_from"


def _results_sigmas(args, names) -> tuple:
    """(the OKS sigmas to score --results with, or None: by the keypoint names ``names`` of --json; the
    line's words for where they come from, or None; what metrics.json records under "keypoint_sigmas_from").
    ``--set data.keypoint_sigmas=[...]`` first; else the sigmas of the metrics.json beside the results file,
    only when it demonstrably scored this very file: its provenance names the file ("predictions" of an
    ``eval --weights`` run, or "results" of a re-score that carried that run's sigmas: a ``--set`` choice
    is not carried on) and this --json, the file is not newer than it, and its sigmas are for the same
    keypoint names (in --json's order). A run trained with its own sigmas, re-scored with the defaults,
    got another AP for the same predictions."""
    import yaml

    from maskrcnn.config import parse_set_args

    given = parse_set_args(args.set).get(_SIGMAS_KEY)
    if given is not None:
        try:
            values = yaml.safe_load(given)
        except yaml.YAMLError:
            values = None
        if not (isinstance(values, list) and values and all(_is_number(v) and v > 0 for v in values)):
            raise ValueError(f"--set {_SIGMAS_KEY}={given}: expected a list of positive numbers, one per "
                             f"keypoint, e.g. [0.05, 0.08]")
        return tuple(float(v) for v in values), f"--set {_SIGMAS_KEY}", "--set"
    if len(args.results) != 1 or not names:
        return None, None, "default"
    this = os.path.abspath(args.results[0])
    metrics_path = Path(this).parent / "metrics.json"
    import json

    try:
        earlier = json.loads(metrics_path.read_text(encoding="utf-8"))
        newer = os.path.getmtime(this) > os.path.getmtime(metrics_path)  # rewritten since it was scored
    except (OSError, ValueError):
        return None, None, "default"
    if not isinstance(earlier, dict) or newer or earlier.get("json") != os.path.abspath(args.json):
        return None, None, "default"
    scored_this = (("weights" in earlier and earlier.get("predictions") == this)
                   or (earlier.get("results") == [this] and earlier.get(_SIGMAS_FROM_KEY) == "weights"))
    sigmas = (earlier.get("keypoints") or {}).get("oks_sigmas")
    if not scored_this or not isinstance(sigmas, dict) or list(sigmas) != [str(n) for n in names]:
        return None, None, "default"
    values = list(sigmas.values())
    if not all(_is_number(v) and v > 0 for v in values):
        return None, None, "default"
    return (tuple(float(v) for v in values),
            f"{metrics_path} (the model's evaluation that wrote {this} scored it against this --json with "
            f"them)", "weights")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# options that only change how a model runs: with --results there is none, and they changed nothing
_MODEL_FLAGS = ("device", "batch_size", "max_images", "dtype", "int8", "calib_images", "calib_json",
                "calib_count", "parts", "tile", "tile_overlap", "no_full_image", "tile_scale",
                "tile_max_tiles", "tta", "tta_sizes", "tta_max_size", "tta_no_flip", "set",
                "exif_frame")  # which pixels the model predicts on: --results files are predicted already


def _refuse_model_flags(args: argparse.Namespace) -> None:
    """ValueError naming the model-run options given with --results (silently ignored, a user read the
    unchanged table as the effect of --tta, or as the AP of --max-images N images)."""
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    given = [name for name in _MODEL_FLAGS
             if hasattr(args, name) and getattr(args, name) != defaults.get_default(name)]
    if "set" in given and all(item.split("=", 1)[0].strip() == _SIGMAS_KEY for item in args.set):
        given.remove("set")  # how keypoints are scored, not how a model runs (_results_sigmas)
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        verb = "applies" if len(given) == 1 else "apply"
        only = f" (with --results, --set takes only {_SIGMAS_KEY})" if "set" in given else ""
        raise ValueError(f"{flags} {verb} to --weights (running a model), not to --results files, which "
                         f"are scored as they are, over every image of --json{only}")


def _at_least_one(text: str) -> int:
    """argparse type of --max-images: 0 or -1 images gave 'none of its -1 images could be evaluated'."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _refuse_unreadable_results(given: list) -> None:
    """/dev/null, a FIFO, a folder: there, but no file to read ("no such results file" was said of them).
    Each path of a comma-separated list counts (the form ``--help`` documents), as ``resolve_results_paths``
    splits them; a folder that is MMDetection's prefix (``PREFIX.bbox.json`` beside it) is left to it."""
    from maskrcnn.engine.results_file import _KINDS

    for item in given:
        for part in [item] if os.path.isfile(item) else [p for p in str(item).split(",") if p]:
            if not os.path.exists(part) or os.path.isfile(part):
                continue
            if os.path.isdir(part):
                if any(os.path.isfile(f"{part}.{kind}.json") for kind in _KINDS):
                    continue
                raise ValueError(f"--results {part}: is a folder (a results JSON file is expected)")
            raise ValueError(f"--results {part}: not a regular file (a results JSON file is expected)")


def run(args: argparse.Namespace) -> int:
    from maskrcnn.commands.eval_stale import (
        ARTEFACTS_KEY,
        PREDICTIONS_KEY,
        earlier_artefacts,
        foreign_predictions,
        set_aside_stale,
        stale_note,
        stale_problem,
    )
    from maskrcnn.engine.evaluator import evaluate_results_file, format_metrics_table, load_ground_truth
    from maskrcnn.io_utils import check_output_dir

    _check_analysis_args(args)
    if args.output:  # before hours of inference, not after
        check_output_dir(args.output)
    # what the metrics.json there says an earlier evaluation wrote, read before this run replaces it
    earlier = earlier_artefacts(args.output) if args.output else None
    # a predictions.json there that no earlier --weights run wrote: moved aside before this run's replaces it
    foreign = bool(args.output and args.weights and foreign_predictions(args.output))
    blocked = stale_problem(args.output) if foreign else None
    if blocked:  # refused now: the move came after the whole inference, and then it was replaced
        raise ValueError(f"{Path(args.output) / 'predictions.json'} is not one an earlier eval wrote there, "
                         f"and it cannot be moved aside before this run writes its own: {blocked}; move that "
                         f"file or give another --output")
    if args.cityscapes and not Path(args.cityscapes).is_dir():
        raise FileNotFoundError(f"--cityscapes {args.cityscapes}: no such folder")
    if args.cityscapes and importlib.util.find_spec("cityscapesscripts") is None:
        # the scorer's own check came after the whole inference
        from maskrcnn.engine.cityscapes_eval import INSTALL_HINT

        raise RuntimeError(f"--cityscapes: {INSTALL_HINT}")
    if (args.category_offset or args.category_map) and not args.results:
        raise ValueError("--category-offset and --category-map apply to --results files")
    if args.results_image_ids != "auto" and not args.results:
        raise ValueError("--results-image-ids applies to --results files")
    if args.config and args.results:
        raise ValueError("--config applies to --weights (a bare state dict of ours), not to --results files")
    if args.results:
        _refuse_model_flags(args)
        _refuse_unreadable_results(args.results)
    from maskrcnn.data.coco import load_coco_json

    raw = load_coco_json(args.json)  # read once, for both sources
    refusal = no_ground_truth(raw, args.json)
    if refusal:  # before loading a model and reading every image
        raise ValueError(refusal)
    if args.cityscapes:  # ROOT/gtFine/<split>: a wrong ROOT failed only after the whole evaluation
        from maskrcnn.engine.cityscapes_eval import check_root

        # every image's gtFine unless --max-images evaluates only some (the scoring names a missing one)
        check_root(args.cityscapes, raw, given=f"--cityscapes {args.cityscapes}: ",
                   every_image=not getattr(args, "max_images", None))
    if args.results:
        from maskrcnn.engine.results_file import read_category_map

        mapping = read_category_map(args.category_map) if args.category_map else None
        raw = _sized_ground_truth(args, raw)
        # read and checked once, for the AP and the analysis
        try:
            coco_gt = load_ground_truth(raw, crowd_as_objects=args.crowd_as_objects, source=str(args.json))
        except ValueError as e:
            raise _blame_image_records(args, raw, e) from None
        names = next((c["keypoints"] for c in coco_gt.dataset["categories"] if c.get("keypoints")), None)
        sigmas, sigmas_from, sigmas_source = _results_sigmas(args, names)
        # the Cityscapes scorer gets the records that passed validation, not the raw file
        metrics, cs_results, records_by_type, results_files = evaluate_results_file(
            coco_gt, args.results, return_records_by_type=True, category_offset=args.category_offset,
            category_map=mapping, gt_source=str(args.json), keypoint_sigmas=sigmas,
            image_ids=args.results_image_ids)
        if "keypoints" in metrics and "not_scored" not in metrics["keypoints"]:  # (why not: said)
            # as a model's evaluation says it (engine/inference.build_evaluator)
            _say_sigmas(metrics["keypoints"], names, sigmas_from, args.set)
        elif sigmas_source == "--set":  # refused flags say "changed nothing" too; this one is only said
            print(f"note: --set {_SIGMAS_KEY} changed nothing: no keypoints were scored (--json's categories "
                  f"or the results hold none)", file=sys.stderr)
        ground_truth = raw if args.cityscapes else None  # the validation worked on copies
        results, image_ids = None, None
        unturned = set()  # eval --results: the records' sizes alone say how an image is drawn
        # as metrics.json names them (what its AP is of: a folder may hold the metrics of several files,
        # one after another), the files evaluate_results_file read
        images = {"results": [os.path.abspath(p) for p in results_files], "json": os.path.abspath(args.json)}
        own = _scored_predictions(args.output, results_files) if args.output else None
        if own is not None:  # --results DIR/predictions.json --output DIR: still eval's for a later --weights
            images[PREDICTIONS_KEY] = own
        if "keypoints" in metrics:
            images[_SIGMAS_FROM_KEY] = sigmas_source
    else:
        metrics, evaluator, ground_truth, image_ids, skipped, unturned = _predict(args, raw)
        # images_skipped as it always was (the files, each with its message), and counted by reason key
        # as the summary line counts them
        by_reason = Counter(record["reason_key"] for record in skipped)
        images = {"images_evaluated": len(image_ids), "images_skipped": skipped,
                  "images_skipped_by_reason": dict(sorted(by_reason.items())),
                  "weights": _weights_path(args.weights), "json": os.path.abspath(args.json)}
        if args.output:  # what a later eval --results of it checks (_results_sigmas)
            images["predictions"] = os.path.abspath(Path(args.output) / "predictions.json")
        if "keypoints" in metrics:
            images[_SIGMAS_FROM_KEY] = "weights"
        results = evaluator.results()
        cs_results = results
        coco_gt = evaluator.coco_gt
        records_by_type = {t: results for t in metrics}
    print(format_metrics_table(metrics))
    # the evaluator's ground truth: checked, iscrowd and area filled, the images it scored
    analysed = _classes_and_analysis(args, metrics, coco_gt.dataset, records_by_type, image_ids)
    # box-only results (--results: a box-only model is refused before its inference): as when the official
    # script fails, the COCO metrics are kept and written, the exit code 1; refused here, they were lost
    unscorable = bool(args.cityscapes) and "segm" not in metrics
    # the COCO results first: the Cityscapes scorer (a child process, minutes on a large split) failing
    # must not lose the whole inference
    aside = _set_aside_predictions(args.output) if foreign else None
    _write_outputs(args, metrics, images, results)
    cityscapes_failed = None
    if unscorable:
        cityscapes_failed = "no instance masks"
        where = f"are in {Path(args.output) / 'metrics.json'}" if args.output else "are above"
        print("--cityscapes: not scored: Cityscapes scores instance masks and the results have none; "
              f"the COCO metrics {where}", file=sys.stderr)
    elif args.cityscapes:
        try:
            metrics["cityscapes"] = _cityscapes(args, cs_results, ground_truth, image_ids)
        except (RuntimeError, ValueError, OSError) as e:
            cityscapes_failed = " ".join(str(e).split())  # one line, the scorer's tail included
            print(f"--cityscapes: the Cityscapes evaluation failed ({cityscapes_failed}); the COCO "
                  f"metrics" + (f" are in {Path(args.output) / 'metrics.json'}" if args.output else
                                " are above"), file=sys.stderr)
        else:
            print(_cityscapes_table(metrics["cityscapes"]))
            _write_outputs(args, metrics, images, None, quiet=True)
    # this run's, failed or not (none written for results without masks)
    ours = ["cityscapes_predictions"] if args.cityscapes and not unscorable else []
    if analysed:
        from maskrcnn.engine.analysis_report import write_analysis

        for analysis, _ in analysed.values():
            print(_analysis_summary(analysis))
        written = write_analysis(args.output, {k: a for k, (a, _) in analysed.items()},
                                 matches={k: m for k, (_, m) in analysed.items()},
                                 ground_truth=coco_gt.dataset, images_dir=args.images,
                                 draw=args.analysis_images, unturned=unturned)
        print(f"wrote {', '.join(p.name for p in written if p.parent == Path(args.output))}"
              + (f" and {sum(1 for p in written if p.parent != Path(args.output))} images in "
                 f"{Path(args.output) / 'analysis_images'}" if args.analysis_images else ""))
        ours += [p.name for p in written if p.parent == Path(args.output)]
        ours += ["analysis_images"] if args.analysis_images else []
    if args.output:  # an earlier run's analysis beside the new metrics.json read as this run's
        # what this run wrote, for the next one (only what a metrics.json lists is ever moved)
        _write_outputs(args, metrics, {**images, ARTEFACTS_KEY: sorted(ours)}, None, quiet=True)
        moved, folder = set_aside_stale(args.output, ours, earlier, folder=aside)
        if moved:
            print(stale_note(args.output, moved, folder, earlier[1]), file=sys.stderr)
    return 1 if cityscapes_failed else 0


def _say_sigmas(metrics: dict, names, sigmas_from: Optional[str], set_args: list) -> None:
    """One line on stderr saying which OKS sigmas scored the keypoints when they are not all COCO's."""
    from maskrcnn.data.keypoints import DEFAULT_KEYPOINT_SIGMA, default_sigma_note

    if sigmas_from:  # --set's own are the user's: nothing to say
        if not set_args:
            print(f"OKS sigmas from {sigmas_from}; --set {_SIGMAS_KEY}=[...] chooses others", file=sys.stderr)
        return
    used = metrics.get("oks_sigmas") or {}
    if not names and len(used) != 17:
        # no category names its keypoints: training reads such a file as COCO's 17 (and refuses other
        # lengths); scored here as the results' count with the default sigma, said, not guessed silently
        print(f"OKS sigmas: {DEFAULT_KEYPOINT_SIGMA} (default) for all {len(used)} keypoints: no category of "
              f"--json lists keypoint names (training reads such a file as COCO's 17 keypoints); name them "
              f"in the category's 'keypoints' list, and give sigmas with --set {_SIGMAS_KEY}=[...]",
              file=sys.stderr)
        return
    advice = f"--set {_SIGMAS_KEY}=[...] gives others (one per keypoint, in --json's order)"
    note = default_sigma_note(names, None, advice=advice)
    if note:
        print(note, file=sys.stderr)


def _blame_image_records(args, raw: dict, error: ValueError) -> ValueError:
    """The error to raise for a ground truth that failed validation (``error``): one naming the image
    records whose width/height are not their files' (``engine/record_sizes.py``) when masks failed for
    that reason, as show-data and --weights name them, with what else is wrong once they are right;
    ``error`` itself otherwise. Only now are image files read (under --images, else the export's
    layout, when there is such a folder)."""
    from maskrcnn.engine.evaluator import load_ground_truth
    from maskrcnn.engine.record_sizes import suspect_records, with_file_sizes, wrong_record_sizes

    suspects = suspect_records(raw)
    if not suspects:  # no mask fails on its record's size alone: no record to blame, no file to read
        return error
    if not args.images:
        from maskrcnn.data.coco import choose_image_dir

        folder, _ = choose_image_dir(args.json, parsed={Path(args.json): raw})
    else:
        folder = args.images
    sizes = wrong_record_sizes(suspects, folder, str(args.json)) if Path(folder).is_dir() else {}
    if not sizes:
        if args.images:
            return error
        return ValueError(f"{error} (if an image record's width/height is wrong, give --images D, the "
                          f"images' folder, to compare them with the files)")
    shown = "; ".join(message for _, message in list(sizes.values())[:5])
    shown += "; ..." if len(sizes) > 5 else ""
    text = (f"{args.json}: {len(sizes)} image record(s) give a width/height other than their file's in "
            f"{folder}, and their annotations' masks fit the file, not the record: {shown}: correct the "
            f"records' width and height")
    try:
        with warnings.catch_warnings():  # said already, by the first reading
            warnings.simplefilter("ignore")
            load_ground_truth(with_file_sizes(raw, sizes), crowd_as_objects=args.crowd_as_objects,
                              source=str(args.json))
    except ValueError as rest:
        text += f"; then still: {str(rest).removeprefix(f'{args.json}: ')}"
    return ValueError(text)


def _sized_ground_truth(args, raw: dict) -> dict:
    """``raw`` with the sizes it does not know (VIA 3's COCO export writes width and height -1; some
    files leave them out) read from the image files, under --images (default: the export's layout, as
    with --weights): the masks are checked and scored on the image's grid. ``raw`` unchanged, and no
    folder looked for, when no image of unknown size has a mask or keypoints (boxes need no size)."""
    from maskrcnn.commands.data_report import image_dir_or_default
    from maskrcnn.data.coco_exports import needs_sizes, sizes_from_files

    if not needs_sizes(raw):
        return raw
    folder = image_dir_or_default(args.images, args.json, "--images", parsed={Path(args.json): raw})
    hint = "give --images D, the folder of its images, to read their sizes from them"
    raw, notes = sizes_from_files(raw, folder, str(args.json), hint=hint)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return raw


def _weights_path(spec) -> str:
    """``--weights`` as metrics.json names it: absolute, as "json" and "results" are (a relative path
    says nothing once the folder is read from elsewhere); a ``#ema`` suffix kept after the file's path."""
    spec = str(spec)
    if spec.endswith("#ema") and not os.path.exists(spec):
        return os.path.abspath(spec[:-len("#ema")]) + "#ema"
    return os.path.abspath(spec)


def _other_predictions(out: Path, results_files: list) -> None:
    """With --results: a predictions.json in ``out`` (an earlier --weights run's, the user's own) is not
    what the new metrics.json scored; said on stderr, and left alone: it may be all that is left of a long
    inference, and no file here tells for sure whose it is (its time survives mv, cp -p, rsync -a).
    metrics.json names what it was computed from under "results". The results file itself
    (``--results DIR/predictions.json --output DIR``, scored again) is no other file: nothing said."""
    other = out / "predictions.json"
    if not other.is_file():
        return
    for path in results_files:
        with contextlib.suppress(OSError):
            if os.path.samefile(path, other):
                return
    print(f"warning: {other} is not what this evaluation scored: {out / 'metrics.json'} now describes "
          f"{', '.join(results_files)} (its \"results\" key); {other} is left as it is", file=sys.stderr)


def _scored_predictions(output, results_files: list) -> Optional[dict]:
    """``eval_stale.predictions_record`` of ``output/predictions.json`` when it is one of the files this
    --results run scored, else None."""
    from maskrcnn.commands.eval_stale import predictions_record

    own = Path(output) / "predictions.json"
    for path in results_files:
        with contextlib.suppress(OSError):
            if own.is_file() and os.path.samefile(path, own):
                return predictions_record(own)
    return None


def _set_aside_predictions(output) -> Optional[Path]:
    """Move ``output/predictions.json``, not an earlier ``eval --weights`` run's (``eval_stale.
    foreign_predictions``), into a new ``output/stale/N/`` before this run writes its own, as an earlier
    evaluation's analysis files are (it was replaced without a word: another tool's results, a long
    run's); said in one line. The folder, or None when it could not be moved (then replaced, said)."""
    from maskrcnn.commands.eval_stale import set_aside_predictions

    path = Path(output) / "predictions.json"
    folder = set_aside_predictions(output)
    if folder is None:
        print(f"warning: {path} is not one an earlier eval wrote or scored there and could not be moved into "
              f"{Path(output) / 'stale'}: replaced by this run's", file=sys.stderr)
        return None
    print(f"note: {path} is not one an earlier eval wrote or scored there (the metrics.json there records "
          f"no such file, or another size or hash): moved to {folder} before writing this run's",
          file=sys.stderr)
    return folder


def _write_outputs(args, metrics: dict, images: dict, results: Optional[list], *, quiet: bool = False):
    """metrics.json (and predictions.json when inference made them) into ``--output``, atomically; with
    --results, a predictions.json there is named as not what was scored (``_other_predictions``)."""
    if not args.output:  # the table above is all there is: said, so that no one looks for the file later
        if not quiet:
            print("metrics not saved (give --output DIR to write metrics.json)")
        return
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    # predictions.json first, metrics.json last: metrics.json is the "it finished" marker, so a failure
    # (a full disk, SIGKILL) between the two never leaves new metrics beside the old predictions
    if results is not None:
        from maskrcnn.commands.eval_stale import PREDICTIONS_KEY, predictions_record

        try:
            atomic_write_json(out / "predictions.json", results, ensure_ascii=True)  # read by COCO tools
        except OSError as e:
            # a full disk: the small metrics.json (the result asked for) may still fit; written without a
            # record of predictions.json, so that it never vouches for the old one left there
            _metrics_without_predictions(out, metrics, images, e)
            raise
        # what tells it from a foreign one later, wherever the folder is copied (eval_stale.py); into
        # ``images``, so that the later rewrites of metrics.json keep it
        images[PREDICTIONS_KEY] = predictions_record(out / "predictions.json")
    atomic_write_json(out / "metrics.json", json_safe({**metrics, **images}))
    if not quiet:
        print(f"wrote {out / 'metrics.json'}"
              + (f" and {out / 'predictions.json'}" if results is not None else ""))
        if args.results:
            _other_predictions(out, images["results"])




def _metrics_without_predictions(out: Path, metrics: dict, images: dict, error: OSError) -> None:
    """After predictions.json failed to write (``error``): metrics.json all the same, naming no
    predictions.json and saying why there is none; the error, raised by the caller, says it was written.
    A metrics.json that does not fit either leaves the error as it was."""
    from maskrcnn.commands.eval_stale import PREDICTIONS_KEY

    kept = {k: v for k, v in images.items() if k not in ("predictions", PREDICTIONS_KEY)}
    reason = f"{error.strerror or error}".strip()
    try:
        atomic_write_json(out / "metrics.json",
                          json_safe({**metrics, **kept, "predictions_not_written": reason}))
    except OSError:
        return
    error.strerror = f"{reason}; {out / 'metrics.json'} written without it"
