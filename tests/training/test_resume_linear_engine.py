"""A resume keeps the linear layers on the engine its run trained with (``ops.gemm_rates``): the process
that resumes measures torch.mm against oneDNN afresh and may answer otherwise (a busy machine), and the
two engines round differently (~1e-6 at these sizes), which training compounds."""

import io

import pytest
import torch
from torch import nn

from maskrcnn.config import load_config
from maskrcnn.engine.trainer import build_trainer
from maskrcnn.modeling.fuse import use_onednn_linear
from maskrcnn.ops.onednn_linear import OneDnnLinear, onednn_linear_available

pytestmark = pytest.mark.skipif(not onednn_linear_available(), reason="no oneDNN linear in this build")


class Wide(nn.Module):
    """A linear layer over 256 features: wide enough for oneDNN and torch.mm to round apart (the toy's
    8-feature one rounds alike)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 32)
        self.out = nn.Linear(32, 2)

    def forward(self, images, targets, generator=None):
        x = torch.relu(self.conv(torch.stack(images)))  # (N, 16, 12, 12)
        feat = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)  # (N, 256)
        pred = self.out(torch.relu(self.fc(feat)))  # (N, 2)
        return {"loss": ((pred - torch.stack([t["goal"] for t in targets])) ** 2).mean()}


def _run(toy, out, *, onednn: bool, stop_before: int = -1):
    torch.manual_seed(0)
    model = Wide()
    if onednn:  # as place_for_training does where torch.mm measured slower than oneDNN
        use_onednn_linear(model)
    cfg = load_config("demo", {"solver.iters": 4, "solver.checkpoint_period": 2, "solver.log_period": 1,
                               "solver.warmup_iters": 1, "solver.lr": 0.1})
    trainer = build_trainer(cfg, model, make_batches=toy.crashing_batches_fn(stop_before=stop_before),
                            output_dir=out, class_names=["__background__", "x"], tensorboard=False,
                            plot=False, log_stream=io.StringIO())
    return trainer, model


@pytest.mark.parametrize("first", ["onednn", "plain"])
def test_resume_keeps_the_checkpoints_linear_engine(tmp_path, toy, first):
    whole, _ = _run(toy, tmp_path / "whole", onednn=first == "onednn")
    whole.train()
    crashed, _ = _run(toy, tmp_path / "run", onednn=first == "onednn", stop_before=3)
    with pytest.raises(RuntimeError, match="crash"):
        crashed.train()
    # the resuming process measured the other way
    resumed, model = _run(toy, tmp_path / "run", onednn=first != "onednn")
    assert resumed.resume() and resumed.iteration == 2
    assert any(isinstance(m, OneDnnLinear) for m in model.modules()) == (first == "onednn")
    assert "as the run's checkpoint was trained" in resumed.logger.stream.getvalue()
    resumed.train()
    a = torch.load(tmp_path / "whole" / "model_final.pth", weights_only=False)["model"]
    b = torch.load(tmp_path / "run" / "model_final.pth", weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # bit-exact, as uninterrupted
