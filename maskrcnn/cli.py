"""The ``maskrcnn`` command line: one sub-command per module in ``maskrcnn/commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their command runs, so ``maskrcnn --help`` stays fast; a command module
imports torch only in ``run``, so ``maskrcnn COMMAND --help`` answers at once too (``predict`` aside: its
``--export`` options import torch; ``tests/test_cli.py`` lists the others).

A file whose name starts with '-' (``-photo.jpg``) reads to argparse as an option; when a usage error
follows and such an argument names an existing file, the error says to pass it after ``--`` or as
``./-photo.jpg``.

``--set`` takes the KEY=VALUE tokens that follow it, and only those: a config override always holds '=',
so the first token after it without one (``--set input.min_size_test=128 street.png``) is what it would
be without ``--set`` before it (an input), not a value that argparse's ``nargs="+"`` swallowed, leaving
"the following arguments are required: IMAGE_OR_DIR" (``split_set_values``). A list or mapping the shell cut
at its spaces (``--set solver.steps=[60000, 80000]`` unquoted) is put back together: the tokens that close
its brackets join it, as one value.

Under ``torchrun`` (RANK, WORLD_SIZE) only ``train`` runs (``SEVERAL_PROCESSES``: it shares its work,
validation included); another command says in one line that it runs in one process, before any work. An
error prints once: a message every process shares from rank 0 (a setup error also from each other
machine's first process, LOCAL_RANK 0, and from any process whose setup error rank 0 did not report alike,
as ``rank N: ...``), a process's own error (in the training loop) from that process as ``rank N: ...``,
and the peers' "connection closed" as "another process stopped (the connection to ADDRESS was lost); its
error, if it printed one, is above ..." (``engine/distributed.error_line``; ``--debug``: the raw
traceback).

Warnings print as one line: this library's "maskrcnn COMMAND: warning: ...", another library's (PyTorch's
DDP or autograd notes) "warning (torch): ...", named by the file that raised it (``warning_source``).

While a command runs, stdout and stderr write what their encoding cannot (a class name "Ölfleck" on a
PYTHONIOENCODING=ascii console, Windows' cp1252 when redirected) as escapes (``\\xd6lfleck``), warnings
included, instead of ending the command half way; a file name that is not valid UTF-8 (``caf\\udce9.png``)
still goes out as its own bytes, as Python's surrogateescape writes it. Their previous setting is restored
on return.

A reader that stops reading stdout early (``maskrcnn eval ... | head -1``) stops the printing only: the
command finishes, writes its files and exits with its own status (0), with nothing said on stderr
(``closed_stdout.py``).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import functools
import importlib
import os
import re
import sys
import warnings

from maskrcnn.closed_stdout import reader_gone_guard

COMMANDS = (
    "train", "eval", "predict", "demo", "convert", "convert-data", "split-data", "merge-data", "show-data",
    "export", "benchmark",
    "serve", "quantize",
)

_HELP = {
    "train": "train on COCO-format data",
    "eval": "COCO AP of a checkpoint on a COCO-format dataset",
    "predict": "run a checkpoint on images, write predictions.json and overlays",
    "demo": "generate a synthetic dataset, train, evaluate and draw predictions (CPU, minutes)",
    "convert": "convert a torchvision, detectron2 or MMDetection checkpoint into this library's format",
    "convert-data": "convert annotations of other tools and datasets (see --from) into COCO instance JSON",
    "split-data": "split a COCO JSON into train / val (/ test) files, stratified by class, groups kept whole",
    "merge-data": "merge COCO JSON files: classes matched by name, ids renumbered, file names made relative "
                  "to one root",
    "show-data": "draw a COCO dataset's ground truth and summarise it (classes, sizes, crowd, skipped)",
    "export": "export a checkpoint: the whole model as ONNX, or the feature extractor as .pt2",
    "benchmark": "time inference of a checkpoint",
    "serve": "serve a model over HTTP: POST /predict, GET /health and a web page at /",
    "quantize": "INT8 post-training quantization of a checkpoint (CPU), calibrated on a few images",
}


def _module(name: str):
    return importlib.import_module(f"maskrcnn.commands.{name.replace('-', '_')}")  # show-data: show_data


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors add a hint when an argument that reads as an option is an
    existing file (``-photo.jpg``: argparse takes it for an unknown option and then misses the images)."""

    def __init__(self, *args, dash_files: tuple = (), raise_errors: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.dash_files = tuple(dash_files)
        self.raise_errors = raise_errors  # a ValueError instead of usage + exit (maskrcnn.train)

    def error(self, message: str):
        # Only where the file is the cause: named as unrecognized, or missed as a required argument
        # (a bad --threads value with "-photo.png" among the images needs no hint).
        named = [n for n in self.dash_files if n in message.split()]
        if named or (self.dash_files and "required" in message):
            name = (named or self.dash_files)[0]
            message += (f" ({name} is a file, read as an option since it starts with '-': pass it after "
                        f"'--' or as ./{name})")
        if self.raise_errors:
            raise ValueError(f"{self.prog}: error: {message}")
        super().error(message)


def _dash_files(argv: list) -> tuple:
    """Arguments that start with '-' and name an existing file (in the working folder, as given); those
    after '--' are positional already."""
    before = argv[:argv.index("--")] if "--" in argv else argv
    return tuple(a for a in before if a.startswith("-") and a != "-" and os.path.isfile(a))


SET_OPTION = "--set"  # the config overrides of every command that has them (KEY=VALUE ...)


def split_set_values(argv: list) -> list:
    """``argv`` with each ``--set`` value that holds '=' given as ``--set=KEY=VALUE`` (one value: argparse
    takes no more after ``=``), so that a token after them without '=' is no ``--set`` value: ``["--set",
    "a=1", "b=2", "x.png"]`` -> ``["--set=a=1", "--set=b=2", "x.png"]``. A ``--set`` followed by no
    KEY=VALUE stays as it is (argparse's "expected at least one argument", or the value's own error);
    tokens after ``--`` are left alone."""
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return out + list(argv[i:])
        i += 1
        if token != SET_OPTION or i == len(argv) or not _is_override(argv[i]):
            out.append(token)
            continue
        while i < len(argv) and _is_override(argv[i]):
            value, i = _rejoined(argv, i)
            out.append(f"{SET_OPTION}={value}")
    return out


def _is_override(token: str) -> bool:
    return "=" in token and not token.startswith("-")  # "--device=cpu" is an option, not a KEY=VALUE


_CLOSERS = {"[": "]", "{": "}", "(": ")"}


def _still_open(text: str, stack: list):
    """The brackets still open after ``text`` (``stack``: those open before it, innermost last), quoted
    text skipped; None where a closer does not match its opener (no list the shell cut: leave it)."""
    stack, quote = list(stack), None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in "]})":
            if not stack or stack.pop() != ch:
                return None
    return stack


def _continues_value(token: str) -> bool:
    """Whether ``token`` may be the rest of a cut list: no '=' (another override) and no option ("-1]",
    "-0.5," are numbers, not options)."""
    number = token[1:2].isdigit() or (token[1:2] == "." and token[2:3].isdigit())
    return "=" not in token and (not token.startswith("-") or number)


def _rejoined(argv: list, i: int) -> tuple:
    """(the override at ``argv[i]``, the index after it). A value that starts a list, mapping or tuple
    (``k=[``, ``k={``, ``k=(``) left open, with the following tokens that close it, joined by spaces: an
    unquoted ``k=[1, 2]`` reaches argv as "k=[1," "2]". As it is when no later token closes it, a closer
    does not match, or a token on the way holds '=' or is an option."""
    value = argv[i].split("=", 1)[1]
    if value[:1] not in _CLOSERS:
        return argv[i], i + 1
    stack, joined, j = _still_open(value, []), argv[i], i + 1
    while stack and j < len(argv) and _continues_value(argv[j]):
        stack, joined, j = _still_open(argv[j], stack), f"{joined} {argv[j]}", j + 1
        if stack == []:
            return joined, j
    return argv[i], i + 1


def build_parser(argv: list, *, raise_errors: bool = False) -> argparse.ArgumentParser:
    """The parser of ``argv``'s command; ``raise_errors``: a usage error raises ``ValueError("maskrcnn
    COMMAND: error: ...")`` instead of printing the usage and exiting (for callers from Python)."""
    dash_files = _dash_files(argv)
    parser = _Parser(
        prog="maskrcnn", description="Mask R-CNN in pure PyTorch: train, evaluate, predict, convert.",
        dash_files=dash_files, raise_errors=raise_errors,
    )
    from maskrcnn import __version__

    parser.add_argument("--version", action="version", version=f"maskrcnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=functools.partial(_Parser, dash_files=dash_files,
                                                               raise_errors=raise_errors))
    wanted = next((a for a in argv if not a.startswith("-")), None)
    parser.command_parsers = {}
    for name in COMMANDS:
        p = parser.command_parsers[name] = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        if name == wanted:  # only the command that runs needs its arguments (and its imports)
            _module(name).add_arguments(p)
    return parser


# The commands that run under ``torchrun --nproc_per_node P`` (sharing their work among the processes);
# the others refuse there in one line, before any work.
SEVERAL_PROCESSES = ("train",)


def main(argv: list = None) -> int:
    # A console or pipe that cannot encode a character (PYTHONIOENCODING=ascii, Windows cp1252 when
    # redirected) must not end a run on a class name "Ölfleck": what it cannot encode is written as an
    # escape (\xd6) instead. A file name that is not valid UTF-8 (b"caf\xe9.png", decoded by Python as
    # "caf\udce9.png") still goes out as its own bytes, as Python's surrogateescape (UTF-8 mode, the C
    # locale) writes it, so that it can be pasted back. The application's streams, so done here;
    # restored on return, so that a program calling main() keeps its own setting.
    restore = [_escape_unencodable(stream) for stream in (sys.stdout, sys.stderr)]
    try:
        # a reader that stops early (| head) stops the printing, not the work: the files are still
        # written and the status is the command's own (closed_stdout.py)
        with reader_gone_guard():
            return _main(argv)
    finally:
        for undo in reversed(restore):
            undo()


# The error handler _escape_unencodable gives the streams: surrogateescape's bytes, else a backslash escape.
ESCAPE_ERRORS = "maskrcnn.bytes_or_backslash"


def _bytes_or_backslash(error: UnicodeError):
    """Encoding error handler: a U+DC80..U+DCFF surrogate (a byte that was not valid in the name it came
    from, as ``surrogateescape`` decoded it) back as that byte; any other character as ``\\xNN`` /
    ``\\uNNNN`` / ``\\UNNNNNNNN`` (a surrogate too, in UTF-16 / UTF-32). One character per call: the
    codec calls again for the next."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    code = ord(error.object[error.start])
    if 0xDC80 <= code <= 0xDCFF and _ascii_compatible(error.encoding):
        return bytes([code - 0xDC00]), error.start + 1
    return error.object[error.start].encode("ascii", "backslashreplace").decode("ascii"), error.start + 1


@functools.cache
def _ascii_compatible(encoding: str) -> bool:
    # a byte alone is a byte of the output only where ASCII is one byte (UTF-8, cp1252, latin-1, ascii);
    # UTF-16 / UTF-32 get the escape (their codecs refuse a lone byte, as surrogateescape fails there)
    try:
        return "a".encode(encoding) == b"a"
    except (LookupError, UnicodeError):
        return False


def _escape_unencodable(stream):
    """Make ``stream`` write what it cannot encode as ``_bytes_or_backslash`` does; returns the undo (a
    no-op for a stream without ``reconfigure``: a StringIO, a program's own writer). A stream already
    set to write escapes or to replace (``backslashreplace``, ``replace``, ``xmlcharrefreplace``...) is
    left as it is: only ``strict`` (a crash) and ``surrogateescape`` (a crash on "Ölfleck" under an
    ASCII locale) are changed, and both keep writing what they wrote before."""
    reconfigure, errors = getattr(stream, "reconfigure", None), getattr(stream, "errors", None)
    if reconfigure is None or errors not in ("strict", "surrogateescape"):
        return lambda: None
    try:
        codecs.lookup_error(ESCAPE_ERRORS)
    except LookupError:
        codecs.register_error(ESCAPE_ERRORS, _bytes_or_backslash)
    try:
        reconfigure(errors=ESCAPE_ERRORS)
    except (ValueError, OSError, TypeError, LookupError):  # a closed or detached stream: leave it as it is
        return lambda: None

    def undo():
        try:
            reconfigure(errors=errors)
        except (ValueError, OSError, TypeError):
            pass
    return undo


def _main(argv: list = None) -> int:
    argv = split_set_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser: its usage, not the top level's "maskrcnn COMMAND ..."
        from maskrcnn.commands.quantize import calib_glob_hint  # quantize's, predict's and eval's option

        (parser.command_parsers.get(args.command) or parser).error(
            f"unrecognized arguments: {' '.join(unknown)}"
            + calib_glob_hint(argv, unknown))
    args.argv = argv  # the words as given: predict tells a shell pattern's expansion by their order
    if not args.command:
        parser.print_help()
        return 2
    rank, world_size, local_rank = 0, 1, 0
    try:  # torchrun's (torch imported only when one of its variables is set)
        if any(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
            from maskrcnn.engine.distributed import env_world

            rank, world_size, local_rank = env_world()
    except ValueError as e:  # a partial torchrun environment: before any work (nothing written)
        if args.command in SEVERAL_PROCESSES:
            print(f"maskrcnn {args.command}: error: {e}", file=sys.stderr)
            return 1
        # a one-process command runs as one process whatever is left set (LOCAL_RANK too: it is not read
        # again, an empty or stray value must not turn an error message into a traceback)
        rank, world_size, local_rank = 0, 1, 0
    if world_size > 1 and args.command not in SEVERAL_PROCESSES:  # before any work, said once
        if rank == 0:
            print(f"maskrcnn {args.command} runs in one process; start it without torchrun (each of the "
                  f"{world_size} processes would do all the work and write the same files; only maskrcnn "
                  f"{' / '.join(SEVERAL_PROCESSES)} shares its work among processes)", file=sys.stderr)
        return 2
    # PIL's decompression-bomb limit is process-wide: this entry point owns the process, so it is set
    # here, once, from MASKRCNN_MAX_IMAGE_PIXELS (a bad value: one configuration error, not one per
    # image), and restored on return for a program calling main().
    from PIL import Image

    from maskrcnn.data.images import apply_max_pixels_env

    saved_limit = Image.MAX_IMAGE_PIXELS
    try:
        apply_max_pixels_env()
    except ValueError as e:
        print(f"maskrcnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    try:
        with one_line_warnings(args.command):
            return _run(args, rank=rank, world_size=world_size, local_rank=local_rank)
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit


@contextlib.contextmanager
def one_line_warnings(command: str):
    """Warnings (skipped records, multi-frame images) as one line each, "maskrcnn COMMAND: warning: ...",
    beside the command's printed notes, not with a file:line and a line of our source; the format is
    restored on exit, so that a program calling ``main()`` or ``maskrcnn.train`` keeps its own."""
    formatwarning = warnings.formatwarning
    warnings.formatwarning = functools.partial(_format_warning, command)
    try:
        yield
    finally:
        warnings.formatwarning = formatwarning


def _run(args, *, rank: int, world_size: int, local_rank: int = 0) -> int:
    try:
        return int(_module(args.command).run(args) or 0)
    except KeyboardInterrupt as e:
        from maskrcnn.stop_signals import exit_status, signal_name

        signum = getattr(e, "signum", None)  # stop_signals.StoppedBySignal: a SIGTERM handled as Ctrl-C
        what = "interrupted" if signum is None else f"stopped by {signal_name(signum)}"
        print(f"{what}{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130 if signum is None else exit_status(signum)
    except (OSError, ValueError, KeyError, RuntimeError, MemoryError) as e:
        if getattr(args, "debug", False):
            raise
        from maskrcnn.engine.distributed import error_line, rank0_setup_error

        # under torchrun: a message every process shares once (rank 0), a rank's own error named by rank
        # (and a setup error from each other machine's first process: its disk may lack a file, and from
        # any process whose setup error rank 0 did not report alike: nobody else printed it)
        message = _one_line(e, args)
        line = error_line(e, message, rank=rank, world_size=world_size,
                          local_rank=local_rank,
                          rank0_message=rank0_setup_error(e, message) if world_size > 1 else None)
        if line is not None:
            print(f"maskrcnn {args.command}: error: {line}", file=sys.stderr)
        if world_size > 1:  # the group was kept for the line above; leave it as a finished run does
            from maskrcnn.engine.distributed import cleanup

            cleanup(wait_for_peers=False)
        return 1


def _format_warning(command: str, message, category=None, filename: str = "", *_args, **_kw) -> str:
    """One line: ours "maskrcnn train: warning: ...", another library's "warning (torch): ..." (named by
    the file that raised it: PyTorch's DDP and autograd notes must not read as this tool's)."""
    source = warning_source(filename)
    if source in (None, __package__):
        return f"maskrcnn {command}: warning: {message}\n"
    return f"warning ({source}): {message}\n"


def warning_source(filename: str):
    """The top-level package (or module) a warning's file belongs to, from ``sys.path`` (``torch`` for
    .../site-packages/torch/autograd/graph.py); None for a file outside it (``<frozen ...>``, a script)."""
    if not filename or filename.startswith("<"):
        return None
    path = os.path.abspath(filename)
    if path.startswith(os.path.dirname(os.path.abspath(__file__)) + os.sep):
        return __package__
    for entry in sorted({os.path.abspath(p) for p in sys.path}, key=len, reverse=True):
        if path.startswith(entry.rstrip(os.sep) + os.sep):
            first = path[len(entry.rstrip(os.sep)) + 1:].split(os.sep)[0]
            return first[:-3] if first.endswith(".py") else first
    return None


def _one_line(e: BaseException, args=None) -> str:
    """The message a user needs: the path and the reason for file-system errors (whose str() is
    '[Errno 21] Is a directory: ...'), the key for a KeyError, the text otherwise; for an error raised in a
    DataLoader worker, the original error's message rather than the worker's traceback. ``args``: the
    command's parsed arguments, for a hint naming only options it has."""
    worker_message = _worker_error_message(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
    if worker_message is not None:
        return worker_message
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, MemoryError):
        return f"out of memory{': ' + str(e) if str(e) else ''} ({_memory_hint(args)})"
    if isinstance(e, OSError) and e.strerror:  # the library's own FileNotFoundErrors carry a message
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror.lower()}"
    return str(e)


def _memory_hint(args) -> str:
    """What to try after running out of memory: --batch-size only for a command that has it (show-data
    has none: the hint named an option it refuses)."""
    if getattr(args, "batch_size", 1) not in (None, 1):
        return "try smaller images or --batch-size 1"
    return "try smaller images"


_WORKER_HEADER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*): ?(.*)$")


def _worker_error_message(text: str):
    """The original error's message from torch's re-raised worker error ('Caught RuntimeError in
    DataLoader worker process 0.\nOriginal Traceback ...' ending in 'RuntimeError: the message'); None
    for any other text. The worker formats the traceback as text, so that text is all there is: the
    message is what follows the last traceback's first unindented line's 'Type: '."""
    if not _WORKER_HEADER.match(text):
        return None
    lines = text.rstrip("\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith(("Original Traceback", "Traceback ("))]
    after = lines[starts[-1] + 1:]
    first = next((i for i, line in enumerate(after) if line and not line.startswith(" ")), None)
    if first is None:
        return None
    match = _EXCEPTION_LINE.match(after[first])
    if match is None:
        return None
    kind, message = match.groups()
    message = " ".join([message, *(line.strip() for line in after[first + 1:] if line.strip())]).strip()
    if kind == "KeyError" and len(message) > 1 and message[0] == message[-1] and message[0] in "'\"":
        message = message[1:-1]
    return f"{message or kind} (in a data loader worker)"


def console_entry() -> int:
    """The ``maskrcnn`` program (and ``python -m maskrcnn.cli``): a process of its own, so glibc's
    allocator is set to reuse freed memory first (``cpu_memory``: 15-30% of an inference or a training
    step on the CPU), then ``main``. A program calling ``main()`` keeps its own allocator settings."""
    from maskrcnn.cpu_memory import reuse_freed_memory
    from maskrcnn.ops.gemm_rates import check_pin

    try:
        check_pin()
        reuse_freed_memory()
    except ValueError as e:  # a bad MASKRCNN_MATMUL / MASKRCNN_MALLOC: said before any work
        # named by the command, as a bad MASKRCNN_MAX_IMAGE_PIXELS is ("maskrcnn predict: error: ...")
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
        print(f"maskrcnn{' ' + command if command in COMMANDS else ''}: error: {e}", file=sys.stderr)
        return 2
    return main()


if __name__ == "__main__":
    sys.exit(console_entry())
