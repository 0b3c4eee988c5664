"""Tiled (sliced) prediction for large images with small objects: the tile grid, detections mapped
from a tile to the image, and the merging of all tiles' (and the whole image's) detections. Pure
functions; ``Predictor`` (``predictor.py``) runs the model on the tiles and calls them.

Shapes: H x W the image, T tiles, D detections (of one tile, or pooled from all), J keypoints,
h x w one detection's box-local mask bitmap, S the mask head's resolution (28). Windows are a tile's
integer rectangle, xyxy in image pixels ([x0, x1) x [y0, y1)); boxes are xyxy float in image pixels.

Why: the model resizes every image to ``input.min_size_test`` / ``max_size_test`` (800 / 1333), so a
20-pixel object in an 8000-pixel photo shrinks to 2 pixels and vanishes. Tiles of ``size`` pixels
overlapping by ``overlap`` are each run at the model's usual resize (or at ``scale``), plus, with
``full_image``, the whole image at its usual resize for the objects larger than a tile.

The grid (``tile_grid``): per axis n = ceil((L - size) / stride) + 1 tiles of ``size`` pixels spread
evenly from 0 to L - size, so the first and last are aligned to the image's edges (never padded beyond
them) and every overlap is at least the requested one. An image no larger than a tile is one tile.

Merging (``merge_detections``), class by class, never across classes:
- A detection is **cut** when its box reaches (within ``edge_margin`` pixels) an interior edge of its
  tile, one that is not the image's border: its box then covers only the part of the object the tile
  saw, and its mask ends at the cut. The whole image's detections are never cut.
- Two detections of different sources (tiles, the whole image) *match* when, of two whole (uncut)
  detections, their IoU reaches ``match_thresh`` (duplicates in an overlap); when one is cut, their
  intersection over the larger one reaches it, both clipped to the window the two sources share: the
  only region both saw, where a piece and the whole object, or two pieces, coincide, so each covers most
  of the other there. Over the larger, not the smaller: a separate smaller object of the same class in
  front of a large one (a child before an adult, a box on a box), cut by a tile edge or lying where the
  large one's piece is, is covered by the large one's mask (whole-image masks are coarse and fill the
  silhouette) but covers only a little of the large one's part of the window, so it stays its own
  detection instead of being absorbed, or absorbing a piece of the large one; a real piece coincides
  with the other's part whatever their sizes. Masks are compared
  when the model has them (two nearby objects whose boxes overlap stay apart), boxes otherwise. Two
  detections of one source never match: the model's own NMS kept both, so they are two objects, and a
  group takes at most one detection from each source (the best matching), so a small object lying
  inside a large one's box is not swallowed.
- A match is undone where the two contradict each other at a tile edge (``_contradicted``): one's
  source saw up to the edge and neither its mask nor its box comes near it (both stop 2 x
  ceil(``edge_margin``) + 1 pixels or more short, and two cells of its mask, box side / 28, when those
  are more: a cut piece's mask often fades a cell or a few pixels short of the cut while its box
  reaches it), while the other's source saw across it and its mask runs on well beyond it: more than
  ``edge_margin`` pixels past the edge, at as many positions along the edge as that allowance and at
  a quarter or more of its own extent along it (a thin neck or limb, a stray pixel or a mask bleeding
  over the edge is no evidence: one object's view could have missed it). Where the evidence is
  weaker the two stay matched, so an occluder whose mask stops within the allowance of the edge is
  glued as before. In the shared window an occluder and the occluded object's piece can
  coincide, so the overlap alone would glue an object a tile saw whole (flagged cut only because its
  box came within the margin of an edge) to another object's pieces; one object's views continue each
  other across the cuts. Such a pair never ends up in one group, not even through chains of pieces or
  under a whole-image leader (which then takes the better matching of the two). Only tiles are
  compared so: the whole image's coarse masks may run a few pixels past a tile edge.
- Groups are led by the best whole detection (uncut first, then by score): a whole detection absorbs
  its matches and is **kept as it is** (box, mask, score): it already saw the object entirely, at a
  tile's resolution or the whole image's, and a union with cut pieces would only add their errors at
  the cut (masks there bleed or stop short) and inflate the mask. The cut detections nobody absorbed
  are grouped by chains of matches (an object wider than a tile is cut in several tiles) and merged:
  the **union** of their masks, the box enclosing their boxes, the highest score, each keypoint from
  the piece most sure of it; the union is then the only view of the whole object there is.
- At the end the best ``detections_per_image`` by score are kept (``cap_note``: the Predictor says
  once when that drops detections, and how to raise it; ``tile_cap``: the same facts as numbers, which
  the Predictor records per image, ``Predictor.tile_caps``).

The overlap must share at least one pixel (``TileOptions`` refuses less: a cut object's pieces are
matched only there, so none would ever join); under ``MIN_OVERLAP_PIXELS`` it is worth a warning
(``overlap_note``, said by the commands for a given ``--tile-overlap``).

The overlaps are computed for all candidate pairs at once (``_pair_overlaps``; candidates: same class,
different sources, boxes meeting inside the shared window, found class by class in row chunks, never a
D x D matrix): boxes as float64 tensors, masks as pixel counts gathered from one flat buffer of the
bitmaps (each pair's overlap rectangle, in chunks of ``PAIR_PIXELS`` pixels) and summed-area tables
(a mask's pixels inside a window), so that no Python loop runs per pair; the numbers, and so the
merges, are those of the definition pair by pair, bit for bit (``tests/engine/test_tiling.py``).

Masks stay compact throughout: each detection holds a bool bitmap of its mask's own extent and its
origin in the image (a 48 MP image with hundreds of detections never holds an image-sized mask per
detection); ``local_masks_to_dense`` / ``local_masks_to_rles`` give the Predictor's usual outputs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

__all__ = [
    "TileOptions", "TooManyTiles", "MIN_OVERLAP_PIXELS", "overlap_note", "as_tile_options", "axis_starts",
    "axis_count", "check_tile_count", "MANY_TILES", "tile_count_note", "tile_grid",
    "cut_flags", "local_masks", "shift_to_image", "concat_pools", "merge_detections", "TileCap",
    "tile_cap", "cap_note",
    "top_detections",
    "local_masks_to_dense", "local_masks_to_rles",
]


@dataclass(frozen=True)
class TileOptions:
    """How ``Predictor`` tiles an image.

    Args:
        size: tile side in the image's pixels, an integer >= 32 (tiles are ``size`` x ``size``, smaller
            only where the image is).
        overlap: fraction of a tile shared with its neighbour, in (0, 1) (at least this; the grid
            spreads the tiles evenly); one sharing no pixel is refused (cut objects could never be
            joined), one under ``MIN_OVERLAP_PIXELS`` pixels is worth a warning (``overlap_note``).
        full_image: also run the whole image at the usual resize (for objects larger than a tile).
        scale: None runs each tile at the model's usual resize (``input.min_size_test`` /
            ``max_size_test``: a 1024 tile runs at 800); a number resizes each tile by it (1.0: the
            image's own pixels, 2.0: enlarged).
        match_thresh: overlap (IoU of whole detections, intersection over the larger inside the window
            both saw when one is cut) at which detections of different tiles are one object.
        edge_margin: pixels (of the image) within which a box touching an interior tile edge is cut.
        max_tiles: the most tiles one image may be cut into; an image needing more is refused (one line
            with the count), never run for hours unseen (a 0.99 overlap steps a tile by 1 % of its size).
    """

    size: int
    overlap: float = 0.2
    full_image: bool = True
    scale: Optional[float] = None
    match_thresh: float = 0.5
    edge_margin: float = 4.0
    max_tiles: int = 10000

    def __post_init__(self):
        def number(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

        if isinstance(self.size, bool) or not isinstance(self.size, numbers.Integral) or self.size < 32:
            raise ValueError(f"tile size must be an integer >= 32 pixels, got {self.size!r}")
        if not (number(self.overlap) and 0.0 <= self.overlap < 1.0):
            raise ValueError(f"tile overlap must be a fraction in (0, 1), got {self.overlap!r}")
        if isinstance(self.size, numbers.Integral) and round(self.size * self.overlap) < 1:
            # pieces of a cut object are matched inside the region both tiles saw: with none, every
            # object on a tile edge would come out as two halves
            raise ValueError(f"tile overlap {self.overlap!r} of a {self.size}-pixel tile shares no pixel "
                             "with its neighbour: objects cut by a tile edge could never be joined "
                             f"(halves in the output); the default 0.2 shares {round(self.size * 0.2)} "
                             "pixels")
        if self.scale is not None and not (number(self.scale) and self.scale > 0):
            raise ValueError(f"tile scale must be a positive number or None, got {self.scale!r}")
        if not (number(self.match_thresh) and 0.0 < self.match_thresh <= 1.0):
            raise ValueError(f"tile match_thresh must be in (0, 1], got {self.match_thresh!r}")
        if not (number(self.edge_margin) and self.edge_margin >= 0):
            raise ValueError(f"tile edge_margin must be a number >= 0, got {self.edge_margin!r}")
        if isinstance(self.max_tiles, bool) or not isinstance(self.max_tiles, numbers.Integral) \
                or self.max_tiles < 1:
            raise ValueError(f"tile max_tiles must be an integer >= 1, got {self.max_tiles!r}")


# The least overlap, in image pixels, worth having: a cut object's pieces are matched inside the strip
# both tiles saw, and a strip thinner than the smallest objects the model finds (its smallest anchors
# are 32 pixels) holds too little of them to match on (``overlap_note``).
MIN_OVERLAP_PIXELS = 32

# The mask head's resolution by default (2 x model.roi_heads.mask_pool_size): one cell of a detection's
# mask is its box's side / this many pixels (``_short_of``).
MASK_RESOLUTION = 28


def overlap_note(options: TileOptions) -> Optional[str]:
    """A warning's text when the tiles of ``options`` share fewer than ``MIN_OVERLAP_PIXELS`` pixels with
    their neighbours (an object wider than that, cut by a tile edge, may come out as halves); None
    otherwise."""
    shared = round(options.size * options.overlap)
    if shared >= MIN_OVERLAP_PIXELS:
        return None
    return (f"tiles of {options.size} pixels overlapping by {options.overlap:g} share only {shared} pixel(s) "
            "with their neighbours: an object cut by a tile edge is joined only from what both tiles saw "
            f"there, so objects wider than that may come out as halves; {_overlap_advice(options.size)}")


def _overlap_advice(size: int) -> str:
    """The overlap sharing ``MIN_OVERLAP_PIXELS`` pixels, or larger tiles where none below 1 does."""
    least = math.ceil(MIN_OVERLAP_PIXELS * 100 / size) / 100  # rounded up to a percent
    if least < 1:
        return f"an overlap of at least {least:g} ({MIN_OVERLAP_PIXELS} pixels) joins them"
    return f"use tiles larger than {MIN_OVERLAP_PIXELS} pixels with an overlap of {MIN_OVERLAP_PIXELS} pixels"


def as_tile_options(tile: Union[None, int, TileOptions]) -> Optional[TileOptions]:
    """None (no tiling), a tile size (default options) or ``TileOptions`` -> TileOptions or None."""
    if tile is None or isinstance(tile, TileOptions):
        return tile
    if isinstance(tile, numbers.Integral) and not isinstance(tile, bool):
        return TileOptions(size=int(tile))
    raise TypeError(f"tile must be None, a tile size in pixels or a TileOptions, got {tile!r}")


# ---------------------------------------------------------------------------------------------
# The grid


def axis_starts(length: int, size: int, overlap: float) -> list:
    """Tile starts along one axis of ``length`` pixels: the first at 0, the last at ``length - size``,
    spread evenly so that neighbours share at least ``overlap * size`` pixels. One tile when the axis
    fits in one."""
    if length <= size:
        return [0]
    n = axis_count(length, size, overlap)
    # evenly spread, integer: overlaps differ by at most one pixel, none below the requested one
    return [((length - size) * i) // (n - 1) for i in range(n)]


def axis_count(length: int, size: int, overlap: float) -> int:
    """How many tiles ``axis_starts`` gives, without listing them."""
    if length <= size:
        return 1
    stride = max(1, size - int(round(size * overlap)))  # the largest step keeping the overlap
    return math.ceil((length - size) / stride) + 1


class TooManyTiles(ValueError):
    """An image needs more tiles than ``TileOptions.max_tiles``: a refusal of this image's settings, not a
    failure of the model (``predict`` reports it as it is, counted under ``reason``, not
    ``prediction_failed``)."""

    reason = "too_many_tiles"


def check_tile_count(height: int, width: int, options: TileOptions) -> int:
    """The number of tiles of an H x W image; ``TooManyTiles`` saying how many (and how to get fewer)
    above ``options.max_tiles``."""
    rows = axis_count(height, options.size, options.overlap)
    cols = axis_count(width, options.size, options.overlap)
    if rows * cols > options.max_tiles:
        raise TooManyTiles(
            f"a {width}x{height} image cut into {options.size}-pixel tiles overlapping by "
            f"{options.overlap:g} takes {rows * cols} tiles ({cols} x {rows}), over the limit of "
            f"{options.max_tiles}: that is {rows * cols} forwards of the model, about {rows * cols} times "
            "one image's prediction time; use larger tiles or a smaller overlap (or raise the limit: "
            "--tile-max-tiles / max_tiles)")
    return rows * cols


# A tile count worth a warning (``tile_count_note``): each tile is a forward of the model, so a few
# hundred are a few hundred times one image's prediction time; well under ``TileOptions.max_tiles``, which
# refuses, since an overlap near 1 (0.999: one-pixel steps) reaches thousands on a small image.
MANY_TILES = 500


def tile_count_note(height: int, width: int, options: TileOptions) -> Optional[str]:
    """A warning's text when an H x W image takes more than ``MANY_TILES`` tiles (under the limit, so it
    runs): the count, and the overlap (or the tile size) that would take fewer; None otherwise."""
    size, overlap = options.size, options.overlap
    count = axis_count(height, size, overlap) * axis_count(width, size, overlap)
    if count <= MANY_TILES:
        return None
    default = TileOptions.overlap  # the dataclass default, 0.2
    fewer = axis_count(height, size, default) * axis_count(width, size, default)
    if fewer < count:
        advice = f"an overlap of {default:g} takes {fewer}"
    else:
        advice = "larger tiles take fewer"
    return (f"a {width}x{height} image cut into {size}-pixel tiles overlapping by {overlap:g} "
            f"takes {count} tiles: {count} forwards of the model, about {count} times one image's "
            f"prediction time; {advice}")


def tile_grid(height: int, width: int, size: int, overlap: float) -> torch.Tensor:
    """(T, 4) int64 windows xyxy covering the H x W image, row by row; each ``size`` x ``size`` (or the
    image's side where it is smaller)."""
    th, tw = min(size, height), min(size, width)
    windows = [
        [x0, y0, x0 + tw, y0 + th]
        for y0 in axis_starts(height, size, overlap)
        for x0 in axis_starts(width, size, overlap)
    ]
    return torch.tensor(windows, dtype=torch.int64).reshape(-1, 4)


def cut_flags(
    boxes: torch.Tensor, window: Sequence[int], image_hw: Sequence[int], margin: float
) -> torch.Tensor:
    """(D,) bool: whether each box (D, 4), in image pixels, reaches an interior edge of its ``window``
    (an edge that is not the image's border) within ``margin`` pixels, i.e. may be a cut piece."""
    x0, y0, x1, y1 = (int(v) for v in window)
    height, width = int(image_hw[0]), int(image_hw[1])
    cut = torch.zeros(boxes.shape[0], dtype=torch.bool)
    if x0 > 0:
        cut |= boxes[:, 0].cpu() <= x0 + margin
    if y0 > 0:
        cut |= boxes[:, 1].cpu() <= y0 + margin
    if x1 < width:
        cut |= boxes[:, 2].cpu() >= x1 - margin
    if y1 < height:
        cut |= boxes[:, 3].cpu() >= y1 - margin
    return cut


# ---------------------------------------------------------------------------------------------
# Box-local masks


def local_masks(
    mask_probs: torch.Tensor,
    boxes: torch.Tensor,
    image_hw: Sequence[int],
    *,
    method: str = "torchvision",
    threshold: float = 0.5,
) -> tuple:
    """The masks ``paste_masks_in_image(mask_probs, boxes, image_hw, threshold=threshold)`` would paste,
    each cropped to its own extent: ``(origins (D, 2) int64 (y, x), bitmaps: D bool (h, w) tensors)``
    on the CPU. A mask pasting nothing is a (0, 0) bitmap at (0, 0). Never holds an H x W mask per
    detection (chunks of row bands, as ``ops.paste.paste_row_windows`` yields them)."""
    from maskrcnn.ops.paste import paste_row_windows

    n = boxes.shape[0]
    origins = torch.zeros(n, 2, dtype=torch.int64)
    bitmaps = [torch.zeros(0, 0, dtype=torch.bool)] * n
    chunks = paste_row_windows(mask_probs, boxes, image_hw, method=method, threshold=threshold)
    for idx, rows, window in chunks:
        window = window.cpu()  # (B, L, W) bool, rows rows[b] of the image
        cols_on = window.any(dim=1)  # (B, W)
        rows_on = window.any(dim=2)  # (B, L)
        for b, i in enumerate(idx.tolist()):
            xs = torch.nonzero(cols_on[b]).flatten()
            if xs.numel() == 0:
                continue
            ys = torch.nonzero(rows_on[b]).flatten()
            r0, r1, c0, c1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
            bitmaps[i] = window[b, r0:r1, c0:c1].clone()  # (h, w), a copy: the band is dropped
            origins[i] = torch.tensor([int(rows[b, 0]) + r0, c0])
    return origins, bitmaps


def _bitmap_extents(origins: torch.Tensor, bitmaps: list) -> torch.Tensor:
    """(D, 4) int64 xyxy: each box-local bitmap's extent in image pixels."""
    hw = torch.tensor([list(b.shape) for b in bitmaps], dtype=torch.int64).reshape(-1, 2)  # (D, 2) h, w
    x0, y0 = origins[:, 1], origins[:, 0]
    return torch.stack([x0, y0, x0 + hw[:, 1], y0 + hw[:, 0]], dim=1)


def _union_masks(origins: torch.Tensor, bitmaps: list) -> tuple:
    """The union of box-local masks: (origin (2,) int64, bitmap (h, w) over their joint extent)."""
    used = [d for d, b in enumerate(bitmaps) if b.numel() > 0]
    if not used:
        return torch.zeros(2, dtype=torch.int64), torch.zeros(0, 0, dtype=torch.bool)
    extents = _bitmap_extents(origins, bitmaps)[used]  # (U, 4)
    x0, y0 = extents[:, :2].min(dim=0).values.tolist()
    x1, y1 = extents[:, 2:].max(dim=0).values.tolist()
    out = torch.zeros(y1 - y0, x1 - x0, dtype=torch.bool)
    for d, (bx0, by0, bx1, by1) in zip(used, extents.tolist()):
        out[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] |= bitmaps[d]
    return torch.tensor([y0, x0], dtype=torch.int64), out


# ---------------------------------------------------------------------------------------------
# Pools of detections: a dict of ``boxes`` (D, 4) float32, ``scores`` (D,), ``labels`` (D,) int64,
# ``windows`` (D, 4) int64 (the source's window), ``cut`` (D,) bool, ``source`` (D,) int64, and for
# mask models ``origins`` (D, 2) int64 (y, x) with ``bitmaps`` (a list of D (h, w) bool tensors), for
# keypoint models ``keypoints`` (D, J, 3) and ``keypoint_scores`` (D, J). All on the CPU.


def shift_to_image(
    det: dict, window: Sequence[int], image_hw: Sequence[int], *, source: int, margin: float
) -> dict:
    """One source's detections in its window's pixels (``boxes`` (D, 4), ``scores``, ``labels``,
    optionally ``origins`` / ``bitmaps`` from ``local_masks`` and ``keypoints``) -> a pool in image
    pixels, with the window, the source index and the cut flags."""
    x0, y0 = int(window[0]), int(window[1])
    boxes = det["boxes"].float().cpu() + torch.tensor([x0, y0, x0, y0], dtype=torch.float32)  # (D, 4)
    n = boxes.shape[0]
    pool = {
        "boxes": boxes,
        "scores": det["scores"].float().cpu(),
        "labels": det["labels"].long().cpu(),
        "windows": torch.tensor([int(v) for v in window], dtype=torch.int64).expand(n, 4).clone(),
        "cut": cut_flags(boxes, window, image_hw, margin),
        "source": torch.full((n,), int(source), dtype=torch.int64),
    }
    if "bitmaps" in det:
        pool["origins"] = det["origins"].cpu() + torch.tensor([y0, x0], dtype=torch.int64)
        pool["bitmaps"] = list(det["bitmaps"])
    if "keypoints" in det:
        kps = det["keypoints"].float().cpu().clone()  # (D, J, 3) x, y, visibility
        kps[..., 0] += x0
        kps[..., 1] += y0
        pool["keypoints"] = kps
        pool["keypoint_scores"] = det["keypoint_scores"].float().cpu()
    return pool


def concat_pools(pools: Sequence[dict]) -> dict:
    """One pool from several (the keys of the first)."""
    out = {}
    for key in pools[0]:
        if key == "bitmaps":
            out[key] = [b for p in pools for b in p[key]]
        else:
            out[key] = torch.cat([p[key] for p in pools])
    return out


def _select(pool: dict, keep: torch.Tensor) -> dict:
    """The pool's detections at indices ``keep`` (D',) int64."""
    out = {k: v[keep] for k, v in pool.items() if k != "bitmaps"}
    if "bitmaps" in pool:
        out["bitmaps"] = [pool["bitmaps"][i] for i in keep.tolist()]
    return out


@dataclass(frozen=True)
class TileCap:
    """A tiled image whose merge found more detections than it may return: the best ``kept``
    (``model.roi_heads.detections_per_image``) of ``found`` were kept, for an image of ``height`` x
    ``width``; ``onnx``: the cap is fixed in an exported graph (no override raises it). The facts behind
    ``cap_note``'s warning, for a caller (the server) to tell its own user without reading the words."""

    kept: int
    found: int
    height: int
    width: int
    onnx: bool = False

    @property
    def dropped(self) -> int:
        return self.found - self.kept

    @property
    def advised(self) -> int:
        """The ``detections_per_image`` the notes advise: all found, and at least twice the cap."""
        return max(self.found, 2 * self.kept)

    @property
    def facts(self) -> str:
        """What happened, in words (no advice: that depends on who is told)."""
        return (f"tiled prediction of a {self.width}x{self.height} image kept the best {self.kept} of "
                f"{self.found} detections ({self.dropped} dropped at model.roi_heads.detections_per_image "
                f"= {self.kept})")


def tile_cap(found: int, kept: int, image_hw: Sequence[int], *, onnx: bool = False) -> Optional[TileCap]:
    """The cap's facts when the merge of an H x W image found more detections than the ``kept`` it may
    return, else None."""
    if found <= kept:
        return None
    return TileCap(kept=int(kept), found=int(found), height=int(image_hw[0]), width=int(image_hw[1]),
                   onnx=bool(onnx))


def cap_note(found: int, kept: int, image_hw: Sequence[int], *, onnx: bool = False) -> str:
    """A warning's text when the merge of an H x W image found more detections than the ``kept`` it may
    return (``model.roi_heads.detections_per_image``), else '': tiling is for images of many small
    objects, where a cap of 100 silently loses most of them. Its facts are ``tile_cap``'s."""
    cap = tile_cap(found, kept, image_hw, onnx=onnx)
    if cap is None:
        return ""
    # an ONNX file refuses overrides: the cap is fixed in its graph
    fix = (f"an ONNX file has it fixed: export the checkpoint again with --set "
           f"model.roi_heads.detections_per_image={cap.advised}" if onnx else
           f"raise it with --set model.roi_heads.detections_per_image={cap.advised} (Predictor: "
           "overrides={'model.roi_heads.detections_per_image': N})")
    return f"{cap.facts}; {fix}; said for the first such image only"


def top_detections(pool: dict, k: int) -> dict:
    """The ``k`` best by score, in decreasing order (stable: equal scores keep their order)."""
    order = torch.sort(pool["scores"], descending=True, stable=True).indices[: int(k)]
    return _select(pool, order)


# ---------------------------------------------------------------------------------------------
# Merging


def _clip(boxes: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyxy boxes cut to (..., 4) regions, broadcast against each other (an empty result has
    x1 <= x0 or y1 <= y0)."""
    return torch.cat([torch.maximum(boxes[..., :2], region[..., :2]),
                      torch.minimum(boxes[..., 2:], region[..., 2:])], dim=-1)


def _candidate_pairs(boxes: torch.Tensor, windows: torch.Tensor, source: torch.Tensor, rows: int = 512):
    """Pairs (i < j) of different sources whose boxes, clipped to the window both sources saw,
    intersect: (I,), (I,) int64. Done in row chunks: (rows, D) at a time, never (D, D) at once."""
    n = boxes.shape[0]
    out_i, out_j = [], []
    for start in range(0, n, rows):
        bi = boxes[start : start + rows, None]  # (r, 1, 4)
        wi = windows[start : start + rows, None].float()  # (r, 1, 4)
        wj = windows[None].float()  # (1, D, 4)
        met = _clip(_clip(bi, boxes[None]), _clip(wi, wj))  # (r, D, 4) inside the shared window
        meets = ((met[..., 2:] - met[..., :2]) > 0).all(dim=-1)  # (r, D)
        ii = torch.arange(start, min(start + rows, n))[:, None]
        meets &= (source[start : start + rows, None] != source[None]) & (ii < torch.arange(n)[None])
        i, j = torch.nonzero(meets, as_tuple=True)
        out_i.append(i + start)
        out_j.append(j)
    if not out_i:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    return torch.cat(out_i), torch.cat(out_j)


_FAR = 1 << 62  # beyond any image: the region of two whole detections (everywhere)

# Pixels per chunk of the pairs' mask intersections (a dozen int64 arrays of this length: ~25 MB); a pair
# whose overlap alone is larger is counted on its bitmaps' views instead.
PAIR_PIXELS = 1 << 18


def _pair_regions(pool: dict, ii: torch.Tensor, jj: torch.Tensor) -> tuple:
    """For pairs (I,) of detections: whether one of them is cut (I,) bool, and the region they are
    compared in (I, 4) int64 xyxy: the window both sources share when one is cut, else everywhere."""
    cut = pool["cut"][ii] | pool["cut"][jj]  # (I,)
    wi, wj = pool["windows"][ii], pool["windows"][jj]  # (I, 4)
    shared = _clip(wi, wj)  # (I, 4)
    everywhere = torch.tensor([-_FAR, -_FAR, _FAR, _FAR], dtype=torch.int64).expand_as(shared)
    return cut, torch.where(cut[:, None], shared, everywhere)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    """(I,) the area of (I, 4) xyxy boxes, 0 for empty ones (int for int boxes)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def _box_overlaps(boxes: torch.Tensor, ii, jj, region) -> tuple:
    """(intersection, area i, area j) (I,) float64 of the pairs' boxes (D, 4) inside their regions: float64
    throughout, so that the ratios are those of the boxes' exact float32 values."""
    region = region.to(torch.float64)
    ci, cj = _clip(boxes[ii].double(), region), _clip(boxes[jj].double(), region)  # (I, 4) each
    return _area(_clip(ci, cj)), _area(ci), _area(cj)


def _areas_in(bitmaps: list, extents: torch.Tensor, counts: torch.Tensor, det: torch.Tensor,
              region: torch.Tensor) -> torch.Tensor:
    """(I,) int64: how many pixels of the masks of detections ``det`` (I,) lie inside ``region`` (I, 4):
    their counts where the region holds the whole bitmap, else four look-ups in the bitmap's summed-area
    table (made once per detection that needs one)."""
    ext = extents[det]  # (I, 4)
    crop = _clip(ext, region)  # (I, 4)
    empty = (crop[:, 2] <= crop[:, 0]) | (crop[:, 3] <= crop[:, 1])
    whole = (crop == ext).all(dim=1)
    out = torch.where(whole, counts[det], torch.zeros_like(counts[det]))
    part = torch.nonzero(~whole & ~empty).flatten()  # (I',) pairs whose region cuts the bitmap
    if part.numel() == 0:
        return out
    # one summed-area table at a time, read by all the pairs that need it, then dropped: the tables of
    # all detections at once (4 bytes a pixel, and their concatenation) were 8 x the masks' own bytes, the
    # peak of a large image's tiled prediction (a whole-image pass's coarse masks span thousands of pixels)
    dets, order = torch.sort(det[part], stable=True)  # (I',) the pairs grouped by detection
    part = part[order]
    local = crop[part] - ext[part][:, [0, 1, 0, 1]]  # (I', 4) the crop in the bitmap's pixels
    needed, runs = torch.unique_consecutive(dets, return_counts=True)
    start = 0
    for d, run in zip(needed.tolist(), runs.tolist()):
        bitmap = bitmaps[d]
        # int32 sums (half the memory) unless a mask could hold 2**31 pixels
        dtype = torch.int64 if bitmap.numel() >= 2**31 - 1 else torch.int32
        table = torch.zeros(bitmap.shape[0] + 1, bitmap.shape[1] + 1, dtype=dtype)
        table[1:, 1:] = bitmap.to(dtype).cumsum(0, dtype=dtype).cumsum(1, dtype=dtype)  # (h + 1, w + 1)
        c = local[start : start + run]  # (k, 4) x0, y0, x1, y1 of its pairs' crops
        corners = table[c[:, [3, 3, 1, 1]], c[:, [2, 0, 2, 0]]].to(torch.int64)  # (k, 4)
        out[part[start : start + run]] = corners[:, 0] - corners[:, 1] - corners[:, 2] + corners[:, 3]
        start += run
    return out


def _flat_masks(bitmaps: list, used: list) -> tuple:
    """The bitmaps of detections ``used`` in one flat bool buffer: (buffer (sum h * w,), offsets (D,)
    int64 where each starts (0 for the others), counts (D,) int64 of their pixels on (0 for the others))."""
    sizes = [bitmaps[d].numel() for d in used]
    offsets = torch.zeros(len(bitmaps), dtype=torch.int64)
    offsets[used] = torch.tensor([0] + sizes[:-1], dtype=torch.int64).cumsum(0)
    flat = torch.cat([bitmaps[d].flatten() for d in used]) if used else torch.zeros(0, dtype=torch.bool)
    counts = torch.zeros(len(bitmaps), dtype=torch.int64)
    # a count per mask: numpy's reduceat with an int64 accumulator casts the whole buffer to int64 first
    # (8 bytes a pixel: gigabytes for a large image's pool, the peak of its tiled prediction)
    counts[used] = torch.tensor([int(torch.count_nonzero(bitmaps[d])) for d in used], dtype=torch.int64)
    return flat, offsets, counts


def _mask_intersections(bitmaps: list, flat: torch.Tensor, offsets: torch.Tensor, extents: torch.Tensor,
                        ii, jj, region) -> torch.Tensor:
    """(I,) int64: the pixels the pairs' masks share inside their regions. Every pair's overlap rectangle
    (both extents and the region) is gathered from ``flat`` (``_flat_masks``), in chunks of about
    ``PAIR_PIXELS`` pixels; a pair whose rectangle alone is larger is counted on views of its bitmaps."""
    crop = _clip(_clip(extents[ii], extents[jj]), region)  # (I, 4) where both masks may be
    ch, cw = (crop[:, 3] - crop[:, 1]).clamp(min=0), (crop[:, 2] - crop[:, 0]).clamp(min=0)
    pixels = ch * cw  # (I,)
    out = torch.zeros(ii.shape[0], dtype=torch.int64)
    todo = torch.nonzero(pixels > 0).flatten()
    if todo.numel() == 0:
        return out
    widths = extents[:, 2] - extents[:, 0]  # (D,)

    def base(det, p):  # (k,) flat index of each pair's crop corner in detection ``det``'s bitmap
        return offsets[det] + (crop[p, 1] - extents[det, 1]) * widths[det] + (crop[p, 0] - extents[det, 0])

    big = todo[pixels[todo] > PAIR_PIXELS]
    for p in big.tolist():  # one pair over the chunk size: its two views, as they are
        views = []
        for d in (int(ii[p]), int(jj[p])):
            (x0, y0, x1, y1), (ex, ey) = crop[p].tolist(), extents[d, :2].tolist()
            views.append(bitmaps[d][y0 - ey : y1 - ey, x0 - ex : x1 - ex])  # (ch, cw)
        out[p] = int(torch.count_nonzero(views[0] & views[1]))
    small = todo[pixels[todo] <= PAIR_PIXELS]
    ends = torch.cumsum(pixels[small], 0)
    start = 0
    while start < small.numel():  # chunks of consecutive pairs, each at most PAIR_PIXELS pixels
        done = int(ends[start - 1]) if start else 0
        stop = int(torch.searchsorted(ends, done + PAIR_PIXELS, right=True))
        p = small[start:stop]  # (k,)
        n = pixels[p]  # (k,)
        rep = torch.repeat_interleave(torch.arange(p.numel()), n)  # (P,) the pair of each pixel
        first = torch.cumsum(n, 0) - n  # (k,) where each pair's pixels start
        local = torch.arange(int(n.sum())) - first[rep]  # (P,) row-major inside the pair's crop
        y, x = local // cw[p][rep], local % cw[p][rep]
        a = base(ii[p], p)[rep] + y * widths[ii[p]][rep] + x  # (P,) into flat
        b = base(jj[p], p)[rep] + y * widths[jj[p]][rep] + x
        out[p] = torch.zeros(p.numel(), dtype=torch.int64).index_add_(0, rep, (flat[a] & flat[b]).long())
        start = stop
    return out


def _pair_overlaps(pool: dict, ii: torch.Tensor, jj: torch.Tensor) -> torch.Tensor:
    """(I,) float64: how much the detections of each pair (ii[k], jj[k]) are one object: IoU of two whole
    ones; of a cut one, intersection over the larger inside the window both sources share. On masks
    when the pool has them, boxes otherwise; all pairs at once."""
    if ii.numel() == 0:
        return torch.zeros(0, dtype=torch.float64)
    cut, region = _pair_regions(pool, ii, jj)
    if "bitmaps" in pool:
        extents = _bitmap_extents(pool["origins"], pool["bitmaps"])  # (D, 4)
        used = torch.unique(torch.cat([ii, jj])).tolist()  # the masks any pair reads, each once
        flat, offsets, counts = _flat_masks(pool["bitmaps"], used)
        inter = _mask_intersections(pool["bitmaps"], flat, offsets, extents, ii, jj, region)
        a = _areas_in(pool["bitmaps"], extents, counts, ii, region)
        b = _areas_in(pool["bitmaps"], extents, counts, jj, region)
        inter, a, b = inter.double(), a.double(), b.double()
    else:
        inter, a, b = _box_overlaps(pool["boxes"], ii, jj, region)
    ratio = torch.where(cut, inter / torch.maximum(a, b), inter / (a + b - inter))
    return torch.where(inter > 0, ratio, torch.zeros_like(ratio))


def _profile(pool: dict, d: int, axis: int, band: tuple, span: tuple, *, box: bool = False) -> np.ndarray:
    """Where detection ``d`` lies along a tile edge: (span[1] - span[0],) bool, for each position of
    ``span`` on the edge's own axis, whether the mask (the box without masks, or with ``box``) has a
    pixel in ``band`` across it. ``axis`` 0: a vertical edge (band in x, positions are rows); 1: a
    horizontal one."""
    out = np.zeros(max(0, span[1] - span[0]), dtype=bool)
    if "bitmaps" in pool and not box:
        bitmap = pool["bitmaps"][d]
        if bitmap.numel() == 0:
            return out
        y0, x0 = (int(v) for v in pool["origins"][d])
        lo = (x0, y0) if axis == 0 else (y0, x0)  # (across, along) origin of the bitmap
        grid = bitmap.numpy() if axis == 0 else bitmap.numpy().T  # (along, across)
        a0, a1 = max(band[0] - lo[0], 0), min(band[1] - lo[0], grid.shape[1])
        s0, s1 = max(span[0] - lo[1], 0), min(span[1] - lo[1], grid.shape[0])
        if a1 > a0 and s1 > s0:
            at = s0 + lo[1] - span[0]
            out[at : at + s1 - s0] = grid[s0:s1, a0:a1].any(axis=1)
        return out
    xyxy = pool["boxes"][d].tolist()
    across, along = (xyxy[0], xyxy[2]), (xyxy[1], xyxy[3])
    if axis == 1:
        across, along = along, across
    if across[0] < band[1] and across[1] > band[0]:
        first = max(math.floor(along[0]), span[0]) - span[0]
        out[first : max(math.ceil(along[1]), span[0]) - span[0]] = True
    return out


EVERYWHERE = (-_FAR, _FAR)  # a band holding any pixel: a detection's whole extent across an edge


def _short_of(pool: dict, d: int, axis: int, *, edge_margin: float, mask_resolution: int) -> int:
    """How far (pixels) detection ``d``'s view may stop short of a tile edge on ``axis`` and still have
    reached it: more than twice the edge margin (a cut piece's mask often fades a few pixels short of
    the cut), or two of its mask's cells when those are larger (a 300-pixel piece's 28 x 28 mask has
    11-pixel cells: it ends a cell early at the cut, and a thin part of the object across the cut may
    fall between its cells)."""
    xyxy = pool["boxes"][d].tolist()
    side = xyxy[2] - xyxy[0] if axis == 0 else xyxy[3] - xyxy[1]
    return max(2 * math.ceil(edge_margin) + 1, math.ceil(2 * side / mask_resolution))


def _contradicted(pool: dict, ii: torch.Tensor, jj: torch.Tensor, *, edge_margin: float,
                  mask_resolution: int) -> torch.Tensor:
    """(I,) bool: whether the detections of each pair contradict each other at a tile edge (both inside
    the window the two saw): one's (k's) source saw up to the edge, and neither its mask nor its box
    comes within its allowance (``_short_of``) of it, while the other's (o's) source saw across it and
    its mask runs on well beyond it: past the edge margin, at as many positions along the edge as k's
    allowance and at a quarter or more of o's own extent along it.
    Why: in that window an object and a piece of another object of its class can coincide (an
    occluder and the occluded one's mask), so their overlap there alone would glue them; but had they
    been one object, the one whose view ended at the edge would have reached it. Only on clear
    evidence, since undoing a match of one object's two views leaves it twice: a piece's box reaches
    the cut even where its mask fades short of it, and a thin part of the object (a neck, a limb) or
    a stray pixel crossing the edge in o's mask says nothing about k's reaching it. Checked only for the
    pairs the overlap already matched (a loop over those, few). Between tiles only: the whole image's
    masks are coarse (the image shrunk to the model's size, one of its pixels several of a tile's), so
    one running a few pixels past a tile edge says nothing; it has no tile edges of its own."""
    out = torch.zeros(ii.shape[0], dtype=torch.bool)
    windows = pool["windows"]  # (D, 4)
    everything = torch.cat([windows[:, :2].min(dim=0).values, windows[:, 2:].max(dim=0).values])  # (4,)
    whole = (windows == everything).all(dim=1).tolist()  # (D,) the whole image's detections
    shared_windows = _clip(windows[ii], windows[jj]).tolist()  # (I, 4) the window each pair both saw
    windows = windows.tolist()
    margin = math.ceil(edge_margin)
    for p, (i, j) in enumerate(zip(ii.tolist(), jj.tolist())):
        if whole[i] or whole[j]:
            continue
        shared = shared_windows[p]
        for k, o in ((i, j), (j, i)):
            wk, wo = windows[k], windows[o]
            for axis in (0, 1):  # 0: the left and right edges (bands in x), 1: top and bottom
                span = (shared[1 - axis], shared[3 - axis])
                reach = _short_of(pool, k, axis, edge_margin=edge_margin, mask_resolution=mask_resolution)
                edges = []  # (k's band up to the edge, o's band well beyond it)
                if wo[axis] < wk[axis]:  # o sees across k's left / top edge
                    edge = wk[axis]
                    edges.append(((edge, edge + reach), (edge - reach, edge - margin)))
                if wo[axis + 2] > wk[axis + 2]:  # o sees across k's right / bottom edge
                    edge = wk[axis + 2]
                    edges.append(((edge - reach, edge), (edge + margin, edge + reach)))
                for inside, beyond in edges:
                    if _profile(pool, k, axis, inside, span).any() or \
                            _profile(pool, k, axis, inside, span, box=True).any():
                        continue  # k reaches the edge
                    crossing = int(_profile(pool, o, axis, beyond, span).sum())
                    extent = int(_profile(pool, o, axis, EVERYWHERE, span).sum())
                    if crossing >= max(reach, extent / 4):
                        out[p] = True
    return out


def merge_detections(pool: dict, *, match_thresh: float = 0.5, edge_margin: float = 4.0,
                     mask_resolution: int = MASK_RESOLUTION) -> dict:
    """Merge a pool of detections from tiles (and the whole image) into one detection per object,
    class by class (the module docstring says how and why). Returns a pool (``windows``, ``cut`` and
    ``source`` those of each group's leader), in leader order: whole detections by score, then the
    merged cut pieces by score. ``edge_margin``: that of the cut flags (``TileOptions.edge_margin``);
    a detection whose mask and box both stop more than twice that short of a tile edge (2 x
    ceil(edge_margin) + 1 pixels or more), and two cells of its ``mask_resolution`` x
    ``mask_resolution`` mask, did not reach it (``_contradicted``, ``_short_of``)."""
    n = pool["boxes"].shape[0]
    if n == 0:
        return pool
    labels = pool["labels"]
    # matches: i -> {j: overlap}, same class, different sources, overlap >= match_thresh
    pairs_i, pairs_j = [], []  # candidate pairs, class by class: (Ic,) pool indices each
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()  # (Dc,)
        ii, jj = _candidate_pairs(pool["boxes"][members], pool["windows"][members], pool["source"][members])
        pairs_i.append(members[ii])
        pairs_j.append(members[jj])
    ii, jj = torch.cat(pairs_i), torch.cat(pairs_j)  # (I,)
    values = _pair_overlaps(pool, ii, jj)  # (I,) float64
    hit = values >= match_thresh
    at = torch.nonzero(hit).flatten()
    apart = at[_contradicted(pool, ii[at], jj[at], edge_margin=edge_margin,
                             mask_resolution=mask_resolution)]  # (A,)
    hit[apart] = False
    # pairs that are two objects whatever chains of matches say (a piece joins no group holding the
    # other): i -> {j}
    exclusive = [set() for _ in range(n)]
    for a, b in zip(ii[apart].tolist(), jj[apart].tolist()):
        exclusive[a].add(b)
        exclusive[b].add(a)
    matches = [dict() for _ in range(n)]
    for a, b, value in zip(ii[hit].tolist(), jj[hit].tolist(), values[hit].tolist()):
        matches[a][b] = value
        matches[b][a] = value
    # leaders: whole detections first, each by decreasing score (stable: ties keep pool order)
    by_score = torch.sort(pool["scores"], descending=True, stable=True).indices
    order = by_score[torch.sort(pool["cut"][by_score].to(torch.int8), stable=True).indices].tolist()
    source = pool["source"].tolist()
    cut = pool["cut"].tolist()
    group = [-1] * n
    groups = []  # (leader, [members]) in leader order

    def best_per_source(candidates: dict, taken_sources: set, members: list) -> list:
        """The best-matching unassigned candidate of each source not yet in the group, contradicting
        none of its members."""
        best = {}
        for j, value in candidates.items():
            if group[j] < 0 and source[j] not in taken_sources and exclusive[j].isdisjoint(members):
                if source[j] not in best or value > best[source[j]][1]:
                    best[source[j]] = (j, value)
        chosen = []
        for j, _ in sorted(best.values(), key=lambda jv: -jv[1]):  # nor each other, best first
            if exclusive[j].isdisjoint(chosen):
                chosen.append(j)
        return chosen

    for leader in order:
        if group[leader] >= 0:
            continue
        gid = len(groups)
        group[leader] = gid
        members, taken = [leader], {source[leader]}
        frontier = [leader]
        while frontier:
            candidates = {}
            for m in frontier:
                for j, value in matches[m].items():
                    candidates[j] = max(value, candidates.get(j, 0.0))
            new = best_per_source(candidates, taken, members)
            for j in new:
                group[j] = gid
                taken.add(source[j])
            members.extend(new)
            # a whole detection absorbs its direct matches only (it is kept as it is); cut pieces
            # chain, since an object wider than a tile is cut in several and no one piece meets all
            frontier = new if cut[leader] else []
        groups.append((leader, members))
    return _merge_groups(pool, groups)


def _merge_groups(pool: dict, groups: list) -> dict:
    """One detection per group: a whole leader kept as it is; cut pieces as their union."""
    leaders = torch.tensor([g[0] for g in groups], dtype=torch.int64)
    out = _select(pool, leaders)
    for k, (leader, members) in enumerate(groups):
        if not bool(pool["cut"][leader]) or len(members) == 1:
            continue
        idx = torch.tensor(members, dtype=torch.int64)
        boxes = pool["boxes"][idx]  # (G, 4) the pieces
        out["boxes"][k] = torch.cat([boxes[:, :2].min(dim=0).values, boxes[:, 2:].max(dim=0).values])
        out["scores"][k] = pool["scores"][idx].max()
        if "bitmaps" in pool:
            origin, bitmap = _union_masks(pool["origins"][idx], [pool["bitmaps"][i] for i in members])
            out["origins"][k] = origin
            out["bitmaps"][k] = bitmap
        if "keypoints" in pool:
            best = pool["keypoint_scores"][idx].argmax(dim=0)  # (J,) the piece most sure of each joint
            joints = torch.arange(best.shape[0])
            out["keypoints"][k] = pool["keypoints"][idx][best, joints]  # (J, 3)
            out["keypoint_scores"][k] = pool["keypoint_scores"][idx][best, joints]
    return out


# ---------------------------------------------------------------------------------------------
# Outputs


def local_masks_to_dense(origins: torch.Tensor, bitmaps: list, image_hw: Sequence[int]) -> torch.Tensor:
    """(D, H, W) bool masks from box-local ones."""
    from maskrcnn.ops.paste import _zeros

    height, width = int(image_hw[0]), int(image_hw[1])
    out = _zeros(len(bitmaps), height, width, dtype=torch.bool, device="cpu")
    for d, (bitmap, (x0, y0, x1, y1)) in enumerate(zip(bitmaps, _bitmap_extents(origins, bitmaps).tolist())):
        if bitmap.numel() > 0:
            out[d, y0:y1, x0:x1] = bitmap
    return out


def local_masks_to_rles(origins: torch.Tensor, bitmaps: list, image_hw: Sequence[int]) -> list:
    """COCO compressed RLE dicts ({"size": [H, W], "counts": str}) of box-local masks, equal to those of
    ``local_masks_to_dense``; one detection's band of rows (h, W) at a time, never an H x W mask."""
    from maskrcnn.data.mask_codec import compress_runs, row_windows_to_runs

    height, width = int(image_hw[0]), int(image_hw[1])
    runs = []
    for bitmap, (x0, y0, x1, y1) in zip(bitmaps, _bitmap_extents(origins, bitmaps).tolist()):
        if bitmap.numel() == 0:
            runs.append(np.array([height * width], dtype=np.int64))
            continue
        band = torch.zeros(1, y1 - y0, width, dtype=torch.bool)  # (1, h, W) the rows the mask covers
        band[0, :, x0:x1] = bitmap
        runs.extend(row_windows_to_runs(band, torch.tensor([y0]), height))
    return compress_runs(runs, height, width)
