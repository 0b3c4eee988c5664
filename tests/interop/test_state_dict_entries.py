"""Which entry of a file the weights are read from (``wrappers.inner_state_dict``, the one choice every
reader makes), said when a second one is passed over; and a file with nothing to read (an empty dict,
"model" holding a list) named as such by convert, train --init and predict alike."""

import json
from pathlib import Path

import pytest
import torch

from maskrcnn.checkpoint import CheckpointError
from maskrcnn.checkpoint_read import bare_state_dict, inference_weights
from maskrcnn.cli import main
from maskrcnn.interop.torchvision import convert_torchvision
from maskrcnn.interop.weights import read_weights

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "torchvision_state_dict_keys.json"


@pytest.mark.parametrize("content, said", [
    ({}, "{path} holds no tensors (an empty dict)"),
    ({"model": [1, 2, 3]}, "{path}: 'model' is a list, not a state dict (a mapping of names to tensors)"),
    ({"state_dict": {}, "epoch": 3}, "{path}: 'state_dict' holds no tensors (an empty dict)"),
])
def test_nothing_to_read_is_said_alike_by_convert_init_and_predict(tmp_path, capsys, content, said):
    path = tmp_path / "w.pth"
    torch.save(content, path)
    said = said.format(path=path)
    assert main(["convert", "--from", "torchvision", str(path), str(tmp_path / "out.pth")]) != 0
    assert said in capsys.readouterr().err
    with pytest.raises(ValueError) as e:  # train --init's reading
        read_weights(str(path))
    assert str(e.value) == said
    with pytest.raises(CheckpointError) as e:  # predict / eval / export's reading
        inference_weights(str(path))
    assert str(e.value) == said


def test_the_entry_taken_and_the_one_ignored_are_named():
    from maskrcnn.interop.wrappers import inner_state_dict

    a, b = {"x": torch.zeros(1)}, {"y": torch.ones(1)}
    assert inner_state_dict({"state_dict": b, "model": a, "epoch": 1}) == (a, "model", ["state_dict"])
    assert inner_state_dict({"state_dict": b}) == (b, "state_dict", [])
    assert inner_state_dict(a) == (a, None, [])
    ours = {"backbone.stem.conv1.conv.weight": torch.zeros(2)}
    _sd, notes = bare_state_dict({"model": ours, "state_dict": {"other.weight": torch.ones(1)}})
    assert notes == ["the file holds dicts under both 'model' and 'state_dict': took 'model', ignored "
                     "'state_dict'"]


def test_torchvision_conversion_notes_the_ignored_entry():
    entries = json.loads(MANIFEST.read_text())["fasterrcnn_resnet50_fpn"]
    sd = {k: torch.full(shape, float(i)) if dtype == "float32" else torch.zeros(shape, dtype=torch.int64)
          for i, (k, shape, dtype) in enumerate(entries)}
    result = convert_torchvision({"model": sd, "state_dict": {"head.weight": torch.zeros(1)}})
    assert "the file holds dicts under both 'model' and 'state_dict': took 'model', ignored 'state_dict'" \
        in result["notes"]
