"""Learning-rate schedules: linear warm-up, then multi-step decay or a cosine; the linear scaling rule.

lr(it) = base_lr * warmup(it) * decay(it), with
warmup(it) = warmup_factor + (1 - warmup_factor) * it / warmup_iters for it < warmup_iters, else 1,
and ``it`` the count of finished iterations (optimizer steps), so the first iteration runs at
base_lr * warmup_factor. ``solver.lr_schedule`` picks decay(it):
    step   (default): gamma ** (number of solver.steps <= it) (detectron2's WarmupMultiStepLR);
    cosine: m + (1 - m) * 0.5 * (1 + cos(pi * it / solver.iters)), m = solver.lr_min_factor (default 0):
            from 1 down to m at solver.iters; solver.steps and gamma are not used. As detectron2's
            WarmupCosineLR, t = it / iters runs over the whole run, warm-up included (the warm-up ramp
            multiplies the cosine, which is still ~1 while a short warm-up lasts).
Both are pure functions of ``it``: a resumed run (the scheduler's ``last_epoch`` in its checkpoint)
continues the same curve, given the same solver settings; with other settings (``--resume --set
solver.lr=...``) it goes on along the new curve from that iteration (the base lr is the config's, not
the checkpoint's).

Linear scaling rule (Goyal et al., 2017): when the batch changes from 16 images to b, scale the
learning rate by b / 16 (and, by the same paper, stretch iterations and steps by 16 / b to see the
same number of epochs): ``scaled_lr(0.02, 4) == 0.005``. With ``solver.accumulate`` the batch is still
``solver.batch_size`` (the images of one optimizer step), however many micro-batches it is split into.
"""

from __future__ import annotations

import bisect
import math
from typing import Collection, Sequence

import torch

from maskrcnn.config import LR_SCHEDULES as SCHEDULES


def scaled_lr(base_lr: float, batch_size: int, reference_batch_size: int = 16) -> float:
    """The linear scaling rule: the lr for ``batch_size`` images when ``base_lr`` suits the reference."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return base_lr * batch_size / reference_batch_size


def cosine_factor(iteration: int, *, max_iter: int, min_factor: float = 0.0) -> float:
    """The cosine decay at ``iteration`` of ``max_iter``: 1 at 0, ``min_factor`` at ``max_iter`` and after."""
    t = min(iteration / max_iter, 1.0) if max_iter > 0 else 1.0
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_factor(
    iteration: int,
    *,
    warmup_iters: int,
    warmup_factor: float,
    steps: Sequence[int] = (),
    gamma: float = 0.1,
    schedule: str = "step",
    max_iter: int = 0,
    min_factor: float = 0.0,
) -> float:
    """The multiplier of the base lr at ``iteration`` (0-based count of finished iterations)."""
    if schedule == "cosine":
        factor = cosine_factor(iteration, max_iter=max_iter, min_factor=min_factor)
    elif schedule == "step":
        factor = gamma ** bisect.bisect_right(sorted(steps), iteration)
    else:
        raise ValueError(f"lr schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


class WarmupLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR with ``lr_factor``; its ``state_dict`` is plain (last_epoch, base_lrs) for checkpoints.
    On resume only the position comes from the state (``last_epoch``): the curve, base lrs included, is
    this scheduler's, built from the config (the optimizer's lr when it was made), so that a run resumed
    with another ``solver.lr`` (or warm-up, steps, schedule, iters) trains at the lr it says; with the same
    settings the lrs are those of the checkpoint, bit for bit."""

    def __init__(self, optimizer: torch.optim.Optimizer, **curve):
        """``curve``: ``lr_factor``'s keywords (warmup_iters and warmup_factor required)."""
        lr_factor(0, **curve)  # an unknown schedule or keyword, or a missing one, fails here, not mid-run
        self.curve = curve  # rebuilt from the config on resume
        super().__init__(optimizer, self._factor)

    def _factor(self, iteration: int) -> float:
        return lr_factor(iteration, **self.curve)

    def state_dict(self) -> dict:
        # LambdaLR would try to store the lambda; ours is rebuilt from the constructor's arguments.
        return {
            "last_epoch": self.last_epoch,
            "base_lrs": list(self.base_lrs),
            "_step_count": self._step_count,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        # the state's base_lrs are the run's old solver.lr: not taken (see the class docstring); the
        # optimizer's state, loaded before this, brought back its groups' old initial_lr: set again
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        self._last_lr = [base * self._factor(self.last_epoch) for base in self.base_lrs]
        for group, base, lr in zip(self.optimizer.param_groups, self.base_lrs, self._last_lr):
            group["initial_lr"] = base
            group["lr"] = lr


WarmupMultiStepLR = WarmupLR  # the name before the cosine schedule (schedule="step" is its default)


def build_scheduler(optimizer: torch.optim.Optimizer, solver) -> WarmupLR:
    """From ``cfg.solver`` (warmup_iters, warmup_factor, lr_schedule; steps and gamma, or iters and
    lr_min_factor)."""
    return WarmupLR(
        optimizer,
        warmup_iters=solver.warmup_iters,
        warmup_factor=solver.warmup_factor,
        steps=solver.steps,
        gamma=solver.gamma,
        schedule=solver.lr_schedule,
        max_iter=solver.iters,
        min_factor=solver.lr_min_factor,
    )


def schedule_notes(solver, *, preset_steps: Collection[tuple]) -> list:
    """Lines to print before training: settings the chosen schedule does not use (``solver.steps`` with
    the cosine schedule, when they are not one of ``preset_steps``, the steps the presets set: those the
    user did not choose; ``solver.lr_min_factor`` with the step schedule, when set, as no preset sets it),
    steps of the step schedule that the run never reaches (``--set solver.iters=5000`` over a preset's
    steps 60000, 80000: the lr never drops), and a warm-up that lasts the whole run (the lr never reaches
    ``solver.lr``)."""
    notes = []
    if solver.lr_schedule == "cosine" and tuple(solver.steps) not in preset_steps:
        notes.append(f"note: solver.lr_schedule cosine does not use solver.steps {list(solver.steps)}: the "
                     f"lr follows a cosine from {solver.lr:g} to {solver.lr * solver.lr_min_factor:g} over "
                     f"solver.iters {solver.iters}")
    if solver.lr_schedule == "step" and solver.lr_min_factor != 0:
        notes.append(f"note: solver.lr_schedule step does not use solver.lr_min_factor "
                     f"{solver.lr_min_factor:g} (the cosine schedule's floor): the lr drops by solver.gamma "
                     f"{solver.gamma:g} at solver.steps {list(solver.steps)}")
    if solver.lr_schedule == "step":  # the cosine reads no steps (said above when they were chosen)
        notes.extend(_unreached_steps_note(solver))
    if 0 < solver.iters <= solver.warmup_iters and solver.warmup_factor < 1 and solver.lr > 0:
        # the ramp reaches 1 at warmup_iters; the last iteration runs at iters - 1 finished ones
        notes.append(f"note: solver.warmup_iters {solver.warmup_iters} >= solver.iters {solver.iters}: the "
                     "lr stays below solver.lr for the whole run (a smaller solver.warmup_iters lets it get "
                     "there)")
    return notes


def _unreached_steps_note(solver) -> list:
    """The step schedule's note for ``solver.steps`` at or past ``solver.iters``: the last iteration runs
    with iters - 1 finished, so a step s drops the lr only when s <= iters - 1 (``lr_factor``)."""
    steps = sorted(solver.steps)
    late = [s for s in steps if s >= solver.iters]
    if not late or solver.gamma == 1 or solver.lr == 0:  # nothing would change at them anyway
        return []
    reached = [s for s in steps if s < solver.iters]
    those = "that lr drop never happens" if len(late) == 1 else "those lr drops never happen"
    then = (f"the lr drops only at {', '.join(map(str, reached))}" if reached else "the lr never drops")
    return [f"note: solver.steps {late} at or past solver.iters {solver.iters}: {those}, {then} (scale "
            "solver.steps with solver.iters)"]
