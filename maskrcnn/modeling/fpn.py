"""Feature Pyramid Network: P2..P5 from res2..res5, plus P6 by max-pooling P5.

Shapes: N images; input ``res2..res5`` (N, C_k, H/2^k, W/2^k); output ``p2..p6`` (N, D, H/2^k, W/2^k)
with D = ``out_channels`` (256), P6 = max_pool(kernel 1, stride 2) of P5 (torchvision's
LastLevelMaxPool), so P6 is ceil(H/64) x ceil(W/64).

State-dict keys: ``lateral.{i}.{conv,norm}.*`` (1x1) and ``output.{i}.{conv,norm}.*`` (3x3),
i = 0..3 for res2..res5. With ``norm="bn"`` (torchvision v2) the convs have no bias.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.layers import ConvNorm


class FPN(nn.Module):
    def __init__(
        self, *, in_channels: dict, in_strides: dict, out_channels: int = 256, norm: str = "none",
        eps: float = 1e-5,
    ):
        super().__init__()
        self.in_features = list(in_channels)  # res2..res5, finest first
        self.lateral = nn.ModuleList(
            [ConvNorm(in_channels[n], out_channels, 1, norm=norm, eps=eps) for n in self.in_features]
        )
        self.output = nn.ModuleList(
            [ConvNorm(out_channels, out_channels, 3, norm=norm, eps=eps) for _ in self.in_features]
        )
        levels = [len(bin(in_strides[n])) - 3 for n in self.in_features]  # log2(stride)
        self.out_names = [f"p{k}" for k in levels] + [f"p{levels[-1] + 1}"]
        self.strides = {name: 2**int(name[1:]) for name in self.out_names}
        self.out_channels = out_channels
        # torchvision's FPN init (detectron2's c2_xavier_fill): kaiming_uniform with a=1, zero bias
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: dict) -> dict:
        xs = [features[n] for n in self.in_features]
        inner = self.lateral[-1](xs[-1])
        outs = [self.output[-1](inner)]
        for i in range(len(xs) - 2, -1, -1):
            # nearest upsampling to the lateral's exact size (odd sizes do not double exactly); a 1x1
            # stride-1 lateral keeps its input's size
            top_down = F.interpolate(inner, size=xs[i].shape[-2:], mode="nearest")
            inner = self.lateral[i].add(xs[i], top_down, relu=False)
            outs.insert(0, self.output[i](inner))
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return dict(zip(self.out_names, outs))
