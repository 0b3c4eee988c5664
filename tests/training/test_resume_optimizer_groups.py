"""The refusal of a resume whose optimizer state does not fit the run's parameter groups
(``Trainer.load_training_state``): it names each side's groups, counted over the parameters trained
(frozen ones are in no group), and the keys that group them, in the caller's words. A resume whose
weight decays keep the groups goes on with the new values."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from maskrcnn.config import load_config
from maskrcnn.engine.trainer import Trainer, build_optimizer


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    model[0].requires_grad_(False)  # a frozen part: its 2 tensors are in no group
    return model


def _state(model, **solver):
    cfg = load_config("demo", {f"solver.{k}": v for k, v in solver.items()})
    optimizer = build_optimizer(model, cfg)
    model(torch.ones(1, 3, 5, 5)).sum().backward()
    optimizer.step()  # momentum buffers: a real state to load
    return optimizer


def _stand_in(model, optimizer, caller):
    # what load_training_state reads before the refusal: the model, the optimizer and who asks
    return SimpleNamespace(model=model, optimizer=optimizer, caller=caller,
                           _resume=Trainer._resume.fget(SimpleNamespace(caller=caller)))


@pytest.mark.parametrize("caller,resume,init", [("maskrcnn train", "--resume", "--init"),
                                                ("maskrcnn.train()", "resume=True", "init=")])
def test_groups_split_by_a_new_weight_decay_are_named_and_counted(caller, resume, init):
    model = _model()
    saved = _state(model, weight_decay=1e-4, weight_decay_norm=1e-4)  # one group: 6 trained tensors
    ckpt = {"model": model.state_dict(), "optimizer": saved.state_dict()}
    now = build_optimizer(model, load_config("demo", {"solver.weight_decay": 1e-4,
                                                      "solver.weight_decay_norm": 0.0}))
    assert [len(g["params"]) for g in now.param_groups] == [2, 4]  # the claim the line makes
    with pytest.raises(ValueError) as caught:
        Trainer.load_training_state(_stand_in(model, now, caller), ckpt)
    assert str(caught.value) == (
        f"{resume}: the checkpoint's optimizer state does not fit this run's parameter groups (the "
        "checkpoint's: 6 tensors at weight decay 0.0001; this run's: 2 tensors at weight decay 0, 4 at "
        "0.0001): solver.weight_decay, weight_decay_norm and weight_decay_bias group the parameters: keep "
        f"the run's values, or start a new run with {init}")


def test_new_weight_decays_that_keep_the_groups_are_applied():
    model = _model()
    saved = _state(model, weight_decay=1e-4, weight_decay_norm=0.0)
    ckpt = {"model": model.state_dict(), "optimizer": saved.state_dict(), "scheduler": None}
    now = build_optimizer(model, load_config("demo", {"solver.weight_decay": 5e-4,
                                                      "solver.weight_decay_norm": 0.0}))
    stand_in = _stand_in(model, now, "maskrcnn train")
    stand_in.scheduler = SimpleNamespace(load_state_dict=lambda state: None)
    with pytest.raises(KeyError):  # past the optimizer: the stand-in has no more of the checkpoint
        Trainer.load_training_state(stand_in, ckpt)
    assert [g["weight_decay"] for g in now.param_groups] == [0.0, 5e-4]
    assert now.state_dict()["state"].keys() == saved.state_dict()["state"].keys()
