"""A resume keeps the linear layers on the engine its run trained with (``ops.gemm_rates``): the process
that resumes measures torch.mm against oneDNN afresh and may answer otherwise (a busy machine), and the
two engines round differently (~1e-6 at these sizes), which training compounds."""

import copy
import io

import pytest
import torch
from torch import nn

from maskrcnn.config import load_config
from maskrcnn.engine.trainer import build_trainer
from maskrcnn.modeling.fuse import optimise_for_inference, use_onednn_linear
from maskrcnn.ops import gemm_rates
from maskrcnn.ops.onednn_linear import OneDnnLinear, onednn_linear_available

pytestmark = pytest.mark.skipif(not onednn_linear_available(), reason="no oneDNN linear in this build")


@pytest.fixture(autouse=True)
def unmeasured(monkeypatch):
    """No pin and no measurement of this process's (another test's) unless a test sets one."""
    monkeypatch.delenv(gemm_rates.PIN_VARIABLE, raising=False)
    monkeypatch.setattr(gemm_rates, "_ratios", {})


def _measured(monkeypatch, *, lags: bool) -> None:
    """As if this process had measured torch.mm against oneDNN (a real measurement answers by chance
    on a busy machine)."""
    monkeypatch.setitem(gemm_rates._ratios, torch.get_num_threads(), 3.0 if lags else 1.0)


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


def _run(toy, out, *, onednn: bool, stop_before: int = -1, settings=None, evaluate_fn=None):
    torch.manual_seed(0)
    model = Wide()
    if onednn:  # as place_for_training does where torch.mm measured slower than oneDNN
        use_onednn_linear(model)
    cfg = load_config("demo", {"solver.iters": 4, "solver.checkpoint_period": 2, "solver.log_period": 1,
                               "solver.warmup_iters": 1, "solver.lr": 0.1, **(settings or {})})
    trainer = build_trainer(cfg, model, make_batches=toy.crashing_batches_fn(stop_before=stop_before),
                            output_dir=out, class_names=["__background__", "x"], tensorboard=False,
                            plot=False, log_stream=io.StringIO(), evaluate_fn=evaluate_fn)
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
    log = resumed.logger.stream.getvalue()
    assert "as the run's checkpoint was trained" in log
    assert "measured" not in log  # this process measured nothing: its model was built that way
    resumed.train()
    assert _differing(tmp_path / "whole", tmp_path / "run") == []  # bit-exact, as uninterrupted


def _differing(a_dir, b_dir) -> list:
    a = torch.load(a_dir / "model_final.pth", weights_only=False)["model"]
    b = torch.load(b_dir / "model_final.pth", weights_only=False)["model"]
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def _crashed_at_2(toy, out, *, onednn: bool):
    crashed, _ = _run(toy, out, onednn=onednn, stop_before=3)
    with pytest.raises(RuntimeError, match="crash"):
        crashed.train()


def _is_onednn(model) -> bool:
    return any(isinstance(m, OneDnnLinear) for m in model.modules())


def test_the_resume_says_measured_only_where_this_process_measured(tmp_path, toy, monkeypatch):
    _crashed_at_2(toy, tmp_path / "run", onednn=True)
    _measured(monkeypatch, lags=False)  # as place_for_training built it: plain
    resumed, model = _run(toy, tmp_path / "run", onednn=False)
    assert resumed.resume() and _is_onednn(model)
    assert "this process measured otherwise" in resumed.logger.stream.getvalue()


@pytest.mark.parametrize("first", ["onednn", "plain"])
def test_a_pin_wins_over_the_checkpoints_engine_and_says_the_resume_is_not_exact(tmp_path, toy, monkeypatch,
                                                                                 first):
    whole, _ = _run(toy, tmp_path / "whole", onednn=first == "onednn")
    whole.train()
    _crashed_at_2(toy, tmp_path / "run", onednn=first == "onednn")
    pin = "blas" if first == "onednn" else "onednn"
    monkeypatch.setenv(gemm_rates.PIN_VARIABLE, pin.upper())  # read case-blind
    resumed, model = _run(toy, tmp_path / "run", onednn=pin == "onednn")  # as place_for_training pins it
    assert resumed.resume()
    assert _is_onednn(model) == (pin == "onednn")  # the pin's engine, not the checkpoint's
    log = resumed.logger.stream.getvalue()
    assert f"{gemm_rates.PIN_VARIABLE}={pin}" in log and "not bit-exact" in log
    assert "measured" not in log and "kept for an exact resume" not in log
    resumed.train()
    assert _differing(tmp_path / "whole", tmp_path / "run") != []  # trained on the pinned engine indeed


def test_a_pin_agreeing_with_the_checkpoint_resumes_exactly_and_quietly(tmp_path, toy, monkeypatch):
    _crashed_at_2(toy, tmp_path / "run", onednn=True)
    monkeypatch.setenv(gemm_rates.PIN_VARIABLE, "onednn")
    resumed, model = _run(toy, tmp_path / "run", onednn=True)
    assert resumed.resume() and _is_onednn(model)
    assert "linear layers" not in resumed.logger.stream.getvalue()


def test_an_older_checkpoint_without_the_engine_resumes_as_chosen_with_a_note(tmp_path, toy):
    _crashed_at_2(toy, tmp_path / "run", onednn=True)
    path = tmp_path / "run" / "model_0000002.pth"
    ckpt = torch.load(path, weights_only=False)
    del ckpt["linear_engine"]  # as written before the engine was recorded
    torch.save(ckpt, path)
    resumed, model = _run(toy, tmp_path / "run", onednn=False)
    assert resumed.resume() and not _is_onednn(model)  # nothing to keep: as this process chose
    log = resumed.logger.stream.getvalue()
    assert "predates the record of its linear layers' engine" in log and "torch.mm" in log
    assert "cannot be checked bit-exact" in log


def test_a_gpu_runs_checkpoint_records_no_engine_and_a_cpu_resume_keeps_its_own(tmp_path, toy):
    trainer, _ = _run(toy, tmp_path / "gpu", onednn=False)
    assert trainer.checkpoint_state()["linear_engine"] == "plain"
    trainer.device = torch.device("cuda")  # what the record reads; nothing runs there
    assert trainer.checkpoint_state()["linear_engine"] is None  # nothing was chosen on a GPU
    _crashed_at_2(toy, tmp_path / "run", onednn=False)
    path = tmp_path / "run" / "model_0000002.pth"
    ckpt = torch.load(path, weights_only=False)
    ckpt["linear_engine"] = None  # as a GPU run writes it
    torch.save(ckpt, path)
    resumed, model = _run(toy, tmp_path / "run", onednn=True)  # a CPU that measured oneDNN faster
    assert resumed.resume() and _is_onednn(model)  # not forced onto the GPU run's torch.mm
    assert "linear layers" not in resumed.logger.stream.getvalue()


def test_evaluations_follow_the_training_models_engine_after_the_resume_switched_it(tmp_path, toy,
                                                                                   monkeypatch):
    _crashed_at_2(toy, tmp_path / "run", onednn=False)
    _measured(monkeypatch, lags=True)  # this process measured oneDNN faster: place_for_training's choice
    seen = []

    def evaluate(model):  # as make_evaluate_fn does: an optimised copy, its engines chosen as measured
        seen.append((_is_onednn(model), optimise_for_inference(copy.deepcopy(model)).onednn_linears,
                     gemm_rates.matmul_lags_onednn()))
        return None

    resumed, model = _run(toy, tmp_path / "run", onednn=True, settings={"solver.eval_period": 2},
                          evaluate_fn=evaluate)
    assert resumed.resume() and not _is_onednn(model)  # back on the checkpoint's torch.mm
    resumed.train()
    assert seen and all(s == (False, 0, False) for s in seen), seen  # the copy on torch.mm too
    assert gemm_rates.matmul_lags_onednn()  # outside the evaluations: this process's measurement again
