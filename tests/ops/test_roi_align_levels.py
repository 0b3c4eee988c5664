"""roi_align_levels: the RoIs of several FPN levels pooled by one autograd node (MultiScaleRoIAlign's
training path), against per-level roi_align, the float64 loop reference and gradcheck."""

import pytest
import torch

from maskrcnn.ops import MultiScaleRoIAlign, roi_align
from maskrcnn.ops._reference import roi_align_loop
from maskrcnn.ops.roi_align import roi_align_levels
from maskrcnn.ops.sampling import RoIAlignPlan

pytestmark = pytest.mark.usefixtures("single_thread")

SCALES = [1 / 4, 1 / 8, 1 / 16]


def _pyramid(channels, dtype=torch.float64, seed=0, sizes=((12, 14), (6, 7), (3, 4))):
    """Three (2, C, Hl, Wl) maps of a 2-image batch (strides 4, 8, 16 over a ~48 x 56 image)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, channels, h, w, generator=g, dtype=dtype) for h, w in sizes]


def _rois(levels, seed=1):
    """(R, 5) RoIs over both images, sized for their level, a few partly outside the image."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for lv in levels:
        side = 4.0 * 2 ** lv * (1.0 + 2.0 * float(torch.rand(1, generator=g)))
        x0, y0 = (torch.rand(2, generator=g) * 60 - 8).tolist()
        rows.append([float(len(rows) % 2), x0, y0, x0 + side * 1.3, y0 + side])
    return torch.tensor(rows, dtype=torch.float64)


def _per_level(maps, rois, level, output_size, sampling_ratio, aligned):
    """The reference composition: roi_align on each level, rows put back in RoI order."""
    out = maps[0].new_zeros((rois.shape[0], maps[0].shape[1], *output_size))
    for lv, (m, s) in enumerate(zip(maps, SCALES)):
        idx = torch.nonzero(level == lv).flatten()
        if idx.numel():
            out = out.index_copy(0, idx, roi_align(m, rois[idx], output_size, s, sampling_ratio, aligned))
    return out


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("levels", [[0, 1, 2, 0, 2, 1, 0], [2, 0, 0, 2, 2]])  # the second: level 1 empty
def test_gradcheck(aligned, sampling_ratio, levels):
    maps = [m.requires_grad_(True) for m in _pyramid(1, sizes=((8, 10), (4, 5), (2, 3)))]
    rois, level = _rois(levels), torch.tensor(levels)

    def pool(*maps):
        return roi_align_levels(maps, rois, level, (2, 3), SCALES, sampling_ratio, aligned)

    assert torch.autograd.gradcheck(pool, tuple(maps), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("aligned, sampling_ratio", [(False, 2), (True, 0)])
def test_equals_per_level_roi_align_and_loop_reference(channels_last, aligned, sampling_ratio):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    maps = [m.contiguous(memory_format=fmt) for m in _pyramid(5, seed=2)]
    levels = [0, 1, 2, 1, 0, 0, 2, 1, 0, 2, 0]
    rois, level = _rois(levels, seed=3), torch.tensor(levels)
    g = torch.Generator().manual_seed(4)
    grad_out = torch.randn(len(levels), 5, 3, 4, generator=g, dtype=torch.float64)

    def run(fn):
        xs = [m.detach().clone(memory_format=torch.preserve_format).requires_grad_(True) for m in maps]
        out = fn(xs)
        out.backward(grad_out)
        return out.detach(), [x.grad for x in xs]

    out, grads = run(lambda xs: roi_align_levels(xs, rois, level, (3, 4), SCALES, sampling_ratio, aligned))
    ref, ref_grads = run(lambda xs: _per_level(xs, rois, level, (3, 4), sampling_ratio, aligned))
    loop, loop_grads = run(lambda xs: torch.cat([
        roi_align_loop(xs[lv], rois[i:i + 1], (3, 4), SCALES[lv], sampling_ratio, aligned)
        for i, lv in enumerate(levels)]))
    # channels_last rows, as documented: a consumer must reshape, not view
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(out, loop, rtol=0, atol=1e-10)
    for g, r, lg in zip(grads, ref_grads, loop_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-12)
        torch.testing.assert_close(g, lg, rtol=0, atol=1e-10)
        # a map's gradient in its own layout
        assert g.is_contiguous(memory_format=fmt)


def test_nchw_and_channels_last_gradients_agree():
    # a flattening box head hands back an NCHW gradient, a conv mask head a channels_last one
    maps = [m.requires_grad_(True) for m in _pyramid(4, seed=5)]
    levels = [0, 2, 1, 0, 1]
    rois, level = _rois(levels, seed=6), torch.tensor(levels)
    grad_out = torch.randn(5, 4, 2, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        out = roi_align_levels(maps, rois, level, 2, SCALES, 2, False)
        grads.append(torch.autograd.grad(out, maps, grad_out.contiguous(memory_format=fmt)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_unused_levels_empty_maps_and_no_rois():
    maps = [m.requires_grad_(True) for m in _pyramid(3, seed=8)]
    rois, level = _rois([0, 0, 2], seed=9), torch.tensor([0, 0, 2])
    out = roi_align_levels(maps, rois, level, 2, SCALES, 2, False)
    grads = torch.autograd.grad(out.sum(), maps, allow_unused=True)
    assert grads[1] is None  # no RoI on level 1: no gradient at all
    assert float(grads[0].abs().sum()) > 0 and float(grads[2].abs().sum()) > 0
    # an empty map pools to zeros, its neighbours' RoIs unaffected
    empty = torch.zeros(2, 3, 0, 7, dtype=torch.float64, requires_grad=True)
    out2 = roi_align_levels([maps[0], empty, maps[2]], _rois([0, 1, 2], seed=9), torch.tensor([0, 1, 2]), 2,
                            SCALES, 2, False)
    assert float(out2[1].detach().abs().sum()) == 0
    torch.testing.assert_close(out2[0], out[0], rtol=0, atol=0)
    out2.sum().backward()
    # no RoIs at all
    none = roi_align_levels(maps, torch.zeros(0, 5, dtype=torch.float64), torch.zeros(0, dtype=torch.long), 2,
                            SCALES, 2, False)
    assert none.shape == (0, 3, 2, 2)
    none.sum().backward()


def test_low_precision_and_autocast_compute_in_float32():
    maps32 = _pyramid(8, dtype=torch.float32, seed=10)
    levels = [0, 1, 2, 0, 1]
    rois, level = _rois(levels, seed=11).float(), torch.tensor(levels)
    ref = roi_align_levels(maps32, rois, level, 7, SCALES, 2, True)
    out = roi_align_levels([m.bfloat16() for m in maps32], rois, level, 7, SCALES, 2, True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    maps = [m.requires_grad_(True) for m in maps32]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = roi_align_levels(maps, rois, level, 7, SCALES, 2, True)
    assert auto.dtype == torch.float32  # float32 maps: autocast changes nothing inside the op
    torch.testing.assert_close(auto, ref, rtol=0, atol=0)
    auto.sum().backward()
    assert all(m.grad.dtype == torch.float32 for m in maps)


def test_plan_keeps_each_levels_chunks():
    # one plan for all levels cuts each level's RoIs exactly as a plan of that level alone would
    levels = torch.tensor([0, 1, 2, 1, 0, 0, 2, 1, 0, 2, 0] * 3)
    rois = torch.cat([_rois(levels[:11].tolist(), seed=s) for s in (12, 13, 14)])
    sizes = torch.tensor([[12, 14], [6, 7], [3, 4]])
    scales = torch.tensor(SCALES, dtype=torch.float64)[levels]
    plan = RoIAlignPlan(rois, sizes[levels, 0], sizes[levels, 1], (7, 7), scales, 2, False, torch.float64)
    plan.plan_windows(8, budget=8 * 300, waste=1.25, level=levels, num_levels=3)
    assert [c for cs in plan.level_chunks for c in cs] == plan.chunks
    for lv, chunks in enumerate(plan.level_chunks):
        idx = torch.nonzero(levels == lv).flatten()
        alone = RoIAlignPlan(rois[idx], int(sizes[lv, 0]), int(sizes[lv, 1]), (7, 7), SCALES[lv], 2, False,
                             torch.float64)
        alone.plan_windows(8, budget=8 * 300, waste=1.25)
        offset = chunks[0][0]
        assert [(b - offset, e - offset, ly, lx) for b, e, ly, lx in chunks] == alone.chunks
        assert torch.equal(idx[alone.order], plan.order[offset:offset + idx.numel()])


def test_pooler_training_path_matches_inference_path():
    strides = {"p2": 4, "p3": 8, "p4": 16}
    feats = dict(zip(strides, _pyramid(4, seed=15)))
    boxes = [torch.tensor([[2.0, 3.0, 30.0, 25.0], [0.0, 0.0, 50.0, 40.0], [5.0, 5.0, 9.0, 12.0]],
                          dtype=torch.float64),
             torch.tensor([[10.0, 4.0, 100.0, 90.0]], dtype=torch.float64)]  # p4
    pooler = MultiScaleRoIAlign(featmap_names=list(strides), strides=strides, output_size=3, sampling_ratio=0,
                                canonical_level=3, canonical_box_size=32)
    with torch.no_grad():
        ref = pooler(feats, boxes)
    train = pooler({k: v.requires_grad_(True) for k, v in feats.items()}, boxes)
    torch.testing.assert_close(train, ref, rtol=0, atol=1e-12)
    assert train.reshape(4, -1).shape == (4, 36)  # channels_last rows: reshape (not view) flattens
    train.sum().backward()
