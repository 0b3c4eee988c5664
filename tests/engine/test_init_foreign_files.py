"""``train --init`` from another library's file: NaN/inf weights refused before training (converted
files are not checked as our checkpoints are), and the summary counting class tensors copied in part
apart from those loaded whole (``engine/init_weights``)."""

import pytest
import torch

from maskrcnn.config import load_config
from maskrcnn.engine.init_weights import InitError, initialise_model
from maskrcnn.interop.weights import SourceWeights


class _Tiny(torch.nn.Module):
    """A model whose state dict has one backbone tensor pair (our names)."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(2, 2)


def _source(state, spec="tv_maskrcnn.pth"):
    return SourceWeights(state_dict=state, kind="torchvision", layout="maskrcnn", implied={},
                         provenance={"spec": spec})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_of_a_converted_file_are_refused_naming_file_and_keys(bad):
    weight = torch.ones(2, 2)
    weight[0, 1] = bad
    model = _Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitError, match=r"^tv_maskrcnn\.pth: weights hold NaN or infinite values in tensors "
                                        r"backbone\.weight \(our names\)"):
        initialise_model(model, load_config("r50_fpn"), _source({"backbone.weight": weight,
                                                                  "backbone.bias": torch.zeros(2)}))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded
