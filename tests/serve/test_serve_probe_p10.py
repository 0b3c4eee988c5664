"""Defects found by the p10 serve probe: a trickled Label Studio download cut at its deadline, uploads
held as uint8 until the forward, per-image notes for the client, the exit status of a forced stop, and
the wording of some refusals."""

import http.server
import json
import threading
import time

import numpy as np
import pytest
import torch
from serve_helpers import png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")

from maskrcnn.serve.app import create_app  # noqa: E402
from maskrcnn.serve.labelstudio_fetch import FetchError, ImageFetcher  # noqa: E402

# tiny forwards: extra intra-op threads only add synchronisation (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")


class _Trickle(http.server.BaseHTTPRequestHandler):
    """50 bytes every 0.1 s, no Content-Length (the body ends when the connection does), for 20 s."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        try:
            for _ in range(200):
                if self.server.stopping.is_set():
                    return
                self.wfile.write(b"\xff" * 50)
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the fetcher hung up, as it should
            pass


def test_a_trickled_download_stops_at_its_deadline():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.stopping = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fetcher = ImageFetcher(max_bytes=2**20, timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(FetchError, match=r"not downloaded within 1 s"):
            fetcher.fetch(f"http://127.0.0.1:{server.server_port}/data/upload/3/slow.jpg")
        # read(256 KiB) waited for 256 KiB or the end: 20 s here (and a server's whole --request-timeout)
        assert time.monotonic() - t0 < 3.0
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def _noise(seed, h=90, w=120):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_a_queued_upload_is_uint8_and_the_answer_is_predicts_bit_for_bit(serve_checkpoint, start_server):
    from maskrcnn.data.coco_results import detections_to_coco_results
    from maskrcnn.data.images import decode_image_bytes
    from maskrcnn.predictor import Predictor

    predictor = Predictor.from_weights(serve_checkpoint, device="cpu", batch_size=1, optimise=False,
                                       masks="rle")
    app = create_app(predictor)
    queued = []
    submit = app.state.batches.submit

    def recording_submit(item):
        queued.append((item.dtype, tuple(item.shape)))
        return submit(item)

    app.state.batches.submit = recording_submit
    server = start_server(app)
    data = png_bytes(_noise(1))
    status, body = server.post_file("/predict", data, filename="n.png")
    assert status == 200, body
    # float32 was 4 bytes a pixel and channel while it waited: 192 MB for a 16-megapixel upload
    assert queued == [(torch.uint8, (3, 90, 120))]
    det = predictor.predict_tensors([decode_image_bytes(data)])[0]  # float32, as predict reads a file
    want = detections_to_coco_results(det, image_id=1, label_to_category_id=predictor.label_to_category_id,
                                      class_names=predictor.class_names, extra={"file_name": "n.png"})
    got = [{k: p[k] for k in want[0]} for p in body["predictions"]]
    assert len(want) > 0 and got == want  # equal, not approximately: the same float32 pixels


def test_as_float_image_is_the_float_decode_bit_for_bit():
    from maskrcnn.data.images import as_float_image, decode_image_bytes

    data = png_bytes(np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2))  # every value
    small = decode_image_bytes(data, keep_uint8=True)
    assert small.dtype == torch.uint8
    assert torch.equal(as_float_image(small), decode_image_bytes(data))


def test_decodes_at_once_are_bounded_by_the_batch_size():
    from maskrcnn.serve.app import _decode_upload, decode_slots

    slots = decode_slots(1)
    inside, most, lock = [0], [0], threading.Lock()
    data = png_bytes(_noise(2, 400, 400))
    real = _decode_upload.__globals__["decode_image_bytes"]

    def counting(*args, **kwargs):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    _decode_upload.__globals__["decode_image_bytes"] = counting
    try:
        threads = [threading.Thread(target=_decode_upload, args=(data, "n.png", 10**8, slots))
                   for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    finally:
        _decode_upload.__globals__["decode_image_bytes"] = real
    assert most[0] == 2  # batch size 1: one for the model's next batch, one more


def test_notes_tell_a_tiny_image_and_a_tiled_answer_cut_at_the_cap_for_every_image(serve_checkpoint,
                                                                                      start_server):
    from maskrcnn.predictor import Predictor

    tiled = Predictor.from_weights(serve_checkpoint, device="cpu", optimise=False, masks="rle", tile=64,
                                   batch_size=4, overrides={"model.roi_heads.detections_per_image": 2})
    server = start_server(create_app(tiled))
    for seed in (3, 4):  # the Predictor warns once per process; each client is told
        status, body = server.post_file("/predict", png_bytes(_noise(seed, 70, 80)), filename="n.png")
        assert status == 200 and body["num_detections"] == 2, body
        (note,) = [n for n in body["notes"] if "kept the best 2 of" in n]
        assert note.startswith("tiled prediction of a 80x70 image kept the best 2 of ")
        assert "the server must be started with --set model.roi_heads.detections_per_image=" in note
        assert "Predictor" not in note and "overrides" not in note and "first such image" not in note
    status, body = server.post_file("/predict", png_bytes(_noise(5, 1, 1)), filename="dot.png")
    assert status == 200, body
    assert body["notes"] == ["1 image(s) under 16 px on their shorter side (this upload, 1x1): enlarged for "
                             f"the model (to {tiled.cfg.input.min_size_test} px), so their detections are "
                             "unreliable (objects found in a few blown-up pixels)"]


def test_the_cap_note_reaches_the_client_whatever_the_warning_says(serve_checkpoint, monkeypatch):
    from maskrcnn.engine import tiling
    from maskrcnn.predictor import Predictor
    from maskrcnn.serve.app import NOTES_KEY, _run_batch

    tiled = Predictor.from_weights(serve_checkpoint, device="cpu", optimise=False, masks="rle", tile=64,
                                   batch_size=4, overrides={"model.roi_heads.detections_per_image": 2})
    # the warning reworded, its facts the same: the client's note is made from the facts, not the words
    monkeypatch.setattr(tiling, "cap_note", lambda *args, **kwargs: "some detections were left out")
    image = torch.from_numpy(_noise(3, 70, 80)).permute(2, 0, 1).contiguous()  # uint8, as queued
    with pytest.warns(UserWarning, match="some detections were left out"):  # the log: once, as predict
        runs = [_run_batch(tiled, [image]) for _ in range(2)]
    for (det,) in runs:  # each client is told
        assert len(det[NOTES_KEY]) == 1, det[NOTES_KEY]
        cap = tiled.tile_caps[0]
        assert det["boxes"].shape[0] == 2 and cap.kept == 2 and cap.found > 2
        assert det[NOTES_KEY] == [
            f"tiled prediction of a 80x70 image kept the best 2 of {cap.found} detections "
            f"({cap.found - 2} dropped at model.roi_heads.detections_per_image = 2); to keep more, the "
            f"server must be started with --set model.roi_heads.detections_per_image={max(cap.found, 4)}"]


@pytest.fixture
def gated_server(start_server):
    from serve_helpers import GatedPredictor

    return start_server(create_app(GatedPredictor()))


def test_refusals_say_why_for_every_kind_of_client(gated_server):
    server = gated_server
    status, body = server.post_file("/predict", b"GIF89a", filename="x" * 4500 + ".png")
    assert status == 400, body
    assert body["detail"] == (
        "cannot parse the multipart form: a part's header line (its Content-Disposition, which holds the "
        "file name) is longer than the parser's limit of 4224 bytes: send the file under a shorter name")
    for payload, said in (({}, "got no keys"), ({"imgae": "x", "b": 1}, "got keys ['b', 'imgae']")):
        status, body = server.request("POST", "/predict", body=json.dumps(payload),
                                      headers={"Content-Type": "application/json"})
        assert status == 400 and body["detail"] == (
            "a JSON body needs 'image' (the image file in base64, or a data: URL) or, from Label Studio, a "
            f"'tasks' list; {said}"), body
    status, body = server.request("POST", "/predict", body=json.dumps({"tasks": {"id": 1}}),
                                  headers={"Content-Type": "application/json"})
    assert status == 400 and body["detail"] == "'tasks' must be a list of Label Studio tasks, got an object"
    # a CR / LF in a file name: escaped in a 400 as the JSON of a 200's file_name escapes it (not %0D%0A)
    status, body = server.post_file("/predict", b"not an image", filename="a%0D%0Ab.png")
    assert status == 400 and body["detail"].startswith("a\\r\\nb.png: "), body


def test_the_exit_status_after_uvicorn_returns_names_the_signal(capsys):
    import signal

    from maskrcnn.commands.serve import exit_status_after

    assert exit_status_after([]) == 0 and capsys.readouterr().err == ""
    # a second Ctrl-C while shutting down: uvicorn returns without raising the signal again (it exited 0)
    assert exit_status_after([signal.SIGINT, signal.SIGINT]) == 130
    said = capsys.readouterr().err
    assert said == "maskrcnn serve: stopped by Ctrl-C (SIGINT), then at once by a second signal\n"
    assert exit_status_after([signal.SIGTERM]) == 143
    assert capsys.readouterr().err == "maskrcnn serve: stopped by SIGTERM\n"


def test_the_server_records_the_signals_uvicorn_hands_it_and_exits_by_them(capsys):
    import signal

    import uvicorn

    from maskrcnn.commands.serve import exit_status_after, signal_recording_server

    server = signal_recording_server(uvicorn, uvicorn.Config(app=None))
    with server.capture_signals():  # what Server.run wraps its serving in
        assert signal.getsignal(signal.SIGINT) == server.handle_exit  # the hook uvicorn calls
    assert server.signals == [] and exit_status_after(server.signals) == 0
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and not server.force_exit  # uvicorn's own handling, kept
    server.handle_exit(signal.SIGINT, None)  # a second Ctrl-C while shutting down: forced
    assert server.force_exit and server.signals == [signal.SIGINT, signal.SIGINT]
    assert exit_status_after(server.signals) == 130
    said = capsys.readouterr().err
    assert said == "maskrcnn serve: stopped by Ctrl-C (SIGINT), then at once by a second signal\n"
    server = signal_recording_server(uvicorn, uvicorn.Config(app=None))
    server.handle_exit(signal.SIGTERM, None)
    assert exit_status_after(server.signals) == 143
