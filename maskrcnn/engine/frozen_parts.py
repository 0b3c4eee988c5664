"""What a training run leaves untrained, said in one line at its start (``build_training``).

Read from the model itself, not the config: a parameter is frozen when its ``requires_grad`` is False
(``model.freeze_at`` freezes the backbone's stem and res2..res{k} that way), and a batch norm is frozen
when it is a ``FrozenBatchNorm2d`` (``model.norm=frozen_bn``: statistics and affine fixed buffers, not
parameters, so ``requires_grad`` cannot show them). Example:

    frozen: backbone stem, res2 (model.freeze_at=2); batch norm frozen (53 FrozenBatchNorm2d layers);
    training 43.7M of 43.9M parameters

A part frozen whole reads "rpn (all)"; a backbone frozen whole by the key, "backbone (all,
model.freeze_at=5)".
"""

from __future__ import annotations

from torch import nn

from maskrcnn.modeling.layers import FrozenBatchNorm2d

# backbone children in order: freeze_at k freezes the first k
_STAGES = ("stem", "res2", "res3", "res4", "res5")


def _million(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n:,}"


def frozen_line(model: nn.Module, *, freeze_at=None) -> str:
    """One line naming the frozen parts of ``model`` (an unwrapped module); ``freeze_at``: the config's
    value, shown beside the backbone's frozen stages so the user sees which key did it."""
    frozen, parts = [], []
    for name, child in model.named_children():
        params = list(child.parameters())
        if not params:
            continue
        stages = [s for s in _STAGES if hasattr(child, s)] if name == "backbone" else []
        if all(not p.requires_grad for p in params):
            # the whole backbone (freeze_at=5 with FPN, 4 with C4's res5 head) still says which key did it
            by_key = stages and freeze_at is not None and freeze_at >= len(stages)
            parts.append(f"{name} (all, model.freeze_at={freeze_at})" if by_key else f"{name} (all)")
            continue
        stopped = [s for s in stages if all(not p.requires_grad for p in getattr(child, s).parameters())]
        if stopped:
            why = f" (model.freeze_at={freeze_at})" if freeze_at is not None else ""
            parts.append(f"{name} {', '.join(stopped)}{why}")
        rest = [n for n, p in child.named_parameters() if not p.requires_grad
                and n.split(".", 1)[0] not in stopped]
        if rest:
            parts.append(f"{len(rest)} more {name} tensors")
    frozen_bn = sum(1 for m in model.modules() if isinstance(m, FrozenBatchNorm2d))
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen.append("frozen: " + (", ".join(parts) if parts else "no parameters"))
    if frozen_bn:
        frozen.append(f"batch norm frozen ({frozen_bn} FrozenBatchNorm2d layers)")
    frozen.append(f"training {_million(trained)} of {_million(total)} parameters")
    return "; ".join(frozen)
