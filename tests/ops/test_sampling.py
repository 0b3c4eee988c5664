"""The shared 1-D bilinear taps (maskrcnn.ops.sampling) under each border rule, against the operation
that rule reproduces: torchvision's RoIAlign interpolation (the float64 loop reference), PyTorch's
bilinear resize and grid_sample with zero padding."""

import pytest
import torch
import torch.nn.functional as F

from maskrcnn.ops._reference import _bilinear
from maskrcnn.ops.sampling import bilinear_taps


def _dense(low, high, w_low, w_high, n):
    """(P,) taps -> (P, n) interpolation matrix (out-of-range taps carry zero weight)."""
    m = torch.zeros(low.shape[0], n, dtype=w_low.dtype)
    m.scatter_add_(1, low.clamp(0, n - 1)[:, None], w_low[:, None])
    m.scatter_add_(1, high.clamp(0, n - 1)[:, None], w_high[:, None])
    return m


def test_roi_align_border_matches_reference_interpolation():
    n = 7
    signal = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # inside, on cell centres, within a pixel of either end, exactly on -1 and n, beyond them, NaN
    pos = torch.tensor([0.3, 2.0, 5.99, 6.0, 6.4, 7.0, -0.6, -1.0, -1.01, 7.01, 40.0, float("nan")],
                       dtype=torch.float64)
    taps = bilinear_taps(pos, n, border="roi_align")
    got = _dense(*taps, n) @ signal
    feat = signal.view(1, 1, n)  # one channel, one row: _bilinear at y = 0 interpolates along x only
    want = torch.stack([_bilinear(feat, 0.0, float(x))[0] if x == x else torch.zeros((), dtype=torch.float64)
                        for x in pos])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert taps[0].min() >= 0 and taps[1].max() <= n - 1  # indices always in range


@pytest.mark.parametrize("n_in,n_out", [(30, 30), (30, 97), (30, 11), (5, 4)])
def test_clamp_border_is_pytorchs_bilinear_resize(n_in, n_out):
    signal = torch.rand(n_in, generator=torch.Generator().manual_seed(1))
    j = torch.arange(n_out, dtype=torch.float32)
    pos = (torch.tensor(float(n_in)) / n_out) * (j + 0.5) - 0.5
    got = _dense(*bilinear_taps(pos, n_in, border="clamp"), n_in) @ signal
    want = F.interpolate(signal.view(1, 1, 1, n_in), size=(1, n_out), mode="bilinear",
                         align_corners=False).view(n_out)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_zeros_border_is_grid_sample_with_zero_padding():
    n = 9
    signal = torch.rand(n, generator=torch.Generator().manual_seed(2))
    grid_x = torch.linspace(-1.4, 1.4, 61)  # normalised coordinates, partly outside the map
    pos = ((grid_x + 1) * n - 1) / 2  # grid_sample's unnormalisation, align_corners=False
    valid = grid_x.abs() < 1.3  # samples the caller rules out contribute nothing
    got = _dense(*bilinear_taps(pos, n, border="zeros", valid=valid), n) @ signal
    grid = torch.stack([grid_x, torch.zeros_like(grid_x)], dim=1).view(1, 1, -1, 2)
    want = F.grid_sample(signal.view(1, 1, 1, n), grid, align_corners=False, padding_mode="zeros").view(-1)
    torch.testing.assert_close(got, torch.where(valid, want, torch.zeros_like(want)), rtol=0, atol=1e-6)


def test_unknown_border_is_an_error():
    with pytest.raises(ValueError, match="border"):
        bilinear_taps(torch.zeros(3), 4, border="reflect")
