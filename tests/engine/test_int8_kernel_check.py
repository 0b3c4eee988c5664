"""The INT8 transposed-convolution check (modeling.int8_kernel_check) and what convert_int8 does with it."""

import torch
from torch import nn

from maskrcnn.modeling import int8_kernel_check, quantize
from maskrcnn.modeling.int8_kernel_check import int8_transposed_conv_works


def test_check_does_not_touch_the_global_rng():
    layer = nn.ConvTranspose2d(8, 8, 2, stride=2)  # (its own init draws from the RNG)
    int8_kernel_check._error.cache_clear()
    state = torch.get_rng_state()
    int8_transposed_conv_works(layer)
    assert torch.equal(state, torch.get_rng_state())


def test_kernel_three_transposed_conv_works_everywhere():
    # kernel 3 / stride 1 is computed correctly by every x86 engine measured (AVX2 and AVX-512): a
    # check that failed here would send every mask head to float32 for nothing
    assert int8_transposed_conv_works(nn.ConvTranspose2d(8, 8, 3, stride=1))


def test_the_check_catches_a_wrong_kernel(monkeypatch):
    from torch.ao.nn.quantized import ConvTranspose2d as QConvT

    real = QConvT.forward
    monkeypatch.setattr(QConvT, "forward", lambda self, x: real(self, x) * 3.0)  # off by its own size
    int8_kernel_check._error.cache_clear()
    try:
        assert not int8_transposed_conv_works(nn.ConvTranspose2d(8, 8, 3, stride=1))
    finally:
        int8_kernel_check._error.cache_clear()


class MaskHeadLike(nn.Module):
    """A mask head as quantize.prepare_int8 sees it (MaskHead's names): 3x3 conv, 2x2 stride-2 deconv, 1x1."""

    def __init__(self, channels=16):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.convs = nn.ModuleList([nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())])
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.predictor = nn.Conv2d(channels, 3, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, x):
        for c in self.convs:
            x = c(x)
        return self.predictor(torch.relu(self.deconv(x)))


def mask_head_only_model(head: nn.Module, x: torch.Tensor) -> nn.Module:
    """A fake model whose only prepared part is ``head``, calibrated on ``x``, ready for convert_int8."""
    prepared = quantize._prepare(head, (x,), float_modules=quantize._MASK_FLOAT)
    with torch.no_grad():
        prepared(x)
    model = nn.Module()
    model.int8_parts, model.int8_converted = ["mask_head"], False
    model.roi_heads = nn.Module()
    model.roi_heads.mask_head = quantize.QuantizedMaskHead(prepared, class_agnostic=False)
    model.roi_heads.box_head = nn.Module()
    return model


def _convert_mask_head(monkeypatch, works: bool):
    """A fake model whose only prepared part is the mask head, converted with the check forced."""
    head = MaskHeadLike().eval()
    x = torch.randn(4, 16, 7, 7, generator=torch.Generator().manual_seed(4))
    model = mask_head_only_model(head, x)
    monkeypatch.setattr(quantize, "int8_transposed_conv_error", lambda layer: 0.01 if works else 1.4)
    quantize.convert_int8(model)
    with torch.no_grad():
        return model, head(x), model.roi_heads.mask_head(x)


def test_convert_keeps_a_wrong_transposed_conv_in_float32(monkeypatch):
    model, ref, out = _convert_mask_head(monkeypatch, works=False)
    assert model.int8_float_layers == ["mask_head.deconv"]
    kinds = {type(m) for m in model.roi_heads.mask_head.modules()}
    assert nn.ConvTranspose2d in kinds  # the float layer itself
    err = (out - ref).norm() / (ref - ref.mean(0)).norm()
    assert err < 0.25, float(err)  # the int8 convs around it, within int8's rounding


def test_convert_quantizes_a_transposed_conv_that_works(monkeypatch):
    model, _, _ = _convert_mask_head(monkeypatch, works=True)
    assert model.int8_float_layers == []
    assert nn.ConvTranspose2d not in {type(m) for m in model.roi_heads.mask_head.modules()}
