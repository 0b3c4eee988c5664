"""Time limits and the connection cap of the server, with the settings ``maskrcnn serve`` runs it with: a body
or headers trickled slower than ``--upload-timeout`` get a 408 and the connection is closed while other
requests are answered; a request past ``--request-timeout`` gets a 503 (dropped from the queue, never run)
or a 504 (the model had it); ``--max-connections`` gives uvicorn's 503.

The timeouts are 1 s; nothing asserts how long anything took (a loaded machine only makes the 408 come
later): the slow clients go on sending for as long as the server lets them."""

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from serve_helpers import CLASS_NAMES, png_bytes, wait_for

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

from maskrcnn.serve.app import create_app  # noqa: E402
from maskrcnn.serve.server import uvicorn_config  # noqa: E402

# the settings of `maskrcnn serve`, with a short upload timeout
SERVER = {"upload_timeout_s": 1.0, "keep_alive_s": 5.0, "max_connections": 64}


class _StubPredictor:
    """No detections at once, or, with ``gated``, holds each forward until ``release`` is set."""

    class_names = CLASS_NAMES
    label_to_category_id = None
    batch_size = 1
    device = torch.device("cpu")

    def __init__(self, gated=False):
        self.gated = gated
        self.entered, self.release = threading.Event(), threading.Event()
        self.seen = []  # (H, W) of every image that reached the model

    def predict_tensors(self, images):
        self.seen += [tuple(im.shape[-2:]) for im in images]
        self.entered.set()
        if self.gated:
            assert self.release.wait(timeout=60)
        return [
            {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
            for _ in images
        ]


def _png(h, w):
    return png_bytes(np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8))



class _SlowClient:
    """A raw connection that sends ``head`` at once, then one byte of ``drip`` every 0.1 s for as long as
    the server takes them (``drip=b""``: nothing more); ``answer()`` reads until the server closes the
    connection."""

    def __init__(self, port, head: bytes, drip: bytes = b"\0"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)  # a hang guard only
        self.sock.sendall(head)
        self.answered = threading.Event()  # stops the trickle once the answer arrives (no bytes after it)
        self.thread = threading.Thread(target=self._trickle, args=(drip,), daemon=True)
        self.thread.start()

    def _trickle(self, drip):
        try:
            while not self.answered.wait(0.1) and drip:
                self.sock.sendall(drip)
        except OSError:  # the server closed the connection
            pass

    def answer(self) -> bytes:
        """Everything the server sent, once it has closed the connection (recv gives b"")."""
        data = b""
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:  # the answer came, then a reset for bytes sent after it
                    if not data:
                        raise
                    return data
                self.answered.set()
                if not chunk:
                    return data
                data += chunk
        finally:
            self.answered.set()
            self.thread.join(timeout=60)
            self.sock.close()


def _parse(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return lines[0], headers, json.loads(body)


def _read_one(sock):
    """One response from a kept-alive connection (its head, then content-length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head = data.split(b"\r\n\r\n", 1)[0]
    length = int(_parse(head + b"\r\n\r\nnull")[1]["content-length"])
    while len(data) < len(head) + 4 + length:
        data += sock.recv(65536)
    return _parse(data)


def test_a_trickled_body_gets_408_and_is_closed_while_other_requests_are_answered(start_server):
    model = _StubPredictor()
    server = start_server(create_app(model, upload_timeout_s=1.0), **SERVER)
    health = lambda: server.request("GET", "/health")[1]  # noqa: E731
    slow = _SlowClient(server.port, b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
                                    b"Content-Length: 100000\r\n\r\n" + b"\0" * 10)  # fmt: skip
    # in flight, or (a machine so loaded that the poll came after the deadline) timed out already
    wait_for(lambda: (h := health())["in_flight"] == 1 or h["upload_timeouts"] == 1, "the slow upload")
    status, body = server.post_file("/predict", _png(20, 30))  # answered while the slow one trickles
    assert status == 200 and body["num_detections"] == 0, body
    status_line, headers, answer = _parse(slow.answer())  # returns once the server has closed it
    assert status_line == "HTTP/1.1 408 Request Timeout" and headers["connection"] == "close"
    assert answer == {"detail": "the request body was not received within 1 s (--upload-timeout); "
                                "the connection is closed"}  # fmt: skip
    after = health()
    assert after["upload_timeouts"] == 1 and after["in_flight"] == 0 and after["upload_timeout_s"] == 1.0
    assert model.seen == [(20, 30)]  # the trickled upload never reached the model


def test_headers_trickled_or_never_sent_get_408_and_are_closed(start_server):
    app = create_app(_StubPredictor())
    server = start_server(app, **SERVER)
    trickled = _SlowClient(server.port, b"POST /predict HTTP/1.1\r\nHost: t\r\nX-Slow: ", drip=b"a")
    silent = _SlowClient(server.port, b"", drip=b"")  # connects, sends nothing
    for raw in (trickled.answer(), silent.answer()):
        status_line, headers, answer = _parse(raw)
        assert status_line == "HTTP/1.1 408 Request Timeout" and headers["connection"] == "close"
        assert answer == {"detail": "the request headers were not received within 1 s (--upload-timeout); "
                                    "the connection is closed"}  # fmt: skip
    assert server.request("GET", "/health")[1]["header_timeouts"] == 2


def test_a_kept_alive_connection_sending_in_time_is_served_again(start_server):
    """The header deadline is armed again after each answer, not left to close a served connection.
    (Its own server with a deadline no loaded machine misses between two requests: with the 1 s of the
    slow clients above, a busy CI machine could take that long between them.)"""
    server = start_server(create_app(_StubPredictor()), **dict(SERVER, upload_timeout_s=20.0))
    keep = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    for _ in range(2):
        keep.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        status_line, _, answer = _read_one(keep)
        assert status_line == "HTTP/1.1 200 OK" and answer["header_timeouts"] == 0
    keep.close()


def test_request_timeout_drops_queued_work_and_answers_503_or_504(start_server):
    model = _StubPredictor(gated=True)
    app = create_app(model, request_timeout_s=1.0)
    server = start_server(app, **SERVER)
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = pool.submit(server.post_file, "/predict", _png(40, 50))
        assert model.entered.wait(timeout=60)  # the model holds the first request past its time
        queued = pool.submit(server.post_file, "/predict", _png(30, 50))  # waits behind it
        status, body = queued.result(timeout=60)
        assert status == 503, body
        assert body["detail"] == (
            "no answer within 1 s (--request-timeout): the request waited in the queue all that time and "
            "was dropped before the model ran it; the server is busy, try again shortly"
        )
        status, body = running.result(timeout=60)
        assert status == 504 and body["detail"].startswith("no answer within 1 s (--request-timeout): the "
                                                           "model was still running on this image"), body
    model.release.set()
    status, body = server.post_file("/predict", _png(20, 50))
    assert status == 200, body
    assert model.seen == [(40, 50), (20, 50)]  # the timed-out queued image never reached the model
    after = server.request("GET", "/health")[1]
    assert after["request_timeouts"] == 2 and after["pending"] == 0 and after["in_flight"] == 0


def test_max_connections_gives_503_past_the_cap(start_server):
    model = _StubPredictor(gated=True)
    server = start_server(create_app(model), **dict(SERVER, max_connections=2))
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(server.post_file, "/predict", _png(40, 50))
        assert model.entered.wait(timeout=60)  # one connection open, its request in the model
        status, body = server.request("GET", "/health")  # the second connection reaches the cap
        assert status == 503 and body == "Service Unavailable", body
        model.release.set()
        assert held.result(timeout=60)[0] == 200
    assert server.request("GET", "/health")[0] == 200  # under the cap again


def test_settings_are_refused_unless_positive():
    predictor = _StubPredictor()
    for name in ("upload_timeout_s", "request_timeout_s"):
        for bad in (0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"{name} must be a finite number of seconds > 0"):
                create_app(predictor, **{name: bad})
    config = uvicorn_config(create_app(predictor), upload_timeout_s=3.0, keep_alive_s=7.0, max_connections=9)
    assert config.timeout_keep_alive == 7.0 and config.limit_concurrency == 9


def test_a_protocol_class_without_the_hooks_is_served_as_it_is(caplog):
    from maskrcnn.serve.server import header_deadline_protocol

    class OtherProtocol:  # what a future uvicorn might have instead
        def connection_made(self, transport):
            pass

    with caplog.at_level("WARNING", logger="maskrcnn.serve"):
        assert header_deadline_protocol(OtherProtocol, 1.0) is OtherProtocol
    assert "connection_lost, on_response_complete" in caplog.text


def test_an_idle_kept_alive_connection_is_no_header_timeout_but_a_slow_next_request_is(start_server):
    """After an answer, a client that keeps the connection open and sends nothing (a browser, a pool) is
    keep-alive's to close, not a slowloris: no 408, no header_timeouts (counted with --upload-timeout
    shorter than --keep-alive-timeout). A next request whose headers trickle still gets the 408."""
    app = create_app(_StubPredictor())
    server = start_server(app, **dict(SERVER, keep_alive_s=4.0))  # upload_timeout_s 1
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert _read_one(idle)[0] == "HTTP/1.1 200 OK"
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert _read_one(slow)[0] == "HTTP/1.1 200 OK"
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ")  # ... and nothing more
    assert _parse(slow.recv(65536))[0] == "HTTP/1.1 408 Request Timeout"  # once the deadline passed
    threading.Event().wait(1.5)  # the idle one is now well past --upload-timeout, within keep-alive
    assert app.state.stats["header_timeouts"] == 1
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")  # still open and served
    status_line, _, answer = _read_one(idle)
    assert status_line == "HTTP/1.1 200 OK" and answer["header_timeouts"] == 1
    idle.close()
    slow.close()
