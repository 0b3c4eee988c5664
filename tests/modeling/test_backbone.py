"""ResNet / ResNeXt bodies and the FPN: shapes, strides, parameter counts, freezing."""

import pytest
import torch

from maskrcnn.modeling.backbone import ResNet, make_stage
from maskrcnn.modeling.fpn import FPN

# torchvision's parameter counts minus the classifier (fc): the architectures must be the same nets
BODY_PARAMS = {"resnet18": 11_689_512 - 513_000, "resnet50": 25_557_032 - 2_049_000,
               "resnext50_32x4d": 25_028_904 - 2_049_000, "resnet101": 44_549_160 - 2_049_000}


@pytest.mark.parametrize("arch", sorted(BODY_PARAMS))
def test_parameter_counts_match_torchvision(arch):
    net = ResNet(arch=arch, norm="bn", freeze_at=0)
    assert sum(p.numel() for p in net.parameters()) == BODY_PARAMS[arch]


def test_features_strides_and_channels():
    net = ResNet(arch="resnet18", norm="frozen_bn", freeze_at=0).eval()
    feats = net(torch.randn(1, 3, 64, 96))
    assert net.strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    for name, f in feats.items():
        s = net.strides[name]
        assert tuple(f.shape) == (1, net.out_channels[name], 64 // s, 96 // s)
    fpn = FPN(in_channels=net.out_channels, in_strides=net.strides, out_channels=16)
    out = fpn(feats)
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert fpn.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert tuple(out["p6"].shape) == (1, 16, 1, 2)
    # P6 is a stride-2 subsample of P5 (max pool with kernel 1)
    torch.testing.assert_close(out["p6"], out["p5"][:, :, ::2, ::2])


def test_fpn_odd_sizes_upsample_to_lateral():
    fpn = FPN(in_channels={"res4": 8, "res5": 8}, in_strides={"res4": 16, "res5": 32}, out_channels=4)
    out = fpn({"res4": torch.randn(1, 8, 5, 7), "res5": torch.randn(1, 8, 3, 4)})
    assert tuple(out["p4"].shape[-2:]) == (5, 7) and tuple(out["p6"].shape[-2:]) == (2, 2)


def test_freeze_at():
    net = ResNet(arch="resnet18", norm="bn", freeze_at=2)
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.res2.parameters())
    assert all(p.requires_grad for p in net.res3.parameters())
    net.train()
    assert not net.res2[0].conv1.norm.training  # frozen stage keeps its statistics
    assert net.res3[0].conv1.norm.training


def test_stride_position_and_c4_stage():
    tv_style = make_stage(arch="resnet50", stage=3, norm="none", eps=1e-5)
    msra = make_stage(arch="resnet50", stage=3, norm="none", eps=1e-5, stride_in_1x1=True)
    assert tv_style[0].conv2.conv.stride == (2, 2) and tv_style[0].conv1.conv.stride == (1, 1)
    assert msra[0].conv1.conv.stride == (2, 2) and msra[0].conv2.conv.stride == (1, 1)
    c4 = ResNet(arch="resnet18", num_stages=3, freeze_at=0)
    assert c4.stage_names == ["res2", "res3", "res4"]
    res5 = make_stage(arch="resnet18", stage=5, norm="frozen_bn", eps=1e-5)
    assert tuple(res5(torch.randn(2, 256, 14, 14)).shape) == (2, 512, 7, 7)
