"""Region Proposal Network: head, proposal decoding and selection (inference), loss hook (training).

Shapes: N images, L pyramid levels, level l with Hl x Wl locations and A anchors per location,
R = sum_l Hl * Wl * A anchors per image; P proposals per image after NMS (<= post_nms_topk).

Layouts match torchvision so its checkpoints line up: objectness (N, A, H, W) -> (N, H*W*A) and deltas
(N, 4A, H, W) -> (N, H*W*A, 4), location-major then anchor (see anchors.py for the anchor order).

Selection is torchvision's ``RegionProposalNetwork.filter_proposals``: decode with weights (1, 1, 1, 1),
top-k on the logits per level and image, sigmoid, clip to the image, drop boxes smaller than
``min_size``, drop scores below ``score_thresh``, NMS within each level, keep ``post_nms_topk`` per image.

Training: the RPN's matcher, sampler and box loss (built once by ``build_model``) pick S anchors over
the batch (``rpn_loss.sample_anchors``); the dense head then runs without autograd (its outputs only
feed the detached selection) and ``RPNHead.outputs_at`` re-evaluates it with autograd at the S sampled
anchors alone, for ``rpn_loss.sampled_anchor_losses``: the same losses and gradients as the dense head
through ``rpn_loss.rpn_losses``, without the dense backward. Heads with a norm (or modules swapped in)
keep the dense path. Selection runs with the training settings (more proposals kept for the RoI heads).

State-dict keys: ``head.convs.{i}.conv.{weight,bias}``, ``head.objectness.*``, ``head.deltas.*``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.layers import ConvNorm
from maskrcnn.modeling.matcher import BalancedSampler, Matcher, gt_ignore_flags
from maskrcnn.modeling.rpn_loss import BoxRegressionLoss, rpn_losses, sample_anchors, sampled_anchor_losses
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

    def evaluates_at_locations(self) -> bool:
        """Whether ``outputs_at`` computes exactly what ``forward`` does: plain 3x3 convolutions (stride 1,
        zero padding 1) without a norm, then the 1x1 predictors. A norm takes statistics over the whole
        map (BN in training, GroupNorm) or at least changes the maths; a module swapped in (fused,
        quantised) is not ours to take apart. Either way the RPN then trains through the dense head."""
        for layer in self.convs:
            conv = getattr(layer, "conv", None)
            if type(layer) is not ConvNorm or type(layer.norm) is not nn.Identity or not _plain_conv(conv, 3):
                return False
        return _plain_conv(self.objectness, 1) and _plain_conv(self.deltas, 1)

    def outputs_at(self, features: list, image: torch.Tensor, level: torch.Tensor, y: torch.Tensor,
                   x: torch.Tensor, anchor: torch.Tensor) -> tuple:
        """The head's outputs at S anchors only, equal to ``forward``'s there (up to float rounding), with
        autograd through those S alone: features [(N, C, Hl, Wl)]; image, level, y, x (its location on
        its level) and anchor (its index within the location), each (S,) int64 -> objectness (S,)
        logits, deltas (S, 4). Needs ``evaluates_at_locations()``.

        k stacked 3x3 convolutions see a (2k + 1) x (2k + 1) patch around the location: gather it (zeros
        outside the map, the convolutions' padding), apply the convolutions to the patch without
        padding, zeroing the intermediate activations that lie outside the map (the next
        convolution pads with zeros there, it does not see conv(0) = relu(bias))."""
        k = len(self.convs)
        size = 2 * k + 1
        n, c = features[0].shape[:2]
        s = image.shape[0]
        dev = image.device
        # Every level as rows of C channels, plus one zero row that stands for the padding: (N, T + 1, C),
        # T = sum_l Hl * Wl. One copy of the maps; the gather and its backward then touch rows only.
        table = torch.cat([f.flatten(2).transpose(1, 2) for f in features] + [features[0].new_zeros(n, 1, c)],
                          dim=1)
        heights = torch.tensor([f.shape[-2] for f in features], device=dev)
        widths = torch.tensor([f.shape[-1] for f in features], device=dev)
        starts = (heights * widths).cumsum(0) - heights * widths  # (L,) first row of each level
        h, w, start = heights[level, None, None], widths[level, None, None], starts[level, None, None]
        offsets = torch.arange(-k, k + 1, device=dev)
        yy = y[:, None, None] + offsets[None, :, None]  # (S, size, 1)
        xx = x[:, None, None] + offsets[None, None, :]  # (S, 1, size)
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)  # (S, size, size)
        rows = torch.where(inside, start + yy * w + xx, table.shape[1] - 1)  # (S, size, size)
        hidden = table[image[:, None, None], rows]  # (S, size, size, C), channels last
        for i, layer in enumerate(self.convs):
            hidden = _conv3x3_valid(hidden, layer.conv)  # (S, size - 2i - 2, size - 2i - 2, C)
            hidden = F.relu(hidden) if layer.relu else hidden
            if i < k - 1:
                keep = inside[:, i + 1:size - i - 1, i + 1:size - i - 1, None]  # (S, q, q, 1)
                hidden = hidden * keep.to(hidden.dtype)
        hidden = hidden.reshape(s, -1)  # (S, 1, 1, C) -> (S, C)
        logits = F.linear(hidden, kernel_matrix(self.objectness.weight), self.objectness.bias)  # (S, A)
        deltas = F.linear(hidden, kernel_matrix(self.deltas.weight), self.deltas.bias)  # (S, 4A)
        pick = torch.arange(s, device=dev)
        # (S, 4A) -> (S, A, 4): channel 4a + j is coordinate j of anchor a, as in ``forward``
        return logits[pick, anchor], deltas.view(s, -1, 4)[pick, anchor]


class _KernelMatrix(torch.autograd.Function):
    """(O, C, 1, 1) weight -> (O, C) matrix view, whose gradient comes back in the weight's own strides.

    ``flatten``'s backward gives the gradient standard strides, (C, 1, 1, 1); a channels_last weight (CPU
    training, ``engine.training.place_for_training``) has (C, 1, C, C). The same memory order (the strides
    differ on size-1 dims only, which autograd accepts), but DDP compares strides exactly and warned
    "Grad strides do not match bucket view strides" on every run."""

    @staticmethod
    def forward(ctx, weight):
        ctx.shape, ctx.strides = weight.shape, weight.stride()
        return weight.view(weight.shape[0], -1)  # (O, C, 1, 1) -> (O, C)

    @staticmethod
    def backward(ctx, grad):
        out = torch.empty_strided(ctx.shape, ctx.strides, dtype=grad.dtype, device=grad.device)
        return out.copy_(grad.reshape(ctx.shape))  # (O, C) -> (O, C, 1, 1), the weight's strides


def kernel_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution's (O, C, 1, 1) weight as the (O, C) matrix of ``F.linear``, differentiable; its
    gradient has the weight's strides (see ``_KernelMatrix``)."""
    return _KernelMatrix.apply(weight)


def _plain_conv(conv, kernel: int) -> bool:
    """An ``nn.Conv2d`` (not a subclass) with a square ``kernel``, stride 1, "same" zero padding."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (kernel, kernel) and conv.stride == (1, 1)
            and conv.padding == (kernel // 2, kernel // 2) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


def _conv3x3_valid(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 3x3 convolution without padding on channels-last patches: (S, q, q, C) -> (S, q - 2, q - 2, C')
    as one matmul (faster than conv2d on S tiny images)."""
    s, q, _, c = x.shape
    if q == 3:  # one window per patch: the patch itself (unfold's backward is slow for nothing)
        windows = x.reshape(s, 9 * c)  # (S, 3 * 3 * C)
    else:
        windows = x.unfold(1, 3, 1).unfold(2, 3, 1)  # (S, q-2, q-2, C, 3, 3)
        windows = windows.permute(0, 1, 2, 4, 5, 3).reshape(-1, 9 * c)  # (S * (q-2)^2, 3 * 3 * C)
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, 9 * c)  # (C', 3 * 3 * C), same order
    return F.linear(windows, weight, conv.bias).view(s, q - 2, q - 2, -1)


def locate_anchors(anchor: torch.Tensor, grid_sizes: list, num_anchors: int) -> tuple:
    """Flat anchor indices (S,) into the R anchors of an image -> level, y, x, index within the location
    (S,) each. R is ordered level by level, then location-major (row y, column x), then anchor
    (``anchors.py``), so level l's index r is ``start_l + (y * Wl + x) * A + a``."""
    dev = anchor.device
    counts = torch.tensor([int(h) * int(w) * num_anchors for h, w in grid_sizes], device=dev)  # (L,)
    ends = counts.cumsum(0)
    level = torch.searchsorted(ends, anchor, right=True)  # (S,) the first level ending after the index
    local = anchor - (ends - counts)[level]
    widths = torch.tensor([int(w) for _, w in grid_sizes], device=dev)[level]
    location = local // num_anchors
    return level, location // widths, location % widths, local % num_anchors


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
        # With a loss to differentiate, the loss needs the head only at the ~256 sampled anchors per image
        # and the proposals are detached: the dense head runs without a graph and the head is evaluated
        # again, with autograd, at the sampled anchors (the dense backward, over P2 above all, was most
        # of the RPN's training time). Same losses and gradients; heads it cannot take apart go dense.
        sampled = targets is not None and torch.is_grad_enabled() and self.head.evaluates_at_locations()
        with torch.no_grad() if sampled else contextlib.nullcontext():
            objectness, deltas = self.head(features)
        grid_sizes = [f.shape[-2:] for f in features]
        anchors, per_level = self.anchor_generator(
            grid_sizes, padded_size, device=objectness.device, dtype=deltas.dtype
        )
        s = self.proposals_train if self.training else self.proposals_test
        proposals, _ = select_proposals(
            anchors, objectness.detach(), deltas.detach(), per_level, image_sizes,
            box_coder=self.box_coder, pre_nms_topk=s.pre_nms_topk, post_nms_topk=s.post_nms_topk,
            nms_thresh=s.nms_thresh, min_size=s.min_size, score_thresh=s.score_thresh,
        )
        if targets is None:
            return proposals, {}
        parts = dict(box_coder=self.box_coder, matcher=self.matcher, sampler=self.sampler,
                     gt_ignore=gt_ignore_flags(targets), generator=generator)
        all_anchors = [anchors] * len(image_sizes)
        gt_boxes = [t["boxes"] for t in targets]
        if sampled:
            samples = sample_anchors(all_anchors, gt_boxes, **parts)
            level, y, x, a = locate_anchors(samples.anchor, grid_sizes, self.head.objectness.out_channels)
            obj, dlt = self.head.outputs_at(features, samples.image, level, y, x, a)  # (S,), (S, 4)
            losses = sampled_anchor_losses(obj, dlt, samples, box_loss=self.box_loss)
        else:
            losses = rpn_losses(all_anchors, objectness, deltas, gt_boxes, box_loss=self.box_loss, **parts)
        if self.loss_weight != 1.0:
            losses = {k: v * self.loss_weight for k, v in losses.items()}
        return proposals, losses
