"""Detection ops in pure PyTorch: boxes, NMS, RoIAlign / RoIPool (hand-written backward), poolers.

Mask ops (decoding, crop-resize, pasting) live in ``maskrcnn.ops.masks``.
"""

from .boxes import (
    BoxCoder,
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    clip_boxes_to_image,
    pairwise_intersection,
    remove_small_boxes,
)
from .nms import batched_nms, nms
from .poolers import MultiScaleRoIAlign, assign_levels
from .roi_align import roi_align
from .roi_pool import roi_pool

__all__ = [
    "BoxCoder",
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_xyxy_to_xywh",
    "clip_boxes_to_image",
    "pairwise_intersection",
    "remove_small_boxes",
    "batched_nms",
    "nms",
    "MultiScaleRoIAlign",
    "assign_levels",
    "roi_align",
    "roi_pool",
]
