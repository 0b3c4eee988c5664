"""Shapes drawn in annotation tools -> COCO polygons clipped to the image.

Shapes: P points of a shape as a (P, 2) float64 array of (x, y); an image is H rows x W columns.

Coordinates follow COCO's convention, which LabelMe and VIA share: pixel (row i, column j) covers
[j, j + 1) x [i, i + 1), so a rectangle from (3, 2) to (9, 6) covers columns 3..8 and rows 2..5, and
the image is the box [0, W] x [0, H]. Circles and ellipses become polygons fine enough that no point
of the true curve lies more than a quarter pixel outside them, and with at least 40 vertices, so that
the chords cut off under 0.5% of the area (12 vertices shaved every small round object by the same 4%).
"""

from __future__ import annotations

import math

import numpy as np
import pycocotools.mask as mask_utils

from maskrcnn.data.formats.common import MaskPatch, Skip
from maskrcnn.data.mask_codec import points_far_outside
from maskrcnn.thread_warnings import ignoring

__all__ = [
    "as_points", "circle_points", "clip_polygon", "ellipse_points", "numbers", "rectangle_points",
    "scale_region", "to_coco_polygon", "turn_points", "turn_region",
]

_CURVE_TOLERANCE = 0.25  # pixels between a curve and the chords that replace it
_MIN_CURVE_VERTICES = 40  # fewer and the chords' lost area is a bias of over 0.5% on every round object


def as_points(raw, *, what: str = "points") -> np.ndarray:
    """A list of [x, y] pairs -> (P, 2) float64, or Skip naming what is wrong with it."""
    if not isinstance(raw, (list, tuple)) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in raw
    ):
        raise Skip("bad_shape", f"{what} must be a list of [x, y] pairs")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for p in raw for v in p):
        raise Skip("bad_shape", f"{what} must be numbers")
    points = np.asarray(raw, dtype=np.float64).reshape(-1, 2)  # (P, 2)
    if not np.isfinite(points).all():
        raise Skip("bad_coordinates", f"{what} contain NaN or infinite coordinates")
    return points


def numbers(*values, what: str) -> list:
    """``values`` as floats; Skip when one is missing, not a number, NaN or infinite."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise Skip("bad_shape", f"{what} must be numbers")
    if not all(math.isfinite(v) for v in values):
        raise Skip("bad_coordinates", f"{what} contain NaN or infinite values")
    return [float(v) for v in values]


def rectangle_points(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    """The four corners of the axis-aligned box with opposite corners (x1, y1), (x2, y2): (4, 2)."""
    x1, y1, x2, y2 = numbers(x1, y1, x2, y2, what="rectangle corners")
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


def ellipse_points(cx: float, cy: float, rx: float, ry: float, theta: float = 0.0) -> np.ndarray:
    """An ellipse centred at (cx, cy), radii rx, ry, turned by theta radians: (P, 2), P >= 40."""
    cx, cy, rx, ry, theta = numbers(cx, cy, rx, ry, theta, what="ellipse parameters")
    rx, ry = abs(rx), abs(ry)
    r = max(rx, ry)
    if r <= _CURVE_TOLERANCE:
        raise Skip("empty_mask", f"radius {r:g} is too small to cover a pixel")
    # A chord of angle a leaves a gap r (1 - cos(a / 2)); keep it under the tolerance. The n-gon has
    # n sin(2 pi / n) / (2 pi) of the ellipse's area, always too little: 40 vertices keep it over 99.5%.
    # (Vertices stay on the curve, n a multiple of 4, so the box of an unturned ellipse is exact.)
    n = max(_MIN_CURVE_VERTICES, math.ceil(math.pi / math.acos(1.0 - _CURVE_TOLERANCE / r)))
    n = 4 * math.ceil(n / 4)
    t = np.arange(n) * (2.0 * math.pi / n)
    c, s = math.cos(theta), math.sin(theta)
    x, y = rx * np.cos(t), ry * np.sin(t)
    return np.stack([cx + x * c - y * s, cy + x * s + y * c], axis=1)  # (P, 2)


def circle_points(cx: float, cy: float, r: float) -> np.ndarray:
    return ellipse_points(cx, cy, r, r)


def _clip_half_plane(pts: list, axis: int, bound: float, keep_below: bool) -> list:
    """The polygon ``pts`` cut by the line coordinate[axis] == bound, keeping one side."""

    def inside(p):
        return p[axis] <= bound if keep_below else p[axis] >= bound

    def crossing(p, q):
        t = (bound - p[axis]) / (q[axis] - p[axis])
        point = [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]
        point[axis] = bound  # exactly on the border, whatever the rounding
        return tuple(point)

    out = []
    for k, cur in enumerate(pts):
        prev = pts[k - 1]
        if inside(cur):
            if not inside(prev):
                out.append(crossing(prev, cur))
            out.append(cur)
        elif inside(prev):
            out.append(crossing(prev, cur))
    return out


# px²: below it a polygon is a line (collinear points whose area is float rounding)
_LINE_AREA = 1e-9


def clip_polygon(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """The part of a polygon inside [0, width] x [0, height] (Sutherland-Hodgman: the clip region is
    convex, so one pass per border is exact even for concave polygons). (P, 2) -> (Q, 2), Q may be 0."""
    pts = [tuple(p) for p in points]
    for axis, bound, keep_below in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        pts = _clip_half_plane(pts, axis, bound, keep_below) if pts else pts
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def _area(points: np.ndarray) -> float:
    # Shoelace on coordinates relative to the first point, term by term: two whole-array dot products
    # summed in SIMD order left a collinear polygon an area of 1e-15 on some CPUs (AVX2), not 0.
    x, y = points[:, 0] - points[0, 0], points[:, 1] - points[0, 1]
    return 0.5 * abs(float(np.sum(x * np.roll(y, -1) - y * np.roll(x, -1))))


def _covers_pixels(points: np.ndarray, width: int, height: int) -> bool:
    """Whether the polygon covers a pixel as the COCO loader draws it (pycocotools): a self-crossing
    bow-tie whose two lobes are equal has a signed area of 0 but the pixels of both lobes."""
    with ignoring(DeprecationWarning):  # pycocotools' numpy 2 DeprecationWarning is not ours to show
        rle = mask_utils.frPyObjects([[float(v) for v in points.reshape(-1)]], int(height), int(width))
        return int(mask_utils.area(rle).sum()) > 0


def to_coco_polygon(points: np.ndarray, width: int, height: int, *, decimals: int = 2) -> list:
    """A polygon as COCO writes it, [x1, y1, x2, y2, ...], clipped to the image and rounded to
    ``decimals`` places; Skip when it has under 3 points, a point far outside the image (as the COCO
    loader refuses it: ``mask_codec.points_far_outside``) or nothing of it inside the image."""
    if len(points) < 3:
        raise Skip("few_points", f"polygon has {len(points)} point(s), at least 3 are needed")
    # Clipping a shape reaching far out would silently make another one (a mistyped 90000 turns a
    # triangle into the image's rectangle): refused by the rule COCO files are checked with.
    far = points_far_outside(points[:, 0], points[:, 1], int(height), int(width))
    if far:
        raise Skip("bad_coordinates", far)
    clipped = np.round(clip_polygon(points, float(width), float(height)), decimals)  # (Q, 2)
    if len(clipped) < 3 or (_area(clipped) <= _LINE_AREA and not _covers_pixels(clipped, width, height)):
        raise Skip("empty_mask", f"polygon lies outside the {width}x{height} image or has no area")
    return [float(v) for v in clipped.reshape(-1)]


def turn_points(points: np.ndarray, *, orientation: int, stored: tuple) -> np.ndarray:
    """(P, 2) pixel-edge (x, y) points on an image's stored pixels, ``stored`` (H, W) -> the same points
    on the image turned upright by its EXIF ``orientation``, as ``read_image`` turns it (PIL's
    ``exif_transpose``): (P, 2)."""
    h, w = stored
    x, y = points[:, 0], points[:, 1]
    turned = {
        2: (w - x, y),  # mirrored left-right
        3: (w - x, h - y),  # turned 180 degrees
        4: (x, h - y),  # mirrored top-bottom
        5: (y, x),  # transposed
        6: (h - y, x),  # turned a quarter clockwise
        7: (h - y, w - x),  # transversed
        8: (y, w - x),  # turned a quarter counter-clockwise
    }.get(orientation, (x, y))
    return np.stack(turned, axis=1).astype(np.float64)


def turn_region(region, *, orientation: int, stored: tuple):
    """A region on an image's stored pixels (``stored`` (H, W)): a COCO polygon [x1, y1, ...] or a
    ``MaskPatch`` -> the same region on the image turned upright by its EXIF ``orientation``."""
    if not isinstance(region, MaskPatch):
        points = np.asarray(region, dtype=np.float64).reshape(-1, 2)  # (P, 2)
        return [float(v) for v in turn_points(points, orientation=orientation, stored=stored).reshape(-1)]
    h, w = region.patch.shape
    corners = np.array([[region.left, region.top], [region.left + w, region.top + h]], dtype=np.float64)
    left, top = turn_points(corners, orientation=orientation, stored=stored).min(axis=0).astype(int).tolist()
    return MaskPatch(top, left, turn_array(region.patch, orientation))


def scale_region(region, *, scale: tuple, width: int, height: int):
    """A region drawn on an image of another size (a COCO polygon [x1, y1, ...] or a ``MaskPatch``) ->
    the same region on the W x H image, its x times ``scale[0]`` and its y times ``scale[1]``; a mask's
    pixels are taken nearest (each pixel of the W x H image takes the drawn pixel under its centre);
    Skip when nothing of a mask is left."""
    sx, sy = scale
    if not isinstance(region, MaskPatch):
        points = np.asarray(region, dtype=np.float64).reshape(-1, 2) * (sx, sy)  # (P, 2)
        return [float(v) for v in np.round(points, 2).reshape(-1)]
    h, w = region.patch.shape
    # the image's rows whose centres fall on the drawn patch (those past it read nothing: not its edge row)
    rows, top = nearest_indices(region.top, h, scale=sy, size=height)
    cols, left = nearest_indices(region.left, w, scale=sx, size=width)
    patch = region.patch[np.ix_(rows, cols)]  # (len(rows), len(cols))
    if not patch.any() and region.patch.any():
        # a stroke thinner than a pixel of the image (a crack or a wire drawn on a larger original) can
        # fall between the sampled centres: it is kept as the image's pixels it passes through instead
        top, left, patch = _pooled(region, sx, sy, width, height)
    if not patch.any():
        raise Skip("empty_mask", f"mask covers no pixel of the {width}x{height} image once scaled")
    return MaskPatch(top, left, patch)


def _pooled(region, sx: float, sy: float, width: int, height: int) -> tuple:
    """``(top, left, patch)``: each pixel of the W x H image that any drawn pixel of ``region`` falls in
    (the pixel's footprint on the drawing, ``[i / scale, (i + 1) / scale)``, holds one)."""
    def spans(start, length, scale, size):  # (first image pixel, drawn [lo, hi) of each)
        first = min(max(math.floor(start * scale), 0), size)
        idx = np.arange(first, min(max(math.ceil((start + length) * scale), first), size))
        lo = np.clip(np.floor(idx / scale).astype(np.int64) - start, 0, length)
        hi = np.clip(np.ceil((idx + 1) / scale).astype(np.int64) - start, 0, length)
        return first, lo, hi

    h, w = region.patch.shape
    top, r_lo, r_hi = spans(region.top, h, sy, height)
    left, c_lo, c_hi = spans(region.left, w, sx, width)
    sums = np.zeros((h + 1, w + 1), np.int64)  # summed-area table: any pixel in a span = a positive sum
    sums[1:, 1:] = region.patch.astype(np.int64).cumsum(0).cumsum(1)
    inside = (sums[r_hi][:, c_hi] - sums[r_lo][:, c_hi] - sums[r_hi][:, c_lo] + sums[r_lo][:, c_lo])
    return top, left, inside > 0


def nearest_indices(start: int, length: int, *, scale: float, size: int) -> tuple:
    """(indices (N,) into ``length`` drawn pixels that begin at pixel ``start`` of the drawing, the first
    pixel of a ``size``-pixel image they fill): nearest resampling along one axis, the image ``scale`` times
    the drawing, each image pixel the drawn pixel under its centre (pixel ``i`` of the image is pixel
    ``(i + 0.5) / scale`` of the drawing). Only the image pixels whose centres fall on the drawn ones are
    listed, so a region keeps its scaled extent and area. The one sampler of masks and ids scaled to an
    image (``scale_region``, the Cityscapes ids, the Label Studio brush)."""
    first = max(math.floor(start * scale) - 1, 0)  # a pixel of slack each side for the rounding
    last = min(math.ceil((start + length) * scale) + 1, size)
    source = np.floor((np.arange(first, max(last, first)) + 0.5) / scale).astype(np.int64) - start  # (N,)
    inside = np.flatnonzero((source >= 0) & (source < length))
    if not len(inside):
        return source[:0], first
    return source[inside[0]: inside[-1] + 1], first + int(inside[0])


def turn_array(a: np.ndarray, orientation: int) -> np.ndarray:
    """A (H, W) array of an image's stored pixels -> the same turned upright by its EXIF ``orientation``
    (what ``ImageOps.exif_transpose``, and so ``read_image``, does to the pixels; 1 or unknown: as is)."""
    turned = {2: a[:, ::-1], 3: a[::-1, ::-1], 4: a[::-1, :], 5: a.T, 6: a.T[:, ::-1], 7: a.T[::-1, ::-1],
              8: a.T[::-1, :]}.get(orientation, a)
    return np.ascontiguousarray(turned)
