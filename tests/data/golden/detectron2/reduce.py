"""Write the reduced copies of detectron2's golden files that tests/interop/test_detectron2_golden.py reads.

    python tests/data/golden/detectron2/reduce.py SHARED_GOLDEN_DIR/detectron2

The full recordings (see the shared golden README) hold every tensor for all three images; the test
needs less, so each copy keeps: the weight recipe's keys, shapes and sums; the config and resized sizes;
which images form the batch (``batch_ids``: their padding must equal detectron2's batch of three) and
which of them the heads are checked on (``head_ids``); for those, the proposals, the first
``BOX_ROWS`` box-predictor rows, the mask logits of each detection's own class, and the detections;
the first 16 channels of the FPN features (first image) and the first ``KP_ROWS`` low-resolution
keypoint logits with their boxes. Nothing else.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

BOX_ROWS = 200
KP_ROWS = 5
# name -> (batch_ids, head_ids). Image 2 (the widest) alone pads like the batch of three; the keypoint
# model runs images 0 and 2 (the recorded keypoint logits are image 0's), its heads on image 2.
PLAN = {
    "d2_mask_rcnn_R_50_FPN_320": ([0, 1, 2], [0, 1, 2]),
    "d2_mask_rcnn_R_50_FPN_800": ([2], [2]),
    "d2_mask_rcnn_R_50_C4_320": ([2], [2]),
    "d2_keypoint_rcnn_R_50_FPN_320": ([0, 2], [2]),
}


def reduce(g: dict, batch_ids: list, head_ids: list) -> dict:
    counts = [len(p["boxes"]) for p in g["proposals"]]
    starts = np.cumsum([0] + counts)
    dets_per_image = [len(d["boxes"]) for d in g["detections"]]
    det_starts = np.cumsum([0] + dets_per_image)
    out = {k: g[k] for k in ("config", "images", "resized_sizes", "state_dict_keys", "state_dict_sums")}
    out["batch_ids"], out["head_ids"] = list(batch_ids), list(head_ids)
    out["proposals"] = {i: g["proposals"][i]["boxes"].clone() for i in head_ids}
    out["box_predictor"] = {
        i: {k: v[starts[i]:starts[i + 1]][:BOX_ROWS].clone() for k, v in g["box_predictor"].items()}
        for i in head_ids}
    out["detections"] = {i: g["detections"][i] for i in head_ids}
    if "mask_logits" in g:
        out["mask_logits"] = {}
        for i in head_ids:
            rows = g["mask_logits"][det_starts[i]:det_starts[i + 1]]  # (D, K, S, S)
            labels = g["detections"][i]["labels"]
            out["mask_logits"][i] = rows[torch.arange(len(rows)), labels].clone()  # (D, S, S)
    if "keypoint_logits_lowres" in g:
        out["keypoint_logits_lowres"] = g["keypoint_logits_lowres"][:KP_ROWS].clone()  # image 0's first
        out["keypoint_boxes"] = g["detections"][0]["boxes"][:KP_ROWS].clone()  # their boxes (original px)
    if "features" in g:
        out["features"] = {k: v[:1, :16].clone() for k, v in g["features"].items()}
    return out


def main(src: str) -> None:
    here = Path(__file__).resolve().parent
    for name, (batch_ids, head_ids) in PLAN.items():
        g = torch.load(Path(src) / f"{name}.pt", weights_only=True)
        torch.save(reduce(g, batch_ids, head_ids), here / f"{name}.pt")
        print(name, (here / f"{name}.pt").stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1])
