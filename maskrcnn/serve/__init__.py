"""``maskrcnn serve``: a model behind HTTP, with a web page to look at its detections.

- ``app.py``: the FastAPI application (``POST /predict``, ``GET /health``, ``GET /`` the page);
- ``batching.py``: the queue that gathers concurrent requests into batches for one worker thread;
- ``labelstudio_backend.py``: Label Studio's ML backend protocol (``/setup``, ``/predict`` of tasks,
  ``/webhook``): labelling configs checked against our classes, detections as brush / polygon / rectangle
  regions; ``labelstudio_fetch.py``: the tasks' images, from local storage or Label Studio over HTTP(S);
- ``server.py``: the uvicorn settings ``maskrcnn serve`` runs with (a deadline for a request's headers,
  keep-alive, a cap on connections);
- ``static/``: the page (``index.html``, ``page.js``): choose or drop an image, see masks, boxes, labels
  and scores drawn on a canvas, filter them with a score slider, read them in a table.

Needs the ``serve`` extra (``pip install maskrcnn[serve]``: FastAPI, uvicorn, python-multipart).
Weights are loaded by ``maskrcnn.predictor.Predictor.from_weights``: a checkpoint or an ONNX file.
"""

__all__ = [
    "DEFAULT_KEEP_ALIVE_S",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_MIN_REGION_AREA",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DEFAULT_UPLOAD_TIMEOUT_S",
    "create_app",
]

# Here rather than in app.py so that `maskrcnn serve --help` works without the optional dependencies.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Masks are pasted at the original size: memory grows with pixels x detections, so the default keeps a
# 16-megapixel photograph (4912 x 3264) and refuses larger ones.
DEFAULT_MAX_PIXELS = 16_000_000
# Requests served at once (their upload being read, decoded, queued or in the model); more get a 503.
DEFAULT_MAX_PENDING = 32
# Seconds a client has to send a request's headers (from connecting, or from their first byte after the
# previous answer) and then its body: a client that trickles bytes (slowloris) or stalls holds a
# connection and its buffers for no longer. nginx's default for each; 20 MiB in 60 s needs 2.8 Mbit/s
# (a slower link needs it raised).
DEFAULT_UPLOAD_TIMEOUT_S = 60.0
# Seconds a request may wait in the queue and be in the model before it is answered 503 / 504.
DEFAULT_REQUEST_TIMEOUT_S = 120.0
# uvicorn's: an idle connection is closed this many seconds after its last answer.
DEFAULT_KEEP_ALIVE_S = 5.0
# Open connections at most (uvicorn's limit_concurrency: a request past it gets a 503).
DEFAULT_MAX_CONNECTIONS = 256
# Label Studio polygon pieces of smaller area (pixels of the image, the traced outline's) are left out: a
# mask's specks would each be a region of their own (three-point slivers of half a pixel) for the
# annotator to delete by hand. ``maskrcnn serve --min-region-area``; used by labelstudio_backend.py.
DEFAULT_MIN_REGION_AREA = 10.0


def create_app(*args, **kwargs):
    """See ``maskrcnn.serve.app.create_app`` (imported lazily: FastAPI is an optional dependency)."""
    from maskrcnn.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)
