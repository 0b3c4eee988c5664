"""3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3), for CPU inference.

Shape glossary:
    N          images (or RoIs) in the batch
    C, Co      input / output channels
    H, W       input (= output) height and width
    TH, TW     output tiles along H and W: ceil(H / 4), ceil(W / 4)
    n, tr      images / tile rows of one chunk; P = n * tr * TW tiles in the chunk
    6 x 6      input tile (4 x 4 outputs plus the 3x3 kernel's halo); 36 = 6 * 6 positions

Lavin & Gray (2016): a 4x4 block of a 3x3 convolution's outputs is ``A^T [(G g G^T) * (B^T d B)] A``
for the 6x6 input tile ``d`` and the kernel ``g``, where ``*`` is elementwise. Summed over input
channels, the elementwise product becomes, for each of the 36 tile positions, a matrix product
``(P, C) @ (C, Co)``: 36 * 16 / (9 * 16) = 4x fewer multiplications than the direct convolution. The
transforms (small integer matrices) are matrix products too, over all tiles and channels of a chunk.
On CPUs this is 1.4-2.2x faster than oneDNN's direct convolution for the 128-512 channel convolutions
of ResNet/FPN/RPN heads (256 channels at 200 x 268: about 2x on an AVX-512 Xeon; on the mask head's
14 x 14 RoIs about even; ``benchmarks/ops.py``). Rounding error grows by a few times (about 1e-5
relative in float32 instead of 2e-6), far below what changes a detection: it is used for inference
only, by ``modeling.fuse.optimise_for_inference``, and never for training.

The image is processed in chunks of about ``_CHUNK_TILE_CHANNELS / C`` tiles so that the transformed
tiles of a chunk stay in the CPU cache between the transforms and the 36 matrix products. The layout is
channels-last throughout: a channels_last input is read in place, the output is channels_last.

The 36 products run on ``torch.bmm`` (the BLAS) or, with ``onednn_products``, as 36 oneDNN matmuls
(``ops.gemm_rates.onednn_matmul``): on CPUs where the BLAS lags oneDNN (AMD with AVX-512, where MKL
takes its AVX2 path at a third of oneDNN's rate) ``torch.bmm`` made Winograd slower than oneDNN's direct
convolution, while with oneDNN's products it is 1.3-1.4x faster than the direct convolution on the
256 / 512-channel maps of FPN, the RPN and res4 / res5 (measured on a 2-core AMD EPYC with AVX-512:
256 channels at 200 x 272 95 against 132 ms, at 100 x 136 25 against 33 ms; 128 channels 9.6 against
8.2 ms: not used there; RoIs of 14 x 14, whose 4 x 4 tiles cover 16 x 16, 48 against 45 ms: not used
where the tiles waste more than a fifth of their outputs). That path takes larger chunks, as the
products' rate grows with their size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.ops.gemm_rates import onednn_matmul

__all__ = ["WinogradConv2d", "winograd_weight", "conv3x3_winograd", "winograd_eligible", "tiles_use_enough"]

# F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2 and infinity (float64, exact in binary)
_G = torch.tensor(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    dtype=torch.float64,
)  # (6, 3) kernel transform

# tiles x channels of one chunk: ~32k floats per transformed tile position keeps a chunk's working set
# (input, transformed tiles, products) within a few MB, i.e. in L2/L3 cache
_CHUNK_TILE_CHANNELS = 1 << 15
# the same with the products on oneDNN, whose rate grows with the products' size (measured on the AMD
# EPYC above, 256 channels at 200 x 272: 1 << 15 186, 1 << 17 95 ms with freed memory reused; above
# 1 << 17 the fresh buffers' page faults cost more than the larger products gain where the allocator
# returns freed memory to the system: 1 << 17 126, 1 << 20 249 ms)
_ONEDNN_CHUNK_TILE_CHANNELS = 1 << 17
# below this many tiles x input channels the direct convolution is as fast or faster (the transforms'
# fixed costs dominate: e.g. a single 14 x 14 RoI, or 8 x 8 maps); measured crossover on an AVX-512
# Xeon: ~64 tiles at 128 channels, ~32 at 256, ~16 at 512
_MIN_TILE_CHANNELS = 1 << 13
# with the products on oneDNN: the least share of the tiles' 16 outputs that falls inside the map (14 x 14
# RoIs: 196 / 256 = 0.77, slower than the direct convolution; 25 x 34: 0.84, faster)
_MIN_TILE_USE = 0.8


def winograd_weight(weight: Tensor) -> Tensor:
    """(Co, C, 3, 3) kernel -> (36, C, Co) transformed kernel ``G g G^T`` (computed in float64)."""
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"winograd_weight: expected a (Co, C, 3, 3) kernel, got {tuple(weight.shape)}")
    g = _G.to(weight.device)
    u = torch.einsum("ia,ocab,jb->ijco", g, weight.detach().double(), g)  # (6, 6, C, Co)
    return u.reshape(36, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


# B^T and A^T of F(4x4, 3x3) (Lavin & Gray's matrices for the points 0, 1, -1, 2, -2, infinity)
_BT = torch.tensor(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
    dtype=torch.float64,
)  # (6, 6) input transform
_AT = torch.tensor(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    dtype=torch.float64,
)  # (4, 6) output transform
# The transforms run as matrix products over all tiles and channels of a chunk at once, which keeps
# the CPU's vector units busy instead of the dozens of memory-bound elementwise passes that written-out
# transforms take. The output transform ``A^T m A`` acts on a tile flattened row-major as one (16, 36)
# matrix (a Kronecker product); the input transform is applied as two passes of B^T (see
# conv3x3_winograd). All entries are small integers, exact in every float type.
_OUTPUT_TRANSFORM = torch.kron(_AT, _AT)  # (16, 36)


def _chunks(num_images: int, tile_rows: int, tile_cols: int, channels: int, tile_channels: int) -> list:
    """``(image begin, image end, tile row begin, tile row end)`` chunks of about ``tile_channels`` tiles
    x channels (per two threads): whole images when one image has fewer tiles than the budget (RoI
    batches), bands of tile rows otherwise (one large feature map)."""
    budget = max(32, tile_channels // channels) * max(1, torch.get_num_threads() // 2)
    per_image = tile_rows * tile_cols
    if per_image >= budget:
        rows = max(1, budget // tile_cols)
        return [(i, i + 1, r, min(tile_rows, r + rows)) for i in range(num_images)
                for r in range(0, tile_rows, rows)]
    images = max(1, budget // per_image)
    return [(i, min(num_images, i + images), 0, tile_rows) for i in range(0, num_images, images)]


def conv3x3_winograd(x: Tensor, weight_t: Tensor, bias: Tensor = None, *,
                     onednn_products: bool = False) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for a 3x3 kernel, computed as F(4x4, 3x3).

    x: (N, C, H, W) floating point (any memory format); weight_t: (36, C, Co) from ``winograd_weight``;
    bias: (Co,) or None; onednn_products: the 36 products by oneDNN's matmul instead of ``torch.bmm``
    (float32 / bfloat16, where ``ops.onednn_linear.onednn_linear_available()``).
    Returns (N, Co, H, W) channels_last."""
    n_img, c, h, w = x.shape
    if weight_t.dim() != 3 or weight_t.shape[0] != 36 or weight_t.shape[1] != c:
        raise ValueError(f"conv3x3_winograd: transformed weight {tuple(weight_t.shape)} does not fit "
                         f"an input with {c} channels (expected (36, {c}, Co))")
    co = weight_t.shape[2]
    th, tw = -(-h // 4), -(-w // 4)
    hp, wp = 4 * th + 2, 4 * tw + 2
    # zero-padded channels-last copy of the input: 1 pixel of padding, more at the bottom/right to
    # complete the last tiles
    xp = x.new_empty((n_img, hp, wp, c))
    xp[:, 0].zero_()
    xp[:, h + 1 :].zero_()
    xp[:, :, 0].zero_()
    xp[:, :, w + 1 :].zero_()
    xp[:, 1 : h + 1, 1 : w + 1].copy_(x.permute(0, 2, 3, 1))
    # (N, Co, 4TH, 4TW) in channels_last memory, allocated as such (not a view: autograd functions
    # may return it and callers may modify it in place)
    out = torch.empty((n_img, co, 4 * th, 4 * tw), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    out_tiles = out.permute(0, 2, 3, 1).view(n_img, th, 4, tw, 4, co)  # (N, TH, 4, TW, 4, Co)
    input_t = _BT.to(device=x.device, dtype=x.dtype)
    output_t = _OUTPUT_TRANSFORM.to(device=x.device, dtype=x.dtype)
    s_n, s_h, s_w, _ = xp.stride()
    budget = _ONEDNN_CHUNK_TILE_CHANNELS if onednn_products else _CHUNK_TILE_CHANNELS
    chunks = _chunks(n_img, th, tw, c, budget)
    # one set of buffers for the largest chunk, reused by every chunk: fresh multi-MB buffers per chunk
    # cost first-touch page faults (3-8% of the convolution on a 2-core VM, 2% on others)
    p_max = max((i1 - i0) * (r1 - r0) * tw for i0, i1, r0, r1 in chunks)
    tiles_buf, cols_buf, transformed_buf = (x.new_empty(36 * p_max * c) for _ in range(3))
    prod_buf, blocks_buf = x.new_empty(36 * p_max * co), x.new_empty(16 * p_max * co)
    for i0, i1, r0, r1 in chunks:
        n, tr = i1 - i0, r1 - r0
        p = n * tr * tw
        # the chunk's overlapping 6x6 tiles gathered position-major from a strided view of the padded
        # input: (6, 6, n, tr, TW, C) -> (36, P * C); copied one tile row offset at a time, which
        # runs several times faster than one copy of the 6-dimensional view
        window = xp.as_strided(
            (6, 6, n, tr, tw, c), (s_h, s_w, s_n, 4 * s_h, 4 * s_w, 1),
            xp.storage_offset() + i0 * s_n + 4 * r0 * s_h,
        )
        tiles = tiles_buf[: 36 * p * c].view(6, 6, n, tr, tw, c)
        for a in range(6):
            tiles[a].copy_(window[a])
        # B^T d B as two passes of the 6x6 B^T (columns, then rows): a third of the multiply-adds of the
        # 36x36 Kronecker form, and faster at this chunk size
        cols = cols_buf[: 36 * p * c].view(6, 6, p * c)
        torch.matmul(input_t, tiles.view(6, 6, p * c), out=cols)  # (6 a, 6 j, P * C)
        transformed = transformed_buf[: 36 * p * c].view(6, 6 * p * c)
        torch.mm(input_t, cols.view(6, 6 * p * c), out=transformed)
        prod = prod_buf[: 36 * p * co].view(36, p, co)
        if onednn_products:
            # (P, C) @ (C, Co) for each position: oneDNN's matmul takes the kernel's transposed view
            # (Co, C) as a linear layer's weight; it returns a new tensor, copied into place
            transformed_36 = transformed.view(36, p, c)
            for k in range(36):
                prod[k].copy_(onednn_matmul(transformed_36[k], weight_t[k].t()))
        else:
            torch.bmm(transformed.view(36, p, c), weight_t, out=prod)  # (36, P, Co)
        blocks = blocks_buf[: 16 * p * co].view(16, p * co)
        torch.mm(output_t, prod.view(36, p * co), out=blocks)
        blocks = blocks.view(4, 4, n, tr, tw, co)
        # (row, col, n, tr, TW, Co) written into the output's (n, tr, row, TW, col, Co) places
        dst = out_tiles[i0:i1, r0:r1].permute(2, 4, 0, 1, 3, 5)
        if bias is None:
            dst.copy_(blocks)
        else:
            torch.add(blocks, bias, out=dst)
    if h % 4 or w % 4:
        return out[:, :, :h, :w].contiguous(memory_format=torch.channels_last)
    return out


def tiles_use_enough(height: int, width: int) -> bool:
    """Whether the 4 x 4 output tiles of an H x W map use enough of their outputs for Winograd with its
    products on oneDNN to beat the direct convolution (``_MIN_TILE_USE``; 14 x 14 RoIs do not)."""
    tiles = -(-height // 4) * -(-width // 4)
    return height * width >= _MIN_TILE_USE * 16 * tiles


def winograd_eligible(conv: nn.Module, *, min_channels: int = 128) -> bool:
    """A plain 3x3, stride 1, dilation 1, 'same' zero-padded, ungrouped Conv2d with at least
    ``min_channels`` input and output channels (below that oneDNN's direct kernel is as fast)."""
    return (
        type(conv) is nn.Conv2d
        and tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and tuple(conv.padding) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and min(conv.in_channels, conv.out_channels) >= min_channels
    )


class WinogradConv2d(nn.Module):
    """Inference replacement of an eligible ``nn.Conv2d``: same ``weight`` / ``bias`` parameters (and
    state-dict keys), plus the transformed kernel, computed once. Float32 CPU inputs with no gradient
    and no autocast, large enough for the transforms to pay off, take the Winograd path; anything else
    (small maps, CUDA, where cuDNN picks its own algorithm, other dtypes, training) falls back to
    ``F.conv2d`` with the original weight. With ``onednn_products`` the 36 products run on oneDNN
    (see the module's notes), and maps whose 4 x 4 tiles waste more than a fifth of their outputs (the
    mask head's 14 x 14 RoIs) keep the direct convolution, which is faster there."""

    def __init__(self, conv: nn.Conv2d, *, onednn_products: bool = False):
        super().__init__()
        if not winograd_eligible(conv, min_channels=1):
            raise ValueError(f"WinogradConv2d: not a 3x3 stride-1 'same' ungrouped Conv2d: {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.onednn_products = onednn_products
        self.weight = conv.weight
        self.bias = conv.bias
        self.register_buffer("weight_t", winograd_weight(conv.weight), persistent=False)  # (36, C, Co)

    def _use_winograd(self, x: Tensor) -> bool:
        tiles = -(-x.shape[-2] // 4) * -(-x.shape[-1] // 4) if x.dim() == 4 else 0
        return (
            x.device.type == "cpu"
            and x.dim() == 4
            and x.shape[0] * tiles * x.shape[1] >= _MIN_TILE_CHANNELS
            and (not self.onednn_products or tiles_use_enough(x.shape[2], x.shape[3]))
            and x.dtype == torch.float32
            and self.weight_t.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
        )

    def forward(self, x: Tensor) -> Tensor:
        if self._use_winograd(x):
            return conv3x3_winograd(x, self.weight_t, self.bias, onednn_products=self.onednn_products)
        return F.conv2d(x, self.weight, self.bias, padding=1)

    def extra_repr(self) -> str:
        products = ", products on oneDNN" if self.onednn_products else ""
        return f"{self.in_channels}, {self.out_channels}, kernel_size=(3, 3), F(4x4, 3x3){products}"
