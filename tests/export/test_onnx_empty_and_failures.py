"""An exported graph that detects on one image and finds nothing on the next (D = 0 at run time, not at
export), and an image onnxruntime fails on: skipped and counted by ``predict``, as a checkpoint's
failures are, not a traceback that ends the run.

One export of the tiny model (~3 s), with a score threshold between its best scores on two images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import build_tiny, save_tiny_checkpoint  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.predictor import Predictor

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

# The tiny model's (random weights, seed 0) best class score is ~0.345 on a black 64 x 64 image and ~0.334
# on a grey one: a threshold between them detects on the first and nothing on the second.
THRESH = 0.34
BLACK, GREY = torch.zeros(3, 64, 64), torch.full((3, 64, 64), 0.5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_empty")
    save_tiny_checkpoint(root / "tiny.pth", *build_tiny())
    assert main(["export", "--weights", str(root / "tiny.pth"), "--output", str(root / "tiny.onnx"),
                 "--set", f"model.roi_heads.score_thresh={THRESH}"]) == 0  # fmt: skip
    return root


def test_a_graph_that_detects_returns_empty_outputs_on_an_image_it_finds_nothing_on(files):
    ckpt = Predictor.from_checkpoint(files / "tiny.pth", device="cpu",
                                     overrides={"model.roi_heads.score_thresh": THRESH})
    onnx = Predictor.from_onnx(files / "tiny.onnx")
    for predictor in (ckpt, onnx):
        hit, miss = predictor([BLACK, GREY])
        assert hit["boxes"].shape[0] > 0 and hit["mask_probs"].shape[1:] == (1, 28, 28)
        assert miss["boxes"].shape == (0, 4) and miss["scores"].shape == (0,) and miss["labels"].shape == (0,)
        assert miss["mask_probs"].shape == (0, 1, 28, 28) and miss["masks"].shape == (0, 64, 64)
    # the graph itself, on resized inputs of one row, one column and a tall thin one (nothing detected)
    for hw in ((1, 96), (96, 1), (96, 5)):
        det = onnx.model(torch.full((3, *hw), 0.5))
        assert det["boxes"].shape == (0, 4) and det["mask_probs"].shape == (0, 1, 28, 28), hw
    assert onnx.model(BLACK)["boxes"].shape[0] == hit["boxes"].shape[0]  # and it detects again after


def test_an_image_onnxruntime_fails_on_is_skipped_and_counted(files, tmp_path, capsys, monkeypatch):
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from maskrcnn.export.onnx_runtime import OnnxRunError

    run = ort.InferenceSession.run

    def fail_off_square(self, names, feeds, *args, **kwargs):  # onnxruntime's own error type, as it raises
        if feeds["image"].shape[1] != feeds["image"].shape[2]:
            raise Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Reshape "
                       "node. Name:'/Reshape_53' Status Message: /src/reshape_helper.h:47 onnxruntime::"
                       "ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, bool) The input tensor "
                       "cannot be reshaped to the requested shape.")
        return run(self, names, feeds, *args, **kwargs)

    monkeypatch.setattr(ort.InferenceSession, "run", fail_off_square)
    onnx = Predictor.from_onnx(files / "tiny.onnx")  # a RuntimeError, as the PyTorch model's failures are
    with pytest.raises(OnnxRunError, match=r"^onnxruntime failed on the 64x40 \(resized\) image: Reshape "
                                           r"node '/Reshape_53': The input tensor cannot be reshaped to the "
                                           r"requested shape\.$"):
        onnx.model(torch.zeros(3, 64, 40))

    images = tmp_path / "in"
    images.mkdir()
    for name, w in (("a.png", 64), ("b.png", 40), ("c.png", 64)):  # b fails (resized to 96x60), a and c
        # (black) detect
        Image.fromarray(np.zeros((64, w, 3), dtype=np.uint8)).save(images / name)
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(files / "tiny.onnx"), str(images), "--output", str(out),
               "--no-overlays"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"skipped {images / 'b.png'}: the model failed on this image (OnnxRunError: onnxruntime failed " \
           "on the 96x60 (resized) image: Reshape node '/Reshape_53'" in err
    assert "1 skipped (1 prediction_failed)" in err
    names = {Path(p["file_name"]).name for p in json.loads((out / "predictions.json").read_text())}
    assert names == {"a.png", "c.png"}  # the images after the failing one too
