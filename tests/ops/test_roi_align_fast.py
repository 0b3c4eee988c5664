"""RoIAlign's forward-only inference path (taps + embedding_bag) against the autograd (window) path."""

import importlib

import pytest
import torch

from maskrcnn.ops import MultiScaleRoIAlign, roi_align
from maskrcnn.ops._reference import roi_align_loop
from maskrcnn.ops.sampling import RoIAlignPlan

pytestmark = pytest.mark.usefixtures("single_thread")

roi_align_module = importlib.import_module("maskrcnn.ops.roi_align")


def _window_path(inp, rois, *args):
    """The autograd path: taken whenever the input needs a gradient."""
    out = roi_align(inp.detach().clone().requires_grad_(True), rois, *args)
    assert out.requires_grad
    return out.detach()


def _fast_path(inp, rois, *args):
    out = roi_align(inp, rois, *args)
    assert not out.requires_grad
    return out


def _mixed_rois(n, num_images, extent_hw, seed):
    """Small, medium, huge (tap mode), partly or wholly outside, empty and inverted boxes."""
    g = torch.Generator().manual_seed(seed)
    h, w = extent_hw
    size = torch.tensor([w, h], dtype=torch.float64)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * (size * 1.4) - size * 0.2
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * size * torch.rand(n, 1, generator=g) ** 2
    boxes = torch.cat((xy, xy + wh), 1)
    boxes[:3] = torch.tensor([[-3.0 * w, -2.0 * h, 4.0 * w, 3.0 * h],  # huge: tap mode
                              [0.0, 0.0, float(w), float(h)],
                              [-0.5 * w, 0.25 * h, 0.5 * w, 0.3 * h]], dtype=torch.float64)
    boxes[3] = torch.tensor([5.0, 5.0, 5.0, 5.0])  # empty
    boxes[4] = torch.tensor([9.0, 8.0, 2.0, 1.0])  # inverted
    idx = torch.randint(0, num_images, (n, 1), generator=g).double()
    return torch.cat((idx, boxes), 1)


def _tap_mode(axis):
    """(R,) RoIs whose window along this axis lists sample taps rather than consecutive rows."""
    step = axis.index[:, 1:] - axis.index[:, :-1]
    in_use = torch.arange(step.shape[1])[None, :] < axis.length[:, None] - 1
    return ((step != 1) & in_use).any(dim=1)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2])
def test_fast_path_matches_window_path_and_reference(channels_last, aligned, sampling_ratio):
    g = torch.Generator().manual_seed(11)
    inp = torch.randn(3, 5, 13, 17, generator=g, dtype=torch.float64)
    if channels_last:
        inp = inp.contiguous(memory_format=torch.channels_last)
    rois = _mixed_rois(40, 3, (26, 34), seed=12)  # image coordinates, spatial_scale 0.5
    args = ((4, 3), 0.5, sampling_ratio, aligned)
    if sampling_ratio > 0:  # large boxes with few samples: some columns are sampled in tap mode
        plan = RoIAlignPlan(rois, 13, 17, (4, 3), 0.5, sampling_ratio, aligned, torch.float64)
        assert _tap_mode(plan.x).any()
    fast = _fast_path(inp, rois, *args)
    assert fast.shape == (40, 5, 4, 3) and fast.is_contiguous()
    torch.testing.assert_close(fast, _window_path(inp, rois, *args), rtol=0, atol=1e-10)
    torch.testing.assert_close(fast, roi_align_loop(inp, rois, *args), rtol=0, atol=1e-10)


def test_fast_path_chunks_and_list_boxes(monkeypatch):
    g = torch.Generator().manual_seed(13)
    inp = torch.randn(2, 3, 20, 24, generator=g, dtype=torch.float64)
    rois = _mixed_rois(25, 2, (20, 24), seed=14)
    ref = _window_path(inp, rois, 7, 1.0, 0, False)
    monkeypatch.setattr(roi_align_module, "_TAP_CHUNK_ELEMENTS", 1)  # one RoI per chunk
    torch.testing.assert_close(_fast_path(inp, rois, 7, 1.0, 0, False), ref, rtol=0, atol=1e-10)
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    rows = torch.cat([torch.nonzero(rois[:, 0] == i).flatten() for i in range(2)])
    torch.testing.assert_close(_fast_path(inp, boxes, 7, 1.0, 0, False), ref[rows], rtol=0, atol=1e-10)


def test_fast_path_is_used_exactly_when_no_gradient_is_needed():
    inp = torch.randn(1, 2, 6, 6)
    rois = torch.tensor([[0, 0.5, 0.5, 4.0, 5.0]])
    assert not roi_align(inp, rois, 2).requires_grad
    grad_in = inp.clone().requires_grad_(True)
    assert roi_align(grad_in, rois, 2).requires_grad
    with torch.no_grad():
        assert not roi_align(grad_in, rois, 2).requires_grad
    with torch.inference_mode():
        torch.testing.assert_close(roi_align(inp, rois, 2), roi_align(grad_in, rois, 2).detach())


def test_fast_path_degenerate_inputs():
    inp = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    rois = torch.tensor([[0, float("nan"), 1.0, 5.0, 5.0], [0, 0.0, 0.0, float("inf"), 4.0],
                         [0, -1e9, -1e9, 1e9, 1e9], [0, 2.0, 2.0, 9.0, 9.0],
                         [0, 30.0, 30.0, 40.0, 35.0]], dtype=torch.float64)
    for sr in (0, 2):
        for aligned in (False, True):
            out = _fast_path(inp, rois, 7, 1.0, sr, aligned)
            assert torch.isfinite(out).all() and out[:2].abs().sum() == 0 and out[4].abs().sum() == 0
            torch.testing.assert_close(out, _window_path(inp, rois, 7, 1.0, sr, aligned), rtol=0, atol=1e-10)
    assert _fast_path(inp, torch.zeros(0, 5), (2, 3)).shape == (0, 3, 2, 3)
    empty_map = torch.zeros(1, 3, 0, 5)
    assert _fast_path(empty_map, rois, 2).abs().sum() == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fast_path_low_precision(dtype):
    g = torch.Generator().manual_seed(15)
    inp = torch.randn(1, 8, 12, 12, generator=g).contiguous(memory_format=torch.channels_last)
    rois = torch.tensor([[0, 1.0, 1.5, 9.0, 10.0], [0, 4.0, 0.0, 11.0, 6.0]])
    low = inp.to(dtype)
    out = _fast_path(low, rois, 7, 1.0, 2, False)
    assert out.dtype == dtype
    # computed in float32 from the rounded input, rounded once at the end
    ref = _fast_path(low.float(), rois, 7, 1.0, 2, False)
    torch.testing.assert_close(out, ref.to(dtype), rtol=0, atol=0)
    # the window path sums in another order: float32 results differ in the last bits, so the rounded
    # outputs may differ by one unit in the last place of the low-precision format
    eps = torch.finfo(dtype).eps
    window = _window_path(low, rois, 7, 1.0, 2, False)
    torch.testing.assert_close(out.float(), window.float(), rtol=eps, atol=eps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = _fast_path(inp, rois, 7, 1.0, 2, False)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, _window_path(inp, rois, 7, 1.0, 2, False), rtol=1e-6, atol=1e-6)


def test_roi_align_into_several_maps_writes_only_its_rows():
    g = torch.Generator().manual_seed(16)
    maps = [torch.randn(2, 4, 24 // s, 32 // s, generator=g, dtype=torch.float64) for s in (1, 2, 4)]
    maps[1] = maps[1].contiguous(memory_format=torch.channels_last)
    scales = [1.0, 0.5, 0.25]
    rois = _mixed_rois(30, 2, (24, 32), seed=17)
    level = torch.randint(0, 3, (30,), generator=g)
    out_rows = torch.randperm(40, generator=g)[:30]
    out = torch.full((40, 4, 3, 5), 7.0, dtype=torch.float64)
    roi_align_module.roi_align_into(out, out_rows, maps, rois, (3, 5), scales, 2, True, level=level)
    for i in range(30):
        ref = _window_path(maps[level[i]], rois[i:i + 1], (3, 5), scales[level[i]], 2, True)
        torch.testing.assert_close(out[out_rows[i]:out_rows[i] + 1], ref, rtol=0, atol=1e-10)
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[out_rows] = False
    assert (out[untouched] == 7.0).all()
    with pytest.raises(ValueError, match="spatial scales"):
        roi_align_module.roi_align_into(out, out_rows, maps, rois, (3, 5), [1.0], 2, True, level=level)


@pytest.mark.parametrize("output_size", [7, 14])
def test_multiscale_inference_matches_training_path(output_size):
    g = torch.Generator().manual_seed(18)
    strides = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    cl = torch.channels_last
    feats = {k: torch.randn(2, 16, 256 // s, 320 // s, generator=g).contiguous(memory_format=cl)
             for k, s in strides.items()}
    boxes = []
    for _ in range(2):
        xy = torch.rand(60, 2, generator=g) * torch.tensor([320.0, 256.0])
        wh = torch.rand(60, 2, generator=g) ** 2 * 300 + 1
        boxes.append(torch.cat((xy, xy + wh), 1))
    pooler = MultiScaleRoIAlign(featmap_names=list(strides), strides=strides, output_size=output_size,
                                sampling_ratio=2)
    with torch.inference_mode():
        fast = pooler(feats, boxes)
    train = pooler({k: v.clone().requires_grad_(True) for k, v in feats.items()}, boxes)
    assert train.requires_grad and fast.shape == train.shape == (120, 16, output_size, output_size)
    torch.testing.assert_close(fast, train.detach(), rtol=1e-5, atol=1e-5)


def test_window_path_chunks(monkeypatch):
    # test_roi_align's chunk test now runs the fast path (its input needs no gradient): keep the
    # window path's one-RoI-per-chunk case covered here, forward and backward
    g = torch.Generator().manual_seed(19)
    inp = torch.randn(2, 3, 20, 24, generator=g, dtype=torch.float64)
    rois = _mixed_rois(12, 2, (20, 24), seed=20)
    grad_out = torch.randn(12, 3, 3, 3, generator=g, dtype=torch.float64)
    results = []
    for budget in (roi_align_module._CHUNK_ELEMENTS, 1):
        monkeypatch.setattr(roi_align_module, "_CHUNK_ELEMENTS", budget)
        x = inp.clone().requires_grad_(True)
        out = roi_align(x, rois, 3, 1.0, 2, True)
        out.backward(grad_out)
        results.append((out.detach(), x.grad))
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=1e-12)
    ref = roi_align_loop(inp, rois, (3, 3), 1.0, 2, True)
    torch.testing.assert_close(results[0][0], ref, rtol=0, atol=1e-10)
