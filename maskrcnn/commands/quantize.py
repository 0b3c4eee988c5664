"""``maskrcnn quantize``: INT8 post-training quantization of a checkpoint for CPU inference.

    maskrcnn quantize --weights CKPT --calib-images PATH [--calib-json J] [--calib-count 16]
                      [--parts features,rpn,box_head,mask_head] [--engine x86|onednn|fbgemm|qnnpack]
                      [--set KEY=VALUE ...] --output OUT.pth

Calibrates on ``--calib-count`` images spread evenly over the folder's sorted image files (or over the
images ``--calib-json`` lists, ``file_name``s relative to ``--calib-images``; or on the one image
``--calib-images`` names when it is a file) and writes a checkpoint
holding the fp32 weights and the calibrated activation statistics (``engine/int8.py``); ``predict``,
``eval``, ``serve`` and ``benchmark`` run it as INT8 as it is. ``--parts`` chooses what is quantized
(``modeling/quantize.py``): the backbone + FPN, the RPN's 3x3 convolution, the box head's fully
connected layers, the mask head's convolutions; by default all of them the model has, with one note
naming those it lacks (a keypoint model: no mask head) and saying that keypoint heads stay float32. A
part named in ``--parts`` that the model lacks is refused before calibration, naming it. An
``--output`` that names the same file as ``--weights`` (another spelling, a symlink or a hard link to it)
is refused: write the result under another name (the INT8 file leaves out the training state, so a
training checkpoint replaced by it could no longer be resumed).

``--engine`` sets PyTorch's quantized engine for this process before calibrating (default: the current
one, x86 on x86 CPUs); the file records it, and the other commands run it under it
(``commands/int8_engine.py``).

A calibration image that cannot be read is skipped with a warning naming it and counted in the last
line by reason as ``predict`` counts it (``unreadable_image``; ``image_too_large``, a good file over the
pixel limit, with the line saying the limit and how to raise it); only a set of which none could be read
is refused.
The mask head is calibrated on the detected boxes (score >= ``model.roi_heads.score_thresh``, as in
inference): a set where no image gives a detection is refused in one line saying so (one image with
a detection is enough); calibrate on images that show the objects, or leave it out with ``--parts``.

``add_int8_arguments`` / ``int8_predictor_kwargs`` / ``apply_int8_arguments`` give ``predict`` and ``eval``
the same ``--int8 --calib-images PATH`` options, which calibrate in memory before running (a checkpoint
already INT8 is run as it is, with one note, its calibration folder not read).
``refuse_calibration_without_int8`` refuses ``--calib-images`` / ``--calib-json`` / ``--calib-count`` /
``--parts`` given to them without ``--int8``; ``calibrating_on_evaluated_note`` is eval's note when the
calibration folder is the one it evaluates, holds it, or is a file or folder inside it. A layer left in
float32 because its INT8 kernel is wrong here is noted with what was measured
(``modeling/int8_kernel_check.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

from maskrcnn.shell import shell_word

HELP = "INT8 post-training quantization of a checkpoint (CPU), calibrated on a few images"


def add_int8_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    from maskrcnn.engine.int8_choices import DEFAULT_CALIBRATION_IMAGES, PARTS  # (no torch: --help)

    parser.add_argument("--calib-images", required=required, metavar="PATH",
                        help="folder of calibration images (or the image root of --calib-json); one "
                             "image file calibrates on that image alone")
    parser.add_argument("--calib-json", metavar="J", help="calibrate on the images this COCO JSON lists")
    # None: not given (refused without --int8), DEFAULT_CALIBRATION_IMAGES where it is used
    parser.add_argument("--calib-count", type=int, default=None, metavar="N",
                        help=f"calibration images, spread over the set ({DEFAULT_CALIBRATION_IMAGES})")
    parser.add_argument("--parts", default=None,
                        help=f"what to quantize, comma-separated, of {','.join(PARTS)} (default: all the "
                             "model has; a keypoint model has no mask head)")


def _is_calib_images_option(word: str) -> bool:
    # the option as its own word, or a prefix argparse takes for it ("--calib-i"; "--calib" is ambiguous)
    return len(word) > len("--calib-") and "--calib-images".startswith(word)


def _written_folder(path: str) -> str:
    # the folder as written, not normalised: a shell pattern hands over every file with the pattern's own
    # spelling ('cal/*.png' -> cal/0.png cal/1.png), so './cal/1.png' or 'cal//1.png' is another hand's
    return os.path.dirname(path)


def expanded_calibration_words(argv) -> list:
    """The words of ``argv`` that look like a shell pattern's expansion after ``--calib-images``
    (``--calib-images cal/*.png``: the first file is the option's value, the rest follow it): the words
    right after the value, up to the first that is not a file of the value's folder as written. [] when
    the option is not its own word (``--calib-images=cal/*.png`` is never expanded by the shell into
    several words) or its value is no file. The one rule of quantize's, eval's and predict's checks; a
    file meant as an input is named another way (``./cal/1.png``: ``unexpanded_spelling``)."""
    argv = list(argv or ())
    end = argv.index("--") if "--" in argv else len(argv)
    starts = [i for i in range(end - 1) if _is_calib_images_option(argv[i])]
    if not starts:
        return []
    value = argv[starts[-1] + 1]  # argparse keeps the last one given
    if not os.path.isfile(value):
        return []
    words = []
    for word in argv[starts[-1] + 2:end]:
        if not (os.path.isfile(word) and _written_folder(word) == _written_folder(value)):
            break
        words.append(word)
    return words


def unexpanded_spelling(path: str) -> str:
    """``path`` written so that ``expanded_calibration_words`` does not take it (another folder as
    written, the same file): ``./cal/1.png``, ``/data/cal/./1.png``."""
    if os.path.isabs(path):
        return os.path.join(os.path.dirname(path), ".", os.path.basename(path))
    return os.path.join(".", path)


def calib_glob_hint(argv, words) -> str:
    """The hint for ``words`` (the parser's leftovers, or predict's first inputs) when they all are a
    shell pattern's expansion after ``--calib-images`` in ``argv`` (``expanded_calibration_words``),
    else "". ``--calib-images`` takes one folder (or one file); a pattern is not its form. The folder is
    named unless it is the working folder ('.' would calibrate on whatever the working folder holds,
    as ``engine.int8``'s hint for a quoted pattern says)."""
    expanded = expanded_calibration_words(argv)
    if not words or not all(w in expanded for w in words):
        return ""
    folder = _written_folder(expanded[0])
    where = f"--calib-images {shell_word(folder)}" if folder else "give the folder of the calibration images"
    return f" (a shell pattern expanded after --calib-images? it takes one folder or one file: {where})"


def _calib_count(args) -> int:
    """``--calib-count``, or the default when it was not given."""
    from maskrcnn.engine.int8_choices import DEFAULT_CALIBRATION_IMAGES

    count = getattr(args, "calib_count", None)
    return DEFAULT_CALIBRATION_IMAGES if count is None else count


def _parts(text: Optional[str]) -> Optional[list]:
    """``--parts`` as a list; None (not given): all the model has."""
    from maskrcnn.engine.int8_choices import PARTS

    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise ValueError(f"--parts: unknown {bad or 'empty list'}; choose from {','.join(PARTS)}")
    return parts


def int8_predictor_kwargs(args) -> dict:
    """Predictor options for a model about to be calibrated: CPU, float32, norms folded, plain
    convolutions (the int8 kernels replace Winograd and the fused additions)."""
    if getattr(args, "dtype", "float32") not in (None, "float32"):
        raise ValueError(f"--int8 runs without autocast; drop --dtype {args.dtype}")
    if str(getattr(args, "device", "cpu")) not in ("auto", "cpu"):
        raise ValueError(f"--int8 runs on the CPU, not --device {args.device}")
    # int8=None: a checkpoint written by `maskrcnn quantize` loads as the INT8 model it is (then
    # apply_int8_arguments calibrates nothing); a float one loads in float, to be calibrated
    return {"device": "cpu", "optimise": True, "winograd": False, "fused_add": False, "int8": None}


ALREADY_INT8 = "already INT8: --int8 / --calib-images not needed"
NEEDS_CALIBRATION = "--int8 needs --calib-images PATH (or a checkpoint written by `maskrcnn quantize`)"


def refuse_int8_without_calibration(predictor, args) -> None:
    """``--int8`` on a float checkpoint without ``--calib-images``: refused (known once the checkpoint is
    loaded: one written by ``maskrcnn quantize`` needs none). Commands call it before their warnings
    about other options, so that the refusal is the line a refused run prints."""
    if args.int8 and not predictor.int8_parts and not args.calib_images:
        raise ValueError(NEEDS_CALIBRATION)


def apply_int8_arguments(predictor, args) -> Optional[dict]:
    """Calibrate ``predictor``'s model on ``--calib-images`` and quantize it in place; returns the
    "int8" section. Prints what it did on stderr. A predictor already INT8 (a checkpoint written by
    ``maskrcnn quantize``) is left as it is, with one note, and the folder is not read: None."""
    from maskrcnn.engine.int8 import calibration_files, quantize_predictor
    from maskrcnn.modeling.quantize import check_parts

    if predictor.int8_parts:
        print(f"note: {ALREADY_INT8}", file=sys.stderr)
        return None
    if not args.calib_images:
        raise ValueError(NEEDS_CALIBRATION)
    parts = _parts(args.parts)
    named = f"--parts {args.parts}" if parts else "int8"
    # a part the model lacks: refused before the calibration images are listed, the message naming --parts
    check_parts(predictor.model, parts, named=named)
    files = calibration_files(args.calib_images, json_path=args.calib_json, count=_calib_count(args))
    note = _parts_note(predictor.model, parts)
    if note:  # before calibrating, which takes a while
        print(f"note: {note}", file=sys.stderr)
    start = time.perf_counter()

    def skip(path, reason: str) -> None:
        print(f"warning: skipped calibration image {reason}", file=sys.stderr)  # reason names the file

    section = quantize_predictor(predictor, files, parts=parts, parts_named=named,
                                 source=str(args.calib_json or args.calib_images), on_unreadable=skip)
    print(f"int8: quantized {', '.join(section['parts'])} ({section['engine']} engine), calibrated on "
          f"{section['calibration']['images']} image(s){_skipped(section)} in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    from maskrcnn.data.images import too_large_line

    # good files over the pixel limit: how to read them
    too_large = too_large_line(section["calibration"]["skipped_reasons"])
    if too_large:
        print(too_large, file=sys.stderr)
    why = getattr(predictor.model, "int8_float_why", {})
    for layer in getattr(predictor.model, "int8_float_layers", []):
        # what was measured on this CPU (modeling/int8_kernel_check.py), not a guess from its instruction set
        measured = why.get(layer, "its INT8 kernel disagrees with float32 here")
        print(f"note: {layer} runs in float32: {measured}; the file still holds its statistics, so a CPU "
              "whose kernel works runs it in INT8", file=sys.stderr)
    return section


def refuse_calibration_without_int8(args) -> None:
    """``--calib-images`` / ``--calib-json`` / ``--calib-count`` / ``--parts`` given to predict or eval
    without ``--int8``: refused (a forgotten ``--int8`` would otherwise run float32 without a word)."""
    from maskrcnn.commands.flag_options import refuse_without

    if not args.int8:
        refuse_without("--int8", [("--calib-images", args.calib_images is not None),
                                  ("--calib-json", args.calib_json is not None),
                                  ("--calib-count", getattr(args, "calib_count", None) is not None),
                                  ("--parts", args.parts is not None)])


def calibrating_on_evaluated_note(calib, images) -> Optional[str]:
    """eval's note when ``calib`` (``--calib-images``) is the folder of the images evaluated, one
    holding it, or a file or subfolder inside it: the scales were measured on images scored. None
    otherwise."""
    from pathlib import Path

    if not calib or not images:
        return None
    try:
        calib_path, images_path = Path(calib).resolve(), Path(images).resolve()
    except OSError:
        return None
    if calib_path == images_path or calib_path in images_path.parents:
        return (f"--calib-images {calib} is (or holds) the --images folder evaluated: calibrate on "
                "training images, not on the ones you evaluate")
    if images_path in calib_path.parents:  # a file or a subfolder of it: some of the images evaluated
        return (f"--calib-images {calib} is inside the --images folder evaluated: calibrate on "
                "training images, not on the ones you evaluate")
    return None


def _parts_note(model, parts: Optional[list]) -> str:
    """One line for a model INT8 does not cover whole: the parts quantized, why the others are not (with
    ``parts`` None, all the model has) and that a keypoint head runs in float32; "" for any other."""
    from maskrcnn.modeling.quantize import lacking_parts, quantizable_parts

    lacking = lacking_parts(model) if parts is None else {}  # named parts: all there (checked)
    keypoints = getattr(model.roi_heads, "keypoint_head", None) is not None
    if not lacking and not keypoints:
        return ""
    quantized = parts if parts is not None else quantizable_parts(model)
    why = [*lacking.values(), *(["its keypoint head always runs in float32"] if keypoints else [])]
    return f"INT8 for {', '.join(quantized)}; {'; '.join(why)}"


def _skipped(section: dict, what: str = "") -> str:
    """", N WHAT skipped (1 image_too_large, 1 unreadable_image)" as predict counts them; "" for none."""
    from maskrcnn.data.images import reason_counts

    reasons = section["calibration"]["skipped_reasons"]  # {skip reason: images}
    what = f" {what}" if what else ""
    return f", {sum(reasons.values())}{what} skipped ({reason_counts(reasons)})" if reasons else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint written by train / convert (FILE#ema: "
                        "the EMA copy 'model_ema' it keeps, calibrated and written as the output's weights)")
    parser.add_argument("--output", required=True, help="the INT8 checkpoint to write (.pth)")
    add_int8_arguments(parser, required=True)
    from maskrcnn.commands.int8_engine import add_engine_argument

    add_engine_argument(parser)
    parser.add_argument(
        "--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help="config overrides, stored with the output (e.g. input.min_size_test=640)",
    )  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    from maskrcnn.commands.int8_engine import set_engine_from_args
    from maskrcnn.commands.weights_args import no_config_kwargs, print_weights_notes
    from maskrcnn.config import parse_set_args
    from maskrcnn.engine.int8 import INT8_KEY, save_int8_checkpoint
    from maskrcnn.interop.weights import split_ema
    from maskrcnn.io_utils import check_output_file, check_output_not_input
    from maskrcnn.predictor import Predictor

    set_engine_from_args(args)  # before anything is built: the calibration reads the engine
    check_output_file(args.output, "--output")
    # the output keeps no training state: one naming the --weights file (any spelling, a link) is refused
    check_output_not_input(args.output, split_ema(args.weights)[0], result="the INT8 checkpoint")
    overrides = parse_set_args(args.set)
    predictor = Predictor.from_checkpoint(  # int8=False: an INT8 input is calibrated again, from its fp32
        args.weights, overrides=overrides or None, **{**int8_predictor_kwargs(args), "int8": False},
        **no_config_kwargs("quantize"), keep_checkpoint=True,
    )
    print_weights_notes(predictor, args.weights)
    if INT8_KEY in predictor.checkpoint:  # quantized before: its calibration is not carried over, said once
        print(f"note: {args.weights} is already INT8: calibrated again from the float32 weights it holds, on "
              f"--calib-images {args.calib_images}; its earlier calibration is not kept", file=sys.stderr)
    section = apply_int8_arguments(predictor, args)
    # as the predictor read it: "FILE#ema" calibrated on the EMA copy writes that copy as 'model'
    ckpt = dict(predictor.checkpoint)
    ckpt.pop(INT8_KEY, None)
    ckpt["config"] = predictor.cfg.to_dict()  # with the overrides the calibration ran under
    save_int8_checkpoint(args.output, ckpt, section)
    print(f"wrote {args.output}: fp32 weights + {len(section['observers'])} calibrated statistics"
          f"{_skipped(section, 'calibration image(s)')}; run it "
          f"with `maskrcnn predict --weights {shell_word(args.output)} ...` (CPU)")
    return 0
