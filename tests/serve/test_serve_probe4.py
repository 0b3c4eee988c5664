"""What a hostile probe of ``maskrcnn serve`` found, one test each: Label Studio tasks whose image is a
base64 data URL; a /predict label config without our classes (a warning, once); a client that leaves
while its body is drained; a raw image sent as a multipart form; polygon specks; JSON without its
Content-Type and ``{"image": base64}``; a file in any field, two files refused; /setup's hostname and
access_token; fetch errors that name the URL."""

import asyncio
import base64
import json
import logging

import numpy as np
import pytest
import torch
from serve_helpers import CLASS_NAMES, png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

from maskrcnn.serve.app import RequestError, _drain_body, create_app  # noqa: E402
from maskrcnn.serve.labelstudio_backend import LabelConfig, task_prediction  # noqa: E402
from maskrcnn.serve.labelstudio_fetch import FetchError, ImageFetcher, decode_data_url  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

JSON = {"Content-Type": "application/json"}


def _config(labels=("cat", "dog"), control="BrushLabels"):
    items = "".join(f'<Label value="{v}"/>' for v in labels)
    return (f'<View><Image name="img" value="$image"/><{control} name="seg" toName="img">{items}'
            f"</{control}></View>")


def _noise(seed, h=60, w=80):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def server(serve_predictor_rle, start_server):
    return start_server(create_app(serve_predictor_rle, weights_name="tiny.pth", max_upload_bytes=200_000))


def test_data_url_tasks_are_decoded(server, caplog):
    png = png_bytes(_noise(1))
    b64 = base64.b64encode(png).decode()
    tasks = [{"id": 1, "data": {"image": "data:image/png;base64," + b64}},
             {"id": 2, "data": {"image": "data:image/png;base64,@@not base64@@"}},
             {"id": 3, "data": {"image": "data:text/plain;base64," + base64.b64encode(b"hello").decode()}}]
    with caplog.at_level(logging.WARNING, logger="maskrcnn.serve"):
        status, body = server.request("POST", "/predict", body=json.dumps(
            {"tasks": tasks, "label_config": _config()}), headers=JSON)
    assert status == 200, body
    assert body["results"][0]["result"] and body["results"][0]["result"][0]["type"] == "brushlabels"
    assert body["results"][1]["result"] == [] and body["results"][2]["result"] == []
    assert "task 2: empty prediction: data URL" in caplog.text and "not valid base64" in caplog.text
    assert "task 3: empty prediction: data URL: not an image file" in caplog.text
    # the size limit of downloads applies to the decoded bytes
    with pytest.raises(FetchError, match="data URL: 11 bytes, over the limit of 10"):
        ImageFetcher(max_bytes=10).fetch("data:;base64," + base64.b64encode(b"x" * 11).decode())


def test_a_percent_encoded_data_url_has_the_limit_of_its_bytes():
    # 3 characters per byte: under the limit in bytes, though longer than base64 of that many bytes
    assert decode_data_url("data:image/png," + "%89" * 15000, max_bytes=20000) == b"\x89" * 15000
    with pytest.raises(FetchError, match="data URL: 20001 bytes, over the limit of 20000"):
        decode_data_url("data:image/png," + "%89" * 20001, max_bytes=20000)
    with pytest.raises(FetchError, match="data URL: more than the limit of 20000 bytes"):
        decode_data_url("data:image/png," + "%89" * 30000, max_bytes=20000)  # refused before decoding
    with pytest.raises(FetchError, match="data URL: more than the limit of 20000 bytes"):
        decode_data_url("data:;base64," + "A" * 45000, max_bytes=20000)  # base64 keeps its 4/3 bound


def test_predict_warns_once_per_config_of_classes_without_a_label(server, caplog):
    png = base64.b64encode(png_bytes(_noise(2))).decode()
    payload = {"tasks": [{"id": 1, "data": {"image": "data:image/png;base64," + png}}], "project": "7.1",
               "label_config": _config(labels=("Kitty", "dog"))}
    with caplog.at_level(logging.WARNING, logger="maskrcnn.serve"):
        for _ in range(2):
            assert server.request("POST", "/predict", body=json.dumps(payload), headers=JSON)[0] == 200
    warned = [r.getMessage() for r in caplog.records if "have no label" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "project 7.1" in warned[0] and "classes cat have no label" in warned[0]
    assert "labels no class matches: Kitty" in warned[0]


def test_a_client_leaving_while_its_body_is_drained_is_a_499():
    from starlette.requests import Request

    async def receive():
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "POST", "path": "/predict", "headers": []}, receive)
    with pytest.raises(RequestError) as e:
        asyncio.run(_drain_body(request, 100))
    assert e.value.status == 499


def test_a_raw_image_sent_as_a_multipart_form_is_one_clear_400(server, caplog):
    with caplog.at_level(logging.DEBUG):
        status, body = server.request("POST", "/predict", body=png_bytes(_noise(3)),
                                      headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert status == 400 and "the body is not the multipart form its Content-Type says" in body["detail"]
    assert "Expected boundary" not in caplog.text


def test_polygon_specks_are_dropped_but_never_a_detection():
    H, W = 40, 50
    blob = np.zeros((H, W), bool)
    blob[5:25, 5:25] = True
    blob[30, 40] = True  # a one-pixel speck of the same mask
    speck = np.zeros((H, W), bool)
    speck[35, 5] = True  # a detection that is only a speck
    det = {"boxes": torch.tensor([[5.0, 5.0, 41.0, 31.0], [5.0, 35.0, 6.0, 36.0]]),
           "scores": torch.tensor([0.9, 0.6]), "labels": torch.tensor([1, 2]),
           "masks": torch.from_numpy(np.stack([blob, speck]))}
    config = LabelConfig("polygonlabels", "poly", "img", "image", ("cat", "dog"))
    got = task_prediction(det, task_id=1, height=H, width=W, class_names=CLASS_NAMES, model_version="m",
                          config=config)
    assert [r["value"]["polygonlabels"] for r in got["result"]] == [["cat"], ["dog"]]
    every = task_prediction(det, task_id=1, height=H, width=W, class_names=CLASS_NAMES, model_version="m",
                            config=config, min_region_area=0)
    assert [r["value"]["polygonlabels"] for r in every["result"]] == [["cat"], ["cat"], ["dog"]]


def test_json_without_its_content_type_and_a_base64_image(server):
    png = png_bytes(_noise(4))
    b64 = base64.b64encode(png).decode()
    plain = server.post_file("/predict", png)
    assert plain[0] == 200
    for body in ({"image": b64}, {"image": "data:image/png;base64," + b64, "score_thresh": 0.0}):
        status, got = server.request("POST", "/predict", body=json.dumps(body), headers=JSON)
        assert status == 200, got
        assert got["width"] == 80 and got["num_detections"] == plain[1]["num_detections"] > 0
    # curl --data-binary @tasks.json: no JSON Content-Type, still Label Studio's tasks
    tasks = {"tasks": [{"id": 4, "data": {"image": "data:image/png;base64," + b64}}]}
    status, got = server.request("POST", "/predict", body=json.dumps(tasks).encode())
    assert status == 200 and got["results"][0]["result"], got
    for bad in ("@@", "\u00e9t\u00e9"):  # not base64; not even ASCII
        status, got = server.request("POST", "/predict", body=json.dumps({"image": bad}), headers=JSON)
        assert status == 400 and got["detail"].startswith("the JSON body's 'image': not valid base64 ("), got


def test_any_one_file_field_and_two_files_refused(server):
    png = png_bytes(_noise(5))
    status, body = server.post_file("/predict", png, field="photo")
    assert status == 200 and body["num_detections"] > 0
    boundary = "b0undary"
    parts = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{f}"; filename="{n}"\r\n\r\n'
                     .encode() + png + b"\r\n" for f, n in (("a", "one.png"), ("b", "two.png")))
    status, body = server.request("POST", "/predict", body=parts + f"--{boundary}--\r\n".encode(),
                                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 400 and body["detail"] == "one image per request (got 2 files: a='one.png', b='two.png')"


def test_setup_hostname_and_access_token_are_used_without_ls_url():
    fetcher = ImageFetcher(max_bytes=10)
    said = fetcher.adopt("http://ls.example:8080/", "tok")
    assert "hostname http://ls.example:8080 from /setup" in said and "access_token" in said
    url = "http://ls.example:8080/data/upload/1/x.png"
    assert fetcher.locate("/data/upload/1/x.png") == ("url", url, True)
    assert fetcher.token == "tok"
    # another host: its own address, and the first host's token does not follow
    fetcher.adopt("http://other.example", None)
    assert fetcher.ls_url == "http://other.example" and fetcher.token is None
    # an explicit --ls-url wins; a token from another host is not taken
    given = ImageFetcher(ls_url="http://mine:8080", max_bytes=10)
    assert "--ls-url http://mine:8080 (given" in given.adopt("http://theirs:8080", "tok")
    assert (given.ls_url, given.token) == ("http://mine:8080", None)
    given.adopt("http://mine:8080", "tok")  # the same host: its token is used
    assert given.token == "tok"


def test_a_given_token_never_goes_to_an_address_from_setup():
    # --ls-token without --ls-url: an unauthenticated /setup naming another host must not get the token
    fetcher = ImageFetcher(token="SECRET", max_bytes=10)
    said = fetcher.adopt("http://evil.example:8080", None)
    assert fetcher.locate("/data/upload/1/x.png") == ("url", "http://evil.example:8080/data/upload/1/x.png",
                                                      True)
    assert fetcher.token is None
    assert said.endswith("with no token; --ls-token / LABEL_STUDIO_API_KEY is not sent to an address from "
                         "/setup: pass --ls-url to use it")
    fetcher.adopt("http://ls.example:8080", "theirs")  # /setup's own token goes with its own address
    assert (fetcher.ls_url, fetcher.token) == ("http://ls.example:8080", "theirs")
    # with --ls-url too, the given token stays with the given address
    given = ImageFetcher(ls_url="http://mine:8080", token="SECRET", max_bytes=10)
    given.adopt("http://evil.example:8080", "theirs")
    assert (given.ls_url, given.token) == ("http://mine:8080", "SECRET")


def test_fetch_errors_name_the_whole_url(tmp_path):
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"<html>")

        def log_message(self, *args):
            pass

    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=stub.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{stub.server_address[1]}/pages/html"
        data, name = ImageFetcher(max_bytes=100).fetch(url)
    finally:
        stub.shutdown()
        stub.server_close()
    assert data == b"<html>" and name == url
