"""CVAT's "CVAT for video 1.1" tracks -> the per-frame ``<image>`` elements ``cvat`` converts.

A video export holds ``<track id label [group_id] source>`` elements, each with one shape per frame
(``<polygon frame keyframe outside occluded points ...>``, ``<box>``, ``<ellipse>``, ``<mask>``, ...).
CVAT writes a track's shape for every frame while the object is in view, the interpolated ones with
``keyframe="0"`` (its XML format documentation: each shape is cloned for each location); after a shape
with ``outside="1"`` (the object has left the view) it writes none until the track comes back. So no
interpolation is done here: each shape with ``outside="0"`` is an instance on its frame's image, with
the track's label and group; shapes with ``outside="1"`` are left out. Only a gap after a shape inside
the view is warned about (a hand-made or trimmed file: the object would be missing from those frames).
Frames are named as CVAT saves a video's frames, ``frame_000000`` (``cvat`` adds the ``.PNG`` /
``.png`` extension and looks in ``images/``), or by the file's ``<image id name>`` elements when it
has them. Track ids are not kept (COCO instances have no identity across images). A frame without any
shape inside the view is an image without instances (a negative, as an empty ``<image>`` of "CVAT for
images" is) when its file is in the export (``frame_000000.PNG``; exported without images, no file says
which frames there were), and the file's own ``<image>`` elements are kept with or without shapes; such
frames are counted in the notes, and warned about (their range named) when they are more than half of the
frames or lie after the last frame of every track: a video annotated only in part would otherwise add
thousands of background images silently. They are kept; removing their files from the export's
``images/`` folder leaves them out. A frame file is found by its own name (``frame_1.png`` as well).

Every frame of the task is known from ``<meta><task>`` (a job export's ``<meta><job>``, the job's frames
in the same fields; ``task_frames``): CVAT numbers a video's frames
``start_frame + k * step`` for k below ``size``, ``step`` from ``frame_filter`` ("step=5"; none: 1),
none past ``stop_frame``. A frame of that range with neither a shape in view nor a file in the export
(exported without images, or its file removed) cannot be an image here (nothing says its pixels); such
frames were left out without a word: they are said in one warning, their range named. Fields that are
missing, not whole numbers, or not sane (``stop_frame`` before ``start_frame``, more frames than
``MAX_TASK_FRAMES``, a ``size`` that does not fit the range) are ignored with one warning naming the
field; the range is counted and scanned from its ends, never listed frame by frame.
"""

from __future__ import annotations

import copy
import io
import itertools
import re
import xml.etree.ElementTree as ET
from typing import Mapping, Optional

from maskrcnn.data.formats.common import Report

__all__ = ["MAX_TASK_FRAMES", "frame_images", "has_tracks", "task_frames"]

_TRACK_KEYS = ("frame", "keyframe", "outside", "track_id")  # per-frame keys, not the shape's own
# more frames than a task holds: 10 million is over 3 days of video at 30 frames a second; CVAT itself
# could not serve such a task, so a larger number is a damaged or hand-made file
MAX_TASK_FRAMES = 10_000_000
_STEP = re.compile(r"^\s*step\s*=\s*(\d+)\s*$")
_WHOLE = re.compile(r"^\s*\d{1,12}\s*$")  # 12 digits: int() of a 5000-digit text costs, and means nothing


def has_tracks(root: ET.Element) -> bool:
    return root.find("track") is not None


def _meta(root: ET.Element) -> tuple:
    """(``<meta><task>``, "task") of a task export, (``<meta><job>``, "job") of a job export ("Export job
    dataset" writes the job's frames in the same fields, in the task's numbering), else (None, None)."""
    for kind in ("task", "job"):
        el = root.find(f"meta/{kind}")
        if el is not None:
            return el, kind
    return None, None


def task_frames(root: ET.Element, report: Report, where: str) -> Optional[range]:
    """The frame numbers of the task (or job) as ``<meta><task>`` (``<meta><job>``) gives them
    (``start_frame``, ``stop_frame``, ``frame_filter``'s step and ``size``, the number of frames: see the
    module docstring); None, with one warning naming the field, when a field is missing or not sane; None
    without one when the file has neither (a hand-made file claims no frames)."""
    task, kind = _meta(root)
    if task is None:
        return None

    def ignored(field: str, why: str) -> None:
        report.warn(where, f"<meta><{kind}><{field}> {why}: the {kind}'s frames are not known, so frames "
                           "without shapes or image files are not told")

    def whole(field: str, required: bool):
        raw = task.findtext(field)
        if raw is None or not raw.strip():
            if required:
                ignored(field, "is missing")
            return None, not required
        if not _WHOLE.match(raw):
            ignored(field, f"is {raw.strip()[:40]!r}, not a whole number")
            return None, False
        return int(raw), True

    start, ok = whole("start_frame", True)
    if not ok:
        return None
    stop, ok = whole("stop_frame", False)
    if not ok:
        return None
    size, ok = whole("size", stop is None)
    if not ok:
        return None
    step, raw_filter = 1, (task.findtext("frame_filter") or "").strip()
    if raw_filter:
        match = _STEP.match(raw_filter)
        if match is None or int(match.group(1)) < 1:
            ignored("frame_filter", f"is {raw_filter[:40]!r}, not 'step=N'")
            return None
        step = int(match.group(1))
    if stop is not None and stop < start:
        ignored("stop_frame", f"{stop} is before <start_frame> {start}")
        return None
    count = size if size is not None else (stop - start) // step + 1
    if count > MAX_TASK_FRAMES:
        ignored("size" if size is not None else "stop_frame",
                f"makes {count} frames, more than a video task holds ({MAX_TASK_FRAMES})")
        return None
    if count < 1:
        ignored("size", f"is {count}")
        return None
    frames = range(start, start + count * step, step)
    if stop is not None and frames[-1] > stop:
        ignored("size", f"{count} frames from {start} (step {step}) go past <stop_frame> {stop}")
        return None
    return frames


def _unshown(frames: range, known: set) -> tuple:
    """(how many, first, last) of the numbers of ``frames`` not in ``known``; counted and found from the
    range's ends, never listed (a range of millions holds a few known frames)."""
    inside = sum(1 for f in known if f in frames)
    missing = len(frames) - inside
    if not missing:
        return 0, None, None
    first = next(f for f in frames if f not in known)  # at most len(known) + 1 steps each
    last = next(f for f in reversed(frames) if f not in known)
    return missing, first, last


def _frame(el: ET.Element):
    try:
        return int(el.get("frame", ""))
    except ValueError:
        return None


def _outside(el: ET.Element) -> bool:
    """Whether a track's shape is outside the view: ``outside="1"``; a ``<skeleton>`` has no such
    attribute, its ``<points>`` have: outside when every one of them is (the object has left the view)."""
    if el.tag == "skeleton" and el.get("outside") is None:
        points = [child for child in el if child.tag == "points"]
        return bool(points) and all(_outside(child) for child in points)
    return (el.get("outside") or "0").strip() in ("1", "true")


def _gaps_in_view(track: ET.Element, shown: int = 8, *, step: int = 1) -> tuple:
    """(the first ``shown`` frames without a shape that follow a shape inside the view, how many such
    frames in all). Frames after an ``outside="1"`` shape are missing by design: CVAT writes nothing until
    the track returns. ``step``: the task's frame step (``frame_filter`` "step=5": its frames are 5
    apart, the numbers between are no frames). The total comes from frame differences, never a list of
    every missing frame (frames 0 and 2,000,000,000 are one short line of XML)."""
    outside: dict = {}  # frame -> outside; a frame holding any inside shape counts as inside
    for shape in track:
        frame = _frame(shape)
        if frame is not None:
            outside[frame] = outside.get(frame, True) and _outside(shape)
    frames = sorted(outside)
    spans = [(a, b) for a, b in zip(frames, frames[1:]) if not outside[a] and b > a + step]
    first = list(itertools.islice((f for a, b in spans for f in range(a + step, b, step)), shown))
    return first, sum(len(range(a + step, b, step)) for a, b in spans)


def frame_images(
    root: ET.Element,
    images: list,
    *,
    report: Report,
    where: str,
    files: Optional[Mapping[int, str]] = None,
    other_files: bool = False,
) -> list:
    """``<image>`` elements in frame order: one per frame holding track shapes inside the view, each
    holding those shapes labelled as their tracks, one per frame of ``files`` ({frame number: the name of
    its image file in the export}) without such shapes and the file's other ``<image>`` elements, each as
    it is (one whose id is not a number last); ``images`` (the file's own ``<image>`` elements) give the
    frames' names and their own shapes, else ``files`` does, else ``frame_000000``. Frames without shapes
    are warned about when they are most of the frames or lie after every track's last frame
    (``_warn_empty``). The task's frames (``task_frames``) with neither are told in one warning, less
    ``<meta><task><deleted_frames>``; not when ``other_files`` (the images folder holds image files not
    named frame_N: the frames' files may be named otherwise)."""
    files = dict(files or {})

    def name(frame: int) -> str:
        return files.get(frame) or f"frame_{frame:06d}"

    named = {el.get("id"): el for el in images}
    # the task's frames: their step spaces the gap check; told (missing frames) unless other_files
    task = task_frames(root, report if not other_files else Report(stream=io.StringIO()), where)
    frames: dict = {}  # frame -> <image>
    for track in root.findall("track"):
        for shape in track:
            frame = _frame(shape)
            if frame is None:
                report.warn(where, f"track {track.get('id')!r}: a <{shape.tag}> without an integer 'frame' "
                                   "left out")
                continue
            if _outside(shape):
                report.note("CVAT track shapes outside the view left out")
                continue
            if frame not in frames:
                own = named.get(str(frame))
                frames[frame] = (copy.deepcopy(own) if own is not None
                                 else ET.Element("image", id=str(frame), name=name(frame)))
            el = copy.deepcopy(shape)
            for key in _TRACK_KEYS:
                el.attrib.pop(key, None)
            el.set("label", track.get("label") or "")
            if track.get("group_id"):
                el.set("group_id", track.get("group_id"))
            frames[frame].append(el)
        gaps, missing = _gaps_in_view(track, step=task.step if task is not None else 1)
        if gaps:  # hand-made or trimmed files: CVAT's own exports have none
            more = " ..." if missing > len(gaps) else ""
            report.warn(where, f"track {track.get('id')!r} has no shape on frames {gaps}{more} after a shape "
                               "inside the view: they are not interpolated here (CVAT's export writes every "
                               "frame in view)")
        report.note("CVAT tracks converted (track ids not kept)")
    others = [el for el in images if _frame_id(el) not in frames]  # frames without tracks, as they are
    named_frames = {_frame_id(el) for el in images}
    empty = [ET.Element("image", id=str(f), name=name(f)) for f in sorted(files)
             if f not in frames and f not in named_frames]
    negatives = len(empty) + sum(1 for el in others if not len(el))
    if negatives:
        report.note("CVAT video frames without shapes (kept as images without instances)", negatives)
    _warn_empty(root, report, where, [int(el.get("id")) for el in empty], len(frames) + len(empty))
    if task is not None and not other_files:
        known = {f for f in (*frames, *named_frames, *files) if isinstance(f, int)}  # not None: a bad id
        _warn_unshown(report, where, task, known | deleted_frames(root), kind=_meta(root)[1])
    # in frame order, those with and without shapes alike (image ids follow it: frame 2 without a shape
    # came after frame 3); an <image> whose id is not a number last, in the file's order
    return sorted([*frames.values(), *others, *empty],
                  key=lambda el: (_frame_id(el) is None, _frame_id(el) or 0))


def deleted_frames(root: ET.Element) -> set:
    """The frame numbers ``<meta><task>`` (a job's ``<meta><job>``) ``<deleted_frames>`` lists (frames
    deleted in CVAT: no image, no shape, by design); empty when there is none."""
    meta, _ = _meta(root)
    el = meta.find("deleted_frames") if meta is not None else None
    return set() if el is None else {int(n) for n in re.findall(r"\d+", "".join(el.itertext()))}


def _warn_unshown(report: Report, where: str, task: range, known: set, *, kind: str = "task") -> None:
    """One warning for the frames of the task (``task_frames``) that no shape, ``<image>`` nor file shows:
    without a file such a frame cannot be an image without instances, and it was left out unsaid."""
    missing, first, last = _unshown(task, known)
    if not missing:
        return
    step = task.step
    whole = (last - first) // step + 1 == missing
    span = (f"frame {first}" if missing == 1 else
            f"frames {first}-{last}" + ("" if whole else f" ({missing} of them)"))
    report.note("CVAT task frames without shapes or frame_N files (left out)", missing)
    report.warn(where, f"{missing} of the {kind}'s {len(task)} frames (<meta>: from {task.start}, "
                       f"{len(task)} frames{f', step {step}' if step > 1 else ''}) have no shape in view "
                       f"and no frame_N file found for them: {span}; left out (no image to keep them as "
                       "negatives: export with images, or pass --images FOLDER holding frame_000000.PNG ...)")


def _span(frames: list) -> str:
    """Sorted frame numbers, said as their range: ``5-900`` (with how many when some between are not)."""
    if len(frames) == 1:
        return f"frame {frames[0]}"
    whole = frames[-1] - frames[0] + 1 == len(frames)
    return f"frames {frames[0]}-{frames[-1]}" + ("" if whole else f" ({len(frames)} of them)")


def _warn_empty(root: ET.Element, report: Report, where: str, empty: list, total: int) -> None:
    """A warning when the frames whose files hold no shape (``empty``, sorted, of ``total`` frames) are
    more than half of them, or when some lie after the last frame of every track (a video annotated only
    in part: thousands of background images added silently otherwise)."""
    if not empty:
        return
    last = max((f for track in root.findall("track") for f in map(_frame, track) if f is not None),
               default=None)
    after = [f for f in empty if last is not None and f > last]
    how = ("kept as images without instances (negatives); to leave them out, remove their files from the "
           "export's images/ folder before converting")
    if after:
        report.warn(where, f"{len(after)} frames without shapes lie after every track's last frame "
                           f"({last}): {_span(after)}; {how}")
    if 2 * len(empty) > total and len(after) < len(empty):
        report.warn(where, f"{len(empty)} of the {total} frames have no shape ({_span(empty)}); {how}")


def _frame_id(el: ET.Element):
    try:
        return int(el.get("id", ""))
    except ValueError:
        return None
