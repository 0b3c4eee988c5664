"""A toy model trained by the real Trainer, run as a subprocess by the trainer tests.

The toy loss draws from every RNG the trainer must restore (torch, numpy, python), so an exact resume
is only exact if all of them are checkpointed. Usage:
    python toy_train.py --out DIR --iters 20 --period 5 [--resume] [--stall-at K] [--nan-at K] [--lr LR]
                        [--set KEY=VALUE ...] [--scripted-eval IT:AP,IT:AP,...]
``--stall-at K``: once iteration K is finished (logged, and checkpointed if K is a multiple of the
period), print ``STALLED AFTER ITERATION K`` and block until killed: a test that kills the process then
knows exactly how far it got, whatever the machine's load.
Under torchrun-style environment variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) it trains with
DDP on gloo, each rank on its own shard of the batches.
``--scripted-eval``: an evaluation (run by every rank, rank 0's result used, every
``solver.eval_period``) whose segm/AP after iteration IT is AP: the best checkpoint and early stopping
without a real evaluation.
"""

import argparse
import itertools
import random
import signal
import sys

import numpy as np
import torch
from torch import nn

from maskrcnn.config import load_config, parse_set_args
from maskrcnn.engine import distributed as du
from maskrcnn.engine.trainer import build_trainer


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, images, targets, generator=None):
        x = torch.stack(images)  # (N, 3, H, W)
        feat = torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3))  # (N, 8)
        out = self.fc(feat)  # (N, 2)
        goal = torch.stack([t["goal"] for t in targets])  # (N, 2)
        pick = torch.randperm(8)[:4]  # global torch RNG
        pick = pick[torch.randperm(4, generator=generator)]  # the trainer's per-iteration generator
        jitter = 1.0 + 0.1 * float(np.random.rand()) + 0.1 * random.random()  # numpy and python RNGs
        loss_b = (feat[:, pick] ** 2).mean() * jitter
        if any(bool(t["nan"]) for t in targets):
            loss_b = loss_b * float("nan")
        return {"loss_a": ((out - goal) ** 2).mean(), "loss_b": loss_b}


STALL_MESSAGE = "STALLED AFTER ITERATION {}"


def make_batches_fn(*, rank, world_size, per_rank, nan_at, stall_at=-1):
    def make_batches(start_iter):
        torch.empty((), dtype=torch.int64).random_()  # as a DataLoader iterator does when it starts
        for it in itertools.count(start_iter):
            if it == stall_at:  # the trainer asks for iteration it + 1's batch once `it` is done
                print(STALL_MESSAGE.format(it), flush=True)
                while True:
                    signal.pause()  # until killed
            g = torch.Generator().manual_seed(1000 * it + rank)  # the batch depends on (iteration, rank) only
            images = [torch.rand(3, 12, 12, generator=g) for _ in range(per_rank)]
            targets = [
                {"goal": torch.rand(2, generator=g), "nan": torch.tensor(it + 1 == nan_at)}
                for _ in range(per_rank)
            ]
            yield images, targets

    return make_batches


def crashing_batches_fn(*, stop_before: int):
    """One process's batches (``make_batches_fn``, 2 per step) that fail, as a crash (a kill leaves the
    folder as it was), when iteration ``stop_before`` is asked for (-1: never)."""
    make = make_batches_fn(rank=0, world_size=1, per_rank=2, nan_at=-1)

    def batches(start_iter):
        for it, batch in enumerate(make(start_iter), start=start_iter + 1):
            if it == stop_before:
                raise RuntimeError("crash")
            yield batch

    return batches


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--period", type=int, default=5)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--stall-at", type=int, default=-1)
    p.add_argument("--nan-at", type=int, default=-1)
    p.add_argument("--lr", type=float, default=0.1, help="100: the loss explodes yet stays finite (clipping)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="more config overrides")
    p.add_argument("--dump-weights", default="", help="each rank saves its final weights to PREFIX{rank}.pt")
    p.add_argument("--scripted-eval", default="", metavar="IT:AP,...", help="segm/AP by iteration")
    args = p.parse_args(argv)

    rank, world_size, device = du.init_distributed("cpu")
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    cfg = load_config(
        "demo",
        {
            "solver.iters": args.iters,
            "solver.checkpoint_period": args.period,
            "solver.log_period": 1,
            "solver.lr": args.lr,
            "solver.warmup_iters": 3,
            "solver.steps": (args.iters // 2,),
            "solver.batch_size": 4,
            **parse_set_args(args.set),
        },
    )
    model = Toy()
    pairs = (item.split(":") for item in args.scripted_eval.split(",") if item)
    scripted = {int(k): float(v) for k, v in pairs}
    box = []

    def evaluate(model):
        return {"segm": {"AP": scripted[box[0].iteration]}}

    trainer = build_trainer(
        cfg,
        model,
        output_dir=args.out,
        class_names=["__background__", "thing"],
        device=device,
        make_batches=make_batches_fn(
            rank=rank, world_size=world_size, per_rank=4 // world_size, nan_at=args.nan_at,
            stall_at=args.stall_at,
        ),
        tensorboard=False,
        plot=False,
        evaluate_fn=evaluate if scripted else None,
    )
    box.append(trainer)
    if args.resume:
        trainer.resume()
    try:
        trainer.train()
        if args.dump_weights:
            torch.save(model.state_dict(), f"{args.dump_weights}{rank}.pt")
    except BaseException:
        du.cleanup(wait_for_peers=False)
        raise
    du.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
