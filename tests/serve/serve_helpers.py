"""Helpers of the server tests: the tiny checkpoint's class names, a uvicorn server on a thread, PNG bytes."""

import http.client
import io
import json
import socket
import threading

import numpy as np
import torch

CLASS_NAMES = ["__background__", "cat", "dog"]
LABEL_TO_CATEGORY = {1: 5, 2: 9}


class RunningServer:
    """uvicorn serving ``app`` on a thread, on a socket bound before the thread starts.

    Binding port 0 first means the port is known and free, and that connections made before uvicorn
    runs wait in the listen backlog instead of being refused: no polling for readiness."""

    def __init__(self, app, **server_options):
        """``server_options``: ``maskrcnn.serve.server.uvicorn_config``'s (``upload_timeout_s``, ...), to
        run with the settings ``maskrcnn serve`` uses; none: uvicorn's defaults."""
        import uvicorn

        from maskrcnn.serve.server import uvicorn_config

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if server_options:
            config = uvicorn_config(app, log_level="warning", lifespan="on", **server_options)
        else:
            config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def request(self, method, path, body=None, headers=None, timeout=120):
        """-> (status, decoded JSON or text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            data = res.read()
        finally:
            conn.close()
        if res.getheader("content-type", "").startswith("application/json"):
            return res.status, json.loads(data)
        return res.status, data.decode("utf-8", "replace")

    def post_file(self, path, data, *, filename="image.png", field="image", fields=None):
        """A multipart/form-data upload of ``data`` in ``field`` (plus plain ``fields``)."""
        boundary = "----maskrcnn-test-boundary-7d1e"
        parts = []
        for name, value in (fields or {}).items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            )
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request(
            "POST", path, body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def wait_for(condition, what: str) -> None:
    """Check ``condition()`` until it holds (a state another thread reaches; no fixed sleep), at most a
    minute."""
    pause = threading.Event()
    for _ in range(6000):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class GatedPredictor:
    """Holds its first forward until ``release`` is set (after ``entered``): a request stays in flight
    for as long as the test wants."""

    class_names = CLASS_NAMES
    label_to_category_id = None
    batch_size = 1
    device = torch.device("cpu")

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.seen = []  # (H, W) of every image that reached the model

    def predict_tensors(self, images):
        self.seen += [tuple(im.shape[-2:]) for im in images]
        self.entered.set()
        assert self.release.wait(timeout=60)
        return [
            {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
            for _ in images
        ]
