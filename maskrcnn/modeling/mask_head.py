"""Mask head (FCN on 14x14 RoI features) and mask post-processing.

Shapes: R RoIs, C channels, S x S pooled size (14), M = 2S mask resolution (28), K classes incl.
background, D detections.

Layers: ``num_convs`` 3x3 convs (ReLU; v2 with BatchNorm), a 2x2 stride-2 transposed conv (ReLU) to
M x M, and a 1x1 conv with one channel per class (the paper's per-class sigmoid masks), or a single
channel shared by all classes with ``class_agnostic`` (the paper's class-agnostic ablation: 29.7 vs 30.3
mask AP on ResNet-50-C4).
State-dict keys: ``convs.{i}.{conv,norm}.*``, ``deconv.{weight,bias}``, ``predictor.{weight,bias}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.layers import ConvNorm


class MaskHead(nn.Module):
    def __init__(
        self, *, in_channels: int, num_classes: int, num_convs: int = 4, conv_dim: int = 256,
        norm: str = "none", class_agnostic: bool = False,
    ):
        super().__init__()
        self.class_agnostic = bool(class_agnostic)
        self.convs = nn.ModuleList()
        channels = in_channels
        for _ in range(num_convs):
            self.convs.append(ConvNorm(channels, conv_dim, 3, norm=norm, relu=True))
            channels = conv_dim
        self.deconv = nn.ConvTranspose2d(channels, conv_dim, 2, stride=2)
        self.predictor = nn.Conv2d(conv_dim, 1 if class_agnostic else num_classes, 1)
        for layer in [c.conv for c in self.convs] + [self.deconv]:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        # The logits layer starts near zero (the paper's Detectron and detectron2: normal, std 0.001), so
        # a fresh head predicts p ~ 0.5 and its first loss is ~log 2. He init with a ReLU gain and a fan-out
        # of K channels (std sqrt(2 / K): 0.58 for 6 classes, 1.4 class-agnostic) gave logits of std ~10,
        # a first mask loss of 4-8 and gradients ~10x the rest of the model's, which solver.clip_grad_norm
        # then scaled the whole model's step down by for the first iterations.
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x (R, C, S, S) -> the predictor's input (R, conv_dim, 2S, 2S)."""
        for conv in self.convs:
            x = conv(x)
        return F.relu(self.deconv(x), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (R, C, S, S) -> mask logits (R, K, 2S, 2S) ((R, 1, 2S, 2S) when class-agnostic)."""
        return self.predictor(self.features(x))

    def channel_logits(self, x: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """x (R, C, S, S), channels (R,) -> (R, 1, 2S, 2S): each RoI's logits of its one channel, the
        1x1 predictor's rows gathered per RoI instead of all K computed (inference reads one)."""
        feats = self.features(x)  # (R, Cd, M, M)
        rows = self.predictor.weight.flatten(1)[channels]  # (R, Cd)
        # einsum, not a reshape to (R, Cd, M * M): an exported graph's reshape fails on 0 detections
        logits = torch.einsum("rc,rchw->rhw", rows, feats)  # (R, M, M)
        if self.predictor.bias is not None:
            logits = logits + self.predictor.bias[channels][:, None, None]
        return logits[:, None]

    def channels_for(self, labels: torch.Tensor) -> torch.Tensor:
        """labels (R,) -> the logit channel of each RoI's class (R,): the label, or 0 when class-agnostic."""
        return torch.zeros_like(labels) if self.class_agnostic else labels


def mask_probs_for_labels(mask_logits: torch.Tensor, labels: torch.Tensor, *, mode: str = "sigmoid"
                          ) -> torch.Tensor:
    """mask_logits (D, K, M, M), labels (D,) channels to read -> (D, 1, M, M) mask probabilities: the
    sigmoid of each detection's channel, or with ``mode="softmax"`` (the paper's multinomial ablation,
    trained with a per-pixel softmax over the classes) that channel's softmax probability."""
    idx = torch.arange(labels.numel(), device=labels.device)
    if mode == "softmax":
        return mask_logits.float().softmax(dim=1)[idx, labels][:, None]  # (D, M, M) -> (D, 1, M, M)
    return mask_logits[idx, labels][:, None].float().sigmoid()  # gather (D, M, M) -> (D, 1, M, M)


def head_mask_probs(head: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, mode: str = "sigmoid"
                    ) -> torch.Tensor:
    """A mask head on pooled RoI features x (D, C, S, S) and the detections' labels (D,) -> (D, 1, M, M)
    probabilities of each detection's class. Sigmoid masks of a float ``MaskHead`` compute only the read
    channel of the 1x1 predictor (K times less of its work: 13 of the head's ~260 ms for 100 detections
    of a COCO model on 2 CPU threads); softmax masks need every channel, and a replaced head (INT8) runs
    its own forward."""
    channels = head.channels_for(labels)  # (D,)
    if mode == "sigmoid" and _plain_head(head):
        return head.channel_logits(x, channels).float().sigmoid()
    return mask_probs_for_labels(head(x), channels, mode=mode)


def _plain_head(head: nn.Module) -> bool:
    """Whether ``head`` computes what ``MaskHead.forward`` does with a plain 1x1 predictor, nothing
    watching: ``channel_logits`` gives its read channels then. A subclass's own forward, a replaced
    predictor, or hooks (a caller reading the logits) run the whole forward."""
    predictor = getattr(head, "predictor", None)
    return (
        isinstance(head, MaskHead) and type(head).forward is MaskHead.forward
        and type(predictor) is nn.Conv2d and predictor.kernel_size == (1, 1) and predictor.groups == 1
        and not any(m._forward_hooks or m._forward_pre_hooks for m in (head, predictor))
    )
