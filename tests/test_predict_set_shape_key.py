"""``predict --weights W --set model.fpn_dim=128`` (a key that shapes the model, contradicting the
checkpoint) read "W: does not fit the model its config describes", as if the file were broken; now the
line blames the --set: the key, the value asked, the checkpoint's, and that such keys come from it."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.modeling.mask_rcnn import build_model

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from maskrcnn.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(path, model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=["__background__", "cat", "dog"])
    return path


def test_a_set_shape_key_contradicting_the_checkpoint_blames_the_set(checkpoint, tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(img)
    rc = main(["predict", "--weights", str(checkpoint), str(img), "--output", str(tmp_path / "o"),
               "--device", "cpu", "--set", "model.fpn_dim=128", "model.roi_heads.score_thresh=0.5"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert (f"{checkpoint}: model.fpn_dim=128 asked for (--set) contradicts the checkpoint's "
            "architecture: its model.fpn_dim is 32 (fpn.") in err, err
    assert "keys that shape the model come from the checkpoint" in err, err
    assert "score_thresh" not in err and "does not fit the model its config describes" not in err, err
    # a setting that does not shape the model still predicts
    rc = main(["predict", "--weights", str(checkpoint), str(img), "--output", str(tmp_path / "p"),
               "--device", "cpu", "--set", "model.roi_heads.score_thresh=0.5"])
    assert rc == 0, capsys.readouterr().err


def test_the_api_refusal_names_overrides_not_the_commands_set(checkpoint):
    # the line wrote "(--set, overrides=)" for either caller: each now names what its caller passed
    from maskrcnn import Predictor
    from maskrcnn.checkpoint import CheckpointError

    with pytest.raises(CheckpointError) as e:
        Predictor.from_checkpoint(checkpoint, device="cpu", overrides={"model.fpn_dim": 128})
    assert f"{checkpoint}: model.fpn_dim=128 asked for (overrides=) contradicts" in str(e.value), e.value
    assert "--set" not in str(e.value), e.value
