"""Interrupted and crashed commands: Ctrl-C, SIGTERM, SIGKILL's leftovers, a full disk.

Signals are simulated in-process at a chosen point (the trainer's flag set from inside the batch
iterator, KeyboardInterrupt raised by a patched step, a write patched to raise OSError(EFBIG)): no real
signal, no timing.
"""

import errno
import json
import os
import signal

import pytest
import torch
from torch import nn

from maskrcnn.config import load_config
from maskrcnn.engine.trainer import build_trainer


class OneWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, images, targets, generator=None):
        return {"loss": ((self.w - 1) ** 2).sum()}


def _trainer(out, *, iters=6, period=2, signal_after=None):
    cfg = load_config("demo", {"solver.iters": iters, "solver.checkpoint_period": period,
                               "solver.warmup_iters": 0, "solver.lr": 0.1, "solver.log_period": 1})
    holder = {}

    def make_batches(start):
        for i in range(start, 10**6):
            if signal_after is not None and i == signal_after[0]:  # as the handler does, after iteration i
                holder["trainer"]._stop_signal = signal_after[1]
            yield [torch.zeros(3, 4, 4)], [{}]

    trainer = build_trainer(cfg, OneWeight(), make_batches=make_batches, output_dir=out,
                            class_names=["bg", "a"], handle_signals=False, tensorboard=False, plot=False)
    holder["trainer"] = trainer
    return trainer


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_train_stopped_by_a_signal_exits_with_128_plus_the_signal(tmp_path, monkeypatch, capsys, signum,
                                                                  status):
    """A stopped run exited 0, so `train ... && next-step` and schedulers took it for a finished one."""
    import maskrcnn.engine.training as training
    from maskrcnn.cli import main

    trainer = _trainer(tmp_path / "run", iters=20, period=100, signal_after=(3, signum))
    monkeypatch.setattr(training, "build_training", lambda cfg, **kw: (trainer, cfg))
    rc = main(["train", "--train-json", "t.json", "--train-images", str(tmp_path), "--output",
               str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == status
    assert "stopped at iteration 4; continue with --resume" in out
    assert (tmp_path / "run" / "last_checkpoint").read_text().strip() == "model_0000004.pth"


def test_resume_without_checkpoint_starts_the_metrics_afresh(tmp_path):
    """Killed before its first checkpoint, then --resume: iterations 1-3 were appended to the old
    metrics.jsonl, each twice; best.json and curves.png of the killed attempt stayed."""
    from maskrcnn.engine.logger import read_metrics

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("".join(json.dumps({"iteration": i, "loss": 1.0}) + "\n"
                                               for i in (1, 2, 3)))
    (out / "best.json").write_text("{}")
    (out / "curves.png").write_bytes(b"png")
    trainer = _trainer(out, iters=3, period=100)
    assert trainer.resume() is False
    trainer.train()
    assert [r["iteration"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert not (out / "best.json").exists() and not (out / "curves.png").exists()


def test_temp_files_of_a_killed_run_are_removed_and_a_live_ones_kept(tmp_path):
    """SIGKILL mid-write left `.model_0000010.pth.<hex>.tmp` (a checkpoint's size) for good."""
    from maskrcnn import io_utils

    out = tmp_path / "run"
    out.mkdir()
    old = io_utils.PROCESS_START - 60
    stale = [out / ".model_0000010.pth.0a1b2c3d4e5f.tmp", out / ".last_checkpoint.0a1b2c3d4e5f.tmp",
             out / ".metrics.jsonl.0a1b2c3d4e5f.tmp"]
    for p in stale:
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    fresh = out / ".model_0000010.pth.ffffffffffff.tmp"  # newer than this process: may be a live writer's
    fresh.write_bytes(b"x")
    other = out / ".notes.txt.0a1b2c3d4e5f.tmp"  # not a run file: not the trainer's to remove
    other.write_bytes(b"x")
    os.utime(other, (old, old))
    _trainer(out, iters=1, period=100).train()
    assert [p.exists() for p in stale] == [False, False, False]
    assert fresh.exists() and other.exists()


def test_atomic_write_removes_older_temps_of_its_target_only(tmp_path):
    from maskrcnn import io_utils

    old = io_utils.PROCESS_START - 60
    leftover, neighbour = tmp_path / ".ex2.onnx.0123456789ab.tmp", tmp_path / ".ex3.onnx.0123456789ab.tmp"
    for p in (leftover, neighbour):
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    io_utils.atomic_write_bytes(tmp_path / "ex2.onnx", b"model")
    assert not leftover.exists() and neighbour.exists()
    assert (tmp_path / "ex2.onnx").read_bytes() == b"model"


@pytest.mark.parametrize("existed", [True, False])
def test_full_disk_error_names_the_target_and_says_the_old_file_is_kept(tmp_path, monkeypatch, existed):
    """A full disk (or `ulimit -f`) said only "file too large", with no file."""
    from maskrcnn import io_utils

    target = tmp_path / "metrics.json"
    if existed:
        target.write_text("old")

    def fsync(fd):
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))  # as the write raises it: no file name

    monkeypatch.setattr(io_utils.os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        io_utils.atomic_write_json(target, {"a": 1})
    e = info.value
    assert (e.errno, e.filename) == (errno.EFBIG, str(target))
    kept = "the previous file is kept" if existed else "there was no previous file"
    assert e.strerror == f"{os.strerror(errno.EFBIG)} (not written; {kept})"
    assert (target.read_text() if existed else target.exists()) == ("old" if existed else False)
    assert list(tmp_path.glob(".*.tmp")) == []
