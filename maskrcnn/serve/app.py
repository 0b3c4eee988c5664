"""The HTTP application: ``POST /predict``, ``GET /health`` and the web page at ``/`` (those two GETs
answer HEAD too, with the headers only).

``create_app(predictor, ...)`` returns a FastAPI (ASGI) application around a ``Predictor`` (anything
with ``predict_tensors``, ``class_names``, ``label_to_category_id``, ``batch_size`` and ``device``);
``maskrcnn serve`` runs it with uvicorn. Shapes: D detections of one image, H x W its size.

``POST /predict`` takes one image, either as a multipart form upload (field ``image``, or any one file field
but a parameter's, ``score_thresh``; ``curl -F image=@photo.jpg``; two files are a 400 naming them, and a body
that does not start with the boundary its Content-Type names is a 400 saying so), as the raw request body
(``curl --data-binary @photo.jpg``), or as JSON ``{"image": "<base64>"}`` (a ``data:`` URL prefix or none),
and an optional ``score_thresh`` (query parameter, form field or JSON key: a number, as text a plain decimal,
``0_5`` refused; JSON's true / false refused); a form whose ``image`` field holds text, not a file (``-F
image=hello``), is a 400 saying so; a JSON body with both ``image`` and ``tasks`` (a Label Studio call) is a
400 saying they exclude each other. A raw body that starts with ``{`` or ``[`` and parses is JSON whatever its
Content-Type (no image format starts so). It answers::

    {"file_name": str, "width": W, "height": H, "num_detections": D,
     "categories": {"<category_id>": "<class name>", ...},
     "predictions": [<COCO result>, ...], "notes": [str, ...], "seconds": float}

``file_name``: the form's file name as the client sent it (the ``%22``, ``%0D``, ``%0A`` clients write
for '"', CR and LF undone), ``upload`` for a raw body. ``notes``: what the client should know about how
its upload was read (a multi-frame file's frames left out; an image under 16 px on its shorter side,
whose detections are unreliable) or answered (a ``score_thresh`` below what an exported ONNX model keeps:
nothing lower comes back; a tiled answer cut at ``detections_per_image``), else empty.

where each COCO result is what ``maskrcnn predict`` writes to ``predictions.json`` (``image_id`` 1,
``category_id``, ``category_name``, ``bbox`` [x, y, w, h], ``score``, ``segmentation`` compressed RLE,
``keypoints``) plus ``label`` (the model's class index) and the colours the library's overlays give the
detection (``color``, ``label_color``, ``text_color``: [R, G, B]; ``overlay_colors``), which the page
draws with. Class names that repeat or are empty are told apart as 'NAME (id INDEX)'
(``class_names.distinct_class_names``) in ``categories`` and ``category_name``. ``seconds``: the time
the server spent on the request, from its headers to the encoded answer (receiving the body, decoding,
waiting in the queue, the model, encoding; not sending the answer).

Bad requests get a 4xx and ``{"detail": message}``, never a crash (and a request still running when a
forced stop cancels it a 503 saying the server is shutting down): no image (400), a body over
``max_upload_bytes`` (413), a file that is not a decodable image or is truncated (400), an image of more
than ``max_pixels`` pixels, judged from its header before decoding (413, which stops decompression
bombs), more than ``max_pending`` requests at once (503); a model that gives NaN or infinity (which JSON
cannot carry) is a 500 that says so. A request whose client disconnects while it waits for the model
is dropped from the queue.

Time limits: a body not received within ``upload_timeout_s`` of the request's headers (a client that
trickles it, slowloris, or stalls) is answered 408 and its connection closed; a request not answered
within ``request_timeout_s`` of entering the queue is answered 503 if it was still waiting (it is taken
out of the queue: the model never runs it) or 504 if the model had it (the forward cannot be stopped;
its result is dropped). Both are counted in ``/health`` (``upload_timeouts``, ``request_timeouts``) and
logged as warnings on the ``maskrcnn.serve`` logger. (Headers that never complete are the server's
business: ``maskrcnn.serve.server``.)

Label Studio's ML backend protocol (``POST /predict`` with a JSON body of tasks, ``POST /setup``,
``POST /webhook``; its health check is a ``GET /health``) is answered too (a tasks call takes
``score_thresh`` as an image does, in the query or beside ``tasks``; another query parameter is a 400):
``maskrcnn.serve.labelstudio_backend``; the tasks' images are fetched by ``labelstudio_fetcher``
(``maskrcnn.serve.labelstudio_fetch``) and run through the same batch queue.

Decoding and JSON encoding run in the server's thread pool; the model runs on the ``BatchQueue``'s one
worker thread in batches of the predictor's ``batch_size``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import re
import threading
import time
import warnings
from collections import Counter
from contextlib import asynccontextmanager, nullcontext
from importlib import resources
from typing import Optional

import torch
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from maskrcnn.class_names import distinct_class_names
from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.data.images import (
    ImageReadError,
    ImageTooLargeError,
    MultiFrameWarning,
    as_float_image,
    decode_image_bytes,
)
from maskrcnn.overlay_colors import detection_colors
from maskrcnn.serve import (
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_UPLOAD_TIMEOUT_S,
)
from maskrcnn.serve import labelstudio_backend as lsb
from maskrcnn.serve.batching import BatchQueue, QueueFullError
from maskrcnn.serve.labelstudio_fetch import ImageFetcher
from maskrcnn.thread_warnings import caught_here

__all__ = ["create_app", "filter_by_score", "run_by_size"]

# After a body passes the upload limit, read (and discard) up to this much more so that the client,
# which is still sending, receives the 413 instead of a reset connection.
_DRAIN_BYTES = 64 * 1024 * 1024

log = logging.getLogger("maskrcnn.serve")


class RequestError(Exception):
    """A request the server refuses: HTTP status and a one-paragraph message."""

    def __init__(self, status: int, message: str, *, close: bool = False, counted: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close  # answer with "Connection: close" (the rest of the body is never read)
        self.counted = counted  # the /health counter it adds to, and a warning in the log ("": neither)


class _ShutdownAnswer:
    """ASGI middleware: a request still running when the server stops it (a second Ctrl-C, uvicorn's
    force quit, or its graceful-shutdown timeout, cancels the request's task) is answered 503 with
    ``{"detail"}``, as every other refusal, instead of uvicorn's plain-text 500 and a traceback per
    request in the log. The cancellation ends here: the task finishes, which is what was asked of it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except asyncio.CancelledError:
            log.warning("%s %s: answered 503: the server is shutting down", scope.get("method"),
                        scope.get("path"))
            if started:  # half an answer sent: nothing to add (uvicorn closes the connection)
                return
            body = json.dumps({"detail": "the server is shutting down; try again once it is back"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def filter_by_score(det: dict, score_thresh: Optional[float]) -> dict:
    """One image's detections with ``scores >= score_thresh``: every per-detection tensor filtered, and
    every per-detection list too (``masks_rle``, the masks ``maskrcnn serve`` answers with)."""
    if score_thresh is None:
        return det
    keep = det["scores"] >= score_thresh  # (D,) bool
    n = keep.shape[0]
    kept = keep.nonzero().flatten().tolist()

    def select(v):
        if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == n:
            return v[keep]
        if isinstance(v, (list, tuple)) and len(v) == n:
            return [v[i] for i in kept]
        return v

    return {k: select(v) for k, v in det.items()}


# The page runs only its own script and styles: were a name ever put into it as markup, the browser would
# still not run it (defence in depth; page.js writes text only). No framing (clickjacking), no sniffing.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: "
    "blob:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _static_file(name: str) -> bytes:
    return resources.files("maskrcnn.serve").joinpath("static", name).read_bytes()


async def _read_body(request, limit: int) -> bytes:
    """The request body, or a 413 once it passes ``limit`` bytes (without keeping what is past it)."""
    declared = request.headers.get("content-length")
    too_large = RequestError(
        413, f"upload larger than the limit of {limit} bytes ({limit / 2**20:.1f} MiB; --max-upload-mb)"
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if "100-continue" in request.headers.get("expect", "").lower():
            raise too_large  # the client waits for our answer before sending the body
    body, total = bytearray(), 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total <= limit:
                body += chunk
            elif total > limit + _DRAIN_BYTES:
                break
    except ClientDisconnect:  # the client left mid-upload: no one to answer, nothing to log as a failure
        raise RequestError(499, "the client closed the connection during the upload") from None
    if total > limit:
        raise too_large
    return bytes(body)


async def _drain_body(request, limit: int) -> None:
    """Read and discard the body (up to ``limit`` bytes), so that a client still sending it reads the
    answer instead of a reset connection."""
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                break
    except ClientDisconnect:  # the client left mid-upload (as in _read_body): no one to answer
        raise RequestError(499, "the client closed the connection during the upload") from None


async def _before(deadline: Optional[float], coro, expired: RequestError):
    """``await coro``, or ``expired`` raised once the event loop's clock passes ``deadline`` (None: no
    limit). On Python 3.9 and 3.10 too (no ``asyncio.timeout``)."""
    if deadline is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
    except asyncio.TimeoutError:
        raise expired from None


async def _image_from_request(request, body: bytes, limit: int) -> tuple:
    """-> (encoded image bytes, file name, [(form field, text)]) from a multipart form or a raw body."""
    ctype = request.headers.get("content-type", "").lower()
    if not ctype.startswith("multipart/form-data"):
        return body, "upload", []

    if not _starts_as_multipart(body, request.headers.get("content-type", "")):
        # (the parser would log a line of its own for it before failing)
        raise RequestError(
            400,
            "the body is not the multipart form its Content-Type says (it does not start with the "
            "boundary): send a file with curl -F image=@photo.jpg, or the raw image with --data-binary "
            "and no multipart Content-Type",
        )

    async def replay():  # the body was read already (with its size limit); parse it from memory
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(
            max_files=_MAX_FORM_FILES, max_fields=8, max_part_size=limit
        )
    except Exception as e:  # malformed multipart (boundaries, headers, too many parts)
        detail = str(getattr(e, "detail", e))
        if detail.startswith("Too many files"):
            raise RequestError(400, f"one image per request (got over {_MAX_FORM_FILES} files)") from None
        raise RequestError(400, f"cannot parse the multipart form: {_multipart_reason(detail, e)}") from None
    # any one file field: `image` and `file` are the usual names, but a client's own name is as clear
    uploads = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
    if len(uploads) > 1:
        named = ", ".join(f"{k}={v.filename!r}" if v.filename else k for k, v in uploads)
        raise RequestError(400, f"one image per request (got {len(uploads)} files: {named})")
    if not uploads:
        # `-F image=hello` (no '@'): a field named so, holding text; "send it in a field named 'image'" was
        # wrong advice, the name was right
        texts = [k for k, v in form.multi_items() if isinstance(v, str) and k.lower() in ("image", "file")]
        if texts:
            raise RequestError(400, f"no image in the form: field '{texts[0]}' holds text, not a file: send "
                                    f"the file with curl -F {texts[0]}=@photo.jpg")
        raise RequestError(400, "no image in the form: send the file in a field named 'image'")
    if uploads[0][0] in _PARAMETERS:
        # `-F score_thresh=@photo.jpg`: the file was taken as the image and a text score_thresh beside it
        # applied, so the parameter was in the form twice without the "given more than once" 400
        raise RequestError(400, f"the file's form field '{uploads[0][0]}' is a parameter's name: send the "
                                "image in a field named 'image' (curl -F image=@photo.jpg)")
    upload = uploads[0][1]
    data = await upload.read()
    fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]  # (name, text) in order
    return data, _sent_file_name(upload.filename) or "upload", fields


# How browsers, requests (urllib3) and newer curl write '"', CR and LF in a multipart file name (the
# HTML form encoding); the parser hands the name on as written, so 'a"b.png' came back as 'a%22b.png'.
_FORM_NAME_ESCAPES = re.compile("%(22|0d|0a)", re.IGNORECASE)


def _sent_file_name(name: Optional[str]) -> Optional[str]:
    """The file name the client sent: its form encoding of '"', CR and LF undone (no other '%' is
    encoded by clients, so any other stays as it is)."""
    if not name:
        return name
    return _FORM_NAME_ESCAPES.sub(lambda m: chr(int(m.group(1), 16)), name)


def _one_line(name: str) -> str:
    """``name`` for the server's log and a refusal's message (decode warnings and errors name the file):
    control characters (CR, LF, tab, ...) written as Python and JSON escape them (``\\r``, ``\\n``), so
    that no client can write a line of its own into the log, and a 400 shows the name as the JSON of a
    200's ``file_name`` does (it was %0D here and a CR there)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)


def _multipart_reason(detail: str, error: Exception) -> str:
    """Starlette's message for a form it cannot parse, with the parser's reason (Starlette says only
    "Invalid multipart data." and keeps the reason down the exception's chain)."""
    reason, err = "", error
    for _ in range(4):  # HTTPException <- (context) MultiPartException <- (cause) the parser's error
        err = err.__cause__ or err.__context__
        if err is None:
            break
        reason = str(err).strip()
    if "header size" in reason.lower():
        from python_multipart.multipart import DEFAULT_MAX_HEADER_SIZE

        return (f"a part's header line (its Content-Disposition, which holds the file name) is longer than "
                f"the parser's limit of {DEFAULT_MAX_HEADER_SIZE} bytes: send the file under a shorter name")
    return f"{detail} ({reason})" if reason and reason not in detail else detail


# Files a form may carry before the parser stops (one is used; more are a 400 that names them).
_MAX_FORM_FILES = 16


def _starts_as_multipart(body: bytes, content_type: str) -> bool:
    """Whether ``body`` starts with the boundary its multipart ``content_type`` names (after blank
    lines, which the parser skips); True when there is no boundary to check (the parser says why)."""
    from python_multipart.multipart import parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        return True
    start = body.lstrip(b"\r\n")
    after = start[len(boundary) + 2 : len(boundary) + 4]  # the boundary line's end, or the form's
    return start.startswith(b"--" + boundary) and after in (b"\r\n", b"--")


def _sniff_json(body: bytes):
    """The parsed body when a raw upload is JSON (starts with ``{`` or ``[`` and parses; no image format
    starts so), else None: ``curl --data-binary @tasks.json`` sends no JSON Content-Type."""
    if body.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return _loads(body)
    except ValueError:
        return None
    except RecursionError:  # JSON after all, nested past the parser's depth: refused as _json_object does
        raise RequestError(400, _TOO_DEEP) from None


def _image_from_json(payload: dict) -> tuple:
    """-> (encoded image bytes, file name, [(parameter, value)]) of a JSON body ``{"image": "<base64>"}``
    (a ``data:image/...;base64,`` prefix or none; ``score_thresh`` beside it)."""
    from maskrcnn.serve.labelstudio_fetch import FetchError, decode_data_url

    text = payload["image"]
    if not isinstance(text, str):
        raise RequestError(400, "the JSON body's 'image' must be the image file in base64 (a string)")
    if not text.strip():
        raise RequestError(400, "empty upload: the JSON body's 'image' is an empty string (expected the "
                                "image file in base64)")
    try:
        if text.lstrip()[:5].lower() == "data:":
            data = decode_data_url(text, max_bytes=2**62)  # the body's own limit bounded it already
        else:  # plain base64, decoded as it is (not prefixed for decode_data_url: a copy of a large string)
            data = base64.b64decode("".join(text.split()), validate=True)
    except FetchError as e:
        raise RequestError(400, f"the JSON body's 'image': {e}") from None
    except (binascii.Error, ValueError) as e:  # ValueError: text that is not ASCII
        raise RequestError(400, f"the JSON body's 'image': not valid base64 ({e})") from None
    fields = [(k, v) for k, v in payload.items() if k != "image"]
    return data, "image (base64 in JSON)", fields


async def _result_unless_disconnected(request, future, timeout_s: Optional[float] = None):
    """The batch queue's result for this request; if the client goes away first, or no result comes within
    ``timeout_s`` seconds (None: no limit), the queued work is cancelled (the worker drops it before it
    costs a forward) and a ``RequestError`` ends the handler: 499 for a client gone, 503 for work that was
    still queued, 504 for work the model had already taken (a forward cannot be stopped: its result is
    dropped).

    Once the body is read, the ASGI server's next message is ``http.disconnect``, sent when the client
    closes the connection (or after the response)."""
    result = asyncio.ensure_future(asyncio.wrap_future(future))

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({result, watch}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if result.done():
            return result.result()  # a model failure propagates: a 500, the server lives on
        if watch.done():
            raise RequestError(499, "the client closed the connection before the answer")
        if future.cancel():  # still queued: taken out, the model never runs it
            raise RequestError(
                503,
                f"no answer within {timeout_s:g} s (--request-timeout): the request waited in the queue all "
                "that time and was dropped before the model ran it; the server is busy, try again shortly",
                counted="request_timeouts",
            )
        if future.done():  # finished just now (the asyncio wrapper learns of it a loop step later)
            return future.result()
        raise RequestError(
            504,
            f"no answer within {timeout_s:g} s (--request-timeout): the model was still running on this "
            "image (its result is dropped); a smaller image or a faster device may help",
            counted="request_timeouts",
        )
    finally:  # also when this task is cancelled
        watch.cancel()
        if not result.done():
            # The queue's own future, cancelled now (unless the model has it already): through
            # `result` alone it would be a loop step later, after this request has counted as ended.
            future.cancel()
            result.cancel()


async def _unless_disconnected(request, coroutine):
    """``await coroutine``, cancelled with a 499 ``RequestError`` when the client closes the connection
    first (a Label Studio call whose images are still being fetched: its request slot is freed)."""
    work = asyncio.ensure_future(coroutine)

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        raise RequestError(499, "the client closed the connection before the answer")
    finally:  # also when this task is cancelled
        watch.cancel()
        work.cancel()


def _encode_answer(answer: dict, det: dict, label_to_cat, t0: float, class_names=None,
                   keypoint_labels=None) -> bytes:
    """The JSON answer: ``answer`` plus the detections as COCO results, each with its ``category_name``
    (from ``class_names``, told apart: ``class_names.distinct_class_names``) and the colours the overlays
    give it (``overlay_colors.detection_colors``: ``color``, ``label_color``, ``text_color``), which the
    page draws with. Encoded here, on a pool thread, rather than by the framework on the event loop (an
    answer holds a string of RLE per detection)."""
    records = detections_to_coco_results(
        det, image_id=1, label_to_category_id=label_to_cat, class_names=class_names,
        extra={"file_name": answer["file_name"]}, keypoint_labels=keypoint_labels,
    )  # fmt: skip
    labels = det["labels"].reshape(-1).tolist() if len(records) else []  # (D,)
    for record, label, colors in zip(records, labels, detection_colors([r["score"] for r in records])):
        record.update(label=int(label), **colors)  # the class index, whatever the name says
    answer = {**answer, "num_detections": len(records), "predictions": records}
    answer["seconds"] = round(time.perf_counter() - t0, 4)
    try:
        return json.dumps(answer, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except ValueError:  # NaN or infinity, which JSON has no token for (and clients' parsers refuse)
        raise RequestError(
            500,
            "the model gave non-finite numbers (NaN or infinity) for this image: its weights may be "
            "broken, or float16 overflowed (serve with --dtype bfloat16 or float32)",
        ) from None


# What /predict reads besides the image, from the query string or the form's text fields.
_PARAMETERS = ("score_thresh",)


def _parameters(query, fields: list) -> dict:
    """name -> value of the request's parameters; a 400 for a name /predict does not read (a typo such
    as ``score=0.5`` would otherwise be ignored without a word) or for one given twice."""
    given = list(query.multi_items()) + list(fields)
    unknown = sorted({k for k, _ in given} - set(_PARAMETERS))
    if unknown:
        raise RequestError(
            400, f"unknown parameter {', '.join(map(repr, unknown))}: /predict takes {', '.join(_PARAMETERS)}"
        )
    names = [k for k, _ in given]
    twice = sorted({k for k in names if names.count(k) > 1})
    if twice:
        raise RequestError(400, f"parameter {', '.join(map(repr, twice))} given more than once")
    return dict(given)


def _urlencoded_body_note(data: bytes) -> str:
    """What to tell about an unreadable image sent as application/x-www-form-urlencoded, which curl sets
    for both -d and --data-binary: blame ``curl -d`` only when the body looks mangled by it (-d drops every
    CR and LF byte of a file: a PNG's signature loses its "\\r\\n", a larger image has none left), else say
    what came (a user who sent a text file with --data-binary had been told to use --data-binary)."""
    mangled_png = data.startswith(b"\x89PNG\x1a")  # b"\x89PNG\r\n\x1a\n" less its CR and LF
    if mangled_png or (len(data) >= 4096 and b"\n" not in data and b"\r" not in data):
        return "curl -d drops line breaks from a file: send it with --data-binary or -F image=@"
    return f"received {len(data)} bytes sent as application/x-www-form-urlencoded, starting {data[:16]!r}"


def _decode_upload(data: bytes, name: str, max_pixels: int, slots: Optional[threading.Semaphore] = None
                   ) -> tuple:
    """-> (the decoded (3, H, W) image, [notes for the client]). A multi-frame file (an animated GIF, a
    multi-page TIFF) is read as its first frame with a warning; the warning reaches only the server's
    log, so the client that sent the file is told in the answer's ``notes`` too. Called here, not by the
    thread pool directly, so that the warning names this module, not the pool's (anyio).

    The image stays uint8 (an 8-bit file) until the batch worker hands it to the model
    (``as_float_image``): it waits in the queue at a quarter of float32's memory. ``slots``: at most
    that many decodes at once (a decode's own peak is several copies of the image)."""
    notes, caught = [], []
    try:
        with slots if slots is not None else nullcontext(), caught_here() as caught:
            image = decode_image_bytes(data, name=name, max_pixels=max_pixels, keep_uint8=True)
    finally:  # logged as ever (also when the upload is then refused), and told to the client
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            if not issubclass(w.category, MultiFrameWarning):  # worded for the client below
                text = str(w.message)
                notes.append(text[len(name) + 2:] if text.startswith(f"{name}: ") else text)
    try:  # the header again (cheap next to the decode): the frames are counted without decoding them
        # its warnings (PIL's corrupt EXIF again, unnamed) were said by the decode already
        with caught_here(), Image.open(io.BytesIO(data)) as img:
            frames = int(getattr(img, "n_frames", 1) or 1)
            if frames > 1 and img.format != "MPO":  # MPO: a camera's preview frames, as decode leaves them
                notes.append(f"{frames} frames (animation or pages): the first was predicted, "
                             f"{frames - 1} left out")
    except Exception:  # decoded once already: a second look that fails costs the note, not the answer
        pass
    return image, notes


def decode_slots(batch_size: int) -> threading.BoundedSemaphore:
    """How many uploads may be decoded at once: enough to have the next batch ready while the model runs
    one, no more. 20 clients sending 16-megapixel PNGs at once took the server from 1.8 GB to 9.6 GB
    when each of the pool's threads decoded one."""
    return threading.BoundedSemaphore(max(2, int(batch_size) + 1))


def _tiny_image_note(predictor, height: int, width: int) -> Optional[str]:
    """What ``maskrcnn predict`` warns of an image under ``TINY_IMAGE_PX`` on its shorter side, for the
    answer's notes (None for a larger image, or a predictor without a config)."""
    from maskrcnn.commands.predict import TINY_IMAGE_PX

    cfg = getattr(predictor, "cfg", None)
    if cfg is None or min(height, width) >= TINY_IMAGE_PX:
        return None
    from maskrcnn.commands.predict_images import tiny_images_note

    return tiny_images_note(1, f"this upload, {width}x{height}", cfg.input.min_size_test)


def _json_image_note(text: str) -> str:
    """What to add to the 400 for a JSON ``image`` that decoded to no image: a ``data:`` URL without
    ``;base64`` is read as percent-encoded text (the data URL rule), so base64 in it decodes to junk; the
    curl -d / urlencoded note is not for JSON, whose line breaks curl -d does not matter to."""
    head = text.lstrip()[:200].partition(",")[0].lower()
    if head.startswith("data:") and not head.endswith(";base64"):
        return (" (its data: URL has no ';base64' before the ',', so the text after it was read as "
                "percent-encoded bytes, not base64: write data:image/png;base64,...)")
    return ""


def _fixed_threshold_note(predictor, thresh: Optional[float]) -> Optional[str]:
    """``Predictor.fixed_threshold_note`` for a request's ``score_thresh`` (an ONNX graph keeps nothing
    below its exported threshold), without its "note: " prefix; None when it does not apply. When the
    server's own ``--score-thresh`` is the higher bound, the note names it instead."""
    note_for = getattr(predictor, "fixed_threshold_note", None)
    note = note_for(thresh) if note_for is not None and thresh is not None else None
    server = getattr(predictor, "score_thresh", None)
    if note and server is not None and thresh < server:
        # the server's own --score-thresh filters first: exporting again at a lower threshold would not help
        exported = float(predictor.cfg.model.roi_heads.score_thresh)
        if server >= exported:
            lower = f" (the exported model keeps scores down to {exported:g})" if server > exported else ""
            return (f"a score_thresh of {thresh:g} keeps nothing more than this server's own {server:g} "
                    f"(serve --score-thresh): start the server with a lower --score-thresh{lower}")
    return note[len("note: "):] if note and note.startswith("note: ") else note


# A score_thresh given as text: a plain decimal number (float() reads Python's digit-group underscores
# too: '0_5' was 5.0 and '0.0_5' was 0.05; and digits of other scripts), or NaN / infinity, which the
# range check refuses by name.
_DECIMAL = re.compile(r"[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|nan|inf|infinity)", re.IGNORECASE | re.ASCII)


def _parse_score_thresh(value) -> Optional[float]:
    if value is None or value == "":
        return None
    if isinstance(value, bool):  # JSON true / false: float() reads them as 1.0 / 0.0
        raise RequestError(400, f"score_thresh must be a number in [0, 1], got {value!r}")
    if isinstance(value, str) and not _DECIMAL.fullmatch(value.strip()):
        raise RequestError(400, f"score_thresh must be a number in [0, 1], got {value!r}")
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise RequestError(400, f"score_thresh must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= t <= 1.0:
        sent = value.strip() if isinstance(value, str) else value  # as sent ('1e1'), not as read (10.0)
        raise RequestError(400, f"score_thresh must be in [0, 1], got {sent}")
    return t


def run_by_size(predict_tensors, images: list) -> list:
    """``predict_tensors`` on a batch of (3, H, W) images, one forward per image size: an image's
    detections must not depend on which other clients' uploads share its batch, and images of other
    sizes would pad it (features near its edges change, and with them its boxes and scores). Images of
    one size pad alike, so they still share forwards. -> detections per image, in input order."""
    groups: dict = {}  # (H, W) -> indices of the images of that size, in input order
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape[-2:]), []).append(i)
    out = [None] * len(images)
    for ids in groups.values():
        # float here, for this forward only: uint8 while it waited (``_decode_upload``)
        for i, det in zip(ids, predict_tensors([as_float_image(images[i]) for i in ids])):
            out[i] = det
    return out


# The key of a detections dict the batch worker adds: notes for that image's client (popped by the handler).
NOTES_KEY = "serve_notes"


def _cap_note_for_client(cap) -> str:
    """The answer's note for an image whose tiled merge was cut at ``detections_per_image``
    (``tiling.TileCap``): its facts, and what the server's operator can change (the Predictor's own
    warning advises its Python API, and is said once per process, in the server's log)."""
    if cap.onnx:
        fix = ("the cap is fixed in this server's ONNX model: export the checkpoint again with --set "
               f"model.roi_heads.detections_per_image={cap.advised} and serve that")
    else:
        fix = (f"to keep more, the server must be started with --set "
               f"model.roi_heads.detections_per_image={cap.advised}")
    return f"{cap.facts}; {fix}"


def _run_batch(predictor, images: list) -> list:
    """The batch worker's ``run_batch``: ``run_by_size``; with tiling, one image per call, so that each
    image whose merge is cut at ``detections_per_image`` (``Predictor.tile_caps``) gets its note
    (``NOTES_KEY``): the Predictor warns of it once per process, in the server's log only."""
    if getattr(predictor, "tile", None) is None:
        return run_by_size(predictor.predict_tensors, images)
    out = []
    for image in images:
        (det,) = run_by_size(predictor.predict_tensors, [image])
        (cap,) = predictor.tile_caps  # this call's one image
        out.append({**det, NOTES_KEY: [] if cap is None else [_cap_note_for_client(cap)]})
    return out


def _tile_summary(tile) -> Optional[dict]:
    """``/health``'s view of the predictor's tiling (None: whole images)."""
    if tile is None:
        return None
    return {"size": tile.size, "overlap": tile.overlap, "full_image": tile.full_image, "scale": tile.scale}


def _keypoint_summary(cfg) -> Optional[dict]:
    """``/health``'s view of a keypoint model's set, which the page draws with: ``names`` and ``skeleton``
    (0-based index pairs: the dataset's, else COCO's for COCO's 17 keypoints, else none, as the PNG
    overlays choose, ``visualize.skeleton_for``); None for a model without keypoints."""
    if cfg is None or not cfg.model.roi_heads.keypoint_on:
        return None
    from maskrcnn.visualize import skeleton_for

    return {"names": [str(n) for n in cfg.data.keypoint_names],
            "skeleton": [[int(a), int(b)] for a, b in skeleton_for(cfg)]}


def _tta_summary(tta) -> Optional[dict]:
    """``/health``'s view of the predictor's test-time augmentation (None: none)."""
    if tta is None:
        return None
    return {"min_sizes": list(tta.min_sizes), "max_size": tta.max_size, "flip": tta.flip}


def create_app(
    predictor,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_wait_s: float = 0.01,
    max_pending: int = DEFAULT_MAX_PENDING,
    upload_timeout_s: Optional[float] = DEFAULT_UPLOAD_TIMEOUT_S,
    request_timeout_s: Optional[float] = DEFAULT_REQUEST_TIMEOUT_S,
    weights_name: str = "",
    labelstudio_fetcher: Optional[ImageFetcher] = None,
    min_region_area: float = lsb.DEFAULT_MIN_REGION_AREA,
):
    """A FastAPI application serving ``predictor`` (its batch queue starts and stops with the app).

    Args:
        predictor: a ``Predictor`` (``Predictor.from_weights``: a checkpoint or an ONNX file).
        max_upload_bytes: largest request body accepted.
        max_pixels: largest image (width x height) accepted, checked before decoding.
        max_wait_s: how long a batch waits for batch-mates once its first request is in.
        max_pending: most requests being read, decoded, waiting for or in the model; more get a 503 (this
            bounds the memory the server holds: decoded images and pasted masks).
        upload_timeout_s: most seconds to receive a request's body, from its headers (408 past it);
            None: no limit.
        request_timeout_s: most seconds a request may wait in the queue and be in the model (503 / 504
            past it); None: no limit.
        weights_name: shown by ``/health`` and the page; the model version Label Studio is told.
        labelstudio_fetcher: fetches Label Studio tasks' images (``--ls-url``, ``--ls-token``,
            ``--ls-local-root``); None: one that reads absolute http(s) URLs only, ``max_upload_bytes``
            at most.
        min_region_area: Label Studio polygons: pieces of a mask with a smaller area (pixels) are left
            out, but for a detection's largest (``--min-region-area``).
    """
    if max_upload_bytes < 1 or max_pixels < 1:
        raise ValueError(f"max_upload_bytes and max_pixels must be >= 1: {max_upload_bytes}, {max_pixels}")
    for name, value in (("upload_timeout_s", upload_timeout_s), ("request_timeout_s", request_timeout_s)):
        if value is not None and not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a finite number of seconds > 0 (None: no limit), got {value}")
    slots = decode_slots(predictor.batch_size)
    batches = BatchQueue(
        lambda images: _run_batch(predictor, images),
        batch_size=predictor.batch_size,
        max_wait_s=max_wait_s,
        max_pending=max_pending,
        # one run_batch call per image size: a request's answer does not wait for other sizes' forwards,
        # and a failed size's retry alone does not rerun the sizes that succeeded
        group_key=lambda image: tuple(image.shape[-2:]),
    )
    names = distinct_class_names(predictor.class_names)  # a Predictor's are already; other objects' too
    label_to_cat = predictor.label_to_category_id
    categories = {
        str(label_to_cat.get(label, label) if label_to_cat else label): names[label]
        for label in range(1, len(names))
    }
    keypoints = _keypoint_summary(getattr(predictor, "cfg", None))

    @asynccontextmanager
    async def lifespan(app):
        batches.start()
        try:
            yield
        except asyncio.CancelledError:
            # A forced stop (a second Ctrl-C): uvicorn skips the shutdown and asyncio cancels every task.
            # Not raised on: uvicorn would log it as a traceback. The model's forward in progress is waited
            # for on a thread (the process ending under it aborts in torch), not here: joining on the
            # event loop held the cancelled requests' 503s (_ShutdownAnswer) until the model was done.
            await asyncio.to_thread(batches.stop)
        finally:
            batches.stop()  # (nothing left to do after a forced stop)

    # no /openapi.json either: nothing reads it without the docs pages, and building it logged FastAPI's
    # "Duplicate Operation ID" warnings for the GET + HEAD routes
    # "/predict/" was a 307 with an empty body (curl without -L printed nothing): the two routes a client
    # calls take both spellings below; the others keep Starlette's redirect (not a 404)
    app = FastAPI(title="maskrcnn serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_ShutdownAnswer)
    app.state.batches = batches
    app.state.in_flight = 0
    # Counters for /health; maskrcnn.serve.server adds the connections closed for slow headers.
    app.state.stats = {"upload_timeouts": 0, "request_timeouts": 0, "header_timeouts": 0}

    @app.exception_handler(RequestError)
    async def _refused(request, exc: RequestError):
        if exc.counted:
            app.state.stats[exc.counted] += 1
            client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
            log.warning("%s %s %s: %d %s", client, request.method, request.url.path, exc.status, exc.message)
        headers = {"Connection": "close"} if exc.close else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(Exception)
    async def _failed(request, exc: Exception):
        # The model (or something unforeseen) failed on this request; uvicorn logs the traceback, the
        # client gets the reason, and the next request is served as usual.
        return JSONResponse({"detail": f"prediction failed: {type(exc).__name__}: {exc}"}, status_code=500)

    # GET (and HEAD, which HTTP expects wherever GET is served: uptime monitors and load balancers probe
    # with it; the server sends its headers without the body), as Label Studio's check (MLApi.health)
    # and its ML backend SDK's route are; a POST is a 405
    @app.api_route("/health", methods=["GET", "HEAD"])
    @app.api_route("/health/", methods=["GET", "HEAD"])
    async def health():
        return {
            "status": "ok",
            "weights": weights_name,
            "device": str(predictor.device),
            "precision": getattr(predictor, "precision", "float32"),  # Predictor.precision
            "batch_size": batches.batch_size,
            "pending": batches.pending,
            "in_flight": app.state.in_flight,
            "batches_run": batches.batches_run,
            "images_run": batches.items_run,
            "categories": categories,
            "keypoints": keypoints,
            "tile": _tile_summary(getattr(predictor, "tile", None)),
            "tta": _tta_summary(getattr(predictor, "tta", None)),
            # the server's own (--score-thresh): a request's score_thresh can only filter further
            "score_thresh": getattr(predictor, "score_thresh", None),
            "max_upload_bytes": max_upload_bytes,
            "max_pixels": max_pixels,
            "upload_timeout_s": upload_timeout_s,
            "request_timeout_s": request_timeout_s,
            **app.state.stats,
        }

    @app.api_route("/", methods=["GET", "HEAD"])
    async def page():
        return Response(
            _static_file("index.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS
        )

    @app.get("/page.js")
    async def page_js():
        return Response(
            _static_file("page.js"), media_type="text/javascript; charset=utf-8", headers=_PAGE_HEADERS
        )

    @app.post("/predict")
    @app.post("/predict/")
    async def predict(request: Request):
        t0 = time.perf_counter()
        # The body must be in by this time on the event loop's clock (the handler starts once the
        # headers are in); a client that trickles it would otherwise hold its connection for ever.
        deadline, too_slow = None, None
        if upload_timeout_s is not None:
            deadline = asyncio.get_running_loop().time() + upload_timeout_s
            too_slow = RequestError(
                408,
                f"the request body was not received within {upload_timeout_s:g} s (--upload-timeout); "
                "the connection is closed",
                close=True,
                counted="upload_timeouts",
            )
        # The upload, the decoded image and the detections are the memory a request holds: at most
        # max_pending requests hold them, counted from their first byte read, so that a crowd of
        # uploads cannot take max_upload_bytes each (the count changes only on the event loop's
        # thread, so it needs no lock).
        if app.state.in_flight >= max_pending:
            await _before(deadline, _drain_body(request, max_upload_bytes + _DRAIN_BYTES), too_slow)
            raise RequestError(503, f"{max_pending} requests are already being served; try again shortly")
        app.state.in_flight += 1
        try:
            body = await _before(deadline, _read_body(request, max_upload_bytes), too_slow)
            encoding = request.headers.get("content-encoding", "").strip().lower()
            if encoding not in ("", "identity"):  # read as the image itself, it was "not an image"
                raise RequestError(415, f"Content-Encoding {encoding!r} is not supported: send the image "
                                        "file as it is (image formats are compressed already)")
            ctype = request.headers.get("content-type", "").lower()
            payload = None
            # parsed on a worker thread: a body of up to max_upload_bytes is no work for the event loop
            if ctype.startswith("application/json"):
                payload = await run_in_threadpool(_json_object, body)
            elif not ctype.startswith("multipart/form-data"):
                sniffed = await run_in_threadpool(_sniff_json, body)  # JSON sent without its Content-Type
                payload = None if sniffed is None else _json_object(body, sniffed)
            if payload is not None and "image" in payload and "tasks" in payload:
                # either would drop the other without a word (an image answered by [] as no tasks)
                raise RequestError(
                    400,
                    "the JSON body has both 'image' and 'tasks', which exclude each other: 'image' is a "
                    "plain prediction ({\"image\": \"<base64>\"}), 'tasks' a Label Studio call",
                )
            if payload is not None and "image" in payload:
                data, name, fields = _image_from_json(payload)  # {"image": "<base64>"}
            elif payload is not None:
                _check_tasks(payload)
                # Label Studio's tasks: score_thresh in the query or beside 'tasks', as for an image;
                # another query parameter is a 400 (the body's other keys are Label Studio's own)
                given = [("score_thresh", payload["score_thresh"])] if "score_thresh" in payload else []
                thresh = _parse_score_thresh(_parameters(request.query_params, given).get("score_thresh"))
                try:
                    answer = await _unless_disconnected(
                        request, labelstudio.predict(payload, score_thresh=thresh))
                except ValueError as e:
                    raise RequestError(400, f"Label Studio predict: {e}") from None
                return JSONResponse(answer)
            else:
                data, name, fields = await _image_from_request(request, body, max_upload_bytes)
            thresh = _parse_score_thresh(_parameters(request.query_params, fields).get("score_thresh"))
            if not data:
                raise RequestError(
                    400, "empty upload: send an image file (form field 'image' or the raw body)"
                )
            try:
                image, notes = await run_in_threadpool(_decode_upload, data, _one_line(name), max_pixels,
                                                       slots)
            except ImageTooLargeError as e:
                # the server's own limit is named once; PIL's (lower) one gets the server's added
                own = e.caller_limit == max_pixels
                server = (" (serve --max-pixels)" if own
                          else f"; this server takes at most {max_pixels} pixels")
                raise RequestError(413, f"{e}{server}") from None
            except ImageReadError as e:
                content_type = request.headers.get("content-type", "")
                hint = ""
                if payload is not None:  # JSON (sniffed even when sent as curl's urlencoded type)
                    hint = _json_image_note(payload["image"])
                elif content_type.startswith("application/x-www-form-urlencoded"):  # curl's default type
                    hint = f" ({_urlencoded_body_note(data)})"
                raise RequestError(400, f"{e}{hint}") from None
            try:
                future = batches.submit(image)
            except QueueFullError as e:
                raise RequestError(503, str(e)) from None
            det = await _result_unless_disconnected(request, future, request_timeout_s)
            det = dict(det)
            notes = [*notes, *det.pop(NOTES_KEY, [])]  # the tiling cap, told by the batch worker
            det = filter_by_score(det, thresh)
            low = _fixed_threshold_note(predictor, thresh)
            if low:  # an ONNX graph drops lower scores itself: told, as predict tells it
                notes = [*notes, low]
            H, W = image.shape[-2:]
            tiny = _tiny_image_note(predictor, int(H), int(W))
            if tiny:
                notes = [*notes, tiny]
            answer = {"file_name": name, "width": int(W), "height": int(H), "categories": categories,
                      "notes": notes}
            body = await run_in_threadpool(_encode_answer, answer, det, label_to_cat, t0, names,
                                           getattr(predictor, "keypoint_labels", None))
        finally:
            app.state.in_flight -= 1
        return Response(body, media_type="application/json")

    labelstudio = lsb.LabelStudioBackend(
        predictor, batches, app.state.stats, max_pixels=max_pixels, request_timeout_s=request_timeout_s,
        model_version=weights_name or "maskrcnn",
        fetcher=labelstudio_fetcher or ImageFetcher(max_bytes=max_upload_bytes),
        min_region_area=min_region_area, decode_slots=slots,
    )

    @app.post("/setup")
    async def setup(request: Request):
        payload = await run_in_threadpool(_json_object, await _read_body(request, max_upload_bytes))
        try:
            return labelstudio.setup(payload)
        except ValueError as e:  # a config the backend cannot serve: Label Studio shows the reason
            raise RequestError(400, f"Label Studio setup: {e}") from None

    @app.post("/webhook")
    async def webhook(request: Request):
        await _drain_body(request, max_upload_bytes)
        return {"status": "ignored", "detail": "maskrcnn serve does not train from Label Studio's events"}

    return app


_TOO_DEEP = "the JSON body does not parse: its arrays or objects are nested too deeply"


def _check_tasks(payload: dict) -> None:
    """A 400 for a JSON body that is neither an image nor Label Studio's tasks, worded for both kinds of
    client (one who sent ``{}`` is not told of Label Studio alone)."""
    if "tasks" not in payload:
        keys = sorted(map(str, payload))
        shown = ", ".join(map(repr, keys[:10])) + (f", ... ({len(keys)} keys)" if len(keys) > 10 else "")
        got = f"keys [{shown}]" if keys else "no keys"
        raise RequestError(400, "a JSON body needs 'image' (the image file in base64, or a data: URL) or, "
                                f"from Label Studio, a 'tasks' list; got {got}")
    tasks = payload["tasks"]
    if not isinstance(tasks, list):
        kind = {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(tasks), "a number" if isinstance(tasks, (int, float)) else type(tasks).__name__)
        raise RequestError(400, f"'tasks' must be a list of Label Studio tasks, got {kind}")


def _object_without_repeats(pairs: list) -> dict:
    """``json.loads``' object_pairs_hook: a plain dict keeps the last of a key given twice without a word
    (``"score_thresh": 0.5, "score_thresh": 0.9`` ran at 0.9), so a repeat is a 400, as a parameter given
    twice in the query and the form is. RequestError is no ValueError: ``_sniff_json`` passes it on."""
    # a Counter, not keys.count(k) per key: that was quadratic (40,000 keys and one repeat: 11.7 s)
    counts = Counter(k for k, _ in pairs)
    twice = sorted(k for k, n in counts.items() if n > 1) if len(counts) < len(pairs) else []
    if twice:
        raise RequestError(400, f"the JSON body gives {', '.join(map(repr, twice))} more than once")
    return dict(pairs)


def _loads(body: bytes):
    return json.loads(body, object_pairs_hook=_object_without_repeats)


def _json_object(body: bytes, parsed=None) -> dict:
    """The JSON object of ``body`` (``parsed``: already parsed); a 400 for anything else."""
    try:
        payload = _loads(body) if parsed is None else parsed
    except ValueError as e:  # UnicodeDecodeError included
        raise RequestError(400, f"the JSON body does not parse: {e}") from None
    except RecursionError:  # not a ValueError: it was a 500 "prediction failed" with a logged traceback
        raise RequestError(400, _TOO_DEEP) from None
    if not isinstance(payload, dict):
        raise RequestError(400, f"the JSON body must be an object, not {type(payload).__name__}")
    return payload
