"""COCO instance-mask codec: segmentations (polygons, compressed or uncompressed RLE) to bitmaps,
bitmaps to compressed RLE.

Shapes: M instance masks (M, H, W) at image size, H x W an image; RLE runs are column-major and
start with a run of zeros (COCO's convention).

Decoding validates what a hand-written annotation file can get wrong (sizes, truncated or
out-of-range counts, short polygons) and raises ValueError with the reason, so that a dataset can
skip the annotation and say why. ``segmentation_problem`` is that validation alone, as a pure
function: anything handed to pycocotools' C code (a dataset, a ground truth, a results file) passes it
first, because pycocotools trusts its input: polygon coordinates far outside the image make it
allocate without bound (a fatal signal), uncompressed counts that overflow 32 bits or that cover more
pixels than ``size`` read past its buffers or loop for ever. Encoding converts bounded chunks of masks
per pycocotools call. ``decode_rle_window`` decodes one window of a mask (an instance's box) from its
runs, in memory of the window's columns at full height, never the whole image.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import pycocotools.mask as mask_utils
import torch

from maskrcnn.data.json_values import is_int, is_whole
from maskrcnn.thread_warnings import ignoring

__all__ = [
    "annotation_to_mask", "compress_runs", "decode_rle_window", "is_empty_segmentation", "mask_to_rle",
    "masks_to_rles", "points_far_outside",
    "rle_counts_from_string", "row_windows_to_runs", "segmentation_problem",
]

# Polygon vertices may lie outside the image (annotation tools round, users drag past the border), but
# not further than this many image sizes: pycocotools rasterises the whole polygon at 5x resolution.
_POLYGON_MARGIN = 1.0


def rle_counts_from_string(counts: Union[str, bytes]) -> np.ndarray:
    """Run lengths (int64) from COCO's compressed RLE string (6 bits a character, offset 48, runs after
    the second stored as differences to the run two before)."""
    if isinstance(counts, str):
        counts = counts.encode("ascii", errors="replace")
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("compressed RLE counts contain characters outside the encoding's range")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("compressed RLE counts are truncated (last value unfinished)")
    ends = np.flatnonzero(~more)  # index of each value's last character
    starts = np.concatenate([[0], ends[:-1] + 1])
    group = np.repeat(np.arange(ends.size), ends - starts + 1)  # value index of each character
    k = np.arange(c.size) - starts[group]  # position of the character within its value
    if k.max() > 11:
        raise ValueError("compressed RLE counts hold a value too large for any image")
    values = np.zeros(ends.size, dtype=np.int64)
    np.add.at(values, group, (c & 0x1F) << (5 * k))
    negative = (c[ends] & 0x10) != 0  # sign bit of each value's last character
    values[negative] -= np.int64(1) << (5 * (ends - starts + 1)[negative])
    counts_out = values.copy()
    counts_out[1::2] = np.cumsum(values[1::2])  # odd runs: differences from two before, from run 1 on
    if values.size > 2:
        counts_out[2::2] = np.cumsum(values[2::2])  # even runs from run 2 on (run 0 is absolute)
    return counts_out


def _runs_of(counts) -> np.ndarray:
    """int64 run lengths of an RLE's ``counts``: compressed (str or bytes), uncompressed (a list of ints)
    or an integer array already."""
    if isinstance(counts, (str, bytes)):
        return rle_counts_from_string(counts)
    if isinstance(counts, np.ndarray) and np.issubdtype(counts.dtype, np.integer):
        return counts.astype(np.int64, copy=False)
    if isinstance(counts, (list, tuple)):
        if not all(is_int(v) for v in counts):
            raise ValueError("uncompressed RLE counts must be integers")
        return np.asarray(counts, dtype=np.int64)
    raise ValueError(f"RLE counts must be a string or a list, got {type(counts).__name__}")


def _decode_counts(counts: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 from run lengths (column-major, starting with a run of zeros)."""
    if counts.size and counts.min() < 0:
        raise ValueError("RLE counts contain a negative run length")
    total = int(counts.sum())
    if total != height * width:
        raise ValueError(f"RLE counts cover {total} pixels, the mask has {height}x{width}={height * width}")
    values = (np.arange(counts.size) % 2).astype(np.uint8)
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(width, height).T)  # column-major runs -> (H, W)


def _check_rle_size(size, height: int, width: int) -> None:
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"RLE 'size' must be [height, width], got {size!r}")
    if int(size[0]) != height or int(size[1]) != width:
        raise ValueError(f"RLE size {list(size)} does not match the image size [{height}, {width}]")


_PLAIN_NUMBERS = frozenset({int, float})  # bool is a subclass of int, not int itself: left out


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _rle_problem(seg: dict, height: int, width: int, check_size: bool) -> Optional[str]:
    if "counts" not in seg or "size" not in seg:
        return "RLE segmentation needs 'counts' and 'size'"
    size = seg["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_whole(v) for v in size)):
        return f"RLE 'size' must be [height, width] integers, got {str(size)[:60]}"
    if check_size and (int(size[0]), int(size[1])) != (height, width):
        return f"RLE size {list(size)} does not match the image size [{height}, {width}]"
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        return f"RLE size {list(size)} is not positive"
    counts = seg["counts"]
    if isinstance(counts, (str, bytes)):
        try:
            runs = rle_counts_from_string(counts)
        except ValueError as e:
            return str(e)
    elif isinstance(counts, (list, tuple)):
        if not all(is_int(v) for v in counts):
            return "uncompressed RLE counts must be integers"
        if any(v < 0 or v >= 1 << 32 for v in counts):
            return "uncompressed RLE counts must lie in 0..2**32-1"
        runs = np.asarray(counts, dtype=np.int64)
    else:
        return f"RLE counts must be a string or a list, got {type(counts).__name__}"
    if runs.size and runs.min() < 0:
        return "RLE counts contain a negative run length"
    total = int(runs.sum())
    if total != h * w:
        return f"RLE counts cover {total} pixels, the mask has {h}x{w}={h * w}"
    return None


def points_far_outside(xs: np.ndarray, ys: np.ndarray, height: int, width: int) -> Optional[str]:
    """Why polygon vertices (``xs``, ``ys``: (P,) finite floats, P >= 1) are refused: some lie more than
    ``_POLYGON_MARGIN`` image sizes outside the ``width`` x ``height`` image (None when none does). The
    one rule for COCO files and for the converters, which would otherwise clip such a shape into a
    different one (a triangle reaching 1e5 pixels out becomes the image's rectangle)."""
    lo_x, hi_x = -_POLYGON_MARGIN * width, (1 + _POLYGON_MARGIN) * width
    lo_y, hi_y = -_POLYGON_MARGIN * height, (1 + _POLYGON_MARGIN) * height
    (x0, x1), (y0, y1) = (float(xs.min()), float(xs.max())), (float(ys.min()), float(ys.max()))
    if x0 < lo_x or x1 > hi_x or y0 < lo_y or y1 > hi_y:
        return (f"polygon coordinates reach ({x0:.4g}..{x1:.4g}, {y0:.4g}..{y1:.4g}), far outside "
                f"the {width}x{height} image")
    return None


def _polygon_problem(seg: list, height: int, width: int) -> Optional[str]:
    good = 0
    if seg and all(_is_number(v) for v in seg):  # [x1, y1, ...]: one polygon not wrapped in a list
        return ("segmentation must be a list of polygons [[x1, y1, x2, y2, ...], ...]; this is a list of "
                "numbers (a polygon not wrapped in a list)")
    if seg and all(isinstance(p, (list, tuple)) and not p for p in seg):
        return ("segmentation holds only empty polygons ([[]]: a shape without points, as VIA 3 exports "
                "circles, ellipses and points)")
    for poly in seg:
        if not isinstance(poly, (list, tuple)) or len(poly) % 2:
            return "a polygon must be a flat list [x1, y1, x2, y2, ...] of even length"
        # JSON gives plain ints and floats: their types are checked at C speed and the values with numpy
        # (per coordinate in Python this was most of a COCO file's load time); anything else one by one
        if not set(map(type, poly)) <= _PLAIN_NUMBERS and not all(_is_number(v) for v in poly):
            return "polygon coordinates must be finite numbers"
        try:
            coords = np.asarray(poly, dtype=np.float64)  # (2P,)
        except OverflowError:  # an integer beyond float range
            return "polygon coordinates must be finite numbers"
        if not np.isfinite(coords).all():
            return "polygon coordinates must be finite numbers"
        if len(coords):
            far = points_far_outside(coords[0::2], coords[1::2], height, width)
            if far:
                return far
        good += len(poly) >= 6
    return None if good else "segmentation has no polygon with at least 3 points"


def is_empty_segmentation(segmentation) -> bool:
    """None (or absent, read with ``.get``), ``[]`` or ``{}``: an annotation with a box and no
    segmentation (CVAT's, Label Studio's and Roboflow's rectangles write ``[]``). The one definition for
    the dataset (its box stands in for the mask) and the evaluator (nothing to check)."""
    return segmentation is None or (isinstance(segmentation, (list, dict)) and not segmentation)


def segmentation_problem(segmentation, height: int, width: int, *, check_size: bool = True) -> Optional[str]:
    """Why a COCO ``segmentation`` cannot be decoded at ``height`` x ``width`` (None when it can).

    Pure and cheap (compressed counts are decoded with numpy, never with pycocotools): polygons must be
    flat lists of finite numbers within one image size of the image; RLE needs a positive integer
    ``size`` (equal to the image's unless ``check_size`` is False), counts that are non-negative,
    fit in 32 bits and cover exactly ``size``'s pixels."""
    if isinstance(segmentation, dict):
        return _rle_problem(segmentation, int(height), int(width), check_size)
    if isinstance(segmentation, (list, tuple)):
        return _polygon_problem(segmentation, int(height), int(width))
    return f"segmentation must be a list of polygons or an RLE dict, not {type(segmentation).__name__}"


def annotation_to_mask(segmentation, height: int, width: int) -> torch.Tensor:
    """A COCO ``segmentation`` (polygons, compressed RLE or uncompressed RLE) as an (H, W) uint8 mask.

    Polygons with fewer than 3 points are dropped (as detectron2 does); raises ValueError when nothing
    valid remains or the RLE is malformed, so that callers can skip the annotation with a reason.
    """
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    problem = segmentation_problem(segmentation, height, width)
    if problem:
        raise ValueError(problem)
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise ValueError("RLE segmentation needs 'counts' and 'size'")
        _check_rle_size(segmentation["size"], height, width)
        return torch.from_numpy(_decode_counts(_runs_of(segmentation["counts"]), height, width))
    if isinstance(segmentation, (list, tuple)):
        polygons = []
        for poly in segmentation:
            if not isinstance(poly, (list, tuple)) or len(poly) % 2:
                raise ValueError("a polygon must be a flat list [x1, y1, x2, y2, ...] of even length")
            if len(poly) < 6:
                continue  # a point or a line covers no area
            coords = np.asarray(poly, dtype=np.float64)
            if not np.isfinite(coords).all():
                raise ValueError("polygon coordinates must be finite numbers")
            polygons.append(coords.tolist())
        if not polygons:
            raise ValueError("segmentation has no polygon with at least 3 points")
        with ignoring(DeprecationWarning):  # pycocotools' numpy 2 DeprecationWarning is not ours to show
            rles = mask_utils.frPyObjects(polygons, height, width)
            decoded = mask_utils.decode(mask_utils.merge(rles))
        return torch.from_numpy(np.ascontiguousarray(decoded))
    raise ValueError(
        f"segmentation must be a list of polygons or an RLE dict, got {type(segmentation).__name__}"
    )


def decode_rle_window(rle: dict, left: int, top: int, width: int, height: int) -> np.ndarray:
    """(height, width) bool: the window of columns ``left``.. and rows ``top``.. of a COCO RLE mask
    (compressed or uncompressed ``counts``, ``size`` [H, W]), decoded from its runs without the (H, W)
    mask: a box of a 48-megapixel photo costs the box's columns at full height. Parts of the window
    outside the image are 0.

    Runs are column-major (pixel p is column p // H, row p % H), so the window's columns c0..c1 are the
    pixels [c0 * H, c1 * H): the runs clipped to them, expanded, are those columns top to bottom."""
    big_h, big_w = (int(v) for v in rle["size"])
    left, top, width, height = int(left), int(top), max(int(width), 0), max(int(height), 0)
    runs = _runs_of(rle["counts"])
    if runs.size and runs.min() < 0:
        raise ValueError("RLE counts contain a negative run length")
    if runs.size and int(runs.sum()) != big_h * big_w:
        raise ValueError(f"RLE counts cover {int(runs.sum())} pixels, the mask has {big_h}x{big_w}")
    out = np.zeros((height, width), dtype=bool)
    c0, c1 = min(max(left, 0), big_w), min(max(left + width, 0), big_w)  # the window's columns in the image
    r0, r1 = min(max(top, 0), big_h), min(max(top + height, 0), big_h)  # and rows
    if runs.size == 0 or c1 <= c0 or r1 <= r0:
        return out
    ends = np.cumsum(runs)
    lengths = np.clip(ends, c0 * big_h, c1 * big_h) - np.clip(ends - runs, c0 * big_h, c1 * big_h)
    values = np.arange(runs.size) % 2 == 1  # runs alternate zeros, ones
    columns = np.repeat(values, lengths).reshape(c1 - c0, big_h).T  # (H, c1 - c0)
    out[r0 - top:r1 - top, c0 - left:c1 - left] = columns[r0:r1]
    return out


# Masks converted per pycocotools call: bounds the temporary (n, W, H) copy to ~128 MB whatever the
# image size (100 full-size masks of a 12-megapixel photo are 1.2 GB).
_RLE_CHUNK_PIXELS = 1 << 27


def masks_to_rles(masks: torch.Tensor) -> list:
    """COCO compressed RLE dicts ({"size": [H, W], "counts": str}) for (D, H, W) masks (> 0 is on)."""
    if masks.dim() != 3:
        raise ValueError(f"masks must be (D, H, W), got shape {tuple(masks.shape)}")
    d, h, w = masks.shape
    per_call = max(1, _RLE_CHUNK_PIXELS // max(h * w, 1))
    out = []
    for start in range(0, d, per_call):
        chunk = masks[start : start + per_call]
        chunk = chunk if chunk.dtype == torch.bool else chunk > 0
        # pycocotools reads (H, W, n) uint8 in Fortran order, which is (n, W, H) in C order: one
        # transposing copy, then a zero-copy view (bool and uint8 share their byte layout)
        cwh = chunk.transpose(1, 2).contiguous().cpu().view(torch.uint8)  # (n, W, H)
        array = cwh.numpy().transpose(2, 1, 0)  # (H, W, n), Fortran-contiguous
        with ignoring(DeprecationWarning):  # pycocotools' numpy 2 DeprecationWarning
            rles = mask_utils.encode(array)
        out.extend({"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
                   for r in rles)
    return out


def mask_to_rle(mask: torch.Tensor) -> dict:
    """COCO compressed RLE ({"size": [H, W], "counts": str}) of one (H, W) mask."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    return masks_to_rles(mask[None])[0]


def row_windows_to_runs(windows: torch.Tensor, first_rows: torch.Tensor, height: int) -> list:
    """COCO run lengths of full-image masks that are zero outside a band of consecutive rows, from the
    bands alone: windows (B, L, W) bool, band b covering image rows [first_rows[b], first_rows[b] + L)
    of an H x W image. Returns B int64 arrays (column-major runs starting with zeros, as
    ``mask_utils.encode`` counts them), without building an H x W mask.

    In column-major order column c of the image is ``[0] * y0 + window[:, c] + [0] * (H - y0 - L)``,
    so the runs change only inside a band's columns: with one zero cell padded above and below each
    column, a change between padded cells j and j + 1 of column c starts a run at pixel c * H + y0 + j.
    When the band spans the whole height (L == H) the padding cells are not real pixels: a run of ones
    ending at the bottom of column c and one starting at the top of column c + 1 give two changes at
    the same pixel, which cancel."""
    n, length, width = windows.shape
    total = height * width
    if n == 0:
        return []
    first = first_rows.to(torch.int64)
    # Changes down each column, found in the bands' own (B, L, W) layout (no transposed copy): at the
    # top padding (j = 0), between rows j - 1 and j, at the bottom padding (j = L).
    b0, c0 = torch.nonzero(windows[:, 0, :], as_tuple=True)
    bi, ji, ci = torch.nonzero(windows[:, 1:, :] ^ windows[:, :-1, :], as_tuple=True)
    b1, c1 = torch.nonzero(windows[:, -1, :], as_tuple=True)
    b = torch.cat([b0, bi, b1])
    pos = torch.cat([c0 * height, ci * height + ji + 1, c1 * height + length]) + first[b]  # (T,)
    key, _ = torch.sort(b * (total + 1) + pos)  # (T,) per band, in pixel order; cancelling pairs equal
    key, count = torch.unique_consecutive(key, return_counts=True)
    key = key[count == 1]
    b, pos = key // (total + 1), key % (total + 1)
    keep = pos < total  # a change "at" pixel H * W (the last column's bottom padding) starts nothing
    b, pos = b[keep].numpy(), pos[keep].numpy()
    splits = np.searchsorted(b, np.arange(1, n))
    out = []
    for starts in np.split(pos, splits):
        out.append(np.diff(np.concatenate([[0], starts, [total]])).astype(np.int64))
    return out


def compress_runs(runs: list, height: int, width: int) -> list:
    """COCO compressed RLE dicts ({"size": [H, W], "counts": str}) from run-length arrays (pycocotools'
    own string compression)."""
    if not runs:
        return []
    with ignoring(DeprecationWarning):  # pycocotools' numpy 2 DeprecationWarning
        rles = mask_utils.frPyObjects(
            [{"size": [height, width], "counts": r.tolist()} for r in runs], height, width
        )
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
            for r in rles]
