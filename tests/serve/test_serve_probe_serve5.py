"""What the fifth serve probe (p_serve5) found in the form parsing: a file sent in a field named like a
parameter (``-F score_thresh=@photo.jpg``) was taken as the image, and a text ``score_thresh`` beside it
applied, although the parameter was in the form twice. Now such a file is a 400 naming the field."""

import numpy as np
import pytest
from serve_helpers import png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

from maskrcnn.serve.app import create_app  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def server(serve_predictor, start_server):
    return start_server(create_app(serve_predictor, weights_name="tiny.pth"))


def test_a_file_in_a_parameters_form_field_is_refused_not_taken_as_the_image(server):
    image = png_bytes(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    for fields in (None, {"score_thresh": "0.5"}):
        status, body = server.post_file("/predict", image, field="score_thresh", fields=fields)
        assert status == 400, body
        assert body["detail"].startswith("the file's form field 'score_thresh' is a parameter's name"), body
    # the usual names, and a client's own, still carry the image; the parameter beside it still applies
    for field in ("image", "picture"):
        status, body = server.post_file("/predict", image, field=field, fields={"score_thresh": "0.5"})
        assert status == 200, body
        assert all(p["score"] >= 0.5 for p in body["predictions"])
