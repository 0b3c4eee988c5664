"""Training runs meeting what real runs meet: weights gone non-finite on a finite loss, a full disk when a
checkpoint is due, ``--resume`` with another class list or another model config.

The checkpoint cases use the real ``Trainer`` on a one-parameter model (milliseconds); the resume cases
run ``maskrcnn train`` on two 32x32 images with the tiny R18-FPN for one or two iterations.
"""

import errno
import json
import multiprocessing
import os

import pytest
import torch
from hostile_helpers import coco_dataset, snapshot
from tiny_model import small_training
from torch import nn

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.config import load_config
from maskrcnn.engine import trainer as trainer_module
from maskrcnn.engine.trainer import CheckpointWriteError, NonFiniteLossError, build_trainer


class OneWeight(nn.Module):
    """Loss (w - 1)^2; at forward ``bad_at`` (1-based) it adds sqrt(0) of w, whose gradient is infinite:
    the loss stays finite, the step leaves w = -inf."""

    def __init__(self, bad_at: int = 0):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.bad_at, self.calls = bad_at, 0

    def forward(self, images, targets, generator=None):
        self.calls += 1
        loss = ((self.w - 1) ** 2).sum()
        if self.calls == self.bad_at:
            loss = loss + torch.sqrt(self.w - self.w.detach()).sum()  # value 0, gradient inf
        return {"loss": loss}


def _trainer(model, out, iters=6, period=2):
    solver = {"iters": iters, "checkpoint_period": period, "warmup_iters": 0, "clip_grad_norm": 0, "lr": 0.1}
    cfg = load_config("demo", {f"solver.{k}": v for k, v in solver.items()})

    def make_batches(start):
        while True:
            yield [torch.zeros(3, 4, 4)], [{}]

    return build_trainer(cfg, model, make_batches=make_batches, output_dir=out, class_names=["bg", "a"],
                         handle_signals=False, tensorboard=False, plot=False)  # fmt: skip


def test_weights_gone_non_finite_on_a_finite_loss_are_never_saved(tmp_path):
    """The loss of iteration 3 is finite, its step is not: the checkpoint due at 3 used to hold w = -inf,
    with ``last_checkpoint`` pointing --resume at it."""
    trainer = _trainer(OneWeight(bad_at=3), tmp_path, period=1)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    message = str(info.value)
    assert "non-finite weights after iteration 3 (w), not saved" in message, message
    assert f"the last good checkpoint is {tmp_path / 'model_0000002.pth'}" in message, message
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000002.pth"
    assert not (tmp_path / "model_0000003.pth").exists()
    assert torch.isfinite(load_checkpoint(tmp_path / "model_0000002.pth")["model"]["w"]).all()


def test_full_disk_at_a_checkpoint_names_the_file_and_keeps_the_last_one(tmp_path, monkeypatch):
    real, calls = trainer_module.save_checkpoint, []

    def disk_fills_up(path, **kw):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as os.write raises it: no file name
        real(path, **kw)

    monkeypatch.setattr(trainer_module, "save_checkpoint", disk_fills_up)
    with pytest.raises(CheckpointWriteError) as info:
        _trainer(OneWeight(), tmp_path).train()
    message = str(info.value)
    assert f"could not write the checkpoint {tmp_path / 'model_0000004.pth'} after iteration 4" in message
    assert os.strerror(errno.ENOSPC) in message and "--resume" in message, message
    assert f"the last good checkpoint is {tmp_path / 'model_0000002.pth'}" in message, message
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000002.pth"
    assert load_checkpoint(tmp_path / "model_0000002.pth")["iteration"] == 2


def _train_args(data, run, iters, *extra):
    sets = {**small_training(32), "model.roi_heads.mask_head_dim": 8, "model.roi_heads.box_head_dim": 32,
            "model.fpn_dim": 16, "solver.warmup_iters": 0, "solver.iters": iters,
            "data.num_workers": 0}  # fmt: skip
    args = ["train", "--config", "demo", "--train-json", data[0], "--train-images", data[1], "--output", run,
            "--device", "cpu"]  # fmt: skip
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return [*args, *extra]


def test_resume_names_model_settings_it_does_not_apply_and_refuses_another_class_list(cli, tmp_path):
    torch.manual_seed(0)
    data = coco_dataset(tmp_path / "data")
    run = tmp_path / "run"
    rc, text = cli(*_train_args(data, run, 1))
    assert rc == 0, text

    # a changed model setting is named, the run's model is kept and the run goes on
    rc, text = cli(*_train_args(data, run, 2, "--resume", "--set", "model.fpn_dim=8"))
    assert rc == 0, text
    warning = [line for line in text.splitlines() if "not applied" in line]
    assert warning == ["warning: --resume keeps the run's model config (its checkpoint holds that model); "
                       "not applied: model.fpn_dim=8 (the run's: 16)"], text  # fmt: skip
    assert load_checkpoint(run / "model_final.pth")["iteration"] == 2

    # resumed at its end: said, not silently a no-op
    rc, text = cli(*_train_args(data, run, 2, "--resume", "--set", "model.fpn_dim=16"))
    assert rc == 0 and "--resume: the run is already at iteration 2 of solver.iters 2: nothing left to " \
        "train (raise solver.iters to train on)" in text, text  # fmt: skip

    # another class list: one line before anything loads (it used to be load_state_dict's size mismatches)
    gt = json.loads(data[0].read_text())
    gt["categories"].append({"id": 3, "name": "c"})
    gt["annotations"][0]["category_id"] = 3
    data[0].write_text(json.dumps(gt))
    before = snapshot(run)
    rc, text = cli(*_train_args(data, run, 3, "--resume"))
    said = [line for line in text.strip().splitlines() if not line.startswith("note: ")]  # schedule notes
    assert rc == 1 and len(said) == 1, text
    expected = (f"--resume: {run} was trained on the classes a, b, but {data[0]} has a, b, c"
                " (new in the data: c)")
    assert expected in text and "--init" in text, text
    assert snapshot(run) == before


def test_error_in_a_loader_worker_is_its_own_one_line(cli, tmp_path):
    """Every image unreadable, read in a worker process: torch re-raises the worker's error with its whole
    traceback as the message, which the command printed as a traceback after 'error:'."""
    data = coco_dataset(tmp_path / "data")
    for path in data[1].iterdir():
        path.write_bytes(b"not an image")
    rc, text = cli(*_train_args(data, tmp_path / "run", 1, "--set", "data.num_workers=1"))
    errors = [line for line in text.splitlines() if "error:" in line]
    assert rc == 1 and "Original Traceback" not in text, text  # (the warnings are on the worker's stderr)
    assert errors == [f"maskrcnn train: error: {data[0]}: no image of the dataset could be used "
                      "(2 unreadable) (in a data loader worker)"], text  # fmt: skip
    # the loader's workers (which ignore SIGTERM) were stopped: left waiting for work, they kept this
    # process from exiting, its exit handler waiting for them
    assert multiprocessing.active_children() == []


def test_second_ctrl_c_stops_at_once_naming_the_kept_checkpoint(tmp_path, capfd):
    """A loader that stalls: the first Ctrl-C waits for the end of an iteration that never ends, and a
    second one used to be swallowed as well, leaving only kill -9."""
    import signal
    import time

    def stalling(start):
        for i in range(start, 10**6):
            if i == 4:  # iterations 1-4 done (checkpoint at 2 and 4); the fifth batch stalls
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(5000):  # until the handler ran: two pending signals would count as one
                    if trainer._stop_signal is not None:
                        break
                    time.sleep(0.001)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the stall (bounded: without the fix the run then stops after iteration 5)
            yield [torch.zeros(3, 4, 4)], [{}]

    trainer = _trainer(OneWeight(), tmp_path, iters=100)
    trainer.make_batches = stalling
    trainer.handle_signals = True
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as info:
        trainer.train()
    assert signal.getsignal(signal.SIGINT) is previous  # handler restored
    assert str(info.value) == (f"stopped at once during iteration 5, not saved; the last good checkpoint is "
                               f"{tmp_path / 'model_0000004.pth'} (continue with --resume)")  # fmt: skip
    assert "Ctrl-C again to stop at once" in capfd.readouterr().err
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000004.pth"


def test_image_with_many_instances_holds_its_full_size_masks_once(tmp_path):
    """300 instances in a 1000x1000 image are 300 MB of full-size masks; reading them used to hold them
    twice (a list of masks, then their torch.stack): 3 GB at the peak for 1500 instances. Peak RSS is
    per process, so the read runs in a fresh one."""
    import subprocess
    import sys
    from pathlib import Path

    from hostile_helpers import save_image

    n, size = 300, 1000
    save_image(tmp_path / "im.png", 8, 8)  # never read: the target alone is measured
    boxes = [[(7 * k) % 950, (13 * k) % 950, 40, 40] for k in range(n)]  # polygons: quick to write
    (tmp_path / "gt.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "im.png", "height": size, "width": size}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 1600, "iscrowd": 0,
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}
                        for k, b in enumerate(boxes) for x, y, w, h in [b]],
    }))  # fmt: skip
    script = (
        "import resource, sys, torch\n"
        "from maskrcnn.data.coco import CocoDataset\n"
        f"d = CocoDataset(json_path={str(tmp_path / 'gt.json')!r}, image_dir={str(tmp_path)!r})\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = d._target(1, 1000, 1000)\n"
        "assert t['masks'].shape == (300, 1000, 1000) and int(t['masks'][5].sum()) >= 1600\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.split()[-1])
    assert peak < 1.4 * n * size * size, f"peak {peak / 1e6:.0f} MB for {n * size * size / 1e6:.0f} MB masks"


def test_class_without_a_training_instance_is_named(cli, tmp_path):
    """A category the labelling tool defined but nobody drew (or drew only as crowd) trained silently."""

    data = coco_dataset(tmp_path / "data")
    gt = json.loads(data[0].read_text())
    gt["categories"] += [{"id": 7, "name": "never drawn"}, {"id": 8, "name": "crowd only"}]
    gt["annotations"].append({**gt["annotations"][1], "id": 99, "category_id": 8, "iscrowd": 1})
    data[0].write_text(json.dumps(gt))
    rc, text = cli(*_train_args(data, tmp_path / "run", 1))  # (0 iterations are refused)
    assert rc == 0, text
    warnings = [line for line in text.splitlines() if "no training instance" in line]
    assert warnings == [f"warning: {data[0]}: no training instance of the classes never drawn, crowd only "
                        "(crowd regions aside); the model cannot learn to detect them"], text  # fmt: skip


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a device that is always full)")
def test_full_disk_for_the_metrics_names_the_file(tmp_path):
    """Writes to /dev/full fail as on a full disk, with an error that names no file."""
    from maskrcnn.cli import _one_line

    (tmp_path / "metrics.jsonl").symlink_to("/dev/full")
    with pytest.raises(OSError) as info:
        _trainer(OneWeight(), tmp_path).train()
    assert info.value.errno == errno.ENOSPC
    assert _one_line(info.value) == (f"{tmp_path / 'metrics.jsonl'}: {os.strerror(errno.ENOSPC).lower()} "
                                     "(writing the record of iteration 6)")  # fmt: skip


@pytest.mark.parametrize("key, hint", [("solver.base_lr", "solver.lr"), ("solver.itres", "solver.iters"),
                                       ("model.backbonee", "model.backbone")])  # fmt: skip
def test_unknown_key_points_to_the_nearest_one(cli, tmp_path, key, hint):
    """detectron2's solver.base_lr (the key a user reaches for to make the LR huge) and typos."""
    rc, text = cli("train", "--config", "demo", "--set", f"{key}=1000", "--train-json", tmp_path / "gt.json",
                   "--train-images", tmp_path, "--output", tmp_path / "run")  # fmt: skip
    assert rc == 1 and text.strip() == f"maskrcnn train: error: unknown config key '{key}'; did you mean " \
        f"'{hint}'?", text  # fmt: skip


@pytest.mark.parametrize("iters, eval_period, kept", [(5, 0, 5), (10, 4, 4)])
def test_failing_evaluation_costs_no_training(tmp_path, iters, eval_period, kept):
    """The evaluation (at the end, or one due with a checkpoint) used to run before that checkpoint was
    written: an evaluation that failed lost every iteration since the last one."""

    def evaluate(model):
        raise RuntimeError("out of memory in the evaluation")

    trainer = _trainer(OneWeight(), tmp_path, iters=iters, period=4)
    trainer.evaluate_fn, trainer.eval_period = evaluate, eval_period
    with pytest.raises(RuntimeError, match="out of memory in the evaluation"):
        trainer.train()
    assert (tmp_path / "last_checkpoint").read_text().strip() == f"model_{kept:07d}.pth"
    assert load_checkpoint(tmp_path / f"model_{kept:07d}.pth")["iteration"] == kept
    assert (tmp_path / "model_final.pth").is_file() == (eval_period == 0)


def test_ctrl_c_reaching_a_loader_worker_does_not_end_it(tmp_path):
    """Ctrl-C in a terminal goes to the workers too; one that it ended left the main process (which only
    notes the signal and saves at the end of its iteration) without the batch it waited for."""
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.loader import build_train_loader

    main_pid = os.getpid()

    def ctrl_c_in_workers(image, target, generator):
        if os.getpid() != main_pid:
            os.kill(os.getpid(), __import__("signal").SIGINT)
        return image, target

    data = coco_dataset(tmp_path)
    dataset = CocoDataset(json_path=data[0], image_dir=data[1], transforms=ctrl_c_in_workers)
    batches = iter(build_train_loader(dataset, batch_size=2, num_workers=1))
    images, targets = next(batches)
    assert len(images) == 2 and all(t["masks"].shape[0] == 2 for t in targets)


def _logged_lr(run, iteration):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["lr"] for r in records if r.get("iteration") == iteration and "lr" in r][-1]


def test_resume_goes_on_with_the_runs_own_solver_and_a_set_lr_is_the_lr_used(cli, tmp_path):
    """A plain ``--resume`` (no --config) used to take the r50_fpn preset's solver (90000 iterations,
    batch 16, lr 0.02, steps) and write it to config.yaml; ``--set solver.lr`` on resume was printed and
    saved while the scheduler kept the checkpoint's base lr (the lr used was the old one)."""
    import yaml

    from maskrcnn.engine.schedule import lr_factor

    torch.manual_seed(0)
    data = coco_dataset(tmp_path / "data")
    run = tmp_path / "run"
    cosine = ["--set", "solver.lr=0.01", "solver.lr_schedule=cosine", "solver.log_period=1"]
    rc, text = cli(*_train_args(data, run, 1), *cosine)
    assert rc == 0, text
    started = yaml.safe_load((run / "config.yaml").read_text())

    plain = ["train", "--train-json", data[0], "--train-images", data[1], "--output", run, "--resume"]
    rc, text = cli(*plain, "--set", "solver.iters=3", "solver.lr=0.04")
    assert rc == 0, text
    lines = text.splitlines()
    assert "resume: solver.iters 1 -> 3 (from --set)" in lines and \
        "resume: solver.lr 0.01 -> 0.04 (from --set)" in lines, text  # fmt: skip
    assert "warning" not in text, text  # no preset's values named: none was asked for
    # the run's solver (batch, schedule, warm-up), input and data settings, with only what --set said
    assert yaml.safe_load((run / "config.yaml").read_text()) == {
        **started, "solver": {**started["solver"], "iters": 3, "lr": 0.04}}  # fmt: skip
    # metrics.jsonl logs the lr after the iteration's schedule step (the next iteration's)
    cos = {"warmup_iters": 0, "warmup_factor": 0.001, "schedule": "cosine", "max_iter": 3}
    assert _logged_lr(run, 2) == pytest.approx(0.04 * lr_factor(1, **cos))  # 0.03, not 0.0075
    state = load_checkpoint(run / (run / "last_checkpoint").read_text().strip())
    assert {g["initial_lr"] for g in state["optimizer"]["param_groups"]} == {0.04}
    assert set(state["scheduler"]["base_lrs"]) == {0.04}

    # weight decays that group the parameters otherwise: one line, the run's files as they were
    before = snapshot(run)
    rc, text = cli(*plain, "--set", "solver.iters=4", "solver.weight_decay_norm=0.0001")
    said = [line for line in text.strip().splitlines() if not line.startswith("frozen: ")]  # the start's
    assert rc == 1 and len(said) == 1 and "Traceback" not in text, text
    assert "--resume: the checkpoint's optimizer state does not fit this run's parameter groups" in text
    assert snapshot(run) == before


def test_resume_of_a_run_without_checkpoint_says_it_starts_again_not_that_a_checkpoint_holds_the_model(
        tmp_path):
    """A run killed before its first checkpoint has only config.yaml: --resume starts it again with its own
    settings; the warning said "its checkpoint holds that model" of a checkpoint that does not exist."""
    from maskrcnn.config import load_config, save_config
    from maskrcnn.engine.training import _resumed_config

    save_config(load_config("demo"), tmp_path / "config.yaml")
    asked = load_config("demo", overrides={"model.fpn_dim": 8})
    lines = []
    cfg, _ = _resumed_config(asked, tmp_path, lines.append, overrides={"model.fpn_dim": 8},
                             from_checkpoint=False, notes=[])
    assert cfg.model.fpn_dim == load_config("demo").model.fpn_dim
    assert lines == [f"warning: --resume keeps the run's model config ({tmp_path} holds no checkpoint yet: "
                     "the run starts again from scratch with its own settings); not applied: model.fpn_dim=8 "
                     f"(the run's: {cfg.model.fpn_dim})"]
