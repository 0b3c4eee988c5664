"""End-to-end behaviour of a tiny Mask R-CNN: inference contract, training losses, errors, rescaling."""

import math

import numpy as np
import pytest
import torch

from maskrcnn.config import load_config
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.modeling.postprocess import detections_to_original

LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box", "loss_mask"}


def _tiny_cfg(**extra):
    over = {"model.num_classes": 3, "model.fpn_dim": 32, "model.roi_heads.box_head_dim": 64,
            "model.roi_heads.mask_head_dim": 16, "model.rpn.pre_nms_topk_test": 100,
            "model.rpn.post_nms_topk_test": 50, "model.rpn.pre_nms_topk_train": 200,
            "model.rpn.post_nms_topk_train": 100, "model.roi_heads.batch_size_per_image": 32,
            "model.roi_heads.score_thresh": 0.0}
    over.update(extra)
    return load_config("demo", over)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(_tiny_cfg())


def _targets():
    masks = torch.zeros(2, 64, 80, dtype=torch.uint8)
    masks[0, 10:30, 10:40] = 1
    masks[1, 35:60, 45:75] = 1
    return [
        {"boxes": torch.tensor([[10.0, 10, 40, 30], [45, 35, 75, 60]]), "labels": torch.tensor([1, 2]),
         "masks": masks, "iscrowd": torch.tensor([False, False])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
         "masks": torch.zeros(0, 48, 64, dtype=torch.uint8)},
    ]


def test_inference_contract(tiny):
    tiny.eval()
    images = [torch.rand(3, 64, 80), torch.rand(3, 48, 64)]
    with torch.inference_mode():
        dets = tiny(images)
    assert len(dets) == 2
    for d, img in zip(dets, images):
        n = len(d["boxes"])
        assert d["boxes"].shape == (n, 4) and d["scores"].shape == (n,)
        assert d["labels"].dtype == torch.int64 and bool((d["labels"] >= 1).all())
        assert d["mask_probs"].shape == (n, 1, 28, 28)
        assert bool((d["boxes"][:, 2] <= img.shape[2]).all())
        assert bool((d["boxes"][:, 3] <= img.shape[1]).all())
        assert n <= 100


@pytest.mark.slow
def test_training_losses_backward_and_decrease():
    torch.manual_seed(0)
    model = build_model(_tiny_cfg())
    model.train()
    images = [torch.rand(3, 64, 80), torch.rand(3, 48, 64)]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    totals = []
    for step in range(4):
        losses = model(images, _targets(), generator=torch.Generator().manual_seed(step))
        assert set(losses) == LOSS_KEYS
        assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(total.detach()))
    assert model.backbone.res3[0].conv1.conv.weight.grad is not None
    assert totals[-1] < totals[0]



@pytest.mark.parametrize("agnostic", [False, True])
def test_a_fresh_mask_head_starts_at_log_2_and_does_not_dominate_the_gradient(agnostic):
    # A from-scratch model's mask head predicts p ~ 0.5 before any step: its sigmoid loss is ~log 2,
    # like the RPN's objectness (also ~log 2), and its gradient is not many times the rest of the
    # model's (He init of the logits layer gave loss 4-8 and ~10x the gradient, which the global
    # solver.clip_grad_norm turned into a ~10x smaller first step for every head).
    torch.manual_seed(0)
    model = build_model(_tiny_cfg(**{"model.roi_heads.mask_class_agnostic": agnostic}))
    model.train()
    images = [torch.rand(3, 64, 80), torch.rand(3, 48, 64)]
    losses = model(images, _targets(), generator=torch.Generator().manual_seed(0))
    assert abs(float(losses["loss_mask"].detach()) - math.log(2)) < 0.02
    sum(losses.values()).backward()
    head = model.roi_heads.mask_head

    def grad_norm(params):
        return float(torch.sqrt(sum((p.grad ** 2).sum() for p in params if p.grad is not None)))

    others = [p for n, p in model.named_parameters() if not n.startswith("roi_heads.mask_head.")]
    assert grad_norm(head.parameters()) < grad_norm(others)


def test_bad_inputs_have_clear_errors(tiny):
    tiny.eval()
    with pytest.raises(ValueError, match="image 1 must be a \\(3, H, W\\)"):
        tiny([torch.rand(3, 32, 32), torch.rand(32, 32)])
    with pytest.raises(ValueError, match="float"):
        tiny([torch.zeros(3, 32, 32, dtype=torch.uint8)])
    tiny.train()
    with pytest.raises(ValueError, match="targets are required"):
        tiny([torch.rand(3, 32, 32)])
    bad = dict(_targets()[1], masks=torch.zeros(0, 10, 10))
    with pytest.raises(ValueError, match="target 0 'masks' must be \\(0, 48, 64\\)"):
        tiny([torch.rand(3, 48, 64)], [bad])
    with pytest.raises(ValueError, match="'boxes' must be \\(M, 4\\)"):
        tiny([torch.rand(3, 32, 32)], [{"boxes": torch.zeros(4), "labels": torch.zeros(0)}])
    tiny.eval()


def test_detections_to_original_rescales_and_pastes():
    det = {"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([1]), "mask_probs": torch.ones(1, 1, 28, 28),
           "keypoints": torch.tensor([[[10.0, 20.0, 1.0]]])}
    out = detections_to_original(det, (50, 100), (100, 150))
    torch.testing.assert_close(out["boxes"], torch.tensor([[15.0, 40.0, 45.0, 80.0]]))
    torch.testing.assert_close(out["keypoints"], torch.tensor([[[15.0, 40.0, 1.0]]]))
    assert out["masks"].dtype == torch.bool and out["masks"].shape == (1, 100, 150)
    inside = out["masks"][0, 45:75, 20:40]
    assert bool(inside.all()) and not bool(out["masks"][0, :30].any())
    assert det["boxes"][0, 0] == 10.0  # input untouched


@pytest.mark.slow
def test_c4_design_trains_and_predicts():
    torch.manual_seed(0)
    cfg = load_config("r50_c4", {
        "model.backbone": "resnet18", "model.num_classes": 3, "model.norm": "bn", "model.freeze_at": 0,
        "model.rpn.pre_nms_topk_train": 100, "model.rpn.post_nms_topk_train": 50,
        "model.rpn.pre_nms_topk_test": 100, "model.rpn.post_nms_topk_test": 20,
        "model.roi_heads.batch_size_per_image": 16, "model.roi_heads.score_thresh": 0.0,
    })
    model = build_model(cfg)
    assert model.fpn is None and model.rpn_in_features == ["res4"]
    assert model.rpn.anchor_generator.num_anchors_per_location == 15  # 5 sizes x 3 ratios on one level
    assert any(k.startswith("roi_heads.res5.0.conv1.conv.") for k in model.state_dict())
    model.train()
    losses = model([torch.rand(3, 64, 80)], _targets()[:1])
    assert set(losses) == LOSS_KEYS and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.res5[0].conv1.conv.weight.grad is not None
    model.eval()
    with torch.inference_mode():
        det = model([torch.rand(3, 64, 80)])[0]
    assert det["mask_probs"].shape[1:] == (1, 14, 14)  # res5 7x7 -> deconv 14x14


def test_joint_keypoint_and_mask_training_step():
    """mask_on and keypoint_on together (the paper's Table 4/5 setting): every loss term, finite, and
    a person with no labelled keypoint (the second) gives the keypoint head nothing: its loss is the
    first person's alone, unchanged when the second person's keypoints are hidden entirely."""
    torch.manual_seed(0)
    model = build_model(_tiny_cfg(**{
        "model.num_classes": 2, "model.roi_heads.keypoint_on": True, "model.roi_heads.num_keypoints": 3,
        "model.roi_heads.keypoint_head_dim": 16, "model.roi_heads.keypoint_head_convs": 2}))
    model.train()
    image = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1))
    target = _targets()[0]
    target["labels"] = torch.tensor([1, 1])
    kps = torch.tensor([[[15.0, 15.0, 2.0], [30.0, 20.0, 1.0], [35.0, 25.0, 2.0]],
                        [[50.0, 40.0, 0.0], [60.0, 50.0, 0.0], [70.0, 55.0, 0.0]]])

    def losses(keypoints):
        generator = torch.Generator().manual_seed(3)
        return model([image], [{**target, "keypoints": keypoints}], generator=generator)

    out = losses(kps)
    assert set(out) == LOSS_KEYS | {"loss_keypoint"} and all(torch.isfinite(v) for v in out.values())
    assert out["loss_keypoint"].item() > 0
    sum(out.values()).backward()
    assert model.roi_heads.keypoint_head.predictor.weight.grad.abs().sum() > 0
    # moving the unlabelled person's (v = 0) keypoints changes nothing
    moved = kps.clone()
    moved[1, :, :2] = 52.0
    assert losses(moved)["loss_keypoint"].item() == pytest.approx(out["loss_keypoint"].item(), rel=1e-6)


def _one_target(**changes):
    """Target 0 of ``_targets`` (image (3, 64, 80)) with ``changes``."""
    return [dict(_targets()[0], **changes)]


def test_training_refuses_masks_on_the_0_255_scale(tiny):
    tiny.train()
    masks = _targets()[0]["masks"]
    with pytest.raises(ValueError, match=r"target 0 'masks' values span \[0, 255\], expected 0/1"):
        tiny([torch.rand(3, 64, 80)], _one_target(masks=masks * 255))
    tiny.eval()


def test_training_refuses_float_images_off_scale_or_nan(tiny):
    tiny.train()
    with pytest.raises(ValueError, match=r"model: image 0: float image values span \[.*, 255\]"):
        tiny([torch.rand(3, 64, 80) * 255], _one_target())
    with pytest.raises(ValueError, match="model: image 0: image holds NaN"):
        tiny([torch.full((3, 64, 80), float("nan"))], _one_target())
    tiny.eval()


@pytest.mark.parametrize("labels,bad", [([1, -1], -1), ([0, 1], 0), ([1, 3], 3)])
def test_training_refuses_labels_outside_1_to_num_classes(tiny, labels, bad):
    tiny.train()
    with pytest.raises(ValueError, match=rf"target 0 'labels' holds {bad}, expected 1..2 \(num_classes 3"):
        tiny([torch.rand(3, 64, 80)], _one_target(labels=torch.tensor(labels)))
    tiny.eval()


def test_training_names_malformed_targets_and_takes_float64_images(tiny):
    tiny.train()
    image = torch.rand(3, 64, 80)
    t = _targets()[0]
    with pytest.raises(ValueError, match="targets must be a list of dicts, one per image, got one dict"):
        tiny([image], t)
    with pytest.raises(ValueError, match="target 0 'labels' must be a torch tensor, got list"):
        tiny([image], _one_target(labels=[1, 2]))
    with pytest.raises(ValueError, match="target 0 'boxes' must be a torch tensor, got ndarray"):
        tiny([image], _one_target(boxes=t["boxes"].numpy()))
    with pytest.raises(ValueError, match="target 0 'masks' must be a torch tensor, got ndarray"):
        tiny([image], _one_target(masks=t["masks"].numpy()))
    with pytest.raises(ValueError, match=r"target 0 'labels' must be \(M,\), got shape \(\)"):
        tiny([image], [dict(boxes=t["boxes"][:1], labels=torch.tensor(1), masks=t["masks"][:1])])
    xywh = torch.tensor([[10.0, 10, 30, 20], [45, 35, 30, 25]])  # the second box's x2 < x1
    nan = torch.tensor([[10.0, 10, 40, float("nan")], [45, 35, 75, 60]])
    inf = torch.tensor([[10.0, 10, float("inf"), float("inf")], [45, 35, 75, 60]])  # x2 >= x1, not finite
    for boxes in (xywh, nan, inf):
        with pytest.raises(ValueError, match=r"target 0 'boxes' must be \[x1, y1, x2, y2\] with x2 >= x1"):
            tiny([image], _one_target(boxes=boxes))
    # float64 (and float16) images are converted to the model's float32, as the docstring says
    g = torch.Generator().manual_seed(0)
    losses = tiny([image.double()], _one_target(), generator=g)
    same = tiny([image], _one_target(), generator=torch.Generator().manual_seed(0))
    assert set(losses) == LOSS_KEYS
    assert all(losses[k].dtype == torch.float32 for k in losses)
    torch.testing.assert_close(losses["loss_cls"], same["loss_cls"])
    tiny.eval()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_scripting_is_refused_with_a_pointer_to_export(tiny):
    with pytest.raises(RuntimeError, match="does not support torch.jit.script.*maskrcnn export"):
        torch.jit.script(tiny)


@pytest.mark.parametrize("key, value, message", [
    ("num_classes", "3", "model.num_classes must be a whole number, got '3'"),  # was a % format error
    ("num_classes", 0, r"model.num_classes must be in \[2, 100000\], got 0"),  # was built
    ("pixel_mean", (1.0, 2.0), r"model.pixel_mean must be 3 values \(R, G, B\), got \[1.0, 2.0\]"),
    ("fpn", "no", "model.fpn must be true or false, got 'no'"),  # was read as true
    ("rpn", {}, r"model.rpn must be a section \(RPNConfig\), got \{\}"),
    # numpy and torch numbers are read as Python's: checked as those, not refused as another kind
    ("num_classes", np.int64(0), r"model.num_classes must be in \[2, 100000\], got 0"),
    ("num_classes", torch.tensor(0), r"model.num_classes must be in \[2, 100000\], got 0"),
    ("pixel_mean", np.array([1.0, 2.0]), r"model.pixel_mean must be 3 values \(R, G, B\), got \[1.0, 2.0\]"),
    ("fpn_dim", torch.tensor(0.5), "model.fpn_dim must be a whole number, got 0.5"),
])
def test_a_config_changed_by_assignment_is_checked_as_a_loaded_one(key, value, message):
    cfg = _tiny_cfg()
    setattr(cfg.model, key, value)
    with pytest.raises(ValueError, match=f"^invalid configuration: {message}$"):
        build_model(cfg)


def test_numpy_and_torch_values_set_by_assignment_build_as_their_numbers():
    """They built before the kind check; set= takes them too. Read as Python's numbers, so the config is
    checked and written by yaml.safe_dump as a loaded one is; the caller's Config is left as it was (it
    was changed in place under them)."""
    import yaml

    from maskrcnn.config import MODEL_KEYS, validate_config

    cfg = _tiny_cfg()
    cfg.model.num_classes = np.int64(3)
    cfg.model.pixel_mean = mean = np.array([103.5, 116.25, 123.75], dtype=np.float32)
    cfg.model.rpn.nms_thresh = np.float32(0.7)  # not 0.699999988079071
    cfg.model.fpn_dim = torch.tensor(32)
    cfg.solver.lr_schedule = "outdated"  # not a model key: a stored config still builds for inference
    model = build_model(cfg)
    assert type(model.num_classes) is int and model.fpn.out_channels == 32
    assert model.pixel_mean.flatten().tolist() == [103.5, 116.25, 123.75]
    assert type(cfg.model.num_classes) is np.int64 and cfg.model.pixel_mean is mean  # the caller's, as set
    assert type(cfg.model.rpn.nms_thresh) is np.float32 and isinstance(cfg.model.fpn_dim, torch.Tensor)
    plain = validate_config(cfg, stored=True, keys=MODEL_KEYS)
    assert type(plain.model.num_classes) is int and plain.model.fpn_dim == 32
    assert plain.model.pixel_mean == (103.5, 116.25, 123.75) and plain.model.rpn.nms_thresh == 0.7
    assert type(cfg.model.num_classes) is np.int64  # still
    assert yaml.safe_load(yaml.safe_dump(cfg.to_dict())) == plain.to_dict()  # written as its numbers
    loaded = _tiny_cfg()
    assert validate_config(loaded) is loaded  # a plain Config is not copied


@pytest.mark.parametrize("cfg", ["demo", {"model": {"num_classes": 3}}, None])
def test_build_model_takes_a_config_object_only(cfg):
    with pytest.raises(TypeError, match=f"expects a maskrcnn.config.Config, got {type(cfg).__name__} "):
        build_model(cfg)


@pytest.mark.parametrize("name", ["0..255", "normalised", "nan", "inf", "empty"])
def test_inference_refuses_float_images_off_scale_or_not_finite(tiny, name):
    """Without targets, 0..255, normalised and NaN images gave detections; they are refused with the
    message training gives, in forward and in preprocess (the Predictor's stages)."""
    tiny.eval()
    image = {"0..255": torch.rand(3, 64, 80) * 255, "normalised": (torch.rand(3, 64, 80) - 0.45) / 0.225,
             "nan": torch.full((3, 64, 80), float("nan")),
             "inf": torch.rand(3, 64, 80).index_put_((torch.tensor(0), torch.tensor(1), torch.tensor(2)),
                                                     torch.tensor(float("inf"))),
             "empty": torch.rand(3, 0, 40)}[name]
    match = "model: image 1: image holds NaN" if name in ("nan", "inf") else (
        r"model: image 1 is empty, shape \(3, 0, 40\)" if name == "empty" else
        r"model: image 1: float image values span \[.*\], expected RGB in \[0, 1\]")
    with torch.inference_mode(), pytest.raises(ValueError, match=match):
        tiny([torch.rand(3, 48, 64), image])
    with pytest.raises(ValueError, match=match):
        tiny.preprocess([torch.rand(3, 48, 64), image])
    if name != "empty":  # checked=True: the caller checked the values (the Predictor on load)
        assert tiny.preprocess([image], checked=True)[0].shape == (1, 3, 64, 96)
    ok = torch.rand(3, 64, 80) * 1.04 - 0.02  # a resize's ringing: within the slack, used
    assert tiny.preprocess([ok])[0].shape == (1, 3, 64, 96)


def test_images_on_the_meta_device_are_refused_in_one_line(tiny):
    """A meta tensor has a shape and no data: "Cannot copy out of meta tensor" from deep inside before."""
    tiny.eval()
    meta = torch.empty(3, 64, 80, device="meta")
    for call in (tiny, tiny.preprocess):
        with pytest.raises(ValueError, match="^model: image 1 is a tensor on the meta device, which holds no "
                                             "data$"):
            call([torch.rand(3, 48, 64), meta])
