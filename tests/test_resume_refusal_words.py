"""``maskrcnn.train(resume=True)``'s refusals of a run it cannot go on with name its keywords
(``init=``, ``output=``, ``overwrite=True``), not the command's ``--init ... --output`` / ``--overwrite``
it never typed (``trainer.no_training_state``, ``finished_without_checkpoint``); the command keeps its
options."""

import shutil

import pytest
from tiny_model import one_cat_dataset  # tests/ is on the path

import maskrcnn
from maskrcnn.engine.trainer import finished_without_checkpoint, no_training_state


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_words")
    return one_cat_dataset(root)


def _refusal(data, run) -> str:
    with pytest.raises(Exception) as caught:
        maskrcnn.train(train_json=str(data / "train.json"), output=str(run), resume=True)
    return str(caught.value)


def test_a_finished_run_without_checkpoint_names_the_keywords(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(data / "tiny.pth", run / "model_final.pth")
    said = _refusal(data, run)
    assert "holds finished weights (model_final.pth)" in said, said
    assert f"init={str(run / 'model_final.pth')!r}, output='ANOTHER'" in said, said
    assert said.endswith("or overwrite=True to start again"), said
    assert "--" not in said, said
    # the command's words stay its options
    assert finished_without_checkpoint(run).endswith(
        f"--init {run / 'model_final.pth'} --output ANOTHER to train on from them, or --overwrite to start "
        "again")


def test_a_weights_only_checkpoint_names_the_keywords(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(data / "tiny.pth", run / "model_0000010.pth")
    (run / "last_checkpoint").write_text("model_0000010.pth")
    said = _refusal(data, run)
    assert said.startswith(f"resume=True: {run / 'model_0000010.pth'} is a weights-only file"), said
    assert f"new run: init={str(run / 'model_0000010.pth')!r}, output='ANOTHER_FOLDER'" in said, said
    assert "--" not in said, said
    command = no_training_state(run / "model_0000010.pth", {"model": {}})
    assert command.startswith("--resume: ") and "new run: --init " in command, command
    assert command.endswith("--output ANOTHER_FOLDER (the run holds no other checkpoint)"), command
