"""Mask R-CNN: normalise + pad, backbone, FPN, RPN, RoI heads; ``build_model(cfg)`` reads the config.

Shapes: N images; image i is (3, Hi, Wi) RGB in [0, 1], already resized; the batch is padded to
(N, 3, Hp, Wp) with Hp, Wp the largest sizes rounded up to ``size_divisibility`` (32).
Features: ``p2..p6`` (N, 256, Hp/2^k, Wp/2^k) with strides 4..64 (FPN models).

``model(images)`` (inference) -> per image ``{"boxes" (D, 4), "scores" (D,), "labels" (D,) int64,
"mask_probs" (D, 1, 28, 28)}`` (+ ``keypoints`` (D, J, 3), ``keypoint_scores`` (D, J)), boxes in the
coordinates of the image given. ``model(images, targets)`` -> dict of scalar losses (in eval mode too);
a target is ``{"boxes" (M, 4), "labels" (M,), "masks" (M, Hi, Wi)}`` (+ ``iscrowd`` (M,) bool,
``keypoints`` (M, J, 3), ``has_mask`` (M,) bool: False leaves that gt out of the mask loss), boxes
xyxy finite with x2 >= x1, labels in 1..num_classes-1, masks bool or 0/1: anything else is refused in
one line (``_check_targets``), as is a float image off [0, 1] or holding NaN / infinity, with targets
or without (``preprocess``: one min/max per image). TorchScript is not supported (``torch.jit.script``
raises ``SCRIPTING_UNSUPPORTED``); export or torch.compile instead.

Top-level state-dict keys: ``backbone.*`` (backbone.py), ``fpn.*`` (fpn.py), ``rpn.head.*`` (rpn.py),
``roi_heads.{box_head,box_predictor,mask_head,keypoint_head}.*`` (the head modules). See
docs/checkpoints.md for the full list and the torchvision mapping.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from maskrcnn.data.images import float_range_problem
from maskrcnn.modeling.anchors import AnchorGenerator
from maskrcnn.modeling.backbone import ResNet, make_stage
from maskrcnn.modeling.box_head import AvgPoolHead, BoxHead, BoxPredictor
from maskrcnn.modeling.fpn import FPN
from maskrcnn.modeling.keypoint_head import KeypointHead
from maskrcnn.modeling.mask_head import MaskHead
from maskrcnn.modeling.matcher import BalancedSampler, Matcher
from maskrcnn.modeling.roi_heads import DetectionSettings, MaskLossSettings, RoIHeads
from maskrcnn.modeling.rpn import RPN, ProposalSettings, RPNHead
from maskrcnn.modeling.rpn_loss import BoxRegressionLoss

SCRIPTING_UNSUPPORTED = (
    "MaskRCNN does not support torch.jit.script or torch.jit.trace: use `maskrcnn export --format onnx` "
    "or `--format pt2` to ship it, or torch.compile(model) for speed")
ROI_FEATURES = ("c4", "res4", "res5")  # model.roi_features: where RoIs are pooled from without an FPN
BOX_HEADS = ("2fc", "4conv1fc")  # model.roi_heads.box_head: two fc layers, or four convs then one fc


class MaskRCNN(nn.Module):
    def __init__(
        self, *, backbone: nn.Module, fpn: nn.Module, rpn: RPN, roi_heads: RoIHeads, num_classes: int,
        pixel_mean=(0.485, 0.456, 0.406), pixel_std=(0.229, 0.224, 0.225), size_divisibility: int = 32,
    ):
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.num_classes = num_classes
        self.size_divisibility = size_divisibility
        # not saved in checkpoints: they come from the config
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1), persistent=False)

    def preprocess(self, images: list, *, checked: bool = False) -> tuple:
        """Normalise and zero-pad into one (N, 3, Hp, Wp) tensor; returns (batch, [(Hi, Wi)]).

        ``images``: a list of (3, H, W) float RGB tensors in [0, 1], or one (N, 3, H, W) / (3, H, W)
        tensor. Any float dtype is taken and converted to the model's own (float64 / float16 images of a
        float32 model become float32, without a message). A float image off [0, 1] (0..255 values,
        mean/std-normalised ones) or holding NaN / infinity is refused as the Predictor refuses it: the
        model would misread it silently. One min/max per image, read back once for the batch (next to a
        forward, nothing measurable). ``checked=True``: the caller has checked the values already (the
        Predictor on load, ``forward`` with its targets), so no second min/max and device sync, and
        ``torch.compile(model.preprocess)`` has no host read to break its graph on."""
        images = _image_list(images)
        if not checked:
            _check_image_values(_read_back(_image_ranges(images)))
        sizes = [(int(img.shape[1]), int(img.shape[2])) for img in images]
        d = max(1, int(self.size_divisibility))  # 0: no padding multiple (detectron2's C4 models)
        hp = int(math.ceil(max(s[0] for s in sizes) / d) * d)
        wp = int(math.ceil(max(s[1] for s in sizes) / d) * d)
        # the model's dtype (pixel_mean follows .half() / .double()), not the image's: a float64 image
        # would otherwise meet float32 weights ("expected scalar type Double")
        batch = images[0].new_zeros((len(images), 3, hp, wp), dtype=self.pixel_mean.dtype)
        for img, slot in zip(images, batch):
            img = img.to(slot.dtype)
            slot[:, : img.shape[1], : img.shape[2]].copy_((img - self.pixel_mean) / self.pixel_std)
        return batch, sizes

    def features(self, batch: torch.Tensor) -> dict:
        """(N, 3, Hp, Wp) normalised batch -> name -> (N, C, H, W) (``p2..p6`` with an FPN)."""
        feats = self.backbone(batch)
        return self.fpn(feats) if self.fpn is not None else feats

    def forward(self, images: list, targets: list = None, generator: torch.Generator = None):
        if self.training and targets is None:
            raise ValueError("model: in training mode targets are required (call model.eval() to predict)")
        if targets is None:
            batch, sizes = self.preprocess(images)
        else:  # the images' values read back with the targets' (one host read per forward)
            _check_target_container(targets)  # before the images: a dict's keys would be counted as targets
            images = _image_list(images)
            sizes = [(int(img.shape[1]), int(img.shape[2])) for img in images]
            _check_targets(targets, sizes, num_classes=self.num_classes, images=images,
                           need_masks=self.roi_heads.mask_head is not None)
            batch, sizes = self.preprocess(images, checked=True)  # values checked with the targets
        feats = self.features(batch)
        rpn_feats = [feats[n] for n in self.rpn_in_features]
        proposals, rpn_losses = self.rpn(rpn_feats, sizes, batch.shape[-2:], targets, generator=generator)
        dets, roi_losses = self.roi_heads(feats, proposals, sizes, targets, generator=generator)
        if targets is not None:
            return {**rpn_losses, **roi_losses}
        return dets

    def __prepare_scriptable__(self):
        # torch.jit.script calls this hook first: one clear line instead of a TorchScript error deep in
        # a head (the model is eager Python: dicts of tensors, dataclasses, optional heads)
        raise RuntimeError(SCRIPTING_UNSUPPORTED)

    @property
    def rpn_in_features(self) -> list:
        return list(self.fpn.out_names) if self.fpn is not None else [self.backbone.stage_names[-1]]


def _image_list(images) -> list:
    """``images`` as a list of (3, H, W) float tensors (a (3, H, W) or (N, 3, H, W) tensor split), or one
    line naming the first that is not one."""
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        images = [images]
    if len(images) == 0:
        raise ValueError("model: got an empty list of images")
    for i, img in enumerate(images):
        if not isinstance(img, torch.Tensor) or img.dim() != 3 or img.shape[0] != 3:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f"model: image {i} must be a (3, H, W) tensor, got {shape}")
        if img.is_meta:  # shapes only: the value checks below fail deep inside PyTorch on it
            raise ValueError(f"model: image {i} is a tensor on the meta device, which holds no data")
        if not img.is_floating_point():
            raise ValueError(f"model: image {i} must be float RGB in [0, 1], got dtype {img.dtype}")
        if img.numel() == 0:
            raise ValueError(f"model: image {i} is empty, shape {tuple(img.shape)}")
    return list(images)


def _image_ranges(images: list) -> list:
    """Per image its [min, max], a (2,) tensor on its device (NaN anywhere makes both NaN)."""
    return [torch.stack(torch.aminmax(img.detach())) for img in images]


def _read_back(stats: list) -> list:
    """(k,) tensors -> one flat list of floats: one host read (one device sync on a GPU) for all."""
    return torch.cat([v.double().to(stats[0].device) for v in stats]).tolist()


def _check_image_values(values: list) -> None:
    """Refuse the first image whose range (``values``: min, max of image 0, then of image 1, ...) is off
    [0, 1] or not finite, in ``float_range_problem``'s words (the Predictor's)."""
    for i in range(len(values) // 2):
        problem = float_range_problem(values[2 * i], values[2 * i + 1], f"model: image {i}")
        if problem:
            raise ValueError(problem)


def _check_target_container(targets) -> None:
    if isinstance(targets, dict) or not isinstance(targets, (list, tuple)):
        got = "one dict" if isinstance(targets, dict) else type(targets).__name__
        raise ValueError(f"model: targets must be a list of dicts, one per image, got {got}")


def _tensor(t: dict, key: str, i: int, want: str, ndim: int) -> torch.Tensor:
    """Target ``i``'s ``key``, refused unless a tensor of ``ndim`` dimensions (``want``: "(M, 4)")."""
    value = t[key]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"model: target {i} {key!r} must be a torch tensor, got {type(value).__name__} "
                         "(torch.as_tensor converts lists and numpy arrays)")
    if value.dim() != ndim:
        raise ValueError(f"model: target {i} {key!r} must be {want}, got shape {tuple(value.shape)}")
    return value


def _check_targets(targets: list, sizes: list, *, num_classes: int, need_masks: bool, images=()) -> None:
    """One clear line for a target the losses would misread silently (0/255 masks, labels out of range,
    NaN, infinite or xywh boxes) or fail on deep inside, and for an ``images`` float image off [0, 1].
    Types and shapes first; then the values: one min/max per tensor, all read back to the host at once
    (one device sync per forward on a GPU, not several per image)."""
    if len(targets) != len(sizes):
        raise ValueError(f"model: {len(sizes)} images but {len(targets)} targets (one dict per image)")
    checked = []  # (index, labels, boxes, masks or None) of the targets with objects
    for i, t in enumerate(targets):
        if not isinstance(t, dict):
            raise ValueError(f"model: target {i} must be a dict, got {type(t).__name__}")
        for key in ("boxes", "labels"):
            if key not in t:
                raise ValueError(f"model: target {i} has no {key!r}")
        boxes = _tensor(t, "boxes", i, "(M, 4)", 2)
        if boxes.shape[-1] != 4:
            raise ValueError(f"model: target {i} 'boxes' must be (M, 4), got {tuple(boxes.shape)}")
        labels = _tensor(t, "labels", i, "(M,)", 1)
        if need_masks and "masks" not in t:
            raise ValueError(f"model: target {i} has no 'masks' (a mask model trains on instance masks)")
        masks = _tensor(t, "masks", i, "(M, H, W)", 3) if need_masks else None
        if need_masks and (masks.shape[0] != boxes.shape[0] or tuple(masks.shape[1:]) != sizes[i]):
            want = (boxes.shape[0], *sizes[i])
            raise ValueError(f"model: target {i} 'masks' must be ({want[0]}, {want[1]}, {want[2]}) "
                             f"(one per box, at the image size), got {tuple(masks.shape)}")
        if labels.shape[0] != boxes.shape[0]:
            raise ValueError(f"model: target {i} has {boxes.shape[0]} boxes but {labels.shape[0]} labels")
        if boxes.shape[0]:
            checked.append((i, labels, boxes, masks if need_masks and masks.dtype != torch.bool else None))
    # the values: per image [min, max]; per target [label min, label max, boxes bad, mask min, mask max]
    stats = _image_ranges(images)
    for _, labels, boxes, masks in checked:
        b = boxes.detach()
        good = torch.isfinite(b).all() & (b[:, 2:] >= b[:, :2]).all()
        span = torch.stack(torch.aminmax(masks.detach())) if masks is not None else labels.new_zeros(2)
        stats.append(torch.cat([torch.stack(torch.aminmax(labels.detach())).double(), (~good).double()[None],
                                span.double()]))
    if not stats:
        return
    values = _read_back(stats)
    _check_image_values(values[: 2 * len(images)])
    rows = values[2 * len(images):]
    for k, (i, _, _, masks) in enumerate(checked):
        lo, hi, bad_boxes, mlo, mhi = rows[5 * k: 5 * k + 5]
        if lo < 1 or hi >= num_classes:
            raise ValueError(f"model: target {i} 'labels' holds {int(lo if lo < 1 else hi)}, expected 1.."
                             f"{num_classes - 1} (num_classes {num_classes} counts the background, label 0)")
        if bad_boxes:
            raise ValueError(f"model: target {i} 'boxes' must be [x1, y1, x2, y2] with x2 >= x1 and "
                             "y2 >= y1, finite (COCO's [x, y, w, h] converts as x2 = x + w, y2 = y + h)")
        if masks is not None and not (mlo >= 0 and mhi <= 1):  # NaN fails both
            raise ValueError(f"model: target {i} 'masks' values span [{mlo:.4g}, {mhi:.4g}], expected "
                             "0/1 (bool, or 0 and 1): divide PNG masks read as 0/255 by 255")


def build_model(cfg) -> MaskRCNN:
    """The one place that reads ``cfg.model``. ``cfg``: a ``maskrcnn.config.Config`` (anything else: a
    TypeError), checked first as a loaded one is (``validate_config``): a value changed by attribute
    assignment (``cfg.model.num_classes = 0``) is a one-line ValueError naming the key, not an error deep
    inside a layer or a model that cannot train. Checked: every value's kind (numpy and torch numbers
    read as Python's) and the ``model.*`` / ``input.*`` keys' values only, so that a stored config with an
    outdated value elsewhere (a solver key) still builds its model for inference."""
    from maskrcnn.config import MODEL_KEYS, Config, validate_config
    from maskrcnn.ops import BoxCoder, MultiScaleRoIAlign

    if not isinstance(cfg, Config):
        raise TypeError(f"build_model expects a maskrcnn.config.Config, got {type(cfg).__name__} "
                        "(load_config(PRESET_OR_YAML) gives one)")
    # stored: the device is not checked, the model does not use it
    cfg = validate_config(cfg, stored=True, keys=MODEL_KEYS)  # numbers as Python's; the caller's left as is
    m = cfg.model
    r = m.rpn
    h = m.roi_heads
    eps = m.frozen_bn_eps if m.norm == "frozen_bn" else 1e-5
    # detectron2's MSRA weights put the stride on the first 1x1 conv
    stride_in_1x1 = bool(m.stride_in_1x1)
    if m.roi_features not in ROI_FEATURES:
        raise ValueError(f"model.roi_features must be one of {ROI_FEATURES}, got {m.roi_features!r}")
    c4 = not m.fpn and m.roi_features == "c4"
    # a config to train with is refused (load_config); a stored one (or one changed in Python) loads
    if m.fpn and m.roi_features != "c4":
        import warnings

        warnings.warn(f"model.roi_features {m.roi_features} is not used: it applies only with "
                      "model.fpn=false (this model has an FPN)", stacklevel=2)
    if h.mask_class_agnostic and h.mask_loss == "softmax":
        raise ValueError("model.roi_heads.mask_class_agnostic needs mask_loss 'sigmoid': a softmax over "
                         "classes needs one channel per class")
    # C4: the body stops at res4 (stride 16); res5 becomes the RoI head
    # res4 features: the body stops at res4 (stride 16); res5 features: the whole ResNet (stride 32)
    backbone = ResNet(arch=m.backbone, norm=m.norm, eps=eps, freeze_at=m.freeze_at,
                      num_stages=4 if m.fpn or m.roi_features == "res5" else 3, stride_in_1x1=stride_in_1x1)
    if m.fpn:
        fpn = FPN(in_channels=backbone.out_channels, in_strides=backbone.strides, out_channels=m.fpn_dim,
                  norm=m.fpn_norm)
        strides = [fpn.strides[n] for n in fpn.out_names]
        roi_names = fpn.out_names[:-1]  # p2..p5: P6 only feeds the RPN
        roi_strides = [fpn.strides[n] for n in roi_names]
        feat_dim = m.fpn_dim
        if len(r.anchor_sizes) != len(strides):
            raise ValueError(
                f"model.rpn.anchor_sizes has {len(r.anchor_sizes)} sizes for {len(strides)} FPN levels")
        sizes = r.anchor_sizes
    else:
        fpn = None
        roi_names = [backbone.stage_names[-1]]
        roi_strides = strides = [backbone.strides[roi_names[0]]]
        feat_dim = backbone.out_channels[roi_names[0]]
        sizes = [tuple(r.anchor_sizes)]  # all sizes on the one level
    anchor_gen = AnchorGenerator(sizes=sizes, aspect_ratios=r.aspect_ratios, strides=strides,
                                 rounding=r.anchor_rounding)

    def proposal_settings(pre_nms_topk, post_nms_topk):
        return ProposalSettings(pre_nms_topk=pre_nms_topk, post_nms_topk=post_nms_topk,
                                nms_thresh=r.nms_thresh, min_size=r.min_box_size, score_thresh=r.score_thresh)

    rpn = RPN(
        head=RPNHead(in_channels=feat_dim, num_anchors=anchor_gen.num_anchors_per_location,
                     num_convs=r.head_convs),
        anchor_generator=anchor_gen, box_coder=BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
        proposals_train=proposal_settings(r.pre_nms_topk_train, r.post_nms_topk_train),
        proposals_test=proposal_settings(r.pre_nms_topk_test, r.post_nms_topk_test),
        # low-quality matches: every gt keeps its best anchors even below fg_iou_thresh (Faster R-CNN)
        matcher=Matcher(high_threshold=r.fg_iou_thresh, low_threshold=r.bg_iou_thresh,
                        allow_low_quality_matches=True),
        sampler=BalancedSampler(batch_size_per_image=r.batch_size_per_image,
                                positive_fraction=r.positive_fraction),
        box_loss=BoxRegressionLoss(kind=r.box_loss, beta=r.smooth_l1_beta), loss_weight=r.loss_weight,
    )

    def pooler(size):
        return MultiScaleRoIAlign(
            featmap_names=roi_names, strides=roi_strides, output_size=size,
            sampling_ratio=h.pooler_sampling_ratio, aligned=h.pooler_aligned,
            canonical_level=h.canonical_level, canonical_box_size=h.canonical_box_size, pooler=h.pooler,
        )

    res5 = None
    if c4:
        res5 = make_stage(arch=m.backbone, stage=5, norm=m.norm, eps=eps, in_channels=feat_dim,
                          stride_in_1x1=stride_in_1x1)
        feat_dim = backbone.out_channels[roi_names[0]] * 2
        box_head = AvgPoolHead(in_channels=feat_dim)
    elif h.box_head == "2fc":
        box_head = BoxHead(in_channels=feat_dim, pool_size=h.box_pool_size, num_convs=0, num_fcs=2,
                           fc_dim=h.box_head_dim)
    elif h.box_head == "4conv1fc":
        box_head = BoxHead(in_channels=feat_dim, pool_size=h.box_pool_size, num_convs=4, conv_dim=feat_dim,
                           num_fcs=1, fc_dim=h.box_head_dim, norm=h.box_head_norm)
    else:
        raise ValueError(f"model.roi_heads.box_head must be one of {BOX_HEADS}, got {h.box_head!r}")
    mask_pooler = mask_head = kp_pooler = kp_head = None
    if h.mask_on:
        mask_pooler = pooler(h.mask_pool_size)
        mask_head = MaskHead(in_channels=feat_dim, num_classes=m.num_classes,
                             num_convs=0 if c4 else h.mask_head_convs,  # C4: deconv right after res5
                             conv_dim=h.mask_head_dim, norm=h.mask_head_norm,
                             class_agnostic=h.mask_class_agnostic)
    if h.keypoint_on:
        if not m.fpn:
            raise ValueError("model.roi_heads.keypoint_on needs model.fpn=true (no C4 keypoint head)")
        kp_pooler = pooler(h.keypoint_pool_size)
        kp_head = KeypointHead(in_channels=feat_dim, num_keypoints=h.num_keypoints,
                               num_convs=h.keypoint_head_convs, conv_dim=h.keypoint_head_dim)
    roi_heads = RoIHeads(
        box_pooler=pooler(h.box_pool_size), box_head=box_head,
        box_predictor=BoxPredictor(in_features=box_head.out_features, num_classes=m.num_classes),
        box_coder=BoxCoder(weights=tuple(h.box_reg_weights)),
        # proposals are plentiful and the gts are appended to them: no low-quality matches needed
        matcher=Matcher(high_threshold=h.fg_iou_thresh, low_threshold=h.bg_iou_thresh,
                        allow_low_quality_matches=False),
        sampler=BalancedSampler(batch_size_per_image=h.batch_size_per_image,
                                positive_fraction=h.positive_fraction),
        box_loss=BoxRegressionLoss(kind=h.box_loss, beta=h.smooth_l1_beta),
        detections=DetectionSettings(score_thresh=h.score_thresh, nms_thresh=h.nms_thresh,
                                     detections_per_image=h.detections_per_image,
                                     keypoint_score=h.keypoint_score),
        mask_pooler=mask_pooler, mask_head=mask_head,
        # targets on the grid the pooler samples
        mask_loss=MaskLossSettings(mode=h.mask_loss, aligned_targets=h.pooler_aligned),
        keypoint_pooler=kp_pooler, keypoint_head=kp_head, res5=res5,
    )
    return MaskRCNN(
        backbone=backbone, fpn=fpn, rpn=rpn, roi_heads=roi_heads, num_classes=m.num_classes,
        pixel_mean=tuple(m.pixel_mean), pixel_std=tuple(m.pixel_std), size_divisibility=m.size_divisibility,
    )
