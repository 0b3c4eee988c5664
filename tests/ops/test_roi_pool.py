"""RoIPool: torchvision golden outputs and gradients, a loop reference, gradcheck, ties, degenerate boxes."""

import math
from pathlib import Path

import pytest
import torch

from maskrcnn.ops import roi_pool
from maskrcnn.ops._reference import roi_pool_loop

pytestmark = pytest.mark.usefixtures("single_thread")

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "ops.pt"


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


def test_golden_outputs_and_input_gradients(golden):
    assert len(golden["roi_pool"]) == 2
    for case in golden["roi_pool"]:
        inp = golden["input"].clone().requires_grad_(True)
        rois = golden["rois"].clone()
        rois[:, 1:] *= case["rois_scaled_by"]
        out = roi_pool(inp, rois, case["output_size"], case["spatial_scale"])
        torch.testing.assert_close(out, case["output"], rtol=0, atol=1e-10)
        out.backward(case["grad_output"])
        torch.testing.assert_close(inp.grad, case["grad_input"], rtol=0, atol=1e-10)


def test_matches_loop_reference_with_half_pixel_corners():
    g = torch.Generator().manual_seed(1)
    inp = torch.randn(2, 3, 11, 13, generator=g, dtype=torch.float64)
    xy = torch.rand(14, 2, generator=g, dtype=torch.float64) * 28 - 2
    wh = torch.rand(14, 2, generator=g, dtype=torch.float64) * 20
    rois = torch.cat((torch.randint(0, 2, (14, 1), generator=g).double(), xy, xy + wh), 1)
    rois[:3, 1:] = torch.tensor([[1.0, 3.0, 9.0, 13.0], [5.0, 7.0, 5.0, 7.0], [-3.0, -1.0, 23.0, 5.0]],
                                dtype=torch.float64)  # x 0.5, 1.5, 2.5 ... round half away from zero
    for size in ((3, 4), (7, 7)):
        torch.testing.assert_close(roi_pool(inp, rois, size, 0.5), roi_pool_loop(inp, rois, size, 0.5),
                                   rtol=0, atol=0)


def test_gradcheck():
    g = torch.Generator().manual_seed(2)
    inp = torch.randn(2, 2, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)  # no ties
    rois = torch.tensor([[0, 0.3, 0.7, 5.2, 4.9], [1, -1.5, 1.2, 3.3, 6.0], [1, 2.0, 0.1, 6.9, 2.2]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: roi_pool(x, rois, (2, 3), 1.0), (inp,), eps=1e-6, atol=1e-8)


def test_ties_go_to_first_maximum_in_row_major_order():
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 1, 0] = 1.0
    x[0, 0, 0, 1] = 1.0  # same value, earlier in row-major order
    x.requires_grad_(True)
    out = roi_pool(x, torch.tensor([[0, 0.0, 0.0, 5.0, 5.0]]), 1)
    out.backward()
    assert out.item() == 1.0
    assert x.grad[0, 0, 0, 1] == 1.0 and x.grad.sum() == 1.0
    # an all-zero (e.g. post-ReLU) bin routes its gradient to the bin's first element
    z = torch.zeros(1, 2, 6, 6, requires_grad=True)
    roi_pool(z, torch.tensor([[0, 0.0, 0.0, 5.0, 5.0]]), 2).sum().backward()
    expected = torch.zeros(6, 6)
    expected[0::3, 0::3] = 1.0
    assert torch.equal(z.grad[0, 1], expected)


def test_degenerate_boxes_and_empty_input():
    g = torch.Generator().manual_seed(3)
    inp = torch.randn(1, 2, 8, 10, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 3.0, 3.0, 3.0, 3.0], [0, 6.0, 5.0, 2.0, 1.0], [0, 30.0, 30.0, 40.0, 35.0],
                         [0, float("nan"), 0.0, 4.0, 4.0], [0, -1e12, -1e12, 1e12, 1e12]],
                        dtype=torch.float64)
    out = roi_pool(inp, rois, (2, 3), 1.0)
    torch.testing.assert_close(out[:3], roi_pool_loop(inp, rois[:3], (2, 3), 1.0), rtol=0, atol=0)
    assert out[2:4].abs().sum() == 0  # outside the map and non-finite pool zeros
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(inp.grad).all()
    assert roi_pool(inp, torch.zeros(0, 5), 3).shape == (0, 2, 3, 3)
    with pytest.raises(ValueError, match="batch indices"):
        roi_pool(inp, torch.tensor([[1.0, 0, 0, 1, 1]]), 2)


def test_low_precision_and_channels_last():
    g = torch.Generator().manual_seed(4)
    inp = torch.randn(1, 4, 12, 12, generator=g)
    rois = torch.tensor([[0, 1.0, 1.5, 9.0, 10.0], [0, 4.0, 0.0, 11.0, 6.0]])
    ref = roi_pool(inp, rois, 3)
    out = roi_pool(inp.bfloat16(), rois, 3)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.01, atol=0.01)
    cl = inp.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(roi_pool(cl, rois, 3), ref, rtol=0, atol=0)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(5)
    inp = torch.randn(2, 8, 20, 30, generator=g)
    rois = torch.tensor([[0, 1.0, 1.5, 19.0, 10.0], [1, 4.0, 0.0, 29.0, 16.0], [1, -3.0, 2.0, 8.0, 30.0]])
    cpu_in, gpu_in = inp.clone().requires_grad_(True), inp.cuda().requires_grad_(True)
    cpu, gpu = roi_pool(cpu_in, rois, 7), roi_pool(gpu_in, rois.cuda(), 7)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)
    cpu.sum().backward()
    gpu.sum().backward()
    torch.testing.assert_close(gpu_in.grad.cpu(), cpu_in.grad)


def test_nan_and_minus_infinity_follow_torchvision():
    """torchvision starts each bin at -FLT_MAX and takes a value only where it is greater: NaN and -inf
    are never taken (values recorded from torchvision 0.28's CPU kernel on this input)."""
    x = torch.zeros(1, 1, 2, 3)
    x[0, 0, 0] = torch.tensor([float("nan"), 2.0, 1.0])
    x[0, 0, 1] = float("-inf")
    x.requires_grad_(True)
    rois = torch.tensor([[0, 0.0, 0.0, 2.0, 0.0], [0, 0.0, 1.0, 2.0, 1.0], [0, 0.0, 0.0, 0.0, 0.0]])
    out = roi_pool(x, rois, 1)
    lowest = -torch.finfo(torch.float32).max
    assert out.flatten().tolist() == [2.0, lowest, lowest]
    out.sum().backward()
    expected = torch.zeros(1, 1, 2, 3)
    expected[0, 0, 0, 1] = 1.0  # only the 2 routes a gradient
    assert torch.equal(x.grad, expected)


def test_many_ties_on_relu_features_match_the_loop_reference_and_route_to_first_maximum():
    """Post-ReLU maps are mostly zeros, so most bins tie; every bin's gradient goes to its first
    maximum in row-major order (checked against a per-bin search), values equal the loop reference."""
    g = torch.Generator().manual_seed(4)
    inp = torch.randn(2, 5, 13, 17, generator=g).clamp(min=0).round()  # zeros and small integers
    xy = torch.rand(24, 2, generator=g) * 16 - 2
    rois = torch.cat((torch.randint(0, 2, (24, 1), generator=g).float(), xy,
                      xy + torch.rand(24, 2, generator=g) * 14), 1)
    x = inp.clone().requires_grad_(True)
    out = roi_pool(x, rois, (3, 4), 1.0)
    torch.testing.assert_close(out, roi_pool_loop(inp, rois, (3, 4), 1.0), rtol=0, atol=0)
    grad = torch.randn(out.shape, generator=g)
    out.backward(grad)
    expected = torch.zeros_like(inp)
    for r, roi in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1) for v in roi[1:])
        rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        for p in range(3):
            hs = min(max(math.floor(p * rh / 3) + y1, 0), 13)
            he = min(max(math.ceil((p + 1) * rh / 3) + y1, 0), 13)
            for q in range(4):
                ws = min(max(math.floor(q * rw / 4) + x1, 0), 17)
                we = min(max(math.ceil((q + 1) * rw / 4) + x1, 0), 17)
                if he <= hs or we <= ws:
                    continue
                for ch in range(5):
                    window = inp[int(roi[0]), ch, hs:he, ws:we]
                    first = int(torch.nonzero(window.flatten() == window.max())[0])  # row-major first
                    row, col = hs + first // (we - ws), ws + first % (we - ws)
                    expected[int(roi[0]), ch, row, col] += grad[r, ch, p, q]
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-6)


def test_without_autograd_the_same_output():
    """No gradient recorded (inference): the maxima alone, without their positions; same values."""
    g = torch.Generator().manual_seed(5)
    inp = torch.randn(2, 4, 12, 15, generator=g).clamp(min=0)
    rois = torch.tensor([[0, 1.0, 2.0, 11.0, 9.0], [1, -3.0, 0.0, 6.0, 20.0], [1, 4.0, 4.0, 4.0, 4.0]])
    recorded = roi_pool(inp.clone().requires_grad_(True), rois, (3, 3), 1.0)
    assert recorded.grad_fn is not None
    with torch.no_grad():
        plain = roi_pool(inp.clone().requires_grad_(True), rois, (3, 3), 1.0)
    with torch.inference_mode():
        inference = roi_pool(inp, rois, (3, 3), 1.0)
    assert torch.equal(plain, recorded.detach()) and torch.equal(inference, recorded.detach())
