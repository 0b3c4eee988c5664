"""``maskrcnn serve``: a model behind HTTP, with a web page to look at its detections.

- ``app.py``: the FastAPI application (``POST /predict``, ``GET /health``, ``GET /`` the page);
- ``batching.py``: the queue that gathers concurrent requests into batches for one worker thread;
- ``static/``: the page (``index.html``, ``page.js``): choose or drop an image, see masks, boxes, labels
  and scores drawn on a canvas, filter them with a score slider, read them in a table.

Needs the ``serve`` extra (``pip install maskrcnn[serve]``: FastAPI, uvicorn, python-multipart).
Weights are loaded by ``maskrcnn.predictor.load_predictor``.
"""

__all__ = ["create_app"]


def create_app(*args, **kwargs):
    """See ``maskrcnn.serve.app.create_app`` (imported lazily: FastAPI is an optional dependency)."""
    from maskrcnn.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)
