"""Learning-rate schedule: linear warm-up then multi-step decay; the linear scaling rule.

lr(it) = base_lr * warmup(it) * gamma ** (number of steps <= it), with
warmup(it) = warmup_factor + (1 - warmup_factor) * it / warmup_iters for it < warmup_iters, else 1
(detectron2's WarmupMultiStepLR with linear warm-up; ``it`` counts finished iterations, so the first
iteration runs at base_lr * warmup_factor).

Linear scaling rule (Goyal et al., 2017): when the batch changes from 16 images to b, scale the
learning rate by b / 16 (and, by the same paper, stretch iterations and steps by 16 / b to see the
same number of epochs): ``scaled_lr(0.02, 4) == 0.005``.
"""

from __future__ import annotations

import bisect
from typing import Sequence

import torch


def scaled_lr(base_lr: float, batch_size: int, reference_batch_size: int = 16) -> float:
    """The linear scaling rule: the lr for ``batch_size`` images when ``base_lr`` suits the reference."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return base_lr * batch_size / reference_batch_size


def lr_factor(
    iteration: int, *, warmup_iters: int, warmup_factor: float, steps: Sequence[int], gamma: float
) -> float:
    """The multiplier of the base lr at ``iteration`` (0-based count of finished iterations)."""
    factor = gamma ** bisect.bisect_right(sorted(steps), iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


class WarmupMultiStepLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR with ``lr_factor``; its ``state_dict`` is plain (last_epoch, base_lrs) for checkpoints."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        warmup_iters: int,
        warmup_factor: float,
        steps: Sequence[int],
        gamma: float,
    ):
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.steps = tuple(int(s) for s in steps)
        self.gamma = float(gamma)
        super().__init__(optimizer, self._factor)

    def _factor(self, iteration: int) -> float:
        return lr_factor(
            iteration,
            warmup_iters=self.warmup_iters,
            warmup_factor=self.warmup_factor,
            steps=self.steps,
            gamma=self.gamma,
        )

    def state_dict(self) -> dict:
        # LambdaLR would try to store the lambda; ours is rebuilt from the constructor's arguments.
        return {
            "last_epoch": self.last_epoch,
            "base_lrs": list(self.base_lrs),
            "_step_count": self._step_count,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = [float(x) for x in state_dict["base_lrs"]]
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        self._last_lr = [base * self._factor(self.last_epoch) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def build_scheduler(optimizer: torch.optim.Optimizer, solver) -> WarmupMultiStepLR:
    """From ``cfg.solver`` (warmup_iters, warmup_factor, steps, gamma)."""
    return WarmupMultiStepLR(
        optimizer,
        warmup_iters=solver.warmup_iters,
        warmup_factor=solver.warmup_factor,
        steps=solver.steps,
        gamma=solver.gamma,
    )
