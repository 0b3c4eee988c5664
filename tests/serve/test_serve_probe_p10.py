"""Defects found by the p10 serve probe: a trickled Label Studio download cut at its deadline, uploads
held as uint8 until the forward, per-image notes for the client, the exit status of a forced stop, and
the wording of some refusals."""

import http.server
import threading
import time

import pytest
import torch
from serve_helpers import CLASS_NAMES

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")

from maskrcnn.serve.labelstudio_fetch import FetchError, ImageFetcher  # noqa: E402


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
