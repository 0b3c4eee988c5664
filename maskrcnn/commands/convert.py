"""``maskrcnn convert``: turn a torchvision, detectron2 or MMDetection checkpoint into our format, or
rewrite one of ours (``--from maskrcnn``), e.g. as a safetensors file (``--to safetensors``).

    maskrcnn convert --from torchvision|detectron2|mmdetection|maskrcnn IN OUT [--to torch|safetensors]
        [--set key=value ...] [--class-names a,b,c] [--ema]

IN is a file, a published name (``maskrcnn_resnet50_fpn_coco``, ``maskrcnn_resnet50_fpn_v2_coco``,
``keypointrcnn_resnet50_fpn_coco``, ...; downloaded to the cache and checksummed) or a URL.
The layout, backbone depth, number of classes and keypoints are read from the weights; ``--set``
adjusts the stored config, e.g. ``input.min_size_test=512``. A torchvision v1 file's batch-norm eps
follows its keys (``interop.torchvision.v1_eps``, said in a note): 1e-5 for one saved from plain
BatchNorm (``num_batches_tracked`` counters: built with ``weights=None``), 0 for the published v1 COCO
weights' frozen norms (no counters); ``--set model.frozen_bn_eps=1e-5`` for a model built with
``weights_backbone`` only, whose keys are the published ones'.
MMDetection files (``interop/mmdetection.py``) take their class names and conventions from the config
text stored in the file; what the conversion could not carry over exactly is printed as a note.
Every source key must map and every model key must be filled, or nothing is written.
A torchvision file with an EMA copy (``model_ema``, saved as torchvision's classification reference
``train.py --model-ema`` saves it; its detection ``train.py`` has no such option, a script that adds one
writes the same) holds two copies of the weights: ``model`` is converted (a note says the other exists),
``--ema`` converts the averaged ``model_ema`` instead; likewise timm's ``state_dict_ema``. An
MMDetection file written with mmengine's ``EMAHook`` needs no ``--ema``: the hook swaps the copies before
saving, so its ``state_dict`` (converted, a note says so) already is the average and ``ema_state_dict``
holds the raw weights; ``--ema`` on it is refused. ``--from maskrcnn --ema`` writes the ``model_ema`` copy
one of our checkpoints keeps (``save_checkpoint(..., model_ema=...)``) as OUT's weights.

``--to safetensors`` writes a safetensors file (``safetensors_io``: the weights, with the config and class
names in its metadata) instead of a torch one, for sharing (the Hugging Face hub); ``--from maskrcnn``
rewrites a checkpoint of ours (a training run's: its training state is left out), e.g.
``maskrcnn convert --from maskrcnn runs/mine/model_final.pth model.safetensors --to safetensors``.
Any input may be a safetensors file (told by its bytes).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

HELP = ("convert a torchvision, detectron2 or MMDetection checkpoint into this library's format, or one of "
        "ours (--from maskrcnn) to a safetensors file (--to safetensors)")
SOURCES = ("torchvision", "detectron2", "mmdetection", "maskrcnn")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source_format", required=True,
                        choices=SOURCES,
                        help="the checkpoint's origin (maskrcnn: one of this library's, to write it "
                             "--to safetensors, or to keep only its weights)")
    parser.add_argument("input", metavar="IN", help="checkpoint file, published name or URL")
    parser.add_argument("output", metavar="OUT", help="where to write the converted checkpoint")
    parser.add_argument("--to", dest="target_format", choices=("torch", "safetensors"), default="torch",
                        help="the file OUT is: a torch checkpoint (default) or a safetensors file (weights, "
                             "with the config and class names in its metadata), for sharing")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE",
                        help="config overrides stored with the checkpoint")
    parser.add_argument("--class-names", default=None,
                        help="comma-separated class names without the background (default: the names an "
                             "MMDetection file stores, COCO for 91 / 81 classes, else class_1, class_2, ...)")
    parser.add_argument("--ema", action="store_true",
                        help="take the EMA copy of the weights instead of 'model' / 'state_dict': "
                             "torchvision's 'model_ema' (its classification train.py --model-ema) or timm's "
                             "'state_dict_ema' (--from torchvision), our checkpoint's 'model_ema' (--from "
                             "maskrcnn); MMDetection files need none: mmengine's "
                             "EMAHook saves the average as 'state_dict' itself")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _local_path(spec: str) -> str:
    if os.path.exists(spec):
        return spec
    from maskrcnn.interop.download import PUBLISHED, download, is_published

    if is_published(spec) or "://" in spec:
        return str(download(spec))
    raise FileNotFoundError(f"{spec}: no such file (and not a published name: {', '.join(PUBLISHED)})")


def _number(value):
    """'1e-5' is a string to YAML 1.1 (it wants '1.0e-5'); read such values as floats."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def given_class_names(text: str, num_classes: int) -> list:
    """``--class-names a,b,c`` -> ["__background__", "a", "b", "c"]; ValueError when the count is not the
    weights' (``num_classes`` counts the background)."""
    from maskrcnn.class_names import BACKGROUND_NAMES

    given = [n.strip() for n in text.split(",") if n.strip()]
    k = num_classes - 1
    background = [n for n in given if n.lower() in BACKGROUND_NAMES]  # as a dataset's category is compared
    if background:
        example = ",".join(f"class_{i}" for i in range(1, min(k, 3) + 1)) + (",..." if k > 3 else "")
        raise ValueError(f"--class-names names the background ({background[0]!r}): it is implicit (class 0, "
                         f"added as '__background__'); give the {k} foreground class"
                         f"{'' if k == 1 else 'es'} only, e.g. --class-names {example}")
    if len(given) != k:
        raise ValueError(f"--class-names has {len(given)} name{'' if len(given) == 1 else 's'} but the "
                         f"weights have {k} class{'' if k == 1 else 'es'} (plus background)")
    return ["__background__"] + given


def _convert(args, path: str, overrides: dict) -> dict:
    """The converter ``--from`` names, on ``path``."""
    if args.source_format == "torchvision":
        from maskrcnn.interop.torchvision import load_torchvision_file

        return load_torchvision_file(path, overrides=overrides, ema=args.ema)
    elif args.source_format == "maskrcnn":
        return _ours(args, path, overrides)
    elif args.source_format == "mmdetection":
        from maskrcnn.interop.mmdetection import load_mmdetection_file

        return load_mmdetection_file(path, overrides=overrides, ema=args.ema)
    else:
        try:
            from maskrcnn.interop import detectron2 as d2
        except ImportError:
            raise ValueError("detectron2 conversion is not available in this installation") from None
        return d2.load_detectron2_file(path, overrides=overrides)


def _ours(args, path: str, overrides: dict) -> dict:
    """A checkpoint of ours read as ``predict`` reads it (a torch file or a safetensors one), in the shape
    of a converter's result; "carried": its fields kept beside the weights. ``--set`` changes that leave
    the class names not fitting the model refuse here, and so do weights that do not fit the model the
    config describes (with or without ``--set``), as ``predict`` would refuse OUT."""
    from maskrcnn.checkpoint import (
        check_class_names,
        config_from_checkpoint,
        label_to_category_id,
        read_checkpoint_object,
    )
    from maskrcnn.checkpoint_read import checked_ours, refuse_misfit

    ckpt, notes = checked_ours(path, read_checkpoint_object(path), ema=args.ema,
                               ema_how="`maskrcnn convert --from maskrcnn --ema` takes the EMA copy")
    cfg = config_from_checkpoint(ckpt, overrides or None)
    sd = ckpt["model"]
    if overrides:
        check_class_names(path, {**ckpt, "config": cfg.to_dict()})
    # OUT must load where predict loads it: weights that do not fit their own config are refused, not copied
    described = "the config describes with the --set changes" if overrides else "its config describes"
    refuse_misfit(path, sd, cfg, described=described, after="; nothing written")
    names = list(ckpt["class_names"]) or list(cfg.data.class_names)
    l2c = label_to_category_id(ckpt)
    carried = {"label_to_category_id": l2c} if l2c else {}
    if isinstance(ckpt.get("converted_from"), dict):
        carried["converted_from"] = ckpt["converted_from"]
    known = {"format", "format_version", "config", "class_names", "model", *carried,
             *(["model_ema"] if args.ema else [])}  # (--ema: its copy is OUT's weights, said in a note)
    left = sorted(k for k in ckpt if k not in known)
    if isinstance(ckpt.get("metadata"), dict):  # its label_to_category_id is carried; the rest is not
        rest = sorted(k for k in ckpt["metadata"] if not (k == "label_to_category_id" and l2c))
        left = [k for k in left if k != "metadata"] + (
            [f"metadata ({', '.join(map(str, rest))})"] if rest else [])
    from maskrcnn.interop.float_dtypes import dtype_note

    # written as read (no converter's cast): a float16 checkpoint stays half the size, said with its cost
    kept = dtype_note(sd, f"kept so in {args.output} (predict loads them into float32 parameters)")
    notes += [kept] if kept else []
    # the file written named, not the metavar: "OUT keeps" read as a placeholder never filled in
    notes += [f"left out: {', '.join(map(str, left))} ({args.output} keeps the weights, config and class "
              "names)"] if left else []
    return {"state_dict": sd, "config": cfg, "class_names": names, "layout": "maskrcnn-checkpoint",
            "report": {"num_tensors": len(sd)}, "notes": notes, "carried": carried}


def _write(args, result: dict, cfg, names) -> None:
    """OUT, atomically, in the format ``--to`` names."""
    carried = result["carried"] if "carried" in result else {
        "converted_from": {"format": args.source_format, "layout": result["layout"],
                           "source": os.path.basename(str(args.input))}}
    if args.target_format == "safetensors":
        from maskrcnn.safetensors_io import save_safetensors

        save_safetensors(args.output, model_state=result["state_dict"], config=cfg, class_names=names,
                         **carried)
    else:
        from maskrcnn.checkpoint import save_checkpoint

        save_checkpoint(args.output, model_state=result["state_dict"], config=cfg, class_names=names,
                        **carried)


def run(args) -> int:
    from maskrcnn.config import parse_set_args
    from maskrcnn.io_utils import check_output_file, check_output_not_input

    check_output_file(args.output, "OUT")
    if args.ema and args.source_format == "detectron2":
        raise ValueError(f"--ema applies to --from torchvision or maskrcnn, not {args.source_format}")
    overrides = {k: _number(v) for k, v in parse_set_args(args.overrides or []).items()}
    path = _local_path(args.input)
    check_output_not_input(args.output, path, option="OUT", source_option="IN")
    try:
        result = _convert(args, path, overrides)
    except (ValueError, OSError) as e:  # (ConversionError is a ValueError)
        from maskrcnn.interop.weights import wrong_source_hint

        hint = None if isinstance(e, FileNotFoundError) else wrong_source_hint(path, args.source_format)
        if hint is None:
            raise
        raise ValueError(hint) from None
    from maskrcnn.checkpoint import non_finite_keys
    from maskrcnn.interop.key_rules import file_keys, under_entry
    from maskrcnn.listing import short_listing

    bad = non_finite_keys(result["state_dict"])
    if bad:  # such weights predict nothing (or NaN boxes); predict / eval / --init refuse them: said here
        origin = result["report"].get("origin", {k: k for k in bad})  # (ours: the file's names are ours)
        where = under_entry(result["report"].get("entry"))  # keys under 'model' / 'state_dict'
        raise ValueError(f"{args.input}: weights hold NaN or infinite values in tensors "
                         f"{short_listing(file_keys(bad, origin), limit=5)}{where}; nothing written")
    cfg = result["config"]
    names = result["class_names"]
    if args.class_names:
        from maskrcnn.data.keypoint_classes import renamed_keypoint_classes

        old = list(cfg.data.class_names) or list(names)  # the names the record was written with
        names = given_class_names(args.class_names, cfg.model.num_classes)
        # the classes that own the keypoint set are recorded by name: renamed with them, or a renamed
        # class would lose (or another keep) its keypoints at inference
        cfg.data.keypoint_classes = renamed_keypoint_classes(getattr(cfg.data, "keypoint_classes", ()), old,
                                                             names)
    cfg.data.class_names = tuple(names)
    _write(args, result, cfg, names)
    grown = result["report"].get("as_float32")  # the converter cast other float dtypes up: the file says it
    for note in [*result.get("notes", []), *([f"{args.output} holds the weights as float32: {grown}"]
                                             if grown else [])]:
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.input} ({result['layout']}, {cfg.model.backbone}, {cfg.model.num_classes} classes incl. "
          f"background, {result['report']['num_tensors']} tensors) -> {args.output}", file=sys.stderr)
    return 0
