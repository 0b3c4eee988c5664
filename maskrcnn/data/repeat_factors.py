"""Repeat-factor sampling for long-tailed data (LVIS: Gupta, Dollár, Girshick 2019, section 4).

Shapes: N training images, C categories (labels; 0 is the background and never counted).

With a threshold t in (0, 1]: f_c is the fraction of the N training images holding at least one
instance of category c, the category's factor is r_c = max(1, sqrt(t / f_c)), and an image's factor
is r_i = max over the categories in it of r_c (1 for an image without annotations). Each epoch the
training sampler (``data/loader.py``) shows image i floor(r_i) times, plus once more with probability
frac(r_i) (stochastic rounding, drawn from the run's seed and the epoch).

Crowd regions do not count: the loss ignores them, so an image whose only instance of a rare class is
a crowd region teaches nothing about it and is not repeated for it (the same rule as
``CocoDataset.instances_per_class``). Pure functions of the per-image label sets; no dataset I/O.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence

import numpy as np

__all__ = ["category_repeat_factors", "draw_repeats", "image_repeat_factors", "summary_lines"]


def category_repeat_factors(image_labels: Sequence[Sequence[int]], *, threshold: float) -> Dict[int, float]:
    """{label: r_c} for every label present in some image; ``image_labels`` holds each image's labels
    (repeats allowed: an image counts once per category)."""
    if not (0.0 < threshold <= 1.0):  # also refuses NaN
        raise ValueError(f"repeat threshold must be in (0, 1], got {threshold!r}")
    n = len(image_labels)
    images_with: Dict[int, int] = {}
    for labels in image_labels:
        for c in set(int(x) for x in labels):
            images_with[c] = images_with.get(c, 0) + 1
    return {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in sorted(images_with.items())}


def image_repeat_factors(
    image_labels: Sequence[Sequence[int]], category_factors: Dict[int, float]
) -> np.ndarray:
    """(N,) float64 r_i: the largest factor of the image's categories, 1 for an image without any."""
    return np.array(
        [max((category_factors[int(c)] for c in labels), default=1.0) for labels in image_labels],
        dtype=np.float64,
    )


def draw_repeats(factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,) int64 appearances in one epoch: floor(r_i), plus one with probability frac(r_i).
    Draws exactly N uniforms from ``rng`` (the stream does not depend on the factors' values)."""
    whole = np.floor(factors)
    return (whole + (rng.random(len(factors)) < factors - whole)).astype(np.int64)


def summary_lines(
    factors: np.ndarray,
    category_factors: Dict[int, float],
    class_names: Sequence[str],
    *,
    threshold: float,
    rarest: int = 5,
) -> List[str]:
    """The start-of-training summary: threshold, images repeated, epoch length, the largest r_c."""
    n = len(factors)
    repeated = int((factors > 1.0).sum())
    total = float(factors.sum())
    lines = [
        f"repeat-factor sampling (data.repeat_threshold={threshold:g}): {repeated} of {n} images repeated, "
        f"an epoch shows {total:.1f} images on average ({total / n:.2f}x the dataset)"
    ]
    top = sorted(((r, c) for c, r in category_factors.items() if r > 1.0), key=lambda rc: (-rc[0], rc[1]))
    if top:
        named = ", ".join(
            f"{class_names[c] if 0 <= c < len(class_names) else c} {r:.2f}" for r, c in top[:rarest]
        )
        more = f" (+{len(top) - rarest} more)" if len(top) > rarest else ""
        lines.append(f"  rarest classes' repeat factors: {named}{more}")
    else:
        lines.append("  no class is rarer than the threshold: every image is shown once per epoch")
    return lines
