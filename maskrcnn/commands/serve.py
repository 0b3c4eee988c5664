"""``maskrcnn serve``: run a model behind HTTP, with a web page to try it.

    maskrcnn serve --weights CKPT [--host 127.0.0.1] [--port 8000] [--batch-size N]
                   [--max-upload-mb MB] [--max-pixels N] [--max-queue N] [--device D] [--score-thresh T]
                   [--upload-timeout S] [--request-timeout S] [--keep-alive-timeout S] [--max-connections N]
                   [--tile SIZE [--tile-overlap F] ...] [--tta [--tta-sizes S1,S2] ...]
                   [--ls-url URL] [--ls-token TOKEN] [--ls-local-root DIR] [--ls-timeout S]
                   [--min-region-area PX]

Endpoints (``maskrcnn.serve.app``): ``GET /`` the page, ``POST /predict`` an image -> COCO-format JSON,
``GET /health``; and Label Studio's ML backend protocol (``maskrcnn.serve.labelstudio_backend``), its
tasks' images fetched with ``--ls-url``, ``--ls-token`` (or ``LABEL_STUDIO_API_KEY``) and
``--ls-local-root``. Binds to localhost unless ``--host`` says otherwise: the server has no authentication,
so exposing it is a deliberate choice. Needs the ``serve`` extra (``pip install maskrcnn[serve]``).
Time limits and the connection cap: ``maskrcnn.serve.app`` (body, queue and model) and
``maskrcnn.serve.server`` (headers, keep-alive, connections). ``--tile`` / ``--tta`` (as ``predict``
takes them) apply to every request, and ``/health`` reports them; they are not query parameters: a
client's tile size or scales would decide how many forwards its request costs (``tile=32`` on a
``--max-pixels`` image is thousands), and one batch runs one predictor's options.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import signal
import socket
import sys
import warnings
from pathlib import Path

from maskrcnn.commands.flag_options import NO_OPTIMISE_HELP

HELP = "serve a model over HTTP: POST /predict, GET /health and a web page at /"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from maskrcnn.serve import (
        DEFAULT_KEEP_ALIVE_S,
        DEFAULT_MAX_CONNECTIONS,
        DEFAULT_MAX_PENDING,
        DEFAULT_MAX_PIXELS,
        DEFAULT_MAX_UPLOAD_BYTES,
        DEFAULT_MIN_REGION_AREA,
        DEFAULT_REQUEST_TIMEOUT_S,
        DEFAULT_UPLOAD_TIMEOUT_S,
    )

    parser.add_argument(
        "--weights", required=True,
        help="checkpoint written by train / convert / quantize (INT8), or an .onnx file written by export "
             "(run by onnxruntime)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda | cuda:N; mps, xpu accepted, untested (default: auto)")
    parser.add_argument(
        "--batch-size", type=int, default=1,
        help="most concurrent requests run in one forward (default 1; larger pays off on a GPU; only "
        "images of one size share a forward, so an answer never depends on the other requests)",
    )  # fmt: skip
    parser.add_argument(
        "--max-wait-ms", type=float, default=10.0,
        help="how long a batch waits for more requests once its first is in (default 10 ms)",
    )  # fmt: skip
    parser.add_argument(
        "--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
        help=f"largest upload accepted, in MiB (default {DEFAULT_MAX_UPLOAD_BYTES / 2**20:g})",
    )  # fmt: skip
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
        help=f"largest image, width x height (default {DEFAULT_MAX_PIXELS}); checked before decoding",
    )  # fmt: skip
    parser.add_argument(
        "--max-queue", type=int, default=DEFAULT_MAX_PENDING,
        help=f"most requests served at once, from their upload's first byte; more get a 503 "
        f"(default {DEFAULT_MAX_PENDING})",
    )  # fmt: skip
    parser.add_argument(
        "--upload-timeout", type=float, default=DEFAULT_UPLOAD_TIMEOUT_S, metavar="S",
        help=f"seconds a client has to send a request's headers, then as many for its body; past them a "
        f"408 and the connection is closed (stops slow uploads holding connections; default "
        f"{DEFAULT_UPLOAD_TIMEOUT_S:g})",
    )  # fmt: skip
    parser.add_argument(
        "--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT_S, metavar="S",
        help=f"seconds a request may wait in the queue and be in the model: past them a 503 (still queued: "
        f"dropped, never run) or 504 (default {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )  # fmt: skip
    parser.add_argument(
        "--keep-alive-timeout", type=float, default=DEFAULT_KEEP_ALIVE_S, metavar="S",
        help=f"an idle connection is closed this long after its answer (default {DEFAULT_KEEP_ALIVE_S:g})",
    )  # fmt: skip
    parser.add_argument(
        "--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
        help=f"a request that finds this many connections open (its own included) gets a 503 (default "
        f"{DEFAULT_MAX_CONNECTIONS})",
    )  # fmt: skip
    parser.add_argument(
        "--score-thresh", type=float, default=None,
        help="drop detections scoring below this (a request's own score_thresh filters further)",
    )  # fmt: skip
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="autocast dtype"
    )
    parser.add_argument(
        "--no-optimise", action="store_true",
        help=NO_OPTIMISE_HELP,
    )  # fmt: skip
    parser.add_argument(
        "--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides"
    )
    parser.add_argument(
        "--ls-url", default=None, metavar="URL",
        help="Label Studio's address as this machine reaches it (http://localhost:8080): the ML backend "
        "fetches tasks' /data/upload/... images from it",
    )  # fmt: skip
    parser.add_argument(
        "--ls-token", default=None, metavar="TOKEN",
        help="Label Studio API token (Account & Settings), sent to --ls-url only; default: the environment "
        "variable LABEL_STUDIO_API_KEY",
    )  # fmt: skip
    parser.add_argument(
        "--ls-local-root", type=Path, default=None, metavar="DIR",
        help="Label Studio's local storage folder (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT): "
        "/data/local-files/?d= images are read from it (paths outside it are refused)",
    )  # fmt: skip
    parser.add_argument(
        "--ls-timeout", type=float, default=None, metavar="S",
        help="most seconds to download one task's image (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--min-region-area", type=float, default=DEFAULT_MIN_REGION_AREA, metavar="PX",
        help="Label Studio polygons: leave out pieces of a mask smaller than PX pixels of the image (a "
        f"detection made only of such pieces keeps its largest; default {DEFAULT_MIN_REGION_AREA:g}; 0 keeps "
        "every piece)",
    )  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    from maskrcnn.commands.tile_args import add_tile_arguments
    from maskrcnn.commands.tta_args import add_tta_arguments

    # for every request (not per request: a client's tile size would decide how many forwards it takes)
    add_tile_arguments(parser)
    add_tta_arguments(parser)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: one the system picks), or a RuntimeError saying why
    not in one line (uvicorn would log the error among its startup lines and exit with status 3)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise RuntimeError(f"cannot listen on {host}:{port}: unknown address ({e.strerror})") from None
    try:
        return socket.create_server(address, family=family, backlog=2048)  # uvicorn's backlog
    except OSError as e:
        hint = ""
        if e.errno == errno.EADDRINUSE:
            hint = " (another server is listening there: stop it or choose another --port)"
        elif e.errno == errno.EACCES:
            hint = " (ports below 1024 need privileges: choose another --port)"
        why = (os.strerror(e.errno) if e.errno else str(e)).lower()  # create_server adds the address
        raise RuntimeError(f"cannot listen on {host}:{port}: {why}{hint}") from None


def run(args: argparse.Namespace) -> int:
    try:
        import python_multipart  # noqa: F401 -- uploads need it; FastAPI would say so only at the first
        import uvicorn

        from maskrcnn.serve.app import create_app
    except ImportError as e:
        print(
            f"maskrcnn serve: {e}: install the 'serve' extra: pip install 'maskrcnn[serve]' (FastAPI, "
            "uvicorn, python-multipart)",
            file=sys.stderr,
        )
        return 1

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_upload_mb <= 0 or args.max_pixels < 1 or args.max_queue < 1:
        raise ValueError("--max-upload-mb, --max-pixels and --max-queue must be positive")
    for option in ("upload_timeout", "request_timeout", "keep_alive_timeout", "max_connections"):
        value = getattr(args, option)
        if not 0 < value < float("inf"):  # also refuses NaN
            what = "a whole number" if option == "max_connections" else "a finite number of seconds"
            raise ValueError(f"--{option.replace('_', '-')} must be {what} > 0, got {value}")
    if not 0 <= args.min_region_area < float("inf"):  # also refuses NaN
        raise ValueError(f"--min-region-area must be a number of pixels >= 0, got {args.min_region_area}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    from maskrcnn.commands.predict import _check_score_thresh

    _check_score_thresh(args.score_thresh)  # the flag named, not the Predictor's argument
    from maskrcnn.commands.tile_args import tile_from_args
    from maskrcnn.commands.tta_args import tta_from_args

    tile, tta = tile_from_args(args), tta_from_args(args)  # a bad value said before anything is bound
    fetcher = _labelstudio_fetcher(args)
    # Bound before the model loads: a port in use is said at once, and the address printed is the
    # real one (the port the system picked for --port 0).
    sock = _listen(args.host, args.port)
    with sock:
        return _serve(args, sock, create_app, uvicorn, fetcher, tile=tile, tta=tta)


def _labelstudio_fetcher(args: argparse.Namespace):
    """The Label Studio backend's image fetcher; a ValueError for a bad --ls-* option."""
    from maskrcnn.serve.labelstudio_fetch import DEFAULT_FETCH_TIMEOUT_S, ImageFetcher

    if args.ls_local_root is not None and not args.ls_local_root.is_dir():
        raise ValueError(f"--ls-local-root {args.ls_local_root}: not a folder")
    timeout = DEFAULT_FETCH_TIMEOUT_S if args.ls_timeout is None else args.ls_timeout
    if not 0 < timeout < float("inf"):
        raise ValueError(f"--ls-timeout must be a finite number of seconds > 0, got {timeout}")
    # The command, not the library, reads the environment (a token on the command line shows in `ps`).
    return ImageFetcher(
        ls_url=args.ls_url,
        token=args.ls_token or os.environ.get("LABEL_STUDIO_API_KEY") or None,
        local_root=args.ls_local_root,
        max_bytes=int(args.max_upload_mb * 2**20),
        timeout_s=timeout,
    )


def _serve(args: argparse.Namespace, sock: socket.socket, create_app, uvicorn, fetcher, *, tile=None,
           tta=None) -> int:
    from maskrcnn.commands.int8_engine import use_file_engine
    from maskrcnn.commands.weights_args import no_config_kwargs, print_weights_notes
    from maskrcnn.config import parse_set_args
    from maskrcnn.predictor import FixedThresholdWarning, Predictor
    from maskrcnn.serve.server import uvicorn_config

    use_file_engine(args.weights, "serve")  # an INT8 file runs under the engine it was calibrated under
    with warnings.catch_warnings():  # its note is printed below, once, as predict prints it
        warnings.simplefilter("ignore", FixedThresholdWarning)
        predictor = Predictor.from_weights(
            args.weights,
            device=args.device,
            overrides=parse_set_args(args.set),
            score_thresh=args.score_thresh,
            batch_size=args.batch_size,
            dtype=None if args.dtype == "float32" else args.dtype,
            optimise=not args.no_optimise,
            masks="rle",  # answers hold RLE: no image-sized masks, so memory does not grow with the upload
            tile=tile,
            tta=tta,
            **no_config_kwargs("serve"),
        )
    print_weights_notes(predictor, args.weights)
    low = predictor.fixed_threshold_note(args.score_thresh)  # an ONNX graph's threshold is its own
    if low:
        print(f"maskrcnn serve: {low}", file=sys.stderr)
    app = create_app(
        predictor,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
        max_wait_s=args.max_wait_ms / 1000.0,
        max_pending=args.max_queue,
        upload_timeout_s=args.upload_timeout,
        request_timeout_s=args.request_timeout,
        weights_name=Path(args.weights).name,
        labelstudio_fetcher=fetcher,
        min_region_area=args.min_region_area,
    )
    if not _is_loopback(args.host):
        print(
            f"maskrcnn serve: warning: binding to {args.host}: anyone who can reach this address can use "
            "the model (there is no authentication)",
            file=sys.stderr,
        )
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"loaded {args.weights} ({len(predictor.class_names) - 1} classes) on {predictor.device}, "
        f"{predictor.precision}, "
        f"batch size {args.batch_size}; open http://{host}:{port}/ (Ctrl-C stops)",
        file=sys.stderr,
    )
    config = uvicorn_config(
        app,
        upload_timeout_s=args.upload_timeout,
        keep_alive_s=args.keep_alive_timeout,
        max_connections=args.max_connections,
        log_level="info",
    )
    server = signal_recording_server(uvicorn, config)
    server.run(sockets=[sock])
    # uvicorn raises a stopping signal again once it has shut down (Ctrl-C: KeyboardInterrupt, 130;
    # SIGTERM: 143), but not after a forced stop (a second Ctrl-C while shutting down), which returned here
    # and exited 0, as if the server had ended of itself
    return exit_status_after(server.signals)


def signal_recording_server(uvicorn, config):
    """A ``uvicorn.Server`` for ``config`` that records the stopping signals it handles, in order, in
    ``signals`` (``exit_status_after``'s input): ``handle_exit`` is the hook uvicorn installs for them
    (``Server.capture_signals``); uvicorn's own handling follows unchanged. ``uvicorn``: the module
    (imported by the caller: the ``serve`` extra is optional)."""

    class SignalRecordingServer(uvicorn.Server):
        def __init__(self, config):
            super().__init__(config)
            self.signals = []

        def handle_exit(self, sig, frame):
            self.signals.append(sig)
            super().handle_exit(sig, frame)

    return SignalRecordingServer(config)


def exit_status_after(signals) -> int:
    """``maskrcnn serve``'s exit status once uvicorn has returned: 0 when no signal stopped it, else
    128 + the number of the first signal it caught (130 Ctrl-C, 143 SIGTERM), said in a line."""
    from maskrcnn.stop_signals import exit_status, signal_name

    if not signals:
        return 0
    first = int(signals[0])
    name = "Ctrl-C (SIGINT)" if first == signal.SIGINT else signal_name(first)
    again = ", then at once by a second signal" if len(signals) > 1 else ""
    print(f"maskrcnn serve: stopped by {name}{again}", file=sys.stderr)
    return exit_status(first)
