"""The colours an overlay gives each detection, for drawers other than ``visualize.draw_instances`` (the
web page of ``maskrcnn serve``), so that both show one detection alike.

``draw_instances`` colours detections by score rank (the best gets ``instance_colors``' first colour),
outlines masks and fills label strips with that colour darkened (x 0.55, rounded down) and writes labels
in white on it: every darkened palette colour keeps white text at a contrast of about 4:1 or more, where
black text on the bright colour itself falls to 2.1:1 for some of them. Shapes: D detections.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from maskrcnn.visualize import instance_colors

LABEL_DARKEN = 0.55  # the label strip's colour: the detection's, darkened (visualize.draw_instances)
LABEL_TEXT = (255, 255, 255)


def detection_colors(scores: Sequence[float]) -> list:
    """One dict per detection, in the given order: ``color`` (mask, box), ``label_color`` (the label's
    background, also the mask's outline) and ``text_color``, each [R, G, B] in 0..255."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)  # (D,)
    D = scores.shape[0]
    if D == 0:
        return []
    rank = np.empty(D, np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(D)
    colors = instance_colors(D)[rank]  # (D, 3) uint8
    dark = (colors.astype(np.float32) * LABEL_DARKEN).astype(np.uint8)  # (D, 3), as draw_instances rounds
    return [{"color": c.tolist(), "label_color": d.tolist(), "text_color": list(LABEL_TEXT)}
            for c, d in zip(colors, dark)]


def contrast_ratio(a: Sequence[int], b: Sequence[int]) -> float:
    """WCAG contrast ratio of two sRGB colours (1 to 21)."""

    def luminance(rgb):
        c = np.asarray(rgb, dtype=np.float64) / 255.0
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(c @ np.array([0.2126, 0.7152, 0.0722]))

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)
