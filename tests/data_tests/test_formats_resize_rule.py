"""The resize rule every converter applies (``common.resized_scale``) and its mask sampling
(``geometry.scale_region``, ``geometry.nearest_indices``)."""

import io

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.formats.common import MaskPatch, Report, Skip, resized_scale
from maskrcnn.data.formats.geometry import scale_region


def _pil_nearest(canvas: np.ndarray, size: tuple) -> np.ndarray:
    """(H, W) bool canvas resized to ``size`` (W, H) by PIL's nearest filter (each pixel the source pixel
    under its centre): the reference a scaled mask patch must equal on the whole image."""
    return np.asarray(Image.fromarray(canvas.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_scaled_mask_patch_is_the_nearest_resize_of_its_canvas(factor):
    """A mask patch scaled down copied the patch's edge row/column into the rows past it (a 10x10 block at
    (5, 5) at 1/2 became 6x6 = 36 px, not 25): each scaled mask grew by up to a row and a column. Now it is
    pixel for pixel what the nearest resize of the whole canvas gives, odd edges included (a patch the
    nearest resize misses entirely: the pixels it falls in)."""
    rng = np.random.default_rng(factor)
    side = 24 * factor  # the canvas; the scaled image is 24 x 24
    for _ in range(40):
        top, left = rng.integers(0, side - 3, size=2)
        h, w = rng.integers(1, side - top), rng.integers(1, side - left)
        patch = rng.random((h, w)) < 0.7
        patch[0, 0] = patch[-1, -1] = True
        canvas = np.zeros((side, side), bool)
        canvas[top: top + h, left: left + w] = patch
        expected = _pil_nearest(canvas, (24, 24))
        if not expected.any():  # a patch between the sampled centres: the pixels it falls in, not a skip
            expected = canvas.reshape(24, factor, 24, factor).any(axis=(1, 3))
        r = scale_region(MaskPatch(int(top), int(left), patch), scale=(1 / factor, 1 / factor), width=24,
                         height=24)
        got = np.zeros((24, 24), bool)
        got[r.top: r.top + r.patch.shape[0], r.left: r.left + r.patch.shape[1]] = r.patch
        assert (got == expected).all()
    block = scale_region(MaskPatch(5, 5, np.ones((10, 10), bool)), scale=(0.5, 0.5), width=100, height=100)
    assert (block.top, block.left, block.patch.shape, int(block.patch.sum())) == (2, 2, (5, 5), 25)


def test_scaled_up_mask_patch_covers_its_scaled_area():
    r = scale_region(MaskPatch(3, 7, np.ones((5, 4), bool)), scale=(3.0, 2.0), width=100, height=100)
    assert (r.top, r.left, r.patch.shape, bool(r.patch.all())) == (6, 21, (10, 12), True)


def _told(given, shown):
    out = io.StringIO()
    report = Report(stream=out)
    return resized_scale(report, "a.json", given, shown), out.getvalue()


def test_a_resized_copy_is_one_both_ways():
    """Annotations on a 333x250 thumbnail (4000x3000 / 12, rounded) over the original were refused as
    "another shape" while the same pair the other way round was a resized copy: a pixel of rounding in the
    thumbnail is 12 of the original. The rounding is now judged in the smaller image's pixels."""
    up, said = _told((250, 333), (3000, 4000))
    assert up == pytest.approx((4000 / 333, 12.0)) and "has its shape (a resized copy)" in said
    down, said = _told((3000, 4000), (250, 333))
    assert down == pytest.approx((333 / 4000, 250 / 3000)) and "has its shape (a resized copy)" in said
    for given, shown in (((250, 333), (3000, 3000)), ((3000, 3000), (250, 333)), ((250, 333), (3040, 4000))):
        with pytest.raises(Skip) as e:
            _told(given, shown)
        assert e.value.reason == "image_size_mismatch"


@pytest.mark.parametrize("phase", range(4))
def test_a_stroke_thinner_than_a_pixel_once_scaled_is_kept_at_every_phase(phase):
    # a 2-px crack drawn on a 4x larger original falls between the sampled centres at some phases: it was
    # skipped as an empty mask there; it is kept as the image pixels it passes through
    from maskrcnn.data.formats.common import MaskPatch
    from maskrcnn.data.formats.geometry import scale_region

    drawn = np.zeros((400, 20), bool)
    drawn[:, 8 + phase: 10 + phase] = True  # columns 8+phase, 9+phase: image column (8+phase) // 4, ...
    region = scale_region(MaskPatch(0, 0, drawn), scale=(0.25, 0.25), width=100, height=100)
    full = np.zeros((100, 100), bool)
    full[region.top: region.top + region.patch.shape[0], region.left: region.left + region.patch.shape[1]] = \
        region.patch
    columns = sorted({(8 + phase) // 4, (9 + phase) // 4})
    assert np.flatnonzero(full.any(axis=0)).tolist() == columns
    assert full[:, columns].all()  # the whole length, nothing else


def test_cityscapes_evaluation_resizes_by_the_converters_own_rule():
    """eval --cityscapes resizes its masks to the copies convert-data accepted: one rule, not a copy of it
    that a later change to either would set apart."""
    from maskrcnn.data.formats.common import same_shape
    from maskrcnn.engine import cityscapes_eval

    assert cityscapes_eval.same_shape is same_shape
    for shown in [(64, 128), (65, 129), (64, 127), (256, 512), (255, 513), (64, 131), (64, 100)]:
        try:
            accepted = resized_scale(Report(), "a.json", (128, 256), shown) is not None
        except Skip:
            accepted = False
        assert accepted == same_shape(shown, (128, 256)), shown
