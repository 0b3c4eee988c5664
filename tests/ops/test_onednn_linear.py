"""Linear layers through oneDNN at CPU inference (``OneDnnLinear``) and the measured choice between
``torch.mm`` and oneDNN (``ops.gemm_rates``) that decides it and Winograd in ``optimise_for_inference``."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling import fuse
from maskrcnn.modeling.fuse import optimise_for_inference
from maskrcnn.ops import gemm_rates, onednn_linear
from maskrcnn.ops.onednn_linear import OneDnnLinear, onednn_linear_available, plain_linears
from maskrcnn.ops.winograd import WinogradConv2d

needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="no oneDNN linear in this build")


@pytest.fixture
def onednn_calls(monkeypatch):
    calls = []
    real = onednn_linear._onednn
    monkeypatch.setattr(onednn_linear, "_onednn", lambda x, *a: calls.append(x.shape) or real(x, *a))
    return calls


def _linear(bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(40, 24, bias=bias)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 40), (0, 40), (2, 3, 40)])
def test_onednn_path_equals_linear(onednn_calls, bias, shape):
    lin = _linear(bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        ref = lin(x)
        out = OneDnnLinear(lin)(x)
    assert onednn_calls == [x.shape]  # the oneDNN kernel computed it, not the fallback
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_training_gradients_equal_linear_through_onednn(onednn_calls, bias):
    """With autograd the forward and both products of the backward run on oneDNN (3 calls) and give
    F.linear's gradients; a frozen weight gets none and costs no product."""
    lin = _linear(bias)
    x = torch.randn(9, 40, requires_grad=True)
    grad_y = torch.randn(9, 24)
    ref = [g.clone() for g in torch.autograd.grad(F.linear(x, lin.weight, lin.bias), [x, *lin.parameters()],
                                                  grad_y)]
    out = OneDnnLinear(lin)(x)
    got = torch.autograd.grad(out, [x, *lin.parameters()], grad_y)
    assert len(onednn_calls) == 3
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    lin.weight.requires_grad_(False)
    onednn_calls.clear()
    (gx,) = torch.autograd.grad(OneDnnLinear(lin)(x), [x], grad_y)
    torch.testing.assert_close(gx, ref[0], rtol=1e-5, atol=1e-5)
    assert len(onednn_calls) == 2  # forward, grad_x


def test_plain_path_where_onednn_is_not_the_same_computation(onednn_calls):
    lin = _linear()
    module = OneDnnLinear(lin)
    x = torch.randn(5, 40)
    x3 = torch.randn(2, 5, 40, requires_grad=True)
    module(x3).sum().backward()  # autograd on more than 2 dims: F.linear, gradients as nn.Linear's
    assert x3.grad is not None and lin.weight.grad is not None
    with torch.no_grad():
        lin64 = OneDnnLinear(_linear().double())
        torch.testing.assert_close(lin64(x.double()), F.linear(x.double(), lin64.weight, lin64.bias))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert module(x).dtype == torch.bfloat16  # autocast's linear, as nn.Linear gives
        traced = torch.jit.trace(module, x, check_trace=False)  # holds aten::linear
    assert "aten::linear" in str(traced.graph) and "mkldnn" not in str(traced.graph)
    assert onednn_calls == []


def test_same_state_dict_and_plain_round_trip():
    lin = _linear()
    fast = OneDnnLinear(lin)
    assert list(fast.state_dict()) == ["weight", "bias"]
    assert fast.weight is lin.weight
    holder = nn.Sequential(nn.ReLU(), nn.Sequential(fast))
    assert plain_linears(holder) == 1
    back = holder[1][0]
    assert type(back) is nn.Linear and back.weight is lin.weight and back.bias is lin.bias
    with pytest.raises(ValueError, match="needs an nn.Linear"):
        OneDnnLinear(nn.Conv2d(1, 1, 1))


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_128 = nn.Conv2d(128, 256, 3, padding=1)  # Winograd from 128 channels on torch.bmm only
        self.conv_256 = nn.Conv2d(256, 256, 3, padding=1)
        self.fcs = nn.ModuleList([nn.Linear(256 * 4 * 4, 32), nn.Linear(32, 8)])

    def forward(self, x):
        x = self.conv_256(self.conv_128(x)).flatten(1)
        for fc in self.fcs:
            x = fc(x)
        return x


@pytest.mark.parametrize("lags", [True, False])
def test_optimise_picks_by_the_measured_rates(monkeypatch, lags):
    """Where torch.mm lags oneDNN: Winograd's products on oneDNN, for 256+ channels only, and oneDNN
    linears; elsewhere Winograd on torch.bmm from 128 channels and plain linears. Explicit choices win
    over the measurement, and a choice that needs no measurement does not measure."""
    monkeypatch.setattr(fuse, "matmul_lags_onednn", lambda: lags)
    lags = lags and onednn_linear_available()  # without oneDNN's linear there is nothing to choose
    torch.manual_seed(0)
    model = _Head().eval()
    x = torch.randn(2, 128, 4, 4)
    with torch.no_grad():
        ref = model(x)
        optimise_for_inference(model)
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)
    assert model.winograd_convs == (1 if lags else 2)
    assert model.winograd_products == ("onednn" if lags else "bmm")
    assert isinstance(model.conv_128, WinogradConv2d) != lags
    assert model.conv_256.onednn_products == lags
    assert model.onednn_linears == (2 if lags else 0)
    both = optimise_for_inference(_Head(), winograd=True, onednn_linear=True)
    assert both.winograd_convs == (1 if lags else 2) and both.onednn_linears == 2 * onednn_linear_available()
    monkeypatch.setattr(fuse, "matmul_lags_onednn", lambda: pytest.fail("measured without need"))
    plain = optimise_for_inference(_Head(), winograd=False, onednn_linear=False)
    assert plain.winograd_convs == 0 and plain.winograd_products is None and plain.onednn_linears == 0


def test_the_rate_is_measured_once_per_thread_count(monkeypatch):
    monkeypatch.delenv("MASKRCNN_MATMUL", raising=False)  # the suite pins it (conftest)
    measured = []
    monkeypatch.setattr(gemm_rates, "_ratios", {})
    monkeypatch.setattr(gemm_rates, "_measure", lambda repeats: measured.append(repeats) or 2.0)
    assert gemm_rates.matmul_rate_ratio() == 2.0 and gemm_rates.matmul_lags_onednn()
    # a lag is confirmed by CONFIRM_ROUNDS more measurements, all in the first call
    assert gemm_rates.matmul_rate_ratio() == 2.0 and measured == [5] * (1 + gemm_rates.CONFIRM_ROUNDS)
    monkeypatch.setattr(gemm_rates, "_measure", lambda repeats: 1.1)
    monkeypatch.setattr(gemm_rates, "_ratios", {})
    assert not gemm_rates.matmul_lags_onednn()  # within the margin: Winograd stays
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert gemm_rates.matmul_rate_ratio() == 1.0


def test_a_lag_seen_once_on_a_busy_machine_does_not_decide(monkeypatch):
    # another process on one of the cores slowed every torch.mm try of one measurement (2.07 seen in 1 of
    # 6 processes at 2 threads, ~0.97 otherwise): one such measurement used to switch the linear layers
    # to oneDNN, so two runs of one command, or a run and its resume, trained apart
    monkeypatch.delenv("MASKRCNN_MATMUL", raising=False)  # the suite pins it (conftest)
    monkeypatch.setattr(gemm_rates, "_ratios", {})
    measured = iter([2.07, 0.97, 2.5])
    monkeypatch.setattr(gemm_rates, "_measure", lambda repeats: next(measured))
    assert not gemm_rates.matmul_lags_onednn()
    assert gemm_rates.matmul_rate_ratio() == 0.97
    assert next(measured) == 2.5  # it stopped measuring once the lag did not hold
    # a true lag holds in every measurement: still taken
    monkeypatch.setattr(gemm_rates, "_ratios", {})
    measured = iter([2.9, 2.6, 3.1])
    assert gemm_rates.matmul_lags_onednn() and gemm_rates.matmul_rate_ratio() == 2.6


def test_real_measurement_is_a_ratio_and_leaves_the_global_rng(monkeypatch):
    monkeypatch.setattr(gemm_rates, "_ratios", {})
    state = torch.random.get_rng_state()
    ratio = gemm_rates.matmul_rate_ratio(repeats=2)
    assert 0.05 < ratio < 50  # a rate ratio, not a time
    assert torch.equal(torch.random.get_rng_state(), state)


def test_the_choice_can_be_pinned(monkeypatch):
    monkeypatch.setattr(gemm_rates, "_measure", lambda repeats: pytest.fail("pinned: nothing to measure"))
    monkeypatch.setattr(gemm_rates, "_ratios", {})
    for value, lags in (("onednn", True), ("blas", False), (" OneDNN ", True)):
        monkeypatch.setenv("MASKRCNN_MATMUL", value)
        assert gemm_rates.matmul_lags_onednn() is lags
    monkeypatch.setenv("MASKRCNN_MATMUL", "mkl")
    with pytest.raises(ValueError, match=r"MASKRCNN_MATMUL='mkl': expected blas, onednn or measure"):
        gemm_rates.matmul_lags_onednn()


@needs_onednn
def test_zero_rows_under_autograd_and_no_second_derivative():
    lin = _linear()
    module = OneDnnLinear(lin)
    x = torch.zeros(0, 40, requires_grad=True)
    module(x).sum().backward()  # zero rows: F.linear (oneDNN has no product over zero rows)
    assert x.grad.shape == (0, 40) and torch.equal(lin.weight.grad, torch.zeros_like(lin.weight))
    x = torch.randn(3, 40, requires_grad=True)
    (gx,) = torch.autograd.grad(module(x).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        torch.autograd.grad(gx.sum(), [lin.weight])  # refused, not a silently wrong second derivative
