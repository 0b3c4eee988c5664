"""``gemm_rates.settled``: inside the block ``matmul_lags_onednn`` answers the block's value instead of
the measurement (a training run's evaluations follow its model's engine), a ``MASKRCNN_MATMUL`` pin
still wins, and nothing is left set after it (no lasting process-wide change)."""

import threading

import torch

from maskrcnn.ops import gemm_rates


def test_settled_answers_in_its_block_only_and_yields_to_a_pin(monkeypatch):
    monkeypatch.delenv(gemm_rates.PIN_VARIABLE, raising=False)
    monkeypatch.setattr(gemm_rates, "_ratios", {torch.get_num_threads(): 1.0})  # measured: keeps pace
    assert gemm_rates.matmul_lags_onednn() is False and gemm_rates.measured_lags() is False
    seen = []
    with gemm_rates.settled(True):
        assert gemm_rates.matmul_lags_onednn() is True
        with gemm_rates.settled(None):  # None: as outside
            assert gemm_rates.matmul_lags_onednn() is False
        other = threading.Thread(target=lambda: seen.append(gemm_rates.matmul_lags_onednn()))
        other.start()
        other.join()
        monkeypatch.setenv(gemm_rates.PIN_VARIABLE, "blas")
        assert gemm_rates.matmul_lags_onednn() is False and gemm_rates.pinned() is False
        monkeypatch.delenv(gemm_rates.PIN_VARIABLE)
    assert seen == [False]  # another thread is not inside this block
    assert gemm_rates.matmul_lags_onednn() is False  # the block left nothing set


def test_measured_lags_is_none_before_a_measurement(monkeypatch):
    monkeypatch.setattr(gemm_rates, "_ratios", {})
    assert gemm_rates.measured_lags() is None
    monkeypatch.setitem(gemm_rates._ratios, torch.get_num_threads(), gemm_rates.LAG_MARGIN)
    assert gemm_rates.measured_lags() is True
