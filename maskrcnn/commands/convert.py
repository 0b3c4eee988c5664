"""``maskrcnn convert``: turn a torchvision, detectron2 or MMDetection checkpoint into our format.

    maskrcnn convert --from torchvision|detectron2|mmdetection IN OUT [--set key=value ...]
        [--class-names a,b,c] [--ema]

IN is a file, a published name (``maskrcnn_resnet50_fpn_coco``, ``maskrcnn_resnet50_fpn_v2_coco``,
``keypointrcnn_resnet50_fpn_coco``, ...; downloaded to the cache and checksummed) or a URL.
The layout, backbone depth, number of classes and keypoints are read from the weights; ``--set``
adjusts the stored config, e.g. ``--set model.frozen_bn_eps=1e-5`` for weights saved from a model
built with plain BatchNorm (torchvision's published v1 COCO weights need the default, eps 0).
MMDetection files (``interop/mmdetection.py``) take their class names and conventions from the config
text stored in the file; what the conversion could not carry over exactly is printed as a note.
Every source key must map and every model key must be filled, or nothing is written.
A torchvision file with an EMA copy (``model_ema``, saved as torchvision's classification reference
``train.py --model-ema`` saves it; its detection ``train.py`` has no such option, a script that adds one
writes the same) holds two copies of the weights: ``model`` is converted (a note says the other exists),
``--ema`` converts the averaged ``model_ema`` instead; likewise timm's ``state_dict_ema``. An
MMDetection file written with mmengine's ``EMAHook`` needs no ``--ema``: the hook swaps the copies before
saving, so its ``state_dict`` (converted, a note says so) already is the average and ``ema_state_dict``
holds the raw weights; ``--ema`` on it is refused.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

HELP = "convert a torchvision, detectron2 or MMDetection checkpoint into this library's format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source_format", required=True,
                        choices=("torchvision", "detectron2", "mmdetection"),
                        help="the checkpoint's origin")
    parser.add_argument("input", metavar="IN", help="checkpoint file, published name or URL")
    parser.add_argument("output", metavar="OUT", help="where to write the converted checkpoint")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE",
                        help="config overrides stored with the checkpoint")
    parser.add_argument("--class-names", default=None,
                        help="comma-separated class names without the background (default: the names an "
                             "MMDetection file stores, COCO for 91 / 81 classes, else class_1, class_2, ...)")
    parser.add_argument("--ema", action="store_true",
                        help="take the EMA copy of the weights instead of 'model' / 'state_dict': "
                             "torchvision's 'model_ema' (its classification train.py --model-ema) or timm's "
                             "'state_dict_ema' (--from torchvision); MMDetection files need none: mmengine's "
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
    given = [n.strip() for n in text.split(",") if n.strip()]
    k = num_classes - 1
    # (the names a dataset's background category goes by: data/coco.py's, compared as it compares them)
    background = [n for n in given if n.lower() in ("__background__", "background", "_background_")]
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
    elif args.source_format == "mmdetection":
        from maskrcnn.interop.mmdetection import load_mmdetection_file

        return load_mmdetection_file(path, overrides=overrides, ema=args.ema)
    else:
        try:
            from maskrcnn.interop import detectron2 as d2
        except ImportError:
            raise ValueError("detectron2 conversion is not available in this installation") from None
        return d2.load_detectron2_file(path, overrides=overrides)


def run(args) -> int:
    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.config import parse_set_args
    from maskrcnn.io_utils import check_output_file

    check_output_file(args.output, "OUT")
    if args.ema and args.source_format == "detectron2":
        raise ValueError("--ema applies to --from torchvision, not detectron2")
    overrides = {k: _number(v) for k, v in parse_set_args(args.overrides or []).items()}
    path = _local_path(args.input)
    try:
        result = _convert(args, path, overrides)
    except (ValueError, OSError) as e:  # (ConversionError is a ValueError)
        from maskrcnn.interop.weights import wrong_source_hint

        hint = None if isinstance(e, FileNotFoundError) else wrong_source_hint(path, args.source_format)
        if hint is None:
            raise
        raise ValueError(hint) from None
    from maskrcnn.checkpoint import non_finite_keys
    from maskrcnn.listing import short_listing

    bad = non_finite_keys(result["state_dict"])
    if bad:  # such weights predict nothing (or NaN boxes); predict / eval / --init refuse them: said here
        raise ValueError(f"{args.input}: weights hold NaN or infinite values in tensors "
                         f"{short_listing(bad, limit=5)} (our names); nothing written")
    cfg = result["config"]
    names = result["class_names"]
    if args.class_names:
        names = given_class_names(args.class_names, cfg.model.num_classes)
    cfg.data.class_names = tuple(names)
    save_checkpoint(args.output, model_state=result["state_dict"], config=cfg, class_names=names,
                    converted_from={"format": args.source_format, "layout": result["layout"],
                                    "source": os.path.basename(str(args.input))})
    for note in result.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.input} ({result['layout']}, {cfg.model.backbone}, {cfg.model.num_classes} classes incl. "
          f"background, {result['report']['num_tensors']} tensors) -> {args.output}", file=sys.stderr)
    return 0
