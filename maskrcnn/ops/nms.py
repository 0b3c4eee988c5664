"""Non-maximum suppression, vectorised (no Python loop per box).

Shape glossary:
    N   number of boxes
    G   boxes with finite coordinates and positive width and height ("good" boxes)
    P   candidate pairs (boxes close enough in x), P1 of them left after a cheap y test
    E   pairs with IoU above the threshold (suppression edges)
    B   boxes in one block (block algorithm)
    K   boxes kept so far (block algorithm)

Greedy NMS visits boxes by decreasing score and drops every box whose IoU with an already kept box is
above the threshold t. Two exact algorithms, both giving torchvision's keep list (IoU in its float
arithmetic order, ties in input order as its stable descending sort gives):

Sparse graph (used for 0 <= t < 1 unless the overlaps are extreme): IoU <= x-overlap / max(w_i, w_j),
so with the boxes sorted by x1 a box can only pair with the boxes whose x1 lies in a window of
(1 - t) times its width after it (``searchsorted``); a cheap y test and then the exact IoU on those
candidates leave the E suppression edges (higher score -> lower score). Greedy NMS is their unique
fixed point "kept iff no kept higher-scoring neighbour has an edge to it", resolved in a few rounds of
gathers over the edges. Work and memory grow with the candidate pairs, examined in bounded chunks.

Blocks (fallback: t < 0, t >= 1, or too many candidate pairs or edges, e.g. tens of thousands of
near-duplicates): the sorted boxes are cut into blocks of B. For each block:
1. suppression by earlier blocks: the kept boxes are indexed by x1 (shifted per class in
   ``batched_nms``); an IoU above t > 0 needs an x-overlap above ``t * max(w_i, w_j)``, which bounds
   x1 of any suppressor to a window, so only the P candidates found by ``searchsorted`` get an exact
   IoU. When the windows hold most pairs anyway, a dense (K, B) IoU (in bounded chunks) is used.
2. suppression inside the block: the greedy decisions are the unique fixed point of
   ``keep[j] = alive[j] and not any(keep[i] and iou[i, j] > t for i < j)``, reached by a few boolean
   (B, B) matrix iterations.
Memory stays bounded either way (never an N x N matrix).

Serial ops: torch splits a CPU op over its intra-op threads once the op is large enough (32768
elements for elementwise ops, indexing, nonzero and arange; 200 values for searchsorted; any size for
repeat_interleave). NMS is a chain of many small ops, and on a machine whose cores are busy with other
jobs every split op waits for a core: measured 20-40x slower with 2 threads than with 1. So the sparse
algorithm is formulated to stay below those sizes for the inputs of a detector (a few thousand boxes):
pairs and edges are handled in chunks of ``_SERIAL``, searchsorted in chunks of ``_SEARCH_SERIAL``,
and rows of pairs come from a cumulative sum instead of repeat_interleave. Nothing changes the
process's thread count.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

__all__ = ["nms", "batched_nms"]

# Upper bound on the elements of one dense (K, B) IoU matrix, and on the candidate pairs examined at
# once: keeps memory flat (about 100 MB at most) for 50k boxes.
_MAX_PAIRS = 1 << 22
_BLOCK = 512
# Use the sorted candidate search while it examines fewer than this fraction of the (K, B) pairs.
_SPARSE_FRACTION = 0.25
# The sparse graph algorithm examines its candidate pairs in chunks of _SPARSE_CHUNK (about 40 bytes
# each at the peak) and keeps the pairs above the threshold (16 bytes each). Beyond _SPARSE_MAX_PAIRS
# candidates (time) or _SPARSE_MAX_EDGES pairs (memory), e.g. for tens of thousands of near-duplicate
# boxes, the block algorithm is used instead: its memory stays flat whatever the overlaps.
_SPARSE_MAX_PAIRS = 1 << 28
_SPARSE_MAX_EDGES = 1 << 22
# Below torch's intra-op grain sizes (see the module docstring): ops on fewer elements run serially.
_SERIAL = 1 << 14
_SEARCH_SERIAL = 128
_SPARSE_CHUNK = _SERIAL


def _searchsorted(sorted_seq: Tensor, values: Tensor, **kwargs) -> Tensor:
    """``torch.searchsorted`` over (V,) values, in serial-sized pieces on the CPU."""
    if values.device.type != "cpu" or values.numel() <= _SEARCH_SERIAL:
        return torch.searchsorted(sorted_seq, values, **kwargs)
    return torch.cat([torch.searchsorted(sorted_seq, v, **kwargs) for v in values.split(_SEARCH_SERIAL)])


def _rows_of_pairs(counts: Tensor, total: int) -> Tensor:
    """(C,) pairs per row, ``total`` of them -> (P,) int32 row of each pair, as
    ``repeat_interleave(arange(C), counts)``: a cumulative sum of marks where rows end (an accumulating
    index_put_ and a cumsum are serial on the CPU)."""
    ends = torch.cumsum(counts, 0)[:-1]  # (C - 1,) end of every row but the last
    ends = ends[ends < total].long()  # rows ending at the very end are after the last pair
    marks = torch.zeros(total, dtype=torch.int32, device=counts.device)
    marks.index_put_((ends,), torch.ones_like(ends, dtype=torch.int32), accumulate=True)
    return torch.cumsum(marks, 0, dtype=torch.int32)


def _float32_threshold(iou_threshold: float, dtype: torch.dtype) -> float:
    """A threshold t' in ``dtype`` with ``x > t'`` exactly when ``x > iou_threshold`` (a double).

    torchvision compares the float IoU with the double threshold; comparing with the largest
    representable value <= threshold gives the same decisions without converting the matrix.
    """
    if dtype == torch.float64:
        return iou_threshold
    t = torch.tensor(iou_threshold, dtype=dtype)
    if t.double().item() > iou_threshold:
        t = torch.nextafter(t, torch.tensor(float("-inf"), dtype=dtype))
    return t.item()


def _iou_over(a: Tensor, area_a: Tensor, b: Tensor, area_b: Tensor, threshold: float) -> Tensor:
    """(Na, 4), (Nb, 4) -> (Na, Nb) bool, IoU > threshold, in torchvision's arithmetic order."""
    xx1 = torch.max(a[:, None, 0], b[None, :, 0])  # (Na, Nb)
    yy1 = torch.max(a[:, None, 1], b[None, :, 1])
    xx2 = torch.min(a[:, None, 2], b[None, :, 2])
    yy2 = torch.min(a[:, None, 3], b[None, :, 3])
    inter = (xx2 - xx1).clamp_(min=0) * (yy2 - yy1).clamp_(min=0)
    union = (area_a[:, None] + area_b[None, :]) - inter
    return (inter / union) > threshold


def _pair_over(a: Tensor, area_a: Tensor, b: Tensor, area_b: Tensor, threshold: float) -> Tensor:
    """Row-wise (P, 4), (P, 4) -> (P,) bool, IoU > threshold, same arithmetic as ``_iou_over``."""
    iw = (torch.min(a[:, 2], b[:, 2]) - torch.max(a[:, 0], b[:, 0])).clamp_(min=0)
    ih = (torch.min(a[:, 3], b[:, 3]) - torch.max(a[:, 1], b[:, 1])).clamp_(min=0)
    inter = iw * ih
    return (inter / ((area_a + area_b) - inter)) > threshold


class _KeptIndex:
    """The boxes kept so far, sorted by a search key (x1, shifted per class) for window queries.

    For ``0 < t`` an IoU above t needs an x-overlap above ``t * max(w_i, w_j)``, so a kept box j can
    only suppress box i if ``x1_i - (1 - t) / t * w_i < x1_j < x1_i + (1 - t) * w_i``. Only kept
    boxes with positive finite size are indexed: any other box has IoU 0 or NaN with everything.
    """

    def __init__(self, boxes: Tensor, key: Tensor):
        self.boxes, self.key = boxes, key  # (N, 4) all sorted boxes; (N,) float64 search key
        self.sorted_key = key.new_zeros((0,))
        self.sorted_idx = torch.zeros((0,), dtype=torch.long, device=boxes.device)

    def add(self, idx: Tensor) -> None:
        key = torch.cat((self.sorted_key, self.key[idx]))
        order = torch.sort(key, stable=True).indices
        self.sorted_key = key[order]
        self.sorted_idx = torch.cat((self.sorted_idx, idx))[order]


def _suppressed_by_kept(boxes: Tensor, areas: Tensor, classes: Tensor | None, kept: Tensor,
                        index: _KeptIndex | None, window: Tuple[float, float] | None,
                        start: int, stop: int, threshold: float) -> Tensor:
    """(B,) bool: boxes[start:stop] with IoU > threshold against some kept box."""
    b = stop - start
    sup = torch.zeros(b, dtype=torch.bool, device=boxes.device)
    k = kept.numel()
    if k == 0:
        return sup
    bb, ba = boxes[start:stop], areas[start:stop]
    if index is not None and window is not None:
        left, right = window
        key = index.key[start:stop]
        w = (bb[:, 2] - bb[:, 0]).double()
        slack = 1e-4 * (key.abs() + w) + 1e-6  # covers float32 rounding of the IoU itself
        lo = _searchsorted(index.sorted_key, key - left * w - slack)
        hi = _searchsorted(index.sorted_key, key + right * w + slack, side="right")
        counts = (hi - lo).clamp_(min=0)  # (B,)
        counts = torch.where(torch.isfinite(key) & (w > 0), counts, torch.zeros_like(counts))
        total = int(counts.sum())
        if total <= min(_SPARSE_FRACTION * b * k, _MAX_PAIRS):
            if total == 0:
                return sup
            row = _rows_of_pairs(counts, total).long()  # (P,)
            first = torch.cumsum(counts, 0) - counts
            pos = lo[row] + torch.arange(total, device=boxes.device) - first[row]  # (P,)
            other = index.sorted_idx[pos]
            over = _pair_over(boxes[other], areas[other], bb[row], ba[row], threshold)
            if classes is not None:
                over &= classes[other] == classes[start:stop][row]
            sup[row[over]] = True
            return sup
    # dense: (K, B) in chunks of kept boxes so that memory stays bounded
    step = max(1, _MAX_PAIRS // max(b, 1))
    for c0 in range(0, k, step):
        kk = kept[c0:c0 + step]
        over = _iou_over(boxes[kk], areas[kk], bb, ba, threshold)  # (Kc, B)
        if classes is not None:
            over &= classes[kk][:, None] == classes[start:stop][None, :]
        sup |= over.any(dim=0)
    return sup


class _PairTables:
    """Per-box columns of the x-sorted good boxes, and the exact test of a chunk of candidate pairs."""

    def __init__(self, boxes: Tensor, g: Tensor, threshold: float, classes: Tensor | None):
        self.boxes, self.g, self.threshold, self.classes = boxes, g, threshold, classes
        x1, y1, x2, y2 = boxes.unbind(1)
        self.cols = (x1, y1, x2, y2, (x2 - x1) * (y2 - y1))  # (N,) each, by score rank
        h = (y2 - y1).index_select(0, g)
        self.y1s = y1.index_select(0, g)  # (G,)
        # IoU > t needs h_min / h_max > t and a y-overlap above t * h_max, hence
        # |y1_i - y1_j| < (1 - t) / t * h_i (slack for float rounding as for the x window)
        self.reach_y = ((1.0 - threshold) / max(threshold, 1e-6)) * h + (1e-4 * (self.y1s.abs() + h) + 1e-6)

    def edges(self, after: Tensor, counts: Tensor, r0: int) -> Tuple[Tensor, Tensor]:
        """Candidates of x-sorted rows r0.. with (C,) counts -> score ranks (E,), (E,) of pairs above t."""
        dev = counts.device
        first = torch.cumsum(counts, 0, dtype=torch.int32) - counts  # (C,) offset of each row's pairs
        total = int(first[-1] + counts[-1])
        rows = _rows_of_pairs(counts, total) + r0  # (P,) x-sorted position of the left box
        cols = torch.arange(total, device=dev, dtype=torch.int32)
        cols += (after - first).index_select(0, rows - r0)  # (P,) x-sorted position of the right box
        near = (self.y1s.index_select(0, rows) - self.y1s.index_select(0, cols)).abs_()
        near = torch.nonzero(near < self.reach_y.index_select(0, rows)).flatten()  # (P1,)
        rows = self.g.index_select(0, rows.index_select(0, near))  # (P1,) score ranks
        cols = self.g.index_select(0, cols.index_select(0, near))
        x1, y1, x2, y2, area = ((v.index_select(0, rows), v.index_select(0, cols)) for v in self.cols)
        # exact IoU in torchvision's arithmetic, (P1,) each
        iw = (torch.minimum(*x2) - torch.maximum(*x1)).clamp_(min=0)
        ih = (torch.minimum(*y2) - torch.maximum(*y1)).clamp_(min=0)
        inter = iw * ih
        over = (inter / ((area[0] + area[1]) - inter)) > self.threshold  # (P1,)
        if self.classes is not None:
            over &= self.classes.index_select(0, rows) == self.classes.index_select(0, cols)
        hit = torch.nonzero(over).flatten()  # (E,)
        return rows.index_select(0, hit), cols.index_select(0, hit)


def _sparse_keep(boxes: Tensor, threshold: float, classes: Tensor | None) -> Tensor | None:
    """Greedy NMS on score-sorted boxes via a sparse suppression graph -> (N,) bool, or None.

    Only pairs whose x-intervals overlap enough can have IoU > t (IoU <= x-overlap / max(w_i, w_j)),
    so with the good boxes sorted by x1, box i can only pair with the boxes after it whose x1 lies in
    ``[x1_i, x1_i + (1 - t) w_i]``: ``searchsorted`` gives each window, the exact IoU is computed on
    those P candidates only, and the E pairs above t become edges (higher score -> lower score). The
    greedy result is then resolved by a few rounds over the edges. Returns None (caller uses the
    block algorithm) beyond ``_SPARSE_MAX_PAIRS`` candidates or ``_SPARSE_MAX_EDGES`` edges.
    """
    n = boxes.shape[0]
    dev = boxes.device
    x1, y1, x2, y2 = boxes.unbind(1)
    w, h = x2 - x1, y2 - y1
    # boxes with non-finite coordinates or no positive size have IoU 0 or NaN with every box
    finite = torch.isfinite(x1) & torch.isfinite(y1) & torch.isfinite(x2) & torch.isfinite(y2)  # (N,)
    good = torch.nonzero(finite & (w > 0) & (h > 0)).flatten()  # (G,)
    key = x1[good].double()
    wg = w[good].double()
    if classes is not None and good.numel() > 0:
        # lay the classes side by side on the key axis so that no window spans two classes
        span = float(key.abs().max()) * 2 + float(wg.max()) * 2 + 1.0
        key = key + classes[good].double() * span
    key, xorder = torch.sort(key, stable=True)  # (G,)
    g = good[xorder].int()  # (G,) score rank of each x-sorted good box
    wg = wg[xorder]
    # slack covers the float rounding of the IoU (a few ulps) and of the double key
    reach = key + (1.0 - threshold) * wg + (1e-4 * (key.abs() + wg) + 1e-6)
    # int32 indices from here on: the pair arrays are the bulk of the work and of the memory
    hi = _searchsorted(key, reach, side="right", out_int32=True)  # (G,)
    after = torch.arange(1, g.numel() + 1, device=dev, dtype=torch.int32)  # (G,) x-sorted position + 1
    counts = (hi - after).clamp_(min=0)  # (G,) candidates after each box in its window
    ends = torch.cumsum(counts, 0)  # (G,) int64: end of each box's candidates in the pair list
    total = int(ends[-1]) if g.numel() > 0 else 0
    if total > _SPARSE_MAX_PAIRS:
        return None
    # the candidates are examined in chunks of whole rows, about _SPARSE_CHUNK pairs each
    bounds = [0, g.numel()]
    if total > _SPARSE_CHUNK:
        cuts = _searchsorted(ends, torch.arange(_SPARSE_CHUNK, total, _SPARSE_CHUNK, device=dev))
        bounds = [0] + sorted(set(cuts.tolist())) + [g.numel()]
    found, n_edges = [], 0
    tables = _PairTables(boxes, g, threshold, classes)
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        if r1 > r0:
            found.append(tables.edges(after[r0:r1], counts[r0:r1], r0))
            n_edges += found[-1][0].numel()
            if n_edges > _SPARSE_MAX_EDGES:
                return None
    if n_edges == 0:
        return torch.ones(n, dtype=torch.bool, device=dev)
    # (E_c,) score ranks per chunk of edges (serial-sized); the higher-scoring box of a pair
    # suppresses the other
    edges = _regroup([(torch.minimum(a, b).long(), torch.maximum(a, b).long()) for a, b in found])
    # A box is kept iff no kept higher-scoring neighbour suppresses it. Each round: suppress the
    # targets of kept boxes; drop edges from suppressed boxes or into decided ones; keep every
    # undecided box left with no incoming edge. Each round settles at least the first undecided box.
    kept = torch.ones(n, dtype=torch.bool, device=dev)
    for _, dst in edges:
        kept[dst] = False  # boxes without incoming edges are kept for sure
    supp = torch.zeros(n, dtype=torch.bool, device=dev)
    while True:
        for src, dst in edges:
            supp[dst[kept[src]]] = True
        live_edges = []
        for src, dst in edges:
            live = torch.nonzero(~(supp[src] | supp[dst])).flatten()  # kept -> x edges have just suppressed x
            if live.numel():
                live_edges.append((src[live], dst[live]))
        if not live_edges:
            return ~supp
        edges = _regroup(live_edges)
        blocked = torch.zeros(n, dtype=torch.bool, device=dev)
        for _, dst in edges:
            blocked[dst] = True
        kept = ~(blocked | supp)


def _regroup(chunks: list) -> list:
    """Consecutive (src, dst) chunks of edges concatenated into as few chunks of at most ``_SERIAL``."""
    out, group, size = [], [], 0
    for chunk in chunks + [None]:
        if group and (chunk is None or size + chunk[0].numel() > _SERIAL):
            out.append(group[0] if len(group) == 1 else tuple(torch.cat(t) for t in zip(*group)))
            group, size = [], 0
        if chunk is not None:
            group.append(chunk)
            size += chunk[0].numel()
    return out


def _greedy_keep(boxes: Tensor, threshold: float, classes: Tensor | None) -> Tensor:
    """Greedy NMS on boxes already sorted by decreasing score -> (N,) bool keep mask."""
    n = boxes.shape[0]
    dev = boxes.device
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = torch.zeros(n, dtype=torch.bool, device=dev)
    index, window = None, None
    if 0.0 < threshold:
        window = ((1.0 - threshold) / threshold, max(1.0 - threshold, 0.0))
        key = boxes[:, 0].double()
        if classes is not None:
            # shift each class to its own stretch of the key axis so windows rarely span classes
            finite = torch.isfinite(boxes).all(dim=1)
            span = (boxes[finite].double().abs().max() * 2 + 1) if bool(finite.any()) else boxes.new_ones(())
            key = key + classes.double() * float(span) * (1.0 + window[0] + window[1] + 1.0)
        index = _KeptIndex(boxes, key)
        good = torch.isfinite(boxes).all(dim=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    kept = torch.zeros((0,), dtype=torch.long, device=dev)
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        alive = ~_suppressed_by_kept(boxes, areas, classes, kept, index, window, start, stop, threshold)
        if not bool(alive.any()):
            continue
        bb, ba = boxes[start:stop], areas[start:stop]
        over = _iou_over(bb, ba, bb, ba, threshold)  # (B, B): [i, j] = i suppresses j
        if classes is not None:
            cb = classes[start:stop]
            over &= cb[:, None] == cb[None, :]
        # only earlier (higher-scoring) alive boxes can suppress
        over = torch.triu(over, diagonal=1) & alive[:, None]
        block_keep = alive.clone()
        while True:
            suppressed = (over & block_keep[:, None]).any(dim=0)
            new_keep = alive & ~suppressed
            if torch.equal(new_keep, block_keep):
                break
            block_keep = new_keep
        keep[start:stop] = block_keep
        new = torch.nonzero(block_keep).flatten() + start
        kept = torch.cat((kept, new))
        if index is not None:
            index.add(new[good[new]])
    return keep


def _check(boxes: Tensor, scores: Tensor, name: str) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: boxes must be (N, 4), got {tuple(boxes.shape)}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"{name}: scores must be (N,) = ({boxes.shape[0]},), got {tuple(scores.shape)}")


def _run(boxes: Tensor, scores: Tensor, iou_threshold: float, idxs: Tensor | None) -> Tensor:
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    return _run_sorted(boxes, scores, iou_threshold, idxs)


def _run_sorted(boxes: Tensor, scores: Tensor, iou_threshold: float, idxs: Tensor | None) -> Tensor:
    if not boxes.is_floating_point() or boxes.dtype in (torch.float16, torch.bfloat16):
        boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    threshold = _float32_threshold(float(iou_threshold), boxes.dtype)
    classes = None if idxs is None else idxs.index_select(0, order)
    boxes = boxes.index_select(0, order).contiguous()  # (N, 4): index_select is serial at this size
    keep = None
    if 0.0 <= threshold < 1.0:
        keep = _sparse_keep(boxes, threshold, classes)
    if keep is None:
        keep = _greedy_keep(boxes, threshold, classes)
    return order[keep]


@torch.no_grad()
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: (N, 4) xyxy boxes, (N,) scores -> int64 indices kept, by decreasing score.

    A box is dropped when its IoU with a kept, higher-scoring box is > ``iou_threshold``; equal
    scores keep their input order (torchvision's behaviour).
    """
    _check(boxes, scores, "nms")
    return _run(boxes, scores, iou_threshold, None)


@torch.no_grad()
def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category ``idxs`` (N,) independently -> int64 indices kept, by decreasing score.

    Boxes of different categories never suppress each other. The result equals running ``nms``
    per category and merging by score, with no coordinate-offset rounding.
    """
    _check(boxes, scores, "batched_nms")
    if idxs.shape != scores.shape:
        raise ValueError(f"batched_nms: idxs must be (N,) = ({scores.shape[0]},), got {tuple(idxs.shape)}")
    return _run(boxes, scores, iou_threshold, idxs)
