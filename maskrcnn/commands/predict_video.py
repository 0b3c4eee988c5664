"""``maskrcnn predict`` on video files: each frame through the Predictor, results as they come.

    maskrcnn predict --weights CKPT clip.mp4 footage/ --output DIR [--every N] [--max-frames N]
                     [--start S] [--end S] [--batch-size B] [--no-overlays]

A video is an input file (or a file found in an input folder, recursively) with a video extension
(``data/video.py``: .mp4, .mov, .avi, .mkv, .webm, .m4v, .ts, .mts, .m2ts, .3gp, .3g2, .mpg, .mpeg, .wmv,
.flv, .ogv) that PyAV opens (the ``video`` extra). Its
frames are decoded one at a time and predicted ``--batch-size`` per forward by the same Predictor the
images go through (``predict_tensors``); only a batch's frames are held in memory. For each video:

- ``DIR/<stem>.predictions.jsonl``: one line per predicted frame, written (and flushed) as each batch
  is done, so a crash or Ctrl-C keeps the frames done: ``{"frame": index in the video (0-based, every
  decoded frame counts), "time": seconds from the start, "detections": [the predictions.json entries
  without image_id: category_id, bbox [x, y, w, h], score, segmentation (compressed RLE), keypoints]}``;
  then one ``{"summary": {...}}`` line (also after an error or an interrupt): the video, its shown size
  (``width``, ``height``: of the frames, of the first decoded one where no frame was predicted; null
  where no frame was decoded, with ``stored_width``, ``stored_height`` from the header, before rotation),
  the whole video's average frame rate (``VideoReader.average_rate``: every frame's times once read to its
  end, else the header's count over its length; else an estimate, ``fps_estimated`` true and a note) and
  ``variable_frame_rate``, frames predicted, detections,
  the range asked for (``every``, ``start``, ``end``, ``max_frames``), ``status`` (complete / truncated /
  damaged_frames_skipped: frames that could not be decoded were skipped, the others predicted / limited:
  the range left frames out / interrupted / failed), ``frames_skipped``, the problem if any and what was
  done to the frames (rotation, padding). Whole lines only (``_Lines``): a write that fails part-way (a
  full disk) is cut back to the last complete line; a summary that cannot be written is said in a line.
- ``DIR/<stem>.overlay.mp4`` unless ``--no-overlays``: the predicted frames drawn as the image overlays
  are (``visualize.draw_instances``), each at its source frame's time (less the first predicted frame's),
  so that it lasts as long as the source, a variable frame rate included, whatever ``--every``; written by
  ``data/video_writer.py`` (H.264 or MPEG-4, atomic rename); the last predicted frame is held until the
  source (or ``--end``) ends. An encoder that fails part-way (a full disk too) removes the overlay at once
  (``VideoWriteError``), so that no partial overlay sits under the final name for a later run to take as
  whole (or predict); the predictions go on to the video's end without it, one line (and a note of the
  summary, ``overlay`` null) saying at which frame the overlay stopped.

A video given twice (``v.mp4 ./v.mp4``, or a folder and a video in it) is predicted once, as an image is.
An overlay a video run wrote, found in an input folder (``--output`` the videos' own folder), is left out,
counted in one line (``written_by_a_run``: named by the summary of the results beside it); two
videos of one stem get ``<stem>_2``, ...; a stem too long for its file names (with
``.predictions.partial.jsonl``, over the file system's 255 bytes) is shortened for all of them by
``io_utils``' rule for long names (``fitting_stem``: its start, ``~`` and 8 hex of a hash of it; the same each
run, so a later run finds them), said in a note naming the stem used. An ``--output`` that holds an earlier
run's video results (``*.predictions.jsonl``) is said up front. A video's earlier results and overlay are
replaced only once this run has predicted it completely (status complete, truncated or damaged_frames_skipped;
not limited): stopped by Ctrl-C, SIGTERM or an error, or limited, the earlier ones stay and this run's frames
done go to ``<stem>.predictions.partial.jsonl`` beside them, their overlay to ``<stem>.overlay.partial.mp4``
(hours of earlier results are not lost for a second of this run; a quick ``--max-frames`` look still shows its
frames); a later complete prediction of the video takes both away. Once the whole run is through (not after
Ctrl-C) and a video was predicted completely, the earlier results and overlays of the videos that are not
among this run's inputs are removed, named in one line, so the folder never mixes two runs' videos; a video
this run was given but did not predict completely (limited, stopped, failed, unreadable) keeps its own.

``--every N`` predicts the first frame from ``--start`` and every N-th after it; ``--max-frames N``
stops after N predicted frames (limited only when a frame to predict was left: one more is decoded to
know); ``--start S`` / ``--end S`` (seconds) keep the frames shown in
[S, E): the first is the one on screen at S (``VideoReader.frames``: the last frame whose time is at or
before S; 12 s for 12.5 s at 1 fps); a ``--start`` at or past a video's end (or no frame between
``--start`` and ``--end``) predicts nothing, with a warning naming the file, the value, the video's length
and its last frame's time. These
options given with no video among the inputs get one note that they apply to videos only. A file with a
video extension that is not a video, a damaged video and a model failure are reported in one line naming
the file (and the frame) and the run goes on with the next input; the frames done are kept; so does a
video whose results file cannot be made (a folder of its name), skipped and counted. Ctrl-C, or a stop
signal the command handles (``stop_requested``: the batch in hand finished first), ends the video as
interrupted and is raised again with a message naming the videos done, the frames kept and the files.
A stop while a video's overlay is finished (a second Ctrl-C) is recorded as one in a batch is: the
summary is written, the overlay not (said in its notes). A results file that not even one line could be
written to (a full disk) is removed and said so, not named as written.
Shapes: D detections of one frame, H x W the frame as shown (after rotation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, List, Optional

from maskrcnn.stop_signals import StoppedBySignal

__all__ = ["add_video_arguments", "check_video_arguments", "predict_videos", "split_video_inputs",
           "video_options_given", "written_by_a_run"]

DEFAULT_FPS = Fraction(25)  # the overlay's rate when a file does not say its own
PROGRESS_SECONDS = 10.0  # a progress line at most this often per video


# flag, type, default, metavar, help: the one table of the video options, which add_video_arguments gives
# argparse and video_options_given compares with
VIDEO_OPTIONS = (
    ("--every", int, 1, "N", "predict every N-th frame (default %(default)s)"),
    ("--max-frames", int, None, "N", "stop each video after N predicted frames"),
    ("--start", float, 0.0, "S", "first second of each video"),
    ("--end", float, None, "S", "second of each video to stop at"),
)


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "videos (.mp4, .mov, .avi, .mkv, .webm, .mts, .ts, .3gp, .mpg, .wmv, ...; needs pip install "
        "'maskrcnn[video]')")
    for flag, kind, default, metavar, help_text in VIDEO_OPTIONS:
        group.add_argument(flag, type=kind, default=default, metavar=metavar, help=help_text)


def check_video_arguments(args: argparse.Namespace) -> None:
    if args.every < 1:
        raise ValueError(f"--every must be >= 1, got {args.every}")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    if not args.start >= 0:
        raise ValueError(f"--start must be >= 0 seconds, got {args.start}")
    if args.end is not None and not args.end > args.start:
        raise ValueError(f"--end must be after --start ({args.start} s), got {args.end}")


def video_options_given(args: argparse.Namespace) -> List[str]:
    """The video options given a value other than their default (``--every 3``): for the note that they
    apply to videos only when no video is among the inputs."""
    given = []
    for flag, _, default, _, _ in VIDEO_OPTIONS:
        if getattr(args, flag[2:].replace("-", "_")) != default:  # argparse: --max-frames -> max_frames
            given.append(flag)
    return given


def split_video_inputs(inputs, files: list, *, on_left_out=None) -> tuple:
    """``(image files, video files)`` from the command's inputs and ``expand_inputs``' files (which keep
    a video given by name): videos are files with a video extension, given or found in the folders
    (``on_left_out(path, reason)`` for those passed over: a broken link to a .mp4). Checks that PyAV is
    there when there is a video, before a checkpoint is loaded."""
    from maskrcnn.data.folders import spelled_path
    from maskrcnn.data.video import import_av, is_video_path, list_videos

    # the same path given twice, or a folder and a video in it, is one video (as an image is): spelled
    # absolute with '.' and '..' taken out ('v.mp4' and './v.mp4'), links not followed
    videos = list({spelled_path(v): v for v in list_videos(inputs, on_passed_over=on_left_out)}.values())
    # a run into the videos' own folder (--output v/ for v/) wrote overlays there: predicting them would
    # add <stem>.overlay.overlay.mp4, more each run. A video given by name is asked for: kept
    named = {spelled_path(p) for p in inputs if not Path(p).is_dir()}
    written = [v for v in videos if spelled_path(v) not in named and written_by_a_run(v)]
    if written:
        print(f"maskrcnn predict: left out {len(written)} video file(s) that a video run wrote (overlays "
              "named by the summary of the results beside them)", file=sys.stderr)
        videos = [v for v in videos if v not in written]
    if videos:
        import_av()
    return [f for f in files if not is_video_path(f)], videos


def written_by_a_run(path: Path) -> bool:
    """Whether ``path`` is an overlay a video run wrote: ``<stem>.overlay.mp4`` (or ``.overlay.partial.mp4``)
    named as its overlay by the summary line of ``<stem>.predictions.jsonl`` (or ``.partial.jsonl``) in
    its folder, or, where that file has no summary (a run cut off: a full disk), paired with it by name.
    By what the run recorded, not by the name alone: a user's own ``x.overlay.mp4`` stays a video."""
    for overlay_suffix, paired in ((OVERLAY_SUFFIX, JSONL_SUFFIX), (PARTIAL_OVERLAY_SUFFIX, PARTIAL_SUFFIX)):
        if not path.name.endswith(overlay_suffix):
            continue
        stem = path.name[:-len(overlay_suffix)]
        for suffix in (JSONL_SUFFIX, PARTIAL_SUFFIX):
            summary = _summary_of(path.with_name(stem + suffix))
            if summary is None:  # no such file, or not a run's results
                continue
            named = summary.get("overlay") if isinstance(summary, dict) else None
            if (named and Path(named).name == path.name) or (summary == "cut off" and suffix == paired):
                return True
    return False


def _summary_of(results: Path, *, limit: int = 1 << 20):
    """The summary of a video run's results file (its last line ``{"summary": {...}}``), "cut off" where the
    last line is a frame's (the run ended before writing it), None where the file is missing or not such
    a file. Only the file's end is read (up to ``limit`` bytes): hours of frames are not parsed."""
    try:
        with open(results, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            tail = f.read().rstrip(b"\n")
    except OSError:  # missing, a folder, unreadable
        return None
    try:
        last = json.loads(tail[tail.rfind(b"\n") + 1:])
    except ValueError:
        return None
    if isinstance(last, dict) and isinstance(last.get("summary"), dict):
        return last["summary"]
    return "cut off" if isinstance(last, dict) and "frame" in last else None


def _batches(frames: Iterator, size: int) -> Iterator[list]:
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _file_stem(out_dir: Path, name: str) -> tuple:
    """``(stem, note)``: the stem of a video's files in ``out_dir``, ``name`` itself, or, where its longest
    file name (``<name>.predictions.partial.jsonl``) would be too long for the file system (255 bytes),
    ``name`` shortened by ``io_utils``' rule for long names (its start, ``~`` and 8 hex of a hash of the
    whole name) for all its files, so that a later partial or complete run finds them again; ``note``
    says so (None when it fits)."""
    from maskrcnn.io_utils import fitting_stem

    stem = fitting_stem(out_dir, name, PARTIAL_SUFFIX)
    if stem == name:
        return name, None
    size = len(os.fsencode(name + PARTIAL_SUFFIX))
    return stem, (f"file names shortened to {stem}.* (the name's start and a hash of the whole name): with "
                  f"{PARTIAL_SUFFIX} the name would be {size} bytes, more than the file system takes")


def _unique_stem(stem: str, used: set) -> str:
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}_{n}"
    used.add(name)
    return name


def predict_videos(predictor, videos: List[Path], out_dir: Path, args: argparse.Namespace, *,
                   stop_requested: Optional[Callable[[], Optional[int]]] = None) -> int:
    """Predict each video (module docstring); 0 if a video was predicted or none failed, else 1. The
    results of an earlier run in ``out_dir`` are said up front; a video's are replaced only by a complete
    prediction of it, and once the run is through, those it did not write again are removed
    (``_remove_earlier_videos``), so that the folder never mixes two runs. ``stop_requested()``: the number
    of a stop signal got (SIGTERM, which the command handles), else None; asked after each batch of frames:
    the video is finished as after Ctrl-C and ``StoppedBySignal`` raised. Ctrl-C / a stop signal is raised
    again with a message saying the videos done and the frames kept."""
    from maskrcnn.data.video import VideoReadError

    earlier = _earlier_videos(out_dir)
    if earlier:
        print(f"maskrcnn predict: note: {out_dir} holds an earlier run's video results ({len(earlier)} "
              f"video(s): {', '.join(sorted(earlier)[:3])}{', ...' if len(earlier) > 3 else ''}): this "
              "run's replace each once it has predicted its video completely (those of videos not among "
              "this run's are removed when the run is through)", file=sys.stderr)
    used, done, failed = set(), 0, 0
    completed = set()  # stems this run predicted completely: their earlier files may go
    kept = set()  # stems this run tried but did not predict completely: their earlier files stay
    path = stem = None
    try:
        for k, path in enumerate(videos):
            tag = f"[video {k + 1}/{len(videos)}]"
            signum = stop_requested() if stop_requested is not None else None
            if signum:  # came between two videos (the last one's overlay being finished): none started
                raise StoppedBySignal(f"{path} and the {len(videos) - k - 1} video(s) after it not started",
                                      signum)
            name = _unique_stem(path.stem, used)
            stem, name_note = _file_stem(out_dir, name)  # its files' stem: the name shortened if too long
            # its results under the whole name, from a version that shortened only names that did not fit
            # its complete results (230-237 bytes): the same video's, kept as such until replaced
            legacy = name if stem != name and name in earlier else None
            kept.update((stem, legacy) if legacy else (stem,))  # until predicted completely
            try:
                summary = predict_video(predictor, path, out_dir, args, stem=stem, tag=tag,
                                        keep_earlier=stem in earlier or legacy is not None,
                                        stop_requested=stop_requested,
                                        name_note=name_note)
            except VideoReadError as e:
                used.discard(name)  # nothing written under its name
                print(f"{tag} skipped {e}", file=sys.stderr)
                failed += 1
                continue
            except ResultsFileError as e:  # a folder of its results' name: nothing made; the others go on
                used.discard(name)
                print(f"{tag} skipped {path}: cannot write its results "
                      f"({e.filename or out_dir}: {e.strerror or e})", file=sys.stderr)
                failed += 1
                continue
            except OSError as e:  # anything else (renaming the results into place): said as it is
                print(f"{tag} {path}: stopped by an error ({type(e).__name__}: {e})", file=sys.stderr)
                failed += 1
                continue
            if summary["status"] == "failed":
                failed += 1
            else:
                done += 1
                if summary["status"] in REPLACING:
                    completed.add(stem)
                    kept.discard(stem)
                    kept.discard(legacy)  # replaced by the results under the shortened name: removed
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM: only the earlier overlays replaced by complete ones go
        if getattr(e, "video_status", None) in REPLACING:  # all predicted, stopped while being finished
            completed.add(stem)
            kept.discard(stem)
        _remove_earlier_videos(out_dir, {s: i for s, i in earlier.items() if s in completed}, completed)
        what = str(e) or (f"{path}: stopped before its results file was made" if path is not None else "")
        where = f"after {done + failed} of {len(videos)} video(s)"
        raise _restated(e, where + (f"; {what}" if what else "")) from None
    except BaseException:
        _remove_earlier_videos(out_dir, {s: i for s, i in earlier.items() if s in completed}, completed)
        raise
    # a video this run was given but did not predict completely (limited, stopped, failed, unreadable) keeps
    # its earlier results and overlay: only a complete prediction of a video replaces its own
    _remove_earlier_videos(out_dir, {s: i for s, i in earlier.items() if s not in kept}, completed)
    return 0 if done > 0 or not failed else 1


def _restated(stop: KeyboardInterrupt, message: str) -> KeyboardInterrupt:
    """``stop`` (Ctrl-C, or ``StoppedBySignal``: its signal kept for the exit status) with ``message``."""
    signum = getattr(stop, "signum", None)
    return KeyboardInterrupt(message) if signum is None else StoppedBySignal(message, signum)


JSONL_SUFFIX, OVERLAY_SUFFIX = ".predictions.jsonl", ".overlay.mp4"
# the statuses whose results replace an earlier run's: the whole video predicted (truncated: to where its
# file ends; damaged_frames_skipped: but for the frames that could not be decoded); not "limited"
# (--max-frames, --start, --end left frames out), "interrupted" nor "failed"
REPLACING = ("complete", "truncated", "damaged_frames_skipped")
PARTIAL_SUFFIX = ".predictions.partial.jsonl"  # a stopped video's results beside the earlier run's
PARTIAL_OVERLAY_SUFFIX = ".overlay.partial.mp4"  # and the overlay of its frames done


class ResultsFileError(OSError):
    """A video's results file cannot be made (a folder of its name): the video is skipped, nothing made.
    Its own class, so that another OSError is not said as this one."""


def _earlier_videos(out_dir: Path) -> dict:
    """The videos an earlier run left results of in ``out_dir`` (``<stem>.predictions.jsonl``; an overlay
    without its results is not taken for one: it may be the user's own file): stem -> its overlay's
    (inode, mtime) or None, to tell afterwards whether this run wrote it again."""
    if not out_dir.is_dir():
        return {}
    earlier = {}
    for path in out_dir.iterdir():
        if path.name.endswith(JSONL_SUFFIX) and path.is_file():
            stem = path.name[:-len(JSONL_SUFFIX)]
            earlier[stem] = _identity(out_dir / f"{stem}{OVERLAY_SUFFIX}")
    return earlier


def _identity(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _remove_earlier_videos(out_dir: Path, earlier: dict, written: set) -> None:
    """Remove the earlier run's results of the videos this run did not write again, and its overlays this
    run did not write again (an overlay is renamed into place: a new file), those of videos it predicted
    under ``--no-overlays`` or without a frame included: they drew other results. ``written``: the stems
    this run predicted completely; nothing when there is none (stopped before the first, or every video
    stopped or unreadable): the earlier run stays whole."""
    if not written:
        return
    doomed = [out_dir / f"{stem}{JSONL_SUFFIX}" for stem in sorted(earlier) if stem not in written]
    doomed += [out_dir / f"{stem}{OVERLAY_SUFFIX}" for stem, identity in sorted(earlier.items())
               if identity is not None and _identity(out_dir / f"{stem}{OVERLAY_SUFFIX}") == identity]
    removed = []
    for path in doomed:
        try:
            path.unlink()
            removed.append(path.name)
        except FileNotFoundError:
            pass
    if removed:
        print(f"removed {len(removed)} file(s) of the earlier run's videos that this run did not write "
              f"again from {out_dir}/: {', '.join(removed)}", file=sys.stderr)


class _Lines:
    """A JSONL file written whole lines at a time: a write that fails part-way (a full disk) is cut back
    to the end of the last complete line, so that every line of the file parses (a reader taking one
    ``json.loads`` a line failed on a half record). Unbuffered: a failed write leaves nothing in a buffer
    for ``close`` to write after the cut."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._file = open(path, "wb", buffering=0)
        except OSError as e:  # a folder of that name: nothing else made
            raise ResultsFileError(e.errno, e.strerror, e.filename) from e
        self._end = 0  # the end of the last complete line

    def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        try:
            while data:
                data = data[self._file.write(data):]  # a raw write may write less than asked
        except BaseException:  # a full disk, or Ctrl-C between two raw writes: no half line stays
            try:
                self._file.truncate(self._end)  # frees blocks: works on a full disk
                self._file.seek(self._end)
            except OSError:
                pass
            raise
        self._end = self._file.tell()

    @property
    def empty(self) -> bool:
        return self._end == 0

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def _range_of(args) -> dict:
    """The summary's record of the range options (``every`` with them): what part of the video it covers."""
    return {"every": args.every, "start": args.start, "end": args.end, "max_frames": args.max_frames}


def _limited(reader, args, *, capped: bool) -> bool:
    """Whether ``--start``, ``--end`` or ``--max-frames`` left frames of the video out (given, but the
    video lies inside them, they leave nothing out): a frame off screen before ``--start`` (the one on
    screen at it is predicted: ``VideoReader.left_before``), one at or after ``--end``, or ``capped``: a
    frame to predict was left after ``--max-frames`` (``_predict_frames``; ``--max-frames`` equal to the
    frames there are leaves none)."""
    timing = reader.timing
    after = args.end is not None and timing.last is not None and timing.last >= args.end - 1e-6
    return reader.left_before > 0 or after or capped


def _range_flags(args) -> str:
    flags = [f"--start {args.start:g}"] if args.start > 0 else []
    flags += [f"--end {args.end:g}"] if args.end is not None else []
    flags += [f"--max-frames {args.max_frames}"] if args.max_frames is not None else []
    return " ".join(flags)


def _new_overlay(reader, out_dir: Path, stem: str, args):  # its name is given when it is closed
    if args.no_overlays:
        return None
    from maskrcnn.data.video_writer import VideoWriter

    fps = reader.fps or DEFAULT_FPS
    if reader.fps is None:
        reader.notes.append(f"frame rate unknown: overlay at {float(DEFAULT_FPS):g} fps")
    return VideoWriter(out_dir / f"{stem}{OVERLAY_SUFFIX}", fps=fps / args.every)


def predict_video(predictor, path: Path, out_dir: Path, args, *, stem: str, tag: str = "",
                  keep_earlier: bool = False, stop_requested: Optional[Callable[[], Optional[int]]] = None,
                  name_note: Optional[str] = None) -> dict:
    """One video -> ``DIR/<stem>.predictions.jsonl`` and the overlay video; its summary. With
    ``keep_earlier`` (an earlier run's results of this stem are there) the results go to
    ``<stem>.predictions.partial.jsonl``, renamed over the earlier ones only when the video was predicted
    completely; stopped or limited, they stay there and this run's overlay goes beside them
    (``<stem>.overlay.partial.mp4``): the earlier pair stays whole. OSError: the results file cannot be
    made (nothing is left behind); Ctrl-C or a stop signal (``stop_requested``) is raised again once the
    frames done are written, its message naming them. ``name_note``: a line for the summary's notes on
    how ``stem`` was made (a name too long shortened: ``_file_stem``)."""
    from maskrcnn.data.video import VideoReader

    with VideoReader(path) as reader:  # VideoReadError: not a video
        if name_note:
            reader.notes.append(name_note)
        jsonl = out_dir / f"{stem}{JSONL_SUFFIX}"
        partial = out_dir / f"{stem}{PARTIAL_SUFFIX}"
        summary = {"video": str(path), "frames_predicted": 0, "detections": 0, "width": None, "height": None,
                   "fps": float(reader.fps) if reader.fps else None, "fps_estimated": reader.fps is not None,
                   **_range_of(args), "status": "failed",
                   "problem": None, "frames_skipped": 0, "notes": reader.notes}
        clock = {}  # "first" / "last": the first / last predicted frame's time (the overlay's start / end)
        said = []  # notes printed as they came (the overlay stopped): not printed again at the end
        stop, summary_lost, written, capped = None, None, None, False
        partial_overlay = out_dir / f"{stem}{PARTIAL_OVERLAY_SUFFIX}"
        # the results file first, then the overlay's hidden temporary file: a name taken (a folder) stops
        # here with nothing made
        with _Lines(partial if keep_earlier else jsonl) as out:
            try:
                overlay = _new_overlay(reader, out_dir, stem, args)
            except BaseException:
                out.discard()
                raise
            count = _frames_said(reader)
            # the container's rate, said as such: the frame times may give another (a variable rate: its note)
            rate = (f"container says {float(reader.fps):.4g} fps" if reader.fps else
                    "container gives no frame rate")
            print(f"{tag} {path}: {count}, {rate}", file=sys.stderr)
            try:
                capped = _predict_frames(predictor, reader, out, overlay, args, summary, tag, clock,
                                         stop_requested, said)
                summary["status"] = ("truncated" if reader.problem else
                                     "limited" if _limited(reader, args, capped=capped) else
                                     "damaged_frames_skipped" if reader.skipped_frames else "complete")
            except KeyboardInterrupt as e:  # raised again below, once the frames done are written
                summary["status"] = "interrupted"
                stop = e
            except (RuntimeError, ValueError, MemoryError, OSError) as e:  # the model, or the writer
                done = summary["frames_predicted"]
                first_line = str(e).splitlines()[0] if str(e) else ""
                if isinstance(e, OSError) and e.filename is None and e.strerror:  # a full disk: say where
                    first_line = f"{e.strerror} (writing {out.path} or the overlay video)"
                summary["problem"] = (f"{path}: stopped after {done} predicted frame(s) "
                                      f"({type(e).__name__}: {first_line})")
                kept_line = "; the frames done are kept" if done else ""
                print(f"{tag} {summary['problem']}{kept_line}", file=sys.stderr)
            finally:  # what was done stays: the results, then the overlay of the frames done
                summary["problem"] = summary["problem"] or "; ".join(
                    line for line in (reader.problem, reader.damage) if line) or None
                summary["frames_skipped"] = reader.skipped_frames
                if summary["width"] is None and reader.shown_size:  # no frame predicted: the size is known
                    summary["height"], summary["width"] = reader.shown_size
                elif summary["width"] is None and reader.stored_size:  # no frame decoded: as stored only
                    summary["stored_height"], summary["stored_width"] = reader.stored_size
                    reader.notes.append("no frame decoded: width and height unknown (a rotation is read from "
                                        "the frames); stored_width and stored_height are the header's")
                _timing_to_summary(reader, summary)
                if summary["status"] == "limited":
                    reader.notes.append(f"limited to part of the video ({_range_flags(args)}): not a "
                                        "complete prediction of it")
                replaced = summary["status"] in REPLACING or not keep_earlier
                # not replaced: the earlier overlay drew the earlier results, which stay; this run's goes
                # beside its partial results
                target = out_dir / f"{stem}{OVERLAY_SUFFIX}" if replaced else partial_overlay
                try:  # a Ctrl-C (a second one) or signal while the encoder finishes: recorded, as in a batch
                    written = _finish_overlay(overlay, summary, to=target,
                                              end=_overlay_end(reader, args, clock, summary, capped=capped))
                except KeyboardInterrupt as e:
                    stop = stop or e
                    summary["notes"].append("overlay video not written: stopped while it was being finished")
                if written != partial_overlay:  # an earlier run's partial overlay drew other frames
                    partial_overlay.unlink(missing_ok=True)
                if not replaced:
                    limited = summary["status"] == "limited"
                    why = f"limited by {_range_flags(args)}" if limited else "stopped"
                    print(f"{tag} {path}: {why}: the earlier run's {jsonl.name} and overlay are kept; this "
                          f"run's frames done are in {partial.name}"
                          + (f" and {partial_overlay.name}" if written else ""), file=sys.stderr)
                    jsonl = partial
                try:
                    out.write(json.dumps({"summary": summary}) + "\n")
                except OSError as e:  # a full disk: the frame lines stay whole (out cut back to them)
                    summary_lost = e
            empty = out.empty
        if empty:  # not even a line could be written (a full disk): no file claims to hold results
            out.path.unlink(missing_ok=True)
        elif keep_earlier and jsonl != partial:  # complete: it replaces the earlier results
            os.replace(partial, jsonl)
    if summary_lost is not None and empty:
        why = summary_lost.strerror or summary_lost
        print(f"{tag} {path}: nothing could be written to {out.path} ({why}): removed", file=sys.stderr)
    elif summary_lost is not None:
        why = summary_lost.strerror or summary_lost
        print(f"{tag} {path}: the summary line could not be written ({why}): "
              f"{jsonl} holds the {summary['frames_predicted']} complete frame line(s) without it",
              file=sys.stderr)
    for line in (reader.problem, reader.damage):
        if line:
            print(f"maskrcnn predict: warning: {line}", file=sys.stderr)
    predicted = summary["frames_predicted"]
    if not reader.problem and summary["status"] in ("complete", "limited") and not predicted:
        print(f"maskrcnn predict: warning: {path}: {_why_no_frame(reader, args)}: no frame predicted",
              file=sys.stderr)
    for note in summary["notes"]:
        if note not in said:
            print(f"{tag} {path}: {note}", file=sys.stderr)
    files = [] if empty else [str(jsonl)]
    files += [str(written)] if written else []
    print(f"{tag} {path}: {summary['frames_predicted']} frame(s), {summary['detections']} detections; "
          + (f"wrote {' and '.join(files)}" if files else "no file written"), file=sys.stderr)
    if stop is not None:  # Ctrl-C / SIGTERM: the run stops, its line saying what was kept
        stopped = _restated(stop, f"{path}: {summary['frames_predicted']} frame(s) kept in "
                                  + (" and ".join(files) if files else "no file"))
        stopped.video_status = summary["status"]  # all predicted (stopped while finishing): it replaced
        raise stopped from None
    return summary


def _frames_said(reader) -> str:
    """The video's frames as its header gives them, for its first line: the count, or where there is none
    (Matroska) the length with the count it makes at the nominal rate, said as such (a variable rate: no
    count at all)."""
    if reader.declared_frames and not reader.frames_estimated:
        return f"{reader.declared_frames} frames"
    if reader.declared_frames:
        return (f"{reader.end_time - reader.start_time:.3f} s, no frame count in its header (about "
                f"{reader.declared_frames} frames at the container's rate)")
    return "unknown number of frames"


def _overlay_end(reader, args, clock: dict, summary: dict, *, capped: bool) -> Optional[float]:
    """Seconds from the first predicted frame to where the last predicted frame stops showing. Read to its
    end, the source's last decoded frame plus one frame (``--end`` at most): not one ``--every`` step
    after the last predicted frame (a 2 s video at ``--every 15`` gave a 3 s overlay). Stopped before its
    end (``--max-frames``, Ctrl-C, an error): the last predicted frame plus one ``--every`` step, never
    beyond the source's end (by its header) or ``--end`` (``--every 10 --max-frames 3`` at 25 fps: 1.2 s,
    not 0.84 s). None without a predicted frame."""
    first, last = clock.get("first"), reader.timing.last
    if first is None or last is None:
        return None
    frame = reader.timing.min_interval or 1 / float(reader.fps or DEFAULT_FPS)
    stopped = summary["status"] in ("interrupted", "failed") or capped
    if stopped:
        end = clock["last"] + args.every * frame
        if reader.end_time is not None:
            end = min(end, reader.end_time - reader.start_time)
    else:
        end = last + frame
    if args.end is not None:
        end = min(end, args.end)
    return end - first


def _finish_overlay(overlay, summary: dict, *, to: Path, end: Optional[float] = None) -> Optional[Path]:
    """The overlay renamed to ``to``; None where there is none or the encoder failed (said). Ctrl-C or a
    stop signal is raised (the temporary file removed) for the caller to record."""
    if overlay is None:
        return None
    try:
        written = overlay.close(end=end, to=to)
    except Exception as e:  # noqa: BLE001 - the results are kept whatever the encoder says
        print(f"{summary['video']}: overlay video not written ({e})", file=sys.stderr)
        return None
    summary["notes"].extend(overlay.notes)
    summary["overlay"] = str(written) if written else None
    return written


def _why_no_frame(reader, args) -> str:
    """Why a video read to its end gave no frame to predict, in words true of each case: ``--start`` at or
    past the video's end (its last frame, shown from its time until the end, is the one on screen at a
    ``--start`` before that), no frame between ``--start`` and ``--end`` (the first frame later than the
    stream's start), or no frame at all."""
    last = reader.timing.last  # the last frame decoded: frames() decodes up to --end, or to the end
    if last is None:
        return f"the video holds no frame ({_length(reader):.3f} s long by its header)"
    if last < args.start - 1e-6:  # every frame before --start, the last one gone by then too
        return (f"--start {args.start:g} s is at or past the end of the video ({_length(reader):.3f} s "
                f"long, last frame at {last:.3f} s)")
    # decoding stopped at the first frame from --end on: no frame was in [--start, --end)
    end = "the end" if args.end is None else f"--end {args.end:g} s"
    return f"no frame between --start {args.start:g} s and {end} (the next is at {last:.3f} s)"


def _length(reader) -> float:
    """Seconds the video lasts: until its last frame decoded stops showing (``VideoReader.shown_until``:
    the header's end, else one frame after it: where a ``--start`` finds nothing on screen), the header's
    span where no frame was decoded."""
    if reader.timing.last is not None:
        return reader.shown_until(reader.timing.last)
    return reader.end_time - reader.start_time if reader.end_time is not None else 0.0


def _timing_to_summary(reader, summary: dict) -> None:
    """The whole video's average frame rate (``VideoReader.average_rate``: a range that stops early reads
    only part of it), labelled (``fps_estimated``, a note) where it is an estimate; and whether the rate
    varies (a note says so, naming both rates: the header line said the container's, which for such a
    video differs from the frame times'; the overlay keeps the source's timing)."""
    timing = reader.timing
    fps, estimate = reader.average_rate()
    summary["fps"] = round(fps, 4) if fps is not None else None
    summary["fps_estimated"] = estimate is not None
    if estimate is not None:
        summary["notes"].append(f"fps {fps:.4g} is an estimate ({estimate}): the video was not read to its "
                                "end and its header gives no frame count")
    summary["variable_frame_rate"] = timing.variable
    if timing.variable:
        container = f"container says {float(reader.fps):.4g} fps; " if reader.fps else ""
        apart = f"{timing.min_interval * 1000:.0f} to {timing.max_interval * 1000:.0f} ms"
        read = "" if reader.read_to_end else " over the frames read"
        summary["notes"].append(f"{container}frame times average {timing.fps:.4g} fps{read} (variable frame "
                                f"rate: frames {apart} apart); the overlay keeps the source's frame times")


def _predict_frames(predictor, reader, out: _Lines, overlay, args, summary: dict, tag: str, clock: dict,
                    stop_requested=None, said: Optional[list] = None) -> bool:
    """Predict the frames of the range, written as each batch is done; whether ``--max-frames`` left a
    frame of the range out (the reader is asked for one more: a video of exactly ``--max-frames`` frames
    is complete). An overlay whose writer fails (``VideoWriteError``: its file is gone) stops there, said
    at once (``_overlay_stopped``, the line added to ``said``); the frames go on being predicted: the
    user asked for the results first, the overlay only shows them."""
    said = [] if said is None else said
    import numpy as np
    import torch

    from maskrcnn.data.coco_results import detections_to_coco_results
    from maskrcnn.data.video_writer import VideoWriteError
    from maskrcnn.overlay_defaults import overlay_min_size
    from maskrcnn.visualize import draw_instances, skeleton_for

    frames = reader.frames(every=args.every, start=args.start, end=args.end)
    left = {}
    if args.max_frames is not None:
        frames = _at_most(frames, args.max_frames, left)
    skeleton = skeleton_for(predictor.cfg)  # the same for every frame
    last_print = time.perf_counter()
    for batch in _batches(frames, predictor.batch_size):
        images = [torch.from_numpy(f.image).permute(2, 0, 1).float().div_(255.0) for f in batch]  # (3, H, W)
        dets = predictor.predict_tensors(images)
        lines, found = [], 0
        for frame, det in zip(batch, dets):
            records = detections_to_coco_results(det, image_id=frame.index,
                                                 label_to_category_id=predictor.label_to_category_id,
                                                 class_names=predictor.class_names,
                                                 keypoint_labels=getattr(predictor, "keypoint_labels", None))
            for r in records:
                del r["image_id"]  # the line's frame
            line = {"frame": frame.index, "time": round(frame.time, 6), "detections": records}
            lines.append(json.dumps(line, ensure_ascii=False))  # names readable: no COCO reader opens it
            found += len(records)
        # the batch's lines whole (a failed write is cut back: out), counted once written
        out.write("".join(line + "\n" for line in lines))
        summary["frames_predicted"] += len(batch)
        summary["detections"] += found
        summary["height"], summary["width"] = batch[0].image.shape[:2]
        if overlay is not None:  # after the results: the overlay never draws frames the results lack
            for frame, image, det in zip(batch, images, dets):
                drawn = draw_instances(image, det, predictor.class_names,
                                       min_size=overlay_min_size(args, video=True),
                                       score_thresh=args.overlay_score_thresh, skeleton=skeleton)
                first = clock.setdefault("first", frame.time)  # the overlay starts at the first predicted one
                clock["last"] = frame.time
                try:
                    overlay.write(np.asarray(drawn), time=frame.time - first)  # (H, W, 3) uint8
                except VideoWriteError as e:  # the writer removed its file: the overlay alone stops
                    _overlay_stopped(e, frame.index, summary, said, f"{tag} {reader.path}")
                    overlay = None
                    break
        if time.perf_counter() - last_print >= PROGRESS_SECONDS:
            last_print = time.perf_counter()
            print(f"{tag} {reader.path}: frame {batch[-1].index} ({batch[-1].time:.1f} s), "
                  f"{summary['frames_predicted']} predicted", file=sys.stderr)
        signum = stop_requested() if stop_requested is not None else None
        if signum:  # SIGTERM: the batch in hand is done; the video is finished as after Ctrl-C
            raise StoppedBySignal("", signum)
    return bool(left.get("more"))


def _overlay_stopped(e, index: int, summary: dict, said: list, where: str) -> None:
    """Record and say, once, that the overlay stopped at frame ``index`` (its writer's error ``e``, which
    names the file and says it was removed): a note of the summary, printed now rather than at the video's
    end (hours later for a long one), and added to ``said`` so that the end does not print it again."""
    note = f"overlay stopped at frame {index} and removed ({str(e).removesuffix('; removed')}); the " \
           "predictions went on to the end without it"
    summary["notes"].append(note)
    said.append(note)
    print(f"{where}: {note}", file=sys.stderr)


def _at_most(frames: Iterator, n: int, left: dict) -> Iterator:
    """The first ``n`` of ``frames``; ``left["more"]``: whether one came after them (decoded, not given:
    up to ``--every`` frames decoded more; the reader's end-of-video checks run when there is none)."""
    for k, frame in enumerate(frames):
        if k == n:
            left["more"] = True
            return
        yield frame
