"""Trainer pieces in-process: optimizer groups, AMP + clipping, RNG state, logger, train command errors."""

import copy
import io
import json
import random
import sys

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn.cli import main as cli_main
from maskrcnn.config import load_config
from maskrcnn.engine.logger import TrainingLogger, format_seconds, read_metrics, truncate_metrics
from maskrcnn.engine.trainer import build_optimizer, build_trainer, get_rng_state, set_rng_state


def test_optimizer_weight_decay_groups():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1, bias=False))
    model[2].weight.requires_grad_(False)  # frozen: left out
    cfg = load_config(
        "demo",
        {
            "solver.weight_decay": 1e-4,
            "solver.weight_decay_norm": 0.0,
            "solver.weight_decay_bias": 0.0,
            "solver.momentum": 0.9,
        },
    )
    opt = build_optimizer(model, cfg)
    by_wd = {g["weight_decay"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_wd[1e-4] == {id(model[0].weight)}
    assert by_wd[0.0] == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert all(g["momentum"] == 0.9 and g["lr"] == cfg.solver.lr for g in opt.param_groups)
    assert all(g["fused"] for g in opt.param_groups)  # one pass per tensor on the CPU

    # the fused update is the textbook one: three steps equal the default (foreach) SGD's
    reference = copy.deepcopy(model)
    groups = [{"params": [dict(reference.named_parameters())[n] for n, q in model.named_parameters()
                          if any(q is p for p in g["params"])], "weight_decay": g["weight_decay"]}
              for g in opt.param_groups]
    ref_opt = torch.optim.SGD(groups, lr=cfg.solver.lr, momentum=0.9, foreach=True)
    for step in range(3):
        for m, o in ((model, opt), (reference, ref_opt)):
            torch.manual_seed(step)
            o.zero_grad()
            m(torch.randn(2, 3, 8, 8)).square().mean().backward()
            o.step()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_rng_state_round_trip_is_plain():
    state = get_rng_state()
    a = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    torch.load(buf, weights_only=True)  # no pickled numpy / python objects


def test_amp_bfloat16_and_grad_clipping_on_cpu(tmp_path, toy):
    cfg = load_config(
        "demo",
        {
            "solver.iters": 4,
            "solver.amp": True,
            "solver.clip_grad_norm": 0.01,
            "solver.checkpoint_period": 0,
            "solver.warmup_iters": 0,
            "solver.lr": 1.0,
            "solver.momentum": 0.0,
            "solver.weight_decay": 0.0,
        },
    )
    model = toy.Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    class Spy(nn.Module):  # records the autocast dtype the forward runs under
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, images, targets, generator=None):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return self.inner(images, targets)

    trainer = build_trainer(
        cfg,
        Spy(),
        make_batches=toy.make_batches_fn(rank=0, world_size=1, per_rank=2, nan_at=-1),
        output_dir=tmp_path,
        class_names=["__background__", "x"],
        tensorboard=False,
        plot=False,
        log_stream=io.StringIO(),
    )
    trainer.train()
    assert seen == [torch.bfloat16] * 4
    # lr 1, no momentum: each step moves the weights by at most the clipped norm
    step = torch.cat(
        [
            (model.state_dict()[k] - before[k]).flatten().float()
            for k in before
            if "running" not in k and "num_batches" not in k
        ]
    )
    assert 0 < step.norm().item() <= 4 * 0.01 + 1e-6


def test_logger_records_progress_and_curves(tmp_path):
    stream = io.StringIO()
    log = TrainingLogger(output_dir=tmp_path, max_iter=4, log_period=2, tensorboard=False, stream=stream)
    for i in range(1, 5):
        log.log_iteration(i, {"loss_a": 1.0 / i, "loss_b": 0.5}, lr=0.01, iter_time=0.5)
    log.log_eval(4, {"bbox": {"AP": 40.0, "AP50": 60.0, "per_category": {"a": 1.0}}, "segm": {"AP": 35.0}})
    png = log.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("iter 2/4 loss=1.0000 a=0.500 b=0.500 lr=1.00e-02 0.500s/it eta 0:01")
    assert lines[1].startswith("iter 4/4 ") and "eta 0:00" in lines[1]
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [2, 4, 4]
    assert records[2] == {"iteration": 4, "bbox/AP": 40.0, "bbox/AP50": 60.0, "segm/AP": 35.0}
    if png is not None:  # matplotlib installed
        assert png.stat().st_size > 1000
    # a torn last line (crash mid-write) is skipped; truncation keeps records up to an iteration
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 5, "lo')
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 3
    truncate_metrics(tmp_path / "metrics.jsonl", 2)
    assert [json.loads(x)["iteration"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2]
    assert format_seconds(3725) == "1:02:05" and format_seconds(65) == "1:05"


def test_train_command_rejects_bad_arguments(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last_checkpoint").write_text("model_0000010.pth\n")
    base = [
        "train",
        "--config",
        "demo",
        "--train-json",
        str(tmp_path / "t.json"),
        "--train-images",
        str(tmp_path),
    ]
    assert cli_main(base + ["--output", str(run)]) == 1
    assert "already holds a training run" in capsys.readouterr().err
    # --val-images alone is refused (--val-json alone finds its images from the layout, as --train-json)
    assert cli_main(base + ["--output", str(tmp_path / "new"), "--val-images", str(tmp_path)]) == 1
    assert "--val-json and --val-images go together" in capsys.readouterr().err
    assert cli_main(base + ["--output", str(tmp_path / "new"), "--set", "solver.nope=1"]) == 1
    assert "solver.nope" in capsys.readouterr().err
    assert cli_main(base + ["--output", str(tmp_path / "new")]) == 1  # the JSON does not exist
    assert "t.json" in capsys.readouterr().err


def test_zero_iterations_still_writes_a_final_checkpoint(tmp_path, toy):
    # a config read to train with refuses solver.iters 0 (test_train_messages.py); the Trainer, a library
    # piece, still takes max_iter 0 and writes the initial weights
    cfg = load_config("demo", {"solver.checkpoint_period": 0})
    cfg.solver.iters = 0
    model = toy.Toy()
    trainer = build_trainer(
        cfg,
        model,
        make_batches=toy.make_batches_fn(rank=0, world_size=1, per_rank=2, nan_at=-1),
        output_dir=tmp_path,
        class_names=["__background__", "x"],
        tensorboard=False,
        plot=False,
        log_stream=io.StringIO(),
    )
    assert trainer.train()["iteration"] == 0
    assert (tmp_path / "model_final.pth").is_file()


def test_resume_falls_back_to_an_older_checkpoint_when_the_newest_is_corrupt(tmp_path, toy):
    cfg = load_config("demo", {"solver.iters": 4, "solver.checkpoint_period": 2, "solver.log_period": 1})

    def trainer():
        return build_trainer(
            cfg,
            toy.Toy(),
            make_batches=toy.make_batches_fn(rank=0, world_size=1, per_rank=2, nan_at=-1),
            output_dir=tmp_path,
            class_names=["__background__", "x"],
            tensorboard=False,
            plot=False,
            log_stream=io.StringIO(),
        )

    trainer().train()
    newest = tmp_path / "model_0000004.pth"
    newest.write_bytes(newest.read_bytes()[:100])
    t = trainer()
    assert t.resume() and t.iteration == 2
    assert "skipped" in t.logger.stream.getvalue() and "model_0000004.pth" in t.logger.stream.getvalue()
    assert [r["iteration"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


@pytest.mark.parametrize("matmul", ["blas", "onednn"])
def test_place_for_training_changes_the_layout_not_the_values(monkeypatch, matmul):
    """On the CPU the training model's 4-d weights are channels_last (oneDNN, RoIAlign read in place),
    and where torch.mm lags oneDNN (pinned here both ways) its linear layers run on oneDNN: the same
    losses and gradients as the model as built, and a state dict that loads either way."""
    from tiny_model import TINY  # tests/ is on the path

    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.engine.training import place_for_training
    from maskrcnn.modeling.mask_rcnn import build_model
    from maskrcnn.ops.onednn_linear import OneDnnLinear, onednn_linear_available

    monkeypatch.setenv("MASKRCNN_MATMUL", matmul)
    torch.manual_seed(0)
    plain = build_model(apply_overrides(PRESETS["r18_fpn"](), TINY)).train()
    placed = place_for_training(copy.deepcopy(plain), "cpu")
    convs = [m.weight for m in placed.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    swapped = [m for m in placed.modules() if isinstance(m, OneDnnLinear)]
    # fc6, fc7, the class scores and the box deltas
    assert len(swapped) == (4 if matmul == "onednn" and onednn_linear_available() else 0)
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 72, 64, generator=g)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1]),
                "masks": torch.zeros(1, *img.shape[1:], dtype=torch.uint8)} for img in images]
    for t in targets:
        t["masks"][0, 6:50, 4:40] = 1
    grads = []
    for model in (plain, placed):
        losses = model(images, targets, generator=torch.Generator().manual_seed(2))
        sum(losses.values()).backward()
        grads.append(({k: float(v) for k, v in losses.items()},
                      {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    assert grads[0][0].keys() == grads[1][0].keys()
    for k in grads[0][0]:
        assert abs(grads[0][0][k] - grads[1][0][k]) <= 1e-5 * max(1.0, abs(grads[0][0][k])), k
    assert grads[0][1].keys() == grads[1][1].keys()
    for n, gp in grads[0][1].items():
        # float32 rounding of two kernel orders: absolute error at the scale of the tensor's largest entry
        torch.testing.assert_close(grads[1][1][n], gp, rtol=1e-4, atol=1e-6 * max(1.0, float(gp.abs().max())),
                                   msg=n)
    plain.load_state_dict(placed.state_dict())  # channels_last tensors load into the plain model


def test_logger_says_once_that_tensorboard_is_missing(tmp_path, monkeypatch):
    """Without the optional tensorboard package the run was silently left without TensorBoard logs: the
    logger says so once, at the first iteration (a run refused before it says nothing more than why), with
    the extra to install, and training logs go on."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import -> ImportError
    stream = io.StringIO()
    log = TrainingLogger(output_dir=tmp_path, max_iter=2, log_period=1, stream=stream)
    for i in (1, 2):
        log.log_iteration(i, {"loss_a": 1.0}, lr=0.01, iter_time=0.5)
    log.close(plot=False)
    lines = stream.getvalue().splitlines()
    note = ("TensorBoard not installed (pip install 'maskrcnn[tensorboard]'): curves in metrics.jsonl and "
            "curves.png only")
    assert lines.count(note) == 1 and lines[0] == note
    assert [r["iteration"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]
    assert not (tmp_path / "tensorboard").exists()
    # tensorboard=False (asked for none): no word of it
    quiet = io.StringIO()
    TrainingLogger(output_dir=tmp_path / "q", max_iter=2, tensorboard=False, stream=quiet).close(plot=False)
    assert quiet.getvalue() == ""


def test_every_rank_evaluates_without_moving_its_training_rng(tmp_path, toy):
    # validation is sharded under torchrun: a rank other than 0 evaluates too (its share) and gets nothing
    # back; its torch / numpy / random streams must be as before (exact resume compares them)
    calls = []

    def evaluate(model):
        calls.append(model.training)
        torch.rand(5), np.random.rand(5), random.random()  # as augmentation or sampling would
        return None  # a rank other than 0: the results are rank 0's

    cfg = load_config("demo", {"solver.checkpoint_period": 0})
    trainer = build_trainer(cfg, toy.Toy(), make_batches=toy.make_batches_fn(rank=0, world_size=1, per_rank=2,
                            nan_at=-1), output_dir=tmp_path, class_names=["__background__", "x"],
                            evaluate_fn=evaluate, tensorboard=False, plot=False, log_stream=io.StringIO())
    trainer.is_main = False  # as rank 1
    before = get_rng_state()
    trainer._evaluate()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(before)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert calls == [False]  # called (in eval mode) on that rank
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_a_non_finite_loss_is_told_by_the_first_rank_that_saw_it(tmp_path, toy, monkeypatch):
    # every rank stops on a NaN loss at the same step (one all-reduce); only the first rank whose loss was
    # not finite names its terms, the others raise one shared line (printed once, by rank 0): 8 GPUs gone
    # NaN print two lines, not eight
    from maskrcnn.engine import distributed as du
    from maskrcnn.engine.trainer import NonFiniteLossError

    def trainer_for(nan_at):
        cfg = load_config("demo", {"solver.checkpoint_period": 0})
        return build_trainer(cfg, toy.Toy(), make_batches=toy.make_batches_fn(
            rank=0, world_size=1, per_rank=2, nan_at=nan_at), output_dir=tmp_path,
            class_names=["__background__", "x"], tensorboard=False, plot=False, log_stream=io.StringIO())

    seen = []
    monkeypatch.setattr(du, "first_rank_with", lambda flag, device=None: seen.append(flag) or 1)
    with pytest.raises(NonFiniteLossError) as info:
        trainer_for(-1).train()  # this rank's loss is finite; rank 1's was not
    error = info.value
    assert seen == [False]
    assert str(error).startswith("non-finite loss at iteration 1 on rank 1 (its terms in its own error); ")
    assert du.error_line(du.mark_own(error), "x", rank=0, world_size=8) == "x"
    assert du.error_line(error, "x", rank=3, world_size=8) is None

    monkeypatch.setattr(du, "first_rank_with", lambda flag, device=None: 0 if flag else None)
    with pytest.raises(NonFiniteLossError) as info:
        trainer_for(2).train()  # this rank is the first whose loss was not finite: its terms, its own
    error = info.value
    assert "non-finite loss at iteration 2 (rank 0): " in str(error) and "nan" in str(error)
    assert not getattr(error, "maskrcnn_shared_error", False)
