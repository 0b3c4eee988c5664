"""The paper's ablation switches: class-agnostic masks (one channel, loss and inference on it), softmax
masks read back as softmax probabilities, and RoIs pooled from a single stage (res4, or res5 at stride 32).
"""

import pytest
import torch
import torch.nn.functional as F

from maskrcnn.config import load_config
from maskrcnn.modeling.mask_head import MaskHead, mask_probs_for_labels
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.modeling.roi_losses import mask_losses

H, W = 64, 80


def _cfg(**extra):
    over = {"model.num_classes": 3, "model.fpn_dim": 32, "model.roi_heads.box_head_dim": 64,
            "model.roi_heads.mask_head_dim": 16, "model.rpn.pre_nms_topk_test": 100,
            "model.rpn.post_nms_topk_test": 30, "model.rpn.pre_nms_topk_train": 200,
            "model.rpn.post_nms_topk_train": 100, "model.roi_heads.batch_size_per_image": 32,
            "model.roi_heads.score_thresh": 0.0, "model.roi_heads.detections_per_image": 10}
    over.update(extra)
    return load_config("demo", over)


def _targets(labels):
    masks = torch.zeros(2, H, W, dtype=torch.uint8)
    masks[0, 10:30, 10:40] = 1
    masks[1, 35:60, 45:75] = 1
    masks[1, 40:50, 50:60] = 0  # a hole: the target is not the whole box
    return [{"boxes": torch.tensor([[10.0, 10, 40, 30], [45, 35, 75, 60]]), "labels": torch.tensor(labels),
             "masks": masks}]


def _mask_loss(model, labels, image):
    model.train()
    g = torch.Generator().manual_seed(5)
    return model([image], _targets(labels), generator=g)["loss_mask"]


def test_class_agnostic_head_shapes_and_channel():
    head = MaskHead(in_channels=8, num_classes=5, conv_dim=8, class_agnostic=True)
    assert head.predictor.weight.shape == (1, 8, 1, 1)  # same key, one channel
    logits = head(torch.randn(3, 8, 14, 14))
    assert logits.shape == (3, 1, 28, 28)
    labels = torch.tensor([4, 1, 2])
    assert head.channels_for(labels).tolist() == [0, 0, 0]
    assert MaskHead(in_channels=8, num_classes=5, conv_dim=8).channels_for(labels).tolist() == [4, 1, 2]
    probs = mask_probs_for_labels(logits, head.channels_for(labels))
    torch.testing.assert_close(probs[:, 0], logits[:, 0].sigmoid())
    # the loss on the one channel is the plain binary cross-entropy of that channel
    targets = (torch.rand(3, 28, 28) > 0.5).float()
    loss = mask_losses(logits, head.channels_for(labels), targets)["loss_mask"]
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits[:, 0], targets))


def test_class_agnostic_loss_ignores_the_class_and_trains_the_one_channel():
    torch.manual_seed(0)
    image = torch.rand(3, H, W)
    agnostic = build_model(_cfg(**{"model.roi_heads.mask_class_agnostic": True}))
    specific = build_model(_cfg())
    # the same RoIs and targets with the classes swapped: one mask for all classes gives the same loss,
    # per-class masks read other channels
    a12, a21 = _mask_loss(agnostic, [1, 2], image), _mask_loss(agnostic, [2, 1], image)
    torch.testing.assert_close(a12, a21)
    s12, s21 = _mask_loss(specific, [1, 2], image), _mask_loss(specific, [2, 1], image)
    assert abs(s12.item() - s21.item()) > 1e-4
    a12.backward()
    grad = agnostic.roi_heads.mask_head.predictor.weight.grad
    assert grad.shape == (1, 16, 1, 1) and grad.abs().sum() > 0


@pytest.mark.parametrize("switch", [{"model.roi_heads.mask_class_agnostic": True},
                                    {"model.roi_heads.mask_loss": "softmax"}])
def test_inference_reads_the_mask_the_head_was_trained_for(switch):
    torch.manual_seed(0)
    model = build_model(_cfg(**switch)).eval()
    captured = []
    # the pooled RoI features the mask head ran on (inference computes only the read channel)
    model.roi_heads.mask_pooler.register_forward_hook(lambda m, i, out: captured.append(out))
    with torch.inference_mode():
        det = model([torch.rand(3, H, W)])[0]
        logits, labels = model.roi_heads.mask_head(captured[0]), det["labels"]  # (D, K or 1, M, M)
    assert len(labels) > 0 and bool((labels > 0).all())
    idx = torch.arange(len(labels))
    if switch.get("model.roi_heads.mask_class_agnostic"):
        assert logits.shape[1] == 1
        want = logits[:, 0].sigmoid()
    else:  # the class's share of a softmax over the classes, not a sigmoid of its logit
        want = logits.softmax(1)[idx, labels]
    torch.testing.assert_close(det["mask_probs"][:, 0], want)


@pytest.mark.parametrize("stage,stride", [("res4", 16), ("res5", 32)])
def test_single_stage_roi_features(stage, stride):
    torch.manual_seed(0)
    model = build_model(_cfg(**{"model.fpn": False, "model.roi_features": stage,
                                "model.rpn.anchor_sizes": (16, 32, 64)}))
    assert model.fpn is None and model.roi_heads.res5 is None
    assert model.rpn_in_features == [stage] and model.backbone.stage_names[-1] == stage
    assert model.roi_heads.box_pooler.strides == [stride]
    losses = model.train()([torch.rand(3, H, W)], _targets([1, 2]))
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.inference_mode():
        det = model.eval()([torch.rand(3, H, W)])[0]
    assert det["mask_probs"].shape[1:] == (1, 28, 28)  # FCN head: 14x14 pooled -> 28x28


def test_switch_errors():
    with pytest.raises(ValueError, match="roi_features must be one of"):
        build_model(_cfg(**{"model.fpn": False, "model.roi_features": "res3"}))
    with pytest.raises(ValueError, match="needs mask_loss 'sigmoid'"):
        build_model(_cfg(**{"model.roi_heads.mask_class_agnostic": True,
                            "model.roi_heads.mask_loss": "softmax"}))
