"""Which classes own the keypoint set: a dataset may hold categories with keypoints (a ``critter``)
beside categories without (a ``ball``), and one keypoint head predicts points for every box.

Training records the classes whose COCO category lists the keypoint names in ``data.keypoint_classes``
(class names, kept in the run's config and checkpoint); () means every class (a checkpoint from before,
a COCO person model, a converted model), as before. At inference the predictor keeps the ``keypoints``
(D, K, 3) and ``keypoint_scores`` (D, K) shapes for batch consumers but zeroes the rows of detections of
other classes: x = y = 0 and visibility v = 0 (no point; a predicted point has v = 1), score 0. Overlays
draw no point with v = 0; predictions.json, serve's answer and the COCO export leave ``keypoints`` out
for those detections, and the export gives those categories no keypoint names.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["keeps_keypoints", "keypoint_labels", "without_foreign_keypoints"]


def keypoint_labels(keypoint_classes: Sequence[str], class_names: Sequence[str]) -> Optional[frozenset]:
    """The labels (indices into ``class_names``, 0 the background) of the classes named in
    ``keypoint_classes``; None (every class has keypoints) when none is recorded or none of the names is
    a class here (names from another model: filtering by them would drop every keypoint)."""
    wanted = {str(n) for n in keypoint_classes}
    if not wanted:
        return None
    labels = frozenset(i for i, n in enumerate(class_names) if i > 0 and str(n) in wanted)
    return labels or None


def without_foreign_keypoints(det: dict, labels: Optional[frozenset]) -> dict:
    """``det`` with the keypoint rows of detections whose label is not in ``labels`` zeroed (x, y, v and
    score 0); the same dict when ``labels`` is None or it has no keypoints. Shapes are kept."""
    if labels is None or det.get("keypoints") is None or det.get("labels") is None:
        return det
    other = ~torch.isin(det["labels"].reshape(-1), torch.tensor(sorted(labels), dtype=det["labels"].dtype,
                                                                  device=det["labels"].device))
    if not bool(other.any()):
        return det
    out = dict(det)
    out["keypoints"] = det["keypoints"].clone()
    out["keypoints"][other] = 0
    if det.get("keypoint_scores") is not None:
        out["keypoint_scores"] = det["keypoint_scores"].clone()
        out["keypoint_scores"][other] = 0
    return out


def keeps_keypoints(labels: Optional[frozenset], label) -> bool:
    """Whether a detection of class ``label`` carries keypoints (every class when ``labels`` is None)."""
    return labels is None or int(label) in labels
