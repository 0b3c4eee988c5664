"""Region Proposal Network: head, proposal decoding and selection (inference), loss hook (training).

Shapes: N images, L pyramid levels, level l with Hl x Wl locations and A anchors per location,
R = sum_l Hl * Wl * A anchors per image; P proposals per image after NMS (<= post_nms_topk).

Layouts match torchvision so its checkpoints line up: objectness (N, A, H, W) -> (N, H*W*A) and deltas
(N, 4A, H, W) -> (N, H*W*A, 4), location-major then anchor (see anchors.py for the anchor order).

Selection is torchvision's ``RegionProposalNetwork.filter_proposals``: decode with weights (1, 1, 1, 1),
top-k on the logits per level and image, sigmoid, clip to the image, drop boxes smaller than
``min_size``, drop scores below ``score_thresh``, NMS within each level, keep ``post_nms_topk`` per image.

Training: ``rpn_loss.rpn_losses`` with the RPN's matcher, sampler and box loss (built once by
``build_model``); selection runs with the training settings (more proposals kept for the RoI heads).

State-dict keys: ``head.convs.{i}.conv.{weight,bias}``, ``head.objectness.*``, ``head.deltas.*``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from maskrcnn.modeling.layers import ConvNorm
from maskrcnn.modeling.matcher import BalancedSampler, Matcher, gt_ignore_flags
from maskrcnn.modeling.rpn_loss import BoxRegressionLoss, rpn_losses
from maskrcnn.ops import batched_nms, clip_boxes_to_image, remove_small_boxes


@dataclass(frozen=True)
class ProposalSettings:
    """How ``select_proposals`` picks proposals: one set for training, one for inference."""

    pre_nms_topk: int  # per level and image, on the logits
    post_nms_topk: int  # per image, after NMS
    nms_thresh: float = 0.7
    min_size: float = 1e-3
    score_thresh: float = 0.0


class RPNHead(nn.Module):
    def __init__(self, *, in_channels: int, num_anchors: int, num_convs: int = 1, norm: str = "none"):
        super().__init__()
        self.convs = nn.ModuleList(
            [ConvNorm(in_channels, in_channels, 3, norm=norm, relu=True) for _ in range(num_convs)]
        )
        self.objectness = nn.Conv2d(in_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in [c.conv for c in self.convs] + [self.objectness, self.deltas]:
            nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(self, features: list) -> tuple:
        """features: [(N, C, Hl, Wl)] -> objectness (N, R) logits, deltas (N, R, 4)."""
        objectness, deltas = [], []
        for x in features:
            for conv in self.convs:
                x = conv(x)
            o = self.objectness(x)
            d = self.deltas(x)
            n, a, h, w = o.shape
            objectness.append(o.permute(0, 2, 3, 1).reshape(n, h * w * a))  # (N, A, H, W) -> (N, H*W*A)
            # (N, 4A, H, W) -> (N, A, 4, H, W) -> (N, H, W, A, 4) -> (N, H*W*A, 4)
            deltas.append(d.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a, 4))
        return torch.cat(objectness, dim=1), torch.cat(deltas, dim=1)


@torch.no_grad()
def select_proposals(
    anchors: torch.Tensor,
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    num_anchors_per_level: list,
    image_sizes: list,
    *,
    box_coder,
    pre_nms_topk: int,
    post_nms_topk: int,
    nms_thresh: float,
    min_size: float,
    score_thresh: float,
) -> tuple:
    """Proposals per image: ([(P, 4)], [(P,)] sigmoid scores), P sorted by decreasing score.

    anchors (R, 4), objectness (N, R) logits, deltas (N, R, 4), image_sizes [(h, w)] unpadded.
    """
    # decoding, ranking and NMS in float32 even under bfloat16 / float16 autocast
    objectness, deltas, anchors = objectness.float(), deltas.float(), anchors.float()
    n, r = objectness.shape
    # top-k per level on the logits (sigmoid is monotonic), all images at once
    idxs, levels, start = [], [], 0
    for lvl, count in enumerate(num_anchors_per_level):
        k = min(pre_nms_topk, count)
        _, top = objectness[:, start:start + count].topk(k, dim=1)  # (N, k)
        idxs.append(top + start)
        levels.append(torch.full((k,), lvl, dtype=torch.int64, device=objectness.device))
        start += count
    idx = torch.cat(idxs, dim=1)  # (N, sum k)
    level = torch.cat(levels)  # (sum k,)
    scores = objectness.gather(1, idx).sigmoid()  # (N, sum k)
    # decode only the selected anchors: (N, sum k, 4) each, one code per row
    sel_deltas = deltas.gather(1, idx[..., None].expand(-1, -1, 4))
    sel_anchors = anchors[idx]
    boxes = box_coder.decode(sel_deltas.reshape(-1, 4), sel_anchors.reshape(-1, 4)).view(n, -1, 4)

    out_boxes, out_scores = [], []
    for b, s, size in zip(boxes, scores, image_sizes):
        b = clip_boxes_to_image(b, size)
        keep = remove_small_boxes(b, min_size)
        b, s, lv = b[keep], s[keep], level[keep]
        keep = torch.where(s >= score_thresh)[0]
        b, s, lv = b[keep], s[keep], lv[keep]
        keep = batched_nms(b, s, lv, nms_thresh)[:post_nms_topk]
        out_boxes.append(b[keep])
        out_scores.append(s[keep])
    return out_boxes, out_scores


class RPN(nn.Module):
    """Anchors + head + selection; with targets, also the losses from ``rpn_loss.rpn_losses``.

    ``proposals_train`` / ``proposals_test``: the selection settings of each mode;
    ``matcher``, ``sampler``, ``box_loss``: the loss's parts; ``loss_weight`` scales both loss terms.
    """

    def __init__(
        self, *, head: RPNHead, anchor_generator, box_coder, proposals_train: ProposalSettings,
        proposals_test: ProposalSettings, matcher: Matcher, sampler: BalancedSampler,
        box_loss: BoxRegressionLoss, loss_weight: float = 1.0,
    ):
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.proposals_train = proposals_train
        self.proposals_test = proposals_test
        self.matcher = matcher
        self.sampler = sampler
        self.box_loss = box_loss
        self.loss_weight = loss_weight

    def forward(self, features: list, image_sizes: list, padded_size, targets=None, generator=None) -> tuple:
        """features: [(N, C, Hl, Wl)] in level order -> ([(P, 4)] proposals, losses dict)."""
        objectness, deltas = self.head(features)
        anchors, per_level = self.anchor_generator(
            [f.shape[-2:] for f in features], padded_size, device=objectness.device, dtype=deltas.dtype
        )
        s = self.proposals_train if self.training else self.proposals_test
        proposals, _ = select_proposals(
            anchors, objectness.detach(), deltas.detach(), per_level, image_sizes,
            box_coder=self.box_coder, pre_nms_topk=s.pre_nms_topk, post_nms_topk=s.post_nms_topk,
            nms_thresh=s.nms_thresh, min_size=s.min_size, score_thresh=s.score_thresh,
        )
        losses = {}
        if targets is not None:
            losses = rpn_losses(
                [anchors] * len(image_sizes), objectness, deltas, [t["boxes"] for t in targets],
                box_coder=self.box_coder, matcher=self.matcher, sampler=self.sampler, box_loss=self.box_loss,
                gt_ignore=gt_ignore_flags(targets), generator=generator,
            )
            if self.loss_weight != 1.0:
                losses = {k: v * self.loss_weight for k, v in losses.items()}
        return proposals, losses
