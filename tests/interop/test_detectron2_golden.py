"""Parity with detectron2 on its own recorded outputs (tests/data/golden/detectron2, reduced copies).

For each of detectron2's R50-FPN Mask R-CNN at 320 and 800 px, the paper's R50-C4 Mask R-CNN and the
R50-FPN Keypoint R-CNN: the golden weight recipe over detectron2's state-dict order is written as a
model-zoo ``.pkl`` (``{"model": {name: numpy array}, "__author__": ...}``), converted by
``load_detectron2_file`` (what ``maskrcnn convert --from detectron2`` calls) with the recorded test
sizes, score threshold and pixel std as overrides, and our model runs on the golden images read as RGB
floats and resized by ``resize_image`` with the converter's ``input.resize_method`` (detectron2's
``ResizeShortestEdge``: PIL bilinear on uint8, sizes rounded).

detectron2 ran the three images as one padded batch; padding changes the features near the right and
bottom borders, so every image is checked in a batch whose padded size equals detectron2's (asserted):
image 2, the widest, alone pads like the batch of three (FPN: to 320 x 480 / 800 x 1152; C4, no padding
multiple: 320 x 459). The heads are per image, so a batch's features can be cut to the images checked.

Checked: FPN features (first image, 16 channels) and the box predictor on detectron2's own proposals to
1e-4 relative; proposals and detections by matching (same class, box IoU > 0.99): >= 99% matched,
scores within 1e-4; mask logits on detectron2's own boxes to 1e-4; pasted masks; keypoints within
0.05 px, their scores (detectron2's spatial-softmax convention, which the converter selects) to 1e-4
relative.

Pasted masks: detectron2's masks are exactly what our ``grid_sample`` paste makes of its recorded mask
probabilities in its boxes (``test_paste_reproduces_detectron2_masks``). End to end, our boxes differ
from detectron2's by float rounding (~1e-5 px) and our pasted probabilities by up to ~2e-3 (thin boxes,
< 1 px wide, magnify box shifts), which flips the odd pixel whose probability is that close to 0.5: on a
12-pixel mask one flip is IoU 0.92. Mask IoU is therefore taken over the pixels that are not decided by
rounding (detectron2's own pasted probability at least ``MASK_BAND`` from the 0.5 threshold, times
1 / side for boxes under a pixel wide or high, whose paste magnifies box shifts by as much); the raw
IoU is reported beside it, and the largest pasted-probability difference (divided by the same factor)
is asserted. The models run with at least two threads, as the references were recorded
(``tests/thread_count.py``).

``benchmarks/golden_parity.py --detectron2`` prints these figures as a table (and, with ``--cli``, the
same comparison from ``maskrcnn convert`` + ``maskrcnn predict`` on the command line).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

from maskrcnn.data.images import read_image
from maskrcnn.data.transforms import resize_image
from maskrcnn.interop.detectron2 import load_detectron2_file
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.modeling.postprocess import detections_to_original
from maskrcnn.ops import box_iou
from maskrcnn.ops.paste import paste_masks_in_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_weights import recipe_state_dict  # noqa: E402
from thread_count import recorded_threads  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
D2 = GOLDEN / "detectron2"
MODELS = ("d2_mask_rcnn_R_50_FPN_320", "d2_mask_rcnn_R_50_FPN_800", "d2_mask_rcnn_R_50_C4_320",
          "d2_keypoint_rcnn_R_50_FPN_320")
MASK_BAND = 5e-3  # pixels whose reference probability is this close to 0.5 are decided by rounding


def load_golden(name: str) -> dict:
    return torch.load(D2 / f"{name}.pt", weights_only=True)


def recipe_weights(g: dict) -> dict:
    """detectron2's state dict by the golden recipe, checked against the recorded sums."""
    sd = recipe_state_dict(g["state_dict_keys"])
    for key, total in g["state_dict_sums"].items():
        ours = float(sd[key].double().sum())
        assert abs(ours - total) <= 1e-4 * max(1.0, abs(total)), f"recipe differs on {key}"
    return sd


def write_model_zoo_pkl(sd: dict, path: Path) -> None:
    """A file laid out like detectron2's model-zoo ``model_final_*.pkl``."""
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in sd.items()}, "__author__": "golden recipe"}, f)


def convert_overrides(g: dict) -> dict:
    """The recorded test-time settings as our config keys (pixel std: detectron2's BGR on 0-255 ->
    RGB on [0, 1]); the same values ``--set`` passes on the command line."""
    c = g["config"]
    return {"input.min_size_test": int(c["min_size_test"]), "input.max_size_test": int(c["max_size_test"]),
            "model.roi_heads.score_thresh": float(c["score_thresh_test"]),
            "model.pixel_std": tuple(round(s / 255.0, 6) for s in reversed(c["pixel_std"]))}


def detectron2_padding(g: dict) -> tuple:
    """detectron2's padded batch size: FPN models pad to a multiple of 32, C4 models not at all."""
    sizes = g["resized_sizes"]
    d = 1 if "C4" in g["config"]["yaml"] else 32
    return tuple(int(np.ceil(max(s[k] for s in sizes) / d) * d) for k in (0, 1))


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def run_model(name: str, tmp_dir: Path) -> dict:
    """Convert, run and collect everything the figures need (CPU, float32, inference mode)."""
    g = load_golden(name)
    pkl = Path(tmp_dir) / f"{name}.pkl"
    write_model_zoo_pkl(recipe_weights(g), pkl)
    conv = load_detectron2_file(pkl, convert_overrides(g))
    cfg = conv["config"]
    model = build_model(cfg)
    model.load_state_dict(conv["state_dict"])
    model.eval()
    batch_ids, head_ids = g["batch_ids"], g["head_ids"]
    originals = {i: read_image(GOLDEN / g["images"][i]) for i in batch_ids}
    resized = [resize_image(originals[i], min_size=cfg.input.min_size_test, max_size=cfg.input.max_size_test,
                            method=cfg.input.resize_method) for i in batch_ids]
    out = {"golden": g, "conv": conv, "head_ids": head_ids}
    with torch.inference_mode():
        batch, sizes = model.preprocess(resized)
        out["padded"], out["sizes"] = tuple(batch.shape[-2:]), dict(zip(batch_ids, sizes))
        feats = model.features(batch)  # name -> (N, C, Hl, Wl)
        if "features" in g:
            out["features"] = {k: v[:1, :16].clone() for k, v in feats.items()}
        rows = [batch_ids.index(i) for i in head_ids]
        head_feats = {k: v[rows] for k, v in feats.items()}  # the heads are per image
        head_sizes = [sizes[r] for r in rows]
        proposals, _ = model.rpn([head_feats[n] for n in model.rpn_in_features], head_sizes, batch.shape[-2:])
        out["proposals"] = dict(zip(head_ids, proposals))
        roi = model.roi_heads
        # box predictor on detectron2's own proposals: a comparison free of ranking noise
        gold_props = [g["proposals"][i][: len(g["box_predictor"][i]["scores"])] for i in head_ids]
        out["class_logits"], out["box_regression"] = roi.box_logits(head_feats, gold_props)
        dets, _ = roi(head_feats, proposals, head_sizes)
        # mask logits on detectron2's own detections (its boxes back in resized coordinates)
        if "mask_logits" in g:
            out["mask_logits"] = {}
            for r, i in enumerate(head_ids):
                d = g["detections"][i]
                boxes = _to_resized(d["boxes"], head_sizes[r], originals[i].shape[-2:])
                one = {k: v[r:r + 1] for k, v in head_feats.items()}
                logits = roi.mask_head(roi._pooled(roi.mask_pooler, one, [boxes]))  # (D, K, S, S), bg first
                out["mask_logits"][i] = logits[torch.arange(len(boxes)), d["labels"] + 1]
        if "keypoint_logits_lowres" in g:  # image 0's first detections, before the x2 upsampling
            kp_boxes = _to_resized(g["keypoint_boxes"], sizes[batch_ids.index(0)], originals[0].shape[-2:])
            x = roi.keypoint_pooler({k: v[batch_ids.index(0)][None] for k, v in feats.items()}, [kp_boxes])
            for conv_layer in roi.keypoint_head.convs:
                x = conv_layer(x)
            out["keypoint_logits_lowres"] = roi.keypoint_head.predictor(x)
    paste = cfg.model.roi_heads.mask_paste
    out["detections"] = {
        i: detections_to_original(d, s, originals[i].shape[-2:], paste_method=paste,
                                  mask_threshold=cfg.model.roi_heads.mask_threshold)
        for i, d, s in zip(head_ids, dets, head_sizes)}
    out["original_sizes"] = {i: tuple(originals[i].shape[-2:]) for i in head_ids}
    return out


def _to_resized(boxes: torch.Tensor, resized_hw, original_hw) -> torch.Tensor:
    sy = resized_hw[0] / original_hw[0]
    sx = resized_hw[1] / original_hw[1]
    return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype)


def reference_mask_probs(g: dict, i: int, image_hw) -> torch.Tensor:
    """detectron2's pasted probabilities of image ``i``: its recorded mask logits (each detection's
    class) pasted into its boxes as detectron2 pastes (grid_sample)."""
    d = g["detections"][i]
    probs = torch.sigmoid(g["mask_logits"][i])[:, None]  # (D, 1, S, S)
    return paste_masks_in_image(probs, d["boxes"], image_hw, method="grid_sample")  # (D, H, W)


def match_detections(ours: dict, gold: dict, *, ref_probs=None) -> dict:
    """Greedy matching by decreasing detectron2 score: same class, box IoU > 0.99. Returns figures."""
    iou = box_iou(gold["boxes"], ours["boxes"])  # (Dg, Do)
    iou = iou * ((gold["labels"][:, None] + 1) == ours["labels"][None, :])  # detectron2: no background
    taken = torch.zeros(len(ours["boxes"]), dtype=torch.bool)
    gold_masks = None
    if "masks_rle" in gold:
        gold_masks = torch.from_numpy(mask_util.decode(gold["masks_rle"]).astype(bool)).permute(2, 0, 1)
    pairs = []
    for gi in range(len(gold["boxes"])):
        cand = iou[gi].masked_fill(taken, -1)
        oi = int(cand.argmax()) if len(cand) else -1
        if oi >= 0 and float(cand[oi]) > 0.99:
            taken[oi] = True
            pairs.append((gi, oi))
    f = {"matched": len(pairs) / max(len(gold["boxes"]), 1), "n_gold": len(gold["boxes"]),
         "n_ours": len(ours["boxes"]), "worst_score_diff": 0.0, "worst_box_diff": 0.0}
    if not pairs:
        return f
    g_idx = torch.tensor([p[0] for p in pairs])
    o_idx = torch.tensor([p[1] for p in pairs])
    f["worst_score_diff"] = float((ours["scores"][o_idx] - gold["scores"][g_idx]).abs().max())
    f["worst_box_diff"] = float((ours["boxes"][o_idx] - gold["boxes"][g_idx]).abs().max())
    if gold_masks is not None:
        a, b = ours["masks"][o_idx], gold_masks[g_idx]  # (P, H, W) bool
        raw = _iou(a, b)
        f["worst_mask_iou_raw"], f["mean_mask_iou_raw"] = float(raw.min()), float(raw.mean())
        # a box under a pixel wide or high stretches its 28 cells over less than a pixel: a box shift
        # of 1e-4 px moves its pasted probabilities by 1e-2 (a 0.1-px box: 10x a 1-px box's change)
        gold_boxes = gold["boxes"][g_idx]
        side = torch.minimum(gold_boxes[:, 2] - gold_boxes[:, 0], gold_boxes[:, 3] - gold_boxes[:, 1])
        magnify = 1.0 / side.clamp(min=1e-3, max=1.0)  # (P,), 1 for boxes of a pixel or more
        if ref_probs is not None:
            band = MASK_BAND * magnify[:, None, None]
            decided = (ref_probs[g_idx] - 0.5).abs() >= band  # (P, H, W)
            f["worst_mask_iou"] = float(_iou(a & decided, b & decided).min())
        if ref_probs is not None and "mask_probs" in ours:  # (absent from predictions.json)
            ours_probs = paste_masks_in_image(ours["mask_probs"][o_idx], ours["boxes"][o_idx], a.shape[-2:],
                                              method="grid_sample")
            diff = (ours_probs - ref_probs[g_idx]).abs().flatten(1).max(dim=1).values  # (P,)
            f["worst_mask_prob_diff"] = float((diff / magnify).max())
    if "keypoints" in gold:
        f["worst_keypoint_px"] = float((ours["keypoints"][o_idx, :, :2] - gold["keypoints"][g_idx, :, :2])
                                       .abs().max())
        if "keypoint_scores" in ours:  # detectron2's score, the third column; relative: random-weight
            # heatmaps are nearly flat, so their spatial-softmax scores are small (~1 / 56^2)
            f["keypoint_score_rel"] = _rel(ours["keypoint_scores"][o_idx], gold["keypoints"][g_idx, :, 2])
    return f


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(P, H, W) bool pairs -> (P,) IoU (1 where both are empty)."""
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def model_figures(run: dict) -> dict:
    """How close a run is to detectron2's outputs (no assertion: the tests and the benchmark decide)."""
    g = run["golden"]
    ids = run["head_ids"]
    gold_scores = torch.cat([g["box_predictor"][i]["scores"] for i in ids])  # (R, K + 1), background last
    gold_deltas = torch.cat([g["box_predictor"][i]["proposal_deltas"] for i in ids])  # (R, 4K)
    f = {"padding_ok": run["padded"] == detectron2_padding(g),
         "sizes_ok": all(list(run["sizes"][i]) == list(g["resized_sizes"][i]) for i in run["sizes"]),
         "class_logits_rel": _rel(run["class_logits"], gold_scores.roll(1, dims=1)),
         "box_deltas_rel": _rel(run["box_regression"][:, 4:], gold_deltas)}
    if "features" in run:
        f["features_rel"] = max(_rel(run["features"][k], v) for k, v in g["features"].items())
    if "mask_logits" in run:
        f["mask_logits_rel"] = max(_rel(run["mask_logits"][i], g["mask_logits"][i]) for i in ids)
    if "keypoint_logits_lowres" in run:
        f["keypoint_logits_rel"] = _rel(run["keypoint_logits_lowres"], g["keypoint_logits_lowres"])
    f["proposals_matched_min"] = min(
        float((box_iou(g["proposals"][i], run["proposals"][i]).max(dim=1).values > 0.99).float().mean())
        for i in ids)
    f["detections"] = {}
    for i in ids:
        ref = reference_mask_probs(g, i, run["original_sizes"][i]) if "mask_logits" in g else None
        f["detections"][i] = match_detections(run["detections"][i], g["detections"][i], ref_probs=ref)
    return f


def check_figures(f: dict, label: str) -> None:
    assert f["padding_ok"] and f["sizes_ok"], label
    continuous = ("class_logits_rel", "box_deltas_rel", "features_rel", "mask_logits_rel",
                  "keypoint_logits_rel")
    for key in continuous:
        if key in f:
            assert f[key] < 1e-4, (label, key, f[key])
    assert f["proposals_matched_min"] >= 0.99, label
    for i, d in f["detections"].items():
        where = (label, i, d)
        assert d["matched"] >= 0.99 and d["worst_score_diff"] < 1e-4, where
        if "worst_mask_iou" in d:
            assert d["worst_mask_iou"] >= 0.99 and d["mean_mask_iou_raw"] >= 0.99, where
        if "worst_mask_prob_diff" in d:
            assert d["worst_mask_prob_diff"] < 1e-2, where
        if "worst_keypoint_px" in d:
            assert d["worst_keypoint_px"] < 0.05 and d["keypoint_score_rel"] < 1e-4, where


# --------------------------------------------------------------------------------------------
# Fast checks of the golden data and the conventions alone


def test_resize_matches_resize_shortest_edge():
    for name in MODELS:
        g = load_golden(name)
        c = g["config"]
        for i, file in enumerate(g["images"]):
            im = read_image(GOLDEN / file)
            out = resize_image(im, min_size=c["min_size_test"], max_size=c["max_size_test"], method="pil")
            assert list(out.shape[-2:]) == list(g["resized_sizes"][i]), (name, file)


def test_paste_reproduces_detectron2_masks():
    """Our grid_sample paste of detectron2's own probabilities in its boxes gives its masks exactly."""
    for name in MODELS[:3]:
        g = load_golden(name)
        for i in g["head_ids"]:
            d = g["detections"][i]
            hw = tuple(d["masks_rle"][0]["size"])
            ours = reference_mask_probs(g, i, hw) >= 0.5
            gold = torch.from_numpy(mask_util.decode(d["masks_rle"]).astype(bool)).permute(2, 0, 1)
            assert torch.equal(ours, gold), (name, i)


# --------------------------------------------------------------------------------------------
# The four models end to end (R50 on a 2-core CPU: the C4 model, res5 on 1000 RoIs, is the slowest)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            with recorded_threads():
                cache[name] = run_model(name, tmp_path_factory.mktemp("d2"))
        return cache[name]

    return get


@pytest.mark.slow
def test_r50_fpn_320(runs):
    run = runs("d2_mask_rcnn_R_50_FPN_320")
    assert run["conv"]["layout"] == "maskrcnn" and run["conv"]["config"].model.fpn
    check_figures(model_figures(run), "R50-FPN 320")


@pytest.mark.slow
def test_r50_fpn_800(runs):
    check_figures(model_figures(runs("d2_mask_rcnn_R_50_FPN_800")), "R50-FPN 800")


@pytest.mark.slow
def test_r50_c4_320(runs):
    run = runs("d2_mask_rcnn_R_50_C4_320")
    assert run["conv"]["layout"] == "maskrcnn" and not run["conv"]["config"].model.fpn
    check_figures(model_figures(run), "R50-C4 320")


@pytest.mark.slow
def test_keypoint_r50_fpn_320(runs):
    run = runs("d2_keypoint_rcnn_R_50_FPN_320")
    assert run["conv"]["layout"] == "keypointrcnn"
    check_figures(model_figures(run), "keypoint R50-FPN 320")
