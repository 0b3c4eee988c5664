"""A tiny R18-FPN configuration whose random-weight forwards take milliseconds (shared by CLI tests)."""

TINY = {
    "model.backbone": "resnet18",
    "model.num_classes": 3,
    "model.fpn_dim": 32,
    "model.rpn.pre_nms_topk_test": 100,
    "model.rpn.post_nms_topk_test": 30,
    "model.roi_heads.box_head_dim": 64,
    "model.roi_heads.mask_head_dim": 16,
    "model.roi_heads.score_thresh": 0.0,  # random weights: keep everything so something is detected
    "model.roi_heads.detections_per_image": 10,
    "input.min_size_test": 64,
    "input.max_size_test": 96,
}

# the Predictor tests' variant: frozen batch norm (something to fold), more proposals and detections
TINY_FROZEN_BN = {
    **TINY,
    "model.norm": "frozen_bn",
    "model.rpn.post_nms_topk_test": 40,
    "model.roi_heads.detections_per_image": 20,
}


def small_training(size: int) -> dict:
    """Overrides for short learning tests at ``size`` x ``size`` pixels: a narrow FPN and heads, few
    proposals and sampled RoIs, no flips, batches of 2 at LR 0.02 (the tests add their head widths,
    warm-up and schedule)."""
    return {
        "model.fpn_dim": 32,
        "model.rpn.pre_nms_topk_train": 200,
        "model.rpn.post_nms_topk_train": 100,
        "model.rpn.pre_nms_topk_test": 100,
        "model.rpn.post_nms_topk_test": 50,
        "model.rpn.batch_size_per_image": 64,
        "model.roi_heads.batch_size_per_image": 64,
        "model.roi_heads.box_head_dim": 128,
        "input.min_size": size,
        "input.max_size": size,
        "input.min_size_test": size,
        "input.max_size_test": size,
        "input.flip_prob": 0.0,
        "data.aspect_ratio_grouping": False,
        "solver.batch_size": 2,
        "solver.lr": 0.02,
        "solver.log_period": 10,
    }


def randomise_norms(model):
    """Random batch-norm statistics, norm scales and biases (in place; returns the model): a fresh model's
    are 0 / 1, which would let a converter or a folding rewrite get them wrong unseen."""
    import torch

    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith(("running_var", "norm.weight")):
                v.uniform_(0.5, 1.5)
            elif k.endswith(("running_mean", "bias")):
                v.normal_(0.0, 0.1)
    return model
