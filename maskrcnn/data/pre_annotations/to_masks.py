"""Pre-annotations as mask images and cut-outs: what people most often write by hand after Mask R-CNN.

Shapes: an image is H rows x W columns, (3, H, W) float in [0, 1] as the predictor reads it; D
detections of one image; an instance's region (h, w) bool over its box, its top-left pixel at column
``left``, row ``top``.

Mask images (one image's detections in two PNGs of the image's size):
- instance ids: 0 the background, i the i-th detection of the image (predictions.json's order, which
  is the detections'); where instances overlap the higher score wins (the earlier one on a tie). 8-bit
  grey for up to 255 detections, 16-bit grey beyond.
- classes: the category id (as predictions.json has it) of the instance seen at each pixel, 0 the
  background. A palette PNG (the PASCAL VOC colour map, what segmentation tools show class PNGs with),
  or 16-bit grey when a category id of the model is above 255 (a palette holds 256 colours).

A cut-out is one instance cropped to its box: an RGBA PNG, RGB the photo's own 8-bit pixels, alpha 255
on the instance's mask (its own, whatever overlaps it) and 0 elsewhere. The box is the detection's,
rounded outwards to whole pixels, clipped to the image and grown to hold the whole mask.

Masks are decoded from their RLE in their own tight box (``mask_codec.decode_rle_window``) and pasted
there: one image costs its two (H, W) canvases, never an (H, W) array per instance. A detection with an
empty mask keeps its id and paints nothing. A box-only model's instances are the pixels whose centres lie
in their box.
"""

from __future__ import annotations

import io
import math
import re
from typing import List, NamedTuple, Optional, Sequence

import numpy as np
from PIL import Image

from maskrcnn.data.pre_annotations.instances import Category, rle_box_patch

__all__ = ["Region", "class_image", "class_png", "cutout_box", "cutout_png", "detection_regions",
           "id_png", "index_records", "instance_id_image", "safe_file_name", "voc_palette"]


class Region(NamedTuple):
    """An instance's pixels: ``patch`` (h, w) bool with its top-left pixel at column ``left``, row ``top``."""

    left: int
    top: int
    patch: np.ndarray


def _rle_region(rle: dict, height: int, width: int) -> Optional[Region]:
    if [int(v) for v in rle["size"]] != [height, width]:
        raise ValueError(f"an RLE mask of size {list(rle['size'])} on an image of {height}x{width}")
    found = rle_box_patch(rle)  # decoded in the mask's tight box
    return Region(*found) if found is not None else None


def _dense_region(mask) -> Optional[Region]:
    mask = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    mask = mask >= 0.5 if np.issubdtype(mask.dtype, np.floating) else mask.astype(bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return Region(int(cols[0]), int(rows[0]), mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].copy())


def _box_region(box: Sequence[float], height: int, width: int) -> Optional[Region]:
    # pixel c's centre is c + 0.5: inside [x0, x1) for c from ceil(x0 - 0.5) to ceil(x1 - 0.5) - 1
    x0, y0, x1, y1 = (math.ceil(float(v) - 0.5) for v in box)
    x0, x1 = max(x0, 0), min(x1, width)
    y0, y1 = max(y0, 0), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return Region(x0, y0, np.ones((y1 - y0, x1 - x0), dtype=bool))


def detection_regions(det: dict, height: int, width: int) -> List[Optional[Region]]:
    """One image's detections -> each one's ``Region`` (None for an empty mask): ``masks_rle`` decoded in
    their tight box, ``masks`` (D, H, W) cut to it, or (a box-only model) the box's pixels."""
    n = int(det["scores"].shape[0])
    if det.get("masks_rle") is not None:
        regions = [_rle_region(rle, height, width) for rle in det["masks_rle"]]
    elif det.get("masks") is not None:
        masks = det["masks"]
        if tuple(masks.shape[-2:]) != (height, width):
            raise ValueError(f"masks of shape {tuple(masks.shape)} on an image of {height}x{width}")
        regions = [_dense_region(masks[i]) for i in range(masks.shape[0])]
    else:
        regions = [_box_region(b, height, width) for b in det["boxes"].detach().float().cpu().tolist()]
    if len(regions) != n:
        raise ValueError(f"{len(regions)} masks for {n} detections")
    return regions


def instance_id_image(regions: Sequence[Optional[Region]], scores: Sequence[float], height: int,
                      width: int) -> np.ndarray:
    """(H, W) uint8 (up to 255 regions) or uint16: i + 1 where region i is, the best score on top."""
    dtype = np.uint8 if len(regions) <= 255 else np.uint16
    if len(regions) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(regions)} instances do not fit a 16-bit instance image")
    ids = np.zeros((height, width), dtype=dtype)
    order = sorted(range(len(regions)), key=lambda i: -float(scores[i]))
    for i in order:  # best first; a pixel keeps the first id painted on it (stable sort: ties by order)
        region = regions[i]
        if region is None:
            continue
        h, w = region.patch.shape
        window = ids[region.top:region.top + h, region.left:region.left + w]  # a view: painted in place
        window[region.patch & (window == 0)] = i + 1
    return ids


def class_image(ids: np.ndarray, category_ids: Sequence[int], *, sixteen_bit: bool) -> np.ndarray:
    """(H, W) uint8 (uint16 with ``sixteen_bit``): ``category_ids[i - 1]`` where ``ids`` is i, 0 where 0."""
    lut = np.zeros(len(category_ids) + 1, dtype=np.uint16 if sixteen_bit else np.uint8)
    lut[1:] = category_ids
    return lut[ids]


def voc_palette() -> list:
    """The PASCAL VOC colour map as PIL's flat palette (768 values): index 0 black, then colours made by
    spreading the index's bits over R, G and B from their high bits down (1 dark red, 2 dark green, ...)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(7, -1, -1):
            r |= (c & 1) << bit
            g |= ((c >> 1) & 1) << bit
            b |= ((c >> 2) & 1) << bit
            c >>= 3
        palette += [r, g, b]
    return palette


_VOC_PALETTE = voc_palette()  # made once: every class PNG of a run puts the same palette


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _grey(array: np.ndarray) -> Image.Image:
    # uint8 -> mode "L", uint16 -> "I;16" (a 16-bit grey PNG)
    return Image.fromarray(np.ascontiguousarray(array))


def id_png(ids: np.ndarray) -> bytes:
    """The PNG of an instance id image (8- or 16-bit grey, as its dtype)."""
    return _png(_grey(ids))


def class_png(classes: np.ndarray) -> bytes:
    """The PNG of a class image: uint8 as a palette image (VOC colours), uint16 as 16-bit grey."""
    if classes.dtype != np.uint8:
        return _png(_grey(classes))
    height, width = classes.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(classes).tobytes())
    image.putpalette(_VOC_PALETTE)
    return _png(image)


def cutout_box(box: Sequence[float], region: Region, height: int, width: int) -> tuple:
    """(x0, y0, x1, y1) whole pixels: ``box`` (xyxy) rounded outwards, clipped to the image, grown to hold
    ``region``."""
    h, w = region.patch.shape
    x0 = min(max(math.floor(float(box[0])), 0), region.left)
    y0 = min(max(math.floor(float(box[1])), 0), region.top)
    x1 = max(min(math.ceil(float(box[2])), width), region.left + w)
    y1 = max(min(math.ceil(float(box[3])), height), region.top + h)
    return x0, y0, x1, y1


def cutout_png(image, crop: tuple, region: Region) -> bytes:
    """The RGBA PNG of ``image`` ((3, H, W) float in [0, 1]) cut to ``crop`` (x0, y0, x1, y1), alpha the
    region's mask."""
    x0, y0, x1, y1 = crop
    part = image[:, y0:y1, x0:x1]
    part = part.detach().cpu().numpy() if hasattr(part, "detach") else np.asarray(part)
    rgb = np.clip(np.rint(part.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)  # (h, w, 3)
    alpha = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    h, w = region.patch.shape
    alpha[region.top - y0:region.top - y0 + h, region.left - x0:region.left - x0 + w][region.patch] = 255
    return _png(Image.fromarray(np.ascontiguousarray(np.dstack([rgb, alpha]))))  # (h, w, 4) RGBA


def index_records(boxes: Sequence[Sequence[float]], scores: Sequence[float],
                  categories: Sequence[Category]) -> list:
    """What each id of an image's mask means: ``[{"id", "category_id", "category", "score", "bbox"}]``
    from each detection's box (xyxy), score and ``Category``, ``bbox`` the detection's [x, y, w, h] as
    predictions.json has it."""
    return [{"id": i + 1, "category_id": category.id, "category": category.name, "score": float(score),
             "bbox": [round(v, 4) for v in (x0, y0, x1 - x0, y1 - y0)]}
            for i, ((x0, y0, x1, y1), score, category) in enumerate(zip(boxes, scores, categories))]


_UNSAFE = re.compile(r"[^\w.-]+")  # \w is Unicode-aware: letters of any script stay
_MAX_NAME_BYTES = 120  # well under the usual 255-byte limit of a file name, with "<id>_" and ".png"


def safe_file_name(name: str) -> str:
    """A class name as part of a file name: runs of characters other than letters, digits, ``_``, ``.``
    and ``-`` (slashes, spaces, ``:*?"<>|``, control characters) become ``_``; cut to 120 UTF-8 bytes;
    ``class`` when nothing is left."""
    safe = _UNSAFE.sub("_", str(name)).strip("._") or "class"
    while len(safe.encode("utf-8")) > _MAX_NAME_BYTES:
        safe = safe[:-1]
    return safe
