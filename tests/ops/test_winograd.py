"""Winograd F(4x4, 3x3) convolution: equal to the direct convolution, chunked or not, with the
fallbacks where it must not run (gradients, autocast, other dtypes)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.fuse import optimise_for_inference, use_winograd
from maskrcnn.ops import winograd
from maskrcnn.ops.onednn_linear import onednn_linear_available
from maskrcnn.ops.winograd import WinogradConv2d, conv3x3_winograd, winograd_eligible, winograd_weight


def _case(n, c, h, w, co, *, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    weight = torch.randn(co, c, 3, 3, generator=g, dtype=dtype) / (9 * c) ** 0.5
    bias = torch.randn(co, generator=g, dtype=dtype)
    return x, weight, bias


@pytest.mark.parametrize(
    "shape",
    [
        (1, 1, 1, 1, 1),  # one pixel: a single tile that is almost all padding
        (2, 3, 5, 7, 4),  # sizes not multiples of 4: partial last tiles
        (3, 8, 8, 12, 5),  # multiples of 4: output returned without a crop copy
        (1, 4, 2, 30, 6),  # one tile row
        (5, 6, 14, 14, 7),  # mask-head shape: several RoIs
    ],
)
def test_equals_direct_convolution_in_float64(shape):
    x, weight, bias = _case(*shape)
    ref = F.conv2d(x, weight, bias, padding=1)
    out = conv3x3_winograd(x, winograd_weight(weight), bias)
    assert out.shape == ref.shape
    # the transforms are exact up to rounding: float64 leaves nothing but ~1e-15
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(conv3x3_winograd(x, winograd_weight(weight)), ref - bias[:, None, None],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("budget", [1, 16 * 40, 1 << 30])
@pytest.mark.parametrize("shape", [(1, 8, 37, 41, 8), (6, 8, 10, 9, 8)])
def test_chunking_does_not_change_the_result(monkeypatch, budget, shape):
    """Bands of tile rows (one large map) and groups of images (RoI batches), down to one tile row
    or image per chunk, must give the same numbers as one chunk for everything."""
    x, weight, bias = _case(*shape)
    ref = F.conv2d(x, weight, bias, padding=1)
    monkeypatch.setattr(winograd, "_CHUNK_TILE_CHANNELS", budget)
    n, c, h, w, _ = shape
    chunks = winograd._chunks(n, -(-h // 4), -(-w // 4), c, budget)
    covered = sum((i1 - i0) * (r1 - r0) for i0, i1, r0, r1 in chunks)
    assert covered == n * -(-h // 4)  # every tile row of every image exactly once
    torch.testing.assert_close(conv3x3_winograd(x, winograd_weight(weight), bias), ref, rtol=0, atol=1e-12)


def test_float32_error_is_small_and_layouts_agree():
    x, weight, bias = _case(2, 128, 30, 34, 128, dtype=torch.float32, seed=3)
    ref = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    wt = winograd_weight(weight)
    out = conv3x3_winograd(x, wt, bias)
    out_cl = conv3x3_winograd(x.contiguous(memory_format=torch.channels_last), wt, bias)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, out_cl, rtol=0, atol=0)
    rel = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    assert rel < 5e-5, rel  # measured ~7e-6; the direct float32 convolution: ~2e-6


def test_weight_transform_checks_its_input():
    with pytest.raises(ValueError, match="3, 3"):
        winograd_weight(torch.zeros(4, 4, 5, 5))
    with pytest.raises(ValueError, match="channels"):
        conv3x3_winograd(torch.zeros(1, 3, 8, 8), winograd_weight(torch.zeros(2, 4, 3, 3)))


def test_eligibility():
    assert winograd_eligible(nn.Conv2d(128, 128, 3, padding=1))
    assert not winograd_eligible(nn.Conv2d(64, 64, 3, padding=1))  # below min_channels
    assert winograd_eligible(nn.Conv2d(64, 64, 3, padding=1), min_channels=1)
    for conv in [
        nn.Conv2d(128, 128, 3, padding=1, stride=2),
        nn.Conv2d(128, 128, 3, padding=2, dilation=2),
        nn.Conv2d(128, 128, 3, padding=1, groups=32),
        nn.Conv2d(128, 128, 3, padding=0),
        nn.Conv2d(128, 128, 1),
        nn.Conv2d(128, 128, 3, padding=1, padding_mode="reflect"),
        nn.ConvTranspose2d(128, 128, 3, padding=1),
    ]:
        assert not winograd_eligible(conv), conv
    with pytest.raises(ValueError, match="not a 3x3"):
        WinogradConv2d(nn.Conv2d(8, 8, 3, padding=1, stride=2))


def test_module_uses_winograd_only_where_it_may(monkeypatch):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 6, 3, padding=1)
    wconv = WinogradConv2d(conv)
    calls = []
    real = winograd.conv3x3_winograd
    monkeypatch.setattr(winograd, "conv3x3_winograd", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(2, 8, 9, 11)  # 2 * 3 * 3 tiles x 8 channels = 144
    monkeypatch.setattr(winograd, "_MIN_TILE_CHANNELS", 144)
    ref = conv(x)
    with torch.no_grad():
        torch.testing.assert_close(wconv(x), ref, rtol=1e-5, atol=1e-5)
    assert len(calls) == 1
    # training-style call: the weight wants a gradient -> direct conv with autograd
    out = wconv(x)
    assert out.grad_fn is not None and len(calls) == 1
    out.sum().backward()
    assert conv.weight.grad is not None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert wconv(x).dtype == torch.bfloat16 and len(calls) == 1
    with torch.no_grad():
        wconv.double()
        torch.testing.assert_close(wconv(x.double()), conv.double()(x.double()))
    assert len(calls) == 1  # float64: not the float32 CPU fast path
    # state-dict keys are the convolution's own: the transformed kernel is derived, not saved
    assert set(wconv.state_dict()) == {"weight", "bias"}
    # a map too small for the transforms to pay off: the direct convolution
    wconv.float()
    monkeypatch.setattr(winograd, "_MIN_TILE_CHANNELS", 145)
    with torch.no_grad():
        torch.testing.assert_close(wconv(x), conv.float()(x), rtol=1e-5, atol=1e-5)
    assert len(calls) == 1


def test_use_winograd_replaces_eligible_convs_in_a_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 128, 3, padding=1), nn.ReLU(),
        nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.ReLU()),
        nn.Conv2d(128, 128, 3, padding=1, stride=2),
    ).eval()  # fmt: skip
    x = torch.randn(1, 3, 21, 19)
    with torch.no_grad():
        ref = model(x)
        optimise_for_inference(model, winograd=True)
        assert model.winograd_convs == 1 and isinstance(model[2][0], WinogradConv2d)
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)
    assert use_winograd(model) == 0  # idempotent: a WinogradConv2d is not replaced again
    plain = optimise_for_inference(nn.Sequential(nn.Conv2d(128, 128, 3, padding=1)), winograd=False)
    assert plain.winograd_convs == 0


onednn = pytest.mark.skipif(not onednn_linear_available(), reason="this PyTorch build has no oneDNN linear")


@onednn
@pytest.mark.parametrize("budget", [1, 1 << 17])
@pytest.mark.parametrize("shape", [(1, 32, 37, 41, 24), (6, 16, 16, 16, 8)])
def test_products_on_onednn_equal_the_direct_convolution(monkeypatch, budget, shape):
    """The 36 products through oneDNN's matmul (the path where torch.mm lags oneDNN): the same float32
    result as the torch.bmm path up to summation order, in chunks of a few tile rows / images or in one."""
    x, weight, bias = _case(*shape, dtype=torch.float32, seed=5)
    ref = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    monkeypatch.setattr(winograd, "_ONEDNN_CHUNK_TILE_CHANNELS", budget)
    # the budget grows with the threads: pinned, so that budget 1 chunks on a many-core machine too
    monkeypatch.setattr(winograd.torch, "get_num_threads", lambda: 1)
    n, c, h, w, _ = shape
    assert (len(winograd._chunks(n, -(-h // 4), -(-w // 4), c, budget)) > 1) == (budget == 1)
    wt = winograd_weight(weight)
    out = conv3x3_winograd(x, wt, bias, onednn_products=True)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
    rel = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    assert rel < 5e-5, rel  # as the torch.bmm path (measured ~7e-6)
    torch.testing.assert_close(out, conv3x3_winograd(x, wt, bias), rtol=1e-5, atol=1e-5)


@onednn
def test_products_on_onednn_keep_the_direct_convolution_where_tiles_waste(monkeypatch):
    """With oneDNN's products a map whose 4 x 4 tiles leave more than a fifth of their outputs unused
    (the mask head's 14 x 14 RoIs: 196 of 256) runs the direct convolution; 16 x 16 uses every output."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1)
    wconv = WinogradConv2d(conv, onednn_products=True)
    assert "products on oneDNN" in repr(wconv)
    calls = []
    real = winograd.conv3x3_winograd
    monkeypatch.setattr(winograd, "conv3x3_winograd", lambda *a, **k: calls.append(k) or real(*a, **k))
    monkeypatch.setattr(winograd, "_MIN_TILE_CHANNELS", 1)
    with torch.no_grad():
        # 14: 196 / 256 = 0.77 of the tiles' outputs used; 16: all; 25: 625 / 784 = 0.797; 27: 0.93
        for size, used in [(14, False), (16, True), (25, False), (27, True)]:
            x = torch.randn(3, 16, size, size)
            torch.testing.assert_close(wconv(x), conv(x), rtol=1e-5, atol=1e-5)
            assert bool(calls) == used, size
            assert all(k == {"onednn_products": True} for k in calls)
            calls.clear()
        # the torch.bmm path keeps its rule (tiles x channels only)
        x = torch.randn(3, 16, 14, 14)
        torch.testing.assert_close(WinogradConv2d(conv)(x), conv(x), rtol=1e-5, atol=1e-5)
        assert calls == [{"onednn_products": False}]


def test_roi_heads_on_14_pixel_rois_keep_the_direct_convolution_with_onednn_products(monkeypatch):
    """With the products on oneDNN the mask (and keypoint) head's convolutions, always on its pooler's
    14 x 14 maps, are left as they are (their Winograd would never run); a 16 x 16 pooler's are replaced.
    The torch.bmm path replaces them as before."""
    from maskrcnn.modeling import fuse

    def model(pool):
        roi_heads = nn.Module()
        roi_heads.mask_pooler = type("Pooler", (nn.Module,), {})()
        roi_heads.mask_pooler.output_size = (pool, pool)
        roi_heads.mask_head = nn.Sequential(nn.Conv2d(256, 256, 3, padding=1))
        holder = nn.Module()
        holder.fpn = nn.Conv2d(256, 256, 3, padding=1)
        holder.roi_heads = roi_heads
        return holder

    for lags, pool, expected in [(True, 14, 1), (True, 16, 2), (False, 14, 2)]:
        monkeypatch.setattr(fuse, "matmul_lags_onednn", lambda lags=lags: lags)
        m = optimise_for_inference(model(pool), fused_add=False)
        lagging = lags and onednn_linear_available()
        assert m.winograd_convs == (expected if lagging else 2), (lags, pool)
        assert isinstance(m.fpn, WinogradConv2d)
