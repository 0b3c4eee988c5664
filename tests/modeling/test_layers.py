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
