"""The former home of the mask utilities, kept so that ``from maskrcnn.ops.masks import ...`` still works.

Each job now has its own module: the COCO codec (polygons / RLE <-> bitmaps) is
``maskrcnn.data.mask_codec``, mask targets ``maskrcnn.ops.mask_targets``, pasting
``maskrcnn.ops.paste``; targets and pasting are also exported by ``maskrcnn.ops``. New code imports from
those; this module only re-exports their public names.
"""

from maskrcnn.data.mask_codec import annotation_to_mask, mask_to_rle, masks_to_rles, rle_counts_from_string

from .mask_targets import crop_and_resize_masks
from .paste import PASTE_METHODS, paste_masks_in_image

__all__ = [
    "PASTE_METHODS",
    "annotation_to_mask",
    "crop_and_resize_masks",
    "mask_to_rle",
    "masks_to_rles",
    "paste_masks_in_image",
    "rle_counts_from_string",
]
