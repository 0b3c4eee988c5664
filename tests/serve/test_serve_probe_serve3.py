"""What the third serve probe (p_serve3) found, one test each: Label Studio tasks calls ignored
``score_thresh`` and unknown query parameters; ``score_thresh`` with digit-group underscores was read by
``float()`` ('0_5' refused as "got 5.0", '0.0_5' taken as 0.05); requests cancelled by a forced stop (a
second Ctrl-C) were answered with uvicorn's plain-text 500 and a traceback each; ``/openapi.json`` was
served with the docs pages off; a multipart file name with '"' came back percent-encoded."""

import base64
import json
import logging
import threading

import numpy as np
import pytest
from serve_helpers import GatedPredictor, png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

from maskrcnn.serve.app import create_app  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

JSON = {"Content-Type": "application/json"}


def _png(seed=0, h=60, w=80):
    return png_bytes(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


@pytest.fixture
def server(serve_predictor, start_server):
    return start_server(create_app(serve_predictor, weights_name="tiny.pth"))


def test_label_studio_tasks_take_score_thresh_and_refuse_unknown_query_parameters(serve_predictor_rle,
                                                                                  start_server):
    server = start_server(create_app(serve_predictor_rle, weights_name="tiny.pth"))
    task = {"id": 1, "data": {"image": "data:image/png;base64," + base64.b64encode(_png(4)).decode()}}

    def region_scores(path, **beside):
        status, body = server.request("POST", path, headers=JSON,
                                      body=json.dumps({"tasks": [task], **beside}).encode())
        assert status == 200, body
        return sorted(r["score"] for r in body["results"][0]["result"])

    everything = region_scores("/predict")
    assert len(everything) >= 3, everything
    t = (everything[len(everything) // 2 - 1] + everything[len(everything) // 2]) / 2  # between two scores
    want = [s for s in everything if s >= t]
    assert 0 < len(want) < len(everything)
    assert region_scores(f"/predict?score_thresh={t}") == want  # was: every region, the query ignored
    assert region_scores("/predict", score_thresh=t) == want  # a key beside 'tasks' (was ignored too)
    for path, beside, detail in (
        ("/predict?foo=1", {}, "unknown parameter 'foo': /predict takes score_thresh"),
        ("/predict?score_thresh=0.5", {"score_thresh": 0.5}, "parameter 'score_thresh' given more than once"),
        ("/predict?score_thresh=high", {}, "score_thresh must be a number in [0, 1], got 'high'"),
        ("/predict", {"score_thresh": 2}, "score_thresh must be in [0, 1], got 2"),
    ):
        status, body = server.request("POST", path, headers=JSON,
                                      body=json.dumps({"tasks": [task], **beside}).encode())
        assert (status, body) == (400, {"detail": detail}), path


def test_a_score_thresh_with_underscores_is_refused_quoting_what_was_sent(server):
    data = _png(1)
    for value in ("0_5", "0.0_5", "1_0"):  # float() read them as 5.0 (refused as 'got 5.0'), 0.05, 10.0
        status, body = server.post_file(f"/predict?score_thresh={value}", data)
        assert (status, body) == (400, {"detail": f"score_thresh must be a number in [0, 1], got '{value}'"})
        status, body = server.request("POST", "/predict", headers=JSON, body=json.dumps(
            {"image": base64.b64encode(data).decode(), "score_thresh": value}).encode())
        assert status == 400 and body["detail"].endswith(f"got '{value}'"), body
    status, body = server.post_file("/predict?score_thresh=1e1", data)  # out of range: named as sent
    assert (status, body["detail"]) == (400, "score_thresh must be in [0, 1], got 1e1")
    for value in ("0.5", " .5 ", "5e-1"):  # plain decimals still read
        status, body = server.post_file(f"/predict?score_thresh={value.replace(' ', '%20')}", data)
        assert status == 200, (value, body)


def test_a_request_cancelled_by_a_forced_stop_is_answered_503_json_without_a_traceback(start_server, caplog):
    import http.client

    stuck = GatedPredictor()
    server = start_server(create_app(stuck))
    answer = {}

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", "/predict", body=_png(2), headers={"Content-Type": "image/png"})
        res = conn.getresponse()
        answer.update(status=res.status, type=res.getheader("content-type"), body=res.read())

    thread = threading.Thread(target=client, daemon=True)
    try:
        with caplog.at_level(logging.INFO):
            thread.start()
            assert stuck.entered.wait(20), "the request never reached the model"
            # a second Ctrl-C: uvicorn stops waiting for running requests, and asyncio.run cancels them
            server.server.force_exit = server.server.should_exit = True
            thread.join(10)
            assert answer, "no answer while the model still ran"  # was held until the model was done
            stuck.release.set()  # the forward ends: the server's exit waited for it
            server.thread.join(10)
            assert not server.thread.is_alive()
    finally:
        stuck.release.set()
    assert answer.get("status") == 503, answer  # was 500, text/plain "Internal Server Error"
    assert answer["type"] == "application/json"
    assert json.loads(answer["body"]) == {"detail": "the server is shutting down; try again once it is back"}
    # was a CancelledError traceback per request, and one for the application's lifespan
    logged = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not logged, [r.getMessage() for r in logged]
    assert any("answered 503: the server is shutting down" in r.getMessage() for r in caplog.records)


def test_openapi_is_off_with_the_docs_pages(server, caplog):
    with caplog.at_level(logging.WARNING):
        for path in ("/openapi.json", "/docs", "/redoc"):
            status, body = server.request("GET", path)
            assert (status, body) == (404, {"detail": "Not Found"}), path  # /openapi.json was a 200
    assert not [r for r in caplog.records if "Duplicate Operation ID" in r.getMessage()]


def test_a_file_name_comes_back_as_the_client_sent_it(server):
    import io

    from PIL import Image

    data = _png(3)
    # requests (urllib3), browsers and newer curl write '"', CR and LF in a form's file name as %22, %0D, %0A
    for written, sent in (('we%22ird;name.png', 'we"ird;name.png'),
                          ("x%0D%0AInjected: 1.png", "x\r\nInjected: 1.png"),
                          ("100%25.png", "100%25.png"),  # a '%' of the name itself: as it is
                          ('a\\"b.png', 'a"b.png')):  # older curl's backslash escape
        status, body = server.post_file("/predict", data, filename=written)
        assert status == 200 and body["file_name"] == sent, (written, body)
    # a decode warning in the server's log keeps the line breaks escaped: a client cannot write a log line
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (0, 90)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="frames") as caught:
        status, body = server.post_file("/predict", buf.getvalue(), filename="a%0D%0Ab.gif")
    assert status == 200 and body["file_name"] == "a\r\nb.gif"
    said = [str(w.message) for w in caught if "frames" in str(w.message)]
    assert said and all("a\\r\\nb.gif" in m and "\n" not in m for m in said), said
