"""Writing a video of frames (overlays) with PyAV, atomically.

Shapes: a frame is (H, W, 3) uint8 RGB; every frame of one video has the same H x W.

The codec is H.264 (libx264, CRF 20) when PyAV's build has it, MPEG-4 part 2 otherwise (the pip wheels
of some versions leave x264 out), both in yuv420p, which players expect and which needs an even width
and height: an odd one is padded with a black row or column at the bottom / right (``notes`` says so;
nothing of the picture is cut). Frames go to a hidden temporary file in the target's folder
(``.NAME.*.tmp``), renamed over ``path`` by ``close`` (atomic, as ``io_utils`` writes), so a reader never
sees half a video; ``discard`` removes it instead.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from maskrcnn.data.video import import_av
from maskrcnn.io_utils import create_temp_file, replace_durably

__all__ = ["VideoWriter"]


def _pick_codec(av) -> str:
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - UnknownCodecError's name and module differ across PyAV versions
        return "mpeg4"


class VideoWriter:
    """Frames -> ``path`` (an .mp4), at ``fps`` frames a second. The size is the first frame's."""

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

    def _open_stream(self, height: int, width: int) -> None:
        options = {"crf": "20", "preset": "veryfast"} if self.codec == "libx264" else {}
        stream = self._container.add_stream(self.codec, rate=self.fps, options=options)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        if self.codec != "libx264":  # the default 200 kbit/s smears masks: about 4 bits a pixel a second
            stream.bit_rate = max(1_000_000, int(4 * stream.width * stream.height * float(self.fps) / 10))
        if (width % 2, height % 2) != (0, 0):
            self.notes.append(f"padded {width}x{height} to {stream.width}x{stream.height} with black "
                              "(H.264 / MPEG-4 in yuv420p need an even width and height)")
        self._stream = stream

    def write(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]  # (H, W, 3)
        if self._stream is None:
            self._open_stream(height, width)
        stream = self._stream
        if (height, width) != (stream.height, stream.width):  # odd size: pad bottom / right
            if not (0 <= stream.height - height <= 1 and 0 <= stream.width - width <= 1):
                raise ValueError(f"{self.path}: frame of {width}x{height} in a video of "
                                 f"{stream.width}x{stream.height}")
            padded = np.zeros((stream.height, stream.width, 3), np.uint8)
            padded[:height, :width] = image
            image = padded
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames  # in frames: the stream's time base is 1 / fps
        for packet in stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Optional[Path]:
        """Flush the encoder and rename the file into place; None (and no file) without a frame."""
        if self._stream is None:
            self.discard()
            return None
        try:
            for packet in self._stream.encode():  # the frames the encoder still holds
                self._container.mux(packet)
            self._container.close()
        except BaseException:
            self.discard()
            raise
        replace_durably(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - already failing; the file goes anyway
            pass
        Path(self._tmp).unlink(missing_ok=True)
