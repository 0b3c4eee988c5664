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
