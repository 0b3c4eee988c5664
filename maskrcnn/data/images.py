"""Reading image files into the model's input format.

Shapes: an image is (3, H, W) float32 RGB in [0, 1] (H rows, W columns, after EXIF orientation).

Every PIL mode is accepted: 8-bit (1, L, LA, P, RGB, RGBA, CMYK, YCbCr, ...), 16-bit grayscale (I;16*),
32-bit integer (I) and float (F). Alpha is dropped (as PIL's ``convert("RGB")``, torchvision and
detectron2 do), so that a PNG with transparency gives the same colours as elsewhere. Failures raise
``ImageReadError`` naming the file and the reason, never a bare PIL exception (a 0-byte file: "empty
file (0 bytes)"). EXIF orientation is applied in one place, ``exif_oriented``, which the Predictor and
``draw_instances`` also apply to PIL images handed to them: a photo is the same pixels however it comes.

Multi-frame files (animated GIF, APNG or WebP, multi-page TIFF): the first frame is the image, and a
``MultiFrameWarning`` names the file and the number of frames left out (the rule in the README's "What
happens with bad input"); split such a file into one file per frame to use every frame. MPO JPEGs (the
photo plus its preview or depth map, as phones and cameras write them) are read as the photo, quietly.

Image size: a file of more than ``max_image_pixels()`` pixels (PIL's decompression-bomb limit, 178.9 MP,
twice ``PIL.Image.MAX_IMAGE_PIXELS``) is refused from its header, before any pixel is decoded, in one line
naming the file, its megapixels and the way to raise the limit (``ImageTooLargeError``, PIL's
DecompressionBombError converted). PIL's warning above 89 MP, which names no file, is silenced around our
opens. The library only reads PIL's setting: a program raises ``Image.MAX_IMAGE_PIXELS`` itself; the
``maskrcnn`` command sets it once from the environment variable ``MASKRCNN_MAX_IMAGE_PIXELS``
(``apply_max_pixels_env``), for whole-slide scans and aerial panoramas.

Code that reads pixels its own way (the dataset converters' mask and index PNGs, LabelMe's embedded
images) opens them through ``open_image``, which refuses and words them as ``read_image`` does.

An image reported missing whose name the file-system encoding cannot spell (PYTHONUTF8=0 LC_ALL=C: ASCII)
says so (``unnameable_note``), with the fix: the file may well be there.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, List, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from maskrcnn.data.folders import is_symlink_loop, link_target, list_folder
from maskrcnn.thread_warnings import caught_here, ignoring

__all__ = [
    "HALF_TURNS",
    "as_float_image",
    "size_cannot_tell",
    "drawn_on_stored_pixels",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "ImageTooLargeError",
    "MultiFrameWarning",
    "TOO_LARGE",
    "decode_image_bytes",
    "exif_oriented",
    "image_header",
    "image_size",
    "turned_size",
    "undo_orientation",
    "unnameable_note",
    "list_images",
    "list_images_and_passed_over",
    "max_image_pixels",
    "open_image",
    "read_image",
    "read_image_and_orientation",
    "reason_counts",
    "skip_reason",
    "too_large_line",
]

# A folder's files with these extensions are read, or named when they cannot be: .jfif is a JPEG (Windows
# saves web images so), .heic / .heif (phones' photos) and .avif need a Pillow plugin or build, and leaving
# them out of a folder's listing silently would hide a phone's whole camera roll.
# A float image may stray this far outside [0, 1] (a bicubic resize overshoots a little) and is used as
# given; further out it is on another scale (0..255, or normalised by a mean and std), which the model
# would silently misread (an image on the 0..255 scale looks to it like a white frame) and a drawing
# would show as a white frame: the Predictor and draw_instances refuse it.
FLOAT_RANGE_SLACK = 0.1

def check_float_range(image: torch.Tensor, where: str) -> None:
    """Refuse a float image holding NaN or infinity, or values on another scale than [0, 1] (one min/max):
    the Predictor's check (the model's ``preprocess`` checks the same with ``float_range_problem``)."""
    lo, hi = (float(v) for v in torch.aminmax(image))  # NaN anywhere makes both NaN
    problem = float_range_problem(lo, hi, where)
    if problem:
        raise ValueError(problem)


def float_range_problem(lo: float, hi: float, where: str):
    """Why a float image whose values span [lo, hi] is not RGB in [0, 1] (None when it is)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{where}: image holds NaN or infinite values"
    if lo < -FLOAT_RANGE_SLACK or hi > 1.0 + FLOAT_RANGE_SLACK:
        return (f"{where}: float image values span [{lo:.4g}, {hi:.4g}], expected RGB in [0, 1]: divide "
                "0..255 values by 255 (or pass uint8); undo any mean/std normalisation (the model normalises "
                "itself)")
    return None


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".ppm", ".pgm", ".pbm", ".tga", ".ico", ".avif", ".heic", ".heif")
_NEEDS_PLUGIN = {".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF"}


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and the reason. ``reason``: the key a
    skipped image is counted under in the dataset and command summaries."""

    reason = "unreadable_image"


class ImageTooLargeError(ImageReadError):
    """An image has more pixels than allowed (a limit given by the caller, or PIL's bomb limit). Counted
    apart from unreadable files: the file is good, and ``too_large_line`` says how to read it."""

    reason = "image_too_large"

    def __init__(self, message: str, *, caller_limit: Optional[int] = None):
        super().__init__(message)
        self.caller_limit = caller_limit  # the caller's max_pixels the message names; None: PIL's limit


class MultiFrameWarning(UserWarning):
    """A multi-frame file was read as its first frame only."""


def say_if_dark_16bit(peak: int, name: str, *, what: str, fix_8bit: str, stacklevel: int) -> None:
    """One rule for every 16-bit input (a file, a PIL image, a numpy or torch uint16 array): it is read
    on the 16-bit scale whatever its brightest value (a dark 16-bit picture must not be brightened by a
    guess), and a brightest value of at most 4095 (8-, 10- or 12-bit data stored in 16 bits: microscopy,
    industrial and medical cameras, an 8-bit picture widened without scaling) is said, as the picture
    then looks almost black to the model. ``fix_8bit``: how this kind of input passes 8-bit values."""
    if peak <= 0 or peak > 4095:
        return
    if peak <= 255:
        advice = f"{fix_8bit} for 8-bit values"
    else:
        advice = ("if it holds 10- or 12-bit data, scale it to 16 bits (multiply by 64 or 16) or "
                  f"{fix_8bit} for 8-bit values")
    warnings.warn(f"{name}: {what} with values 0..{peak} read as 16-bit (0..65535), so it looks dark "
                  f"(0 detections are likely); {advice}", stacklevel=stacklevel)


def check_pil_open(img: Image.Image, name: str) -> None:
    """ImageReadError naming ``name`` when ``img``'s pixels can no longer be read: opened lazily in a
    ``with Image.open(f) as im:`` block and used after it (its file closed before the pixels were read:
    Pillow fails with an AssertionError without a message), or ``im.close()`` called. Reads nothing of
    an image that is open or loaded: loading first would change when its EXIF orientation is read
    (``_orientation_of``)."""
    closed = ImageReadError(f"{name}: PIL image is closed (im.close() was called): pass it before closing "
                            "it, a copy (im.copy()), or the path")
    if getattr(img, "tile", None) and getattr(img, "fp", True) is None:  # pixels still to read, file gone
        try:
            img.load()  # a plugin that reads without ``fp`` still can
        except ValueError as e:
            if "closed image" in str(e):
                raise closed from None
            raise ImageReadError(f"{name}: PIL image's file is closed before its pixels were read ({e})"
                                 ) from None
        except (AssertionError, AttributeError, OSError):
            raise ImageReadError(f"{name}: PIL image's file is closed before its pixels were read (used "
                                 "after its 'with Image.open(...)' block?): call im.load() or im.copy() "
                                 "inside the block, or pass the path") from None
        return
    try:
        img.im  # noqa: B018 - a closed image's pixels: Pillow raises "Operation on closed image"
    except ValueError as e:
        if "closed image" in str(e):
            raise closed from None
    except AssertionError:
        pass  # no pixels yet, its file open: read by the conversion as before


def _to_rgb_array(img: Image.Image, name: str = "image", *, in_memory: bool = False,
                  keep_uint8: bool = False) -> np.ndarray:
    """(H, W, 3) float32 from any PIL mode, in [0, 1] except as said below; ValueError naming ``name``
    for values that are no image. ``keep_uint8``: an 8-bit image is returned as its uint8 values
    (``as_float_image`` makes them the float32 this returns otherwise, bit for bit).

    High bit depth grayscale is scaled here (PIL's convert("RGB") would clip at 255): "I;16*" and "I" (the
    mode of 16-bit PNGs in some Pillow versions and of 16-bit data converted) by 65535 whatever their
    largest value (a dark 16-bit image read by its maximum came out 257 times brighter), values outside
    0..65535 refused. Float ("F"): handed over in memory (``in_memory``: a PIL image given to the
    Predictor) the floats are returned as they are, for the numpy rules (NaN, infinity or values off
    [0, 1] refused by ``check_float_range``); from a file the same range rule is applied here
    (``float_file_array``), so that ``predictor([Image.open(f)])`` and ``predictor([f])`` agree; only
    NaN and infinity read as 0 from a file (said once, in a warning naming the file; an image all NaN is
    refused)."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        array = np.asarray(img).astype(np.float32)  # (H, W)
        if mode != "F":
            if array.size and (array.min() < 0 or array.max() > 65535):
                raise ImageReadError(f"{name}: integer image (mode {mode}) values span [{array.min():.0f}, "
                                 f"{array.max():.0f}], outside the 16-bit scale 0..65535")
            if array.size:
                what, fix = (("PIL image", "convert it to L") if in_memory else
                             ("image file", "save it as 8-bit (L or RGB)"))
                say_if_dark_16bit(int(array.max()), name, what=f"{what} of mode {mode}", fix_8bit=fix,
                                  stacklevel=5)
            array = array / 65535.0
        elif in_memory:
            return np.repeat(array[:, :, None], 3, axis=2)  # the Predictor checks the range (numpy rules)
        else:
            array = _float_file_array(array, name)
        return np.repeat(array[:, :, None], 3, axis=2)
    if mode == "La":  # premultiplied grey + alpha: Pillow converts it to "LA" only (undoing the alpha)
        img = img.convert("LA")
    if img.mode != "RGB":
        img = img.convert("RGB")  # palette, gray, alpha, CMYK, YCbCr, bilevel ...
    if keep_uint8:
        return np.asarray(img, dtype=np.uint8)
    return np.asarray(img, dtype=np.float32) / 255.0


def as_float_image(image: torch.Tensor) -> torch.Tensor:
    """A (3, H, W) image of ``decode_image_bytes(..., keep_uint8=True)`` as the float32 in [0, 1] it
    would have been decoded to (the same division by 255 in float32: equal bit for bit); a float
    image as it is."""
    return image.float() / 255.0 if image.dtype == torch.uint8 else image


def _float_file_array(array: np.ndarray, name: str) -> np.ndarray:
    """A float file's (H, W) values: NaN as 0 (said once; all NaN refused), then ``float_file_array``'s
    range rule. No numpy warning: NaN is found first and left out of the maximum."""
    bad = ~np.isfinite(array)  # NaN and +-infinity: neither is a brightness
    n_bad = int(bad.sum())
    if n_bad:
        if n_bad == array.size:
            raise ImageReadError(f"{name}: every pixel is NaN or infinite (not a number): no image to read")
        warnings.warn(f"{name}: {n_bad} of {array.size} pixels are NaN or infinite (not a number); read as "
                      "0 (black)", stacklevel=4)
        array = np.where(bad, 0.0, array).astype(np.float32)
    return float_file_array(array, name)  # the range of the finite values only


def float_file_array(array: np.ndarray, name: str) -> np.ndarray:
    """Finite (H, W) values of a float ("F") image file, checked by the Predictor's rule for float
    images (``float_range_problem``: [0, 1] give or take ``FLOAT_RANGE_SLACK``, used as given), so that
    ``predictor([f])`` and ``predictor([Image.open(f)])`` agree; ImageReadError naming ``name`` and the
    span otherwise, in the Predictor's words. A mean-subtracted image (negatives), one on a 16-bit scale
    (ImageJ, scientific cameras) or on 0..255 was clipped or divided by 255 silently when read from a file
    (a white or black frame, 0 detections without a word) while the same PIL image was refused."""
    if array.size:
        lo, hi = float(array.min()), float(array.max())
        if float_range_problem(lo, hi, name):  # finite here; the advice is for a file, not an array
            raise ImageReadError(f"{name}: float image values span [{lo:.4g}, {hi:.4g}], expected RGB in "
                                 "[0, 1]: save it as 8-bit (L or RGB), or scale its values to 0..1")
    return array


# PIL's decompression-bomb limit: DecompressionBombError above twice Image.MAX_IMAGE_PIXELS. The library
# never writes Image.MAX_IMAGE_PIXELS (a process-wide setting); the maskrcnn command sets it once, from
# this environment variable (``apply_max_pixels_env``).
MAX_PIXELS_ENV = "MASKRCNN_MAX_IMAGE_PIXELS"


def parse_max_pixels(value: str) -> Optional[int]:
    """``MASKRCNN_MAX_IMAGE_PIXELS``'s value -> a number of pixels, None for "0" / "none" (no limit);
    "1e9" and "1_000_000_000" are accepted. ValueError, in one line, for anything else."""
    text = value.strip()
    if text.lower() in ("0", "none"):
        return None
    try:
        number = float(text.replace("_", ""))
    except ValueError:
        number = -1.0
    if not (1 <= number < float("inf") and number.is_integer()):  # NaN, inf, fractions, negatives
        raise ValueError(f"{MAX_PIXELS_ENV}={value!r}: expected a whole number of pixels "
                         "(e.g. 1000000000 or 1e9), or 0 for no limit")
    return int(number)


def apply_max_pixels_env(environ=None) -> None:
    """For the program that owns the process (``maskrcnn`` command): ``Image.MAX_IMAGE_PIXELS`` from
    ``MASKRCNN_MAX_IMAGE_PIXELS`` when set (PIL refuses above twice it: the variable is the refusal
    limit, so half of it is stored); ValueError for a bad value. Library users set PIL's own setting."""
    value = (os.environ if environ is None else environ).get(MAX_PIXELS_ENV, "").strip()
    if value:
        limit = parse_max_pixels(value)
        Image.MAX_IMAGE_PIXELS = None if limit is None else max(1, limit // 2)


def max_image_pixels() -> Optional[int]:
    """The most pixels (width x height) an image file may have to be read: PIL's error limit, twice
    ``Image.MAX_IMAGE_PIXELS`` (178956970 by default; None when PIL's limit is turned off)."""
    pil_limit = Image.MAX_IMAGE_PIXELS
    return None if pil_limit is None else 2 * int(pil_limit)


# PIL's warnings already said for a file: (path, size, mtime, text), the last _SAID_LIMIT. predict and
# show-data read a file's header (its size) and then its pixels, and PIL parses a corrupt EXIF block at
# both: its "Corrupt EXIF data" was printed twice for one file. Only a file's, keyed by its size and time
# (an upload's bytes have no identity: each upload says its own).
_SAID_PIL: dict = {}
_SAID_LIMIT = 256
_SAID_LOCK = threading.Lock()


def _said_before(source, text: str) -> bool:
    """Whether PIL's warning ``text`` was said already for the file ``source`` (unchanged since); notes
    it as said. False for a source that is no path."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    try:
        st = os.stat(source)
    except OSError:
        return False
    key = (os.fspath(source), st.st_size, st.st_mtime_ns, text)
    with _SAID_LOCK:
        if key in _SAID_PIL:
            return True
        _SAID_PIL[key] = None
        while len(_SAID_PIL) > _SAID_LIMIT:
            del _SAID_PIL[next(iter(_SAID_PIL))]  # the oldest (dicts keep insertion order)
    return False


@contextmanager
def _pil_open_quiet(name: str, source=None):
    """PIL's warnings in the block caught on this thread (its nameless DecompressionBombWarning, above
    89 MP, is kept from firing by a filter around the open and load, ``_no_bomb_warning``: our own check
    names the file); yields the limit (``max_image_pixels``). PIL's setting is only read. ``name``: PIL's
    other warnings in the block ("Corrupt EXIF data", printed with no file named) are said again naming
    it, once per file (``source``, a path: ``_said_before``); any other warning is passed on as it was
    raised.

    Thread-safe (serve decodes uploads on several threads at once): the warnings are caught on this
    thread only (``thread_warnings``); a ``catch_warnings`` around the whole decode, overlapping on two
    threads, left every later warning of the process in a dead list, never printed."""
    caught: list = []
    try:
        with caught_here() as caught:
            yield max_image_pixels()
    finally:  # also when the file is then refused: its warning said why
        said = set()  # PIL parses a corrupt EXIF block twice (header, orientation): said once per file
        for w in caught:
            if issubclass(w.category, Image.DecompressionBombWarning):
                continue
            key = (w.category, str(w.message).strip())
            if key in said:
                continue
            said.add(key)
            if _is_pil_file(w.filename):
                if _said_before(source, key[1]):
                    continue
                warnings.warn(f"{name}: {str(w.message).strip()} (PIL)", w.category, stacklevel=4)
            else:  # ours (a multi-frame file, an odd mode) or another library's, where it was raised
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


@contextmanager
def _no_bomb_warning(pixels: Optional[int] = None):
    """PIL's DecompressionBombWarning (above ``Image.MAX_IMAGE_PIXELS``, 89 MP) ignored in the block, by a
    filter: ``caught_here`` only catches what the filters let through, so under an "error" filter (``-W
    error``, a test suite's ``filterwarnings = error``) PIL's warning was an exception out of
    ``Image.open`` and an 89-179 MP image crashed predict (our own check names the file instead).
    ``pixels``: the image's size when known (a load): below PIL's warning limit nothing is done, so that
    decoding stays lock-free. Under ``LOCK`` (``thread_warnings.ignoring``), so that the ``catch_warnings``
    block lies wholly inside or outside other threads' ``caught_here`` swaps; hold it only around short
    calls (a header parse)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or (pixels is not None and pixels <= limit):
        yield
        return
    with ignoring(Image.DecompressionBombWarning):
        yield


def _open_pil(source) -> Image.Image:
    """``Image.open(source)``, a header parse, without PIL's bomb warning (``_no_bomb_warning``)."""
    with _no_bomb_warning():
        return Image.open(source)


def _load_pil(img: Image.Image) -> None:
    """``img.load()``; PIL warns again at the load of some formats (TIFF, GIF frames) when the image is over
    its warning limit: ignored for those images only (the lock is held only for them)."""
    with _no_bomb_warning(img.width * img.height):
        img.load()


def _is_pil_file(filename: str) -> bool:
    """Whether a warning's file is one of Pillow's modules."""
    return bool(filename) and os.path.dirname(os.path.abspath(filename)) == os.path.dirname(Image.__file__)


def _bomb_error(name: str, error: Exception) -> ImageTooLargeError:
    """PIL's DecompressionBombError -> ImageTooLargeError naming the file and the limit PIL has."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{_mp(int(found.group(1)))} > " if found else ""
    limit = max_image_pixels()
    return ImageTooLargeError(
        f"{name}: image too large ({size}limit {_mp(limit) if limit else 'none'}; {_RAISE_HINT})")


_RAISE_HINT = (f"raise it with the environment variable {MAX_PIXELS_ENV} (maskrcnn commands), "
               "or PIL.Image.MAX_IMAGE_PIXELS in a program")


TOO_LARGE = ImageTooLargeError.reason


def skip_reason(error, other: str = "prediction_failed") -> str:
    """The key an image left out for ``error`` is counted under: an ``ImageReadError``'s ``reason``
    (``image_too_large``, ``unreadable_image``, a subclass's own), ``unreadable_image`` for an OSError
    reading it, ``too_many_tiles`` for ``engine.tiling.TooManyTiles`` (a refusal of the image's tile
    settings), ``other`` for anything else (the model failing on the image: an error or the message
    ``predict_files_skipping`` reports). Only this library's reasons: an OSError's or UnicodeError's own
    ``reason`` attribute ("invalid start byte") is no key of the summaries."""
    from maskrcnn.engine.tiling import TooManyTiles

    if isinstance(error, (ImageReadError, TooManyTiles)):
        return error.reason
    return ImageReadError.reason if isinstance(error, OSError) else other


def reason_counts(counts) -> str:
    """``counts`` ({reason: images}) as one listing, by reason: "1 image_too_large, 2 unreadable_image";
    "" for none. The one form every summary counts skipped records in."""
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def too_large_line(counts) -> Optional[str]:
    """The line said once beside ``counts`` ({reason: images}) when some images are over the pixel limit
    (``image_too_large``): the limit now in force and how to raise it; None when there are none. Unlike
    an unreadable file, such an image is good: a limit raised for the run reads it."""
    count = counts.get(TOO_LARGE, 0)
    if not count:
        return None
    limit = max_image_pixels()
    limit = f"the limit of {_mp(limit)}" if limit else "the limit"
    return (f"{count} image(s) over {limit} (image_too_large): {_RAISE_HINT}, e.g. {MAX_PIXELS_ENV}="
            "1000000000 (0: no limit); README, \"What happens with bad input\"")


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.4g} MP"  # 225 MP, 179 MP; a test's 400 pixels 0.0004 MP


def check_size(width: int, height: int, name: str, limit: Optional[int]) -> None:
    """ImageTooLargeError naming ``name`` when width x height is over ``limit`` (None: no limit)."""
    if limit is not None and width * height > limit:
        raise ImageTooLargeError(
            f"{name}: image too large ({width}x{height} = {_mp(width * height)} > limit {_mp(limit)}; "
            f"{_RAISE_HINT})")


def open_image(source: Union[str, os.PathLike, bytes], name: str, *, decode: bool = True) -> Image.Image:
    """A PIL image of a file or of encoded bytes, for code that reads the pixels its own way (the dataset
    converters' mask and index PNGs, LabelMe's embedded images): the one open they go through, so that
    every one refuses what ``read_image`` refuses, in its words. ``decode``: the pixels are loaded here
    (PIL decodes lazily, and a truncated file fails only then); False: the header only (size, mode,
    format). Use it in a ``with`` block; the image is closed when the block ends.

    Every failure is an ``ImageReadError`` naming ``name``: over ``max_image_pixels()`` an
    ``ImageTooLargeError`` from the header (PIL's DecompressionBombError, which is no OSError, escaped the
    converters' own catches and ended the whole conversion with a traceback), a 0-byte source "empty
    file (0 bytes)", anything PIL cannot identify or decode "not an image file PIL can identify" /
    "cannot decode image (...)"."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageReadError(f"{name}: empty file (0 bytes)")
        source = io.BytesIO(source)
    elif _is_empty_file(source):
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    with _pil_open_quiet(name, source) as limit, _as_read_errors(name, source):
        img = _open_pil(source)
        try:
            check_size(img.width, img.height, name, limit)
            if decode:
                _load_pil(img)
        except BaseException:
            img.close()
            raise
    return img


@contextmanager
def _as_read_errors(name: str, source):
    """PIL's exceptions raised in the block -> ImageReadError naming ``name`` (``open_image``'s rules)."""
    try:
        yield
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise _unidentified_error(name, source) from None
    except Image.DecompressionBombError as e:
        raise _bomb_error(name, e) from None
    except MemoryError as e:  # not the pixel limit (there may be none): unreadable, no limit hint
        raise ImageReadError(f"{name}: ran out of memory decoding the image ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(f"{name}: cannot decode image ({e})") from None


def read_image(path: Union[str, os.PathLike, bytes], *, orient: bool = True) -> torch.Tensor:
    """Read an image file as a (3, H, W) float32 RGB tensor in [0, 1], EXIF orientation applied
    (``orient=False``: the pixels as stored, for a COCO file whose sizes and annotations are those of the
    stored pixels). ``path``: a str or Path, or a file's encoded bytes (``open(f, "rb").read()``, an
    upload), as the Predictor takes them; anything else is a TypeError saying so."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        data = bytes(path)
        if not data:
            raise ImageReadError("image bytes: empty file (0 bytes)")
        return _decode(io.BytesIO(data), "image bytes", orient=orient)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_image takes a file path (str or Path) or an encoded image file's bytes, got "
                        f"{type(path).__name__}; an image already in memory needs no reading: give it to "
                        "the Predictor or draw_instances as it is")
    path = Path(path)
    problem = missing_file_problem(path, pipe_ok=True)
    if problem:
        raise ImageReadError(f"{path}: {problem}")
    return _decode(path, str(path), orient=orient)


def read_image_and_orientation(path: Union[str, os.PathLike]) -> tuple:
    """(``read_image(path)``, the file's EXIF orientation 1..8 that was applied), from one decode: for the
    COCO reader, whose rule for a photo turned 180 degrees or mirrored needs the orientation, without
    opening the file twice. A corrupt EXIF block reads as 1 (the image is used as stored)."""
    path = Path(path)
    problem = missing_file_problem(path, pipe_ok=True)
    if problem:
        raise ImageReadError(f"{path}: {problem}")
    seen: dict = {}
    image = _decode(path, str(path), seen=seen)
    return image, seen.get("orientation", 1)


def missing_file_problem(path: Union[str, os.PathLike], *, pipe_ok: bool = False) -> Optional[str]:
    """Why ``path`` is no file to read, in words ("no such image file", "is a folder, not an image file",
    "is a broken link (to TARGET)", "is a symlink loop", "is not a regular file (a FIFO)"); None when it
    is a regular file (or a link to one), or with ``pipe_ok`` a FIFO: one image named by the caller may
    come through a pipe (``read_image("/dev/fd/63")`` of a shell's ``<(cat photo.png)``), where a folder's
    listing must not wait on one."""
    path = Path(path)
    if path.is_dir():
        return "is a folder, not an image file"
    if path.exists():
        # a FIFO, /dev/null or a link to /dev/zero exists but holds no image: said as what it is (it was
        # "PATH: None" on predict's command line, "not found" in show-data)
        if path.is_file() or (pipe_ok and _file_kind(path) == "a FIFO"):
            return None
        return f"is not a regular file ({_file_kind(path)})"
    if path.is_symlink():
        return "is a symlink loop" if is_symlink_loop(path) else f"is a broken link (to {link_target(path)})"
    return "no such image file"


def _file_kind(path: Path) -> str:
    """What an existing non-regular, non-folder file is, in words ("a FIFO", "a character device")."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a special file"
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((word for test, word in kinds if test(mode)), "a special file")


# EXIF orientations 5..8 turn the picture by a quarter: its height and width swap.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
# EXIF orientations 2..4 mirror it or turn it by a half: its size stays, so the size cannot tell whether a
# tool showed the photo turned or as stored.
HALF_TURNS = (2, 3, 4)


def size_cannot_tell(stored: tuple, orientation: int) -> bool:
    """Whether a photo stored as ``stored`` (H, W) with EXIF ``orientation`` is of one size turned or not,
    so that its record's size cannot tell how its tool showed it: turned 180 degrees or mirrored
    (``HALF_TURNS``), or square and turned by a quarter (EXIF 5..8: its height and width swap to the same)."""
    return orientation in HALF_TURNS or (orientation in _TRANSPOSING_ORIENTATIONS and stored[0] == stored[1])
_EXIF_ORIENTATION = 0x0112
_TIFF_WIDTH, _TIFF_LENGTH = 256, 257  # ImageWidth, ImageLength: a TIFF's size as stored


def image_header(path: Union[str, os.PathLike]) -> tuple:
    """((H, W) as stored, EXIF orientation 1..8) of an image file, from its header only (no pixel is
    decoded; a missing or corrupt EXIF block reads as 1, as ``read_image`` ignores it); ImageReadError
    naming the file when it cannot be read. ``turned_size`` gives the size ``read_image`` returns."""
    if _is_empty_file(path):
        raise ImageReadError(f"{path}: empty file (0 bytes)")  # as read_image says it
    try:
        with _pil_open_quiet(str(path), path) as limit, _open_pil(path) as img:
            width, height = img.size
            check_size(width, height, str(path), limit)
            orientation = _orientation_of(img)  # before any load (a TIFF's is dropped at load)
            if img.format == "TIFF":
                # Recent Pillow turns a TIFF itself (its size is already the turned one): start from the
                # stored size, or a turned TIFF would be turned twice and mismatch read_image's.
                width = img.tag_v2.get(_TIFF_WIDTH, width)
                height = img.tag_v2.get(_TIFF_LENGTH, height)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise _bomb_error(str(path), e) from None
    except UnidentifiedImageError:  # worded as read_image words it (show-data said PIL's own words)
        raise _unidentified_error(str(path), path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: cannot read the image size ({e})") from None
    return (height, width), orientation


def _unidentified_error(name: str, source) -> ImageReadError:
    """The one wording for a file PIL cannot identify (``source``: its path or bytes), for every command:
    with a hint where the format needs a plugin (HEIC) this Pillow lacks. A format it reads (Pillow 11.3+
    reads AVIF itself; pillow-heif registers HEIF) is a damaged file: no plugin would help."""
    kind = _NEEDS_PLUGIN.get(Path(name).suffix.lower()) or _plugin_format_from_bytes(source)
    if kind and _pillow_opens(kind):
        return ImageReadError(f"{name}: cannot decode image (truncated or damaged {kind} file)")
    hint = f" ({kind} needs a Pillow plugin such as pillow-heif, or convert it to JPEG)" if kind else ""
    return ImageReadError(f"{name}: not an image file PIL can identify{hint}")


def _pillow_opens(kind: str) -> bool:
    """Whether this Pillow (with its registered plugins) opens files of ``kind`` (AVIF, HEIC, HEIF)."""
    Image.init()  # the plugins are registered on first use
    return ("AVIF" if kind == "AVIF" else "HEIF") in Image.OPEN


def turned_size(stored: tuple, orientation: int) -> tuple:
    """(H, W) of an image stored as ``stored`` (H, W) once its EXIF ``orientation`` is applied."""
    return tuple(stored[::-1]) if orientation in _TRANSPOSING_ORIENTATIONS else tuple(stored)


def drawn_on_stored_pixels(given: tuple, stored: tuple, orientation: int) -> bool:
    """Whether annotations that give the image size ``given`` (H, W) were drawn on the stored pixels of a
    file stored as ``stored`` with EXIF ``orientation``: ``given`` is the stored size and the turned
    size is not (a tool that showed the file unturned). The one rule of the COCO reader and the
    annotation-tool converters. A photo turned 180 degrees or mirrored (``HALF_TURNS``), or a square one
    turned by a quarter, keeps its size, so its own size cannot tell (``size_cannot_tell``): the COCO
    reader takes the same file's quarter-turned photos as the evidence (``CocoDataset``'s ``exif_frame``)."""
    return tuple(given) == tuple(stored) and turned_size(stored, orientation) != tuple(given)


def image_size(path: Union[str, os.PathLike]) -> tuple:
    """(H, W) of an image file as ``read_image`` returns it (EXIF orientation applied; the size as stored
    is ``image_header``'s), from its header only (no pixel is decoded); ImageReadError naming the file
    when it cannot be read.

    The one definition of an image's size before decoding: the dataset converters and the COCO reader
    (images without a recorded size) both use it."""
    stored, orientation = image_header(path)
    return turned_size(stored, orientation)


def undo_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """(3, H, W) image as ``read_image`` returns it (EXIF ``orientation`` applied) -> the pixels as stored,
    the same as ``read_image(path, orient=False)`` without decoding the file again (each case undoes
    the transpose ``ImageOps.exif_transpose`` made)."""
    hw = (-2, -1)
    undo = {
        2: lambda x: x.flip(-1),  # mirrored left-right
        3: lambda x: x.flip(hw),  # turned 180 degrees
        4: lambda x: x.flip(-2),  # mirrored top-bottom
        5: lambda x: x.transpose(-2, -1),  # transposed: its own inverse
        6: lambda x: torch.rot90(x, 1, hw),  # turned a quarter clockwise: back counter-clockwise
        7: lambda x: x.transpose(-2, -1).flip(hw),  # transversed: its own inverse
        8: lambda x: torch.rot90(x, -1, hw),  # turned a quarter counter-clockwise: back clockwise
    }.get(orientation)
    return image if undo is None else undo(image).contiguous()


def decode_image_bytes(
    data: bytes, *, name: str = "upload", max_pixels: Optional[int] = None, keep_uint8: bool = False
) -> torch.Tensor:
    """Decode an encoded image (the bytes of a JPEG, PNG, ... file) as ``read_image`` does.

    ``keep_uint8``: an 8-bit image comes as (3, H, W) uint8, a quarter of the float32's memory (a server
    holds decoded uploads while they wait for the model); ``as_float_image`` converts it when it is
    needed. Images of more bits (16-bit PNGs, float TIFFs) come as float32 all the same.

    ``max_pixels`` bounds width x height, checked from the header before any pixel is decoded, so that
    a small file that decompresses to a huge image (a decompression bomb) costs nothing; it raises
    ``ImageTooLargeError``. ``max_image_pixels()`` applies too, as to files."""
    if not data:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, max_pixels=max_pixels, keep_uint8=keep_uint8)


# ISO base media files (HEIF, AVIF) start with a box "ftyp" whose major brand names the format; an upload
# or a file without its extension is recognised by it.
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIC", b"heis": "HEIC", b"hevc": "HEIC",
                b"hevx": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


def _plugin_format_from_bytes(source) -> Optional[str]:
    """"HEIC", "HEIF" or "AVIF" when ``source`` (a path or a binary file object) starts as one, else None."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                head = f.read(12)
        else:
            source.seek(0)
            head = source.read(12)
    except OSError:
        return None
    return _FTYP_BRANDS.get(head[8:12]) if head[4:8] == b"ftyp" else None


def exif_oriented(img: Image.Image, name: str = "image", *, stacklevel: int = 2) -> Image.Image:
    """``img`` turned upright as its EXIF orientation tag says (``img`` itself when it has none, or 1).

    The one place the library applies EXIF orientation: files and encoded bytes (``read_image``,
    ``decode_image_bytes``) and PIL images handed to the Predictor or ``draw_instances`` all go through
    it, so that a photo gives the same pixels, hence the same detection coordinates, however it is
    passed. An image turned already (``ImageOps.exif_transpose`` drops the tag) is left as it is. A
    corrupt EXIF block costs a warning naming ``name``, not the image (``stacklevel`` as the caller's
    own ``warnings.warn`` would give it)."""
    try:
        if img.getexif().get(_EXIF_ORIENTATION, 1) in (None, 1):
            return img  # upright already: no copy
        oriented = ImageOps.exif_transpose(img)
    except Exception as e:  # a corrupt EXIF block should not cost the image itself
        warnings.warn(f"{name}: ignoring unreadable EXIF orientation ({e})", stacklevel=stacklevel + 1)
        return img
    return img if oriented is None else oriented


def _orientation_of(img: Image.Image) -> int:
    """``img``'s EXIF orientation 1..8 (1 without one, or with a corrupt EXIF block, as it is then read).
    The one reading of it for the header (``image_header``) and the decode (``_decode``); taken before
    ``load()``: Pillow turns a TIFF itself at load and drops its tag, so read after it a TIFF with EXIF 3
    was "1" in training (read turned) and 3 in evaluation (undone)."""
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return orientation if orientation in range(1, 9) else 1


def _is_empty_file(path) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def _decode(source, name: str, *, max_pixels: Optional[int] = None, orient: bool = True,
            seen: Optional[dict] = None, keep_uint8: bool = False) -> torch.Tensor:
    """A path or binary file object -> (3, H, W) float32; every failure is an ImageReadError naming
    ``name``. ``seen``: given a dict, its "orientation" is set to the file's EXIF orientation (1..8)."""
    try:
        with _pil_open_quiet(name, source) as limit, _open_pil(source) as img:
            # before any pixel is decoded; the caller's bound first (serve's --max-pixels: its message
            # has no hint to raise the library's limit, which would not help)
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageTooLargeError(
                    f"{name}: image of {img.width}x{img.height} = {img.width * img.height} pixels is larger "
                    f"than the limit of {max_pixels} pixels", caller_limit=max_pixels
                )
            check_size(img.width, img.height, name, limit)
            frames = int(getattr(img, "n_frames", 1) or 1)
            # MPO: a phone's or camera's JPEG holding the photo and its own preview, depth or disparity
            # map; the first frame is the whole photo, so a warning on every such photo would mislead.
            if frames > 1 and img.format != "MPO":
                warnings.warn(
                    f"{name}: {frames} frames (animation or pages); using the first, {frames - 1} left out",
                    MultiFrameWarning,
                    stacklevel=3,
                )
            img.seek(0)
            orientation = _orientation_of(img)  # before the load, which drops a TIFF's tag
            _load_pil(img)
            if seen is not None:
                seen["orientation"] = orientation
            # a TIFF turned by Pillow at load (its tag gone): its stored pixels are got back below
            turned_by_pil = orientation != 1 and _orientation_of(img) == 1
            oriented = exif_oriented(img, name, stacklevel=3) if orient else img
            width, height = oriented.size
            if width == 0 or height == 0:
                raise ImageReadError(f"{name}: empty image ({width}x{height})")
            array = _to_rgb_array(oriented, name, keep_uint8=keep_uint8)  # (H, W, 3)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        if isinstance(source, (str, os.PathLike)) and _is_empty_file(source):
            raise ImageReadError(f"{name}: empty file (0 bytes)") from None  # an upload or copy cut short
        raise _unidentified_error(name, source) from None
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        if max_pixels is not None and found and int(found.group(1)) > max_pixels:  # the caller's bound first
            raise ImageTooLargeError(f"{name}: image of {found.group(1)} pixels is larger than the limit of "
                                     f"{max_pixels} pixels", caller_limit=max_pixels) from None
        raise _bomb_error(name, e) from None
    except MemoryError as e:  # not the pixel limit (there may be none): unreadable here, no limit hint
        raise ImageReadError(f"{name}: ran out of memory decoding the image ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{name}: cannot decode image ({e})") from None
    chw = np.ascontiguousarray(array.transpose(2, 0, 1))  # (3, H, W): a copy, but for 1 x W images
    if not chw.flags.writeable:  # read-only PIL pixels (keep_uint8) that needed no copy: torch warns
        chw = chw.copy()
    image = torch.from_numpy(chw)
    return undo_orientation(image, orientation) if turned_by_pil and not orient else image


def list_images(paths: Union[str, os.PathLike, Iterable], *, recursive: bool = False) -> List[Path]:
    """Image files among ``paths`` (files are kept as given, folders are listed: ``data.folders``' rules),
    sorted within each folder. Raises FileNotFoundError naming a path that does not exist."""
    return list_images_and_passed_over(paths, recursive=recursive)[0]


def list_images_and_passed_over(paths: Union[str, os.PathLike, Iterable], *,
                                recursive: bool = False) -> tuple:
    """``(files, passed_over)``: ``list_images``' files, and ``[(path, reason)]`` for the entries of the
    folders with an image extension that are not image files to read (a broken link, a symlinked folder:
    ``data.folders.list_folder``), for the caller to report."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: List[Path] = []
    passed_over: list = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files, skipped = list_folder(p, IMAGE_EXTENSIONS, recursive=recursive)
            found.extend(files)
            passed_over.extend(skipped)
        elif p.is_file():
            found.append(p)
        else:
            reason = missing_file_problem(p)
            reason = "no such file or folder" if reason == "no such image file" else reason
            raise FileNotFoundError(f"{p}: {reason}")
    return found, passed_over


def unnameable_note(path: Union[str, os.PathLike], encoding: Optional[str] = None) -> str:
    """For a file reported missing: "" when its name can be passed to the OS, else the reason it could
    not be looked up at all (``encoding``: the file-system encoding, ``sys.getfilesystemencoding()``).

    Under ``PYTHONUTF8=0 LC_ALL=C`` that encoding is ASCII, so "Ölfleck.png" cannot be opened even though it
    exists: "not found" alone would send the user looking for a file that is there. (A name that is not
    valid UTF-8, read from the disk as "caf\\udce9.png", encodes back to its bytes: no note.)"""
    encoding = encoding or sys.getfilesystemencoding()
    try:
        os.fspath(path).encode(encoding, "surrogateescape")
    except UnicodeEncodeError:
        return (f"; it cannot be named in this locale's file-system encoding ({encoding}): run with "
                f"PYTHONUTF8=1 or LC_ALL=C.UTF-8")
    except LookupError:  # an encoding Python does not know: nothing to say
        pass
    return ""
