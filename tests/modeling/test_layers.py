"""FrozenBatchNorm2d, ConvNorm (folded by modeling.fuse, the one folder) and get_norm."""

import pytest
import torch
from torch import nn

from maskrcnn.modeling.fuse import _fold_children, norm_affine
from maskrcnn.modeling.layers import ConvNorm, FrozenBatchNorm2d, get_norm


def _stats(bn, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    bn.weight.data = torch.rand(c, generator=g) + 0.5
    bn.bias.data = torch.randn(c, generator=g)
    bn.running_mean.data = torch.randn(c, generator=g)
    bn.running_var.data = torch.rand(c, generator=g) + 0.1


def test_frozen_bn_matches_eval_batchnorm_and_formula():
    x = torch.randn(2, 5, 4, 3)
    ref = nn.BatchNorm2d(5, eps=1e-5).eval()
    _stats(ref, 5)
    frozen = FrozenBatchNorm2d(5, eps=1e-5)
    frozen.load_state_dict(ref.state_dict())  # num_batches_tracked is dropped, not an error
    torch.testing.assert_close(frozen(x), ref(x), rtol=1e-6, atol=1e-6)
    frozen0 = FrozenBatchNorm2d(5, eps=0.0)
    frozen0.load_state_dict(ref.state_dict())
    expected = (x - ref.running_mean.view(1, -1, 1, 1)) / ref.running_var.sqrt().view(1, -1, 1, 1)
    expected = expected * ref.weight.view(1, -1, 1, 1) + ref.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(frozen0(x), expected.detach(), rtol=1e-5, atol=1e-6)
    assert set(frozen.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    assert not list(frozen.parameters())


@pytest.mark.parametrize("norm", ["frozen_bn", "bn", "none"])
def test_convnorm_folds_and_keeps_outputs(norm):
    torch.manual_seed(0)
    block = ConvNorm(4, 6, 3, stride=2, norm=norm, relu=True)
    if norm != "none":
        _stats(block.norm, 6)
        assert "conv.bias" not in block.state_dict()
        assert "norm.running_var" in block.state_dict()
    else:
        assert "conv.bias" in block.state_dict()
    block.eval()
    x = torch.randn(2, 4, 9, 7)
    before = block(x)
    assert _fold_children(block) == (0 if norm == "none" else 1)
    assert isinstance(block.norm, nn.Identity)
    assert set(block.state_dict()) == {"conv.weight", "conv.bias"}
    torch.testing.assert_close(block(x), before, rtol=1e-5, atol=1e-5)


def test_fold_refuses_training_batchnorm():
    block = ConvNorm(2, 2, 1, norm="bn").train()
    assert _fold_children(block) == 0 and isinstance(block.norm, nn.BatchNorm2d)
    with pytest.raises(ValueError, match="training-mode"):
        norm_affine(block.norm)


def test_get_norm():
    assert get_norm("none", 4) is None
    assert isinstance(get_norm("frozen_bn", 4, 0.0), FrozenBatchNorm2d)
    assert get_norm("frozen_bn", 4, 0.0).eps == 0.0
    assert isinstance(get_norm("bn", 4), nn.BatchNorm2d)
    assert isinstance(get_norm("gn", 64), nn.GroupNorm)
    with pytest.raises(ValueError, match="unknown norm 'batch'"):
        get_norm("batch", 4)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_training_conv_with_frozen_norm_equals_the_norm_after_the_conv(relu, bias):
    """Under autograd a frozen norm is folded into the kernel on the fly, in training mode and in the
    eval mode of a training model's frozen stages alike: the same output, and the same gradients for
    the kernel, its bias and the input, as the norm applied after the convolution. Without autograd
    the layer runs as built."""
    from maskrcnn.modeling.layers import ConvNorm

    g = torch.Generator().manual_seed(0)
    layer = ConvNorm(3, 5, 3, stride=2, norm="frozen_bn", relu=relu, bias=bias).double().train()
    for name in ("weight", "bias", "running_mean"):
        getattr(layer.norm, name).copy_(torch.randn(5, generator=g, dtype=torch.float64))
    layer.norm.running_var.copy_(torch.rand(5, generator=g, dtype=torch.float64) + 0.5)
    x = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 5, 5, 6, generator=g, dtype=torch.float64)
    results, norm_calls = [], []
    layer.norm.register_forward_hook(lambda *_: norm_calls.append("norm"))

    def separate(x):  # the norm after the convolution, as written
        out = layer.norm(layer.conv(x))
        return torch.relu(out) if relu else out

    for mode, forward in (("train", layer), ("eval", layer), ("separate", separate)):
        layer.train(mode == "train")
        out = forward(x)
        out.backward(grad)
        params = [p.grad.clone() for p in layer.conv.parameters()]
        results.append((out.detach(), x.grad.clone(), params))
        x.grad = None
        layer.zero_grad()
    assert norm_calls == ["norm"]  # only the written-out reference ran the norm module: it was folded
    (out_s, gx_s, gp_s) = results[-1]
    for out_f, gx_f, gp_f in results[:2]:
        torch.testing.assert_close(out_f, out_s, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gx_f, gx_s, rtol=1e-12, atol=1e-12)
        assert len(gp_f) == (2 if bias else 1)
        for a, b in zip(gp_f, gp_s):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        layer.eval()(x)
    assert norm_calls == ["norm", "norm"]  # inference without autograd: the model as built
    assert all(not p.requires_grad for p in layer.norm.buffers())  # the norm stays frozen
