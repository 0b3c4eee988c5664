"""A stop signal after the last iteration: while the last checkpoint, ``model_final.pth``, the final
evaluation or curves.png is written. The handlers used to be restored when the loop ended, so a SIGTERM
there killed the process mid-write (no line, a checkpoint-sized ``.tmp`` left) and a Ctrl-C said only
"interrupted".

Real signals (``os.kill`` of this process) sent from a patched write, at a chosen point: no timing. A
handler installed around each test stands for the default one (which would end pytest): the signal
reaching it means the trainer's was not installed.
"""

import os
import signal

import pytest
import torch

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.config import load_config
from maskrcnn.engine.logger import read_metrics
from maskrcnn.engine.trainer import build_trainer
from tests.hostile.one_weight import OneWeight


class KilledBySignal(Exception):
    """What the default handler would have done: ended the process."""


@pytest.fixture
def default_handlers():
    def killed(signum, frame):
        raise KilledBySignal(signal.Signals(signum).name)

    previous = {s: signal.signal(s, killed) for s in (signal.SIGTERM, signal.SIGINT)}
    yield killed
    for s, h in previous.items():
        signal.signal(s, h)


def _trainer(out, *, iters=4, period=2, evaluate=None, plot=False):
    solver = {"iters": iters, "checkpoint_period": period, "eval_period": 0, "warmup_iters": 0, "lr": 0.1,
              "log_period": 1}
    cfg = load_config("demo", {f"solver.{k}": v for k, v in solver.items()})

    def make_batches(start):
        while True:
            yield [torch.zeros(3, 4, 4)], [{}]

    return build_trainer(cfg, OneWeight(), make_batches=make_batches, output_dir=out, class_names=["bg", "a"],
                         evaluate_fn=evaluate, handle_signals=True, tensorboard=False, plot=plot)


def _train_command(trainer, tmp_path, monkeypatch, *extra):
    import maskrcnn.engine.training as training
    from maskrcnn.cli import main

    monkeypatch.setattr(training, "build_training", lambda cfg, **kw: (trainer, cfg))
    return main(["train", "--train-json", "t.json", "--train-images", str(tmp_path), "--output",
                 str(trainer.output_dir), *extra])


def _signal_before(monkeypatch, trainer, name, signum):
    """``trainer.name`` sends ``signum`` to this process after the last iteration, then does its work."""
    work = getattr(trainer, name)

    def sent_then_done(*args, **kwargs):
        if trainer.iteration == trainer.max_iter:
            os.kill(os.getpid(), signum)
        return work(*args, **kwargs)

    monkeypatch.setattr(trainer, name, sent_then_done)


def _temps(folder):
    return sorted(p.name for p in folder.glob(".*.tmp"))


class Evaluation:
    def __init__(self):
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        return {"bbox": {"AP": 10.0}, "segm": {"AP": 10.0}}


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_while_model_final_is_written_finishes_it_and_skips_the_evaluation(
        tmp_path, monkeypatch, capsys, default_handlers, signum, status):
    out = tmp_path / "run"
    evaluation = Evaluation()
    trainer = _trainer(out, evaluate=evaluation)
    _signal_before(monkeypatch, trainer, "_write_final", signum)
    rc = _train_command(trainer, tmp_path, monkeypatch)
    text = capsys.readouterr().out
    name = signal.Signals(signum).name
    assert rc == status
    assert (f"stopped by {name} after iteration 4 (the last): {out / 'model_final.pth'} written; final "
            "evaluation not run (continue with --resume to run it)") in text
    assert "stopped at iteration" not in text  # one line, not two
    assert load_checkpoint(out / "model_final.pth")["iteration"] == 4
    assert evaluation.calls == 0 and _temps(out) == []
    assert signal.getsignal(signal.SIGTERM) is default_handlers  # the caller's handler is back

    # the resume runs what was skipped: the final evaluation, once
    again = Evaluation()
    resumed = _trainer(out, evaluate=again)
    assert resumed.resume()
    result = resumed.train()
    assert again.calls == 1 and not result["interrupted"]
    assert [r["iteration"] for r in read_metrics(out / "metrics.jsonl") if "loss" not in r] == [4]


def test_sigterm_while_the_last_checkpoint_is_written_with_nothing_skipped_exits_0(
        tmp_path, monkeypatch, capsys, default_handlers):
    """No evaluation is due: every file of the run's end is written, so the run is finished (exit 0)."""
    out = tmp_path / "run"
    trainer = _trainer(out, iters=3, period=2)  # iteration 3 is no checkpoint's: the end writes one
    _signal_before(monkeypatch, trainer, "save", signal.SIGTERM)
    rc = _train_command(trainer, tmp_path, monkeypatch)
    text = capsys.readouterr().out
    assert rc == 0
    assert (f"SIGTERM came after iteration 3 (the last), during the run's end: it was finished "
            f"({out / 'model_final.pth'} written)") in text
    assert f"done: iteration 3; final weights: {out / 'model_final.pth'}" in text
    assert (out / "last_checkpoint").read_text().strip() == "model_0000003.pth"
    assert load_checkpoint(out / "model_final.pth")["iteration"] == 3 and _temps(out) == []


def test_second_ctrl_c_mid_write_of_model_final_removes_its_temp_and_says_where(tmp_path, monkeypatch, capsys,
                                                                                default_handlers):
    """The second Ctrl-C stops at once, inside the write: its temporary file goes, and the line says
    after which iteration and in which write (it said "during iteration 5" of a 4-iteration run)."""
    from maskrcnn import io_utils

    out = tmp_path / "run"
    trainer = _trainer(out)
    fsync = io_utils.os.fsync

    def fsync_then_ctrl_c_twice(fd):
        fsync(fd)
        if any(p.name.startswith(".model_final.pth.") for p in out.glob(".*.tmp")):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(io_utils.os, "fsync", fsync_then_ctrl_c_twice)
    rc = _train_command(trainer, tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert rc == 130
    assert (f"stopped at once after iteration 4 (the last), while writing model_final.pth, not saved; the "
            f"last good checkpoint is {out / 'model_0000004.pth'}") in err
    assert not (out / "model_final.pth").exists() and _temps(out) == []


def test_resume_that_finishes_an_interrupted_end_draws_the_missing_curves(tmp_path):
    """A run whose end failed (disk full at model_final.pth) or was stopped there had no curves.png; the
    --resume that wrote model_final.pth did not draw it either."""
    out = tmp_path / "run"
    trainer = _trainer(out, plot=True)
    trainer.handle_signals = False
    trainer.train()
    (out / "curves.png").unlink()
    (out / "model_final.pth").unlink()
    resumed = _trainer(out, plot=True)
    resumed.handle_signals = False
    assert resumed.resume()
    resumed.train()
    assert load_checkpoint(out / "model_final.pth")["iteration"] == 4
    assert (out / "curves.png").is_file()


def test_sigterm_during_the_set_up_says_so_and_exits_143(tmp_path, monkeypatch, capsys, default_handlers):
    """A SIGTERM while the data was read or the model built ended the run with no line at all."""
    import maskrcnn.engine.training as training
    from maskrcnn.cli import main

    def set_up_stopped(cfg, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("went on after the SIGTERM")

    monkeypatch.setattr(training, "build_training", set_up_stopped)
    rc = main(["train", "--train-json", "t.json", "--train-images", str(tmp_path), "--output",
               str(tmp_path / "run")])
    assert rc == 143
    assert "stopped by SIGTERM: before training started; no checkpoint written" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is default_handlers  # the caller's handler is back


def test_python_train_keeps_the_callers_sigterm_handler_during_the_set_up(tmp_path, monkeypatch,
                                                                           default_handlers):
    """The set-up's handler is the command's: ``run_training`` called from Python installs none."""
    import maskrcnn.engine.training as training
    from maskrcnn.commands import train as command

    seen = []
    monkeypatch.setattr(training, "build_training",
                        lambda cfg, **kw: seen.append(signal.getsignal(signal.SIGTERM)) or 1 / 0)
    from maskrcnn.cli import build_parser

    argv = ["train", "--train-json", "t.json", "--train-images", str(tmp_path), "--output",
            str(tmp_path / "r")]
    with pytest.raises(ZeroDivisionError):
        command.run_training(build_parser(argv).parse_args(argv))
    assert seen == [default_handlers]


def test_ctrl_c_while_curves_are_drawn_draws_them_and_finishes(tmp_path, monkeypatch, capsys,
                                                               default_handlers):
    out = tmp_path / "run"
    trainer = _trainer(out, plot=True)
    close = trainer.logger.close

    def ctrl_c_then_close(**kw):
        os.kill(os.getpid(), signal.SIGINT)
        return close(**kw)

    monkeypatch.setattr(trainer.logger, "close", ctrl_c_then_close)
    rc = _train_command(trainer, tmp_path, monkeypatch)
    text = capsys.readouterr().out
    assert rc == 0 and (out / "curves.png").is_file() and _temps(out) == []
    assert "SIGINT came after iteration 4 (the last), during the run's end: it was finished" in text


def test_sigterm_while_a_resume_finishes_the_end_lets_it_finish(tmp_path, monkeypatch, default_handlers):
    """A resume that only writes the missing model_final.pth ran with no handler either."""
    out = tmp_path / "run"
    first = _trainer(out)
    first.handle_signals = False
    first.train()
    (out / "model_final.pth").unlink()
    resumed = _trainer(out)
    assert resumed.resume()
    _signal_before(monkeypatch, resumed, "_write_final", signal.SIGTERM)
    result = resumed.train()
    assert not result["interrupted"] and load_checkpoint(out / "model_final.pth")["iteration"] == 4
    assert result["end_line"] == (f"SIGTERM came after iteration 4 (the last), during the run's end: it was "
                                  f"finished ({out / 'model_final.pth'} written)")
    assert _temps(out) == []


def test_sigterm_while_a_finished_run_leaves_the_process_group_does_not_kill_it(tmp_path, monkeypatch, capsys,
                                                                                  default_handlers):
    """Under torchrun a rank waits in du.cleanup()'s barrier after train() returned (its handlers restored):
    torchrun's SIGTERM killed it there, and rank 0 then failed on the lost peer after a finished run."""
    from maskrcnn.engine import distributed as du

    out = tmp_path / "run"
    trainer = _trainer(out)

    def cleanup_signalled(*, wait_for_peers=True):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(du, "cleanup", cleanup_signalled)
    rc = _train_command(trainer, tmp_path, monkeypatch)
    assert rc == 0
    assert f"done: iteration 4; final weights: {out / 'model_final.pth'}" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is default_handlers  # the caller's handler is back


def test_second_ctrl_c_during_the_final_evaluation_says_model_final_is_written(tmp_path, monkeypatch, capsys,
                                                                             default_handlers):
    """It said "not saved ... continue with --resume" with model_final.pth on disk."""
    out = tmp_path / "run"

    def evaluation(model):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return {}

    rc = _train_command(_trainer(out, evaluate=evaluation), tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert rc == 130 and "not saved" not in err
    assert (f"stopped at once after iteration 4 (the last), while running the final evaluation: "
            f"{out / 'model_final.pth'} written; final evaluation not run (continue with --resume to run "
            "it)") in err
    assert load_checkpoint(out / "model_final.pth")["iteration"] == 4


def test_second_ctrl_c_while_curves_are_drawn_then_resume_draws_them(tmp_path, monkeypatch, capsys,
                                                                     default_handlers):
    """The line said "not saved" of a finished run, and the --resume it advised drew no curves.png."""
    out = tmp_path / "run"
    trainer = _trainer(out, plot=True)

    def ctrl_c_twice(**kw):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(trainer.logger, "close", ctrl_c_twice)
    assert _train_command(trainer, tmp_path, monkeypatch) == 130
    assert (f"while drawing curves.png: the run is finished ({out / 'model_final.pth'} written), curves.png "
            "not drawn (continue with --resume to draw it)") in capsys.readouterr().err
    assert not (out / "curves.png").exists()
    resumed = _trainer(out, plot=True)
    assert resumed.resume()
    assert not resumed.train()["interrupted"]
    assert (out / "curves.png").is_file()


def test_sigterm_during_the_final_evaluation_stops_it_at_once(tmp_path, monkeypatch, capsys,
                                                              default_handlers):
    """It waited for the whole evaluation (minutes on a real val set: docker stop's SIGKILL came first)."""
    out = tmp_path / "run"
    went_on = []

    def evaluation(model):
        os.kill(os.getpid(), signal.SIGTERM)
        went_on.append(True)  # the rest of the val set
        return {"bbox": {"AP": 10.0}, "segm": {"AP": 10.0}}

    rc = _train_command(_trainer(out, evaluate=evaluation), tmp_path, monkeypatch)
    assert rc == 143 and went_on == []
    assert (f"stopped by SIGTERM after iteration 4 (the last): {out / 'model_final.pth'} written; final "
            "evaluation stopped; continue with --resume to run it") in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is default_handlers
    again = Evaluation()
    resumed = _trainer(out, evaluate=again)
    assert resumed.resume() and not resumed.train()["interrupted"] and again.calls == 1
