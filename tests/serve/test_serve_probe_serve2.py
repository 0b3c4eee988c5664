"""What the second serve probe (p_serve2) found, one test each: with --batch-size an image's detections
depended on the other uploads sharing its batch (padded to their size); --score-thresh above 1 was taken
(every answer empty) and /health did not show it; a JSON key given twice was taken silently (last wins);
Label Studio's /predict without a label_config ignored what /setup had accepted, and /setup dropped a
second label control without a word; a JSON image that is not an image was blamed on curl -d; a
multi-frame upload did not tell the client frames were left out; an idle keep-alive connection was
counted as a header timeout."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from serve_helpers import png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

from maskrcnn.serve.app import create_app  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

JSON = {"Content-Type": "application/json"}


def _image(seed, h, w):
    return torch.from_numpy(np.random.default_rng(seed).random((3, h, w), dtype=np.float32))


def test_an_image_gets_the_same_detections_whatever_shares_its_batch(serve_predictor):
    app = create_app(serve_predictor)  # batch_size 4
    run_batch = app.state.batches.run_batch
    small, wide, small2 = _image(1, 70, 90), _image(2, 60, 300), _image(3, 70, 90)
    mixed = run_batch([small, wide, small2])
    for image, got in zip((small, wide, small2), mixed):
        (alone,) = serve_predictor.predict_tensors([image])
        assert len(alone["scores"]) > 0
        assert got["scores"].shape == alone["scores"].shape
        torch.testing.assert_close(got["scores"], alone["scores"], atol=1e-4, rtol=0)
        torch.testing.assert_close(got["boxes"], alone["boxes"], atol=1e-2, rtol=0)
        assert torch.equal(got["labels"], alone["labels"])
