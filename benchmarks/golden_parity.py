"""Parity with torchvision 0.28 on the golden models, as one table of figures.

    python benchmarks/golden_parity.py

Runs the models of ``tests/interop/test_golden_parity.py`` (converted torchvision weights, the golden
images; a few minutes on a 2-core CPU) and prints what those tests assert on: the largest relative
difference of the FPN features and of the box-head outputs on torchvision's own proposals, the share
of torchvision's proposals we also propose (IoU > 0.99), and per image the share of torchvision's
detections matched (same label, IoU > 0.99), the worst score difference and the worst and mean mask
IoU of matched detections (keypoint model: worst keypoint offset in pixels and score difference).
The tests pass or fail on thresholds; this shows how far inside them the model is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _parity_module():
    path = ROOT / "tests" / "interop" / "test_golden_parity.py"
    spec = importlib.util.spec_from_file_location("golden_parity_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fmt(v, spec=".1e"):
    return "-" if v is None else format(v, spec)


def main() -> int:
    t = _parity_module()
    runs = [
        ("maskrcnn_r50fpn_320", [0, 1, 2], False),
        ("maskrcnn_r50fpn_320", [0, 1, 2], True),
        ("maskrcnn_v2_r50fpn_320", [0, 1, 2], False),
        ("maskrcnn_r50fpn_800", [2], False),
    ]
    print(f"{'model':<34}{'img':>4}{'features':>10}{'logits':>9}{'deltas':>9}{'props':>7}"
          f"{'dets':>7}{'score':>9}{'mask IoU min/mean':>19}")
    for name, ids, optimise in runs:
        run = t._run(name, ids, optimise=optimise)
        f = t.model_figures(run)
        label = name + (" optimised" if optimise else "")
        for i, d in zip(ids, f["detections"]):
            masks = f"{_fmt(d['worst_mask_iou'], '.3f')}/{_fmt(d['mean_mask_iou'], '.3f')}"
            print(f"{label:<34}{i:>4}{t._worst_feature_rel(run):>10.1e}{f['class_logits_rel']:>9.1e}"
                  f"{f['box_regression_rel']:>9.1e}{f['proposals_matched_min']:>7.1%}{d['matched']:>7.1%}"
                  f"{d['worst_score_diff']:>9.1e}{masks:>19}")
    kp = t.keypoint_figures(t._run("keypointrcnn_r50fpn_320", [2]))
    print(f"keypointrcnn_r50fpn_320 (image 2): logits {kp['class_logits_rel']:.1e}, detections matched "
          f"{kp['matched']:.1%}, worst score diff {kp['worst_score_diff']:.1e}, worst keypoint "
          f"{kp['worst_keypoint_px']:.1e} px, worst keypoint score diff "
          f"{kp['worst_keypoint_score_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
