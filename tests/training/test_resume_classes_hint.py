"""The refusal of a resume onto other classes suggests the weights to start a new run from: it named
``RUN/model_final.pth`` also for a run stopped before its end, which has none."""

import pytest

from maskrcnn.engine.training import check_resumed_classes


def _refusal(run):
    with pytest.raises(ValueError) as e:
        check_resumed_classes(("bg", "cat", "dog"), ("bg", "cat", "bird"), output=run, train_json="ds3.json")
    return str(e.value)


def test_refusal_names_the_newest_checkpoint_of_a_run_without_final_weights(tmp_path):
    for name in ("model_0000003.pth", "model_0000006.pth"):
        (tmp_path / name).write_bytes(b"x")
    text = _refusal(tmp_path)
    assert f"--init {tmp_path / 'model_0000006.pth'} --output ANOTHER_FOLDER" in text
    assert "model_final.pth" not in text


def test_refusal_names_the_final_weights_when_the_run_has_them(tmp_path):
    for name in ("model_0000006.pth", "model_final.pth"):
        (tmp_path / name).write_bytes(b"x")
    assert f"--init {tmp_path / 'model_final.pth'} --output ANOTHER_FOLDER" in _refusal(tmp_path)


def test_refusal_through_the_python_api_names_its_keywords(tmp_path):
    """maskrcnn.train(resume=True) onto other classes was told to run "--init W --output ANOTHER_FOLDER"."""
    (tmp_path / "model_final.pth").write_bytes(b"x")
    with pytest.raises(ValueError) as e:
        check_resumed_classes(("bg", "cat", "dog"), ("bg", "cat", "bird"), output=tmp_path,
                              train_json="ds3.json", caller="maskrcnn.train()")
    weights = str(tmp_path / "model_final.pth")
    assert f"start a new run: init={weights!r}, output='ANOTHER_FOLDER'" in str(e.value)
    assert "--init" not in str(e.value) and "--output" not in str(e.value)
