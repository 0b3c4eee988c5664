"""Overlays of detections on an image: translucent masks with a darker contour, boxes, labels, keypoints.

Shapes: D detections, H x W the image, K keypoints per instance.

``draw_instances(image, det, class_names)`` takes the image in any of the forms the Predictor takes
(a file path or encoded bytes, a PIL image, turned upright by its EXIF orientation as the Predictor and
``read_image`` turn it; (3, H, W) float in [0, 1]; (3, H, W) or (H, W, 3) uint8 or uint16) and the
detections of one image (a dict: ``results[0]`` of a Predictor's list)
in the same coordinates (``boxes`` (D, 4) xyxy, ``scores`` (D,), ``labels`` (D,), optional ``masks``
(D, H, W) bool, optional ``keypoints`` (D, K, 3) and ``keypoint_scores`` (D, K)) and returns a PIL RGB
image. Line widths and the font grow with the image (its longer side, at most twice its shorter one:
``line_and_font_size``) so that overlays stay legible on thumbnails, large photographs and panoramas
alike. A class name is labelled as ``shown_text.short_name`` shows it (one line, control characters
escaped, at most 40 columns); a label that would cover a better instance's label goes inside or below its
box, or is left out when every place is mostly covered. The commands' defaults (score threshold, enlarging
small images) are in ``overlay_defaults.py``.
A detection's colour follows its score rank (``colors_by_score``); its label is ``LABEL_TEXT`` (white) on
that colour darkened by ``LABEL_DARKEN``: the serve page takes the same colours (``overlay_colors``).
A label the built-in font cannot draw (CJK, Cyrillic, ...) is drawn with a system font that can
(fontconfig's answer, known names, the usual font folders; found once per font size and set of non-ASCII
characters), else as the class index with one warning per class: missing-glyph boxes say nothing.
"""

from __future__ import annotations

import colorsys
import functools
import numbers
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from maskrcnn.data.images import FLOAT_RANGE_SLACK
from maskrcnn.data.keypoints import COCO_SKELETON, drawing_skeleton
from maskrcnn.shown_text import short_name

_GOLDEN = 0.618033988749895


def instance_colors(n: int, *, offset: int = 0) -> np.ndarray:
    """``n`` well-separated saturated colours, (n, 3) uint8: hues stepped by the golden ratio so that
    neighbours in the list never look alike, with two alternating value levels."""
    i = np.arange(offset, offset + n)
    hues = (0.07 + i * _GOLDEN) % 1.0
    values = np.where(i % 2 == 0, 0.95, 0.80)
    sats = np.where(i % 3 == 2, 0.60, 0.85)
    rgb = [colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(hues, sats, values)]
    return (np.asarray(rgb, dtype=np.float64).reshape(n, 3) * 255).round().astype(np.uint8)


# Labels: white text on the detection's colour darkened (x 0.55, rounded down). Every darkened palette
# colour keeps white text at a contrast of about 4:1 or more, where black text on the bright colour itself
# falls to 2.1:1 for some of them. The mask's outline takes the darkened colour too.
LABEL_DARKEN = 0.55
LABEL_TEXT = (255, 255, 255)


def colors_by_score(scores) -> tuple:
    """The colours of D detections, in the given order: ``(colors, dark)``, each (D, 3) uint8. The best
    score gets ``instance_colors``' first colour, the next best the second (ties keep their order), so a
    detection's colour follows its rank, not its index; ``dark`` is its label's background and mask
    outline. One rule for ``draw_instances`` and the serve page (``overlay_colors``)."""
    scores = np.asarray(scores).reshape(-1)  # (D,), its own dtype: casting could turn near-ties into ties
    D = scores.shape[0]
    rank = np.empty(D, np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(D)
    colors = instance_colors(D)[rank]  # (D, 3)
    dark = (colors.astype(np.float32) * LABEL_DARKEN).astype(np.uint8)  # (D, 3): rounded down
    return colors, dark


def to_uint8_hwc(image) -> np.ndarray:
    """Any image the Predictor takes -> (H, W, 3) uint8 numpy array (a copy). Files, encoded bytes and
    PIL images are read as the Predictor reads them (``predictor.load_image``: EXIF orientation, 16-bit
    modes scaled), so the overlay is drawn on the pixels it saw; arrays and tensors also channels first
    or last, uint8, uint16 (0..65535) or float in [0, 1]."""
    from maskrcnn.predictor import load_image, plain_array

    where = "draw_instances: image"
    if isinstance(image, Image.Image):
        from maskrcnn.data.images import check_pil_open, exif_oriented

        check_pil_open(image, where)  # a closed one would fail in the EXIF read below without a word
        # turned here so that a corrupt EXIF block's warning names the caller's line, not the library's
        image = exif_oriented(image, "draw_instances", stacklevel=3)
        with warnings.catch_warnings():  # its tag still unreadable: warned once above
            warnings.filterwarnings("ignore", message=r".*ignoring unreadable EXIF orientation")
            image = load_image(image, where)  # (3, H, W) float32 in [0, 1], upright
    elif isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        image = load_image(image, where)  # (3, H, W) float32 in [0, 1], upright
    elif isinstance(image, np.ndarray):
        image = plain_array(image, where)  # masked, subclass or big-endian arrays: plain native values
    elif not isinstance(image, torch.Tensor):
        raise TypeError(f"{where}: expected a file path, an encoded image's bytes, a PIL image, a numpy "
                        f"array or a tensor, got {type(image).__name__}")
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
    if arr.ndim == 2:
        arr = arr[None]  # grey (H, W) -> (1, H, W)
    if arr.ndim != 3:
        raise ValueError(f"draw_instances: image must be (3, H, W) or (H, W, 3), got shape {arr.shape}")
    floating = np.issubdtype(arr.dtype, np.floating)
    # Channels first unless the last axis alone looks like channels; float images are (3, H, W) by the
    # library's convention, integer ones (H, W, 3) by PIL's / numpy's.
    chw = arr.shape[0] in (1, 3, 4) and not (arr.shape[-1] in (1, 3, 4) and not floating)
    if chw:
        arr = arr.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if arr.dtype == np.uint16:  # 16-bit PNG / TIFF, 0..65535: as the Predictor scales it
        arr, floating = arr.astype(np.float32) / 65535.0, True
    own = floating  # a new array: no copy needed to keep the caller's safe
    if floating:
        arr = _float_to_uint8(arr)
    elif arr.dtype != np.uint8:
        raise ValueError(f"draw_instances: unsupported image dtype {arr.dtype} (float in [0, 1], uint8 or "
                         "uint16)")
    if arr.shape[2] in (1, 2):  # grey, or grey + alpha (an "LA" PNG as numpy): alpha dropped
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif arr.shape[2] != 3:
        raise ValueError(f"draw_instances: image has {arr.shape[2]} channels, expected 1, 2, 3 or 4")
    if own and arr.flags.c_contiguous:
        return arr
    return np.array(arr, dtype=np.uint8, order="C", copy=True)  # never draw on the caller's array


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    """(H, W, C) float in [0, 1] -> uint8 (NaN 0, infinity clipped), a band of rows at a time: done whole,
    its float temporaries (the finite values, NaN replaced, scaled, clipped) held about 20 bytes per pixel
    at once, 2 GB more for a 40 MP photo. ValueError when the finite values are on another scale."""
    out = np.empty(arr.shape, np.uint8)
    lo, hi = np.inf, -np.inf
    rows = max(1, (1 << 20) // max(1, arr.shape[1] * arr.shape[2]))  # about 1 M values (4 MB) per band
    for r in range(0, arr.shape[0], rows):
        band = np.asarray(arr[r:r + rows], dtype=np.float32)
        finite = band[np.isfinite(band)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        out[r:r + rows] = np.clip(np.nan_to_num(band) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if lo < -FLOAT_RANGE_SLACK or hi > 1.0 + FLOAT_RANGE_SLACK:
        # 0..255 floats would be drawn as a white frame, normalised ones as a dark smear
        raise ValueError(f"draw_instances: float image values span [{lo:.4g}, {hi:.4g}], expected [0, 1]"
                         ": divide 0..255 values by 255, or pass uint8")
    return out


def _check_one_result(det, name: str) -> None:
    """TypeError unless ``det`` is one image's dict: the Predictor returns a list, one per image."""
    if isinstance(det, Mapping):
        return
    if isinstance(det, (list, tuple)):
        raise TypeError(f"{name} is a {type(det).__name__} of results, one per image ({len(det)} here): pass "
                        "one image's result, e.g. results[0]")
    raise TypeError(f"{name} must be one image's detections (a dict), got {type(det).__name__}")


def _check_mask_alpha(mask_alpha, name: str) -> None:
    """ValueError unless ``mask_alpha`` is a number in [0, 1]: -1 failed deep in numpy (uint8 overflow),
    2 drew colours beyond the instance's without a word."""
    if isinstance(mask_alpha, (bool, np.bool_)) or not isinstance(mask_alpha, numbers.Real) or not (
            0.0 <= float(mask_alpha) <= 1.0):  # NaN fails the comparison
        raise ValueError(f"{name}: mask_alpha must be a number in [0, 1] (0: masks outlined only, 1: "
                         f"opaque), got {mask_alpha!r}")


def _finite_boxes(boxes: np.ndarray) -> np.ndarray:
    """(D,) bool: the boxes (D, 4) whose coordinates are all finite; the others are said once, counted (a
    NaN box has no place to draw its mask's label or outline: leaving it out is what can be drawn)."""
    finite = np.isfinite(boxes).all(axis=1)
    bad = int((~finite).sum())
    if bad:
        shown = ", ".join(str(i) for i in np.nonzero(~finite)[0][:5]) + (", ..." if bad > 5 else "")
        warnings.warn(f"draw_instances: {bad} of {len(boxes)} detections have boxes that are not finite (NaN "
                      f"or infinity; index {shown}): left out of the drawing", stacklevel=4)
    return finite


def _np(x) -> Optional[np.ndarray]:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


# Fonts with wide Unicode coverage, looked for (by ImageFont.truetype, in the system's font folders) for
# a label the built-in font cannot draw: Pillow's own scalable font (Aileron) has ASCII only, so a class
# named "Größe", "собака" or "猫" came out as boxes. Before these, fontconfig is asked for a font with the
# label's characters (Linux, BSD; the folders below, for files with these hints in the name, otherwise).
_UNICODE_FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "NotoSansCJK-Regular.ttc",
                  "NotoSansCJKsc-Regular.otf", "Arial Unicode.ttf", "arialuni.ttf", "msyh.ttc",
                  "PingFang.ttc", "LiberationSans-Regular.ttf")
_FONT_FOLDERS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts",
                 "/Library/Fonts", "/System/Library/Fonts", "~/Library/Fonts", "%WINDIR%/Fonts")
_WIDE_FONT_HINTS = ("cjk", "han", "hei", "song", "ming", "gothic", "mincho", "wqy", "fallback", "unifont",
                    "arialuni", "msyh", "simsun", "pingfang", "hiragino", "malgun", "gulim", "arabic",
                    "hebrew", "devanagari", "thai")
_MAX_FOLDER_FONTS = 64  # fonts tried from the folders: each is opened to test its glyphs
_NO_GLYPH = "\U0010fffd"  # a private-use code point no font draws: its bitmap is the font's "missing" box


@functools.lru_cache(maxsize=64)
def _font_file(name: str, size: int):
    try:
        return ImageFont.truetype(name, size)
    except OSError:  # not installed
        return None


def _draws(font, text: str) -> bool:
    """Whether ``font`` has a glyph for every character of ``text`` (spaces aside)."""
    missing = font.getmask(_NO_GLYPH)
    missing = (missing.size, bytes(missing))
    for ch in set(text) - set(" \t"):
        mask = font.getmask(ch)
        if (mask.size, bytes(mask)) == missing:
            return False
    return True


def _fontconfig_fonts(chars: str) -> list:
    """Font files fontconfig knows with a glyph for each of ``chars`` (regular styles first); [] without
    fontconfig."""
    if shutil.which("fc-list") is None:
        return []
    charset = " ".join(f"{ord(ch):x}" for ch in chars[:32])
    try:
        done = subprocess.run(["fc-list", "-f", "%{file}\n", f":charset={charset}"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    styled = ("bold", "italic", "oblique", "light", "thin", "black", "condensed", "mono")
    files = {line.strip() for line in done.stdout.splitlines() if line.strip()}
    return sorted(files, key=lambda f: (sum(w in Path(f).name.lower() for w in styled), Path(f).name, f))


@functools.lru_cache(maxsize=1)
def _folder_fonts() -> tuple:
    """Font files in the system's usual font folders whose names suggest wide coverage."""
    found = []
    for folder in _FONT_FOLDERS:
        root = Path(os.path.expandvars(os.path.expanduser(folder)))
        if "%" in str(root) or not root.is_dir():
            continue
        for dirpath, _, names in os.walk(root):
            found += [Path(dirpath) / n for n in names if n.lower().endswith((".ttf", ".otf", ".ttc"))
                      and any(h in n.lower() for h in _WIDE_FONT_HINTS)]
    return tuple(str(f) for f in sorted(found)[:_MAX_FOLDER_FONTS])


@functools.lru_cache(maxsize=256)
def _font_drawing(chars: str):
    """The first font file (fontconfig's, the known names, the folders') that draws every one of
    ``chars``, or None. Found once per set of characters: opening fonts is slow."""
    for name in (*_fontconfig_fonts(chars), *_UNICODE_FONTS, *_folder_fonts()):
        font = _font_file(name, 16)
        if font is not None and _draws(font, chars):
            return name
    return None


def _font(size: int, text: str = ""):
    """The built-in font at ``size``, a font here that can draw ``text`` when it cannot, or None when
    no font here draws it (the caller draws something else: boxes would say nothing)."""
    # Only the label's characters beyond ASCII choose the font (ASCII is the built-in font's own), so the
    # labels "猫 0.90" and "猫 0.35" share one lookup: drawing 100 of them opens and probes fonts once.
    return _font_for(size, "".join(sorted({ch for ch in text if not ch.isascii()})))


@functools.lru_cache(maxsize=256)
def _font_for(size: int, chars: str):
    """``_font`` for a label whose non-ASCII characters are ``chars`` (sorted, each once; "" for none)."""
    try:
        font = ImageFont.load_default(size=size)  # scalable since Pillow 10.1
    except TypeError:
        font = ImageFont.load_default()
    if not isinstance(font, ImageFont.FreeTypeFont):
        # PIL's bitmap font (Pillow < 10.1, or built without FreeType) has latin-1 glyphs only: a class
        # named "猫" (LabelMe labels are often CJK) raised UnicodeEncodeError mid-run.
        return font if _latin1(chars) else None
    if _draws(font, chars):
        return font
    name = _font_drawing("".join(ch for ch in chars if not _draws(font, ch)))
    return None if name is None else _font_file(name, size)


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def _warn_undrawable(name: str, index: int) -> None:
    """Once per class: its label is drawn as its index."""
    warnings.warn(f"no font on this machine draws the class name {name!r}: its overlays show its index "
                  f"{index} instead (install a font with these characters, e.g. Noto Sans CJK)", stacklevel=3)


def _covered(candidates: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """Area of each candidate rectangle covered by the placed ones, summed over them, in one broadcast:
    compared pair by pair in Python, placing 2000 labels took 3.3 s, 91% of it here.
    ``candidates``: (P, 4) and ``placed``: (N, 4) as (x0, y0, x1, y1). Returns (P,) float."""
    c, p = candidates[:, None, :], placed[None, :, :]  # (P, 1, 4), (1, N, 4)
    dx = np.clip(np.minimum(c[..., 2], p[..., 2]) - np.maximum(c[..., 0], p[..., 0]), 0.0, None)  # (P, N)
    dy = np.clip(np.minimum(c[..., 3], p[..., 3]) - np.maximum(c[..., 1], p[..., 1]), 0.0, None)  # (P, N)
    return (dx * dy).sum(axis=1)


def line_and_font_size(H: int, W: int) -> tuple:
    """(line width, font size) in pixels for an H x W drawing. They grow with the image's longer side as
    long as the shorter one is at least half of it, and with twice the shorter side beyond that: on an
    8000 x 300 panorama the longer side gave 20 px outlines and a 48 px font, a third of its height."""
    scale = min(max(H, W), 2 * min(H, W))
    return max(1, int(round(scale / 400))), int(np.clip(round(scale / 45), 10, 48))


def _shift(a: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """``a`` moved by (dy, dx), uncovered border filled with ``fill``."""
    out = np.full_like(a, fill)
    H, W = a.shape
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[yd, xd] = a[ys, xs]
    return out


def _decode_rle(rle: dict) -> np.ndarray:
    """(H, W) bool from a COCO RLE dict (enlarged, if at all, with the other masks: ``_draw_instances``)."""
    import pycocotools.mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")
                              if isinstance(rle["counts"], str) else rle["counts"]}).astype(bool)


def _contours(owner: np.ndarray, thickness: int) -> np.ndarray:
    """Pixels of an instance that touch a pixel of another instance or the background, grown inwards
    to ``thickness`` pixels. ``owner``: (H, W) instance index, -1 for none. Returns (H, W) bool."""
    inside = owner >= 0
    edge = np.zeros_like(inside)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        edge |= _shift(owner, dy, dx, -1) != owner
    edge &= inside
    grown = edge.copy()
    for _ in range(thickness - 1):
        step = grown.copy()
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            step |= _shift(grown, dy, dx, False)
        grown = step & inside
    return grown


def draw_instances(
    image,
    det: dict,
    class_names: Optional[Sequence[str]] = None,
    *,
    score_thresh: float = 0.0,
    mask_alpha: float = 0.45,
    show_boxes: bool = True,
    show_labels: bool = True,
    keypoint_thresh: Optional[float] = None,
    min_size: int = 0,
    show_scores: bool = True,
    skeleton: Optional[Sequence] = None,
    names_shown: bool = False,
    max_size: int = 0,
) -> Image.Image:
    """Draw one image's detections. Instances are painted from the lowest score up so the most
    confident ones stay on top; each instance keeps one colour for mask, contour, box and label.

    ``keypoint_thresh`` hides keypoints whose ``keypoint_scores`` are below it (None: show every
    keypoint with visibility > 0). ``min_size``: an image whose longer side is shorter is drawn
    enlarged by an integer factor (pixels repeated, so masks stay exact) until it reaches it, so that
    labels and contours on thumbnails stay legible; 0 draws at the image's own size. ``show_scores``
    False labels each instance with its class name alone (ground truth has no score). ``skeleton``:
    0-based keypoint index pairs joined by a line (``skeleton_for(cfg)``); None: COCO's for 17
    keypoints, no lines otherwise. ``names_shown``: ``class_names`` are already in their shown form
    (``short_name`` applied by the caller before a tag such as " (crowd)", which must not be cut off).
    ``max_size``: an image whose longer side is longer is drawn reduced by an integer factor until it
    fits (the picture box-averaged, the masks taken every factor-th pixel, boxes and keypoints scaled), so
    that a 40 MP photo's drawing does not cost as much memory and time again as its prediction; 0: never.

    Defaults draw everything as given (score_thresh 0, own size); the commands pass
    ``overlay_defaults.OVERLAY_SCORE_THRESH`` and ``OVERLAY_MIN_SIZE``."""
    _check_one_result(det, "draw_instances: det")
    _check_mask_alpha(mask_alpha, "draw_instances")
    img = to_uint8_hwc(image)  # here: its warnings name the caller's line
    return _draw_instances(img, det, class_names, score_thresh=score_thresh, mask_alpha=mask_alpha,
                           show_boxes=show_boxes, show_labels=show_labels, keypoint_thresh=keypoint_thresh,
                           min_size=min_size, show_scores=show_scores, skeleton=skeleton,
                           names_shown=names_shown, mask_scale=1, unpainted=None, max_size=max_size)


def _any_pool(mask: np.ndarray, s: int, out_hw: tuple) -> np.ndarray:
    """(h, w) ``mask`` reduced by ``s`` to ``out_hw`` (ceil(h / s), ceil(w / s)), the bins of the
    picture's PIL ``reduce`` (from the origin, the last ones partial): a cell is in the mask when any of
    its pixels is. Every s-th pixel alone dropped a mask thinner than ``s`` (a wire, a crack) from the
    reduced overlay."""
    h, w = out_hw
    out = np.zeros((h, w), bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return out
    # only the cells the mask's extent touches are pooled: a small mask on a 48 MP image costs its size
    r0, r1 = rows[0] // s, rows[-1] // s + 1  # cell rows
    c0, c1 = cols[0] // s, cols[-1] // s + 1
    padded = np.zeros(((r1 - r0) * s, (c1 - c0) * s), bool)
    part = mask[r0 * s: r1 * s, c0 * s: c1 * s]
    padded[: part.shape[0], : part.shape[1]] = part
    out[r0:r1, c0:c1] = padded.reshape(r1 - r0, s, c1 - c0, s).any(axis=(1, 3))
    return out


def _draw_instances(img: np.ndarray, det: dict, class_names, *, score_thresh, mask_alpha, show_boxes,
                    show_labels, keypoint_thresh, min_size, show_scores, skeleton, names_shown,
                    mask_scale: int, unpainted: Optional[np.ndarray], max_size: int = 0):
    """``draw_instances``, its ``masks`` at 1/``mask_scale`` of the image's size (``draw_targets`` has
    enlarged the image, not the masks: 200,000 masks repeated at once needed 36 GiB). The masks are laid
    into one instance-index map at their own size, enlarged once: memory for one map, not for every mask
    (repeating pixels commutes with laying the masks in order). ``unpainted``: (D,) bool, the instances whose
    mask is not laid (crowd regions, hatched by ``draw_targets``), or None. ``img``: (H, W, 3) uint8, drawn
    on in place. ``max_size``: ``draw_instances``'."""
    H, W = img.shape[:2]
    factor = max(1, -(-int(min_size) // max(H, W, 1))) if min_size > 0 else 1
    # reduce by this (never with an enlargement, nor with masks smaller than the image: draw_targets)
    shrink = -(-max(H, W) // int(max_size)) if max_size > 0 and factor == 1 and mask_scale == 1 else 1
    boxes = _np(det.get("boxes"))
    boxes = np.zeros((0, 4), np.float32) if boxes is None else boxes.reshape(-1, 4).astype(np.float32)
    D = boxes.shape[0]
    scores = _np(det.get("scores"))
    scores = np.ones(D, np.float32) if scores is None else scores.reshape(-1).astype(np.float32)
    labels = _np(det.get("labels"))
    labels = np.zeros(D, np.int64) if labels is None else labels.reshape(-1).astype(np.int64)
    masks = _np(det.get("masks"))
    keypoints = _np(det.get("keypoints"))
    kp_scores = _np(det.get("keypoint_scores"))
    if scores.shape[0] != D or labels.shape[0] != D:
        raise ValueError(f"draw_instances: {D} boxes but {scores.shape[0]} scores, {labels.shape[0]} labels")
    if masks is not None and (masks.ndim == 4 and masks.shape[1] == 1):
        masks = masks[:, 0]  # (D, 1, H, W) -> (D, H, W)
    mask_hw = (H // mask_scale, W // mask_scale)
    if masks is not None and masks.shape != (D, *mask_hw):
        raise ValueError(f"draw_instances: masks have shape {masks.shape}, expected {(D, *mask_hw)}")
    # Compact masks (Predictor(masks="rle")) are decoded one at a time: one H x W mask in memory at most.
    rles = list(det["masks_rle"]) if masks is None and det.get("masks_rle") is not None else None
    if rles is not None and (len(rles) != D or any(list(r["size"]) != [H, W] for r in rles)):
        raise ValueError(f"draw_instances: masks_rle must be {D} RLE dicts of size [{H}, {W}]")
    if shrink > 1:  # reduce: box-average the picture; boxes, keypoints and (below) masks scale with it
        img = np.asarray(Image.fromarray(img).reduce(shrink)).copy()  # (ceil(H / s), ceil(W / s), 3)
        boxes = boxes / shrink
        if keypoints is not None:
            keypoints = keypoints.astype(np.float32).copy()
            keypoints[:, :, :2] /= shrink
        H, W = img.shape[:2]
    if factor > 1:  # enlarge: repeat pixels; box and keypoint coordinates scale with them
        img = np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)
        boxes = boxes * factor
        if keypoints is not None:
            keypoints = keypoints.astype(np.float32).copy()
            keypoints[:, :, :2] *= factor
        H, W = H * factor, W * factor

    order = np.argsort(scores, kind="stable")  # ascending: best painted last
    order = order[(scores[order] >= score_thresh) & _finite_boxes(boxes)[order]]
    inst_color, dark = colors_by_score(scores)  # (D, 3) each: the best instance gets the first colour

    line, font_size = line_and_font_size(H, W)

    if (masks is not None or rles is not None) and order.size:
        owner = np.full((H, W) if shrink > 1 else mask_hw, -1, np.int32)  # at the masks' own size
        for i in order if unpainted is None else order[~unpainted[order]]:  # later (better) ones overwrite
            mask = masks[i] if masks is not None else _decode_rle(rles[i])  # one full-size mask at a time
            owner[_any_pool(mask, shrink, (H, W)) if shrink > 1 else mask.astype(bool)] = i
        grow = factor * mask_scale
        if grow > 1:
            owner = np.repeat(np.repeat(owner, grow, axis=0), grow, axis=1)
        inside = owner >= 0
        idx = owner[inside]
        blended = img[inside].astype(np.float32) * (1 - mask_alpha) + inst_color[idx] * mask_alpha
        img[inside] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        edge = _contours(owner, max(1, line))
        img[edge] = dark[owner[edge]]

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    font = _font(font_size)

    if keypoints is not None and order.size:
        K = keypoints.shape[1]
        visible = keypoints[:, :, 2] > 0
        if kp_scores is not None and keypoint_thresh is not None:
            visible &= kp_scores > keypoint_thresh
        edges = tuple(skeleton) if skeleton is not None else (COCO_SKELETON if K == 17 else ())
        if any(not (0 <= a < K and 0 <= b < K) for a, b in edges):
            raise ValueError(f"draw_instances: skeleton {list(edges)} indexes beyond the {K} keypoints")
        radius = max(2, line + 1)
        for i in order:
            c = tuple(int(v) for v in inst_color[i])
            pts = keypoints[i, :, :2]
            for a, b in edges:
                if visible[i, a] and visible[i, b]:
                    draw.line([tuple(pts[a]), tuple(pts[b])], fill=c, width=line + 1)
            for k in np.nonzero(visible[i])[0]:
                x, y = pts[k]
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=c, outline=(0, 0, 0))

    if show_boxes:
        for i in order:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            draw.rectangle(
                [x1, y1, max(x1, x2), max(y1, y2)], outline=tuple(int(v) for v in inst_color[i]), width=line
            )
    # Labels after all boxes so that no box line crosses a label. Placed best first, each where it covers
    # no label placed before it (above its box, else inside its top edge, else below it) or, where every
    # place is mostly covered, left out: a label drawn over another hid both. Drawn worst first.
    placed = []  # (x0, y0, x1, y1, text, font, i, offset of the text's ink)
    rects = np.zeros((len(order) if show_labels else 0, 4))  # (D, 4): placed[:, :4], the first len(placed)
    for i in order[::-1] if show_labels else ():
        x1, y1, y2 = float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 3])
        lab = int(labels[i])
        full = class_names[lab] if class_names is not None and 0 <= lab < len(class_names) else str(lab)
        # one line, at most 40 columns: a 300-character name covered the image
        name = str(full) if names_shown else short_name(full)
        text = f"{name} {scores[i]:.2f}" if show_scores else name
        font = _font(font_size, text)
        if font is None or not (isinstance(font, ImageFont.FreeTypeFont) or _latin1(text)):
            # No font here has the glyphs (a bitmap font: latin-1 only, "猫" raised UnicodeEncodeError):
            # the class index says more than boxes would.
            _warn_undrawable(full, lab)
            text = f"{lab} {scores[i]:.2f}" if show_scores else str(lab)
            font = _font(font_size)
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        w, h = r - l + 2 * max(1, font_size // 6), b - t + 2 * max(1, font_size // 6)  # with padding
        tx = min(max(0.0, x1), max(0.0, W - w))
        places = [y1 - h, max(0.0, y1), y2] if y1 - h >= 0 else [max(0.0, y1), y2]
        places = [min(max(0.0, y), max(0.0, H - h)) for y in places]
        candidates = np.array([(tx, y, tx + w, y + h) for y in places], dtype=float)  # (P, 4)
        covered = _covered(candidates, rects[: len(placed)])  # (P,)
        best = int(np.argmin(covered))  # the first place that covers least
        if covered[best] > 0.5 * w * h:
            continue
        rects[len(placed)] = candidates[best]
        placed.append((tx, places[best], tx + w, places[best] + h, text, font, i, (l, t)))
    for tx, ty, tx2, ty2, text, font, i, (l, t) in placed[::-1]:
        pad = max(1, font_size // 6)
        draw.rectangle([tx, ty, tx2, ty2], fill=tuple(int(v) for v in dark[i]))
        draw.text((tx + pad - l, ty + pad - t), text, fill=LABEL_TEXT, font=font)
    return pil


def skeleton_for(cfg) -> tuple:
    """The 0-based skeleton edges of a keypoint model's config (``keypoints.drawing_skeleton``: the
    dataset's COCO skeleton, ``data.keypoint_skeleton``; without one COCO's for COCO's 17 keypoints,
    named so or unnamed, else none: points only)."""
    return drawing_skeleton(cfg.data.keypoint_names, cfg.data.keypoint_skeleton,
                            int(cfg.model.roi_heads.num_keypoints))


def draw_targets(
    image,
    target: dict,
    class_names: Optional[Sequence[str]] = None,
    *,
    mask_alpha: float = 0.45,
    min_size: int = 0,
    skeleton: Optional[Sequence] = None,
    names_shown: bool = False,
) -> Image.Image:
    """Draw one image's ground truth, ``target`` as a dataset gives it (``boxes`` (M, 4) xyxy, ``labels``
    (M,), optional ``masks`` (M, H, W), optional ``iscrowd`` (M,) bool, optional ``keypoints`` (M, K, 3):
    the labelled ones (v > 0) drawn as ``draw_instances`` draws predicted keypoints, joined by
    ``skeleton``, 0-based pairs; None: COCO's for 17 keypoints).

    Instances look as ``draw_instances`` draws detections, labelled with the class name alone. Crowd
    regions are hatched with light and dark stripes and outlined in black instead of tinted, so that
    they never read as one more instance, and labelled "<class> (crowd)". Objects without a mask
    (``has_mask`` False: a box-only annotation, whose mask is its box) are outlined, not filled, and
    labelled "<class> (box)". ``names_shown``: as for ``draw_instances``."""
    _check_one_result(target, "draw_targets: target")
    _check_mask_alpha(mask_alpha, "draw_targets")
    img = to_uint8_hwc(image)
    H, W = img.shape[:2]
    boxes = _np(target.get("boxes"))
    boxes = np.zeros((0, 4), np.float32) if boxes is None else boxes.reshape(-1, 4).astype(np.float32)
    M = boxes.shape[0]
    labels = _np(target.get("labels")).reshape(M).astype(np.int64)
    masks = _np(target.get("masks"))
    masks = None if masks is None else masks.reshape(M, H, W)  # at this size: never enlarged (memory)
    crowd = _np(target.get("iscrowd"))
    crowd = np.zeros(M, bool) if crowd is None else crowd.reshape(M).astype(bool)
    has_mask = _np(target.get("has_mask"))
    # a box-only object's mask is its filled box: drawn so, it looked like a rectangular mask, and the user
    # could not see which objects have no mask (left out of the mask loss)
    box_only = np.zeros(M, bool) if has_mask is None else ~has_mask.reshape(M).astype(bool) & ~crowd
    keypoints = _np(target.get("keypoints"))
    if keypoints is not None:  # (M, K, 3); an image without instances has nothing to draw
        keypoints = keypoints.reshape(M, -1, 3).astype(np.float32) if M else None
    # Enlarge here rather than in draw_instances, so that the hatching is drawn at the final size.
    factor = max(1, -(-int(min_size) // max(H, W, 1))) if min_size > 0 else 1
    if factor > 1:
        img = np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)
        boxes, H, W = boxes * factor, H * factor, W * factor
        if keypoints is not None:
            keypoints = keypoints.copy()
            keypoints[:, :, :2] *= factor
    if masks is not None and crowd.any():
        region = np.zeros(masks.shape[1:], bool)
        for i in np.nonzero(crowd)[0]:  # one mask at a time
            region |= masks[i].astype(bool)
        region = np.repeat(np.repeat(region, factor, axis=0), factor, axis=1) if factor > 1 else region
        period = max(3, int(round(max(H, W) / 120)))
        yy, xx = np.mgrid[0:H, 0:W]  # (H, W) each
        light = region & (((yy + xx) // period) % 2 == 0)
        dark = region & ~light
        img[light] = (img[light].astype(np.float32) * 0.4 + 255 * 0.6).astype(np.uint8)
        img[dark] = (img[dark].astype(np.float32) * 0.5).astype(np.uint8)
        img[_contours(np.where(region, 0, -1).astype(np.int32), max(1, int(round(max(H, W) / 400))))] = 0
    if class_names is None:
        class_names = [str(i) for i in range(int(labels.max(initial=0)) + 1)]
    names = list(class_names) if names_shown else [short_name(n) for n in class_names]  # before "(crowd)"
    # crowd labels index the "(crowd)" names, box-only ones the "(box)" names
    shown = np.where(crowd, labels + len(names), np.where(box_only, labels + 2 * len(names), labels))
    det = {"boxes": boxes, "scores": np.ones(M, np.float32), "labels": shown, "masks": masks,
           "keypoints": keypoints}
    return _draw_instances(img, det, names + [f"{n} (crowd)" for n in names] + [f"{n} (box)" for n in names],
                           score_thresh=0.0, mask_alpha=mask_alpha, show_boxes=True, show_labels=True,
                           keypoint_thresh=None, min_size=0, show_scores=False, skeleton=skeleton,
                           names_shown=True, mask_scale=factor,
                           unpainted=crowd | box_only if masks is not None else None)
