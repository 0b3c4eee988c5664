"""Reading video files frame by frame, with PyAV (the optional ``video`` extra: ``pip install
'maskrcnn[video]'``), for ``maskrcnn predict`` on camera footage.

Shapes: a frame is (H, W, 3) uint8 RGB, H x W the size the video is shown at (after its rotation).

A file is a video by its extension (``VIDEO_EXTENSIONS``) and by PyAV opening it: a file with a video
extension that PyAV cannot open, or that holds no video stream, raises ``VideoReadError`` naming it.
Frames are decoded one at a time (``VideoReader.frames``): memory does not grow with the video's length.

Rotation: phones store portrait footage landscape with a display matrix (or, written by older tools, a
``rotate`` tag) saying how to turn it; frames are rotated by the multiple of 90 degrees it gives, as
players show them (``VideoFrame.rotation`` from PyAV 13, else the stream's ``rotate`` tag). A mirroring
in the display matrix is not applied (PyAV does not expose it), nor an angle that is no multiple of 90
(``VideoReader.notes`` says so).

A corrupt or truncated file: the frames decoded before the damage are yielded, then the reader stops and
``VideoReader.problem`` says, in one line naming the file and the frame, what happened. A file that ends
earlier than its header says (cut off mid-copy: FFmpeg then stops quietly) is reported the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Union

import numpy as np

from maskrcnn.data.folders import list_folder

__all__ = ["VIDEO_EXTENSIONS", "Frame", "VideoReadError", "VideoReader", "import_av", "is_video_path",
           "list_videos"]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")

INSTALL_HINT = "pip install 'maskrcnn[video]' (or: pip install av)"


class VideoReadError(ValueError):
    """A video file could not be opened; the message names the file and the reason."""


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
    index: int  # 0-based position in the video (every decoded frame counts, predicted or not)
    time: float  # seconds from the start of the video
    image: np.ndarray  # (H, W, 3) uint8 RGB, rotated as the video is shown


def _rotation_of(frame, stream) -> int:
    """Counter-clockwise degrees to turn ``frame`` by to show it upright."""
    angle = getattr(frame, "rotation", None)  # the display matrix, PyAV >= 13
    if angle is None:
        tag = stream.metadata.get("rotate")  # older muxers: degrees clockwise
        try:
            angle = -int(float(tag)) if tag is not None else 0
        except ValueError:
            angle = 0
    return int(angle)


class VideoReader:
    """One video file, opened at construction (``VideoReadError`` if it is not a readable video); use as a
    context manager. ``fps`` (a Fraction, None when the file does not say), ``declared_frames`` (0 when
    unknown), ``notes`` (what was done to the frames: rotation) and, once ``frames`` has stopped,
    ``problem`` (None, or one line naming the file and the frame where decoding stopped early)."""

    def __init__(self, path: Union[str, os.PathLike]):
        av = import_av()
        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, ValueError) as e:  # InvalidDataError is both
            raise VideoReadError(f"{self.path}: not a video PyAV can read ({_reason(e)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoReadError(f"{self.path}: holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame threads: decoding keeps up with a GPU
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: Optional[Fraction] = Fraction(rate) if rate else None
        self.declared_frames = int(self._stream.frames or 0)
        if not self.declared_frames and self._container.duration and self.fps:  # Matroska: from its duration
            self.declared_frames = round(self._container.duration / 1_000_000 * self.fps)
        self.notes: List[str] = []
        self.problem: Optional[str] = None
        self._av = av

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self, *, every: int = 1, max_frames: Optional[int] = None, start: float = 0.0,
               end: Optional[float] = None) -> Iterator[Frame]:
        """Every ``every``-th frame from ``start`` seconds (the first one there included) until ``end``
        (excluded), at most ``max_frames`` of them. Frames before ``start`` are decoded and dropped
        without being converted (exact frame indices at the price of decoding: cheap beside a forward)."""
        stream, av = self._stream, self._av
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        index, taken, in_range, rotation = -1, 0, 0, None
        decoded = self._container.decode(stream)
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
                self.problem = (f"{self.path}: cannot decode past frame {index + 1} ({_reason(e)}); the "
                                f"{index + 1} frame(s) before it are kept")
                return
            index += 1
            if frame.time is not None:
                time = frame.time - origin
            else:  # no timestamp: the frame's position at the nominal rate
                time = index / float(self.fps) if self.fps else 0.0
            if time < start - 1e-6:
                continue
            if end is not None and time >= end:
                return
            in_range += 1
            if (in_range - 1) % every:
                continue
            if rotation is None:
                rotation = self._rotation(frame)
            image = frame.to_ndarray(format="rgb24")  # (h, w, 3) as stored
            if rotation:
                image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))  # counter-clockwise turns
            yield Frame(index=index, time=time, image=image)
            taken += 1
            if max_frames is not None and taken >= max_frames:
                return
        if self.declared_frames and index + 1 < self.declared_frames - max(1, self.declared_frames // 50):
            self.problem = (f"{self.path}: ends at frame {index + 1} of the {self.declared_frames} its "
                            f"header declares (truncated?); the {index + 1} frame(s) decoded are kept")

    def _rotation(self, frame) -> int:
        angle = _rotation_of(frame, self._stream)
        if angle % 90:
            self.notes.append(f"rotation of {angle} degrees not applied (not a multiple of 90)")
            return 0
        angle %= 360
        if angle:
            self.notes.append(f"rotated {angle} degrees counter-clockwise, as its rotation metadata says")
        return angle


def _reason(e: BaseException) -> str:
    # FFmpeg's errors read "[Errno 1094995529] Invalid data found when processing input: 'file'"
    text = getattr(e, "strerror", None) or str(e)
    return str(text).splitlines()[0] if text else type(e).__name__
