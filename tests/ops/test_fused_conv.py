"""conv + residual (+ ReLU) fused into oneDNN's convolution at CPU inference: same numbers as the
plain computation, and the plain path wherever fusing is not safe."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.layers import ConvNorm
from maskrcnn.ops import fused_conv
from maskrcnn.ops.fused_conv import conv_add, fused_conv_add_available

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
    fused_conv_add_available()  # its one-time self-test calls the kernel: not counted
    calls = []
    real = fused_conv._fused
    monkeypatch.setattr(fused_conv, "_fused", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 1), (1, 2)])
def test_fused_equals_plain(fused_calls, relu, kernel, stride):
    if not fused_conv_add_available():
        pytest.skip("this PyTorch build has no oneDNN fused convolution (the plain path is used)")
    conv, x, residual = _conv_and_inputs(kernel, stride)
    with torch.no_grad():
        ref = conv(x) + residual
        ref = F.relu(ref) if relu else ref
        out = conv_add(x, conv, residual, relu=relu)
    assert fused_calls == [1]
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_plain_path_where_fusing_is_not_safe(fused_calls):
    conv, x, residual = _conv_and_inputs()
    ref = F.relu(conv(x) + residual)
    # autograd needed: the plain path, with gradients
    out = conv_add(x, conv, residual, relu=True)
    out.sum().backward()
    assert conv.weight.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(conv_add(x.contiguous(), conv, residual, relu=True), ref)  # NCHW input
        torch.testing.assert_close(conv_add(x, conv, residual.double(), relu=True), ref.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            conv_add(x, conv, residual, relu=True)
    assert fused_calls == []


def test_convnorm_add_folds_and_checks_its_relu():
    torch.manual_seed(0)
    block = ConvNorm(16, 32, 1, norm="frozen_bn").eval()
    with torch.no_grad():
        block.norm.running_mean.uniform_(-1, 1)
        block.norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 16, 9, 9)
    residual = torch.randn(2, 32, 9, 9)
    with torch.no_grad():
        ref = F.relu(block(x) + residual)
        torch.testing.assert_close(block.add(x, residual, relu=True), ref)  # norm not folded yet
        block.fuse()
        block.to(memory_format=CL)
        out = block.add(x.contiguous(memory_format=CL), residual.contiguous(memory_format=CL), relu=True)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="ReLU"):
        ConvNorm(16, 32, 1, relu=True).add(x, residual, relu=True)
