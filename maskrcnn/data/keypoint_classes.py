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

import warnings
from typing import Optional, Sequence

import torch

__all__ = ["keypoint_labels", "owns_keypoints", "renamed_keypoint_classes", "without_foreign_keypoints"]


def keypoint_labels(keypoint_classes: Sequence[str], class_names: Sequence[str]) -> Optional[frozenset]:
    """The labels (indices into ``class_names``, 0 the background) of the classes named in
    ``keypoint_classes``; None (every class has keypoints) when none is recorded or none of the names is
    a class here (names from another model: filtering by them would drop every keypoint). Names that are
    no class are said in one warning naming both lists (a rename that left the record behind: a class
    silently keeping, or losing, its points would read as the model's doing)."""
    wanted = [str(n) for n in keypoint_classes]
    if not wanted:
        return None
    foreground = [str(n) for n in list(class_names)[1:]]
    labels = frozenset(i for i, n in enumerate(class_names) if i > 0 and str(n) in set(wanted))
    unknown = [n for n in wanted if n not in foreground]
    if unknown:
        then = ("every class keeps its keypoints" if not labels else
                f"keypoints kept for {[n for n in wanted if n not in unknown]} only")
        warnings.warn(f"data.keypoint_classes {wanted} names {unknown}, no class of the model (class names "
                      f"{foreground}): {then}; set data.keypoint_classes to the model's names of the classes "
                      "with keypoints (maskrcnn convert --class-names renames both)", stacklevel=2)
    return labels or None


def renamed_keypoint_classes(keypoint_classes: Sequence[str], old_names: Sequence[str],
                             new_names: Sequence[str]) -> tuple:
    """``keypoint_classes`` under a rename of the classes ``old_names`` -> ``new_names`` (the same labels,
    new names): each recorded name becomes the new name of its label; a name that was no class is kept
    as it is (``keypoint_labels`` says it)."""
    by_old = {str(o): str(n) for i, (o, n) in enumerate(zip(old_names, new_names)) if i > 0}
    return tuple(by_old.get(str(c), str(c)) for c in keypoint_classes)


def owns_keypoints(labels: Optional[frozenset], label) -> bool:
    """Whether a detection of class ``label`` carries keypoints (every class when ``labels`` is None):
    the one test predictions.json, the COCO export and pre-annotations share."""
    return labels is None or int(label) in labels


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

