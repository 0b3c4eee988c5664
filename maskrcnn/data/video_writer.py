"""Writing a video of frames (overlays) with PyAV, atomically.

Shapes: a frame is (H, W, 3) uint8 RGB; every frame of one video has the same H x W.

The codec is H.264 (libx264, CRF 20) when PyAV's build has it, MPEG-4 part 2 otherwise (the pip wheels
of some versions leave x264 out), both in yuv420p, which players expect and which needs an even width
and height: an odd one is padded with a black row or column at the bottom / right (``notes`` says so;
nothing of the picture is cut). Frames go to a hidden temporary file in the target's folder
(``.NAME.*.tmp``), renamed over ``path`` by ``close`` (atomic, as ``io_utils`` writes), so a reader never
sees half a video; ``discard`` removes it instead. A frame that cannot be written (the encoder's or the
muxer's error, a full disk, a frame of another size) removes it at once and raises ``VideoWriteError``
naming ``path``; ``close`` then writes nothing: an overlay whose encoder failed part-way is never renamed
to its final name, where a later run would take it for a whole one (or for a video to predict).

Timing: ``write(image, time=t)`` places the frame at ``t`` seconds from the first one (the source's own
timestamps: a variable-frame-rate video keeps its timing, and so lasts as long as the source); without
``time`` frames follow each other at ``fps``. The stream's time base is ``TIME_BASE`` (1/60000 s: exact
for 24, 25, 30, 50, 60 and 30000/1001 fps and within MPEG-4 part 2's limit of 65535); each frame lasts
until the next one, the last until ``close(end=t)`` (the source's end: an overlay of every N-th frame
ends where its source does) or else as long as the one before it. No B-frames (``max_b_frames = 0``):
frames are stored in the order shown, so the muxer's lengths and the video's duration follow the frame times.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from maskrcnn.data.video import import_av
from maskrcnn.io_utils import create_temp_file, replace_durably

__all__ = ["TIME_BASE", "VideoWriteError", "VideoWriter"]

TIME_BASE = Fraction(1, 60000)


class VideoWriteError(RuntimeError):
    """A frame could not be written; the message names the file (removed) and the reason."""


def _pick_codec(av) -> str:
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - UnknownCodecError's name and module differ across PyAV versions
        return "mpeg4"


class VideoWriter:
    """Frames -> ``path`` (an .mp4), at their ``time`` or else ``fps`` frames a second (the nominal rate:
    also what sets MPEG-4's bit rate). The size is the first frame's."""

    def __init__(self, path: Union[str, os.PathLike], *, fps: Fraction):
        self._av = import_av()
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(65535)  # MPEG-4 part 2 refuses larger time bases
        self.codec = _pick_codec(self._av)
        self.notes: List[str] = []
        self.frames = 0
        fd, self._tmp = create_temp_file(self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        self._container = self._av.open(self._tmp, "w", format="mp4")  # the .tmp name says no format
        self._stream = None
        self._last_pts: Optional[int] = None
        self._held: Optional[tuple] = None  # (image, pts): the last frame, encoded once its duration is known
        self._durations: dict = {}  # pts -> duration of the frames in the encoder
        self._step = max(1, round(1 / (self.fps * TIME_BASE)))  # one frame at fps, in TIME_BASE units
        self._failed: Optional[str] = None  # why a write failed: the file is gone, close writes nothing

    def _open_stream(self, height: int, width: int) -> None:
        options = {"crf": "20", "preset": "veryfast"} if self.codec == "libx264" else {}
        stream = self._container.add_stream(self.codec, rate=self.fps, options=options)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = TIME_BASE
        # no B-frames: with them (x264's default) packets come out of order and the MP4 muxer takes their
        # lengths from made-up decode times, so a variable-rate overlay's header said it was far shorter
        # than it plays (0.9 s for frames at 0 .. 1.6 s); without, decode order is display order
        stream.codec_context.max_b_frames = 0
        if self.codec != "libx264":  # the default 200 kbit/s smears masks: about 4 bits a pixel a second
            stream.bit_rate = max(1_000_000, int(4 * stream.width * stream.height * float(self.fps) / 10))
        if (width % 2, height % 2) != (0, 0):
            self.notes.append(f"padded {width}x{height} to {stream.width}x{stream.height} with black "
                              "(H.264 / MPEG-4 in yuv420p need an even width and height)")
        self._stream = stream

    def write(self, image: np.ndarray, *, time: Optional[float] = None) -> None:
        """``image`` (H, W, 3) at ``time``; on any error the file is removed and ``VideoWriteError`` raised
        (module docstring). A Ctrl-C is no failure of the file: it stays for ``close`` to finish."""
        if self._failed is not None:
            raise VideoWriteError(f"{self.path}: not written: a frame before failed ({self._failed})")
        try:
            self._write(image, time)
        except Exception as e:  # noqa: BLE001 - FFmpeg's errors are not all OSError / ValueError (ExternalError)
            self._failed = _reason(e)
            self.discard()
            what = "its encoder failed" if isinstance(e, self._av.error.FFmpegError) else "writing it failed"
            raise VideoWriteError(f"{self.path}: {what} ({self._failed}); removed") from e

    def _write(self, image: np.ndarray, time: Optional[float]) -> None:
        height, width = image.shape[:2]  # (H, W, 3)
        if self._stream is None:
            self._open_stream(height, width)
        stream = self._stream
        if (height, width) != (stream.height, stream.width):  # odd size: pad bottom / right
            if not (0 <= stream.height - height <= 1 and 0 <= stream.width - width <= 1):
                raise ValueError(f"a frame of {width}x{height} in a video of {stream.width}x{stream.height}")
            padded = np.zeros((stream.height, stream.width, 3), np.uint8)
            padded[:height, :width] = image
            image = padded
        if time is not None:
            pts = round(time / TIME_BASE)
        else:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        if self._last_pts is not None:
            pts = max(pts, self._last_pts + 1)  # timestamps must increase
            self._step = pts - self._last_pts
        self._last_pts = pts
        # held back one frame: its duration (until the next one's time) is known only then, and the muxer
        # takes the video's length from the durations
        self._encode_held(until=pts)
        self._held = (np.ascontiguousarray(image), pts)
        self.frames += 1

    def _encode_held(self, *, until: int) -> None:
        if self._held is None:
            return
        image, pts = self._held
        self._held = None
        frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, TIME_BASE
        self._durations[pts] = until - pts
        self._mux(self._stream.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:  # encoders leave the duration unset: the muxer would take the video shorter
            packet.duration = self._durations.pop(packet.pts, packet.duration)
            self._container.mux(packet)

    def close(self, *, end: Optional[float] = None, to: Optional[Union[str, os.PathLike]] = None
              ) -> Optional[Path]:
        """Flush the encoder and rename the file into place (``to``, in the same folder, else ``path``);
        the file's path, None (and no file) without a frame. ``end``: seconds (on ``write``'s clock) the
        last frame shows until; None: as long as the one before it. On any failure (the encoder, a full
        disk, the rename, Ctrl-C) the temporary file is removed and the error raised."""
        target = self.path if to is None else Path(to)
        if self._failed is not None:  # removed when the write failed: what was written is no whole video
            return None
        if self._stream is None:
            self.discard()
            return None
        until = self._last_pts + self._step if end is None else round(end / TIME_BASE)
        try:
            self._encode_held(until=max(until, self._last_pts + 1))  # a frame lasts at least one tick
            self._mux(self._stream.encode())  # the frames the encoder still holds
            self._container.close()
            # the rename too: a folder (or a file on another device) at ``path`` left the hidden temporary
            # file, a whole encoded video, behind
            replace_durably(self._tmp, target)
        except BaseException:
            self.discard()
            raise
        return target

    def discard(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - already failing; the file goes anyway
            pass
        Path(self._tmp).unlink(missing_ok=True)


def _reason(e: BaseException) -> str:
    # FFmpeg's errors read "[Errno 542398533] Generic error in an external library": the words only
    text = getattr(e, "strerror", None) or str(e)
    return str(text).splitlines()[0] if text else type(e).__name__
