"""The check that converted weights give back the model they were written from (shared by the
detectron2 and MMDetection converter tests)."""

import torch


def assert_restored(result, model):
    """Every converted tensor equals the model's, the predictors' background slots (which detectron2's
    and MMDetection's files lack) aside: those must be zero."""
    original, ours = model.state_dict(), result["state_dict"]
    assert ours.keys() == original.keys()
    slots = {"roi_heads.box_predictor.bbox_pred.weight": 4, "roi_heads.box_predictor.bbox_pred.bias": 4,
             "roi_heads.mask_head.predictor.weight": 1, "roi_heads.mask_head.predictor.bias": 1}
    for k, v in original.items():
        n = slots.get(k, 0)
        if not n:  # (also the 0-dim batch counters, which take no slicing)
            assert torch.equal(ours[k], v), k
            continue
        assert torch.equal(ours[k][n:], v[n:]), k
        assert not ours[k][:n].any(), f"{k}: the background slot must be zero"
