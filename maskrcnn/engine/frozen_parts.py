"""What a training run leaves untrained, said in one line at its start (``build_training``).

Read from the model itself, not the config: a parameter is frozen when its ``requires_grad`` is False
(``model.freeze_at`` freezes the backbone's stem and res2..res{k} that way), and a batch norm is frozen
when it is a ``FrozenBatchNorm2d`` (``model.norm=frozen_bn``: statistics and affine fixed buffers, not
parameters, so ``requires_grad`` cannot show them). Example:

    frozen: backbone stem, res2 (model.freeze_at=2); batch norm frozen (53 FrozenBatchNorm2d layers);
    training 43.7M of 43.9M parameters

A part frozen whole reads "rpn (all)"; a backbone frozen whole by the key, "backbone (all,
model.freeze_at=5)".

``untrained_frozen_refusal``: freezing only makes sense over weights that were trained: a run that starts
from no weights (no ``model.init_weights`` / ``--init``) with ``model.freeze_at`` > 0 keeps the stem and
res2 random for the whole run, and ``frozen_bn`` with nothing loaded fixes every batch norm at mean 0, var 1
(random features are never normalised: the losses explode), as does ``model.norm=none`` (the same network
with a conv bias). Such a run is refused before anything trains, its way out spelt for who asked
(``caller_words.CALLERS``, the one table of how each caller's options are named).
"""

from __future__ import annotations

from torch import nn

from maskrcnn.engine.caller_words import CALLERS
from maskrcnn.modeling.layers import FrozenBatchNorm2d

# backbone children in order: freeze_at k freezes the first k
_STAGES = ("stem", "res2", "res3", "res4", "res5")


# the config keys whose value frozen_bn makes a norm that nothing can train
_NORM_KEYS = ("model.norm", "model.fpn_norm", "model.roi_heads.box_head_norm",
              "model.roi_heads.mask_head_norm")

# other sources of the same backbone the README lists for --init (a source of another backbone would
# replace the configured one: model.backbone follows the weights)
_OTHER_SOURCES = {"resnet50": "ImageNetPretrained/MSRA/R-50.pkl, COCO's maskrcnn_resnet50_fpn_coco"}


def _unnormalised(cfg) -> list:
    """(key, why) for the norms a random network cannot train through: ``frozen_bn`` anywhere (with
    nothing loaded it is the identity: mean 0, variance 1) and ``none`` in the backbone (the heads'
    ``none`` is their usual default; the deep backbone is what explodes: measured loss 4.8e10 for
    r50_fpn with model.norm=none, freeze_at 0)."""
    from maskrcnn.config import get_key

    found = [(key, f"{key} frozen_bn fixes batch norm at mean 0, variance 1, so the random features are "
                   "never normalised (the losses explode)")
             for key in _NORM_KEYS if get_key(cfg, key) == "frozen_bn"]
    if cfg.model.norm == "none":
        found.insert(0, ("model.norm", "model.norm none normalises nothing, so the random backbone's "
                                       "activations grow stage by stage (the losses explode)"))
    return found


def untrained_frozen_refusal(cfg, *, config: str = "the config", caller: str = "maskrcnn train") -> str:
    """Why ``cfg`` cannot train as given: it freezes layers (``model.freeze_at`` > 0), freezes batch norm
    (``frozen_bn`` in one of ``_NORM_KEYS``) or normalises nothing in the backbone (``model.norm=none``)
    and starts from no weights (``model.init_weights`` empty); "" when it can. ``config``: how the
    message names the config (``training.config_phrase``); ``caller``: a key of ``CALLERS``, how the
    way out is spelt (``--init`` for maskrcnn train, ``init=`` for ``maskrcnn.train()``). A resumed run
    is not checked (its checkpoint holds trained weights)."""
    from maskrcnn.interop.download import PUBLISHED

    m = cfg.model
    if m.init_weights:
        return ""
    norms = _unnormalised(cfg)
    if m.freeze_at <= 0 and not norms:
        return ""
    what = []
    if m.freeze_at > 0:
        stages = ", ".join(_STAGES[:m.freeze_at])
        what.append(f"model.freeze_at={m.freeze_at} keeps the backbone's {stages} at their random "
                    "initialisation for the whole run")
    what += [why for _, why in norms]
    missing, init_form, set_form = CALLERS.get(caller, CALLERS["maskrcnn train"])
    scratch = {key: "bn" for key, _ in norms}
    if m.freeze_at:
        scratch["model.freeze_at"] = 0
    changes = (set_form.format(kv=" ".join(f"{k}={v}" for k, v in scratch.items())) if "{kv}" in set_form
               else set_form.format(dict="{" + ", ".join(f"{k!r}: {v!r}" for k, v in scratch.items()) + "}"))
    if m.backbone in PUBLISHED:
        others = ", ".join(filter(None, (_OTHER_SOURCES.get(m.backbone), "a checkpoint of yours")))
        start = (f"Start from ImageNet weights with {init_form.format(w=m.backbone)} (or other weights "
                 f"of a {m.backbone}: {others}), ")
    else:
        start = (f"No ImageNet {m.backbone} is published: start from a checkpoint of yours with "
                 f"{init_form.format(w='FILE')}, ")
    given = (", or pass weights_given=True when you load trained weights into trainer.model yourself"
             if caller == "build_training" else "")
    frozen = m.freeze_at > 0 or any(key != "model.norm" or m.norm != "none" for key, _ in norms)
    but = ("freezes parts only pretrained weights make sense of" if frozen else
           "normalises nothing, which only pretrained weights train through")
    return (f"{config} starts from random weights ({missing}) but {but}: {'; '.join(what)}. {start}or train "
            f"from scratch with {changes}{given}")


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
