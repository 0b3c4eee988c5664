"""Detection ops in pure PyTorch: boxes, NMS, RoIAlign / RoIPool (hand-written backward), poolers,
mask targets (``crop_and_resize_masks``) and mask pasting (``paste_masks_in_image``).

RoIAlign, the mask targets and the paste share one bilinear sampling module (``sampling``). The COCO
mask codec (polygons / RLE <-> bitmaps) is data, not an op: ``maskrcnn.data.mask_codec``.
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
from .mask_targets import crop_and_resize_masks
from .nms import batched_nms, nms
from .paste import paste_masks_in_image
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
    "crop_and_resize_masks",
    "paste_masks_in_image",
    "MultiScaleRoIAlign",
    "assign_levels",
    "roi_align",
    "roi_pool",
]
