"""RoIAlign: torchvision golden outputs and gradients, a loop reference, gradcheck, degenerate boxes."""

import importlib
from pathlib import Path

import pytest
import torch

from maskrcnn.ops import roi_align
from maskrcnn.ops._reference import roi_align_loop

pytestmark = pytest.mark.usefixtures("single_thread")

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "ops.pt"
roi_align_module = importlib.import_module("maskrcnn.ops.roi_align")


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


def _case_id(c):
    return (f"aligned={c['aligned']}-scale={c['spatial_scale']}-out={c['output_size']}"
            f"-sr={c['sampling_ratio']}")


def test_golden_outputs_and_input_gradients(golden):
    assert len(golden["roi_align"]) == 36
    for case in golden["roi_align"]:
        inp = golden["input"].clone().requires_grad_(True)
        rois = golden["rois"].clone()
        rois[:, 1:] *= case["rois_scaled_by"]
        out = roi_align(inp, rois, case["output_size"], case["spatial_scale"], case["sampling_ratio"],
                        case["aligned"])
        torch.testing.assert_close(out, case["output"], rtol=0, atol=1e-10, msg=_case_id(case))
        out.backward(case["grad_output"])
        torch.testing.assert_close(inp.grad, case["grad_input"], rtol=0, atol=1e-10, msg=_case_id(case))


def _random_rois(n, num_images, extent_hw, seed):
    g = torch.Generator().manual_seed(seed)
    h, w = extent_hw
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([w + 4.0, h + 4.0]) - 2
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([w * 0.8, h * 0.8])
    idx = torch.randint(0, num_images, (n, 1), generator=g).double()
    return torch.cat((idx, xy, xy + wh), 1)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_matches_loop_reference(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(1)
    inp = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    rois = _random_rois(12, 2, (18, 22), seed=2)  # image coordinates, spatial_scale 0.5
    out = roi_align(inp, rois, (3, 4), 0.5, sampling_ratio, aligned)
    ref = roi_align_loop(inp, rois, (3, 4), 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_large_boxes_tap_mode_and_chunks_match_reference(monkeypatch):
    g = torch.Generator().manual_seed(3)
    inp = torch.randn(1, 2, 20, 24, generator=g, dtype=torch.float64)
    rois = torch.tensor([[0, -30.0, -20.0, 70.0, 45.0],  # adaptive: 50 x 33 samples per bin
                         [0, 0.0, 0.0, 23.0, 19.0],  # sampling 1: 2 taps per bin, far apart
                         [0, 2.5, 3.5, 9.0, 18.0]], dtype=torch.float64)
    for sr in (0, 1):
        ref = roi_align_loop(inp, rois, (2, 2), 1.0, sr, False)
        torch.testing.assert_close(roi_align(inp, rois, (2, 2), 1.0, sr, False), ref, rtol=0, atol=1e-12)
    # one RoI per chunk gives the same answer as one chunk
    ref = roi_align(inp, rois, 3, 1.0, 2, True)
    monkeypatch.setattr(roi_align_module, "_CHUNK_ELEMENTS", 1)
    torch.testing.assert_close(roi_align(inp, rois, 3, 1.0, 2, True), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("aligned,sampling_ratio", [(False, 0), (False, 2), (True, 0), (True, 1)])
def test_gradcheck(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(4)
    inp = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.7, 4.2, 3.9], [1, -1.5, 1.2, 3.3, 6.0], [1, 2.0, 0.1, 5.9, 2.2]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: roi_align(x, rois, (2, 3), 1.0, sampling_ratio, aligned), (inp,), eps=1e-6, atol=1e-8)


def test_degenerate_boxes_do_not_crash():
    g = torch.Generator().manual_seed(5)
    inp = torch.randn(1, 2, 8, 10, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 3.0, 3.0, 3.0, 3.0],  # empty
                         [0, 6.0, 5.0, 2.0, 1.0],  # inverted
                         [0, 30.0, 30.0, 40.0, 35.0],  # outside the map
                         [0, -9.0, -9.0, -1.5, -2.0]], dtype=torch.float64)  # outside, top-left
    for aligned in (False, True):
        for sr in (0, 2):
            # torchvision crashes on the inverted box with aligned=True, sampling 0, output (2, 3)
            out = roi_align(inp, rois, (2, 3), 1.0, sr, aligned)
            ref = roi_align_loop(inp, rois, (2, 3), 1.0, sr, aligned)
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
            out.sum().backward()
    assert out[2:].abs().sum() == 0  # outside the map pools zeros


def test_non_finite_and_huge_boxes():
    inp = torch.randn(1, 3, 16, 16, requires_grad=True)
    rois = torch.tensor([[0, float("nan"), 1.0, 5.0, 5.0], [0, 0.0, 0.0, float("inf"), 4.0],
                         [0, -1e9, -1e9, 1e9, 1e9], [0, 2.0, 2.0, 9.0, 9.0]])
    for sr in (0, 2):
        out = roi_align(inp, rois, 7, 1.0, sr, False)
        assert out.shape == (4, 3, 7, 7) and torch.isfinite(out).all()
        assert out[:2].abs().sum() == 0  # non-finite boxes pool to zero
        out.sum().backward()
        assert torch.isfinite(inp.grad).all()
        inp.grad = None
    # the valid box is unaffected by its neighbours
    torch.testing.assert_close(roi_align(inp, rois[3:], 7, 1.0, 2, False), out[3:])


def test_list_boxes_channels_last_empty_and_errors():
    g = torch.Generator().manual_seed(6)
    inp = torch.randn(2, 4, 10, 12, generator=g)
    boxes = [torch.tensor([[1.0, 1.0, 6.0, 7.0]]), torch.tensor([[0.0, 2.0, 9.0, 9.0], [3.0, 3.0, 4.0, 5.0]])]
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 7.0], [1, 0.0, 2.0, 9.0, 9.0], [1, 3.0, 3.0, 4.0, 5.0]])
    ref = roi_align(inp, rois, 5, 1.0, 2, True)
    torch.testing.assert_close(roi_align(inp, boxes, 5, 1.0, 2, True), ref, rtol=0, atol=0)
    cl = inp.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    dense = inp.clone().requires_grad_(True)
    torch.testing.assert_close(roi_align(cl, rois, 5, 1.0, 2, True), ref, rtol=1e-6, atol=1e-6)
    roi_align(cl, rois, 5, 1.0, 2, True).sum().backward()
    roi_align(dense, rois, 5, 1.0, 2, True).sum().backward()
    torch.testing.assert_close(cl.grad, dense.grad)
    empty = roi_align(dense, torch.zeros(0, 5), (2, 3))
    assert empty.shape == (0, 4, 2, 3)
    with pytest.raises(ValueError, match="batch indices"):
        roi_align(inp, torch.tensor([[2.0, 0, 0, 1, 1]]), 2)
    with pytest.raises(ValueError, match="Tensor\\[K, 5\\]"):
        roi_align(inp, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match="boxes\\[1\\]"):
        roi_align(inp, [torch.zeros(1, 4), torch.zeros(2, 5)], 2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_runs_in_float32(dtype):
    g = torch.Generator().manual_seed(7)
    inp = torch.randn(1, 8, 12, 12, generator=g)
    rois = torch.tensor([[0, 1.0, 1.5, 9.0, 10.0], [0, 4.0, 0.0, 11.0, 6.0]])
    ref = roi_align(inp, rois, 7, 1.0, 2, False)
    low = inp.to(dtype).requires_grad_(True)
    out = roi_align(low, rois, 7, 1.0, 2, False)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=0.02, atol=0.03)
    out.float().sum().backward()
    assert low.grad.dtype == dtype and torch.isfinite(low.grad.float()).all()


@pytest.mark.cuda
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(8)
    inp = torch.randn(2, 16, 30, 40, generator=g, dtype=torch.float64)
    rois = _random_rois(64, 2, (60, 80), seed=9)
    cpu_in = inp.clone().requires_grad_(True)
    gpu_in = inp.cuda().requires_grad_(True)
    for sr, aligned in ((0, True), (2, False)):
        cpu = roi_align(cpu_in, rois, 7, 0.5, sr, aligned)
        gpu = roi_align(gpu_in, rois.cuda(), 7, 0.5, sr, aligned)
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-10)
        cpu.sum().backward()
        gpu.sum().backward()
        torch.testing.assert_close(gpu_in.grad.cpu(), cpu_in.grad, rtol=0, atol=1e-10)


def test_autocast_does_not_lower_internal_precision():
    g = torch.Generator().manual_seed(10)
    inp = torch.randn(1, 8, 12, 12, generator=g)
    rois = torch.tensor([[0, 1.0, 1.5, 9.0, 10.0]])
    ref = roi_align(inp, rois, 7, 1.0, 2, False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = roi_align(inp, rois, 7, 1.0, 2, False)  # float32 in, float32 out, computed in float32
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
