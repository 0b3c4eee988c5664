"""Keypoint head (torchvision's keypointrcnn head) and heatmap -> keypoint decoding.

Shapes: R RoIs, C channels, S x S pooled size (14), J keypoints, Hk = 4S heatmap size (56),
D detections.

Layers: ``num_convs`` 3x3 convs (512, ReLU), a 4x4 stride-2 transposed conv to J channels (28x28),
then a fixed x2 bilinear upsampling to 56x56.
State-dict keys: ``convs.{i}.conv.{weight,bias}``, ``predictor.{weight,bias}``.

Decoding (torchvision's ``heatmaps_to_keypoints``): each RoI's heatmaps are resized by bicubic
interpolation to ceil(box width) x ceil(box height) pixels (width, height clamped to >= 1), the arg-max
cell (x, y) gives the keypoint ((x + 0.5) * w / ceil(w) + x1, ...) and its score is the resized heatmap
value there (``score="logit"``) or, as detectron2 scores keypoints, ``score="softmax"``: the peak's
share of a spatial softmax normalised over the Hk x Hk heatmap, 1 / sum(exp(heatmap - peak)). Done for
all RoIs at once with separable interpolation matrices (no loop over RoIs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.layers import ConvNorm


class KeypointHead(nn.Module):
    def __init__(self, *, in_channels: int, num_keypoints: int = 17, num_convs: int = 8, conv_dim: int = 512):
        super().__init__()
        self.convs = nn.ModuleList()
        channels = in_channels
        for _ in range(num_convs):
            self.convs.append(ConvNorm(channels, conv_dim, 3, relu=True))
            channels = conv_dim
        self.predictor = nn.ConvTranspose2d(channels, num_keypoints, 4, stride=2, padding=1)
        for layer in [c.conv for c in self.convs] + [self.predictor]:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (R, C, S, S) -> heatmap logits (R, J, 4S, 4S)."""
        for conv in self.convs:
            x = conv(x)
        x = self.predictor(x)
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False,
                             recompute_scale_factor=False)


def _cubic_weights(t: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """Keys' cubic convolution weights for taps at offsets -1, 0, 1, 2 of fraction t: (..., 4)."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def _bicubic_matrix(in_size: int, out_sizes: torch.Tensor, out_max: int) -> torch.Tensor:
    """(R, out_max, in_size) matrices resizing a length-``in_size`` signal to ``out_sizes[r]`` samples
    as ``F.interpolate(mode="bicubic", align_corners=False)`` does (rows beyond out_sizes[r] are zero)."""
    r = out_sizes.shape[0]
    dev = out_sizes.device
    scale = in_size / out_sizes.to(torch.float32)  # (R,)
    dst = torch.arange(out_max, device=dev, dtype=torch.float32)
    src = (dst[None, :] + 0.5) * scale[:, None] - 0.5  # (R, out_max)
    base = src.floor()
    w = _cubic_weights(src - base)  # (R, out_max, 4)
    taps = (base[..., None] + torch.arange(-1, 3, device=dev)).long().clamp(0, in_size - 1)  # (R, out_max, 4)
    mat = torch.zeros(r, out_max, in_size, device=dev)
    mat.scatter_add_(2, taps, w)
    valid = dst[None, :] < out_sizes[:, None]  # (R, out_max)
    return mat * valid[..., None]


KEYPOINT_SCORES = ("logit", "softmax")


@torch.no_grad()
def heatmaps_to_keypoints(maps: torch.Tensor, rois: torch.Tensor, *, score: str = "logit",
                          max_elements: int = 2**26) -> tuple:
    """maps (R, J, Hk, Hk) logits, rois (R, 4) -> keypoints (R, J, 3) (x, y, 1), scores (R, J)."""
    if score not in KEYPOINT_SCORES:
        raise ValueError(f"keypoint score must be one of {KEYPOINT_SCORES}, got {score!r}")
    r, j, hk, wk = maps.shape
    if r == 0:
        return maps.new_zeros((0, j, 3)), maps.new_zeros((0, j))
    maps = maps.float()
    # a box under a pixel is widened from its left / top edge, as torchvision and detectron2 decode it
    # (their outputs are this library's reference; such a box's keypoints may then pass its right edge)
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    w_out = widths.ceil().long()
    h_out = heights.ceil().long()
    xs, ys, scores = [], [], []
    # Chunk the RoIs so that the (chunk, J, Hmax, Wmax) resized maps stay bounded in memory.
    per_roi = j * int(h_out.max()) * int(w_out.max())
    chunk = max(1, max_elements // max(per_roi, 1))
    for s in range(0, r, chunk):
        hs, ws = h_out[s:s + chunk], w_out[s:s + chunk]
        hmax, wmax = int(hs.max()), int(ws.max())
        my = _bicubic_matrix(hk, hs, hmax)  # (c, hmax, Hk)
        mx = _bicubic_matrix(wk, ws, wmax)  # (c, wmax, Wk)
        # (c, hmax, Hk) @ (c, J, Hk, Wk) @ (c, Wk, wmax) -> (c, J, hmax, wmax)
        resized = torch.matmul(torch.matmul(my[:, None], maps[s:s + chunk]), mx.transpose(1, 2)[:, None])
        valid = (torch.arange(hmax, device=hs.device)[None, :, None] < hs[:, None, None]) & (
            torch.arange(wmax, device=ws.device)[None, None, :] < ws[:, None, None])  # (c, hmax, wmax)
        resized = resized.masked_fill(~valid[:, None], float("-inf"))
        flat = resized.flatten(2)  # (c, J, hmax * wmax)
        best, pos = flat.max(dim=2)  # (c, J)
        if score == "softmax":  # exp(peak - peak) over the low-resolution heatmap's sum of exp(map - peak)
            best = 1.0 / torch.exp(maps[s:s + chunk] - best[..., None, None]).sum(dim=(2, 3))
        xs.append(pos % wmax)
        ys.append(pos // wmax)
        scores.append(best)
    x_int, y_int, score = torch.cat(xs), torch.cat(ys), torch.cat(scores)  # (R, J) each
    x = (x_int.float() + 0.5) * (widths / w_out)[:, None] + rois[:, 0:1]
    y = (y_int.float() + 0.5) * (heights / h_out)[:, None] + rois[:, 1:2]
    kps = torch.stack([x, y, torch.ones_like(x)], dim=2)  # (R, J, 3)
    return kps, score
