"""An exported ONNX model where a flag or a request asks for what its graph cannot do: a request's
``score_thresh`` below the exported threshold (nothing lower can come back) is said in the answer's
``notes`` as ``predict`` says it; ``benchmark --no-optimise --no-winograd`` notes them as not applying,
as ``predict`` does. One tiny export, shared."""

import numpy as np
import pytest
from serve_helpers import png_bytes
from tiny_model import TINY, build_tiny, save_tiny_checkpoint  # tests/ is on the path

from maskrcnn.cli import main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]  # one export, ~3 s


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_notes")
    model, cfg = build_tiny(TINY)
    save_tiny_checkpoint(root / "tiny.pth", model, cfg)
    assert main(["export", "--weights", str(root / "tiny.pth"), "--output", str(root / "t.onnx"),
                 "--set", "model.roi_heads.score_thresh=0.3"]) == 0
    return root / "t.onnx"


def test_a_request_below_the_exported_threshold_is_told_so_in_notes(onnx_file, start_server):
    from maskrcnn.predictor import Predictor
    from maskrcnn.serve.app import create_app

    server = start_server(create_app(Predictor.from_weights(onnx_file, device="cpu")))
    image = png_bytes(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    status, body = server.post_file("/predict?score_thresh=0.1", image, filename="x.png")
    assert status == 200, body
    assert len(body["notes"]) == 1
    assert body["notes"][0].startswith("a score threshold of 0.1 keeps nothing more than the exported "
                                       "model's own 0.3")
    status, body = server.post_file("/predict?score_thresh=0.5", image, filename="x.png")
    assert status == 200 and body["notes"] == []  # above it: the request filters, nothing to say


def test_benchmark_notes_flags_that_do_not_apply_to_an_onnx_file(onnx_file, capsys):
    args = ["benchmark", "--weights", str(onnx_file), "--size", "32x32", "--images", "1", "--threads", "1"]
    assert main([*args, "--no-optimise", "--no-winograd"]) == 0
    out, err = capsys.readouterr()
    assert ("note: --no-optimise and --no-winograd do not apply to an .onnx file: onnxruntime runs its "
            "graph as exported") in err
    assert "onnxruntime" in out
    assert main(args) == 0
    assert "do not apply" not in capsys.readouterr().err
