"""Predictor and inference optimisations: detections in original coordinates, batching, folded BN."""

import pytest
import torch
from torch import nn

from maskrcnn.modeling.fuse import fold_conv_norm, norm_affine, optimise_for_inference
from maskrcnn.modeling.layers import ConvNorm, FrozenBatchNorm2d

# tiny forwards: extra intra-op threads only add synchronisation (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")


def _randomise_norms(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            C = m.num_features
            with torch.no_grad():
                m.weight.copy_(1 + 0.3 * torch.randn(C, generator=g))
                m.bias.copy_(0.3 * torch.randn(C, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(C, generator=g))
                m.running_var.copy_(0.5 + torch.rand(C, generator=g))


class _Toy(nn.Module):
    """The three conv/norm layouts fuse.py recognises, plus a GroupNorm that must stay."""

    def __init__(self):
        super().__init__()
        self.a = ConvNorm(3, 8, 3, norm="frozen_bn", relu=True)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(8)
        self.seq = nn.Sequential(nn.Conv2d(8, 8, 1, groups=2, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.gn = ConvNorm(8, 32, 3, norm="gn")

    def forward(self, x):
        return self.gn(self.seq(self.bn1(self.conv1(self.a(x)))))


def test_norm_affine_matches_definition():
    bn = nn.BatchNorm2d(5, eps=1e-3).eval()
    _randomise_norms(bn, 1)
    scale, shift = norm_affine(bn)
    ref_scale = bn.weight.double() / (bn.running_var.double() + 1e-3).sqrt()
    torch.testing.assert_close(scale, ref_scale)
    torch.testing.assert_close(shift, bn.bias.double() - bn.running_mean.double() * ref_scale)
    conv = nn.Conv2d(2, 5, 3, bias=False)
    x = torch.randn(1, 2, 9, 9)
    ref = bn(conv(x))
    fold_conv_norm(conv, bn)
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)


def test_optimise_toy_model_same_output_and_norms_gone():
    torch.manual_seed(0)
    model = _Toy().eval()
    _randomise_norms(model)
    x = torch.randn(2, 3, 17, 23)
    ref = model(x)
    optimise_for_inference(model)
    assert model.folded_norms == 3
    kinds = {type(m).__name__ for m in model.modules()}
    assert "BatchNorm2d" not in kinds and "FrozenBatchNorm2d" not in kinds
    assert "GroupNorm" in kinds  # depends on the input: never folded
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_training_mode_batchnorm_is_not_folded_without_eval():
    seq = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    from maskrcnn.modeling.fuse import _fold_children

    seq.train()
    assert _fold_children(seq) == 0  # batch statistics: not a fixed affine map
    seq.eval()
    assert _fold_children(seq) == 1 and isinstance(seq[1], nn.Identity)


# ------------------------------------------------------------------------------------------------
# The Predictor on a tiny random-weight model

import copy  # noqa: E402

from tiny_model import TINY_FROZEN_BN as TINY  # noqa: E402  (tests/ is on the path)

from maskrcnn.config import PRESETS, apply_overrides  # noqa: E402
from maskrcnn.data.transforms import resize_image  # noqa: E402
from maskrcnn.modeling.mask_rcnn import build_model  # noqa: E402
from maskrcnn.predictor import Predictor, resolve_device  # noqa: E402


def tiny_config():
    return apply_overrides(PRESETS["r18_fpn"](), TINY)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).eval()
    _randomise_norms(model, 3)
    return model, cfg


def _images():
    g = torch.Generator().manual_seed(1)
    return [
        torch.rand(3, 90, 70, generator=g),  # portrait: short side 70 -> 64
        (torch.rand(3, 40, 150, generator=g) * 255).to(torch.uint8),  # wide uint8: long side capped at 96
    ]


def test_predictor_maps_to_original_coordinates(tiny):
    model, cfg = tiny
    images = _images()
    pred = Predictor(model, cfg, batch_size=2)
    assert pred.class_names == ["__background__", "class1", "class2"]
    out = pred(images)
    assert len(out) == 2
    for det, img in zip(out, images):
        H, W = img.shape[-2:]
        D = det["boxes"].shape[0]
        assert D > 0 and det["masks"].shape == (D, H, W) and det["masks"].dtype == torch.bool
        assert det["labels"].dtype == torch.int64 and (det["labels"] >= 1).all()
        assert det["boxes"].dtype == torch.float32
        assert (det["boxes"][:, 0::2] <= W + 1e-3).all() and (det["boxes"][:, 1::2] <= H + 1e-3).all()
    # By hand: resize, model, scale boxes by original / resized size (one image: no batch padding).
    img = images[0]
    alone = Predictor(model, cfg, batch_size=1)([img])[0]
    small = resize_image(img, min_size=64, max_size=96)
    assert tuple(small.shape[-2:]) == (82, 64)
    with torch.inference_mode():
        ref = model([small])[0]
    scale = torch.tensor([70 / 64, 90 / 82, 70 / 64, 90 / 82])
    torch.testing.assert_close(alone["boxes"], ref["boxes"] * scale, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(alone["scores"], ref["scores"])


def test_predictor_batching_threshold_and_paths(tiny, tmp_path):
    model, cfg = tiny
    g = torch.Generator().manual_seed(2)
    same = [torch.rand(3, 64, 80, generator=g) for _ in range(2)]
    one = Predictor(model, cfg, batch_size=1)(same)
    batched = Predictor(model, cfg, batch_size=2)(same)
    for a, b in zip(one, batched):  # same-size images: batching changes nothing but float rounding
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-5)
    thresh = float(one[0]["scores"].median())
    filtered = Predictor(model, cfg, score_thresh=thresh)(same[0])[0]
    keep = one[0]["scores"] >= thresh
    assert 0 < filtered["boxes"].shape[0] == int(keep.sum()) < one[0]["boxes"].shape[0]
    torch.testing.assert_close(filtered["boxes"], one[0]["boxes"][keep])
    assert filtered["masks"].shape[0] == filtered["boxes"].shape[0]
    # A file path gives what the decoded tensor gives.
    from PIL import Image

    u8 = (same[1] * 255).round().to(torch.uint8)
    Image.fromarray(u8.permute(1, 2, 0).numpy()).save(tmp_path / "x.png")
    from_file = Predictor(model, cfg)([tmp_path / "x.png"])[0]
    from_tensor = Predictor(model, cfg)([u8])[0]
    torch.testing.assert_close(from_file["boxes"], from_tensor["boxes"])


def test_numpy_and_pil_images_give_what_the_tensor_gives(tiny):
    import numpy as np
    from PIL import Image

    model, cfg = tiny
    pred = Predictor(model, cfg)
    g = torch.Generator().manual_seed(4)
    u8 = (torch.rand(3, 50, 70, generator=g) * 255).round().to(torch.uint8)  # (3, H, W)
    hwc = u8.permute(1, 2, 0).numpy()  # (H, W, 3) uint8 RGB
    ref = pred(u8)[0]
    inputs = {
        "numpy uint8": hwc,
        "numpy float": hwc.astype(np.float32) / 255.0,
        "PIL RGB": Image.fromarray(hwc),
        "PIL RGBA": Image.fromarray(np.dstack([hwc, np.full(hwc.shape[:2], 255, np.uint8)]), "RGBA"),
    }
    for name, image in inputs.items():
        for out in (pred(image)[0], pred([image, image])[1]):  # one image, or a list
            torch.testing.assert_close(out["boxes"], ref["boxes"], msg=name)
            torch.testing.assert_close(out["scores"], ref["scores"], msg=name)
    grey = pred(hwc[:, :, 0])[0]  # (H, W) grey: the channel repeated
    torch.testing.assert_close(grey["boxes"], pred(u8[:1].expand(3, -1, -1))[0]["boxes"])
    with pytest.raises(ValueError, match=r"image 0.*\(H, W, 3\)"):
        pred(np.zeros((4, 50, 70), np.uint8))
    with pytest.raises(ValueError, match="int32 not supported"):
        pred(hwc.astype(np.int32))


def test_fused_model_gives_same_detections(tiny):
    model, cfg = tiny
    images = _images()
    ref = Predictor(model, cfg)(images)
    fused_model = copy.deepcopy(model)
    fast = Predictor(fused_model, cfg, optimise=True, winograd=True)  # not left to this CPU's rates
    assert fused_model.folded_norms > 10
    assert fused_model.winograd_convs > 0  # resnet18's 256 / 512-channel 3x3 convolutions
    assert not any("BatchNorm" in type(m).__name__ for m in fused_model.modules())
    out = fast(images)
    for a, b in zip(ref, out):
        assert a["boxes"].shape == b["boxes"].shape
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=1e-4, atol=2e-3)
        torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-5)
        assert torch.equal(a["labels"], b["labels"])
        assert (a["masks"] != b["masks"]).float().mean() < 1e-3


def test_from_checkpoint_round_trip_and_errors(tiny, tmp_path):
    from maskrcnn.checkpoint import CheckpointError, save_checkpoint

    model, cfg = tiny
    names = ["__background__", "cat", "dog"]
    path = tmp_path / "tiny.pth"
    save_checkpoint(path, model_state=model.state_dict(), config=cfg, class_names=names,
                    label_to_category_id={1: 17, 2: 18})  # fmt: skip
    pred = Predictor.from_checkpoint(path, device="auto")
    assert pred.device == resolve_device("auto") and pred.class_names == names
    assert pred.label_to_category_id == {1: 17, 2: 18}
    img = _images()[0]
    ref = Predictor(model, cfg)([img])[0]
    out = pred([img])[0]
    torch.testing.assert_close(out["boxes"], ref["boxes"], rtol=1e-4, atol=2e-3)
    state = dict(model.state_dict())
    state.pop(next(k for k in state if k.endswith("weight")))
    save_checkpoint(tmp_path / "bad.pth", model_state=state, config=cfg, class_names=names)
    misfit = r"bad\.pth.*does not fit.*\(1 of the model's \d+ tensors missing\)"
    with pytest.raises(CheckpointError, match=misfit):
        Predictor.from_checkpoint(tmp_path / "bad.pth", device="cpu")
    state = dict(model.state_dict())
    key = "roi_heads.box_predictor.cls_score.weight"
    state[key] = torch.zeros(5, state[key].shape[1])  # a 5-class head in a 3-class config
    save_checkpoint(tmp_path / "shape.pth", model_state=state, config=cfg, class_names=names)
    with pytest.raises(CheckpointError, match=r"shape\.pth.*cls_score"):
        Predictor.from_checkpoint(tmp_path / "shape.pth", device="cpu")
    with pytest.raises(ValueError, match="float16 needs a CUDA"):
        Predictor(model, cfg, dtype="float16")
    with pytest.raises(ValueError, match="3 class names|class names"):
        Predictor(model, cfg, ["__background__", "only"])
    with pytest.raises(ValueError, match="image 0"):
        Predictor(model, cfg)([torch.rand(2, 4, 5)])  # (4, 5) alone is a grey image, as a numpy (H, W) is


def test_bfloat16_autocast_runs_and_stays_close(tiny):
    model, cfg = tiny
    img = _images()[0]
    ref = Predictor(model, cfg)([img])[0]
    low = Predictor(model, cfg, dtype="bfloat16")([img])[0]
    assert low["boxes"].dtype == torch.float32 and low["scores"].dtype == torch.float32
    assert low["masks"].shape[1:] == img.shape[1:]
    # bfloat16 features move scores by ~1e-2: the best detections are still found, at nearly the same place.
    from maskrcnn.ops.boxes import box_iou

    iou = box_iou(ref["boxes"][:5], low["boxes"])  # (5, D)
    iou[ref["labels"][:5, None] != low["labels"][None, :]] = 0
    assert (iou.max(dim=1).values > 0.8).float().mean() >= 0.6
    assert "features" not in model.__dict__  # the model's stages are called, never patched


def test_bfloat16_covers_the_heads_but_not_what_decides_boxes(tiny):
    """The heads' layers are most of the time once the backbone runs in bfloat16 (on AMX, 4-6x faster
    than float32): they run under the autocast too, while the box predictor's scores and deltas, and
    the features RoIs are pooled from, stay float32."""
    model, cfg = tiny
    heads = model.roi_heads
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, (output[0] if isinstance(output, tuple) else output).dtype)
        return hook

    watched = {"box_head.fcs.0": heads.box_head.fcs[0], "bbox_pred": heads.box_predictor.bbox_pred,
               "cls_score": heads.box_predictor.cls_score, "rpn.head": model.rpn.head,
               "mask_head": heads.mask_head}
    handles = [m.register_forward_hook(record(n)) for n, m in watched.items()]
    pooled = []
    handles.append(heads.box_pooler.register_forward_pre_hook(
        lambda m, args: pooled.append({v.dtype for v in args[0].values()})))
    try:
        Predictor(model, cfg, dtype="bfloat16")([_images()[0]])
    finally:
        for h in handles:
            h.remove()
    assert seen["box_head.fcs.0"] == torch.bfloat16 and seen["rpn.head"] == torch.bfloat16
    assert seen["mask_head"] == torch.bfloat16
    assert seen["bbox_pred"] == torch.float32 and seen["cls_score"] == torch.float32
    assert pooled == [{torch.float32}]


def test_box_predictor_keeps_the_type_of_a_model_cast_as_a_whole():
    """Autocast is turned off around the box predictor, which then computes in its weights' type: a
    float64 or bfloat16 model (cast with .double() / .bfloat16()) still runs, in that type."""
    from maskrcnn.modeling.box_head import BoxPredictor

    for dtype in (torch.float64, torch.bfloat16):
        head = BoxPredictor(in_features=8, num_classes=3).to(dtype)
        scores, deltas = head(torch.randn(4, 8, 1, 1, dtype=dtype))
        assert scores.dtype == dtype and deltas.shape == (4, 12)
    head = BoxPredictor(in_features=8, num_classes=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, deltas = head(torch.randn(4, 8, dtype=torch.bfloat16))
    assert scores.dtype == torch.float32 and deltas.dtype == torch.float32


def test_batches_are_grouped_by_size_and_results_keep_input_order(tiny, monkeypatch):
    model, cfg = tiny
    g = torch.Generator().manual_seed(4)
    # resized: (64, 80), (96, 64), (64, 80), (96, 64) -> two forwards of same-size pairs
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 90, 60, generator=g),
              torch.rand(3, 64, 80, generator=g), torch.rand(3, 90, 60, generator=g)]  # fmt: skip
    pred = Predictor(model, cfg, batch_size=2)
    assert pred.window == 8
    batches = []
    real = pred._forward

    def record(ims):
        batches.append([tuple(i.shape[-2:]) for i in ims])
        return real(ims)

    monkeypatch.setattr(pred, "_forward", record)
    out = pred(images)
    assert sorted(batches) == [[(64, 80), (64, 80)], [(96, 64), (96, 64)]]
    alone = Predictor(model, cfg)(images)
    for a, b, img in zip(out, alone, images):  # same-size batch-mates: no padding, same detections
        assert a["masks"].shape[1:] == img.shape[1:]
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-5)


def test_optimised_model_swaps_in_fused_additions(tiny):
    from maskrcnn.ops.fused_conv import ConvAdd, fused_kernel_works

    model, cfg = tiny
    built = {type(m) for m in model.modules()}
    assert ConvAdd not in built  # the model as built is plain PyTorch
    fast = copy.deepcopy(model)
    Predictor(fast, cfg, optimise=True, winograd=True)
    swapped = [m for m in fast.modules() if isinstance(m, ConvAdd)]
    if not fused_kernel_works():
        pytest.skip("no oneDNN fused convolution in this PyTorch build")
    # resnet18 with a 32-channel FPN: res2's 64-channel block ends (2), the 1x1 shortcuts (3), the FPN
    # laterals (4) and 3x3 outputs (4); the 128+ channel block ends of res3-res5 are Winograd convs
    assert len(swapped) == fast.fused_adds == 13 and all(m.fused for m in swapped)
    plain = copy.deepcopy(model)
    Predictor(plain, cfg, optimise=True, fused_add=False)  # e.g. for a graph to export
    assert plain.fused_adds == 0 and not any(isinstance(m, ConvAdd) for m in plain.modules())
