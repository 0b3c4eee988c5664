"""Gradient accumulation (``solver.accumulate``): micro-batches, their gradients, DDP's no_sync, resume."""

import contextlib
import copy
import io
import random

import numpy as np
import pytest
import torch
from tiny_model import TINY, build_tiny, small_training  # tests/ is on the path
from torch import nn

from maskrcnn.config import apply_overrides, load_config
from maskrcnn.engine.logger import read_metrics
from maskrcnn.engine.trainer import build_trainer

ONE_STEP = {  # one plain SGD step: the weights move by exactly -lr x the gradient
    "solver.iters": 1, "solver.lr": 0.1, "solver.momentum": 0.0, "solver.weight_decay": 0.0,
    "solver.warmup_iters": 0, "solver.checkpoint_period": 0, "solver.log_period": 1,
}


def _trainer(cfg, model, make_batches, out):
    return build_trainer(cfg, model, make_batches=make_batches, output_dir=out,
                         class_names=["__background__", "a", "b"], tensorboard=False, plot=False,
                         log_stream=io.StringIO())


def _repeat(batch):
    def make_batches(start_iter):
        while True:
            yield batch
    return make_batches


class PerImageMean(nn.Module):
    """A loss that is a mean over images and nothing else: any split into equal micro-batches has the
    full batch's gradient."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, images, targets, generator=None):
        out = self.fc(torch.stack(images).mean(dim=(2, 3)))  # (N, 2)
        goal = torch.stack([t["goal"] for t in targets])  # (N, 2)
        return {"loss_fit": ((out - goal) ** 2).mean()}


def test_two_micro_batches_of_one_equal_one_batch_of_two(tmp_path):
    g = torch.Generator().manual_seed(0)
    batch = ([torch.rand(3, 4, 4, generator=g) for _ in range(2)], [{"goal": torch.rand(2, generator=g)}
                                                                   for _ in range(2)])
    torch.manual_seed(0)
    start = PerImageMean()
    runs = {}
    for k in (1, 2):
        model = copy.deepcopy(start)
        cfg = load_config("demo", {**ONE_STEP, "solver.batch_size": 2, "solver.accumulate": k})
        _trainer(cfg, model, _repeat(batch), tmp_path / str(k)).train()
        runs[k] = (model, read_metrics(tmp_path / str(k) / "metrics.jsonl")[0]["loss_fit"])
    (m1, loss1), (m2, loss2) = runs[1], runs[2]
    for p0, p1, p2 in zip(start.parameters(), m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p2.grad, p1.grad, rtol=0, atol=1e-7)
        torch.testing.assert_close(p2.detach(), p1.detach(), rtol=0, atol=1e-8)
        assert not torch.equal(p2, p0)  # the step was taken
    assert loss2 == pytest.approx(loss1, rel=1e-6)  # logged: the mean of the micro-batches' losses


def _sample(i):
    """A 64 x 64 image with two boxes and their masks (targets as the model takes them)."""
    g = torch.Generator().manual_seed(i)
    boxes = torch.tensor([[8.0, 8.0, 40.0, 36.0], [30.0, 20.0, 60.0, 60.0]]) + i
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        masks[k, y1:y2, x1:x2] = True
    target = {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks}
    return torch.rand(3, 64, 64, generator=g), target


def test_mask_rcnn_gradient_is_the_mean_of_the_micro_batch_gradients(tmp_path):
    # Its losses are normalised per micro-batch (sampled anchors and RoIs, positive RoIs for the masks):
    # what the trainer must give is the mean of the two batch-1 gradients, summed here by hand.
    overrides = {**TINY, **small_training(64), "model.roi_heads.mask_head_dim": 16,
                 "model.rpn.batch_size_per_image": 32, "model.roi_heads.batch_size_per_image": 16}
    start, cfg = build_tiny(overrides)
    start.train()
    images, targets = zip(*(_sample(i) for i in range(2)))
    by_hand = copy.deepcopy(start)
    generator = torch.Generator().manual_seed(0)  # the trainer's for seed 0, iteration 0, rank 0
    parts = []
    for i in range(2):
        losses = by_hand([images[i]], [targets[i]], generator=generator)
        (sum(losses.values()) / 2).backward()
        parts.append({k: float(v.detach()) for k, v in losses.items()})

    model = copy.deepcopy(start)
    cfg = apply_overrides(cfg, {**ONE_STEP, "solver.batch_size": 2, "solver.accumulate": 2})
    _trainer(cfg, model, _repeat((list(images), list(targets))), tmp_path).train()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for (name, p), q in zip(trained, (q for q in by_hand.parameters() if q.requires_grad)):
        assert torch.equal(p.grad, q.grad), name
    assert all(p.grad.abs().sum() > 0 for n, p in trained if "head" in n)  # every head had a gradient
    record = read_metrics(tmp_path / "metrics.jsonl")[0]
    for key in parts[0]:  # logged: the iteration's mean
        assert record[key] == pytest.approx((parts[0][key] + parts[1][key]) / 2, rel=1e-6), key


class NoSyncSpy(nn.Module):
    """Stands for DDP: records whether each micro-batch's forward and backward ran inside ``no_sync``."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.syncing, self.seen = inner, True, []
        inner.fc.weight.register_hook(lambda grad: self.seen.append(("backward", self.syncing)))

    @contextlib.contextmanager
    def no_sync(self):
        self.syncing = False
        try:
            yield
        finally:
            self.syncing = True

    def forward(self, images, targets, generator=None):
        self.seen.append(("forward", self.syncing))
        return self.inner(images, targets)


def test_gradients_are_all_reduced_in_the_last_micro_batch_only(tmp_path):
    g = torch.Generator().manual_seed(1)
    batch = ([torch.rand(3, 4, 4, generator=g) for _ in range(6)],
             [{"goal": torch.rand(2, generator=g)} for _ in range(6)])
    model = PerImageMean()
    cfg = load_config("demo", {**ONE_STEP, "solver.iters": 2, "solver.batch_size": 6, "solver.accumulate": 3})
    trainer = _trainer(cfg, model, _repeat(batch), tmp_path)
    trainer.ddp_model = spy = NoSyncSpy(model)
    trainer.train()
    step = [("forward", False), ("backward", False)] * 2 + [("forward", True), ("backward", True)]
    assert spy.seen == step * 2


def test_batch_not_divisible_by_accumulate_is_refused(tmp_path):
    with pytest.raises(ValueError, match="solver.batch_size 3 is not divisible by solver.accumulate 2"):
        load_config("demo", {"solver.batch_size": 3, "solver.accumulate": 2})
    with pytest.raises(ValueError, match="solver.accumulate must be a whole number >= 1, got 0"):
        load_config("demo", {"solver.accumulate": 0})
    # a batch from elsewhere (a custom loader) that does not split is named too
    cfg = load_config("demo", {**ONE_STEP, "solver.batch_size": 4, "solver.accumulate": 2})
    batch = ([torch.zeros(3, 4, 4) for _ in range(3)], [{"goal": torch.zeros(2)} for _ in range(3)])
    with pytest.raises(ValueError, match="a batch of 3 images cannot be split into solver.accumulate 2"):
        _trainer(cfg, PerImageMean(), _repeat(batch), tmp_path).train()


def test_resume_with_accumulation_and_cosine_equals_an_uninterrupted_run(tmp_path, toy):
    # toy.Toy draws from the torch, numpy and python RNGs and has batch norm: all must be restored
    cfg = load_config("demo", {"solver.iters": 6, "solver.checkpoint_period": 3, "solver.log_period": 1,
                               "solver.batch_size": 4, "solver.accumulate": 2, "solver.lr": 0.1,
                               "solver.warmup_iters": 2, "solver.lr_schedule": "cosine",
                               "solver.lr_min_factor": 0.1})

    def run(out, stop_at=None, resume=False):
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        model = toy.Toy()
        trainer = _trainer(cfg, model, toy.make_batches_fn(rank=0, world_size=1, per_rank=4, nan_at=-1), out)
        if resume:
            assert trainer.resume() and trainer.iteration == 3
        if stop_at:
            trainer.max_iter = stop_at  # as if killed after the checkpoint at stop_at
        trainer.train()
        return model

    full = run(tmp_path / "full")
    run(tmp_path / "cut", stop_at=3)
    resumed = run(tmp_path / "cut", resume=True)
    a, b = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("full", "cut"))
    assert [r["iteration"] for r in b] == list(range(1, 7))
    def logged(records):
        return [(r["loss_a"], r["loss_b"], r["lr"]) for r in records]

    assert logged(a) == logged(b)
    # the cosine went on from where it stopped (record i: iteration i + 1, at the lr after i steps; past
    # the 2 warm-up iterations, records 2.. fall)
    assert a[-1]["lr"] < a[3]["lr"] < a[2]["lr"]
    for (name, wa), wb in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(wa, wb), name
