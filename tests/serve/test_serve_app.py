"""The server on a free localhost port: answers equal the predictor's, bad uploads get a 4xx with a
message, 20 concurrent requests are each answered with their own image's detections, and the server
keeps serving after all of it."""

import http.client
import io
import socket
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from serve_helpers import CLASS_NAMES, LABEL_TO_CATEGORY, GatedPredictor, png_bytes, wait_for

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

from maskrcnn.data.coco_results import detections_to_coco_results  # noqa: E402
from maskrcnn.data.images import decode_image_bytes  # noqa: E402
from maskrcnn.data.mask_codec import annotation_to_mask  # noqa: E402
from maskrcnn.serve.app import create_app  # noqa: E402

# tiny forwards: extra intra-op threads only add synchronisation (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")


def _noise(seed, h=90, w=120):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _expected(predictor, data, name):
    """What predict would write for this upload: the predictor on the decoded image, as COCO results."""
    det = predictor.predict_tensors([decode_image_bytes(data)])[0]
    return detections_to_coco_results(
        det, image_id=1, label_to_category_id=LABEL_TO_CATEGORY, extra={"file_name": name}
    )


def _assert_same(got, want):
    assert len(got) == len(want) > 0
    assert any(annotation_to_mask(w["segmentation"], *w["segmentation"]["size"]).any() for w in want)
    for g, w in zip(got, want):
        assert g["category_id"] == w["category_id"] and g["file_name"] == w["file_name"]
        assert g["image_id"] == 1
        assert g["score"] == pytest.approx(w["score"], abs=1e-4)
        assert g["bbox"] == pytest.approx(w["bbox"], abs=1e-2)
        H, W = w["segmentation"]["size"]
        mg = annotation_to_mask(g["segmentation"], H, W)
        mw = annotation_to_mask(w["segmentation"], H, W)
        # batched forwards may round differently: a pixel on the 0.5 boundary may flip, no more
        assert (mg != mw).sum().item() <= max(2, 0.01 * mw.sum().item())


@pytest.fixture
def server(serve_predictor, start_server):
    return start_server(create_app(serve_predictor, max_upload_bytes=200_000, weights_name="tiny.pth"))


def test_predict_answers_what_predict_writes(serve_predictor, server):
    data = png_bytes(_noise(1))
    want = _expected(serve_predictor, data, "noise.png")
    status, body = server.post_file("/predict", data, filename="noise.png")
    assert status == 200, body
    assert (body["width"], body["height"], body["file_name"]) == (120, 90, "noise.png")
    assert body["categories"] == {"5": "cat", "9": "dog"}
    assert body["num_detections"] == len(body["predictions"])
    _assert_same(body["predictions"], want)

    # the raw body works too (curl --data-binary), under the default file name
    status, raw = server.request("POST", "/predict", body=data, headers={"Content-Type": "image/png"})
    assert status == 200, raw
    _assert_same(raw["predictions"], [dict(w, file_name="upload") for w in want])

    # score_thresh, as a query parameter or a form field, keeps exactly the detections at or above it
    scores = sorted(w["score"] for w in want)
    t = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2  # between two scores: half are kept
    kept = [w for w in want if w["score"] >= t]
    assert 0 < len(kept) < len(want)
    status, q = server.post_file(f"/predict?score_thresh={t}", data, filename="noise.png")
    assert status == 200, q
    _assert_same(q["predictions"], kept)
    status, f = server.post_file("/predict", data, filename="noise.png", fields={"score_thresh": str(t)})
    assert status == 200, f
    _assert_same(f["predictions"], kept)
    status, none = server.post_file("/predict?score_thresh=1", data)
    assert status == 200 and none["predictions"] == [] and none["num_detections"] == 0


def test_score_thresh_with_rle_masks_as_the_command_serves_them(serve_predictor, serve_predictor_rle,
                                                                 start_server):
    # `maskrcnn serve` asks for masks="rle": the per-detection list must be filtered with the scores
    server = start_server(create_app(serve_predictor_rle))
    data = png_bytes(_noise(7))
    want = _expected(serve_predictor, data, "n.png")
    scores = sorted(w["score"] for w in want)
    t = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    kept = [w for w in want if w["score"] >= t]
    assert 0 < len(kept) < len(want)
    status, body = server.post_file(f"/predict?score_thresh={t}", data, filename="n.png")
    assert status == 200, body
    _assert_same(body["predictions"], kept)


def test_health_and_page(server):
    status, health = server.request("GET", "/health")
    assert status == 200
    assert health["status"] == "ok" and health["weights"] == "tiny.pth" and health["batch_size"] == 4
    assert health["precision"] == "float32"  # int8 / bfloat16 otherwise (test_int8_probe_fixes.py)
    assert health["categories"] == {"5": "cat", "9": "dog"} and health["max_upload_bytes"] == 200_000
    status, page = server.request("GET", "/")
    assert status == 200 and "<canvas" in page and 'src="page.js"' in page
    # only the page's own script runs (the browser tests check that the page works under this policy)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", "/")
    headers = conn.getresponse().headers
    conn.close()
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, js = server.request("GET", "/page.js")
    assert status == 200 and "function decodeMask" in js and 'fetch("predict"' in js


def test_head_is_answered_as_get_without_a_body(server):
    """HEAD on / and /health was a 405: uptime monitors and load balancers probe with it."""
    for path in ("/", "/health"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("GET", path)
        got = conn.getresponse()
        get_type, get_body = got.getheader("content-type"), got.read()
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("HEAD", path)
        head = conn.getresponse()
        assert (head.status, head.read()) == (200, b""), path
        assert head.getheader("content-type") == get_type and len(get_body) > 0
        conn.close()
    assert server.request("POST", "/health")[0] == 405  # GET and HEAD only


def test_a_json_boolean_threshold_and_a_text_image_field_are_refused_by_name(server):
    import base64
    import json

    image = base64.b64encode(png_bytes(_noise(3))).decode()
    for value in (True, False):  # float(True) is 1.0: taken as a threshold, no detection, a 200
        status, body = server.request("POST", "/predict", headers={"Content-Type": "application/json"},
                                      body=json.dumps({"image": image, "score_thresh": value}))
        assert status == 400, body
        assert body["detail"] == f"score_thresh must be a number in [0, 1], got {value}"
    # curl -F image=hello: the field was named 'image' (it was told to use that name), but holds text
    form = b'--zzz\r\nContent-Disposition: form-data; name="image"\r\n\r\nhello\r\n--zzz--\r\n'
    status, body = server.request("POST", "/predict", body=form,
                                  headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    assert (status, body["detail"]) == (400, "no image in the form: field 'image' holds text, not a file: "
                                             "send the file with curl -F image=@photo.jpg")


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width, height):
    """A PNG whose header claims width x height pixels, with almost no data: a decompression bomb's
    first bytes (decoding it would allocate width x height x 3 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_bad_uploads_get_4xx_with_a_message(server):
    good = png_bytes(_noise(2))
    post, raw = server.post_file, server.request
    bad_form = {"Content-Type": "multipart/form-data; boundary=zzz"}
    text_only = b'--zzz\r\nContent-Disposition: form-data; name="score_thresh"\r\n\r\n0.5\r\n--zzz--\r\n'
    cases = [
        ("not an image", post("/predict", b"this is text", filename="a.txt"), 400, "a.txt: not an image"),
        ("empty body", raw("POST", "/predict", body=b""), 400, "empty upload"),
        ("truncated", post("/predict", good[:2000], filename="cut.png"), 400, "cut.png: cannot decode"),
        ("too large", raw("POST", "/predict", body=b"\0" * 300_000), 413, "larger than the limit"),
        ("too large form", post("/predict", b"\0" * 300_000), 413, "larger than the limit"),
        ("PIL's bomb limit", post("/predict", _png_header_only(30000, 30000), filename="b.png"), 413,
         "b.png: image of 900000000 pixels is larger than the limit of 16000000 pixels"),  # server's first
        ("max_pixels", post("/predict", _png_header_only(8000, 8000), filename="c.png"), 413,
         "8000x8000 = 64000000 pixels is larger than the limit"),
        ("no file in the form", raw("POST", "/predict", headers=bad_form, body=text_only), 400,
         "field named 'image'"),
        ("bad multipart", raw("POST", "/predict", body=b"--x\r\ngarbage", headers=bad_form), 400, ""),
        ("thresh not a number", post("/predict?score_thresh=high", good), 400, "score_thresh"),
        ("thresh out of range", post("/predict?score_thresh=1.5", good), 400, "in [0, 1]"),
        ("thresh NaN", post("/predict?score_thresh=nan", good), 400, "in [0, 1], got nan"),
        ("curl -d", raw("POST", "/predict", body=good.replace(b"\n", b"").replace(b"\r", b""),
                        headers={"Content-Type": "application/x-www-form-urlencoded"}), 400,
         "(curl -d drops line breaks from a file: send it with --data-binary or -F image=@)"),
        # curl --data-binary @text.jpg sends the same content-type: not blamed on -d, what came is said
        ("text, urlencoded", raw("POST", "/predict", body=b"line one\nline two\n",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"}), 400,
         "upload: not an image file PIL can identify (received 18 bytes sent as "
         "application/x-www-form-urlencoded, starting b'line one\\nline tw')"),
        ("HEIC, raw body", raw("POST", "/predict", body=b"\0\0\0\x18ftypheic" + bytes(64)), 400,
         "upload: not an image file PIL can identify (HEIC needs a Pillow plugin"),
        ("unknown parameter", post("/predict?score=0.5", good), 400,
         "unknown parameter 'score': /predict takes score_thresh"),
        ("unknown form field", post("/predict", good, fields={"thresh": "0.5"}), 400, "unknown parameter"),
        ("given twice", post("/predict?score_thresh=0.1", good, fields={"score_thresh": "0.9"}), 400,
         "parameter 'score_thresh' given more than once"),
    ]  # fmt: skip
    for what, (status, body), want_status, want_text in cases:
        assert status == want_status, (what, status, body)
        assert isinstance(body, dict) and want_text in body["detail"], (what, body)
    status, ok = post("/predict", good)  # still serving
    assert status == 200 and ok["num_detections"] > 0
    # the server's own limit named once (it was followed by "; this server takes at most 16000000 pixels")
    _, body = post("/predict", _png_header_only(30000, 30000), filename="b.png")
    assert body["detail"] == ("b.png: image of 900000000 pixels is larger than the limit of 16000000 pixels "
                              "(serve --max-pixels)")


def _encoded(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_every_kind_of_image_is_served_and_exif_rotation_is_the_displayed_one(serve_predictor, server):
    from PIL import Image

    rgb = Image.fromarray(_noise(9, 60, 80))
    gray16 = (np.arange(4800).reshape(60, 80) * 13).astype(np.uint16)
    kinds = {
        "1x1.png": _encoded(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "16bit.png": _encoded(Image.fromarray(gray16), "PNG"),
        "cmyk.jpg": _encoded(rgb.convert("CMYK"), "JPEG"),
        "palette.png": _encoded(rgb.convert("P"), "PNG"),
        "rgba.png": _encoded(rgb.convert("RGBA"), "PNG"),
        "anim.gif": _encoded(rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.convert("P")]),
    }
    for name, data in kinds.items():
        status, body = server.post_file("/predict", data, filename=name)
        assert status == 200 and body["file_name"] == name, (name, body)
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): the answer is about the displayed
    # picture, as predict's is: the same as for the rotated pixels saved without the tag (PNG: lossless)
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged = _encoded(rgb, "PNG", exif=exif.tobytes())
    upright = png_bytes(np.ascontiguousarray(np.rot90(np.asarray(rgb), k=-1)))
    status, body = server.post_file("/predict", tagged, filename="r.png")
    assert status == 200 and (body["width"], body["height"]) == (60, 80), body
    _assert_same(body["predictions"], _expected(serve_predictor, upright, "r.png"))


def test_max_pixels_refuses_a_real_image_before_decoding(serve_predictor, start_server):
    server = start_server(create_app(serve_predictor, max_pixels=100 * 100))
    status, body = server.post_file("/predict", png_bytes(_noise(3, 101, 100)), filename="big.png")
    assert status == 413 and "big.png: image of 100x101 = 10100 pixels" in body["detail"], body
    status, body = server.post_file("/predict", png_bytes(_noise(3, 100, 100)))
    assert status == 200, body


def test_twenty_concurrent_requests_each_get_their_own_answer(serve_predictor, server):
    uploads = [png_bytes(_noise(100 + i)) for i in range(20)]  # one size: batch-mates need no padding
    want = [_expected(serve_predictor, data, f"img{i}.png") for i, data in enumerate(uploads)]
    assert len({w[0]["score"] for w in want}) == 20  # distinct images, distinct answers: a mix-up shows
    bad = [b"not an image", uploads[0][:3000], b"\0" * 300_000]  # sent among them: 400, 400, 413
    _, before = server.request("GET", "/health")

    def send(i):
        if i < 20:
            return server.post_file("/predict", uploads[i], filename=f"img{i}.png")
        return server.post_file("/predict", bad[i - 20], filename=f"bad{i}.png")

    with ThreadPoolExecutor(max_workers=23) as pool:
        answers = list(pool.map(send, range(23)))
    for i, (status, body) in enumerate(answers[:20]):
        assert status == 200, (i, body)
        _assert_same(body["predictions"], want[i])
    assert [status for status, _ in answers[20:]] == [400, 400, 413]
    status, after = server.request("GET", "/health")
    assert status == 200 and after["images_run"] - before["images_run"] == 20
    assert after["pending"] == 0 and after["in_flight"] == 0
    assert after["batches_run"] - before["batches_run"] <= 20


def test_more_requests_than_max_pending_get_a_503(start_server, make_png):
    model = GatedPredictor()
    server = start_server(create_app(model, max_pending=1))
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(server.post_file, "/predict", make_png(_noise(5)))
        assert model.entered.wait(timeout=60)  # the first request is in the model
        status, body = server.post_file("/predict", make_png(_noise(6)))
        assert status == 503 and "1 requests are already being served" in body["detail"], body
        model.release.set()
        status, body = first.result(timeout=60)
    assert status == 200 and body["predictions"] == [] and body["num_detections"] == 0
    status, body = server.post_file("/predict", make_png(_noise(6)))  # served again once it is free
    assert status == 200, body



def test_a_request_whose_client_disconnects_is_dropped_before_the_model(start_server, make_png):
    model = GatedPredictor()
    server = start_server(create_app(model))
    health = lambda: server.request("GET", "/health")[1]  # noqa: E731
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(server.post_file, "/predict", make_png(_noise(5, 40, 50)))
        assert model.entered.wait(timeout=60)  # the model holds the first request
        data = make_png(_noise(6, 30, 50))
        client = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        wait_for(lambda: health()["pending"] == 1, "the second request to be queued")
        client.close()  # the client gives up while its request waits
        wait_for(lambda: health()["in_flight"] == 1, "the server to notice the disconnect")
        model.release.set()
        assert first.result(timeout=60)[0] == 200
    status, body = server.post_file("/predict", make_png(_noise(7, 20, 50)))  # queued after the dropped one
    assert status == 200, body
    assert model.seen == [(40, 50), (20, 50)]  # the abandoned (30, 50) image never reached the model


def test_an_upload_still_being_read_counts_towards_max_pending(start_server, make_png):
    # Else a crowd of slow uploads would each hold up to max_upload_bytes before being counted.
    server = start_server(create_app(GatedPredictor(), max_pending=1))
    health = lambda: server.request("GET", "/health")[1]  # noqa: E731
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    try:
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b"\0" * 1000)  # 1000 of 100000 bytes sent
        wait_for(lambda: health()["in_flight"] == 1, "the slow upload to be counted")
        status, body = server.post_file("/predict", make_png(_noise(8)))
        assert status == 503 and "1 requests are already being served" in body["detail"], body
    finally:
        slow.close()
    wait_for(lambda: health()["in_flight"] == 0, "the abandoned upload to be let go")


class _FailingPredictor:
    class_names = CLASS_NAMES
    label_to_category_id = None
    batch_size = 2
    device = torch.device("cpu")

    def predict_tensors(self, images):
        raise RuntimeError("out of memory (simulated)")


def test_a_model_failure_is_a_500_and_the_server_lives_on(start_server, make_png):
    server = start_server(create_app(_FailingPredictor()))
    for _ in range(2):
        status, body = server.post_file("/predict", make_png(_noise(4)))
        assert status == 500 and "out of memory (simulated)" in body["detail"], body
    assert server.request("GET", "/health")[0] == 200


class _NonFinitePredictor(_FailingPredictor):
    """A model whose score overflowed: JSON has no token for NaN (nor infinity)."""

    def predict_tensors(self, images):
        det = {"boxes": torch.tensor([[1.0, 2.0, 5.0, 6.0]]), "labels": torch.tensor([1])}
        return [dict(det, scores=torch.tensor([float("nan")])) for _ in images]


def test_non_finite_numbers_are_a_500_that_says_so_never_invalid_json(start_server, make_png):
    server = start_server(create_app(_NonFinitePredictor()))
    status, body = server.post_file("/predict", make_png(_noise(4)))
    assert status == 500 and "non-finite numbers (NaN or infinity)" in body["detail"], body


def test_a_tiled_predictor_is_served_and_health_says_so_and_tile_is_no_query_parameter(serve_checkpoint,
                                                                                     start_server):
    from maskrcnn.predictor import Predictor

    tiled = Predictor.from_weights(serve_checkpoint, device="cpu", optimise=False, masks="rle", tile=64,
                                   batch_size=4)
    server = start_server(create_app(tiled))
    status, health = server.request("GET", "/health")
    assert status == 200 and health["tta"] is None
    assert health["tile"] == {"size": 64, "overlap": 0.2, "full_image": True, "scale": None}
    data = png_bytes(_noise(3, 70, 80))  # 2 x 2 tiles and the whole image
    status, body = server.post_file("/predict", data, filename="n.png")
    assert status == 200, body
    _assert_same(body["predictions"], _expected(tiled, data, "n.png"))  # the tiles' merged detections
    status, body = server.post_file("/predict?tile=32", data)
    assert status == 400 and body["detail"] == "unknown parameter 'tile': /predict takes score_thresh"


def contrast_ratio(a, b) -> float:
    """WCAG contrast ratio of two sRGB colours (1 to 21)."""

    def luminance(rgb):
        c = np.asarray(rgb, dtype=np.float64) / 255.0
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(c @ np.array([0.2126, 0.7152, 0.0722]))

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


class _Fixed:
    """A predictor that gives fixed detections, under class names that repeat."""

    class_names = ["__background__", "dup", "dup"]
    label_to_category_id, batch_size, device = None, 1, "cpu"

    def __init__(self, det):
        self.det = det

    def predict_tensors(self, images):
        return [dict(self.det) for _ in images]


def test_answer_names_classes_apart_and_carries_the_overlays_colours(start_server):
    """Repeated names came back as they were (one "dup" for two classes); the page drew labels black on
    the detection's colour (2.1:1 for some) where the overlays draw white on it darkened: the colours
    sent are the overlays' own, read back from what draw_instances draws."""
    from maskrcnn.visualize import draw_instances

    boxes = torch.tensor([[5.0, 40, 30, 70], [40, 40, 70, 70], [75, 40, 110, 70]])
    det = {"boxes": boxes, "scores": torch.tensor([0.9, 0.7, 0.5]), "labels": torch.tensor([1, 2, 2])}
    server = start_server(create_app(_Fixed(det)))
    status, body = server.post_file("/predict", png_bytes(np.zeros((80, 120, 3), np.uint8)), filename="x.png")
    assert status == 200, body
    assert body["categories"] == {"1": "dup (id 1)", "2": "dup (id 2)"}
    preds = body["predictions"]
    assert [(p["category_name"], p["label"]) for p in preds] == [("dup (id 1)", 1), ("dup (id 2)", 2),
                                                                  ("dup (id 2)", 2)]
    drawn = np.asarray(draw_instances(np.zeros((80, 120, 3), np.uint8), det, ["__background__", "a", "b"]))
    for p, (x0, y0, x1, y1) in zip(preds, boxes.int().tolist()):
        assert p["text_color"] == [255, 255, 255]
        assert tuple(drawn[(y0 + y1) // 2, x0]) == tuple(p["color"])  # the box's left edge
        strip = drawn[:y0, x0:x1].reshape(-1, 3)  # its label, above it
        assert (np.abs(strip.astype(int) - p["label_color"]).max(1) == 0).sum() > 20
        assert (strip.min(1) >= 200).sum() > 5  # white text on it
        assert contrast_ratio(p["label_color"], p["text_color"]) >= 3.9


def test_a_deeply_nested_json_body_is_a_400_not_a_500(server):
    """{"image": [[[[...]]]]} 100 000 deep raised RecursionError (not a ValueError): a 500 "prediction
    failed" and a logged traceback per request. Sent as JSON or as a raw body that sniffs as JSON."""
    deep = b'{"image":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    want = "the JSON body does not parse: its arrays or objects are nested too deeply"
    for headers, body in (({"Content-Type": "application/json"}, deep), ({}, deep), ({}, deep[9:-1])):
        assert server.request("POST", "/predict", headers=headers, body=body) == (400, {"detail": want})
    status, ok = server.post_file("/predict", png_bytes(_noise(2)))  # still serving
    assert status == 200 and ok["num_detections"] > 0
