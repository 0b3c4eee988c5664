"""RoIAlign's autograd (window) path: RoIs grouped by window shape and chunked on padded size."""

import importlib

import pytest
import torch

from maskrcnn.ops import roi_align
from maskrcnn.ops._reference import roi_align_loop
from maskrcnn.ops.sampling import RoIAlignPlan, _window_chunks

pytestmark = pytest.mark.usefixtures("single_thread")

roi_align_module = importlib.import_module("maskrcnn.ops.roi_align")


def _aspect_rois(n, num_images, extent_hw, seed):
    """(n, 5) RoIs of similar areas but aspect ratios from 1:6 to 6:1, a few partly outside the map."""
    g = torch.Generator().manual_seed(seed)
    h, w = extent_hw
    area = (torch.rand(n, generator=g, dtype=torch.float64) * 0.3 + 0.05) * h * w
    ratio = torch.exp((torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 1.8)  # width / height
    bw, bh = (area * ratio).sqrt(), (area / ratio).sqrt()
    cx = torch.rand(n, generator=g, dtype=torch.float64) * w * 1.2 - 0.1 * w
    cy = torch.rand(n, generator=g, dtype=torch.float64) * h * 1.2 - 0.1 * h
    batch = torch.randint(0, num_images, (n, 1), generator=g).to(torch.float64)
    return torch.cat((batch, torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), 1)), 1)


def _train_path(inp, rois, grad_out, *args):
    """Output and input gradient of the autograd path."""
    x = inp.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    out = roi_align(x, rois, *args)
    out.backward(grad_out)
    return out.detach(), x.grad


def _plan(rois, extent_hw, output_size, sampling_ratio, aligned, channels):
    plan = RoIAlignPlan(rois, *extent_hw, output_size, 1.0, sampling_ratio, aligned, torch.float64)
    plan.plan_windows(channels, budget=roi_align_module._CHUNK_ELEMENTS, waste=roi_align_module._CHUNK_WASTE)
    return plan


@pytest.mark.parametrize("budget", [None, 1, 5000])
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_and_gradient_match_loop_reference(monkeypatch, budget, channels_last):
    g = torch.Generator().manual_seed(31)
    inp = torch.randn(3, 4, 24, 30, generator=g, dtype=torch.float64)
    if channels_last:
        inp = inp.contiguous(memory_format=torch.channels_last)
    rois = _aspect_rois(40, 3, (24, 30), seed=32)
    grad_out = torch.randn(40, 4, 3, 4, generator=g, dtype=torch.float64)
    if budget is not None:  # 1: one RoI per chunk; 5000: a few RoIs per chunk
        monkeypatch.setattr(roi_align_module, "_CHUNK_ELEMENTS", budget)
    out, grad = _train_path(inp, rois, grad_out, (3, 4), 1.0, 2, True)
    x = inp.detach().clone().requires_grad_(True)
    ref = roi_align_loop(x, rois, (3, 4), 1.0, 2, True)
    ref.backward(grad_out)
    torch.testing.assert_close(out, ref.detach(), rtol=0, atol=1e-10)
    torch.testing.assert_close(grad, x.grad, rtol=0, atol=1e-10)
    assert grad.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("waste", [1.0, 1.25, 100.0])
def test_chunking_does_not_change_results(monkeypatch, waste):
    # waste 1.0 cuts at every change of window shape, 100 only on the element budget
    g = torch.Generator().manual_seed(33)
    inp = torch.randn(2, 3, 20, 26, generator=g, dtype=torch.float64)
    rois = _aspect_rois(30, 2, (20, 26), seed=34)
    grad_out = torch.randn(30, 3, 5, 5, generator=g, dtype=torch.float64)
    ref = _train_path(inp, rois, grad_out, 5, 0.5, 0, False)
    monkeypatch.setattr(roi_align_module, "_CHUNK_WASTE", waste)
    monkeypatch.setattr(roi_align_module, "_CHUNK_ELEMENTS", 3 * 200)
    torch.testing.assert_close(_train_path(inp, rois, grad_out, 5, 0.5, 0, False), ref, rtol=0, atol=1e-12)


def test_low_precision_inputs_follow_float32():
    g = torch.Generator().manual_seed(35)
    inp = torch.randn(2, 8, 16, 20, generator=g)
    rois = _aspect_rois(25, 2, (16, 20), seed=36).to(torch.float32)
    grad_out = torch.randn(25, 8, 7, 7, generator=g)
    out32, grad32 = _train_path(inp, rois, grad_out, 7, 1.0, 2, True)
    for dt in (torch.bfloat16, torch.float16):
        out, grad = _train_path(inp.to(dt), rois, grad_out.to(dt), 7, 1.0, 2, True)
        assert out.dtype == grad.dtype == dt
        torch.testing.assert_close(out.float(), out32, rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(grad.float(), grad32, rtol=2e-2, atol=3e-2)


def test_window_chunks_cover_rois_in_order_within_budget_and_waste():
    ly = [3, 3, 4, 9, 9, 9, 10, 40, 1, 2]
    lx = [5, 6, 6, 2, 2, 3, 3, 40, 1, 7]
    chunks = _window_chunks(ly, lx, 2, 200, 1.5)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(ly)
    for (_, end, _, _), (begin, _, _, _) in zip(chunks, chunks[1:]):
        assert end == begin  # consecutive, nothing skipped
    for begin, end, my, mx in chunks:
        assert end > begin
        assert my == max(ly[begin:end]) and mx == max(lx[begin:end])
        padded = (end - begin) * my * mx
        if end - begin > 1:  # a RoI over the budget alone gets a chunk of its own
            assert padded * 2 <= 200
            assert padded <= 1.5 * sum(y * x for y, x in zip(ly[begin:end], lx[begin:end]))
    assert (7, 8, 40, 40) in chunks
    assert _window_chunks([], [], 4, 100, 1.25) == []


def test_window_chunks_pad_empty_windows_to_one():
    assert _window_chunks([0, 0], [0, 0], 1, 100, 1.25) == [(0, 2, 1, 1)]


def test_mixed_aspect_ratios_pad_little():
    # tall and wide windows of equal area: sorted by area they would share chunks padded to squares
    rois = _aspect_rois(200, 2, (60, 80), seed=37)
    plan = _plan(rois, (60, 80), (7, 7), 2, True, channels=8)
    order = plan.order
    assert torch.equal(order.sort().values, torch.arange(200))
    real = (plan.y.length * plan.x.length).sum().item()
    padded = sum((e - b) * ly * lx for b, e, ly, lx in plan.chunks)
    assert padded <= roi_align_module._CHUNK_WASTE * real
    lengths_y, lengths_x = plan.y.length[order], plan.x.length[order]
    for b, e, ly, lx in plan.chunks:
        assert ly == int(lengths_y[b:e].max()) and lx == int(lengths_x[b:e].max())
