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

from maskrcnn.config import load_config
from maskrcnn.engine.trainer import build_trainer
from tests.hostile.one_weight import OneWeight


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
    from maskrcnn import io_utils
    from maskrcnn.engine.logger import read_metrics

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("".join(json.dumps({"iteration": i, "loss": 1.0}) + "\n"
                                               for i in (1, 2, 3)))
    (out / "best.json").write_text("{}")
    (out / "curves.png").write_bytes(b"png")
    (out / "run.json").write_text("{}")  # this resume's data, written by the train command before it
    events = out / "tensorboard" / "events.out.tfevents.1.host"
    events.parent.mkdir()
    events.write_bytes(b"old curves")
    old = io_utils.PROCESS_START - 3600  # dead: older than this process and unchanged for 10 minutes
    os.utime(events, (old, old))
    trainer = _trainer(out, iters=3, period=100)
    assert trainer.resume() is False
    trainer.train()
    assert [r["iteration"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert not (out / "best.json").exists() and not (out / "curves.png").exists() and not events.exists()
    assert (out / "run.json").read_text() == "{}"


def test_temp_files_of_a_killed_run_are_removed_and_a_live_ones_kept(tmp_path):
    """SIGKILL mid-write left `.model_0000010.pth.<hex>.tmp` (a checkpoint's size) for good."""
    from maskrcnn import io_utils

    out = tmp_path / "run"
    out.mkdir()
    old = io_utils.PROCESS_START - 3600  # dead: older than this process and unchanged for 10 minutes
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

    old = io_utils.PROCESS_START - 3600  # dead: older than this process and unchanged for 10 minutes
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


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from tiny_model import build_tiny, save_tiny_checkpoint

    model, cfg = build_tiny()
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", model, cfg)


def _interrupt_after(monkeypatch, images_done):
    """predict's and eval's loops raise KeyboardInterrupt (Ctrl-C) once ``images_done`` images are done."""
    from maskrcnn.engine import inference

    real = inference.predict_files_skipping

    def predicting(*args, **kwargs):
        for done, window in enumerate(real(*args, **kwargs)):
            if done == images_done:
                raise KeyboardInterrupt
            yield window
        raise AssertionError("not interrupted")

    def evaluating(predictor, dataset, evaluator, *, progress, **kwargs):
        progress(images_done, len(dataset)) if images_done else None
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "predict_files_skipping", predicting)
    monkeypatch.setattr(inference, "evaluate_dataset", evaluating)


def _earlier_predict_output(out):
    (out / "overlays").mkdir(parents=True)
    for name in ("a", "old1", "old2"):
        (out / "overlays" / f"{name}.png").write_bytes(b"old overlay")
    earlier = [{"image_id": i, "file_name": f"{n}.png", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}
               for i, n in enumerate(("a", "old1", "old2"), 1)]
    (out / "predictions.json").write_text(json.dumps(earlier))


@pytest.mark.parametrize("images_done", [0, 1])
def test_predict_into_an_earlier_runs_folder_stopped_by_ctrl_c(tiny_weights, tmp_path, monkeypatch,
                                                              capsys, images_done):
    """An early Ctrl-C replaced the earlier predictions.json by [] and left its 30 overlays; said only
    "interrupted"."""
    from PIL import Image

    from maskrcnn.cli import main

    for name in ("a", "b"):
        Image.new("RGB", (40, 30), (90, 120, 30)).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    _earlier_predict_output(out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _interrupt_after(monkeypatch, images_done)
    rc = main(["predict", "--weights", str(tiny_weights), str(tmp_path / "a.png"), str(tmp_path / "b.png"),
               "--output", str(out), "--device", "cpu", "--batch-size", "1", "--score-thresh", "0"])
    err = capsys.readouterr().err
    assert rc == 130
    assert (f"note: {out} holds an earlier run's results (3 image(s) with detections in its predictions, "
            "3 overlay(s)): this run's replace them once its first image is done") in err, err
    if images_done == 0:
        assert (f"interrupted: after 0 of 2 images; nothing written; the earlier run's results in {out} "
                "are as they were") in err, err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
        return
    results = json.loads((out / "predictions.json").read_text())
    assert {r["file_name"] for r in results} <= {str(tmp_path / "a.png")}
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "written.json"]
    assert (out / "overlays" / "a.png").read_bytes() != b"old overlay"
    assert not (out / "predictions.partial.jsonl").exists()
    assert (f"interrupted: after 1 of 2 images; wrote their {len(results)} detection(s) to "
            f"{out / 'predictions.json'} and 1 overlay(s) in {out / 'overlays'}/") in err, err


def test_a_partial_results_file_cut_mid_record_loses_only_that_line(tmp_path):
    from maskrcnn.commands.results_writer import read_partial_results

    path = tmp_path / "predictions.partial.jsonl"
    path.write_text('{"image_id": 1, "score": 0.5}\n{"image_id": 2, "score": 0.7}\n{"image_id": 3, "sco')
    with pytest.warns(UserWarning, match="the last line is cut short .*: dropped, 2 record"):
        assert [r["image_id"] for r in read_partial_results(path)] == [1, 2]
    path.write_text('{"image_id": 1, "sc\n{"image_id": 2, "score": 0.7}\n')
    with pytest.raises(ValueError, match="line 1 is not a JSON record"):
        read_partial_results(path)


def test_interrupted_eval_says_how_far_it_got_and_that_nothing_was_written(tiny_weights, tmp_path,
                                                                            monkeypatch, capsys):
    from tiny_model import write_one_image_set

    from maskrcnn.cli import main

    gt = write_one_image_set(tmp_path / "data", 40, 50)
    _interrupt_after(monkeypatch, 1)
    rc = main(["eval", "--weights", str(tiny_weights), "--json", str(gt), "--images",
               str(gt.parent / "images"), "--output", str(tmp_path / "ev"), "--device", "cpu"])
    assert rc == 130
    assert "interrupted: after 1 of 1 images; nothing written" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists() or not any((tmp_path / "ev").iterdir())


def test_eval_writes_metrics_json_last(tiny_weights, tmp_path, monkeypatch, capsys):
    """metrics.json is the "it finished" marker: a failure between the two writes left a new metrics.json
    beside the old predictions.json."""
    from tiny_model import write_one_image_set

    from maskrcnn.cli import main
    from maskrcnn.commands import eval as eval_command

    gt = write_one_image_set(tmp_path / "data", 40, 50)
    written = []
    monkeypatch.setattr(eval_command, "atomic_write_json", lambda path, data, **kw: written.append(path.name))
    rc = main(["eval", "--weights", str(tiny_weights), "--json", str(gt), "--images",
               str(gt.parent / "images"), "--output", str(tmp_path / "ev"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    # metrics.json may be written again (with the list of this run's outputs), never before predictions.json
    assert written[0] == "predictions.json" and set(written[1:]) == {"metrics.json"}


def test_ctrl_c_during_split_datas_write_exits_130_with_the_old_parts(tmp_path, monkeypatch, capsys):
    """The probe's Ctrl-C that split-data "swallowed" reached a process started in the background by a
    script, which inherits SIGINT ignored (no KeyboardInterrupt at all); a Ctrl-C that reaches it while it
    writes the second part must still leave both old parts and exit 130."""
    from maskrcnn import io_utils
    from maskrcnn.cli import main

    images = [{"id": i, "file_name": f"{i}.jpg", "height": 20, "width": 20} for i in range(1, 11)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
            for i in range(1, 11)]
    src = tmp_path / "all.json"
    categories = [{"id": 1, "name": "a"}]
    src.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    out = tmp_path / "parts"
    out.mkdir()
    for name in ("train", "val"):
        (out / f"{name}.json").write_text("old " + name)
    calls, real = [], io_utils.os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second part's temporary file: Ctrl-C
            raise KeyboardInterrupt
        real(fd)

    monkeypatch.setattr(io_utils.os, "fsync", fsync)
    rc = main(["split-data", "--json", str(src), "--output-dir", str(out), "--force"])
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["train.json", "val.json"]
    assert [(out / f"{n}.json").read_text() for n in ("train", "val")] == ["old train", "old val"]


@pytest.mark.parametrize("no_overlays", [False, True])
def test_predict_into_an_earlier_runs_folder_removes_only_its_overlays(tiny_weights, tmp_path, capsys,
                                                                       no_overlays):
    """Every PNG in overlays/ this run did not draw was removed: the user's own too, and under
    --no-overlays every earlier overlay, without a word."""
    from PIL import Image

    from maskrcnn.cli import main

    Image.new("RGB", (40, 30), (90, 120, 30)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    _earlier_predict_output(out)
    (out / "overlays" / "old1_2.png").write_bytes(b"old overlay")  # a second image named old1
    (out / "overlays" / "legend.png").write_bytes(b"the user's")
    rc = main(["predict", "--weights", str(tiny_weights), str(tmp_path / "a.png"), "--output", str(out),
               "--device", "cpu", "--score-thresh", "0"] + (["--no-overlays"] if no_overlays else []))
    err = capsys.readouterr().err
    assert rc == 0
    left = sorted(p.name for p in (out / "overlays").iterdir())
    if no_overlays:
        assert left == ["a.png", "legend.png", "old1.png", "old1_2.png", "old2.png"]
        assert "--no-overlays: its overlays stay" in err and "removed" not in err, err
    else:
        assert left == ["a.png", "legend.png", "written.json"]  # written.json: the overlays this run wrote
        assert f"removed 3 overlay(s) of the earlier run's images not in this run from {out / 'overlays'}/" \
            in err, err


def test_a_rerun_removes_the_earlier_overlay_of_an_image_without_detections(tiny_weights, tmp_path, capsys):
    """An image with no detections has no record in predictions.json, so nothing named its overlay: a
    re-run into the same folder left it behind (looking like this run's), and the note counted the
    earlier run's images without it. overlays/written.json lists every overlay a run writes."""
    from PIL import Image

    from maskrcnn.cli import main

    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 30), (90, 120, 30)).save(tmp_path / name)
    out = tmp_path / "out"
    args = ["--output", str(out), "--device", "cpu"]
    # a score threshold of 1 keeps no detection (scores are below it): both images drawn, none listed
    assert main(["predict", "--weights", str(tiny_weights), str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                 *args, "--score-thresh", "1"]) == 0
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == ["a.png", "b.png"]
    capsys.readouterr()
    assert main(["predict", "--weights", str(tiny_weights), str(tmp_path / "a.png"), *args,
                 "--score-thresh", "0"]) == 0
    err = capsys.readouterr().err
    # its predictions.json is [] (no record names an overlay): whether written.json is its run's cannot
    # be told, so neither images "in its predictions" nor "without detections" are claimed
    assert "holds an earlier run's results (2 overlay(s)): " in err, err
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == ["a.png"], err
    assert f"removed 1 overlay(s) of the earlier run's images not in this run from {out / 'overlays'}/" in err
    assert json.loads((out / "overlays" / "written.json").read_text()) == {"files": ["a.png"]}


def test_the_note_counts_images_without_detections_only_from_the_records_own_run(tiny_weights, tmp_path,
                                                                                capsys):
    """A --no-overlays run between two runs leaves the first run's overlays/written.json: its overlays,
    named by no record of the second run's predictions.json, were counted as images "without
    detections" "in its predictions"."""
    from PIL import Image

    from maskrcnn.cli import main

    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 30), (90, 120, 30)).save(tmp_path / name)
    out = tmp_path / "out"
    args = ["--weights", str(tiny_weights), "--output", str(out), "--device", "cpu", "--score-thresh", "0"]
    images = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert main(["predict", *images, *args]) == 0
    assert main(["predict", images[0], *args, "--no-overlays"]) == 0
    capsys.readouterr()
    assert main(["predict", images[0], *args]) == 0
    err = capsys.readouterr().err
    assert "holds an earlier run's results (1 image(s) with detections in its predictions, 2 overlay(s)): " \
        in err, err


def test_the_note_counts_images_drawn_without_detections_by_the_same_run(tmp_path):
    from maskrcnn.commands import earlier_run

    out = tmp_path / "out"
    (out / "overlays").mkdir(parents=True)
    for name in ("a", "b"):
        (out / "overlays" / f"{name}.png").write_bytes(b"png")
    records = [{"image_id": 1, "file_name": "a.png", "overlay": "overlays/a.png", "score": 0.5}] * 2
    (out / "predictions.json").write_text(json.dumps(records))
    # the list names the records' overlay and one more: b, drawn by that run without detections
    assert earlier_run.earlier_run(out, listed={"a.png", "b.png"})[0] == \
        "1 image(s) with detections in its predictions, 1 more drawn without detections"
    # a list that lacks a record's overlay is another run's: nothing is claimed of its other overlays
    assert earlier_run.earlier_run(out, listed={"b.png"})[0] == \
        "1 image(s) with detections in its predictions"
    (out / "predictions.json").write_text("[]")  # every image without detections, or a --no-overlays run's
    assert earlier_run.earlier_run(out, listed={"a.png", "b.png"})[:2] == ("", 2)


def test_a_large_earlier_predictions_file_is_not_read_for_the_note(tmp_path, monkeypatch):
    from maskrcnn.commands import earlier_run

    out = tmp_path / "out"
    _earlier_predict_output(out)
    monkeypatch.setattr(earlier_run, "LARGE_RESULTS_BYTES", 10)
    parsed, real = [], earlier_run.json.loads
    monkeypatch.setattr(earlier_run.json, "loads", lambda text, **kw: parsed.append(text) or real(text, **kw))
    words, overlays, stems, paths = earlier_run.earlier_run(out)
    assert words == "predictions.json of 0 MB, not read to count its images" and overlays == 3
    assert sorted(parsed) == ['"a.png"', '"old1.png"', '"old2.png"']  # the names only, not the records
    monkeypatch.undo()
    assert earlier_run.earlier_run(out)[0] == "3 image(s) with detections in its predictions"
    stems_small = earlier_run.earlier_run(out)[2]
    assert stems == stems_small == {"a", "old1", "old2"} and paths == set()


def test_stale_temps_only_in_create_temp_files_form_and_unchanged_for_10_minutes(tmp_path, monkeypatch):
    """`.NAME.*.tmp` removed a user's `.model_final.pth.backup.tmp`, and a temp older than the process
    was taken for dead though a slow writer (a big checkpoint's fsync on NFS) may still hold it."""
    import time

    from maskrcnn import io_utils

    now = time.time()
    monkeypatch.setattr(io_utils, "PROCESS_START", now)  # a process started just now
    dead, slow, users = (tmp_path / ".model_final.pth.0123456789ab.tmp", tmp_path / ".model_final.pth."
                         "ba9876543210.tmp", tmp_path / ".model_final.pth.backup.tmp")
    for p, age in ((dead, 3600), (slow, 120), (users, 3600)):
        p.write_bytes(b"x")
        os.utime(p, (now - age, now - age))
    io_utils.atomic_write_bytes(tmp_path / "model_final.pth", b"weights")
    assert [dead.exists(), slow.exists(), users.exists()] == [False, True, True]


def test_a_folder_is_listed_once_for_its_stale_temps(tmp_path, monkeypatch):
    """Every atomic write listed its whole folder: quadratic for a writer of many files in one folder."""
    from maskrcnn import io_utils

    calls, real = [], io_utils.os.scandir
    monkeypatch.setattr(io_utils.os, "scandir", lambda folder: calls.append(folder) or real(folder))
    old = io_utils.PROCESS_START - 3600
    leftover = tmp_path / ".f7.txt.0123456789ab.tmp"
    leftover.write_bytes(b"x")
    os.utime(leftover, (old, old))
    for i in range(10):
        io_utils.atomic_write_text(tmp_path / f"f{i}.txt", str(i))
    assert len(calls) == 1 and not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"f{i}.txt" for i in range(10)]


def test_resume_of_a_finished_run_without_checkpoints_is_refused(tmp_path):
    """model_final.pth + model_best.pth + metrics.jsonl, periodic checkpoints cleaned up: --resume removed
    model_best.pth, best.json and the metrics and trained again from iteration 0."""
    from maskrcnn.checkpoint import CheckpointError
    from maskrcnn.engine.training import build_training

    out = tmp_path / "run"
    out.mkdir()
    files = {"model_final.pth": b"final", "model_best.pth": b"best", "best.json": b"{}",
             "metrics.jsonl": b'{"iteration": 1}\n', "config.yaml": b"seed: 1\n"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    expected = (f"{out} holds finished weights (model_final.pth) but no checkpoint to continue from; --init "
                f"{out / 'model_final.pth'} --output ANOTHER to train on from them, or --overwrite to start "
                "again")
    with pytest.raises(CheckpointError) as e:
        _trainer(out, iters=3, period=100).resume()
    assert str(e.value) == expected
    with pytest.raises(ValueError) as e:  # the command: refused before it writes anything
        build_training(load_config("demo"), train_json=tmp_path / "t.json", train_images=tmp_path,
                       output=out, resume=True)
    assert str(e.value) == expected
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_a_sigterm_after_ctrl_c_keeps_the_first_signal(tmp_path):
    trainer = _trainer(tmp_path / "run", iters=1, period=100)
    trainer.handle_signals = True
    with trainer._signals():
        handler = signal.getsignal(signal.SIGINT)
        handler(signal.SIGINT, None)
        handler(signal.SIGTERM, None)
    assert trainer._stop_signal == signal.SIGINT


def test_resume_of_a_run_killed_before_its_checkpoint_pointer_goes_on_from_the_checkpoint(tmp_path):
    """Killed between writing model_0000500.pth and last_checkpoint, then --resume: build_training took
    the fresh start (followed the run's --init again, would overwrite config.yaml and init_report.json)
    while trainer.resume() loaded model_0000500.pth anyway."""
    from maskrcnn.config import save_config
    from maskrcnn.engine.trainer import checkpoint_candidates
    from maskrcnn.engine.training import build_training

    out = tmp_path / "run"
    out.mkdir()
    save_config(load_config("demo", {"model.init_weights": str(tmp_path / "gone.pth")}), out / "config.yaml")
    saved = (out / "config.yaml").read_bytes()
    (out / "model_0000500.pth").write_bytes(b"weights")
    (out / "model_0000250.pth").write_bytes(b"weights")
    assert checkpoint_candidates(out) == [out / "model_0000500.pth", out / "model_0000250.pth"]
    (out / "last_checkpoint").write_text("model_0000250.pth\n")
    assert checkpoint_candidates(out) == [out / "model_0000250.pth", out / "model_0000500.pth"]
    (out / "last_checkpoint").unlink()
    # a resume: the run's init (gone since) is not read again; it stops at the missing training set
    with pytest.raises(Exception) as e:
        build_training(load_config("demo"), train_json=tmp_path / "t.json", train_images=tmp_path,
                       output=out, resume=True, overrides={})
    assert "gone.pth" not in str(e.value) and "t.json" in str(e.value)
    assert (out / "config.yaml").read_bytes() == saved and not (out / "init_report.json").exists()


def test_temp_files_of_every_run_file_a_killed_run_left_are_removed(tmp_path):
    """`.run.json.<hex>.tmp`, `.config.yaml.<hex>.tmp`, `.init_report.json.<hex>.tmp` stayed for good."""
    from maskrcnn import io_utils

    out = tmp_path / "run"
    out.mkdir()
    old = io_utils.PROCESS_START - 3600
    stale = [out / f".{name}.0a1b2c3d4e5f.tmp" for name in ("run.json", "config.yaml", "init_report.json")]
    for p in stale:
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    _trainer(out, iters=1, period=100).train()
    assert [p.exists() for p in stale] == [False, False, False]
