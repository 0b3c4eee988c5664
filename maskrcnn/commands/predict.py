"""``maskrcnn predict``: run a checkpoint or an exported ONNX file on image files and folders; write COCO
results and overlays.

    maskrcnn predict --weights CKPT_OR_ONNX IMAGE_OR_DIR... --output DIR [--score-thresh T] [--device D]
                     [--batch-size B] [--dtype bfloat16] [--no-overlays]
                     [--tile SIZE [--tile-overlap F] [--no-full-image] [--tile-scale S]]
                     [--tta [--tta-sizes 400,600,800] [--tta-max-size PX] [--tta-no-flip]]
                     [--int8 --calib-images PATH [--calib-json J] [--calib-count N]]
                     [--export coco,labelme,cvat,labelstudio,yolo,masks,cutouts [--export-url-prefix P]
                               [--export-tolerance PX] [--export-min-area PX]]

Writes ``DIR/predictions.json`` (COCO results format: ``image_id``, ``file_name``, ``category_id``,
``category_name`` (the class as the checkpoint names it; COCO readers ignore it), ``bbox`` [x, y, w, h],
``score``, ``segmentation`` RLE with a str ``counts``, ``keypoints`` flat [x, y, v, ...]; non-ASCII names
as ``\\u`` escapes, read back exactly; ``overlay``: the path of the image's overlay, relative to DIR) and
``DIR/overlays/<image path>.png``, the image's path relative to the images folder as the exports have it
(``a/x.jpg`` and ``b/x.jpg`` give ``overlays/a/x.png`` and ``overlays/b/x.png``; ``x.jpg`` beside ``x.png``
gives ``x.jpg.png`` and ``x.png.png`` in any order, also when one is predicted alone; ``overlay_paths``;
inputs on two Windows drives, under no one folder, by the image's name, made unique).
Class names that repeat or are empty are told apart as 'NAME (id INDEX)' everywhere, with a warning
(``Predictor``). Folders are searched recursively for image files, in sorted order. An ``.onnx`` file
(``maskrcnn export``) runs with onnxruntime through the same predictor (resize, paste, outputs);
``--dtype``, ``--set`` and the optimisation switches are the checkpoint's only. A file that cannot be
read, or that the model fails on (an image no forward can take, memory), is reported on stderr by name
and skipped; the summary counts it by reason (``unreadable_image``, ``image_too_large`` with a line saying the
pixel limit and how to raise it, ``prediction_failed``). Results are written as they are produced
(``DIR/predictions.partial.jsonl``, one record a line, until ``predictions.json`` is written at the end,
also after an error or an interrupt), so one bad image late in a folder loses nothing. An ``--output``
that holds an earlier run's results is said up front (how many images with detections, how many
overlays; of a results file over ``earlier_run.LARGE_RESULTS_BYTES`` its size: it is not read whole);
this run's replace them once its first image is done: ``predictions.json`` then holds this run's images
only and ``overlays/`` loses the earlier run's overlays of images this run did not draw (those listed
in ``overlays/written.json``, each run's list of the overlays it wrote, images without detections included;
those its records' ``overlay`` name; of runs that wrote flat names, ``<stem>.png``, ``<stem>_2.png``, ... of
the images its results name; sub-folders left empty go too; counted in a line), also when it is stopped by
Ctrl-C or an error later on, so the folder never mixes two runs. Other PNGs there (the user's) stay, and so do
all overlays under ``--no-overlays``. Stopped before its first image, the earlier files (the ``--export``
files too: none is written, the stop line says so) are left untouched, and so are they when none of the images
could be read (every one skipped: a line says so, exit status 1). Where the run writes in ``--output`` is
checked before the model loads: a folder where predictions.json or overlays/written.json goes, a file
where overlays/ goes (``check_run_folder``), the exports' places (``check_export_locations``), and that
the folder, or its nearest existing parent, takes new files (``io_utils.check_output_dir``); the exports
are written also when the results or the overlays' list then cannot be. Ctrl-C says how many images
were written and where; SIGTERM (``timeout``, ``docker stop``) is handled as Ctrl-C, as ``train`` handles it
(``stop_signals``): the images being predicted (one window of ``--batch-size``) are finished, the
results and exports of the images done are written, "stopped by SIGTERM: ..." and exit status 143 (a
second one while predicting stops at once; once the results and exports are being written a signal is
only recorded, so they are written whole, and the run then ends with that status; videos, predicted
before the images, have their own handler: the batch of frames in hand is finished, the video's results
and overlay written, status interrupted, then predict stops: ``_predict_videos_stoppable``).
Every requested export's location (and ``--export yolo``'s class names, before the videos too) is checked
before predicting
(``check_export_locations``). A ``predictions.partial.jsonl`` whose last line a kill or a full disk cut
short is read with that line dropped and a warning (``results_writer.read_partial_results``). A
checkpoint written by ``maskrcnn quantize`` runs as INT8 on the CPU (``--int8 --calib-images`` are
ignored then, with a note, and so are ``--no-optimise`` / ``--no-winograd``), under the quantized engine
it was calibrated under (``commands/int8_engine.py``); ``--int8 --calib-images PATH`` quantizes a plain
checkpoint in memory first (``commands/quantize.py``); ``--calib-images`` without ``--int8`` is refused
("needs --int8"). ``--score-thresh`` below the checkpoint's own ``model.roi_heads.score_thresh`` lowers that
one too (``Predictor.from_checkpoint``); an ONNX file's is fixed at export, so a note says how to lower it.
``--export`` also writes the predictions as pre-annotations for annotation tools, mask images or cut-outs
(``data/pre_annotations/export.py``). ``--tile SIZE`` predicts large images tile by tile for their small
objects (``commands/tile_args.py``, ``engine/tiling.py``). Video files (given, or found in the folders)
are predicted frame by frame, with a JSONL of results and an overlay video each
(``commands/predict_video.py``). The pass over the images, its end-of-run writes and its closing lines
are ``commands/predict_images.py``'s; this module lists the inputs, checks the output folder and loads
the model.
Overlays draw the detections scoring at least ``--overlay-score-thresh`` (0.5, as the demo and the serve
page; predictions.json keeps every detection) on images enlarged to ``--overlay-min-size`` px (512; videos
0) on their longer side (``overlay_defaults.py``).
Shapes: D detections of one image, H x W its original size, K keypoints.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

from maskrcnn import stop_signals
from maskrcnn.commands.flag_options import NO_OPTIMISE_HELP
from maskrcnn.commands.made_folders import folders_to_make
from maskrcnn.data.folders import spelled_path
from maskrcnn.data.pre_annotations.written_files import WRITTEN_FILE, WRITTEN_PARTIAL
from maskrcnn.overlay_defaults import (
    OVERLAY_DRAW_MAX,
    OVERLAY_MAX_SIZE,
    OVERLAY_MIN_SIZE,
    OVERLAY_SCORE_THRESH,
    check_overlay_min_size,
)
from maskrcnn.stop_signals import StoppedBySignal, signal_name

HELP = "run a checkpoint on images, write predictions.json and overlays"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders")
    parser.add_argument(
        "--weights", required=True,
        help="checkpoint written by train / convert (FILE#ema: the EMA copy 'model_ema' it keeps; a bare "
        "state dict of ours with --config), or an .onnx file written by export (run by onnxruntime)",
    )  # fmt: skip
    from maskrcnn.commands.weights_args import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--output", required=True, help="folder for predictions.json and overlays/")
    parser.add_argument(
        "--score-thresh",
        type=float,
        default=None,
        help="write only detections scoring at least this; below a checkpoint's own threshold "
             "(model.roi_heads.score_thresh) it lowers that one too, not an .onnx file's (fixed at export)",
    )
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda | cuda:N; mps, xpu accepted, untested (default: auto)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="images per forward, grouped by size (default 1: detections then never depend on batch-mates, "
        "whose padding changes border features slightly; larger batches pay off on a GPU)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="autocast dtype (bfloat16 on CPU or CUDA, float16 on CUDA only)",
    )
    parser.add_argument(
        "--int8", action="store_true",
        help="quantize to INT8 in memory first, calibrated on --calib-images (CPU; a checkpoint written "
        "by `maskrcnn quantize` is INT8 without this)",
    )  # fmt: skip
    from maskrcnn.commands.quantize import add_int8_arguments

    add_int8_arguments(parser)
    from maskrcnn.data.pre_annotations.export_args import add_export_arguments

    add_export_arguments(parser)
    parser.add_argument("--no-overlays", action="store_true", help="do not draw overlay PNGs")
    parser.add_argument(
        "--overlay-min-size", type=int, default=None, metavar="PX",
        help=f"draw overlays of images smaller than PX (longer side) enlarged by an integer factor, so that "
        f"labels stay legible (default {OVERLAY_MIN_SIZE} for images, 0 for videos; 0: not enlarged; "
        f"at most {OVERLAY_MAX_SIZE}); images longer than {OVERLAY_DRAW_MAX} px are drawn reduced to fit "
        f"it instead",
    )  # fmt: skip
    parser.add_argument(
        "--overlay-score-thresh", type=float, default=OVERLAY_SCORE_THRESH, metavar="T",
        help=f"draw detections scoring at least T in the overlays (default {OVERLAY_SCORE_THRESH:g}, as the "
        "demo and the serve page; predictions.json keeps every detection of --score-thresh)",
    )  # fmt: skip
    parser.add_argument(
        "--no-optimise", action="store_true",
        help=NO_OPTIMISE_HELP,
    )  # fmt: skip
    parser.add_argument(
        "--no-winograd", action="store_true",
        help="direct 3x3 convolutions on CPU (slower where Winograd is used; rounding closer to other "
             "libraries'; Winograd is left out by itself on CPUs where torch.mm lags oneDNN)",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    from maskrcnn.commands.tile_args import add_tile_arguments
    from maskrcnn.commands.tta_args import add_tta_arguments

    add_tile_arguments(parser)
    add_tta_arguments(parser)
    from maskrcnn.commands.predict_video import add_video_arguments

    add_video_arguments(parser)


def expand_inputs(inputs, *, output=None, outputs=None, on_left_out=None, on_same_file=None,
                  on_empty_folder=None) -> list:
    """Files as given, folders expanded recursively to their image files (sorted). A missing path is an
    error (a typo should not silently produce an empty result). A file reached twice (a folder and a file
    in it, nested folders) is predicted once. Inside a folder, files of a ``predict`` output folder (the
    ``output`` of this run, or a sub-folder holding ``predictions.json``) are left out, and so are the
    overlays/ folder of one (the images folder itself when it is the output) and, in the folders a run
    writes (``run_folder_names``: overlays/, masks/, cutouts/, ...) that hold a run's list of the files it
    wrote (``written.json``), the files that list names, not the user's images beside them
    (``_OutputFolders.run_file``; one line, ``run_files_line``, says how many went and why): an output
    folder inside the images folder would otherwise have its own overlays and cut-outs predicted, more
    each run. ``outputs``:
    an ``_OutputFolders`` to share with later checks of the run (made from ``output`` when None).

    Paths found in the folders and not predicted are reported by ``on_left_out(path, reason)`` (by
    default a line ``maskrcnn predict: left out PATH: REASON`` on stderr), one call each: a second path
    to a file listed already (a symlink beside its target: "same file as imgs/good.png", the file itself
    kept rather than the link whatever their order; the same path reached twice says nothing), a broken
    link, a symlinked subfolder (not followed). A file named on the command line is never left out as
    another's alias: the user asked for it by that name (a script may look for its overlay), so
    ``a.jpg link_to_a.jpg`` predicts both, and ``on_same_file(path, other)`` (by default a note on stderr)
    says that ``path`` is the same file as ``other``, listed already.

    A path given that is a symlink loop is left out (``on_left_out``), as an unreadable file is skipped:
    the other inputs are still predicted. ``on_empty_folder(folder)`` is called for each folder given in
    which no image file was found (it may hold videos: the caller knows)."""
    from maskrcnn.data.folders import is_symlink_loop
    from maskrcnn.data.images import list_images_and_passed_over

    if on_left_out is None:
        on_left_out = print_left_out
    if on_same_file is None:
        on_same_file = print_same_file
    if outputs is None:
        outputs = _OutputFolders({Path(output).resolve()} if output is not None else set())
    # given by name: compared as written, made absolute ('a.jpg' and './a.jpg' are one path, not a link)
    named = {spelled_path(p) for p in inputs if not Path(p).is_dir()}
    files, seen, reported = [], {}, set()
    # the paths in files, as spelled_path has them -> the file each is (resolved): the same path twice is
    # listed once; a spelling with '..' past a link ('imgs/sub/../a.png', sub a link) may be another file
    listed: dict = {}  # spelled -> {resolved, ...}
    in_output: dict = {}  # the paths left out for lying in an output folder -> their file, counted once each
    run_folders: set = set()  # the run folders (resolved) whose list named an image left out
    for given in inputs:
        if is_symlink_loop(given):  # no file at its end, as a zero-byte file has no image: named, skipped
            _report_once(Path(given), "a symlink loop", reported, on_left_out)
            continue
        top = Path(given).resolve()
        found, passed_over = list_images_and_passed_over(given, recursive=True)
        if not found and on_empty_folder is not None and Path(given).is_dir():
            on_empty_folder(Path(given))
        for path, reason in passed_over:
            if path not in reported:  # once, when nested folders are given
                reported.add(path)
                on_left_out(path, reason)
        for f in found:
            spelled = spelled_path(f)
            key = f.resolve()
            if key in listed.get(spelled, ()):
                continue
            why = outputs.run_file(key, top) if top != key else None
            if why is not None:  # (why, the folder as the user spelled the input, its lists' problems)
                shown = Path(given) / why[1].relative_to(top)
                in_output[spelled] = key, (why[0], shown, outputs.list_problems(why[1], shown=shown))
                if why[0] == "listed":
                    run_folders.add(why[1])
                continue
            kept = seen.get(key)
            if kept is None:
                seen[key] = f
            elif _is_alias(kept, f, named):
                # the file itself wins over a link to it found first (link.jpg sorts before rgb.jpg), in the
                # link's place in the order
                files[files.index(kept)] = f
                listed.get(spelled_path(kept), set()).discard(key)
                listed.setdefault(spelled, set()).add(key)
                seen[key] = f
                _report_once(kept, f"same file as {shown_path(f)}", reported, on_left_out)
                continue
            elif spelled in named or (kept.is_symlink() and not f.is_symlink()):
                # given by name (the user asked for it so), or the file itself beside a link given by name
                on_same_file(*((f, kept) if spelled in named else (kept, f)))
                if not f.is_symlink():
                    seen[key] = f
            else:  # another name for it found in a folder: said, since the user may count on both
                _report_once(f, f"same file as {shown_path(kept)}", reported, on_left_out)
                continue
            listed.setdefault(spelled, set()).add(key)
            files.append(f)
    # an image of the user's in such a folder (yolo/images/ beside the run's labels) is predicted: said
    kept_beside = any(folder in key.parents for key in seen for folder in run_folders)
    line = run_files_line((why for p, (resolved, why) in in_output.items()
                           if resolved not in listed.get(p, ())),  # those not predicted by another path
                          kept_beside=kept_beside)
    if line:
        print(line, file=sys.stderr)
    return files


def other_files(inputs, outputs) -> list:
    """The files in the folders ``inputs`` (at any depth, symlinked folders not followed) that have
    neither an image nor a video extension, sorted: never predicted, so counted in one line
    (``other_files_line``) rather than left out without a word. Output folders of ``predict``
    (``outputs``, an ``_OutputFolders``) are not looked in, and the files a run folder's list names (its
    YOLO labels, masks/index.json, LabelMe's files by labelme.written.json beside labelme/; the list
    itself), the single-file exports that exports.written.json beside them names (coco_instances.json,
    ...; the list too) and a video run's results (``_video_results``) are not counted: they are
    a run's own, not the user's."""
    import os

    from maskrcnn.data.images import IMAGE_EXTENSIONS
    from maskrcnn.data.video import VIDEO_EXTENSIONS

    known = {e.lower() for e in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS)}
    found = []
    for given in inputs:
        if not Path(given).is_dir():
            continue
        top = Path(given).resolve()
        for folder, subfolders, names in os.walk(given):
            here = Path(folder).resolve()
            if outputs.is_output(here) or outputs.inside(here, top):
                subfolders[:] = []
                continue
            found += [Path(folder) / n for n in names
                      if Path(n).suffix.lower() not in known and (Path(folder) / n).is_file()
                      and outputs.run_file(here / n, top) is None and not _video_results(Path(folder) / n)]
    return sorted(set(found))


def other_files_line(files: Sequence, shown: int = 3) -> Optional[str]:
    """One line counting the files that are not images or videos and naming the first ``shown``."""
    if not files:
        return None
    names = ", ".join(shown_path(f) for f in files[:shown]) + (", ..." if len(files) > shown else "")
    return (f"maskrcnn predict: left out {len(files)} file(s) that are not images or videos (by their "
            f"extension): {names}")


def _is_alias(kept: Path, f: Path, named: set) -> bool:
    """Whether ``kept``, listed already, is to give its place to ``f``, the same file: ``kept`` is a link
    found in a folder (not named on the command line) and ``f`` the file itself."""
    return kept.is_symlink() and not f.is_symlink() and spelled_path(kept) not in named


def _report_once(path, reason: str, reported: set, on_left_out) -> None:
    if path not in reported:
        reported.add(path)
        on_left_out(path, reason)


def empty_folder_reason(folder: Path) -> str:
    """Why the folder ``folder``, given on the command line, gave nothing to predict."""
    from maskrcnn.data.images import IMAGE_EXTENSIONS

    reason = "a folder with no image or video file in it"
    if folder.suffix.lower() in IMAGE_EXTENSIONS:  # "dir.jpg": the user may have taken it for an image
        reason += " (a folder given is searched for images, whatever its name)"
    return reason


def print_left_out(path, reason: str) -> None:
    print(f"maskrcnn predict: left out {shown_path(path)}: {reason}", file=sys.stderr)


def print_same_file(path, other) -> None:
    print(f"maskrcnn predict: note: {shown_path(path)} is the same file as {shown_path(other)}: predicted "
          "under both names", file=sys.stderr)


def shown_path(path) -> str:
    """``path`` for a printed line: as written, or quoted with its control characters escaped
    (``shown_text.display_name``): a newline in a file name broke the progress line in two."""
    from maskrcnn.shown_text import display_name

    return display_name(path)


OVERLAYS_DIR = "overlays"
RESULT_FILES = ("predictions.json", "predictions.partial.jsonl")
# the lists of the files a run wrote, in each folder it writes
_WRITTEN_LISTS = (WRITTEN_FILE, WRITTEN_PARTIAL)


def check_run_folder(out_dir: Path, *, images: bool, overlays: bool) -> None:
    """Refuse, before the model loads, an ``--output`` where the run's own files cannot go: a folder where
    ``predictions.json`` (or its side file) goes (``images``: images are predicted; a run of videos only
    writes neither), a file where ``overlays/`` goes, or a folder where its list of the overlays goes
    (``overlays/written.json`` and a killed run's ``written.partial.jsonl``; ``overlays``: drawn). Else
    each is found after the model loaded, or after every image was predicted. Whether the folder (or,
    still to be made, its nearest existing parent) takes new files is ``io_utils.check_output_dir``'s.
    ValueError naming the path."""
    problems = [f"{out_dir / name} is a folder where predict writes its results file"
                for name in (RESULT_FILES if images else ()) if (out_dir / name).is_dir()]
    in_overlays = []  # those --no-overlays would avoid
    folder = out_dir / OVERLAYS_DIR
    if overlays and (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        in_overlays.append(f"{folder} is a file where predict writes its overlays folder")
    elif overlays:
        in_overlays += [f"{folder / name} is a folder where predict writes its list of the overlays"
                        for name in _WRITTEN_LISTS if (folder / name).is_dir()]
    if problems or in_overlays:
        drawn = ", or give --no-overlays" if in_overlays else ""
        raise ValueError("; ".join(problems + in_overlays) + f" (move it away or choose another --output"
                         f"{drawn}): nothing predicted")


def run_folder_names() -> frozenset:
    """The folders a ``predict`` run writes in its ``--output``: ``overlays`` and every ``--export``
    format's, taken from the exports' own list of what they write (``export_locations``), so that a new
    format's folder is left out of the inputs too."""
    from maskrcnn.data.pre_annotations.export import export_locations
    from maskrcnn.data.pre_annotations.export_args import EXPORT_FORMATS

    written = export_locations(Path(), EXPORT_FORMATS)
    return frozenset({OVERLAYS_DIR} | {path.parts[0] for path, _, kind in written if kind == "folder"})


class _OutputFolders:
    """Which files found in the input folders a ``predict`` run wrote (``run_file``): those in an output
    folder (one of ``outputs``, resolved, or a folder holding ``predictions.json`` or
    ``predictions.partial.jsonl``, as a whole, and its overlays/: runs before the lists listed none), and,
    in a folder a run writes (``run_folder_names``: overlays/, masks/, cutouts/, labelme/, yolo/) holding a
    run's list of the files it wrote there (``written.json``, or a killed run's ``written.partial.jsonl``;
    its predictions.json may have been deleted), the files that list names and the list itself: the
    user's own images beside them (YOLO's images/ beside its labels/, LabelMe's) are predicted. Each
    folder's answer is remembered, so that a folder of 10,000 images is looked at on disk once, not once
    per file. For one listing: files written meanwhile are not seen."""

    def __init__(self, outputs: set):
        self.outputs = set(outputs)
        self._is_output: dict = {}  # folder -> whether it is an output folder itself
        self._lists: dict = {}  # run folder -> the paths its lists name; None: a list there is unreadable
        self._problems: dict = {}  # run folder -> [(list file, what is wrong)] of its unreadable lists
        self._singles: dict = {}  # folder -> the single-file exports a run recorded there, with the record
        self._run_folders = run_folder_names()

    def is_output(self, folder: Path) -> bool:
        # not by an overlays/written.json inside: a folder predicted into itself (`predict 2024 --output
        # 2024`, predictions.json deleted since) or a show-data output holds the user's own images beside
        # it; ``run_file`` leaves out that overlays/ folder's files by its list
        if folder not in self._is_output:
            self._is_output[folder] = folder in self.outputs or any(
                (folder / name).is_file() for name in RESULT_FILES)
        return self._is_output[folder]

    def _whole(self, folder: Path) -> bool:
        """Whether ``folder`` is an output folder, or the overlays/ folder of one."""
        return self.is_output(folder) or (folder.name == OVERLAYS_DIR and self.is_output(folder.parent))

    def _run_list(self, folder: Path):
        """The paths the lists of the run folder ``folder`` name (``written_files.listed_files``); None
        when a list there cannot be read; False when ``folder`` is no run folder holding a list."""
        if folder not in self._lists:
            from maskrcnn.data.pre_annotations.written_files import lists_and_problems

            record = _record_of(folder)
            holds = folder.name in self._run_folders and any(p.is_file() for p in _lists_at(record))
            found = lists_and_problems(folder, record) if holds else (False, [])
            self._lists[folder], self._problems[folder] = found
        return self._lists[folder]

    def _single_files(self, folder: Path) -> set:
        """The names of the single-file exports (``coco_instances.json``, ...) and of their record that a
        run recorded writing in ``folder`` (``export.single_file_exports``); empty without a readable
        record: those names alone make no file a run's."""
        if folder not in self._singles:
            from maskrcnn.data.pre_annotations.export import single_file_exports

            self._singles[folder] = single_file_exports(folder) or set()
        return self._singles[folder]

    def list_problems(self, folder: Path, *, shown: Path) -> tuple:
        """``(list file, what is wrong)`` of each list of the run folder ``folder`` (resolved, seen by
        ``run_file``) that cannot be read (a parse error with its line and column), the file named under
        ``shown``, the folder as the user spelled it; () when its lists read."""
        beside = _record_of(shown).parent  # where its lists lie: in it, or beside it (LabelMe's)
        return tuple((beside / path.name, what) for path, what in self._problems.get(folder, ()))

    def inside(self, folder: Path, top: Path) -> bool:
        """Whether ``folder`` (resolved) is, or is inside, an output folder below ``top``, or the overlays/
        folder of one (``top`` itself may be an output: ``--output`` the images folder). Its parents are
        walked up to ``top``, each looked at on disk once per run (``is_output``)."""
        while folder != top and top in folder.parents:
            if self._whole(folder):
                return True
            folder = folder.parent
        return False

    def run_file(self, path: Path, top: Path) -> Optional[tuple]:
        """Why the file ``path`` (resolved), found below ``top``, is a run's own, as ``(why, folder)``:
        "output" (``folder`` an output folder or its overlays/, ``inside``), "listed" (``folder`` a run
        folder whose list names it, relative to ``folder``, or the list itself; or ``folder`` the one
        where exports.written.json names it, a single-file export, or is it), "unreadable" (``folder``
        a run folder whose list cannot be read: which files are the run's cannot be told, so all are
        taken, as before the lists named them); None: the user's. A masks/ or labelme/ folder without a
        list is the user's, also in the images folder: the listing is made before this run writes."""
        from maskrcnn.data.pre_annotations.export import LABELME_DIR

        labelme = path.parent / LABELME_DIR
        if path.name in (p.name for p in _lists_at(_record_of(labelme))) and self._run_list(labelme):
            return "listed", labelme  # LabelMe's list, kept beside its folder (the folder is read whole)
        if path.name in self._single_files(path.parent):  # coco_instances.json, ... and their record
            return "listed", path.parent
        folder = path.parent
        while folder != top and top in folder.parents:
            if self._whole(folder):  # named by the output folder, not its overlays/
                return "output", folder if self.is_output(folder) else folder.parent
            listed = self._run_list(folder)
            if listed is None:
                return "unreadable", folder
            if listed and (path.relative_to(folder).as_posix() in listed or (
                    path.parent == folder and path.name in _WRITTEN_LISTS)):
                return "listed", folder
            folder = folder.parent
        return None


def _record_of(folder: Path) -> Path:
    """Where the list of the files a run wrote in the run folder ``folder`` lies: LabelMe's beside it (a
    JSON list inside would be read back as a LabelMe file), the others' inside."""
    from maskrcnn.data.pre_annotations.export import LABELME_DIR, LABELME_RECORD

    return folder.parent / LABELME_RECORD if folder.name == LABELME_DIR else folder / WRITTEN_FILE


def _lists_at(record: Path) -> tuple:
    """The list ``record`` and a killed run's list beside it."""
    from maskrcnn.data.pre_annotations.written_files import partial_record

    return record, partial_record(record)


def run_files_line(left_out, *, kept_beside: bool = False) -> Optional[str]:
    """One line saying which image files of the input folders were left out as a run's own and why:
    ``left_out``, ``(why, folder as shown[, problems])`` of each (``_OutputFolders.run_file``; problems:
    ``(list file, what is wrong)`` of a folder whose list cannot be read, said: the parse error tells the
    user what to mend); None when none were.
    ``kept_beside``: images no list names were found in those run folders and predicted (said so)."""
    from maskrcnn.listing import short_listing

    left_out = list(left_out)
    if not left_out:
        return None
    by_why: dict = {}
    problems = set()  # (list file, what is wrong) of the run folders whose list cannot be read
    for why, folder, *rest in left_out:
        by_why.setdefault(why, []).append(folder)
        problems.update(rest[0] if rest else ())

    def folders(why, tail=lambda f: f):
        return short_listing(sorted({shown_path(tail(f)) for f in by_why[why]}), limit=3)

    def list_file(folder):
        lists = _lists_at(_record_of(folder))
        return next((p for p in lists if p.is_file()), lists[0])

    parts = []
    if "output" in by_why:
        parts.append(f"{len(by_why['output'])} in output folders (--output, a folder holding "
                     f"predictions.json, or its overlays/: {folders('output')})")
    if "listed" in by_why:
        parts.append(f"{len(by_why['listed'])} named by a run's list of the files it wrote "
                     f"({folders('listed', list_file)}"
                     + ("; the other images there are yours and predicted)" if kept_beside else ")"))
    if "unreadable" in by_why:
        said = "; ".join(f"{shown_path(path)}: {what}" for path, what in sorted(problems, key=str)[:3])
        said += f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        parts.append(f"{len(by_why['unreadable'])} in run folders whose list of the files written cannot be "
                     f"read ({said or folders('unreadable', list_file)}: all of the folder taken for the "
                     "run's)")
    return (f"maskrcnn predict: left out {len(left_out)} image file(s) inside predict output folders: "
            + "; ".join(parts))


def _video_results(path: Path) -> bool:
    """Whether ``path`` is a video run's results file (``<stem>.predictions.jsonl`` or its
    ``.predictions.partial.jsonl`` ending in its summary or a frame's line): ours, never the user's
    other files; by what the run wrote, not the name alone."""
    from maskrcnn.commands.predict_video import JSONL_SUFFIX, PARTIAL_SUFFIX, _summary_of

    return path.name.endswith((JSONL_SUFFIX, PARTIAL_SUFFIX)) and _summary_of(path) is not None


def _found_in_output(path: Path, inputs, output, outputs=None) -> bool:
    """Whether ``path``, found inside one of the folders ``inputs``, lies in a predict output folder there
    (not when given by name). ``outputs``: an ``_OutputFolders`` shared by the calls of one run."""
    key = Path(path).resolve()
    outputs = outputs if outputs is not None else _OutputFolders({Path(output).resolve()})
    return not any(Path(p).resolve() == key for p in inputs) and any(
        outputs.inside(key.parent, Path(p).resolve()) for p in inputs if Path(p).is_dir())


# An image whose shorter side is under this many pixels is enlarged tens of times to the model's input
# size (a 1x1 image some 800 times), where a random-looking blow-up gives confident detections of nothing:
# warned about, counted, and predicted all the same
TINY_IMAGE_PX = 16

# Memory of predicting one large image beyond the model's own, measured on the CPU with its overlay: about
# 32 bytes per pixel (40 MP: 1.9 GB in all, 100 MP: 3.8 GB), so an image at the 179 MP limit needs about
# 6 GB. Said once per run, from this size on.
LARGE_IMAGE_MP = 50
_BYTES_PER_PIXEL = 32


def large_image_note(path, H: int, W: int, max_size: int) -> Optional[str]:
    """The warning for an image of H x W pixels large enough that memory may run short, with the figure;
    None below ``LARGE_IMAGE_MP``. ``max_size``: the longest side the model resizes to
    (``input.max_size_test``)."""
    if H * W < LARGE_IMAGE_MP * 1e6:
        return None
    return (f"{shown_path(path)} is {W}x{H} = {H * W / 1e6:.0f} MP: predicting an image this large takes "
            f"about {H * W * _BYTES_PER_PIXEL / 1e9:.1f} GB of memory beyond the model's (about "
            f"{_BYTES_PER_PIXEL} bytes per pixel); the model sees it at most {max_size} px on its longer "
            f"side, so a copy downscaled to that size gives about the same detections for far less")


def _check_score_thresh(value, flag: str = "--score-thresh") -> None:
    """A one-line ValueError naming ``flag`` for a threshold no score can pass or fail as meant (also
    ``maskrcnn serve``'s)."""
    # NaN would compare false with every score and silently drop everything
    if value is not None and not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{flag} must be a finite number >= 0, got {value}")
    # Scores are probabilities: above 1 every answer is empty without a word (a typo 5 for 0.5, a percent)
    if value is not None and value > 1.0:
        raise ValueError(f"{flag} must be in [0, 1] (scores are probabilities), got {value:g}")


def _refuse_expanded_calibration_pattern(args) -> None:
    """``--calib-images cal/*.png`` expanded by the shell: the first file is the option's value and the
    others land among the images to predict (the positional IMAGE_OR_DIR takes them, so the parser leaves
    nothing over for ``cli.py``'s hint, as it does for quantize and eval). Refused only when the command
    line reads as that expansion (``quantize.expanded_calibration_words``: files of the value's folder as
    written, right after it, the option its own word); the message names the spelling that predicts
    them on purpose (``./cal/1.png``). Without the words as given (``args.argv``: a caller's own
    Namespace) nothing can tell, so nothing is refused."""
    from maskrcnn.commands.quantize import calib_glob_hint, expanded_calibration_words, unexpanded_spelling
    from maskrcnn.shell import shell_word

    argv = getattr(args, "argv", None)
    if argv is None or not getattr(args, "calib_images", None):
        return
    leading = [w for w in expanded_calibration_words(argv) if w in args.inputs]
    hint = calib_glob_hint(argv, leading)
    if hint:
        shown = " ".join(shell_word(unexpanded_spelling(w)) for w in leading[:3])
        raise ValueError(f"{' '.join(leading[:3])}{' ...' if len(leading) > 3 else ''}: image(s) of the "
                         f"--calib-images file's folder given to predict right after it{hint[:-1]}; to "
                         f"predict these very files, write them another way: {shown}"
                         f"{' ...' if len(leading) > 3 else ''})")


def run(args: argparse.Namespace) -> int:
    export_formats, out_dir = _check_arguments(args)
    outputs = _OutputFolders({Path(args.output).resolve()})  # one look per folder for images and videos
    files, videos, left_out, others = _list_inputs(args, outputs)
    if not files and not videos:
        print("maskrcnn predict: no image or video files found in the inputs", file=sys.stderr)
        return 1
    check_run_folder(out_dir, images=bool(files), overlays=bool(files) and not args.no_overlays)
    _note_video_options_without_videos(args, videos)
    predictor = _load_predictor(args)
    print(
        f"loaded {args.weights} ({predictor.cfg.model.backbone}, {_classes(len(predictor.class_names) - 1)}) "
        f"on {predictor.device}{'' if predictor.precision == 'float32' else ', ' + predictor.precision}; "
        f"{len(files)} image file(s)" + (f", {len(videos)} video(s)" if videos else ""),
        file=sys.stderr,
    )
    made = folders_to_make(out_dir)  # removed again if they stay empty (no image read, no video)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the checkpoint loaded: a typo leaves no folder
    if "yolo" in export_formats and files:  # before the videos too: refused after them, their time is lost
        from maskrcnn.data.pre_annotations.instances import categories_of
        from maskrcnn.data.pre_annotations.to_yolo import check_yolo_names

        check_yolo_names(categories_of(predictor.class_names, predictor.label_to_category_id))
    video_rc = _predict_videos_stoppable(predictor, videos, out_dir, args, images=len(files)) if videos else 0
    if not files:
        return video_rc
    from maskrcnn.commands.predict_images import ImagePass, summary

    # made by this run (``made`` not empty): no earlier file can be there, and no line promises one stays
    images = ImagePass(args=args, predictor=predictor, files=files, out_dir=out_dir,
                       export_formats=export_formats, made=made, new_folder=bool(made))
    t_start = time.perf_counter()
    images.predict()
    images.end_of_run_signal()
    return summary(images, seconds=time.perf_counter() - t_start, left_out=len(left_out) + len(others),
                   counted=bool(others), video_rc=video_rc)


def _check_arguments(args) -> tuple:
    """The options checked before anything is listed or loaded: the thresholds, the overlay size, the
    exports and ``--output`` (``io_utils.check_output_dir``; the exports' places, up front: one format
    failing at the end loses the rest), the video options. Returns (export formats, output folder)."""
    from maskrcnn.commands import predict_video
    from maskrcnn.data.pre_annotations.export import check_export_arguments, check_export_locations
    from maskrcnn.io_utils import check_output_dir

    _check_score_thresh(args.score_thresh)
    _check_score_thresh(args.overlay_score_thresh, "--overlay-score-thresh")
    check_overlay_min_size(args.overlay_min_size)
    export_formats = check_export_arguments(args)
    out_dir = check_output_dir(args.output)
    check_export_locations(out_dir, export_formats)
    predict_video.check_video_arguments(args)
    return export_formats, out_dir


def _list_inputs(args, outputs) -> tuple:
    """(image files, videos, paths left out by name, other files counted) of ``args.inputs``: the images
    (``expand_inputs``) and videos found, each path not predicted said once (a symlink to a file listed
    already, a broken link, a folder with nothing to predict), the files that are neither images nor
    videos counted in one line, and a predict output's videos (overlays) left out."""
    from maskrcnn.commands import predict_video

    left_out = []  # found in the folders, not predicted (a symlink to a file listed already, a broken link)

    def leave_out(path, reason):
        if path not in left_out:  # a symlinked folder is passed over by the image and the video listing
            left_out.append(path)
            print_left_out(path, reason)

    imageless = []  # folders given in which no image file was found
    found = expand_inputs(args.inputs, outputs=outputs, on_left_out=leave_out,
                          on_empty_folder=imageless.append)
    files, videos = predict_video.split_video_inputs(args.inputs, found, on_left_out=leave_out)
    for folder in imageless:  # said, not silently dropped: "dir.jpg" may have been meant as an image
        if not any(folder in v.parents for v in videos):
            leave_out(folder, empty_folder_reason(folder))
    others = other_files(args.inputs, outputs)
    if others:  # notes.txt beside the photos: counted, as README says what predict does not predict is
        print(other_files_line(others), file=sys.stderr)
    videos = [v for v in videos if not _found_in_output(v, args.inputs, args.output, outputs)]  # overlays
    return files, videos, left_out, others


def _note_video_options_without_videos(args, videos) -> None:
    from maskrcnn.commands import predict_video

    video_options = predict_video.video_options_given(args)  # --every, --start, ... given
    if video_options and not videos:
        print(f"maskrcnn predict: note: {', '.join(video_options)} "
              f"{'applies' if len(video_options) == 1 else 'apply'} to videos only, and no video is among "
              "the inputs: ignored", file=sys.stderr)


def _load_predictor(args):
    """The ``Predictor`` of ``--weights`` with the run's options (INT8, tiles, TTA, ``--set``), the
    calibration refusals said before it loads, its notes (options that do not apply, a fixed threshold)
    after."""
    from maskrcnn.commands.int8_engine import use_file_engine
    from maskrcnn.commands.quantize import refuse_calibration_without_int8
    from maskrcnn.commands.tile_args import tile_from_args
    from maskrcnn.commands.tta_args import tta_from_args
    from maskrcnn.commands.weights_args import config_kwargs
    from maskrcnn.config import parse_set_args
    from maskrcnn.predictor import FixedThresholdWarning, Predictor

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    options = dict(
        device=args.device,
        optimise=not args.no_optimise,
        winograd=False if args.no_winograd else None,
        dtype=None if args.dtype == "float32" else args.dtype,
    )
    refuse_calibration_without_int8(args)  # a forgotten --int8 would run float32 without a word
    _refuse_expanded_calibration_pattern(args)
    if args.int8:
        from maskrcnn.commands.quantize import int8_predictor_kwargs

        options = int8_predictor_kwargs(args)
    use_file_engine(args.weights, "predict")  # an INT8 file runs under the engine it was calibrated under
    with warnings.catch_warnings():  # its note is printed below, once, with the others
        warnings.simplefilter("ignore", FixedThresholdWarning)
        predictor = Predictor.from_weights(
            args.weights,
            overrides=parse_set_args(args.set),
            score_thresh=args.score_thresh,
            batch_size=args.batch_size,
            masks="rle",  # compact: memory does not grow with the photo (RLE is what predictions.json holds)
            tile=tile_from_args(args, warn=False),  # warned below, after the refusals
            tta=tta_from_args(args),
            **config_kwargs(args),
            **options,
        )
    _print_predictor_notes(predictor, args)
    return predictor


def _print_predictor_notes(predictor, args) -> None:
    """After the model loaded: the INT8 refusal, the tile warnings, the weights' notes, the options an
    ONNX or INT8 file does not take, the INT8 arguments applied, a threshold the file fixes."""
    from maskrcnn.commands.quantize import refuse_int8_without_calibration
    from maskrcnn.commands.tile_args import warn_tile_options
    from maskrcnn.commands.weights_args import print_weights_notes

    refuse_int8_without_calibration(predictor, args)  # the run is off: before any warning about tiles
    warn_tile_options(predictor.tile)
    print_weights_notes(predictor, args.weights)
    if predictor.runtime:  # an .onnx file: its graph was fixed at export, onnxruntime runs it as it is
        from maskrcnn.commands.flag_options import not_applying

        note = not_applying([("--no-optimise", args.no_optimise), ("--no-winograd", args.no_winograd)],
                            "an .onnx file", "onnxruntime runs its graph as exported")
        if note:
            print(f"maskrcnn predict: note: {note}", file=sys.stderr)
    elif (predictor.int8_parts or args.int8) and (args.no_optimise or args.no_winograd):  # benchmark's note
        from maskrcnn.commands.flag_options import not_applying

        what = "an INT8 file" if predictor.int8_parts else "--int8"
        note = not_applying([("--no-optimise", args.no_optimise), ("--no-winograd", args.no_winograd)], what,
                            "it always runs its INT8 kernels")
        print(f"maskrcnn predict: note: {note}", file=sys.stderr)
    if args.int8:
        from maskrcnn.commands.quantize import apply_int8_arguments

        apply_int8_arguments(predictor, args)
    low = predictor.fixed_threshold_note(args.score_thresh)
    if low:
        print(low, file=sys.stderr)


def _predict_videos_stoppable(predictor, videos, out_dir: Path, args, *, images: int) -> int:
    """``predict_videos`` with SIGTERM handled as Ctrl-C is (the images' own handler comes after it): the
    batch of frames in hand is finished, the video's results and the overlay of its frames done written,
    then predict stops (exit 143, ``StoppedBySignal``); a second signal stops at once. A signal after the
    last video's last batch (its overlay being finished) stops the run too: before the images, if any, and
    with exit 143 without: the handler's line said predict stops, and ``timeout`` or a scheduler must not
    take a run it stopped for a finished one."""
    from maskrcnn.commands import predict_video

    term = []

    def on_term(signum, frame):
        if term:
            raise StoppedBySignal("stopped at once by a second signal", signum)
        term.append(signum)
        # os.write, not print: a handler that prints while the loop prints can hit a reentrant write
        os.write(2, f"\n{signal_name(signum)}: the frames being predicted are finished, the video's results "
                    "and overlay of the frames done are written, then predict stops\n".encode())

    with stop_signals.handling((signal.SIGTERM,), on_term):
        rc = predict_video.predict_videos(predictor, videos, out_dir, args,
                                          stop_requested=lambda: term[0] if term else None)
    if term:
        not_done = f"; the {images} image(s) not predicted" if images else ""
        raise StoppedBySignal(f"after the {len(videos)} video(s) (their results written){not_done}", term[0])
    return rc


def _classes(n: int) -> str:
    return f"{n} class{'' if n == 1 else 'es'}"
