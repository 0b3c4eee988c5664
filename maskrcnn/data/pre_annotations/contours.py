"""Binary masks -> polygons: boundary tracing and Douglas-Peucker simplification, in numpy alone (no
OpenCV, no scikit-image).

Shapes: a mask is (H, W) bool; a ring is (P, 2) float64 of (x, y) points, closed implicitly (the last
point joins the first); a component is one outer ring and its holes.

Coordinates follow COCO's pixel convention, which LabelMe and our converters share: pixel (row i,
column j) covers [j, j + 1) x [i, i + 1).

How a mask is traced (the idea of marching squares, on the pixel grid itself):
1. Every side of a foreground pixel whose neighbour is background (the mask is padded with one pixel of
   background, so the border counts too) is a unit edge, directed so that the foreground lies on its
   right on screen (y points down): outer boundaries run clockwise on screen, holes counter-clockwise,
   which the sign of their area tells apart.
2. The edges are followed from end to start into closed loops. At a vertex where two pixels touch only
   diagonally the walk turns left, round to the other pixel: diagonal neighbours are one component
   (8-connectivity, as OpenCV's findContours and scikit-image's label take foreground by default), and
   the holes are 4-connected background.
3. A loop's output ring passes through the midpoints of its unit edges, cutting each pixel corner by
   a quarter of a pixel instead of following the staircase (a 45-degree staircase is already a straight
   line), except where two straight runs of 2 pixels or more meet: that corner is kept (a rectangle
   stays a rectangle). Every foreground pixel's centre stays inside and every background centre
   outside: the ring rasterises back to the mask exactly. Points along straight runs are dropped.
4. Douglas-Peucker (``simplify_ring``) then keeps only the points that hold the ring within
   ``tolerance`` pixels of the traced one; a ring it would flatten (a speck) is kept as traced.
5. Each hole belongs to the smallest outer loop containing a foreground pixel beside it (tested on the
   unit-edge loops, whose integer corners never meet a pixel centre).

``bridge_holes`` joins a component's holes to its outer ring by zero-width cuts, for formats whose
polygons cannot have holes: one polygon whose even-odd fill (what PIL, Qt and pycocotools draw) is the
component with its holes, since each cut is traversed once each way and changes no crossing count.
"""

from __future__ import annotations

from typing import List, NamedTuple

import numpy as np

__all__ = ["Component", "bridge_holes", "mask_to_components", "ring_area", "simplify_ring"]

# Edge directions in clockwise order on screen: a right turn is +1, a left turn -1 (mod 4).
_E, _S, _W, _N = 0, 1, 2, 3
# (row, column) step of each direction
_STEP = np.array([[0, 1], [1, 0], [0, -1], [-1, 0]], dtype=np.int64)
# (row, column) of the foreground pixel on an edge's right, relative to its start vertex (padded grid)
_RIGHT_PIXEL = np.array([[0, 0], [0, -1], [-1, -1], [-1, 0]], dtype=np.int64)


class Component(NamedTuple):
    """One connected part of a mask: its ``outer`` ring and the rings of its ``holes``."""

    outer: np.ndarray
    holes: List[np.ndarray]


def ring_area(ring: np.ndarray) -> float:
    """Signed area (shoelace) of a ring of (x, y) points: positive when clockwise on screen (y down)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _unit_edges(mask: np.ndarray) -> tuple:
    """(start vertices (E, 2) row/column on the padded grid, directions (E,)) of the boundary's unit
    edges, foreground on their right."""
    m = np.pad(mask.astype(bool), 1)  # (H + 2, W + 2): every boundary has background beyond it
    starts, dirs = [], []
    # side of pixel (i, j), its neighbour's offset, the edge's start vertex offset, its direction
    for (di, dj), (vi, vj), d in (((-1, 0), (0, 0), _E), ((0, 1), (0, 1), _S),
                                  ((1, 0), (1, 1), _W), ((0, -1), (1, 0), _N)):
        neighbour = np.roll(m, (-di, -dj), axis=(0, 1))  # neighbour[i, j] = m[i + di, j + dj]
        i, j = np.nonzero(m & ~neighbour)  # the padding keeps the roll from wrapping foreground round
        starts.append(np.stack([i + vi, j + vj], axis=1))
        dirs.append(np.full(len(i), d, dtype=np.int64))
    return np.concatenate(starts), np.concatenate(dirs)


def _successors(starts: np.ndarray, dirs: np.ndarray, ncols: int) -> np.ndarray:
    """(E,) index of the edge that follows each edge: at its end vertex, the outgoing edge turning left,
    else straight on, else right (two outgoing edges meet only where pixels touch diagonally)."""
    key = (starts[:, 0] * ncols + starts[:, 1]) * 4 + dirs  # (E,) unique: one edge per vertex and direction
    order = np.argsort(key)
    sorted_key = key[order]
    ends = starts + _STEP[dirs]  # (E, 2)
    end_vertex = ends[:, 0] * ncols + ends[:, 1]
    nxt = np.full(len(dirs), -1, dtype=np.int64)
    for turn in (1, 0, -1):  # later assignments win: left (-1) over straight (0) over right (+1)
        want = end_vertex * 4 + (dirs + turn) % 4
        pos = np.clip(np.searchsorted(sorted_key, want), 0, len(sorted_key) - 1)
        found = sorted_key[pos] == want
        nxt[found] = order[pos[found]]
    return nxt


def _loops(nxt: np.ndarray) -> list:
    """The cycles of the successor permutation, each an array of edge indices in walking order."""
    seen = np.zeros(len(nxt), dtype=bool)
    succ = nxt.tolist()
    loops = []
    for first in range(len(succ)):
        if seen[first]:
            continue
        loop, e = [], first
        while not seen[e]:
            seen[e] = True
            loop.append(e)
            e = succ[e]
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def _corners(points: np.ndarray) -> np.ndarray:
    """A ring without the points that lie on the straight line of their neighbours."""
    prev, nxt = np.roll(points, 1, axis=0), np.roll(points, -1, axis=0)
    cross = (points[:, 0] - prev[:, 0]) * (nxt[:, 1] - points[:, 1]) - \
        (points[:, 1] - prev[:, 1]) * (nxt[:, 0] - points[:, 0])
    keep = cross != 0
    return points[keep] if keep.sum() >= 3 else points


def _midpoint_ring(starts: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """A loop's output ring (x, y) on the padded grid: the midpoints of its unit edges, and the corner
    itself where two straight runs of at least 2 edges meet (a corner drawn as such: cutting it would
    slant every long side of a rectangle once simplified)."""
    turn = dirs != np.roll(dirs, 1)  # (L,) edge k starts a run
    first = np.flatnonzero(turn)  # (R,) the runs' first edges, in order
    length = np.diff(np.append(first, first[0] + len(dirs)))  # (R,) edges per run (the last wraps)
    sharp = np.zeros(len(dirs), dtype=bool)
    sharp[first] = (length >= 2) & (np.roll(length, 1) >= 2)  # this run and the one before are long
    mids = starts[:, ::-1] + 0.5 * _STEP[dirs][:, ::-1]  # (L, 2)
    corners = starts[:, ::-1].astype(np.float64)
    points = np.stack([corners, mids], axis=1)  # (L, 2, 2): the corner before each midpoint
    keep = np.stack([sharp, np.ones(len(dirs), dtype=bool)], axis=1)  # (L, 2)
    return points[keep]


def _contains(ring: np.ndarray, x: float, y: float) -> bool:
    """Even-odd test of the point (x, y) against a ring (its y never equal to a vertex's here)."""
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.count_nonzero(crosses & (x < at)) % 2)


def _segment_distances(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) distance of each point to the segment a-b."""
    ab = b - a
    length2 = float(ab @ ab)
    if length2 == 0.0:
        return np.hypot(*(points - a).T)
    t = np.clip((points - a) @ ab / length2, 0.0, 1.0)
    return np.hypot(*(points - (a + t[:, None] * ab)).T)


def simplify_ring(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring (P, 2) -> (Q, 2), Q <= P: split at the first point and the point
    farthest from it, then keep, recursively, the point farthest from each chord while it lies more than
    ``tolerance`` from it. Returns the ring unchanged when the result would have no area."""
    n = len(ring)
    if tolerance <= 0 or n <= 4:
        return ring
    far = int(np.argmax(np.hypot(*(ring - ring[0]).T)))
    closed = np.concatenate([ring, ring[:1]])  # index n is the first point again
    keep = np.zeros(n + 1, dtype=bool)
    keep[[0, far, n]] = True
    stack = [(0, far), (far, n)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        d = _segment_distances(closed[a + 1:b], closed[a], closed[b])
        k = int(np.argmax(d))
        if d[k] > tolerance:
            keep[a + 1 + k] = True
            stack += [(a, a + 1 + k), (a + 1 + k, b)]
    out = closed[:n][keep[:n]]
    return out if len(out) >= 3 and abs(ring_area(out)) > 0 else ring


def mask_to_components(mask: np.ndarray, *, tolerance: float = 1.0, offset: tuple = (0, 0),
                       min_area: float = 0) -> list:
    """The ``Component``s of an (H, W) bool mask (see the module docstring), largest first, each ring
    simplified to ``tolerance`` pixels (0: exact) and shifted by ``offset`` (x, y), the position of the
    mask's top-left pixel in the image (callers trace a crop around the object). ``min_area``: components
    whose outer ring (as simplified) encloses fewer square pixels are left out (specks), except the
    largest when all are that small: a mask with any pixel never comes back empty. 0 keeps them all."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    starts, dirs = _unit_edges(mask)
    ncols = mask.shape[1] + 3  # vertices per row of the padded grid
    shift = np.array([offset[0] - 1.0, offset[1] - 1.0])  # padded (column, row) -> image (x, y)
    outers, holes = [], []
    for loop in _loops(_successors(starts, dirs, ncols)):
        s, d = starts[loop], dirs[loop]  # (L, 2) row/column, (L,)
        crack = _corners(s[:, ::-1].astype(np.float64))  # (x, y) integer corners of the unit edges
        mid = _corners(_midpoint_ring(s, d)) + shift
        area = ring_area(crack)
        if area > 0:
            outers.append((area, crack, mid))
        else:
            pixel = s[0] + _RIGHT_PIXEL[d[0]]  # a foreground pixel beside the hole (row, column)
            holes.append((pixel[1] + 0.5, pixel[0] + 0.5, mid))
    outers.sort(key=lambda o: -o[0])
    components = [Component(simplify_ring(mid, tolerance), []) for _, _, mid in outers]
    if holes:
        boxes = np.array([[*crack.min(axis=0), *crack.max(axis=0)] for _, crack, _ in outers])  # (O, 4)
        for x, y, ring in holes:
            inside = (boxes[:, 0] < x) & (x < boxes[:, 2]) & (boxes[:, 1] < y) & (y < boxes[:, 3])
            around = np.flatnonzero(inside)
            # the smallest outer loop around the pixel (outers run largest first)
            owner = next(i for i in around[::-1] if _contains(outers[i][1], x, y))
            components[owner].holes.append(simplify_ring(ring, tolerance))
    if min_area > 0:
        big = [c for c in components if abs(ring_area(c.outer)) >= min_area]
        components = big or components[:1]  # components[0]: the largest traced loop
    return components


def bridge_holes(component: Component) -> np.ndarray:
    """One ring (P, 2) for a component with holes: each hole, from its point nearest to the ring built so
    far, is spliced in by a cut there and back (see the module docstring)."""
    ring = component.outer
    for hole in sorted(component.holes, key=lambda h: -abs(ring_area(h))):
        d = np.hypot(ring[:, None, 0] - hole[None, :, 0], ring[:, None, 1] - hole[None, :, 1])  # (P, Q)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        around = np.concatenate([hole[j:], hole[:j + 1]])  # the hole from point j back to it
        ring = np.concatenate([ring[:i + 1], around, ring[i:]])
    return ring
