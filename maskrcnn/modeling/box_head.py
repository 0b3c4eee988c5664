"""Box head, box predictor and box post-processing.

LABEL CONVENTION (the whole library): K = ``num_classes`` counts the background. Label 0 is the
background, labels 1..K-1 are object classes (torchvision's convention). ``class_names[0]`` is
``"__background__"``. Datasets map category ids to 1..K-1 and back; detectron2 checkpoints (background
last) are reordered when converted. Detections never carry label 0.

Shapes: R RoIs (all images concatenated), C channels, S x S pooled size (7), F head width (1024),
K classes incl. background, D detections of one image.

State-dict keys: ``box_head.convs.{i}.{conv,norm}.*`` (4conv1fc) and ``box_head.fcs.{j}.{weight,bias}``
(the C4 design's head is res5, ``roi_heads.res5.*``, then ``AvgPoolHead``, which has no weights);
``box_predictor.cls_score.*`` (K outputs), ``box_predictor.bbox_pred.*`` (4K outputs, class-specific).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.layers import ConvNorm
from maskrcnn.ops import batched_nms, clip_boxes_to_image, remove_small_boxes


class BoxHead(nn.Module):
    """``num_convs`` 3x3 convs (v2: 4, with norm) then ``num_fcs`` fully connected layers, all ReLU."""

    def __init__(
        self, *, in_channels: int, pool_size: int, num_convs: int = 0, conv_dim: int = 256,
        num_fcs: int = 2, fc_dim: int = 1024, norm: str = "none",
    ):
        super().__init__()
        self.convs = nn.ModuleList()
        channels = in_channels
        for _ in range(num_convs):
            self.convs.append(ConvNorm(channels, conv_dim, 3, norm=norm, relu=True))
            channels = conv_dim
        dims = [channels * pool_size * pool_size] + [fc_dim] * num_fcs
        self.fcs = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.out_features = dims[-1]
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (R, C, S, S) -> (R, F)."""
        for conv in self.convs:
            x = conv(x)
        x = x.flatten(1)  # (R, C*S*S), channel-major as torchvision flattens
        for fc in self.fcs:
            x = F.relu(fc(x), inplace=True)
        return x


class AvgPoolHead(nn.Module):
    """The C4 design's box head after res5: global average pooling, (R, C, S, S) -> (R, C). No weights."""

    def __init__(self, *, in_channels: int):
        super().__init__()
        self.out_features = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class BoxPredictor(nn.Module):
    """Class scores (K) and class-specific box deltas (4K).

    Initialised as detectron2 does (normal, std 0.01 for scores and 0.001 for deltas, zero biases):
    a fresh row starts near "no opinion", which matters when only some rows are fresh (fine-tuning
    keeps the rows of known classes, ``engine/init_weights.py``)."""

    def __init__(self, *, in_features: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple:
        # in the weights' own precision (float32) even under autocast, in training too: a box delta
        # rounded to bfloat16's 8 bits moves a large box's corners by pixels, and these two layers are a
        # small part of the head's work. A model cast as a whole (.double(), .bfloat16()) keeps its type.
        weight = self.cls_score.weight
        dtype = weight.dtype if isinstance(weight, torch.Tensor) else torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.flatten(1).to(dtype)  # a C4 head gives (R, C, 1, 1) after pooling
            return self.cls_score(x), self.bbox_pred(x)


@torch.no_grad()
def postprocess_boxes(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    proposals: list,
    image_sizes: list,
    *,
    box_coder,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_image: int = 100,
    min_size: float = 1e-2,
) -> list:
    """torchvision's ``RoIHeads.postprocess_detections``.

    class_logits (R, K), box_regression (R, 4K), proposals [(Pi, 4)] with sum Pi = R ->
    per image ``{"boxes": (D, 4), "scores": (D,), "labels": (D,) int64}`` sorted by decreasing score.
    """
    # float32 even under autocast: scores are thresholded and ranked, boxes decoded
    class_logits, box_regression = class_logits.float(), box_regression.float()
    proposals = [p.float() for p in proposals]
    num_classes = class_logits.shape[-1]
    boxes_all = box_coder.decode(box_regression, torch.cat(proposals)).view(-1, num_classes, 4)  # (R, K, 4)
    scores_all = F.softmax(class_logits, dim=-1)  # (R, K)
    counts = [len(p) for p in proposals]
    results = []
    for boxes, scores, size in zip(boxes_all.split(counts), scores_all.split(counts), image_sizes):
        boxes = clip_boxes_to_image(boxes.reshape(-1, 4), size).view(-1, num_classes, 4)
        labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(scores)
        # drop the background column, then flatten (RoI, class) pairs row-major: (Pi * (K-1), ...)
        boxes = boxes[:, 1:].reshape(-1, 4)
        scores = scores[:, 1:].reshape(-1)
        labels = labels[:, 1:].reshape(-1)
        keep = torch.where(scores > score_thresh)[0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = remove_small_boxes(boxes, min_size)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_image]
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return results
