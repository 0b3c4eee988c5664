"""conv + residual (+ ReLU) fused into oneDNN's convolution at CPU inference (``ConvAdd``): same numbers
as the plain computation, the plain path wherever fusing is not safe, and no process-wide state."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.fuse import optimise_for_inference
from maskrcnn.modeling.layers import ConvNorm
from maskrcnn.ops import fused_conv
from maskrcnn.ops.fused_conv import ConvAdd, fused_kernel_works

CL = torch.channels_last


def _conv_and_inputs(kernel=1, stride=1, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(16, 32, kernel, stride=stride, padding=kernel // 2).to(memory_format=CL)
    x = torch.randn(2, 16, 13, 10).contiguous(memory_format=CL)
    out_hw = conv(x).shape[-2:]
    residual = torch.randn(2, 32, *out_hw).contiguous(memory_format=CL)
    return conv, x, residual


@pytest.fixture
def fused_calls(monkeypatch):
    calls = []
    real = fused_conv._fused
    monkeypatch.setattr(fused_conv, "_fused", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.fixture(scope="module")
def kernel_works():
    return fused_kernel_works()


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 1), (1, 2)])
def test_fused_equals_plain(kernel_works, fused_calls, relu, kernel, stride):
    if not kernel_works:
        pytest.skip("this PyTorch build has no oneDNN fused convolution (the plain path is used)")
    conv, x, residual = _conv_and_inputs(kernel, stride)
    with torch.no_grad():
        ref = conv(x) + residual
        ref = F.relu(ref) if relu else ref
        out = ConvAdd(conv, fused=True).add(x, residual, relu=relu)
    assert fused_calls == [1]
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_plain_path_where_fusing_is_not_safe(fused_calls):
    conv, x, residual = _conv_and_inputs()
    ref = F.relu(conv(x) + residual)
    module = ConvAdd(conv, fused=True)
    # autograd needed: the plain path, with gradients
    out = module.add(x, residual, relu=True)
    out.sum().backward()
    assert conv.weight.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(module.add(x.contiguous(), residual, relu=True), ref)  # NCHW input
        torch.testing.assert_close(module.add(x, residual.double(), relu=True), ref.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            module.add(x, residual, relu=True)
        # the self-test's verdict is the module's: without it, never the kernel
        torch.testing.assert_close(ConvAdd(conv, fused=False).add(x, residual, relu=True), ref)
        torch.testing.assert_close(module(x), conv(x))
    assert fused_calls == []
    with pytest.raises(ValueError, match="plain zero-padded Conv2d"):
        ConvAdd(nn.Conv2d(2, 2, 3, padding="same"), fused=True)


def test_convnorm_add_is_plain_pytorch_until_optimised(kernel_works, fused_calls):
    torch.manual_seed(0)
    block = ConvNorm(16, 32, 1, norm="frozen_bn").eval()
    with torch.no_grad():
        block.norm.running_mean.uniform_(-1, 1)
        block.norm.weight.uniform_(0.5, 1.5)
    holder = nn.Sequential(block)
    x = torch.randn(2, 16, 9, 9).contiguous(memory_format=CL)
    residual = torch.randn(2, 32, 9, 9).contiguous(memory_format=CL)
    with torch.no_grad():
        ref = F.relu(block(x) + residual)
        torch.testing.assert_close(block.add(x, residual, relu=True), ref)
        assert fused_calls == []  # the model as built never calls the internal kernel
        optimise_for_inference(holder)
        fused_calls.clear()  # the self-test's own calls
        swapped = holder[0]
        assert isinstance(swapped, ConvAdd) == kernel_works and holder.fused_adds == int(kernel_works)
        out = swapped.add(x, residual, relu=True)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert fused_calls == ([1] if kernel_works else [])
    with pytest.raises(ValueError, match="ReLU"):
        ConvNorm(16, 32, 1, relu=True).add(x, residual, relu=True)


def test_optimise_keeps_plain_additions_where_asked_and_leaves_global_state():
    torch.manual_seed(0)
    holder = nn.Sequential(ConvNorm(16, 32, 1, norm="frozen_bn")).eval()
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    fused_kernel_works()
    assert torch.equal(torch.get_rng_state(), rng)  # the self-test draws from its own generator
    optimise_for_inference(holder, fused_add=False)
    assert isinstance(holder[0], ConvNorm) and holder.fused_adds == 0
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)


def test_the_kernels_verdict_does_not_follow_a_float64_default_dtype():
    # A caller's float64 default made the self-test's tensors float64, which the kernel refuses: a
    # predictor optimised under it took the plain additions and other float rounding than one optimised
    # under float32 (scores 3e-8 apart on an AMD EPYC), though both models are float32.
    verdict = fused_kernel_works()
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        under_float64 = fused_kernel_works()
    finally:
        torch.set_default_dtype(before)
    assert under_float64 == verdict


def test_a_swapped_in_convadd_keeps_the_mode_of_what_it_replaces():
    holder = nn.Sequential(ConvNorm(16, 32, 1, norm="frozen_bn")).eval()
    optimise_for_inference(holder, fused_add=True)
    assert all(not m.training for m in holder.modules())
