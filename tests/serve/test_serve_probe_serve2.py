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


def test_score_thresh_flag_above_one_is_refused_by_name_and_health_shows_the_threshold(
        serve_predictor, start_server, tmp_path, capsys):
    from maskrcnn.cli import main

    nope = str(tmp_path / "nope.pth")  # refused before the weights are read
    for value in ("2", "50"):
        assert main(["serve", "--weights", nope, "--port", "0", "--score-thresh", value]) == 1
        err = capsys.readouterr().err
        assert ("maskrcnn serve: error: --score-thresh must be in [0, 1] (scores are probabilities), "
                f"got {value}") in err
    assert main(["serve", "--weights", nope, "--port", "0", "--score-thresh", "nan"]) == 1
    assert "--score-thresh must be a finite number >= 0, got nan" in capsys.readouterr().err
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(np.zeros((20, 20, 3), np.uint8)))
    assert main(["predict", "--weights", nope, str(image), "--output", str(tmp_path / "o"),
                 "--score-thresh", "2"]) == 1  # fmt: skip
    assert "--score-thresh must be in [0, 1]" in capsys.readouterr().err

    server = start_server(create_app(serve_predictor))
    status, health = server.request("GET", "/health")
    assert status == 200 and "score_thresh" in health
    assert health["score_thresh"] == serve_predictor.score_thresh


@pytest.fixture
def server(serve_predictor, start_server):
    return start_server(create_app(serve_predictor, max_upload_bytes=200_000, weights_name="tiny.pth"))


def _b64_png(seed=0, h=40, w=50):
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)
    return base64.b64encode(png_bytes(pixels)).decode()


def test_a_json_key_given_twice_is_a_400_naming_it(server):
    b64 = _b64_png()
    for body in (f'{{"image":"{b64}","score_thresh":0.5,"score_thresh":0.9}}',
                 f'{{"image":"{b64}","image":"{b64}"}}'):
        for headers in (JSON, {}):  # JSON sniffed without its Content-Type too
            status, answer = server.request("POST", "/predict", body=body.encode(), headers=headers)
            assert status == 400, answer
            assert "more than once" in answer["detail"]
    once = f'{{"image":"{b64}","score_thresh":0.5}}'.encode()
    status, answer = server.request("POST", "/predict", body=once)
    assert status == 200, answer


def _ls_config(*controls):
    """A labelling config: an Image 'img' on $photo and ``controls`` [(tag, name, labels)] on it."""
    body = "".join(f'<{tag} name="{name}" toName="img">' + "".join(f'<Label value="{v}"/>' for v in labels)
                   + f"</{tag}>" for tag, name, labels in controls)
    return f'<View><Image name="img" value="$photo"/>{body}</View>'


def test_label_studio_predict_without_label_config_uses_what_setup_accepted(serve_predictor_rle,
                                                                            start_server):
    server = start_server(create_app(serve_predictor_rle, weights_name="tiny.pth"))
    setup = {"project": "7.1700000000", "schema": _ls_config(("BrushLabels", "seg", ("Cat",)))}
    status, body = server.request("POST", "/setup", body=json.dumps(setup).encode(), headers=JSON)
    assert status == 200, body
    task = {"id": 1, "data": {"photo": "data:image/png;base64," + _b64_png(1, 60, 80)}}
    status, body = server.request("POST", "/predict", headers=JSON, body=json.dumps(
        {"tasks": [task], "project": "7.1700000000"}).encode())  # no "label_config": an older client
    assert status == 200, body
    regions = body["results"][0]["result"]
    assert regions, "the task's image (in the project's 'photo' field) was not read"
    assert {r["from_name"] for r in regions} == {"seg"}
    assert {lab for r in regions for lab in r["value"]["brushlabels"]} == {"Cat"}  # no 'dog': not a label


def test_label_studio_setup_names_the_label_controls_it_ignores(serve_predictor, start_server):
    server = start_server(create_app(serve_predictor, weights_name="tiny.pth"))
    schema = _ls_config(("BrushLabels", "b", ("cat",)), ("PolygonLabels", "p", ("dog",)))
    setup = json.dumps({"project": "1.1", "schema": schema}).encode()
    status, body = server.request("POST", "/setup", body=setup, headers=JSON)
    assert status == 200, body
    assert body["control"]["from_name"] == "b" and body["unmatched_classes"] == ["dog"]
    assert body["ignored_controls"] == [{"type": "polygonlabels", "from_name": "p", "labels": ["dog"]}]
    assert "ignored: polygonlabels 'p'" in body["hint"]
    assert "'dog' is labelled in polygonlabels 'p' only" in body["hint"]


def test_a_json_image_that_is_no_image_is_not_blamed_on_curl_d(server):
    import os

    junk = base64.b64encode(os.urandom(6000)).decode()
    # sent as curl --data-binary sends it: application/x-www-form-urlencoded, sniffed as JSON
    curl = {"Content-Type": "application/x-www-form-urlencoded"}
    body = json.dumps({"image": junk}).encode()
    status, answer = server.request("POST", "/predict", body=body, headers=curl)
    assert status == 400 and "not an image file" in answer["detail"]
    assert "curl -d" not in answer["detail"] and "x-www-form-urlencoded" not in answer["detail"]
    no_b64 = json.dumps({"image": "data:image/png," + _b64_png()}).encode()
    for headers in (curl, JSON):
        status, answer = server.request("POST", "/predict", body=no_b64, headers=headers)
        assert status == 400 and "curl -d" not in answer["detail"]
        assert "no ';base64'" in answer["detail"]


def test_a_multi_frame_upload_tells_the_client_the_frames_left_out(server, caplog):
    from PIL import Image

    frames = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 50, 3), np.uint8))
              for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    with pytest.warns(UserWarning, match="3 frames") as caught:
        status, answer = server.post_file("/predict", buf.getvalue(), filename="anim.gif")
    assert status == 200, answer
    assert answer["notes"] == ["3 frames (animation or pages): the first was predicted, 2 left out"]
    # the log's warning names this server's module, not the thread pool's (anyio)
    assert all(w.filename.replace("\\", "/").endswith("maskrcnn/serve/app.py") for w in caught
               if "3 frames" in str(w.message))
    status, answer = server.post_file("/predict", png_bytes(np.zeros((30, 40, 3), np.uint8)))
    assert status == 200 and answer["notes"] == []


def test_a_repeated_key_among_many_is_refused_quickly():
    # keys.count(k) per key was quadratic: 40,000 keys and one repeat blocked the event loop 11.7 s
    import time

    from maskrcnn.serve.app import RequestError, _json_object

    keys = [f"k{i}" for i in range(200_000)] + ["k777"]
    body = ("{" + ",".join(f'"{k}":0' for k in keys) + "}").encode()
    t0 = time.perf_counter()
    with pytest.raises(RequestError) as e:
        _json_object(body)
    assert time.perf_counter() - t0 < 1.0
    assert e.value.status == 400 and "'k777' more than once" in e.value.message


class _Names:
    class_names = ["__background__", "cat", "dog"]


class _Batches:
    batch_size = 1


def _backend():
    from maskrcnn.serve.labelstudio_backend import LabelStudioBackend

    return LabelStudioBackend(_Names(), _Batches(), {}, max_pixels=10**6, request_timeout_s=5,
                              model_version="v", fetcher=None)


def test_label_studio_setup_store_is_lru_keeps_parsed_configs_and_forgets_refused_ones():
    from maskrcnn.serve.labelstudio_backend import LabelConfig

    ls = _backend()
    cat = _ls_config(("BrushLabels", "seg", ("cat",)))
    ls.setup({"project": 0, "schema": cat})
    for p in range(1, 256):
        ls.setup({"project": p, "schema": _ls_config(("BrushLabels", "seg", ("dog",)))})
    ls.setup({"project": 0, "schema": cat})  # project 0 used again: the least recently used is 1
    ls.setup({"project": 999, "schema": cat})  # past the bound: one goes, not all
    stored = ls._setup_configs
    assert len(stored) == 256 and "0" in stored and "1" not in stored and "2" in stored
    assert isinstance(stored["0"], LabelConfig) and stored["0"].labels == ("cat",)
    with pytest.raises(ValueError):  # refused: no label in common
        ls.setup({"project": 0, "schema": _ls_config(("BrushLabels", "seg", ("bird",)))})
    assert "0" not in stored
    ls.setup({"schema": cat})  # no project id: not kept for every client without one
    assert "None" not in stored and len(stored) == 255
