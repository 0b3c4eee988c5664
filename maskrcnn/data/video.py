"""Reading video files frame by frame, with PyAV (the optional ``video`` extra: ``pip install
'maskrcnn[video]'``), for ``maskrcnn predict`` on camera footage.

Shapes: a frame is (H, W, 3) uint8 RGB, H x W the size the video is shown at (after its rotation).

A file is a video by its extension (``VIDEO_EXTENSIONS``) and by PyAV opening it: a file with a video
extension that PyAV cannot open, that holds no video stream, or that FFmpeg reads as a still image (a PNG or
JPEG renamed .mp4: its image demuxers, ``png_pipe``, ``jpeg_pipe``, ...) raises ``VideoReadError`` naming it.
Frames are decoded one at a time (``VideoReader.frames``): memory does not grow with the video's length.

Rotation: phones store portrait footage landscape with a display matrix (or, written by older tools, a
``rotate`` tag) saying how to turn it; frames are rotated by the multiple of 90 degrees it gives, as
players show them (``VideoFrame.rotation`` from PyAV 13, else the stream's ``rotate`` tag). A mirroring
in the display matrix is not applied (PyAV does not expose it), nor an angle that is no multiple of 90
(``VideoReader.notes`` says so).

A damaged frame mid-file (a packet the decoder refuses): the file is demuxed packet by packet and such a
packet skipped, reading going on; ``VideoReader.skipped_frames`` counts them and ``VideoReader.damage``
names them in one line (``1 damaged frame could not be decoded and was skipped (frame 30 at 1.200 s: ...)``).
Frame numbers stay the file's: ``Frame.index`` is the frame's position among the file's frames, the skipped
ones counted where the packets' timestamps place them (``VideoReader._decoded``); ``Frame.time`` is the
frame's own timestamp. Failures with no frame decoded after them, or ``MAX_FAILURES_IN_A_ROW`` in a row, are
no frames skipped but the file damaged from there: reading ends as at a truncation.

A corrupt or truncated file: the frames decoded before the damage are yielded, then the reader stops and
``VideoReader.problem`` says, in one line naming the file, the frames read (``5 frames read (0..4)``) and
the time after which it is damaged, what happened. A file that ends
earlier than its header says (cut off mid-copy: FFmpeg then stops quietly) is reported the same way, but
only when the shortfall is certain: fewer frames than the stream's own frame count (MP4, AVI index), or
the last frame well short of the stream's end by its time base (the stream's duration, else the
container's: Matroska). Timestamps that start late (a clip cut from a longer recording starts at 5 s) and
a variable frame rate are no shortfall; a count estimated from duration x nominal rate is only shown.
An MP4 / MOV cut before the end of its index (``moov``, written last by default) cannot be opened (or
opens with no video stream): the message says so (an ``ftyp`` box first and no whole ``moov`` box among
the top-level boxes) rather than "not a video" or "holds no video stream".

Frame times: ``Frame.time`` is the frame's own timestamp less the stream's start, so a variable frame
rate keeps its true timing; ``VideoReader.timing`` measures, over the frames decoded, the average rate
and whether the rate varies; ``VideoReader.average_rate`` gives the whole stream's (the frames' times once
read to the end, else the header's count over its length) or says that it estimates.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from maskrcnn.data.folders import list_folder

__all__ = ["VIDEO_EXTENSIONS", "Frame", "VideoReadError", "VideoReader", "import_av", "is_video_path",
           "list_videos"]

# camcorders (.mts / .m2ts: AVCHD; .ts: broadcast), phones (.3gp, .3g2), DVD / older PCs (.mpg, .mpeg,
# .wmv, .flv), Ogg (.ogv): FFmpeg tells the format by the content, the extension only says "a video"
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".ts", ".mts", ".m2ts", ".3gp", ".3g2",
                    ".mpg", ".mpeg", ".wmv", ".flv", ".ogv")

INSTALL_HINT = "pip install 'maskrcnn[video]' (or: pip install av)"

# undecodable packets in a row after which the rest of a file is taken as lost (reading stops, as at a
# truncation): a few damaged frames are skipped, a stream the decoder cannot read is not ground through
MAX_FAILURES_IN_A_ROW = 50


class VideoReadError(ValueError):
    """A video file could not be opened; the message names the file and the reason."""


class _GaveUp(Exception):
    """``MAX_FAILURES_IN_A_ROW`` packets in a row could not be decoded: ``error`` the last one's."""

    def __init__(self, error: BaseException, failures: int):
        super().__init__(str(error))
        self.error, self.failures = error, failures


def import_av():
    """The ``av`` module, or a one-line RuntimeError naming the extra that installs it."""
    try:
        import av
    except ImportError:
        raise RuntimeError(f"reading videos needs PyAV: {INSTALL_HINT}") from None
    return av


def is_video_path(path: Union[str, os.PathLike]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_videos(paths: Iterable[Union[str, os.PathLike]], *, on_passed_over=None) -> List[Path]:
    """Video files among ``paths``: files with a video extension as given, folders searched recursively
    (``data.folders``' rules, as ``list_images``'), a path that is neither passed over.
    ``on_passed_over(path, reason)`` is called for each entry of the folders with a video extension that
    is not a file to read (a broken link, a symlinked folder: ``data.folders.list_folder``)."""
    found: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files, passed_over = list_folder(p, VIDEO_EXTENSIONS, recursive=True)
            found.extend(files)
            for path, reason in passed_over if on_passed_over is not None else ():
                on_passed_over(path, reason)
        elif p.is_file() and is_video_path(p):
            found.append(p)
    return found


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based position in the video (every frame counts, predicted or not, skipped as damaged too)
    time: float  # seconds from the start of the video
    image: np.ndarray  # (H, W, 3) uint8 RGB, rotated as the video is shown


def _rotation_of(frame, stream) -> int:
    """Counter-clockwise degrees to turn ``frame`` by to show it upright."""
    angle = getattr(frame, "rotation", None)  # the display matrix, PyAV >= 13 (frame None: the header's)
    if angle is None:
        tag = stream.metadata.get("rotate")  # older muxers: degrees clockwise
        try:
            angle = -int(float(tag)) if tag is not None else 0
        except ValueError:
            angle = 0
    return int(angle)


def _shown_size(height: int, width: int, angle: int) -> Tuple[int, int]:
    """(H, W) of a frame stored ``height`` x ``width`` once turned by ``angle`` degrees (applied in
    multiples of 90 only, as ``VideoReader.frames`` does)."""
    return (int(width), int(height)) if angle % 90 == 0 and angle % 180 else (int(height), int(width))


class VideoReader:
    """One video file, opened at construction (``VideoReadError`` if it is not a readable video); use as a
    context manager. ``fps`` (a Fraction, None when the file does not say), ``declared_frames`` (0 when
    unknown; ``frames_estimated``: from the length at the nominal rate), ``stored_size`` ((H, W) as the
    header stores it, before any rotation; None when it has none), ``shown_size`` ((H, W) after rotation,
    from the first decoded frame: None until one is, since a phone video's rotation is a display matrix
    that only its frames give), ``notes`` (what was done to the frames: rotation) and, once ``frames`` has
    stopped, ``problem`` (None, or one line naming the file and the frame where decoding stopped early),
    ``skipped_frames`` and ``damage`` (the damaged frames skipped: their count, a line naming them)."""

    def __init__(self, path: Union[str, os.PathLike]):
        av = import_av()
        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, ValueError) as e:  # InvalidDataError is both
            if _mp4_without_index(self.path):
                raise _cut_mp4_error(self.path, _reason(e)) from None
            raise VideoReadError(f"{self.path}: not a video PyAV can read ({_reason(e)})") from None
        if not self._container.streams.video:
            # FFmpeg opens some MP4s cut inside their moov, with the streams read so far (none, or a track
            # whose codec was not reached: a "data" stream); a whole MP4 of audio only is no such file
            kinds = sorted({s.type for s in self._container.streams})  # read before close() empties them
            self._container.close()
            if _mp4_without_index(self.path):
                raise _cut_mp4_error(self.path, f"no video stream found, only {kinds}" if kinds else
                                     "no stream found")
            raise VideoReadError(f"{self.path}: holds no video stream")
        image = _image_kind(self._container)
        if image is not None:  # one picture: FFmpeg reads it as a one-frame video at 25 fps
            self._container.close()
            kind, ext = image
            raise VideoReadError(f"{self.path}: not a video: a {kind} image under a video extension "
                                 f"(predict it as an image: rename it to {ext})")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame threads: decoding keeps up with a GPU
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: Optional[Fraction] = Fraction(rate) if rate else None
        self.counted_frames = int(self._stream.frames or 0)  # the container's own count (0: none)
        self.start_time, self.end_time = _stream_span(self._stream, self._container)
        # shown only: the count, else the muxer's tag of it (mkvmerge's statistics: Matroska has no count
        # field), else estimated (``frames_estimated``) from the length at the nominal rate, which a variable
        # rate makes no count (10 frames over 3.08 s read "77")
        self.declared_frames = self.counted_frames or _tagged_frames(self._stream)
        self.frames_estimated = False
        if not self.declared_frames and self.end_time is not None and self.fps:
            self.declared_frames = round((self.end_time - self.start_time) * self.fps)
            self.frames_estimated = True
        # (H, W) as stored: the header's. As shown it is known only from a decoded frame (``frames``): the
        # header gives no display matrix (PyAV reads it per frame), so its size may be the wrong way round
        context = self._stream.codec_context
        self.stored_size: Optional[Tuple[int, int]] = (
            (int(context.height), int(context.width)) if context.width else None)
        self.shown_size: Optional[Tuple[int, int]] = None
        self.notes: List[str] = []
        self.problem: Optional[str] = None
        self.skipped_frames = 0  # packets that could not be decoded, skipped (one frame each)
        self.damage: Optional[str] = None  # one line naming them, once frames() has stopped
        self._skipped_at: List[Tuple[int, float]] = []  # (index, time) of those placed by timestamps
        self._index = -1  # the last frame's number
        self._last_error: Optional[BaseException] = None
        self.timing = Timing()
        self.left_before = 0  # frames off screen before ``start`` (``frames``)
        self.read_to_end = False  # whether ``frames`` read the stream to its end
        self._turn = None
        self._av = av

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self, *, every: int = 1, max_frames: Optional[int] = None, start: float = 0.0,
               end: Optional[float] = None) -> Iterator[Frame]:
        """Every ``every``-th frame shown from ``start`` seconds until ``end`` (excluded), at most
        ``max_frames`` of them. The first is the frame on screen at ``start``: the last one whose time is
        at or before it (a 1 fps video from 12.5 s starts with the frame of 12 s, as players and editors
        mean a start; the last frame shows until the video's end, ``shown_until``). Frames before it are
        decoded and dropped without being converted (exact frame indices at the price of decoding: cheap
        beside a forward), counted in ``left_before``. A packet that cannot be decoded is skipped
        (``skipped_frames``, ``damage``) and reading goes on. ``read_to_end``: whether the stream was
        read to its end (not stopped by ``end``, ``max_frames``, the caller or damage)."""
        stream = self._stream
        origin = self.start_time
        timing = self.timing = Timing()
        self.skipped_frames, self.damage, self._skipped_at = 0, None, []
        self.left_before, self.read_to_end = 0, False
        self._turn = None  # counter-clockwise degrees, read from the first frame converted
        count, taken, in_range, previous = 0, 0, 0, -1
        held = None  # (index, frame, time) of the latest frame before ``start``: on screen at it until a
        # later one comes at or before it
        decoded = self._decoded()
        try:
            while True:
                try:
                    index, frame = next(decoded)
                except StopIteration:
                    if self._trailing:  # no frame came after the last failures: the file is lost from there
                        self._lost_after(count, f"the next {self._trailing} frame(s) cannot be decoded")
                        return
                    self.read_to_end = True
                    # every frame was before ``start``: the last one is on screen at it until the video's end
                    # (the one frame in range: nothing for ``every`` or ``max_frames`` to leave out)
                    if held is not None and start < self.shown_until(held[2]) - 1e-6 and (
                            end is None or held[2] < end):
                        yield Frame(index=held[0], time=held[2], image=self._image(held[1]))
                    elif held is not None:  # ``start`` at or past the end
                        self.left_before += 1
                    break
                except _GaveUp as e:  # a run of undecodable packets: the rest of the file is taken as lost
                    self._lost_after(count, f"{e.failures} packets in a row cannot be decoded")
                    return
                except (self._av.error.FFmpegError, OSError, ValueError, EOFError) as e:  # demuxing: the file
                    read = _read_so_far(count, timing.last, last_index=self._index)
                    self.problem = (f"{self.path}: {read} (the next frame cannot be read: {_reason(e)}); the "
                                    "frames read are kept")
                    return
                count += 1
                if count == 1 and frame.width:
                    self.shown_size = _shown_size(frame.height, frame.width, _rotation_of(frame, stream))
                if frame.time is not None:
                    time = frame.time - origin
                else:  # no timestamp: the frame's position at the nominal rate
                    time = index / float(self.fps) if self.fps else 0.0
                timing.add(time, missing=max(0, index - previous - 1) if count > 1 else 0)
                previous = index
                if time < start - 1e-6:
                    self.left_before += held is not None  # replaced: off screen before ``start``
                    held = (index, frame, time)
                    continue
                candidates = [(index, frame, time)]
                if held is not None and time > start + 1e-6:  # the one before shows at ``start``: first
                    candidates.insert(0, held)
                elif held is not None:  # this one comes at ``start``: the one before is gone by then
                    self.left_before += 1
                held = None
                for index, frame, time in candidates:
                    if end is not None and time >= end:
                        return
                    in_range += 1
                    if (in_range - 1) % every:
                        continue
                    yield Frame(index=index, time=time, image=self._image(frame))
                    taken += 1
                    if max_frames is not None and taken >= max_frames:
                        return
            self._check_shortfall(count + self.skipped_frames, timing)
        finally:  # however it stopped (the range's end, --max-frames, an error): the frames skipped so far
            self._say_damage(count)

    def _decoded(self) -> Iterator[tuple]:
        """``(index, frame)`` of the stream's frames, decoded packet by packet (a ``container.decode``
        ends at the first packet that cannot be decoded: a damaged packet mid-file lost the rest of it).
        A packet whose decoding fails is skipped and counted (``skipped_frames``: a video packet holds one
        frame); ``_GaveUp`` after ``MAX_FAILURES_IN_A_ROW`` failing packets in a row (a stream the decoder
        cannot read at all is not ground through to its end). An error demuxing (the file ends inside a
        packet, a damaged container) is raised: reading stops there.

        ``index``: the frame's position among the file's frames, the frames skipped included, so that the
        frames after a damaged one keep their numbers (and times) in the file. Where a skipped frame lies is
        told by the packets' timestamps, not by when the error came (a decoder with frame threads says it
        some packets late): frames come out in presentation order, so a demuxed packet time below the frame
        given is a frame that never came; counted as one while skipped frames are not yet placed (a decoder
        that drops frames by itself, an open GOP's leading ones, keeps the former count: frames decoded).
        Packets without timestamps: the skipped frames cannot be placed and the later indices are one less
        per frame skipped before them (``damage`` says so)."""
        av, stream = self._av, self._stream
        pending: List[int] = []  # a heap of the demuxed packets' timestamps not yet matched by a frame
        unplaced, failures, self._index, self._trailing = 0, 0, -1, 0
        for packet in self._container.demux(stream):  # demuxing errors: raised to frames()
            if packet.size and packet.pts is not None:
                heapq.heappush(pending, packet.pts)
            try:
                frames = packet.decode()  # the last packet (size 0) flushes the decoder
            except (av.error.FFmpegError, ValueError, EOFError) as e:
                failures += 1
                self._trailing += 1
                self.skipped_frames += 1
                self._last_error = e
                if failures >= MAX_FAILURES_IN_A_ROW:
                    raise _GaveUp(e, failures) from None
                unplaced += 1
                continue
            failures = 0
            for frame in frames:
                if frame.pts is None:
                    pending.clear()  # nothing to match the packets' times with
                else:
                    lost = []
                    while pending and pending[0] < frame.pts:
                        lost.append(heapq.heappop(pending))
                    if pending and pending[0] == frame.pts:
                        heapq.heappop(pending)
                    placed = lost[len(lost) - min(unplaced, len(lost)):]  # the latest: the ones just before
                    unplaced -= len(placed)
                    tb = frame.time_base or stream.time_base
                    for pts in placed:
                        self._index += 1
                        self._skipped_at.append((self._index, float(pts * tb) - self.start_time))
                self._index += 1
                self._trailing = 0
                yield self._index, frame

    def _image(self, frame) -> np.ndarray:
        """(H, W, 3) uint8 RGB of ``frame``, turned upright."""
        if self._turn is None:
            self._turn = self._rotation(frame)
        image = frame.to_ndarray(format="rgb24")  # (h, w, 3) as stored
        if self._turn:
            image = np.ascontiguousarray(np.rot90(image, k=self._turn // 90))  # counter-clockwise turns
        return image

    def shown_until(self, time: float) -> float:
        """Seconds (from the start) until which the last frame, shown from ``time``, stays on screen: the
        video's end by its header, else one frame interval after it (the shortest seen, else the nominal
        rate's)."""
        length = self.end_time - self.start_time if self.end_time is not None else None
        if length is not None and length > time:
            return length
        step = self.timing.min_interval or (1 / float(self.fps) if self.fps else 0.0)
        return time + step

    def average_rate(self) -> tuple:
        """``(fps, estimate)``: the stream's average frame rate over its whole length, ``estimate`` None
        where it is known, else a few words on what the figure rests on (``fps`` None where nothing says).
        Known: every frame's time, once ``frames`` has read the stream to its end; else the header's frame
        count over its length (MP4's, an AVI index's: FFmpeg's average rate), which a range that stops
        early (``end``, ``max_frames``) does not change. Estimated: the times of the frames read (the rest
        may run at another rate: a variable one), else the container's nominal rate."""
        timing = self.timing
        if self.read_to_end and not self.problem and timing.fps is not None:
            return timing.fps, None
        length = self.end_time - self.start_time if self.end_time is not None else 0.0
        if self.declared_frames and not self.frames_estimated and length > 0:
            return self.declared_frames / length, None
        if timing.fps is not None:
            return timing.fps, f"the times of the {timing.count} frames read, 0 to {timing.last:.3f} s"
        if self.fps:
            return float(self.fps), "the container's nominal rate"
        return None, None

    def _lost_after(self, count: int, why: str) -> None:
        """``problem``: the file is damaged from after the last frame read on (``why``, with the last
        error); the failures after that frame are no frames skipped: reading ended there."""
        self.skipped_frames -= self._trailing
        read = _read_so_far(count, self.timing.last, last_index=self._index)
        self.problem = f"{self.path}: {read} ({why}: {_reason(self._last_error)}); the frames read are kept"

    def _check_shortfall(self, seen: int, timing: Timing) -> None:
        """``problem`` where the file, read to its end (``seen`` frames, the skipped ones included), ends
        certainly earlier than its header says (module docstring)."""
        if self.counted_frames:  # the index counts the frames: a shortfall of it is certain
            if seen < self.counted_frames - max(1, self.counted_frames // 50):
                declared = f"of the {self.counted_frames} its header declares"
                read = _read_so_far(seen - self.skipped_frames, timing.last, of=declared,
                                    last_index=self._index)
                self.problem = f"{self.path}: {read} (truncated?); the frames read are kept"
        elif self.end_time is not None and timing.last is not None:
            # the last frame shows until about one interval after its time; "well short": by more than
            # a second or a tenth of the video, whichever is less, beyond two frame intervals
            length = self.end_time - self.start_time
            shown_until = timing.last + (timing.min_interval or 0.0)
            slack = 2 * (timing.max_interval or 0.0) + min(1.0, 0.1 * length)
            if shown_until < length - slack:
                read = _read_so_far(seen - self.skipped_frames, timing.last, last_index=self._index)
                self.problem = (f"{self.path}: {read} of the {length:.3f} s its header declares "
                                "(truncated?); the frames read are kept")

    def _say_damage(self, count: int) -> None:
        """``damage``: one line naming the frames skipped as undecodable (their numbers and times, the
        first few), None when none was."""
        n = self.skipped_frames
        if not n:
            return
        where = [f"frame {i} at {t:.3f} s" for i, t in self._skipped_at[:3]]
        where += ["..."] if len(self._skipped_at) > 3 else []
        unknown = n - len(self._skipped_at)
        if unknown:  # no timestamps to place them by
            where.append(f"{unknown} where unknown: the frame numbers after them are {unknown} less")
        frames = "1 damaged frame" if n == 1 else f"{n} damaged frames"
        was = "was" if n == 1 else "were"
        self.damage = (f"{self.path}: {frames} could not be decoded and {was} skipped "
                       f"({', '.join(where)}: {_reason(self._last_error)}); {count} frame(s) read")

    def _rotation(self, frame) -> int:
        angle = _rotation_of(frame, self._stream)
        if angle % 90:
            self.notes.append(f"rotation of {angle} degrees not applied (not a multiple of 90)")
            return 0
        angle %= 360
        if angle:
            self.notes.append(f"rotated {angle} degrees counter-clockwise, as its rotation metadata says")
        return angle


def _read_so_far(count: int, last: Optional[float], *, of: str = "", last_index: Optional[int] = None) -> str:
    """What a damaged video gave, by the frames' own numbers: '2 frames read (0..1); the file is damaged
    after 0.100 s' (the frames read and the last one's time: not the first one missing, which read as the
    last kept). ``of``: words after the count ('of the 12 its header declares'); ``last_index``: the last
    frame's number where frames skipped before it make it more than ``count - 1``."""
    of = f" {of}" if of else ""
    if not count:
        return f"no frame read{of}; the file is damaged from its start"
    last_index = count - 1 if last_index is None else last_index
    frames = "1 frame read (0)" if count == 1 else f"{count} frames read (0..{last_index})"
    return frames + of + (f"; the file is damaged after {last:.3f} s" if last is not None else "")


class Timing:
    """Frame times seen while decoding (seconds from the stream's start): first, last, count and the
    shortest / longest interval; ``fps`` the average rate over them, ``variable`` whether it varies."""

    # timestamps are rounded to the time base (Matroska: 1 ms), so 29.97 fps reads 33 / 34 ms: no variation
    TOLERANCE = 0.002  # seconds, or 10% of the shortest interval if more

    def __init__(self):
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.count = 0
        self.missing = 0  # frames skipped between the first and the last
        self.min_interval: Optional[float] = None
        self.max_interval: Optional[float] = None

    def add(self, time: float, *, missing: int = 0) -> None:
        """``missing``: frames skipped as damaged just before this one: the step to it spans them, no
        variation of the rate (and the average counts them)."""
        self.missing += missing
        if self.last is not None and time > self.last and not missing:
            step = time - self.last
            self.min_interval = step if self.min_interval is None else min(self.min_interval, step)
            self.max_interval = step if self.max_interval is None else max(self.max_interval, step)
        if self.first is None:
            self.first = time
        self.last = time if self.last is None else max(self.last, time)
        self.count += 1

    @property
    def fps(self) -> Optional[float]:
        if self.count < 2 or not self.last > self.first:
            return None
        return (self.count + self.missing - 1) / (self.last - self.first)

    @property
    def variable(self) -> bool:
        if self.min_interval is None:
            return False
        return self.max_interval - self.min_interval > max(self.TOLERANCE, 0.1 * self.min_interval)


def _tagged_frames(stream) -> int:
    """The frame count a muxer wrote as a stream tag (``NUMBER_OF_FRAMES``, mkvmerge's), 0 if none."""
    for key, value in stream.metadata.items():
        if key.upper().split("-")[0] == "NUMBER_OF_FRAMES":  # "NUMBER_OF_FRAMES-eng"
            try:
                return max(0, int(value))
            except ValueError:
                return 0
    return 0


# an image's codec in FFmpeg's image demuxers -> what to call it and the extension ``predict`` reads it by
_IMAGE_CODECS = {"png": ("PNG", ".png"), "mjpeg": ("JPEG", ".jpg"), "bmp": ("BMP", ".bmp"),
                 "tiff": ("TIFF", ".tif"), "webp": ("WebP", ".webp"), "gif": ("GIF", ".gif")}


def _image_kind(container) -> Optional[Tuple[str, str]]:
    """``(kind, extension)`` where FFmpeg opened the file as a still image (its image demuxers: ``image2``,
    ``image2pipe``, ``png_pipe``, ``jpeg_pipe``, ... tell an image by its content), else None."""
    name = container.format.name
    if not (name in ("image2", "image2pipe") or name.endswith("_pipe")):
        return None
    codec = container.streams.video[0].codec_context.name
    return _IMAGE_CODECS.get(codec, (f"{codec} (by FFmpeg's {name} reader)", "an image extension"))


def _stream_span(stream, container) -> tuple:
    """``(start, end)`` of ``stream`` in seconds, by timestamps: the start is the stream's first timestamp
    (else the container's; 0 if neither says); the end is start + the stream's duration when the stream
    has one, else the container's duration (Matroska has no stream duration; FFmpeg's Matroska muxer
    writes the last timestamp there, others a length from the start: the smaller reading is taken, so a
    late start never looks like missing frames), None when nothing says."""
    start = None
    if stream.start_time is not None:
        start = float(stream.start_time * stream.time_base)
    elif container.start_time is not None:
        start = container.start_time / 1_000_000
    start = start or 0.0
    if stream.duration:
        return start, start + float(stream.duration * stream.time_base)
    if container.duration:
        length = container.duration / 1_000_000
        return start, max(start, min(start + length, length))
    return start, None


def _mp4_without_index(path: Path) -> bool:
    """Whether the file starts as an MP4 / MOV does (its first box ``ftyp``) but has no whole ``moov`` box
    (the index, written last by default: a copy cut off loses it). Top-level boxes are walked by their
    headers: 4 bytes of size (1: a 64-bit size follows the type; 0: to the end of the file), 4 of type."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset, first = 0, True
            while offset + 8 <= size:
                f.seek(offset)
                head = f.read(16)
                length, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if first and kind != b"ftyp":
                    return False  # not an MP4: its own message
                first = False
                if length == 1 and len(head) == 16:
                    length = int.from_bytes(head[8:16], "big")
                elif length == 0:
                    length = size - offset
                if length < 8:
                    return True  # a damaged box header: the walk cannot reach a moov
                if kind == b"moov":
                    return offset + length > size  # cut inside it
                offset += length
    except OSError:
        return False
    return not first  # an ftyp, and no moov among the boxes


def _cut_mp4_error(path: Path, reason: str) -> VideoReadError:
    return VideoReadError(f"{path}: truncated or missing its index (moov): the file looks like an MP4 but "
                          f"cannot be read ({reason})")


def _reason(e: BaseException) -> str:
    # FFmpeg's errors read "[Errno 1094995529] Invalid data found when processing input: 'file'"
    text = getattr(e, "strerror", None) or str(e)
    return str(text).splitlines()[0] if text else type(e).__name__
