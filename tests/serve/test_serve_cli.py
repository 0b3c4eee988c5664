"""``maskrcnn serve`` as a user runs it: a clear error for missing weights, and the real command in a
subprocess on a port the system picks (``--port 0``), read from the line the command prints."""

import os
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

import maskrcnn  # noqa: E402
from maskrcnn.cli import main  # noqa: E402


def test_serve_refuses_missing_weights_and_bad_options(tmp_path, capsys):
    assert main(["serve", "--weights", str(tmp_path / "nope.pth"), "--port", "0"]) == 1
    assert "nope.pth: checkpoint file not found" in capsys.readouterr().err
    assert main(["serve", "--weights", str(tmp_path / "nope.pth"), "--batch-size", "0"]) == 1
    assert "--batch-size must be >= 1" in capsys.readouterr().err
    # --tile / --tta as predict takes them, checked before the port is bound or the model read
    assert main(["serve", "--weights", str(tmp_path / "nope.pth"), "--tile", "16"]) == 1
    assert "--tile: tile size must be an integer >= 32 pixels, got 16" in capsys.readouterr().err
    assert main(["serve", "--weights", str(tmp_path / "nope.pth"), "--tta", "--tta-sizes", "0"]) == 1
    assert "--tta-sizes: tta min_sizes must be integers >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value, words",
    [("--upload-timeout", "0", "--upload-timeout must be a finite number of seconds > 0, got 0.0"),
     ("--request-timeout", "-5", "--request-timeout must be a finite number of seconds > 0, got -5.0"),
     ("--keep-alive-timeout", "nan", "--keep-alive-timeout must be a finite number of seconds > 0, got nan"),
     ("--max-connections", "0", "--max-connections must be a whole number > 0, got 0"),
     ("--min-region-area", "-1", "--min-region-area must be a number of pixels >= 0, got -1.0")],
)  # fmt: skip
def test_time_limits_and_the_connection_cap_must_be_positive(tmp_path, capsys, option, value, words):
    # refused before the port is bound or the (here missing) weights are read
    assert main(["serve", "--weights", str(tmp_path / "nope.pth"), "--port", "0", option, value]) == 1
    assert capsys.readouterr().err == f"maskrcnn serve: error: {words}\n"


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # missing weights: the port is checked first, so no model is loaded for nothing
        assert main(["serve", "--weights", str(tmp_path / "nope.pth"), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err == (f"maskrcnn serve: error: cannot listen on 127.0.0.1:{port}: address already in use "
                   "(another server is listening there: stop it or choose another --port)\n")


@pytest.mark.slow
def test_serve_command_answers_on_the_port_it_reports(serve_checkpoint):
    import http.client
    import json

    env = dict(os.environ)
    root = str(Path(maskrcnn.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "maskrcnn.cli", "serve", "--weights", str(serve_checkpoint),
           "--port", "0", "--device", "cpu", "--batch-size", "2", "--no-optimise"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stderr], daemon=True).start()
    try:
        seen = []
        while True:  # the command prints the address it listens on (the port the system chose)
            line = lines.get(timeout=120)
            seen.append(line)
            found = re.search(r"open http://127\.0\.0\.1:(\d+)/", line)
            if found:
                break
            assert proc.poll() is None, "".join(seen)
        assert "loaded" in line and "2 classes" in line, "".join(seen)
        conn = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=120)
        conn.request("GET", "/health")
        health = json.loads(conn.getresponse().read())
        assert health["weights"] == "tiny.pth" and health["batch_size"] == 2
        picture = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
        conn.request("POST", "/predict", body=png_bytes(picture), headers={"Content-Type": "image/png"})
        answer = json.loads(conn.getresponse().read())
        assert (answer["width"], answer["height"]) == (70, 50) and answer["num_detections"] > 0
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
