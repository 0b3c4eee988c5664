"""RoI heads: pool RoI features, box head + predictor, and optional mask and keypoint heads.

Shapes: N images, P proposals of an image, S sampled RoIs of an image (training), R RoIs of all
images, K classes incl. background, D detections of an image, M mask resolution (28), J keypoints.

Inference: box head on all proposals -> ``postprocess_boxes`` -> the mask head on the detected boxes
(the predicted class's channel, or the one channel of a class-agnostic head; its sigmoid, or its softmax
probability for a head trained with the softmax ablation) and the keypoint head (heatmaps -> keypoints).
Training: ``roi_losses.sample_proposals`` (adds the gt boxes, samples 512 RoIs at 1:3), Fast R-CNN
losses on the samples, mask / keypoint losses on the positive samples only (the mask loss only on those
whose gt has a mask: a target's optional ``has_mask`` (M,) bool is False for a box-only annotation,
whose mask is its box standing in). The matcher, sampler and box loss are built once by
``build_model``; ``DetectionSettings`` and ``MaskLossSettings`` hold the remaining plain numbers and
switches.

C4 design (the paper's ResNet-C4): ``res5`` runs on every pooled RoI (14x14 -> 7x7) before both the
box head (average pooling) and the mask head (no convs, deconv straight from res5's output). Single
level designs (``model.roi_features`` res4 or res5, the latter the paper's stride-32 C5 ablation): RoIs
pooled from that stage straight into the FPN-style heads, no ``res5`` here.

State-dict keys: ``res5.*`` (C4 only, as backbone.py's stages), ``box_head.*``, ``box_predictor.*``,
``mask_head.*``, ``keypoint_head.*`` (poolers have no parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from maskrcnn.modeling import roi_losses
from maskrcnn.modeling.box_head import postprocess_boxes
from maskrcnn.modeling.keypoint_head import KEYPOINT_SCORES, heatmaps_to_keypoints
from maskrcnn.modeling.mask_head import head_mask_probs
from maskrcnn.modeling.matcher import BalancedSampler, Matcher, gt_ignore_flags
from maskrcnn.modeling.rpn_loss import BoxRegressionLoss

MASK_LOSS_MODES = ("sigmoid", "softmax")


@dataclass(frozen=True)
class DetectionSettings:
    """Post-processing at inference: boxes (``box_head.postprocess_boxes``), keypoint scores."""

    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    keypoint_score: str = "logit"  # heatmaps_to_keypoints' score: logit (torchvision) | softmax (detectron2)

    def __post_init__(self):
        if self.keypoint_score not in KEYPOINT_SCORES:
            raise ValueError(f"model.roi_heads.keypoint_score must be one of {KEYPOINT_SCORES}, "
                             f"got {self.keypoint_score!r}")


@dataclass(frozen=True)
class MaskLossSettings:
    """``mode``: "sigmoid" (the paper's) or "softmax" (its ablation); ``aligned_targets``: mask targets
    on the grid an aligned pooler samples (set from ``pooler_aligned``, see ``roi_losses.project_masks``)."""

    mode: str = "sigmoid"
    aligned_targets: bool = False

    def __post_init__(self):
        if self.mode not in MASK_LOSS_MODES:
            raise ValueError(f"mask loss mode must be one of {MASK_LOSS_MODES}, got {self.mode!r}")


DEFAULT_MASK_LOSS = MaskLossSettings()


class RoIHeads(nn.Module):
    def __init__(
        self, *, box_pooler, box_head, box_predictor, box_coder, matcher: Matcher, sampler: BalancedSampler,
        box_loss: BoxRegressionLoss, detections: DetectionSettings, mask_pooler=None, mask_head=None,
        mask_loss: MaskLossSettings = DEFAULT_MASK_LOSS, keypoint_pooler=None, keypoint_head=None, res5=None,
    ):
        super().__init__()
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.box_coder = box_coder
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head
        self.keypoint_pooler = keypoint_pooler
        self.keypoint_head = keypoint_head
        self.res5 = res5
        self.matcher = matcher
        self.sampler = sampler
        self.box_loss = box_loss
        self.detections = detections
        self.mask_loss = mask_loss

    def _pooled(self, pooler, features: dict, boxes: list) -> torch.Tensor:
        """(R, C, S, S) RoI features, through res5 in the C4 design."""
        x = pooler(features, boxes)
        return self.res5(x) if self.res5 is not None else x

    def box_logits(self, features: dict, proposals: list) -> tuple:
        """features name -> (N, C, Hl, Wl), proposals [(P, 4)] -> (R, K) class logits, (R, 4K) deltas."""
        return self.box_predictor(self.box_head(self._pooled(self.box_pooler, features, proposals)))

    def detect_boxes(self, features: dict, proposals: list, image_sizes: list) -> list:
        """Inference's box stage: per image ``{"boxes": (D, 4), "scores": (D,), "labels": (D,)}``, by
        decreasing score (the model's score threshold, per-class NMS and ``detections_per_image``)."""
        class_logits, box_regression = self.box_logits(features, proposals)
        det = self.detections
        return postprocess_boxes(
            class_logits, box_regression, proposals, image_sizes, box_coder=self.box_coder,
            score_thresh=det.score_thresh, nms_thresh=det.nms_thresh,
            detections_per_image=det.detections_per_image,
        )

    def mask_probs(self, features: dict, boxes: list, labels: torch.Tensor) -> torch.Tensor:
        """The mask head on given boxes: per image boxes [(Di, 4)] in its input's coordinates, labels
        (sum Di,) -> (sum Di, 1, M, M) probabilities of each box's class (test-time augmentation runs it
        on boxes merged from other passes, ``engine/tta.py``)."""
        pooled = self._pooled(self.mask_pooler, features, boxes)  # (sum D, C, S, S)
        return head_mask_probs(self.mask_head, pooled, labels, mode=self.mask_loss.mode)

    def keypoint_heatmaps(self, features: dict, boxes: list) -> torch.Tensor:
        """The keypoint head on given boxes: per image boxes [(Di, 4)] in its input's coordinates ->
        (sum Di, J, Hk, Hk) heatmap logits (inference, training's positives, test-time augmentation's
        merged boxes)."""
        return self.keypoint_head(self.keypoint_pooler(features, boxes))

    def forward(self, features: dict, proposals: list, image_sizes: list, targets=None, generator=None):
        if targets is not None:
            return [], self._losses(features, proposals, targets, generator)
        det = self.detections
        dets = self.detect_boxes(features, proposals, image_sizes)
        boxes = [d["boxes"] for d in dets]
        counts = [len(b) for b in boxes]
        labels = torch.cat([d["labels"] for d in dets])
        if self.mask_head is not None:
            for d, p in zip(dets, self.mask_probs(features, boxes, labels).split(counts)):
                d["mask_probs"] = p
        if self.keypoint_head is not None:
            heatmaps = self.keypoint_heatmaps(features, boxes)  # (sum D, J, 56, 56)
            kps, kp_scores = heatmaps_to_keypoints(heatmaps, torch.cat(boxes), score=det.keypoint_score)
            for d, k, s in zip(dets, kps.split(counts), kp_scores.split(counts)):
                d["keypoints"], d["keypoint_scores"] = k, s
        return dets, {}

    def _losses(self, features: dict, proposals: list, targets: list, generator) -> dict:
        samples = roi_losses.sample_proposals(
            proposals, [t["boxes"] for t in targets], [t["labels"] for t in targets],
            matcher=self.matcher, sampler=self.sampler, gt_ignore=gt_ignore_flags(targets),
            generator=generator, box_coder=self.box_coder,
        )
        rois = [s["proposals"] for s in samples]
        labels = torch.cat([s["labels"] for s in samples])
        class_logits, box_regression = self.box_logits(features, rois)
        losses = roi_losses.fast_rcnn_losses(
            class_logits, box_regression, labels, torch.cat([s["regression_targets"] for s in samples]),
            box_loss=self.box_loss,
        )
        # positives only for the mask / keypoint heads (the paper: "the mask loss is defined only on
        # positive RoIs")
        pos = [torch.nonzero(s["labels"] > 0).squeeze(1) for s in samples]
        pos_rois = [s["proposals"][p] for s, p in zip(samples, pos)]
        pos_gt = [s["matched_gt"][p] for s, p in zip(samples, pos)]
        pos_labels = torch.cat([s["labels"][p] for s, p in zip(samples, pos)])
        if self.mask_head is not None:
            # A gt whose target says has_mask False (a box-only annotation: its "mask" is the box) trains
            # the box and class losses above but not the mask head: a rectangle is no mask to learn.
            # Filtered only when some target says so (a dataset without box-only annotations leaves
            # has_mask out): each boolean indexing is a device sync on CUDA, three per image per step.
            mask_rois, mask_gt, mask_labels = pos_rois, pos_gt, pos_labels
            if any("has_mask" in t for t in targets):
                with_mask = [t["has_mask"][g] if "has_mask" in t else torch.ones_like(g, dtype=torch.bool)
                             for t, g in zip(targets, pos_gt)]  # per image (Pi,) bool
                mask_rois = [r[k] for r, k in zip(pos_rois, with_mask)]
                mask_gt = [g[k] for g, k in zip(pos_gt, with_mask)]
                mask_labels = pos_labels[torch.cat(with_mask)]
            logits = self.mask_head(self._pooled(self.mask_pooler, features, mask_rois))
            size = logits.shape[-1]
            mask_targets = torch.cat([
                roi_losses.project_masks(t["masks"], r, g, size, aligned=self.mask_loss.aligned_targets)
                for t, r, g in zip(targets, mask_rois, mask_gt)
            ])
            channels = self.mask_head.channels_for(mask_labels)
            losses.update(roi_losses.mask_losses(logits, channels, mask_targets, mode=self.mask_loss.mode))
        if self.keypoint_head is not None:
            # only the positives whose gt has a labelled keypoint inside them (detectron2's selection)
            kp_rois, kp_gt = [], []
            for t, r, g in zip(targets, pos_rois, pos_gt):
                keep = (roi_losses.with_visible_keypoints(t["keypoints"], r, g) if "keypoints" in t
                        else torch.zeros_like(g, dtype=torch.bool))
                kp_rois.append(r[keep])
                kp_gt.append(g[keep])
            heatmaps = self.keypoint_heatmaps(features, kp_rois)  # (Q, J, Hk, Hk)
            size, j = heatmaps.shape[-1], heatmaps.shape[1]
            kp = [
                roi_losses.keypoint_targets(t["keypoints"], r, g, size) if "keypoints" in t
                else (torch.zeros(0, j, dtype=torch.int64, device=r.device),
                      torch.zeros(0, j, dtype=torch.bool, device=r.device))
                for t, r, g in zip(targets, kp_rois, kp_gt)
            ]  # per image: (targets (Qi, J), valid (Qi, J))
            losses.update(roi_losses.keypoint_losses(
                heatmaps, torch.cat([k[0] for k in kp]), torch.cat([k[1] for k in kp])))
        return losses
