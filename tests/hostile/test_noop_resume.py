"""``--resume`` of a run that has nothing left to train: a finished run is left exactly as it is (no
evaluation, no record, no file written or touched); a run killed between its last checkpoint and the end
of its final evaluation gets what is missing, once.

The trainer cases use the real ``Trainer`` on a one-parameter model with a counting evaluation
(milliseconds); the command cases run ``maskrcnn train`` (and ``maskrcnn.train``) on two 32x32 images.
"""

import json
import shutil

import pytest
import torch
from hostile_helpers import coco_dataset
from test_hostile_training import OneWeight, _train_args

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.config import load_config
from maskrcnn.engine import logger as logger_module
from maskrcnn.engine.logger import plot_curves, read_metrics
from maskrcnn.engine.trainer import build_trainer


def _times(folder):
    """Every file under ``folder`` -> (its bytes, its mtime_ns)."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def _evaluations(records):
    return [r["iteration"] for r in records if "loss" not in r]


class Evaluation:
    """A validation that counts its calls and gives the APs ``aps`` in turn (after ``done`` of them);
    an AP of None: no results (nothing evaluated, as ``NothingEvaluated`` makes the evaluate fn return)."""

    def __init__(self, aps=(10.0, 20.0, 15.0), done=0):
        self.aps, self.calls = aps, list(range(done))

    def __call__(self, model):
        self.calls.append(len(self.calls))
        ap = self.aps[len(self.calls) - 1]
        return None if ap is None else {"bbox": {"AP": ap}, "segm": {"AP": ap}}


class TensorBoardStandIn:
    """For ``_make_tensorboard_writer``: records the folders it is asked for and gives no writer, with
    the line ``missing`` (TensorBoard not installed) or none."""

    def __init__(self, missing=""):
        self.folders, self.missing = [], missing

    def __call__(self, folder):
        self.folders.append(folder)
        return None, self.missing


def _trainer(out, evaluate, *, iters=6, patience=0, tensorboard=False, plot=False):
    solver = {"iters": iters, "checkpoint_period": 2, "eval_period": 2, "warmup_iters": 0,
              "clip_grad_norm": 0, "lr": 0.1, "early_stop_patience": patience}  # fmt: skip
    cfg = load_config("demo", {f"solver.{k}": v for k, v in solver.items()})

    def make_batches(start):
        while True:
            yield [torch.zeros(3, 4, 4)], [{}]

    return build_trainer(cfg, OneWeight(), make_batches=make_batches, output_dir=out,
                         class_names=["bg", "a"], evaluate_fn=evaluate, handle_signals=False,
                         tensorboard=tensorboard, plot=plot)  # fmt: skip


def _resume(out, evaluate, **kw):
    trainer = _trainer(out, evaluate, **kw)
    assert trainer.resume()
    return trainer.train()


def test_resume_of_a_finished_run_evaluates_logs_and_writes_nothing(tmp_path, monkeypatch):
    _trainer(tmp_path, Evaluation(), plot=True).train()  # with its curves.png: a resume draws a missing one
    assert _evaluations(read_metrics(tmp_path / "metrics.jsonl")) == [2, 4, 6]
    before = _times(tmp_path)
    made = TensorBoardStandIn()  # the writer, made at the first record: a no-op makes none (no event file)
    monkeypatch.setattr(logger_module, "_make_tensorboard_writer", made)

    again = Evaluation()
    for _ in range(2):  # each no-op resume used to add one more final record
        result = _resume(tmp_path, again, tensorboard=True, plot=True)
        assert result["iteration"] == 6 and not result["interrupted"]
        # the final evaluation's results, from its record
        assert result["eval"] == {"bbox": {"AP": 15.0}, "segm": {"AP": 15.0}}
    assert again.calls == [] and made.folders == []
    assert _times(tmp_path) == before


@pytest.mark.parametrize("iters", [20, 6])
def test_resume_of_a_run_that_had_stopped_early_writes_nothing(tmp_path, capsys, iters):
    """10, 20, 15 with a patience of 1: stopped early after iteration 6 of 20; with 6 iterations, the
    final evaluation (15) runs the patience out but stops nothing: not a run that stopped early."""
    _trainer(tmp_path, Evaluation(), iters=iters, patience=1).train()
    assert load_checkpoint(tmp_path / "model_final.pth")["iteration"] == 6
    before = _times(tmp_path)
    capsys.readouterr()
    again = Evaluation()
    result = _resume(tmp_path, again, iters=iters, patience=1)
    assert result["stopped_early"] == (iters == 20) and again.calls == []
    assert ("stopped early" in capsys.readouterr().out) == (iters == 20)
    assert _times(tmp_path) == before


def test_early_stopped_run_whose_final_weights_are_restored_says_it_stopped_early(tmp_path, capsys):
    """Killed while writing model_final.pth of a run that stopped early: the resume writes it and says
    what the uninterrupted run said (the summary with the best), evaluating nothing."""
    _trainer(tmp_path, Evaluation(), iters=20, patience=1).train()
    said = capsys.readouterr().out
    summary = "stopped early after iteration 6 of 20"
    assert summary in said
    (tmp_path / "model_final.pth").unlink()
    again = Evaluation()
    result = _resume(tmp_path, again, iters=20, patience=1)
    text = capsys.readouterr().out
    assert result["stopped_early"] and again.calls == []
    assert [line for line in text.splitlines() if summary in line] == [
        line for line in said.splitlines() if summary in line]
    assert load_checkpoint(tmp_path / "model_final.pth")["iteration"] == 6


def test_final_weights_alone_missing_do_not_redraw_the_curves(tmp_path):
    _trainer(tmp_path, Evaluation(), plot=True).train()
    curves = tmp_path / "curves.png"
    assert curves.is_file()
    (tmp_path / "model_final.pth").unlink()
    before = curves.stat().st_mtime_ns
    again = Evaluation()
    _resume(tmp_path, again, plot=True)
    assert again.calls == [] and (tmp_path / "model_final.pth").is_file()
    assert curves.stat().st_mtime_ns == before


def test_final_evaluation_with_no_results_is_on_record_and_not_run_again(tmp_path, monkeypatch, capsys):
    """An evaluation that returned no results (NothingEvaluated) leaves a record of its iteration alone:
    a resume of the finished run does not run it again; one killed before that record runs it once (and
    the TensorBoard note, with no training to print it, comes with that evaluation)."""
    nothing = (None, None, None)
    _trainer(tmp_path, Evaluation(nothing), plot=True).train()
    metrics = tmp_path / "metrics.jsonl"
    evals = [r for r in read_metrics(metrics) if "loss" not in r]
    assert evals == [{"iteration": i, "evaluated": 0} for i in (2, 4, 6)]
    assert plot_curves(metrics, tmp_path / "again.png") is not None  # the plot reads past such records
    (tmp_path / "again.png").unlink()

    before, again = _times(tmp_path), Evaluation(nothing)
    result = _resume(tmp_path, again, plot=True)
    assert again.calls == [] and result["eval"] is None and _times(tmp_path) == before

    _drop_last_eval(metrics)  # killed during the final evaluation
    note = "TensorBoard not installed (stand-in)"
    monkeypatch.setattr(logger_module, "_make_tensorboard_writer", TensorBoardStandIn(note))
    capsys.readouterr()
    again = Evaluation(nothing, done=2)
    _resume(tmp_path, again, tensorboard=True)
    assert again.calls == [0, 1, 2], "evaluated once"
    assert [r for r in read_metrics(metrics) if "loss" not in r] == evals
    assert capsys.readouterr().out.count(note) == 1

    before, last = _times(tmp_path), Evaluation(nothing)
    _resume(tmp_path, last)
    assert last.calls == [] and _times(tmp_path) == before


def _drop_last_eval(metrics):
    lines = metrics.read_text().splitlines(keepends=True)
    assert "loss" not in json.loads(lines[-1])
    metrics.write_text("".join(lines[:-1]))


@pytest.mark.parametrize("killed", ["before model_final", "during the final evaluation",
                                    "after the record, before best.json"])
def test_resume_of_a_run_killed_at_its_end_finishes_it_once(tmp_path, killed):
    """A kill after the last checkpoint (written before the final weights and evaluation) leaves the end
    undone: the resume writes what is missing, evaluates once if the evaluation is not (fully) on record,
    and leaves one final record."""
    aps = (10.0, 20.0, 25.0)  # the final evaluation is the best
    _trainer(tmp_path, Evaluation(aps)).train()
    final, best = tmp_path / "model_final.pth", tmp_path / "best.json"
    final_time = final.stat().st_mtime_ns
    # what the kill left: the best as before the final evaluation, and maybe no record, no final weights
    best.write_text(json.dumps({**json.loads(best.read_text()), "value": 20.0, "iteration": 4}))
    if killed != "after the record, before best.json":
        _drop_last_eval(tmp_path / "metrics.jsonl")
    if killed == "before model_final":
        final.unlink()

    again = Evaluation(aps, done=2)
    result = _resume(tmp_path, again)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert again.calls == [0, 1, 2], "evaluated once"
    assert _evaluations(records) == [2, 4, 6] and records[-1]["segm/AP"] == 25.0
    assert result["eval"] == {"bbox": {"AP": 25.0}, "segm": {"AP": 25.0}}
    assert json.loads(best.read_text())["iteration"] == 6
    assert load_checkpoint(final)["iteration"] == 6
    assert (final.stat().st_mtime_ns == final_time) == (killed != "before model_final")

    before, last = _times(tmp_path), Evaluation()
    _resume(tmp_path, last)  # finished now: nothing more
    assert last.calls == [] and _times(tmp_path) == before


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished ``maskrcnn train`` run (one iteration, evaluated at its end) and its data."""
    from maskrcnn.cli import main

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("finished")
    data = coco_dataset(folder / "data")
    val = ["--val-json", data[0], "--val-images", data[1]]
    assert main([str(a) for a in _train_args(data, folder / "run", 1, *val)]) == 0
    assert _evaluations(read_metrics(folder / "run" / "metrics.jsonl")) == [1]
    return folder / "run", [*_train_args(data, folder / "run", 1, *val, "--resume")]


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", _times(tmp_path / "run")


NOTHING_LEFT = "--resume: the run is already at iteration 1 of solver.iters 1: nothing left to train"


def test_command_resume_of_a_finished_run_changes_nothing(cli, tmp_path, finished_run):
    run, before = _copy(finished_run[0], tmp_path)
    args = [str(run) if a == finished_run[0] else a for a in finished_run[1]]
    rc, text = cli(*args)
    assert rc == 0 and NOTHING_LEFT in text, text
    # no metrics table: not evaluated again
    assert "AP50" not in text and "running the final evaluation" not in text, text
    assert _times(run) == before


def test_python_resume_of_a_finished_run_changes_nothing(tmp_path, finished_run, capsys):
    import maskrcnn

    run, before = _copy(finished_run[0], tmp_path)
    path = maskrcnn.train(output=run, resume=True)
    assert path == run / "model_final.pth"
    text = capsys.readouterr()
    # in the caller's words: resume=True, not the command's --resume
    assert NOTHING_LEFT.replace("--resume:", "resume=True:") in text.out + text.err, text
    assert "AP50" not in text.out and "running the final evaluation" not in text.out, text
    assert _times(run) == before
