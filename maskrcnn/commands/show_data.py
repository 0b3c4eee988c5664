"""``maskrcnn show-data``: look at a COCO dataset before training on it.

    maskrcnn show-data --json J --images D --output DIR [--max N] [--overlay-min-size PX]
                       [--crowd-as-objects]

J is loaded with ``CocoDataset``, the validation training runs, so every count is what training would see
(skipped records included); ``--crowd-as-objects`` reads crowd annotations as objects, as training does with
``data.crowd_as_objects`` (CVAT's brush masks: ``data/crowd.py``). Every image's header is read first
(``check_image_files``, a few threads at once), so an image training would refuse (unreadable, or of another
size than the JSON's: ``image_size_mismatch``; over the pixel limit: ``image_too_large``, with a line saying
the limit and how to raise it) is skipped by name and its objects are not counted. The counts cover the whole
file, so ``--max`` limits the drawing, not that pass. An image whose header is good but whose pixels cannot be
decoded (a truncated JPEG) is found while drawing: it is left out the same way (one problem line, its objects
out of the totals) and the next image is drawn in its place. The ground truth of the first N readable images
is drawn to ``DIR/overlays/<file_name with .png for its extension>`` (masks, boxes, class names as
``shown_text.short_name`` shows them; crowd regions hatched; folders kept; control characters as ``_``;
``a.jpg`` and ``a.png`` both in the file give ``a.jpg.png`` and ``a.png.png``: ``overlay_paths``; images
smaller than ``--overlay-min-size``, 512 px by default, enlarged), and a summary is printed and written to
``DIR/summary.json``:

- ``images``; ``images_without_instances``: images with no instance other than crowd regions (those
  ``filter_empty`` would drop); ``instances`` and ``crowd`` (counts over the whole file);
- ``per_class``: {name: {"instances", "crowd", "images"}}, every category, in label order; ``images``:
  how many images hold an instance of it (crowd regions aside), so that 30 objects in 3 images show;
- ``sizes``: instances (crowd regions aside) small / medium / large by COCO's thresholds, area < 32^2,
  < 96^2, larger, with the area COCO's evaluation uses: the annotation's ``area`` when it has one,
  else its mask's;
- ``size_histogram``: the same instances by sqrt(area) in pixels, bins [lo, hi);
- ``keypoints`` (a file with a keypoint set): ``persons`` (non-crowd annotations of a category that
  defines the keypoint set in the file: not its cars), ``persons_without_labelled_keypoints``,
  ``labelled_v1`` / ``labelled_v2`` (points labelled occluded / visible), ``outside_image`` (labelled
  points far outside their image, made unlabelled); the overlays draw the labelled points and the
  category's skeleton;
- ``skipped``: the dataset's counts of skipped records by reason, ``problems``: the first 100 messages;
- ``overlays``: the overlays written, relative to ``DIR/overlays``; ``overlay_images``: {overlay: the
  image's ``file_name``}.

An overlay is written only over a file this command wrote: one listed in ``DIR/overlays/written.json``
(every overlay is listed there before it is written; a killed run's in ``written.partial.jsonl``) or in
the ``overlays`` of the ``DIR/summary.json`` there from an earlier run. Any other file of the overlay's
name in ``DIR/overlays`` (``predict``'s overlays of the same images, the user's own PNG, a link) is left as
it is, and the overlay takes a free name beside it (``x_2.png``, ...: ``overlay_images`` says whose it
is), with a line saying so. Each overlay is written atomically. The earlier runs' overlays this run does
not draw again (a smaller ``--max``, images filtered out of the file since) are removed once it has drawn
its first one, a line counting them, so that ``DIR/overlays`` shows this run's images only: only regular
``.png`` files inside ``DIR/overlays`` that those lists name (``written_files``: never a file the user put
there, never through a link; an unreadable list removes nothing, said in a line). A run that draws none
(``--max 0``, one stopped or refused before its first overlay) leaves them.

Ctrl-C (or SIGTERM) while drawing says what the folder holds: "interrupted: after N of M images; overlays
in DIR/overlays/; no summary written". A run stopped after its first overlay removes the earlier runs'
overlays as above and an earlier ``summary.json`` too (it described those overlays, perhaps of another
file); stopped before its first overlay, it says "nothing written" and leaves the folder as it was.

A file none of whose images can be used (all missing or unreadable, or none listed) ends with status 1,
after its summary, on one line naming it; skipped images beside usable ones leave the status 0.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

from maskrcnn import stop_signals
from maskrcnn.commands.data_report import IMAGE_DIR_ORDER, folded_classes, shown_name, skipped_line
from maskrcnn.listing import short_listing
from maskrcnn.overlay_defaults import OVERLAY_MAX_SIZE, OVERLAY_MIN_SIZE, check_overlay_min_size
from maskrcnn.stop_signals import StoppedBySignal
from maskrcnn.text_width import display_width, pad

HELP = "draw a COCO dataset's ground truth and summarise it (classes, sizes, crowd, skipped)"

SMALL, MEDIUM = 32**2, 96**2  # COCO's area thresholds
HISTOGRAM_EDGES = (0, 8, 16, 32, 64, 96, 128, 256, 512, math.inf)  # sqrt(area); 32 and 96 are edges
_MAX_PROBLEMS = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", required=True, help="COCO instance JSON file")
    parser.add_argument("--images", help="the folder file_name values are relative to (default, from the "
                                         f"export's layout: {IMAGE_DIR_ORDER})")
    parser.add_argument("--output", required=True, help="folder for overlays/ and summary.json")
    parser.add_argument("--max", type=int, default=20, metavar="N",
                        help="draw at most N images (default 20; the counts and header check cover all)")
    parser.add_argument("--overlay-min-size", type=int, default=OVERLAY_MIN_SIZE, metavar="PX",
                        help="draw images smaller than PX (longer side) enlarged by an integer factor "
                        f"(default {OVERLAY_MIN_SIZE}, as predict and the demo; 0: the image's own size; "
                        f"at most {OVERLAY_MAX_SIZE})")
    parser.add_argument("--exif-frame", choices=("auto", "turned", "stored"), default="auto",
                        help="photos whose size does not tell their EXIF turn (turned 180 degrees or "
                             "mirrored, EXIF 2, 3, 4; square and turned by a quarter, 5 to 8): read as the "
                             "file's "
                             "quarter-turned photos show its tool did (auto, the default), turned, or as "
                             "stored (data.exif_frame)")
    parser.add_argument("--crowd-as-objects", action="store_true",
                        help="count crowd annotations (iscrowd 1) as ordinary objects (data.crowd_as_objects)"
                             ": CVAT's COCO 1.0 export marks masks drawn with its brush so")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _area(ann: dict, height: int, width: int) -> float:
    """The area COCO's evaluation bins by: the ``area`` field, else the mask's, else the box's."""
    import pycocotools.mask as mask_utils

    area = ann.get("area")
    if isinstance(area, (int, float)) and not isinstance(area, bool) and math.isfinite(area):
        return float(area)
    seg = ann.get("segmentation")
    try:
        if isinstance(seg, list):  # polygons under 3 points are let through by the validation: drop them
            polygons = [p for p in seg if len(p) >= 6]  # (pycocotools reads a 4-number list as a box)
            return float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))))
        if isinstance(seg, dict):
            rle = dict(seg)
            if isinstance(rle["counts"], list):
                rle = mask_utils.frPyObjects(rle, height, width)
            elif isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
            return float(mask_utils.area(rle))
    except (TypeError, ValueError, KeyError, IndexError):
        pass  # undecodable: the dataset drops it when the image is read; the box stands in here
    return float(ann["bbox"][2] * ann["bbox"][3])


def summarise(dataset) -> dict:
    """The summary of a ``CocoDataset`` (see the module docstring)."""
    coco = dataset.to_coco_dict()
    sizes = {img["id"]: (img["height"], img["width"]) for img in coco["images"]}
    per_class = {name: {"instances": 0, "crowd": 0, "images": 0} for name in dataset.class_names[1:]}
    images_of = {name: set() for name in per_class}  # the image ids holding an instance of the class
    size_bins = {"small": 0, "medium": 0, "large": 0}
    histogram = [0] * (len(HISTOGRAM_EDGES) - 1)
    with_instances = set()
    for ann in coco["annotations"]:
        name = dataset.class_names[dataset.category_id_to_label[ann["category_id"]]]
        if ann.get("iscrowd", 0):
            per_class[name]["crowd"] += 1
            continue
        per_class[name]["instances"] += 1
        images_of[name].add(ann["image_id"])
        with_instances.add(ann["image_id"])
        area = _area(ann, *sizes[ann["image_id"]])
        size_bins["small" if area < SMALL else "medium" if area < MEDIUM else "large"] += 1
        side = math.sqrt(max(area, 0.0))
        histogram[next(k for k in range(len(histogram)) if side < HISTOGRAM_EDGES[k + 1])] += 1
    for name, ids in images_of.items():
        per_class[name]["images"] = len(ids)
    out = {
        "json": str(dataset.json_path),
        "images": len(coco["images"]),
        "images_without_instances": len(coco["images"]) - len(with_instances),
        "instances": sum(c["instances"] for c in per_class.values()),
        "crowd": sum(c["crowd"] for c in per_class.values()),
        "boxes_without_mask": dataset.box_only_annotations,
        "notes": dataset.notes,
        "per_class": per_class,
        "sizes": size_bins,
        "size_histogram": [
            {"sqrt_area_from": lo, "to": None if math.isinf(hi) else hi, "count": n}
            for lo, hi, n in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:], histogram)
        ],
        "skipped": dataset.skipped,
        "problems": dataset.problems[:_MAX_PROBLEMS],
    }
    if dataset.keypoints and dataset.keypoint_names:
        out["keypoints"] = _keypoint_counts(coco, dataset)
    return out


def _keypoint_counts(coco: dict, dataset) -> dict:
    """The keypoint figures of the summary (see the module docstring)."""
    # the file's own keypoint categories: to_coco_dict gives every category the names (a car is no person)
    with_set = dataset.keypoint_category_ids
    persons = [a for a in coco["annotations"] if a["category_id"] in with_set and not a.get("iscrowd", 0)]
    flags = [[v for v in (a.get("keypoints") or [])[2::3]] for a in persons]
    return {"persons": len(persons),
            "persons_without_labelled_keypoints": sum(1 for f in flags if not any(v > 0 for v in f)),
            "labelled_v1": sum(1 for f in flags for v in f if v == 1),
            "labelled_v2": sum(1 for f in flags for v in f if v == 2),
            "outside_image": int(getattr(dataset, "keypoints_outside_image", 0))}


def _print_summary(s: dict, out=None) -> None:
    from maskrcnn.data.images import too_large_line

    out = out or sys.stdout  # looked up at call time: a default bound at import keeps a stale stream
    boxes = s.get("boxes_without_mask")
    print(f"{s['json']}: {s['images']} images ({s['images_without_instances']} without instances), "
          f"{s['instances']} instances, {s['crowd']} crowd regions"
          + (f", {boxes} of them boxes without a mask" if boxes else ""), file=out)
    shown = {n: shown_name(n) for n in s["per_class"]}
    # past a screenful the empty classes are one line, named as far as it goes
    empty = [n for n, c in s["per_class"].items() if not c["instances"] and not c["crowd"]]
    folded = folded_classes(len(s["per_class"]), empty)
    rows = [n for n in shown if n not in folded]
    width = max([len("class")] + [display_width(shown[n]) for n in rows])  # 葉: 2 columns
    # images last: the columns before it keep their places for whoever reads them by position
    print(f"  {'class':<{width}}  instances  crowd  images", file=out)
    for name in rows:
        c = s["per_class"][name]
        print(f"  {pad(shown[name], width)}  {c['instances']:>9}  {c['crowd']:>5}  {c['images']:>6}",
              file=out)
    if folded:
        names = short_listing((shown[n] for n in empty), what="more")
        print(f"  {len(empty)} classes without instances or crowd regions: {names}", file=out)
    print("  sizes (COCO area): " + ", ".join(f"{k} {v}" for k, v in s["sizes"].items()), file=out)
    bins = [f"[{b['sqrt_area_from']}, {b['to'] or 'inf'}): {b['count']}" for b in s["size_histogram"]]
    print("  sqrt(area) px: " + "  ".join(bins), file=out)
    if "keypoints" in s:
        k = s["keypoints"]
        print(f"  keypoints: {k['persons']} persons ({k['persons_without_labelled_keypoints']} without a "
              f"labelled point), {k['labelled_v2']} points visible (v=2), {k['labelled_v1']} occluded (v=1), "
              f"{k['outside_image']} far outside their image (made unlabelled)", file=out)
    print(f"  {skipped_line(s['skipped'])}", file=out)
    too_large = too_large_line(s["skipped"])  # good files over the pixel limit: the one skip a setting undoes
    if too_large:
        print(f"  {too_large}", file=out)


def _owned_overlays(summary_path: Path) -> set:
    """The overlays an earlier run of this command wrote (the ``overlays`` of its ``summary.json``,
    relative to the overlays folder), the files it may write over; none when there is no such file or
    it cannot be read as one."""
    import json

    try:
        listed = json.loads(summary_path.read_text(encoding="utf-8")).get("overlays")
    except (OSError, ValueError, AttributeError):  # none, unreadable, not an object
        return set()
    return {name for name in listed if isinstance(name, str)} if isinstance(listed, list) else set()


def _may_write(folder: Path, name: str, owned: set) -> bool:
    """Whether the overlay ``name`` may be written in ``folder``: no file there yet, or a regular file
    an earlier run of this command wrote (``owned``); never another program's file or a link."""
    import os
    import stat

    try:
        mode = os.lstat(folder / name).st_mode
    except OSError:  # none there, a file among its parents, a name too long: the write says so
        return True
    return name in owned and stat.S_ISREG(mode)


def _free_name(folder: Path, name: str, taken: set, owned: set) -> str:
    """``name`` (``x.png``) or the first of ``x_2.png``, ``x_3.png``, ... that no other image of the file
    takes (``taken``: casefolded, one file on a disk that ignores case) and ``_may_write`` allows."""
    if _may_write(folder, name, owned):
        return name
    stem, n = name[: -len(".png")] if name.endswith(".png") else name, 2
    while f"{stem}_{n}.png".casefold() in taken or not _may_write(folder, f"{stem}_{n}.png", owned):
        n += 1
    return f"{stem}_{n}.png"


def _draw(dataset, folder: Path, *, max_images: int, min_size: int, owned: frozenset = frozenset(),
          written_files=None, done: list = None) -> dict:
    """Overlays of the first ``max_images`` images that can be read; returns {overlay path relative to
    ``folder``: the image's file_name}. An image that cannot be decoded (its header was good) is left out
    of the dataset (``CocoDataset.leave_out``: one problem line, its objects out of the counts) and the
    next image is drawn in its place. A file there of an overlay's name that is not one of ``owned`` (an
    earlier run's overlays) is left as it is: the overlay takes a free name (``_free_name``) and a line
    says so. ``written_files``: a ``WrittenFiles`` of ``folder`` each overlay is listed in before it is
    written (a run killed mid-way still owns its overlays); ``done``: a list each overlay's name is appended
    to once written (what a stopped run drew)."""
    import io

    from maskrcnn.data.images import ImageReadError
    from maskrcnn.data.keypoints import drawing_skeleton
    from maskrcnn.io_utils import atomic_write_bytes
    from maskrcnn.overlay_paths import overlay_relpaths, safe_file_name
    from maskrcnn.shown_text import display_name
    from maskrcnn.visualize import draw_targets

    folder.mkdir(parents=True, exist_ok=True)
    skeleton = None
    if dataset.keypoints and dataset.keypoint_names:  # the category's own skeleton; none: no lines
        # (COCO's only for COCO's 17 names: another 17-point set's points are unrelated to its limbs)
        skeleton = drawing_skeleton(dataset.keypoint_names, dataset.keypoint_skeleton, dataset.num_keypoints)
    file_names = {img["id"]: img["file_name"] for img in dataset.to_coco_dict()["images"]}
    # named for the whole file up front: --max and the order drawn never change an image's overlay name
    overlay_of = dict(zip(file_names, overlay_relpaths([safe_file_name(n) for n in file_names.values()])))
    written, unreadable = {}, {}
    taken = {name.casefold() for name in overlay_of.values()}
    for index in range(len(dataset)):
        if len(written) >= max_images:
            break
        try:
            image, target = dataset.load(index)  # no other image in place of an unreadable one
        except ImageReadError as e:  # a good header over undecodable pixels: the next image takes its place
            unreadable[dataset.image_info(index)["id"]] = e
            continue
        image_id = target["image_id"]
        name = _free_name(folder, overlay_of[image_id], taken, owned)  # its folders, as the exports keep them
        if name != overlay_of[image_id]:
            taken.add(name.casefold())
            print(f"show-data: {display_name(folder / overlay_of[image_id])} is not an overlay this command "
                  f"wrote (another program's file?): left as it is; {display_name(file_names[image_id])} "
                  f"drawn to {display_name(folder / name)}", file=sys.stderr)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if written_files is not None:
            written_files.add([name])
        png = io.BytesIO()
        overlay = draw_targets(image, target, dataset.class_names, min_size=min_size, skeleton=skeleton)
        overlay.save(png, "PNG")
        atomic_write_bytes(path, png.getvalue())  # a link there is replaced, never written through
        written[name] = file_names[image_id]
        if done is not None:
            done.append(name)
    dataset.leave_out(unreadable)  # counted and named once, their objects out of the totals
    return written


def _stopped(error: KeyboardInterrupt, out: Path, *, drawn: int, total: int) -> KeyboardInterrupt:
    """The interrupt (Ctrl-C, or a SIGTERM as ``StoppedBySignal``) again, its message saying what the
    folder now holds: "after N of M images; overlays in DIR/overlays/; no summary written", or, stopped
    before the first overlay, that nothing there changed."""
    from maskrcnn.shown_text import display_name

    if drawn:
        text = (f"after {drawn} of {total} images; overlays in {display_name(out / 'overlays')}/; no summary "
                f"written")
    else:
        text = f"after 0 of {total} images; nothing written ({display_name(out)} as it was)"
    signum = getattr(error, "signum", None)
    if signum is not None:
        from maskrcnn.stop_signals import StoppedBySignal

        return StoppedBySignal(text, signum)
    return KeyboardInterrupt(text)


def _stop_on_first_signal():
    """A SIGTERM handler for one run: the drawing stops as at Ctrl-C (``StoppedBySignal``: exit 128 +
    the signal's number). A later signal, arriving while the folder is being tidied after the first, is
    ignored: tidying is short, and cut short it would leave the mixed folder the stop is meant to prevent."""
    got = []

    def handler(signum, frame):
        if not got:
            got.append(signum)
            raise StoppedBySignal("", signum)

    return handler


def _leave_one_runs_overlays(out: Path, written_files, *, done: list, finished: bool,
                             interrupted: bool) -> None:
    """After the drawing, finished or not: the earlier runs' overlays this run did not draw again removed
    once it drew one, and, stopped after its first overlay, the earlier summary.json too."""
    from maskrcnn.shown_text import display_name

    # This run's overlays replace the earlier runs' once it drew one: those of images it no longer
    # draws (a smaller --max, a file filtered since) would read as this run's. Only regular .png files
    # inside overlays/ that a list names go (written_files), never through a link. A run that drew
    # none (--max 0, no image left, stopped or refused before its first overlay) removes none and
    # keeps them listed.
    # (an overlay listed but stopped while being written replaces nothing: its old file is still there)
    removed = written_files.finish(replace=bool(done))
    if removed:
        print(f"show-data: removed {removed} overlay(s) of the earlier runs' images not drawn now from "
              f"{display_name(out / 'overlays')}/", file=sys.stderr)
    summary = out / "summary.json"
    if done and not finished and summary.exists():
        # a run stopped after its first overlay: an earlier summary.json (of another file, perhaps)
        # would describe overlays that are gone or redrawn: removed, none written in its place. The stop
        # line of Ctrl-C / SIGTERM says "no summary written"; an error's line would not mention it
        summary.unlink(missing_ok=True)
        if not interrupted:
            print(f"show-data: removed the earlier {display_name(summary)}: it described overlays this "
                  "run had begun to replace", file=sys.stderr)


def run(args) -> int:
    from maskrcnn.commands.data_report import image_dir_or_default
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.formats.common import write_json

    if args.max < 0:
        raise ValueError(f"--max must be >= 0, got {args.max}")
    check_overlay_min_size(args.overlay_min_size)  # negative was taken as 0, 100000 asked for 30 GB
    from maskrcnn.io_utils import check_output_dir

    check_output_dir(args.output)
    # a person_keypoints file's people need no segmentation (their box stands in, as in training):
    # read without keypoints, every one of them was skipped as 'lacks segmentation'
    parsed: dict = {}  # the JSON, when choosing its image folder read it: not read twice
    images = image_dir_or_default(args.images, args.json, "--images", parsed=parsed)
    # the pixel limit's line is said once, in the summary, over every image skipped for it (those of
    # records without a size, found while the file is read, and those of the header pass below); with
    # pixel_limit_line=False it depends on _print_summary being reached: a run stopped before the
    # summary is printed does not say it
    dataset = CocoDataset(json_path=args.json, image_dir=images, keypoints="auto",
                          crowd_as_objects=args.crowd_as_objects, pixel_limit_line=False,
                          exif_frame=args.exif_frame,
                          coco=parsed.pop(Path(args.json), None),
                          fold_shared_files=True)  # one picture, the union of its records' objects
    out = Path(args.output)
    dataset.check_image_files()  # images training would refuse (size, unreadable) leave the counts too
    from maskrcnn.data.pre_annotations.written_files import WrittenFiles

    # every earlier run's overlays, listed in overlays/written.json (and written.partial.jsonl of a run
    # killed mid-way), and the last summary.json's (a run from before written.json): this run's to write over
    in_summary = _owned_overlays(out / "summary.json")  # a run from before written.json listed them there
    # an unreadable list: in_summary's are not taken either, no earlier overlay is removed (a line said so)
    written_files = WrittenFiles(folder=out / "overlays", label="overlays", prefix="show-data",
                                 also_earlier=in_summary)
    owned = frozenset(written_files.earlier | in_summary)
    to_draw, overlays, done, interrupted = min(args.max, len(dataset)), None, [], []
    # SIGTERM (timeout, docker stop, kill) stops the drawing as Ctrl-C does, so that the folder is left as
    # a stopped run leaves it (below) rather than holding two runs' overlays and a stale summary
    with stop_signals.handling((signal.SIGTERM,), _stop_on_first_signal()):
        try:
            overlays = _draw(dataset, out / "overlays", max_images=args.max, min_size=args.overlay_min_size,
                             owned=owned, written_files=written_files, done=done)
        except KeyboardInterrupt as e:  # after finally's removal: said as predict says its stop
            interrupted.append(e)
            raise _stopped(e, out, drawn=len(done), total=to_draw) from None
        finally:
            _leave_one_runs_overlays(out, written_files, done=done, finished=overlays is not None,
                                     interrupted=bool(interrupted))

    summary = summarise(dataset)  # after drawing: masks that failed to decode there are counted too
    summary["overlays"] = list(overlays)  # paths relative to overlays/
    summary["overlay_images"] = overlays  # overlay -> the image's file_name
    write_json(out / "summary.json", summary, ensure_ascii=False)  # our own report: names readable
    _print_summary(summary)
    print(f"{len(overlays)} overlays -> {out / 'overlays'}/, summary -> {out / 'summary.json'}")
    if len(dataset) == 0:  # training on it would fail: a script's `show-data && train` must stop here
        # raised after the summary is printed: the CLI's error line and status 1, as for any refusal
        raise ValueError(f"{dataset.json_path}: no image of it could be used (each one skipped, see above, "
                         "or none listed): nothing to show or train on")
    return 0
