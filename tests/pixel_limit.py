"""Pillow's pixel limit in tests: a small limit for one test, a file over it beside a broken one, and the
line the commands print about the limit (``data.images.too_large_line``)."""

import numpy as np
from PIL import Image

from maskrcnn.data.images import MAX_PIXELS_ENV


def small_pixel_limit(monkeypatch, pixels: int = 2000) -> None:
    """Pillow refuses images over 2 x ``pixels`` (its own rule, which the library follows) for this test;
    the library's environment setting unset."""
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels)


def add_too_large_and_broken(folder, side: int):
    """``folder`` with big.png (side x side, black) and broken.png (not a PNG) added; returns it."""
    Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(folder / "big.png")
    (folder / "broken.png").write_text("not a png")
    return folder


def limit_line(count: int, megapixels: str) -> str:
    return (f"{count} image(s) over the limit of {megapixels} MP (image_too_large): raise it with the "
            f"environment variable {MAX_PIXELS_ENV}")
