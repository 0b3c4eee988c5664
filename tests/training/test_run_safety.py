"""One training run per run folder (``engine/run_lock.py``), ``--resume --overwrite`` refused as a usage
error, and ``--resume`` of a folder that holds no run said first (``commands/train.py``). The training
itself is stubbed: only whether it runs, and what it sees, matters here."""

import os
import subprocess
import sys

import pytest

import maskrcnn.engine.run_lock as run_lock_module
from maskrcnn.cli import main
from maskrcnn.engine.run_lock import LOCK_NAME, RunInUse, run_lock


def _data(tmp_path):
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "train.json").write_text("{}")
    return ["train", "--config", "demo", "--train-json", str(tmp_path / "train.json"), "--train-images",
            str(tmp_path / "images")]


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path, capsys, seen):
    out = tmp_path / "run"
    with run_lock(out):  # another run holds it (a lock file descriptor of its own)
        assert main(_data(tmp_path) + ["--output", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"maskrcnn train: error: {out} is in use by another training run (pid {os.getpid()}); "
                   "wait for it to end, or choose another --output"]
    assert seen == []  # refused before anything was built or deleted
    assert not out.exists()  # made by the holder for nothing else but its lock: removed

    assert main(_data(tmp_path) + ["--output", str(out)]) == 0  # free again
    assert len(seen) == 1


def test_the_lock_is_held_for_the_whole_run_and_released_after(tmp_path, seen):
    out = tmp_path / "run"
    refusals = []

    def second_run():
        with pytest.raises(RunInUse, match="in use by another training run") as e:
            with run_lock(out):
                pass
        refusals.append(str(e.value))

    seen.trainer.during = second_run
    assert main(_data(tmp_path) + ["--output", str(out)]) == 0
    assert len(refusals) == 1
    assert not (out / LOCK_NAME).exists()  # a finished run leaves no lock file behind
    with run_lock(out):  # released at the end
        pass


def test_a_run_that_locked_a_file_its_holder_removed_opens_the_path_again(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = run_lock(out)
    holder.__enter__()
    stale = os.open(out / LOCK_NAME, os.O_RDWR)  # a second run opened the file while it was held ...
    holder.__exit__(None, None, None)  # ... and its holder ended, removing it
    with run_lock(out) as path:  # a third run makes and locks a new file
        fcntl = pytest.importorskip("fcntl")
        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the removed file's lock is free: not the lock
        os.close(stale)
        with pytest.raises(RunInUse):  # the path's file is what counts
            with run_lock(out):
                pass
        assert path.is_file()
    assert not (out / LOCK_NAME).exists()


def test_a_killed_runs_lock_file_blocks_nothing(tmp_path, seen):
    out = tmp_path / "run"
    # a process that took the lock and was killed: its lock file stays, with its pid, the flock gone
    code = ("import os, sys; from maskrcnn.engine.run_lock import run_lock; "
            "l = run_lock(sys.argv[1]); l.__enter__(); os.kill(os.getpid(), 9)")
    out.mkdir()
    (out / "keep").write_text("")  # the folder stays (not only the lock in it)
    proc = subprocess.run([sys.executable, "-c", code, str(out)], timeout=60)
    assert proc.returncode != 0 and (out / LOCK_NAME).read_text().strip().isdigit()
    assert main(_data(tmp_path) + ["--output", str(out), "--overwrite"]) == 0
    assert len(seen) == 1


def test_without_fcntl_a_pid_file_locks_and_a_dead_ones_is_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock_module, "fcntl", None)
    monkeypatch.setattr(run_lock_module, "msvcrt", None)
    out = tmp_path / "run"
    with run_lock(out) as path:
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(RunInUse, match=rf"in use by another training run \(pid {os.getpid()}\)"):
            with run_lock(out):
                pass
    assert not out.exists()  # made by the run, holding nothing else: removed
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (out / LOCK_NAME).write_text(dead + "\n")  # a killed run's
    with run_lock(out) as path:
        assert path.read_text().strip() == str(os.getpid())
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("order", [["--resume", "--overwrite"], ["--overwrite", "--resume"]])
def test_resume_and_overwrite_together_are_a_usage_error(tmp_path, capsys, seen, order):
    with pytest.raises(SystemExit) as e:
        main(_data(tmp_path) + ["--output", str(tmp_path / "run")] + order)
    assert e.value.code == 2
    assert ("error: --resume and --overwrite contradict each other: --resume continues the run in --output, "
            "--overwrite deletes it to start a new one; give one of them") in capsys.readouterr().err
    assert seen == []


def test_resume_and_overwrite_together_from_python_are_named_as_keywords(tmp_path, seen):
    import maskrcnn

    with pytest.raises(ValueError, match=r"^resume=True and overwrite=True contradict each other"):
        maskrcnn.train(train_json=tmp_path / "train.json", output=tmp_path / "run", resume=True,
                       overwrite=True)
    assert seen == []


def test_resume_of_a_folder_without_a_run_says_so_first(tmp_path, capsys, seen):
    missing = tmp_path / "nonexist"
    assert main(["train", "--resume", "--output", str(missing)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"maskrcnn train: error: {missing}: no training run to resume there (no such folder); --train-json "
        "is required to start one (the training set's COCO JSON)")
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--resume", "--output", str(empty)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"maskrcnn train: error: {empty}: no training run to resume there (the folder holds no run.json, "
        "last_checkpoint or checkpoint); --train-json is required to start one (the training set's COCO "
        "JSON)")
    assert seen == []


def test_training_images_that_could_not_be_read_are_counted_and_named_at_the_end(tmp_path, capsys):
    """Read in a DataLoader worker: its dataset's counts stay there; the line comes from the batches."""
    import json

    import numpy as np
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2, 3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8)).save(
            images / f"{i}.png")
    broken = images / "2.png"
    broken.write_bytes(broken.read_bytes()[:200])  # its header reads, its pixels do not
    ann = [{"id": i, "image_id": i, "category_id": 1, "bbox": [8, 8, 30, 30], "area": 900.0, "iscrowd": 0,
            "segmentation": [[8, 8, 38, 8, 38, 38, 8, 38]]} for i in (1, 2, 3)]
    (tmp_path / "train.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in (1, 2, 3)],
        "categories": [{"id": 1, "name": "box"}], "annotations": ann}))
    # its per-load warning is the worker's (its stderr); the count is the main process's
    assert main(["train", "--config", "demo", "--device", "cpu", "--train-json", str(tmp_path / "train.json"),
                 "--train-images", str(images), "--output", str(tmp_path / "run"), "--set",
                 "solver.iters=2", "data.num_workers=1", "solver.batch_size=2", "solver.warmup_iters=1",
                 "solver.steps=[100]", "solver.checkpoint_period=0", "input.min_size=64",
                 "input.max_size=96"]) == 0
    out = capsys.readouterr().out
    assert (f"warning: 1 training image(s) could not be used (unreadable, or not the size their record "
            f"gives) and were replaced by other images: {broken}\n" in out), out


def test_a_file_system_without_locks_warns_and_runs_unlocked(tmp_path, monkeypatch):
    import errno
    import types

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_lock_module, "fcntl", types.SimpleNamespace(
        flock=no_locks, LOCK_EX=2, LOCK_NB=4))
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="does not support file locks .No locks available.; another"):
        with run_lock(out):
            (out / "metrics.jsonl").write_text("")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]  # no lock file left


def test_on_windows_the_first_byte_is_locked_and_a_held_one_refuses(tmp_path, monkeypatch):
    held = {}

    class _Msvcrt:
        LK_NBLCK, LK_UNLCK = 2, 0

        @staticmethod
        def locking(fd, mode, nbytes):
            key = os.fstat(fd).st_ino
            if mode == _Msvcrt.LK_NBLCK:
                if key in held:
                    raise OSError(36, "Resource deadlock avoided")
                held[key] = fd
            else:
                held.pop(key)

    monkeypatch.setattr(run_lock_module, "fcntl", None)
    monkeypatch.setattr(run_lock_module, "msvcrt", _Msvcrt)
    out = tmp_path / "run"
    with run_lock(out):
        assert len(held) == 1
        with pytest.raises(RunInUse, match="in use by another training run"):
            with run_lock(out):
                pass
    assert held == {} and not out.exists()
