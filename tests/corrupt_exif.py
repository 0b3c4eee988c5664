"""A JPEG whose EXIF block is broken in a way Pillow warns about ("Corrupt EXIF data") but still decodes:
the image, its orientation tag and then four bytes of the EXIF header overwritten."""

import io

import numpy as np
from PIL import Image


def corrupt_exif_jpeg_bytes(gray: np.ndarray) -> bytes:
    """``gray`` (H, W) values 0..255 as an RGB JPEG with an orientation tag, its EXIF header made corrupt."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the header is read, and warned about, before the pixels
    Image.fromarray(gray.astype(np.uint8)).convert("RGB").save(buffer, "JPEG", exif=exif)
    data = buffer.getvalue()
    start = data.find(b"Exif\x00\x00")
    return data[:start + 10] + b"\xff" * 4 + data[start + 14:]
