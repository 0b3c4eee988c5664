"""``train --resume`` without the data arguments: the run's are recorded in ``RUN_DIR/run.json`` (as given
and absolute) and used, other data given is named in a warning, recorded paths that are gone are one
error (``engine/run_data.py``, ``commands/train.py``). The training itself is stubbed: only the
arguments ``build_training`` receives matter here."""

import json
import os

from maskrcnn.cli import main


def test_resume_without_data_arguments_trains_on_the_runs_data(tmp_path, monkeypatch, capsys, seen):
    work = tmp_path / "work"
    for folder in ("data/images", "data/val", "other"):
        (work / folder).mkdir(parents=True)
    for name in ("data/train.json", "data/val.json", "other/train.json"):
        (work / name).write_text("{}")
    monkeypatch.chdir(work)
    assert main(["train", "--config", "demo", "--train-json", "data/train.json", "--val-json",
                 "data/val.json", "--val-images", "data/val", "--output", "runs/mine"]) == 0
    record = json.loads((work / "runs/mine/run.json").read_text(encoding="utf-8"))
    assert record == {"data": {
        "train_json": {"given": "data/train.json", "path": str(work / "data/train.json")},
        "train_images": {"given": None, "path": str(work / "data/images")},  # the folder found for it
        "val_json": {"given": "data/val.json", "path": str(work / "data/val.json")},
        "val_images": {"given": "data/val", "path": str(work / "data/val")}}}
    capsys.readouterr()

    monkeypatch.chdir(tmp_path)  # from another folder: the absolute paths
    assert main(["train", "--resume", "--output", "work/runs/mine", "--set", "solver.iters=8"]) == 0
    out = capsys.readouterr().out
    assert {k: seen[-1][k] for k in ("train_json", "train_images", "val_json", "val_images")} == {
        "train_json": str(work / "data/train.json"), "train_images": str(work / "data/images"),
        "val_json": str(work / "data/val.json"), "val_images": str(work / "data/val")}
    assert (f"data from the run (work/runs/mine/run.json): --train-json {work / 'data/train.json'} "
            f"--train-images {work / 'data/images'} --val-json {work / 'data/val.json'} "
            f"--val-images {work / 'data/val'}") in out, out
    assert "warning" not in out
    # written back as it was given first
    assert json.loads((work / "runs/mine/run.json").read_text(encoding="utf-8")) == record

    # other data given: named; the run's validation set still taken
    assert main(["train", "--resume", "--output", "work/runs/mine", "--train-json", "work/other/train.json",
                 "--train-images", "work/other"]) == 0
    out = capsys.readouterr().out
    assert (f"warning: --resume on other data than the run's: --train-json work/other/train.json (the "
            f"run's: {work / 'data/train.json'}), --train-images work/other (the run's: "
            f"{work / 'data/images'})") in out
    assert seen[-1]["train_json"] == "work/other/train.json"
    assert seen[-1]["val_json"] == str(work / "data/val.json")

    # the recorded data gone: one error line naming it
    (work / "other/train.json").rename(work / "data/train.json.moved")
    (work / "data/train.json").unlink()
    (work / "runs/mine/run.json").write_text(json.dumps(record))
    n = len(seen)
    assert main(["train", "--resume", "--output", "work/runs/mine"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"maskrcnn train: error: --resume: the run's data (work/runs/mine/run.json) is "
                   f"not there any more: {work / 'data/train.json'} (--train-json); give its new place with "
                   "--train-json ..."]
    assert len(seen) == n  # nothing built

    # a run folder without a record: --train-json is still needed, said in one line
    assert main(["train", "--resume", "--output", str(tmp_path / "empty")]) == 1
    assert "--train-json is required" in capsys.readouterr().err


def test_the_runs_data_through_a_symlink_is_the_runs_data(tmp_path):
    """The same JSON through a symlink (or another spelling) is not 'other data': no warning, and its
    recorded images folder is still taken (the absolute strings differ, the files do not)."""
    from maskrcnn.engine.run_data import record_run_data, resume_data_arguments

    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "train.json").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    record_run_data(tmp_path / "run", given={"train_json": "data/train.json"},
                    resolved={"train_json": tmp_path / "data" / "train.json",
                              "train_images": tmp_path / "data" / "images"})
    said = []
    given = {"train_json": str(tmp_path / "link" / "train.json"), "train_images": None}
    out = resume_data_arguments(tmp_path / "run", given, said.append)
    assert out == {"train_json": str(tmp_path / "link" / "train.json"),
                   "train_images": str(tmp_path / "data" / "images")}
    assert not any("warning" in line for line in said), said
    # a JSON that is really another one still is: named, its images not taken from the record
    (tmp_path / "data" / "other.json").write_text("{}")
    said.clear()
    out = resume_data_arguments(tmp_path / "run", {"train_json": str(tmp_path / "link" / "other.json")},
                                said.append)
    assert "train_images" not in out and "warning: --resume on other data" in said[-1]


def test_a_data_path_that_is_not_utf8_is_recorded_and_read_back(tmp_path):
    """A path with bytes that are not UTF-8 (a lone surrogate from os.fsdecode) stopped train at
    record_run_data: written as its escape, read back as the same path."""
    from maskrcnn.engine.run_data import read_run_data, record_run_data

    path = str(tmp_path / os.fsdecode(b"caf\xe9.json"))
    record_run_data(tmp_path / "run", given={"train_json": path}, resolved={"train_json": path})
    assert read_run_data(tmp_path / "run")["train_json"] == {"given": path, "path": path}
