"""What the fourth serve probe (p_serve4) found, one test each: decode warnings (a mode I TIFF read as
dark, NaN pixels, 10/12-bit data in 16 bits) reached the log but not the answer's ``notes``; PIL's
corrupt EXIF warning was logged twice, the second time unnamed; an empty JSON 'image' was "not a
string"; a gzip Content-Encoding was ignored (its body "not an image"); the --max-pixels 413 did not name
the flag; "/predict/" was a 307 with an empty body; the page never showed ``notes``."""

import base64
import io
import json
import warnings
from importlib import resources

import numpy as np
import pytest
from corrupt_exif import corrupt_exif_jpeg_bytes  # tests/ is on the path
from PIL import Image
from serve_helpers import png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

from maskrcnn.serve.app import create_app  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

JSON = {"Content-Type": "application/json"}


def _gray(h=48, w=64):
    return np.random.default_rng(0).integers(0, 256, (h, w))


def _encoded(img, fmt):
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def server(serve_predictor, start_server):
    return start_server(create_app(serve_predictor, weights_name="tiny.pth", max_pixels=64 * 48))


def test_decode_warnings_reach_the_clients_notes(server):
    mode_i = _encoded(Image.fromarray(_gray().astype(np.int32), mode="I"), "TIFF")
    floats = (_gray() / 255.0).astype(np.float32)
    floats[:4] = np.nan
    nan = _encoded(Image.fromarray(floats, mode="F"), "TIFF")
    twelve = _encoded(Image.fromarray((_gray() * 16).astype(np.uint16)), "PNG")
    for data, name, words in ((mode_i, "i.tif", "read as 16-bit (0..65535), so it looks dark"),
                              (nan, "nan.tif", "256 of 3072 pixels are NaN or infinite"),
                              (twelve, "g12.png", "so it looks dark")):
        status, body = server.post_file("/predict", data, filename=name)
        assert status == 200, body
        assert any(words in note for note in body["notes"]), (name, body["notes"])
    status, body = server.post_file("/predict", png_bytes(_gray().astype(np.uint8)), filename="ok.png")
    assert status == 200 and body["notes"] == [], body


def test_corrupt_exif_is_logged_once_and_named(server):
    data = corrupt_exif_jpeg_bytes(_gray())
    with warnings.catch_warnings(record=True) as caught:  # the server logs warnings (captureWarnings)
        warnings.simplefilter("always")
        status, body = server.post_file("/predict", data, filename="exbroken.jpg")
    assert status == 200, body
    said = [str(w.message) for w in caught if "Corrupt EXIF" in str(w.message)]
    assert len(said) == 1 and "exbroken.jpg: Corrupt EXIF" in said[0], said


def test_small_messages(server):
    for text in ("", "   "):
        body = json.dumps({"image": text}).encode()
        status, body = server.request("POST", "/predict", headers=JSON, body=body)
        assert status == 400 and "empty upload" in body["detail"] and "(a string)" not in body["detail"], body
    png = png_bytes(_gray().astype(np.uint8))
    import gzip

    status, body = server.request("POST", "/predict", body=gzip.compress(png),
                                  headers={"Content-Type": "image/png", "Content-Encoding": "gzip"})
    assert status == 415 and "Content-Encoding 'gzip' is not supported" in body["detail"], body
    status, body = server.post_file("/predict", png_bytes(_gray(49, 64).astype(np.uint8)), filename="big.png")
    assert status == 413 and "--max-pixels" in body["detail"], body
    status, body = server.post_file("/predict/", png, filename="slash.png")
    assert status == 200 and body["width"] == 64, body
    status, body = server.request("GET", "/health/")
    assert status == 200 and body["status"] == "ok", body
    # the JSON image still decodes
    status, body = server.request("POST", "/predict", headers=JSON,
                                  body=json.dumps({"image": base64.b64encode(png).decode()}).encode())
    assert status == 200, body


def test_the_page_shows_the_answers_notes():
    page = resources.files("maskrcnn.serve").joinpath("static/page.js").read_text()
    html = resources.files("maskrcnn.serve").joinpath("static/index.html").read_text()
    assert 'id="notes"' in html
    assert "showNotes(answer.notes" in page
