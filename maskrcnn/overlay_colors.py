"""The colours an overlay gives each detection, as JSON, for drawers other than
``visualize.draw_instances`` (the web page of ``maskrcnn serve``), so that both show one detection alike.

The rule is ``visualize``'s own (``colors_by_score``, ``LABEL_DARKEN``, ``LABEL_TEXT``): colour by score
rank, masks outlined and labels backed by that colour darkened, label text white. Shapes: D detections.
"""

from __future__ import annotations

from typing import Sequence

from maskrcnn.visualize import LABEL_TEXT, colors_by_score


def detection_colors(scores: Sequence[float]) -> list:
    """One dict per detection, in the given order: ``color`` (mask, box), ``label_color`` (the label's
    background, also the mask's outline) and ``text_color``, each [R, G, B] in 0..255."""
    colors, dark = colors_by_score(list(scores))  # (D, 3) each
    return [{"color": c.tolist(), "label_color": d.tolist(), "text_color": list(LABEL_TEXT)}
            for c, d in zip(colors, dark)]
