"""Parity with torchvision 0.28 and with detectron2 on the golden models, as tables of figures.

    python benchmarks/golden_parity.py                       # torchvision's four models
    python benchmarks/golden_parity.py --detectron2          # detectron2's four models
    python benchmarks/golden_parity.py --detectron2 --cli    # the same through convert + predict

torchvision: runs the models of ``tests/interop/test_golden_parity.py`` (converted torchvision weights,
the golden images; a few minutes on a 2-core CPU) and prints what those tests assert on: the largest
relative difference of the FPN features and of the box-head outputs on torchvision's own proposals, the
share of torchvision's proposals we also propose (IoU > 0.99), and per image the share of torchvision's
detections matched (same label, IoU > 0.99), the worst score difference and the worst and mean mask
IoU of matched detections (keypoint model: worst keypoint offset in pixels and score difference).

detectron2: the same figures from ``tests/interop/test_detectron2_golden.py`` (R50-FPN at 320 and 800,
R50-C4, keypoint R50-FPN; mask IoU over the pixels not decided by rounding, and raw). With ``--cli`` the
recipe weights are written as a model-zoo ``.pkl`` and go through ``maskrcnn convert --from detectron2
... --set ...`` and ``maskrcnn predict --no-optimise`` (add ``--optimise`` for predict's default
inference rewrites) in subprocesses; ``predictions.json`` is compared with detectron2's detections.
The tests pass or fail on thresholds; this shows how far inside them the model is.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _parity_module(file="test_golden_parity.py"):
    path = ROOT / "tests" / "interop" / file
    spec = importlib.util.spec_from_file_location(file[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fmt(v, spec=".1e"):
    return "-" if v is None else format(v, spec)


def torchvision_table() -> int:
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


# --------------------------------------------------------------------------------------------
# detectron2

D2_LABELS = {"d2_mask_rcnn_R_50_FPN_320": "R50-FPN 320", "d2_mask_rcnn_R_50_FPN_800": "R50-FPN 800",
             "d2_mask_rcnn_R_50_C4_320": "R50-C4 320",
             "d2_keypoint_rcnn_R_50_FPN_320": "keypoint R50-FPN 320"}


def _d2_header(cli: bool) -> None:
    cont = "" if cli else f"{'features':>9}{'logits':>9}{'deltas':>9}{'masklg':>9}{'props':>7}"
    print(f"{'detectron2 model':<24}{'img':>4}{'pad':>5}{cont}{'dets':>7}{'score':>9}{'box px':>9}"
          f"{'mask IoU min/raw min/raw mean':>31}{'kp px':>9}{'kp score':>9}")


def _d2_row(label, i, f, d, cli: bool) -> None:
    cont = ""
    if not cli:
        logits = f.get("mask_logits_rel", f.get("keypoint_logits_rel"))
        cont = (f"{_fmt(f.get('features_rel')):>9}{f['class_logits_rel']:>9.1e}{f['box_deltas_rel']:>9.1e}"
                f"{_fmt(logits):>9}{f['proposals_matched_min']:>7.1%}")
    masks = "-"
    if "worst_mask_iou_raw" in d:
        masks = (f"{_fmt(d.get('worst_mask_iou'), '.4f')}/{d['worst_mask_iou_raw']:.4f}/"
                 f"{d['mean_mask_iou_raw']:.4f}")
    print(f"{label:<24}{i:>4}{'ok' if f['padding_ok'] else 'NO':>5}{cont}{d['matched']:>7.1%}"
          f"{d['worst_score_diff']:>9.1e}{d['worst_box_diff']:>9.1e}{masks:>31}"
          f"{_fmt(d.get('worst_keypoint_px')):>9}{_fmt(d.get('keypoint_score_rel')):>9}")


def detectron2_table() -> int:
    t = _parity_module("test_detectron2_golden.py")
    _d2_header(cli=False)
    with tempfile.TemporaryDirectory() as tmp:
        for name in t.MODELS:
            f = t.model_figures(t.run_model(name, Path(tmp)))
            for i, d in f["detections"].items():
                _d2_row(D2_LABELS[name], i, f, d, cli=False)
    return 0


def _cli(*args) -> None:
    cmd = [sys.executable, "-m", "maskrcnn.cli", *map(str, args)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")


def _predictions(path: Path, file_name: str) -> dict:
    """One image's entries of predictions.json as detection tensors (boxes xyxy, masks decoded)."""
    import torch
    from pycocotools import mask as mask_util

    rows = [r for r in json.loads(path.read_text(encoding="utf-8")) if Path(r["file_name"]).name == file_name]
    boxes = torch.tensor([r["bbox"] for r in rows], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
    det = {"boxes": boxes, "scores": torch.tensor([r["score"] for r in rows]),
           "labels": torch.tensor([r["category_id"] for r in rows], dtype=torch.int64)}
    if rows and "segmentation" in rows[0]:
        det["masks"] = torch.from_numpy(
            mask_util.decode([r["segmentation"] for r in rows]).astype(bool)).permute(2, 0, 1)
    if rows and "keypoints" in rows[0]:
        det["keypoints"] = torch.tensor([r["keypoints"] for r in rows]).reshape(len(rows), -1, 3)
    return det


def detectron2_cli_table(optimise: bool) -> int:
    """convert + predict in subprocesses, as a user would, then the detection figures."""
    t = _parity_module("test_detectron2_golden.py")
    _d2_header(cli=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in t.MODELS:
            g = t.load_golden(name)
            pkl, ckpt, out = tmp / f"{name}.pkl", tmp / f"{name}.pt", tmp / name
            t.write_model_zoo_pkl(t.recipe_weights(g), pkl)
            sets = []
            for key, value in t.convert_overrides(g).items():
                value = "[" + ",".join(map(str, value)) + "]" if isinstance(value, tuple) else value
                sets.append(f"{key}={value}")
            _cli("convert", "--from", "detectron2", pkl, ckpt, "--set", *sets)
            images = [t.GOLDEN / g["images"][i] for i in g["batch_ids"]]
            # one batch, as detectron2 ran them: the padding of the images checked equals its batch's
            _cli("predict", "--weights", ckpt, *images, "--output", out, "--batch-size", len(images),
                 "--no-overlays", *([] if optimise else ["--no-optimise"]))
            f = {"padding_ok": True}  # the batch plan of the test module, which asserts the padding
            for i in g["head_ids"]:
                gold = g["detections"][i]
                ours = _predictions(out / "predictions.json", g["images"][i])
                hw = tuple(gold["masks_rle"][0]["size"]) if "masks_rle" in gold else None
                ref = t.reference_mask_probs(g, i, hw) if "mask_logits" in g else None
                _d2_row(D2_LABELS[name], i, f, t.match_detections(ours, gold, ref_probs=ref), cli=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detectron2", action="store_true", help="detectron2's models instead of torchvision's")
    p.add_argument("--cli", action="store_true", help="with --detectron2: through maskrcnn convert + predict")
    p.add_argument("--optimise", action="store_true", help="with --cli: predict's default inference rewrites")
    args = p.parse_args(argv)
    if not args.detectron2:
        return torchvision_table()
    return detectron2_cli_table(args.optimise) if args.cli else detectron2_table()


if __name__ == "__main__":
    sys.exit(main())
