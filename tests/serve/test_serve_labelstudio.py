"""maskrcnn serve as a Label Studio ML backend: /setup checks the labelling config against our classes;
/predict answers tasks whose images are local files, files behind Label Studio's token, a path traversal
(refused) and an unreachable URL (empty, the others still predicted); the brushes it returns read back
(our own Label Studio reader) as the masks the plain /predict gives for the same image."""

import http.server
import json
import logging
import socket
import threading

import numpy as np
import pytest
import torch
from serve_helpers import CLASS_NAMES, png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

from maskrcnn.data.formats.common import CocoBuilder, Report  # noqa: E402
from maskrcnn.data.formats.labelstudio import read_labelstudio  # noqa: E402
from maskrcnn.data.mask_codec import annotation_to_mask  # noqa: E402
from maskrcnn.serve.app import create_app  # noqa: E402
from maskrcnn.serve.labelstudio_backend import LabelConfig, task_prediction  # noqa: E402
from maskrcnn.serve.labelstudio_fetch import FetchError, ImageFetcher  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

TOKEN = "s3cret-token"


def _config(control="BrushLabels", labels=("cat", "dog"), name="seg", image="img", field="photo"):
    items = "".join(f'<Label value="{v}"/>' for v in labels)
    return (f'<View><Image name="{image}" value="${field}"/><{control} name="{name}" toName="{image}">{items}'
            f"</{control}></View>")


def _noise(seed, h=60, w=80):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class _LabelStudioStub(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (path -> bytes) to requests bearing the token, and without it under /signed/ (a
    bucket's signed URL); ``redirects``: path -> Location of a 302. Records (path, Authorization)."""

    files: dict = {}
    redirects: dict = {}
    seen: list = []

    def do_GET(self):
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.files.get(self.path)
        allowed = self.path.startswith("/signed/") or self.headers.get("Authorization") == f"Token {TOKEN}"
        status = 401 if not allowed else 200 if body else 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if status == 200 else 0))
        self.end_headers()
        if status == 200:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def label_studio():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LabelStudioStub)
    _LabelStudioStub.files, _LabelStudioStub.redirects, _LabelStudioStub.seen = {}, {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_setup_checks_the_labelling_config(serve_predictor, start_server):
    server = start_server(create_app(serve_predictor, weights_name="tiny.pth"))
    post = lambda payload: server.request(  # noqa: E731
        "POST", "/setup", body=json.dumps(payload), headers={"Content-Type": "application/json"})
    status, body = post({"project": "3.1700000000", "schema": _config(labels=("cat", "Dog", "zebra"))})
    assert status == 200, body
    assert body["model_version"] == "tiny.pth"
    control = {"type": "brushlabels", "from_name": "seg", "to_name": "img", "data_key": "photo"}
    assert body["control"] == control
    assert body["matched"] == {"cat": "cat", "dog": "Dog"} and body["unmatched_labels"] == ["zebra"]
    assert body["unmatched_classes"] == []

    status, body = post({"project": "3", "schema": _config("PolygonLabels", labels=("dog",))})
    assert status == 200 and body["control"]["type"] == "polygonlabels"
    assert body["unmatched_classes"] == ["cat"]

    status, body = post({"project": "3", "schema": _config(labels=("zebra", "horse"))})
    assert status == 400
    assert "none of the labels of the brushlabels control 'seg' (zebra, horse)" in body["detail"]
    assert "(cat, dog)" in body["detail"]
    choices = '<View><Image name="i" value="$image"/><Choices name="c" toName="i"/></View>'
    status, body = post({"schema": choices})
    assert status == 400
    assert "no <BrushLabels> or <PolygonLabels> or <RectangleLabels> control" in body["detail"]

    # the webhook is accepted and ignored; Label Studio's health check is a GET
    status, body = server.request("POST", "/webhook", body=b'{"action": "ANNOTATION_CREATED"}',
                                  headers={"Content-Type": "application/json"})
    assert status == 200 and body["status"] == "ignored"
    assert server.request("GET", "/health")[0] == 200


def _masks_of_plain_predict(server, data):
    """[(class name, (H, W) bool)] of the plain /predict's answer, non-empty masks only."""
    status, body = server.post_file("/predict", data)
    assert status == 200, body
    out = []
    for p in body["predictions"]:
        mask = annotation_to_mask(p["segmentation"], *p["segmentation"]["size"]).numpy() > 0
        if mask.any():
            out.append((body["categories"][str(p["category_id"])], mask))
    return out


def test_predict_tasks_local_token_traversal_unreachable(serve_predictor_rle, start_server, label_studio,
                                                         tmp_path, caplog):
    stub, ls_url = label_studio
    root = tmp_path / "storage"
    (root / "sub").mkdir(parents=True)
    images = {"a.png": png_bytes(_noise(1)), "sub/b.png": png_bytes(_noise(2, 50, 70)),
              "c.png": png_bytes(_noise(3))}
    (root / "a.png").write_bytes(images["a.png"])
    (root / "sub" / "b.png").write_bytes(images["sub/b.png"])
    (tmp_path / "secret.png").write_bytes(images["a.png"])  # outside the root: must not be read
    stub.RequestHandlerClass.files["/data/upload/1/5f2c1a3b-c.png"] = images["c.png"]
    # Label Studio answering with a redirect to another origin (a bucket): the token must not follow
    port = stub.server_address[1]
    stub.RequestHandlerClass.redirects["/data/upload/1/moved.png"] = f"http://localhost:{port}/signed/c.png"
    stub.RequestHandlerClass.files["/signed/c.png"] = images["c.png"]
    fetcher = ImageFetcher(ls_url=ls_url, token=TOKEN, local_root=root, max_bytes=200_000, timeout_s=10)
    app = create_app(serve_predictor_rle, weights_name="tiny.pth", labelstudio_fetcher=fetcher)
    server = start_server(app)

    references = ["/data/local-files/?d=a.png", "/data/upload/1/5f2c1a3b-c.png",
                  "/data/local-files/?d=../secret.png", f"http://127.0.0.1:{_closed_port()}/d.png",
                  "/data/local-files/?d=sub/b.png", "/data/upload/1/moved.png"]
    tasks = [{"id": 10 + i, "data": {"photo": ref}} for i, ref in enumerate(references)]
    payload = {"tasks": tasks, "label_config": _config(), "project": "1.17", "params": {"context": {}}}
    with caplog.at_level(logging.WARNING, logger="maskrcnn.serve"):
        status, body = server.request("POST", "/predict", body=json.dumps(payload),
                                      headers={"Content-Type": "application/json"})
    assert status == 200, body
    assert body["model_version"] == "tiny.pth" and len(body["results"]) == 6
    # only the uploads went to Label Studio, with the token; the redirect's target got none
    assert sorted(stub.RequestHandlerClass.seen, key=str) == sorted(
        [("/data/upload/1/5f2c1a3b-c.png", f"Token {TOKEN}"), ("/data/upload/1/moved.png", f"Token {TOKEN}"),
         ("/signed/c.png", None)], key=str)
    for bad in (2, 3):
        assert body["results"][bad] == {"result": [], "score": 0.0, "model_version": "tiny.pth"}
    text = caplog.text
    assert "task 12: empty prediction" in text and "outside --ls-local-root" in text
    assert "task 13: empty prediction" in text and "cannot reach" in text

    # accepted as annotations, the brushes read back (our reader) as the plain /predict's masks
    # the redirected upload is the same image as task 11's
    moved, upload = body["results"][5]["result"], body["results"][1]["result"]
    assert len(moved) == len(upload) > 0 and [r["value"]["brushlabels"] for r in moved] == [
        r["value"]["brushlabels"] for r in upload]
    names = ["a.png", "c.png", None, None, "sub/b.png", None]
    (root / "c.png").write_bytes(images["c.png"])  # where the reader looks for the upload's file
    export = [{"id": t["id"], "data": {"image": t["data"]["photo"]},
               "annotations": [{"result": r["result"]}]}
              for t, r, n in zip(tasks, body["results"], names) if n]
    for r, n in zip(body["results"], names):
        if n:
            assert r["result"] and {x["type"] for x in r["result"]} == {"brushlabels"}
            assert {(x["from_name"], x["to_name"]) for x in r["result"]} == {("seg", "img")}
            assert r["score"] == pytest.approx(np.mean([x["score"] for x in r["result"]]), abs=1e-4)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    builder, report = CocoBuilder(root=root), Report()
    read_labelstudio([path], builder=builder, report=report, images=root)
    assert sum(report.skipped.values()) == 0
    coco = builder.to_dict()
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    for image in coco["images"]:
        got = [(cats[a["category_id"]], annotation_to_mask(a["segmentation"], image["height"], image["width"])
                .numpy() > 0) for a in coco["annotations"] if a["image_id"] == image["id"]]
        want = _masks_of_plain_predict(server, images[image["file_name"]])
        assert len(got) == len(want) > 0
        for (gn, gm), (wn, wm) in zip(got, want):
            assert gn == wn
            # batched forwards may round differently: a pixel on the 0.5 boundary may flip, no more
            assert (gm != wm).sum() <= max(2, 0.01 * wm.sum())


def test_fetcher_refuses_and_keeps_the_token_home(tmp_path):
    fetcher = ImageFetcher(ls_url="http://ls.local:8080/", token=TOKEN, local_root=tmp_path, max_bytes=10)
    assert fetcher.locate("/data/upload/2/x.png") == ("url", "http://ls.local:8080/data/upload/2/x.png", True)
    assert fetcher.locate("http://ls.local:8080/data/upload/2/x.png")[2] is True
    elsewhere = "https://elsewhere.example/x.png"
    assert fetcher.locate(elsewhere) == ("url", elsewhere, False)
    assert fetcher.locate("/data/local-files/?d=%2Fdeep%2Fx%2B1.png") == ("file", tmp_path.resolve() /
                                                                          "deep" / "x+1.png", False)
    for bad, why in [("/data/local-files/?d=a/../../x.png", "outside --ls-local-root"),
                     ("s3://bucket/x.png", "URL scheme 's3' is not supported"),
                     ("file:///etc/passwd", "URL scheme 'file' is not supported"),
                     ("images/x.png", "a relative path is not supported")]:
        with pytest.raises(FetchError, match=why):
            fetcher.locate(bad)
    (tmp_path / "big.png").write_bytes(b"x" * 11)
    with pytest.raises(FetchError, match="11 bytes, over the limit of 10"):
        fetcher.fetch("/data/local-files/?d=big.png")
    with pytest.raises(FetchError, match=r"give its address \(--ls-url\)"):
        ImageFetcher(max_bytes=10).locate("/data/upload/2/x.png")


def test_polygon_and_rectangle_results():
    H, W = 40, 50
    ring = np.zeros((H, W), bool)
    ring[5:25, 10:40] = True
    ring[10:20, 20:30] = False  # a hole
    square = np.zeros((H, W), bool)
    square[30:38, 2:9] = True
    det = {"boxes": torch.tensor([[10.0, 5.0, 40.0, 25.0], [2.0, 30.0, 9.0, 38.0]]),
           "scores": torch.tensor([0.9, 0.6]), "labels": torch.tensor([1, 2]),
           "masks": torch.from_numpy(np.stack([ring, square]))}
    # only "dog" is in the project: the cat is left out, and counted
    dropped = []
    polygons = task_prediction(det, task_id=7, height=H, width=W, class_names=CLASS_NAMES, model_version="m",
                               config=LabelConfig("polygonlabels", "poly", "img", "image", ("Dog",)),
                               on_dropped=dropped.append)
    assert dropped == [1] and polygons["score"] == 0.6 and len(polygons["result"]) == 1
    value = polygons["result"][0]["value"]
    assert value["polygonlabels"] == ["Dog"] and polygons["result"][0]["from_name"] == "poly"
    flat = [float(c) for x, y in value["points"] for c in (x * W / 100, y * H / 100)]  # back to pixels
    assert np.array_equal(annotation_to_mask([flat], H, W).numpy() > 0, square)
    # a mask with a hole: one polygon whose even-odd fill keeps the hole
    cat = task_prediction(det, task_id=7, height=H, width=W, class_names=CLASS_NAMES, model_version="m",
                          config=LabelConfig("polygonlabels", "poly", "img", "image", ("cat",)))
    points = cat["result"][0]["value"]["points"]
    flat = [float(c) for x, y in points for c in (x * W / 100, y * H / 100)]
    assert np.array_equal(annotation_to_mask([flat], H, W).numpy() > 0, ring)

    boxes = task_prediction(det, task_id=7, height=H, width=W, class_names=CLASS_NAMES, model_version="m",
                            config=LabelConfig("rectanglelabels", "box", "img", "image", ("cat", "dog")))
    got = [r["value"] for r in boxes["result"]]
    assert got[0] == {"x": 20.0, "y": 12.5, "width": 60.0, "height": 50.0, "rotation": 0,
                      "rectanglelabels": ["cat"]}
    assert got[1]["rectanglelabels"] == ["dog"] and got[1]["x"] == 4.0 and got[1]["height"] == 20.0


def test_the_backend_rectangles_are_the_pre_annotations_rectangles():
    """The backend wrote its own rectangle regions beside the file pre-annotations' ``rectangle_result``:
    one definition now, a box past the border clipped to the image first, one left empty dropped."""
    from maskrcnn.data.pre_annotations.instances import Category, ImageRecord, Instance
    from maskrcnn.data.pre_annotations.to_labelstudio import rectangle_result

    H, W = 40, 50
    det = {"boxes": torch.tensor([[-3.0, 5.0, 20.0, 45.0], [50.0, 1.0, 60.0, 9.0], [7.5, 2.25, 13.0, 8.0]]),
           "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 2, 2])}
    got = task_prediction(det, task_id=3, height=H, width=W, class_names=CLASS_NAMES, model_version="m",
                          config=LabelConfig("rectanglelabels", "box", "img", "image", ("Cat", "dog")))
    image = ImageRecord(3, "", H, W)
    assert got["result"] == [
        rectangle_result(image, 1, Instance(Category(1, 1, "Cat"), 0.9, None, (0.0, 5.0, 20.0, 40.0)),
                         from_name="box", to_name="img"),
        rectangle_result(image, 2, Instance(Category(2, 2, "dog"), 0.7, None, (7.5, 2.25, 13.0, 8.0)),
                         from_name="box", to_name="img")]
    assert got["result"][0]["value"]["x"] == 0.0 and got["result"][0]["value"]["height"] == 87.5


def test_serve_command_reads_the_token_from_the_environment(tmp_path, monkeypatch):
    import argparse

    from maskrcnn.commands.serve import _labelstudio_fetcher, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "from-env")
    args = ["--weights", "w.pth", "--ls-url", "http://ls:8080/", "--ls-local-root", str(tmp_path)]
    fetcher = _labelstudio_fetcher(parser.parse_args(args))
    assert (fetcher.token, fetcher.ls_url) == ("from-env", "http://ls:8080")
    assert fetcher.local_root == tmp_path.resolve()
    assert fetcher.max_bytes == 20 * 2**20  # the upload limit (--max-upload-mb)
    assert _labelstudio_fetcher(parser.parse_args(["--weights", "w", "--ls-token", "given"])).token == "given"
    with pytest.raises(ValueError, match="not a folder"):
        _labelstudio_fetcher(parser.parse_args(["--weights", "w", "--ls-local-root", str(tmp_path / "no")]))
    with pytest.raises(ValueError, match=r"must be http\(s\)://host"):
        _labelstudio_fetcher(parser.parse_args(["--weights", "w", "--ls-url", "localhost:8080"]))


def test_setup_hostname_and_access_token_fetch_uploads_without_ls_url(serve_predictor_rle, start_server,
                                                                        label_studio, caplog):
    stub, ls_url = label_studio
    stub.RequestHandlerClass.files["/data/upload/1/c.png"] = png_bytes(_noise(4))
    server = start_server(create_app(serve_predictor_rle, weights_name="tiny.pth"))  # no --ls-url
    post = lambda path, payload: server.request(  # noqa: E731
        "POST", path, body=json.dumps(payload), headers={"Content-Type": "application/json"})
    with caplog.at_level(logging.WARNING, logger="maskrcnn.serve"):
        setup = {"project": "4.1", "schema": _config(), "hostname": ls_url, "access_token": TOKEN}
        assert post("/setup", setup)[0] == 200
        assert post("/setup", setup)[0] == 200  # said once, not at every /setup
        status, body = post("/predict", {"tasks": [{"id": 1, "data": {"photo": "/data/upload/1/c.png"}}],
                                         "label_config": _config()})
    assert status == 200 and body["results"][0]["result"], body
    assert stub.RequestHandlerClass.seen == [("/data/upload/1/c.png", f"Token {TOKEN}")]
    said = [r.getMessage() for r in caplog.records if "images are fetched from" in r.getMessage()]
    assert said == [f"Label Studio project 4.1: /data/... images are fetched from Label Studio's hostname "
                    f"{ls_url} from /setup, with the access_token from /setup"]
