"""Warm-up + multi-step and cosine schedules and the linear scaling rule."""

import math

import pytest
import torch

from maskrcnn.engine.schedule import WarmupLR, WarmupMultiStepLR, lr_factor, scaled_lr


def _sched(lr=0.1, scheduler=WarmupMultiStepLR, **curve):
    """(optimizer, scheduler): warm-up 10 iterations from 0.001, steps at 20 and 30; ``curve`` adds to it."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    return opt, scheduler(opt, warmup_iters=10, warmup_factor=0.001, steps=(20, 30), gamma=0.1, **curve)


def _lrs(opt, sched, n: int) -> list:
    """The lr of each of ``n`` iterations, stepping the optimizer and the scheduler after each."""
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_values():
    lrs = _lrs(*_sched(), 35)
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


def test_cosine_values_and_resume_on_the_same_curve():
    def sched():
        return _sched(scheduler=WarmupLR, schedule="cosine", max_iter=100, min_factor=0.1)

    opt, s = sched()
    lrs = _lrs(opt, s, 101)
    # warm-up times the cosine, then 0.1 * (0.1 + 0.9 * 0.5 * (1 + cos(pi * it / 100))); steps unused
    assert lrs[0] == pytest.approx(0.1 * 0.001)
    assert lrs[5] == pytest.approx(0.1 * (0.001 * 0.5 + 0.5) * (0.1 + 0.45 * (1 + math.cos(math.pi * 0.05))))
    assert lrs[25] == pytest.approx(0.1 * (0.1 + 0.45 * (1 + math.cos(math.pi / 4))))  # 0.08682
    assert lrs[50] == pytest.approx(0.1 * 0.55)
    assert lrs[100] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(lrs[10:100], lrs[11:101]))  # falls steadily, no step
    assert lr_factor(150, warmup_iters=0, warmup_factor=1.0, schedule="cosine", max_iter=100) == 0.0
    # a scheduler rebuilt from a checkpoint's state at iteration 40 goes on along the same curve
    opt2, s2 = sched()
    s2.load_state_dict({**s.state_dict(), "last_epoch": 40, "_step_count": 41})
    for it in range(40, 60):
        assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[it])
        opt2.step(), s2.step()


def test_schedule_settings_are_checked_and_unused_steps_noted():
    from maskrcnn.config import PRESETS, load_config, preset_solver_steps
    from maskrcnn.engine.schedule import schedule_notes

    with pytest.raises(ValueError, match="solver.lr_schedule must be one of step, cosine, got 'cosin'"):
        load_config("demo", {"solver.lr_schedule": "cosin"})
    with pytest.raises(ValueError, match=r"solver.lr_min_factor must be in \[0, 1\], got 1.5"):
        load_config("demo", {"solver.lr_min_factor": 1.5})
    presets = preset_solver_steps()
    cosine = load_config("r50_fpn", {"solver.lr_schedule": "cosine", "solver.steps": [100, 200],
                                     "solver.lr_min_factor": 0.05})
    assert schedule_notes(cosine.solver, preset_steps=presets) == [
        "note: solver.lr_schedule cosine does not use solver.steps [100, 200]: the lr follows a cosine from "
        "0.02 to 0.001 over solver.iters 90000"]
    assert schedule_notes(load_config("r50_fpn", {"solver.lr_schedule": "cosine"}).solver,
                          preset_steps=presets) == []
    assert schedule_notes(load_config("r50_fpn", {"solver.steps": [100]}).solver, preset_steps=presets) == []
    for name in PRESETS:  # a preset's own steps (finetune's, the demo's) were not the user's choice
        assert schedule_notes(load_config(name, {"solver.lr_schedule": "cosine"}).solver,
                              preset_steps=presets) == [], name
