"""Hostile output locations: an existing file where a folder goes, a folder where a file goes, a file
among the parents, a run folder holding an earlier run; and what a failed run says it left behind."""

import sys
from pathlib import Path

import pytest
from hostile_helpers import coco_dataset, save_image, snapshot

TRAINING = Path(__file__).resolve().parent.parent / "training"


@pytest.fixture
def taken(tmp_path):
    """A file where a folder is wanted, with its bytes."""
    path = tmp_path / "taken"
    path.write_text("earlier file")
    return path


def _commands(tmp_path, checkpoint, out):
    json_path, images, _ = coco_dataset(tmp_path)
    image = save_image(tmp_path / "im.png", 40, 50)
    results = tmp_path / "res.json"
    results.write_text("[]")
    return {
        "predict": ["predict", "--weights", checkpoint, image, "--output", out],
        "eval": ["eval", "--results", results, "--json", json_path, "--output", out],
        "train": ["train", "--config", "demo", "--train-json", json_path, "--train-images", images,
                  "--output", out],
        "demo": ["demo", "--output", out],
        "show-data": ["show-data", "--json", json_path, "--images", images, "--output", out],
    }


@pytest.mark.parametrize("command", ["predict", "eval", "train", "demo", "show-data"])
def test_existing_file_as_output_folder_is_one_line(cli, tiny_checkpoint, tmp_path, taken, command):
    rc, text = cli(*_commands(tmp_path, tiny_checkpoint, taken)[command])
    assert rc == 1 and f"--output {taken}: is an existing file, not a folder" in text
    assert len(text.strip().splitlines()) == 1 and taken.read_text() == "earlier file"


@pytest.mark.parametrize("command", ["predict", "train"])
def test_file_among_the_output_parents_is_one_line(cli, tiny_checkpoint, tmp_path, taken, command):
    rc, text = cli(*_commands(tmp_path, tiny_checkpoint, taken / "sub" / "run")[command])
    assert rc == 1 and f"{taken} is a file, so nothing can be written under it" in text
    assert taken.read_text() == "earlier file"


@pytest.mark.parametrize(
    "args",
    [["convert", "--from", "torchvision", "IN", "{out}"],
     ["convert-data", "--from", "labelme", "IN", "--output", "{out}"],
     ["export", "--weights", "IN", "--output", "{out}"]],
)  # fmt: skip
def test_existing_folder_as_output_file_is_one_line(cli, tmp_path, args):
    out = tmp_path / "folder.json"
    (out / "inside").mkdir(parents=True)
    rc, text = cli(*[a.replace("{out}", str(out)).replace("IN", str(tmp_path / "in")) for a in args])
    assert rc == 1 and f"{out}: is a folder; give the path of the file to write" in text
    assert snapshot(out) == {} and (out / "inside").is_dir()


EARLIER_RUNS = {
    "final_and_metrics": ["model_final.pth", "metrics.jsonl"],
    "config_only": ["config.yaml"],
    "periodic_checkpoint": ["model_0000100.pth"],
}


@pytest.mark.parametrize("case", sorted(EARLIER_RUNS))
def test_run_folder_with_an_earlier_run_is_not_overwritten(cli, tmp_path, case):
    json_path, images, _ = coco_dataset(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    for name in EARLIER_RUNS[case]:
        (run / name).write_text(f"earlier {name}")
    before = snapshot(run)
    rc, text = cli("train", "--config", "demo", "--train-json", json_path, "--train-images", images,
                   "--output", run)  # fmt: skip
    assert rc == 1 and f"{run} already holds a training run" in text and EARLIER_RUNS[case][0] in text
    assert "--resume" in text and "--overwrite" in text
    assert snapshot(run) == before


@pytest.mark.slow  # builds and saves a model (~9 s on a loaded 2-core machine)
def test_overwrite_replaces_the_earlier_run_only_once_the_new_one_is_assembled(cli, tmp_path):
    json_path, images, _ = coco_dataset(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"iteration": 100, "loss": 1.0}\n')
    (run / "model_0000100.pth").write_text("earlier checkpoint")
    before = snapshot(run)
    base = ["train", "--config", "demo", "--train-images", images, "--output", run, "--overwrite",
            "--device", "cpu", "--set", "solver.iters=1", "model.backbone=resnet18", "model.fpn_dim=16",
            "input.min_size=[32]", "input.max_size=48", "data.num_workers=0"]  # fmt: skip
    rc, text = cli(*base, "--train-json", tmp_path / "typo.json")  # a mistake: the old run survives
    assert rc == 1 and "typo.json" in text and snapshot(run) == before
    rc, text = cli(*base, "--train-json", json_path)
    assert rc == 0, text
    assert not (run / "model_0000100.pth").exists() and (run / "model_final.pth").is_file()
    metrics = run / "metrics.jsonl"  # appended to by a run: the earlier records must be gone
    assert not metrics.exists() or '"iteration": 100' not in metrics.read_text()


@pytest.fixture
def toy():
    sys.path.insert(0, str(TRAINING))
    try:
        import toy_train
    finally:
        sys.path.remove(str(TRAINING))
    return toy_train


@pytest.mark.parametrize("nan_at, kept", [(2, None), (8, "model_0000006.pth")])
def test_non_finite_loss_names_only_a_checkpoint_that_exists(tmp_path, toy, nan_at, kept):
    from maskrcnn.engine.trainer import NonFiniteLossError

    with pytest.raises(NonFiniteLossError) as info:
        toy.main(["--out", str(tmp_path), "--iters", "10", "--period", "3", "--nan-at", str(nan_at)])
    message = str(info.value)
    assert f"iteration {nan_at}" in message
    if kept is None:
        assert "no checkpoint was written" in message and not list(tmp_path.glob("model_*.pth"))
    else:
        assert f"the last good checkpoint is {tmp_path / kept}" in message and (tmp_path / kept).is_file()
