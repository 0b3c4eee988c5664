"""The data and weights refusals a Python caller meets name its keywords (``maskrcnn.train()``'s
``train_json=``, ``val_images=``, ``resume=True``; ``Predictor.from_checkpoint``'s ``config=`` and
``overrides=``), not the command's options it never typed; the commands keep their options
(``caller_words``, the one table of option -> keyword)."""

import json

import pytest
from tiny_model import one_cat_dataset  # tests/ is on the path

import maskrcnn
from maskrcnn.checkpoint import CheckpointError
from maskrcnn.cli import main
from maskrcnn.predictor import Predictor


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return one_cat_dataset(tmp_path_factory.mktemp("api_data_words"))


def _refusal(**keywords) -> str:
    with pytest.raises(ValueError) as caught:
        maskrcnn.train(**keywords)
    return str(caught.value)


def test_a_missing_train_json_is_named_as_the_keyword(tmp_path, capsys):
    said = _refusal(output=str(tmp_path / "run"))
    assert said == "train_json= is required (the training set's COCO JSON)", said
    assert main(["train", "--output", str(tmp_path / "run")]) == 1
    assert "--train-json is required (the training set's COCO JSON)" in capsys.readouterr().err


def test_val_images_without_val_json_is_named_as_the_keywords(data, tmp_path, capsys):
    said = _refusal(train_json=str(data / "train.json"), output=str(tmp_path / "run"),
                    val_images=str(data / "images"))
    assert said == "val_json= and val_images= go together", said
    # the note on the images folder it found names the keyword too
    assert f"train_images= not given: images of {data / 'train.json'}" in capsys.readouterr().out
    assert main(["train", "--train-json", str(data / "train.json"), "--output", str(tmp_path / "run2"),
                 "--val-images", str(data / "images")]) == 1
    captured = capsys.readouterr()
    assert "--val-json and --val-images go together" in captured.err
    assert "--train-images not given" in captured.out


def test_a_resumed_runs_data_gone_is_named_as_the_keywords(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    gone = tmp_path / "gone.json"
    (run / "run.json").write_text(json.dumps({"data": {"train_json": {"given": "gone.json",
                                                                       "path": str(gone)}}}))
    said = _refusal(output=str(run), resume=True)
    assert said == (f"resume=True: the run's data ({run / 'run.json'}) is not there any more: {gone} "
                    "(train_json=); give its new place with train_json= ..."), said
    assert "--" not in said, said
    assert main(["train", "--output", str(run), "--resume"]) == 1
    assert (f"--resume: the run's data ({run / 'run.json'}) is not there any more: {gone} (--train-json); "
            "give its new place with --train-json ...") in capsys.readouterr().err
    # a damaged record: its way out in the keywords too
    (run / "run.json").write_text("[1]")
    said = _refusal(output=str(run), resume=True)
    assert said.endswith("give the data arguments (train_json= ...) with resume=True"), said


def test_config_for_a_checkpoint_is_refused_in_the_predictors_keywords(data, tmp_path, capsys):
    with pytest.raises(CheckpointError) as caught:
        Predictor.from_checkpoint(data / "tiny.pth", device="cpu", config="r50_fpn",
                                  overrides={"model.roi_heads.score_thresh": 0.3})
    assert str(caught.value) == (f"{data / 'tiny.pth'}: config='r50_fpn' is for a bare state dict; this "
                                 "checkpoint holds its own config (change it with overrides={'KEY': VALUE})")
    # a command keeps its options
    assert main(["predict", "--weights", str(data / "tiny.pth"), str(data / "images" / "1.png"),
                 "--output", str(tmp_path / "o"), "--config", "r50_fpn"]) == 1
    assert (f"{data / 'tiny.pth'}: --config r50_fpn is for a bare state dict; this checkpoint holds its own "
            "config (change it with --set KEY=VALUE)") in capsys.readouterr().err
