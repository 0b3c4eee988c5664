"""The pt2 export's outputs (export/pt2.py): named from the model's declaration, no forward run to learn
them, and each one a map the model's features really hold."""

import pytest
import torch
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.config import load_config
from maskrcnn.export.pt2 import FeatureExtractor
from maskrcnn.modeling.mask_rcnn import build_model


@pytest.mark.parametrize("extra, names", [
    ({}, ["p2", "p3", "p4", "p5", "p6"]),
    ({"model.fpn": False, "model.rpn.anchor_sizes": (16, 32, 64)}, ["res4"]),  # C4: res2, res3 left out
    ({"model.fpn": False, "model.roi_features": "res5", "model.rpn.anchor_sizes": (16, 32, 64)}, ["res5"]),
])
def test_output_names_come_from_the_model_without_a_forward(extra, names, monkeypatch):
    torch.manual_seed(0)
    model = build_model(load_config("demo", {**TINY, **extra})).eval()
    real = model.features
    monkeypatch.setattr(model, "features", lambda batch: pytest.fail("a forward to learn the names"))
    wrapper = FeatureExtractor(model)
    assert wrapper.names == names
    monkeypatch.setattr(model, "features", real)
    with torch.no_grad():
        maps = wrapper(torch.zeros(1, 3, 64, 64))
    assert len(maps) == len(names) and all(m.shape[0] == 1 for m in maps)
    assert maps[-1].shape[-1] == 64 // {"p6": 64, "res4": 16, "res5": 32}[names[-1]]
    # the strides the archive's metadata gives: each map is the input's size over its stride
    assert [64 // s for s in wrapper.strides()] == [m.shape[-1] for m in maps]
