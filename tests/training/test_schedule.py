"""Warm-up + multi-step schedule and the linear scaling rule."""

import pytest
import torch

from maskrcnn.engine.schedule import WarmupMultiStepLR, lr_factor, scaled_lr


def _sched(lr=0.1):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    return opt, WarmupMultiStepLR(opt, warmup_iters=10, warmup_factor=0.001, steps=(20, 30), gamma=0.1)


def test_values():
    opt, sched = _sched()
    lrs = []
    for _ in range(35):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 * 0.001)
    assert lrs[5] == pytest.approx(0.1 * (0.001 * 0.5 + 0.5))
    assert lrs[10] == pytest.approx(0.1) and lrs[19] == pytest.approx(0.1)
    assert lrs[20] == pytest.approx(0.01) and lrs[29] == pytest.approx(0.01)
    assert lrs[30] == pytest.approx(0.001)
    assert lr_factor(25, warmup_iters=0, warmup_factor=1.0, steps=(20,), gamma=0.5) == 0.5


def test_state_round_trip():
    opt, sched = _sched()
    for _ in range(12):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2, sched2 = _sched()
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    for _ in range(10):
        opt.step(), sched.step(), opt2.step(), sched2.step()
        assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_linear_scaling_rule():
    assert scaled_lr(0.02, 16) == pytest.approx(0.02)
    assert scaled_lr(0.02, 4) == pytest.approx(0.005)
    assert scaled_lr(0.02, 32) == pytest.approx(0.04)
    with pytest.raises(ValueError):
        scaled_lr(0.02, 0)
