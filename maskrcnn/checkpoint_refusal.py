"""Why a weights file could not be opened, in one line naming the file: the words every loader of ours
(``checkpoint.load_checkpoint``, the torchvision / detectron2 / MMDetection readers) uses.

    unreadable_message(path, error) -> "PATH is empty (0 bytes)"
                                     | "PATH asks to run code (global posix.system) when unpickled; refused"
                                     | "PATH is a plain pickle, not a PyTorch file"
                                     | "PATH is a truncated or corrupt pickle (...)[; ...detectron2...]"
                                     | "PATH is a corrupt pickle: damaged at byte N of SIZE (...)[; ...]"
                                     | "PATH is a torch.export program (...), not a checkpoint; ..."
                                     | "PATH is a TorchScript archive, not weights; ..."
                                     | "PATH is a zip archive without a PyTorch data.pkl, ..."
                                     | "PATH is truncated or corrupt (REASON)"
                                     | "PATH is not a PyTorch file (neither its zip format nor a pickle; ...)"
                                     | "PATH is a safetensors file, not a PyTorch one"
                                     | "PATH: refused to load (REASON)"
    not_weights_message(path) -> one of the lines above for a file that is no weights file | None

The loaders never run code from a file (``torch.load(weights_only=True)`` or a restricted unpickler); this
module only words their refusal. torch's own text spans a screen, names pickle opcodes ("Unsupported
operand 149") and advises re-running with ``weights_only=False``, which would run the file's code: none
of that is passed on. Which global a file asks for is read by ``pickle_globals``, a static walk over the
pickle's opcodes (``pickletools.genops``): nothing is unpickled, nothing imported.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import struct
import zipfile
from typing import Optional

# Globals a file of tensors, arrays and plain containers needs: rebuilding any of them runs no code of
# the file's choosing. Everything else (os.system, builtins.exec, a class of another library) does.
_DATA_GLOBALS = {
    "collections.OrderedDict", "_codecs.encode", "argparse.Namespace",
    "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.slice", "builtins.complex",
    "torch.Size", "torch.device", "torch.Tensor", "torch.nn.parameter.Parameter",
    "torch.serialization._get_layout", "torch._tensor._rebuild_from_type_v2",
    "torch.storage.UntypedStorage", "torch.storage.TypedStorage",
    "numpy.ndarray", "numpy.dtype",
}
_DATA_PATTERNS = (
    re.compile(r"^torch\._utils\._rebuild_\w+$"),
    re.compile(r"^torch\.\w*Storage$"),
    re.compile(r"^torch\.(u?int\d+|float\d*|bfloat16|half|double|long|bool|complex\d+|qu?int\d+\w*)$"),
    re.compile(r"^numpy\.(_core|core)\.(multiarray\.(_reconstruct|scalar)|numeric\._frombuffer)$"),
    re.compile(r"^numpy\.dtypes\.\w+DType$"),
)
# Modules whose globals are plainly an attack, not another library's training state: no hint to convert
_ATTACK_MODULES = {"os", "posix", "nt", "subprocess", "builtins", "sys", "runpy", "importlib", "socket",
                   "shutil", "pty", "code", "codeop", "webbrowser", "pickle", "_pickle", "marshal", "types",
                   "ctypes", "operator", "functools", "pdb", "timeit", "asyncio", "multiprocessing",
                   "urllib", "http", "requests", "platform", "eval", "exec"}

_STRING_OPS = {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING",
               "SHORT_BINSTRING"}
_NO_PUSH_OPS = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "MARK"}
_MAX_PICKLES = 8  # a legacy torch file is a few pickles (magic number, header, data) then raw storages


# Python 2 names a protocol-2 pickle (torch.save's default) writes, as pickle's fix_imports reads them
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _global_name(module, attr) -> str:
    if not module or not attr:
        return "?"
    return f"{_PY2_MODULES.get(module, module)}.{attr}"


def is_data_global(name: str) -> bool:
    """Whether rebuilding the global ``module.name`` runs no code of the file's choosing."""
    return name in _DATA_GLOBALS or any(p.match(name) for p in _DATA_PATTERNS)


# What a pickle may push before the class its own object is built from: nothing (GLOBAL), the two strings
# of its name (STACK_GLOBAL); legacy torch files (``_use_new_zipfile_serialization=False``) record a
# module's class as the persistent id ("module", class, source file, source): MARK and "module" first
_BEFORE_OUTERMOST = {"GLOBAL": ((), ("MARK", "module")),
                     "STACK_GLOBAL": (("str", "str"), ("MARK", "module", "str", "str"))}


def _globals_of_stream(f, found: list, outermost: list, called: Optional[set] = None) -> None:
    """Append the globals of the pickles read from ``f`` one after another (stops at the first error:
    a legacy torch file's raw storage bytes follow its pickles) to ``found``, and to ``outermost`` the
    global each pickle's own object is built from (``torch.save(model)``: the model's class), when it is
    one: the first thing a pickle pushes is the bottom of its stack, the object it returns, and a class
    pushed there (``_BEFORE_OUTERMOST``) is what that object is an instance of. A dict or list of other
    things (a checkpoint holding a pickled model as one entry) has none. ``called``: gets the globals
    REDUCE calls (a function run with the file's arguments), as opposed to classes only instantiated
    (NEWOBJ, OBJ, INST): the stack is followed by each op's pickletools signature."""
    for _ in range(_MAX_PICKLES):
        # what each op put on the stack: a string, ("global", name), or None for anything else
        stack: list = []
        marks: list = []  # stack heights at each MARK
        memo: dict = {}
        before: Optional[list] = []  # the ops before the first global (None once anything else came)
        try:
            for op, arg, _pos in pickletools.genops(f):
                name = op.name
                if name == "REDUCE" and called is not None and len(stack) >= 2 \
                        and isinstance(stack[-2], tuple):
                    called.add(stack[-2][1])
                if name in ("GLOBAL", "INST", "STACK_GLOBAL"):
                    if name == "STACK_GLOBAL":
                        found.append(_global_name(*stack[-2:]) if len(stack) >= 2 and all(
                            isinstance(x, str) for x in stack[-2:]) else "?")
                    else:
                        found.append(_global_name(*(str(arg).split(" ", 1) + [None])[:2]))
                    if before is not None and tuple(before) in _BEFORE_OUTERMOST.get(name, ()):
                        outermost.append(found[-1])
                    before = None
                    _pop(stack, marks, op)
                    stack.append(("global", found[-1]) if name != "INST" else None)
                elif name == "MEMOIZE":
                    memo[len(memo)] = stack[-1] if stack else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = stack[-1] if stack else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    before = None
                    stack.append(memo.get(arg))
                elif name in _STRING_OPS:
                    if before is not None:
                        before.append("module" if before == ["MARK"] and arg == "module" else "str")
                    stack.append(arg if isinstance(arg, str) else None)
                elif name == "MARK":
                    if before is not None:
                        before.append("MARK")
                    marks.append(len(stack))
                elif name == "DUP":
                    stack.append(stack[-1] if stack else None)
                elif name not in _NO_PUSH_OPS:
                    before = None
                    _pop(stack, marks, op)
                    stack.extend(None for x in op.stack_after if x is not pickletools.markobject)
        except Exception:  # noqa: BLE001 - the end of the pickles or a damaged file: what was read stands
            return


def _pop(stack: list, marks: list, op) -> None:
    """Take ``op``'s operands off ``stack`` (``op.stack_before``: through the last MARK when it has one)."""
    taken = op.stack_before
    if pickletools.markobject in taken:
        del stack[marks.pop() if marks else 0:]
        below = taken.index(pickletools.markobject)
    else:
        below = len(taken)
    if below:
        del stack[max(0, len(stack) - below):]


def _pickle_walk(path) -> tuple:
    """(globals, outermost, called) of ``path``'s pickles (``_globals_of_stream``), read without
    unpickling: a PyTorch zip archive's ``*.pkl`` members, or a plain / legacy-torch pickle stream."""
    found: list = []
    outermost: list = []
    called: set = set()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    if member.endswith(".pkl"):
                        with z.open(member) as f:
                            _globals_of_stream(f, found, outermost, called)
        else:
            with open(path, "rb") as f:
                _globals_of_stream(f, found, outermost, called)
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        pass
    return found, outermost, called


def pickle_globals(path) -> list:
    """The globals (``module.name``) the pickles of ``path`` ask for, in order, read without unpickling:
    a PyTorch zip archive's ``*.pkl`` members, or a plain / legacy-torch pickle stream."""
    return _pickle_walk(path)[0]


def code_global(path) -> Optional[str]:
    """The first global of ``path`` that would run code when unpickled; None when it asks for none."""
    return next((g for g in pickle_globals(path) if not is_data_global(g)), None)


def _torch_reason(error: Exception) -> str:
    """torch's refusal without its advice: the first sentence that says what is wrong with the file."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    noise = ("weights_only", "PyTorch 2.6", "Do it only", "documentation", "internal miniz error",
             "high likelihood", "This can happen", "torch.load")
    kept = [s for s in sentences if not any(n in s for n in noise)]
    reason = (kept[0] if kept else "").rstrip(".")
    return reason or type(error).__name__


def is_plain_pickle(path) -> bool:
    """A pickle stream that is neither a PyTorch zip archive nor a legacy torch file (a detectron2
    ``.pkl``): what ``torch.load`` calls "Unsupported operand" or "Invalid magic number"."""
    from maskrcnn.safetensors_io import is_safetensors

    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    # (a safetensors header length may start with the byte 0x80 too)
    if zipfile.is_zipfile(path) or not head.startswith(b"\x80") or is_safetensors(path):
        return False
    # a legacy torch file starts with a pickled magic number: protocol 2, a LONG1 (0x8a) int
    return head != b"\x80\x02" or _first_op(path) != "LONG1"


# strings of a damaged pickle's readable start kept to tell whose file it was (its first keys)
_MAX_STRINGS = 200


def damaged_pickle_message(path) -> Optional[str]:
    """The refusal of a plain pickle that does not read to its end (a download or copy cut off, bytes
    damaged), None for one whose opcodes reach its STOP. Read statically (``pickletools.genops``: nothing
    unpickled). The strings of its readable start say whose file it was when they are detectron2's keys
    (``interop.detectron2.is_detectron2``): the one plain-pickle weights format of the libraries read here."""
    strings: list = []
    fault = _pickle_fault(path, strings)
    if fault is None:
        return None
    reason, at_end, at, length_damage = fault
    size = os.path.getsize(path)
    if at_end and length_damage and length_damage[0]:  # out of bytes because a length field asks too much
        what = f"a corrupt pickle: damaged at byte {at} of {size} ({length_damage[1]})"
    elif at_end and length_damage:  # a cut or a damaged length: nothing in the file tells them apart
        what = (f"a truncated or corrupt pickle (its data stops at byte {size}, before the pickle's end: cut "
                f"off, or a damaged length field: {length_damage[1]})")
    elif at_end:  # the reader ran out of bytes mid-opcode (whatever genops' words for that opcode's kind)
        what = f"a truncated or corrupt pickle (its data stops at byte {size}, before the pickle's end: a " \
               "cut-off download or copy)"
    else:  # unreadable bytes with more file after them: damage, not a cut; genops' words only in brackets
        what = (f"a corrupt pickle: damaged at byte {at} of {size} (no pickle data there; pickletools: "
                f"{reason})")
    from maskrcnn.interop.detectron2 import is_detectron2

    whose = ""
    if is_detectron2(strings):
        first = next(s for s in strings if is_detectron2([s]))
        whose = (f"; what can be read looks like a detectron2 checkpoint (keys like {first}): get the whole "
                 "file again, then maskrcnn convert --from detectron2 reads it")
    return f"{path} is {what}{whose}"


def _pickle_fault(path, strings: list) -> Optional[tuple]:
    """(why the pickle stream of ``path`` does not read to its STOP, in genops' words; whether the reading
    had used up the file when it failed: a cut, not damage; the offset of the opcode that could not be
    read; ``_length_damage``'s verdict when that opcode's length field ran it out of the file), None when
    it reads to its STOP or the file cannot be opened; the first ``_MAX_STRINGS`` strings read are
    appended to ``strings``."""
    try:
        raw = open(path, "rb")
    except OSError:
        return None
    with raw:
        size = os.fstat(raw.fileno()).st_size
        f = _Capped(raw, size)
        at = 0  # where the next opcode starts: genops' error comes before it yields the opcode it failed on
        frame = None  # (start, end) of the last FRAME (protocol 4+): the bytes it says it holds
        try:
            for op, arg, _pos in pickletools.genops(f):
                if op.name in _STRING_OPS and isinstance(arg, str) and len(strings) < _MAX_STRINGS:
                    strings.append(arg)
                if op.name == "STOP":
                    return None
                at = f.tell()
                if op.name == "FRAME":
                    frame = (at, at + arg)
        except MemoryError:  # not the file's fault: said as what it is
            raise
        except OSError:
            return None
        except Exception as e:  # noqa: BLE001 - genops' ValueError for a cut or unknown opcode, whatever it is
            at_end = f.tell() >= size
            return (str(e) or type(e).__name__, at_end, at,
                    _length_damage(f, at, size, frame) if at_end else None)
    # (genops raises first: a stream never ends otherwise)
    return "pickle exhausted before seeing STOP", True, at, None


# how many bytes hold the length of each length-prefixed argument (pickletools' codes for them)
_LENGTH_BYTES = {pickletools.TAKEN_FROM_ARGUMENT1: ("<B", 1), pickletools.TAKEN_FROM_ARGUMENT4: ("<i", 4),
                 pickletools.TAKEN_FROM_ARGUMENT4U: ("<I", 4), pickletools.TAKEN_FROM_ARGUMENT8U: ("<Q", 8)}


class _Capped:
    """A file whose reads ask for no more than it holds: genops reads a length-prefixed argument with
    ``f.read(length)``, which allocates the whole length first, so a damaged 8-byte length (2**50) was a
    MemoryError, not the short read a damaged or cut file is."""

    def __init__(self, f, size: int):
        self._f, self._size = f, size

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._size - self._f.tell())
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self._f.readline()

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, *args) -> int:
        return self._f.seek(*args)


# no checkpoint's string or bytes argument is this long: a length field asking for more is damaged
_MAX_ARGUMENT = 2 ** 40


def _length_damage(f, at: int, size: int, frame) -> Optional[tuple]:
    """``(certain, words)`` for the opcode at ``at`` of a file of ``size`` bytes whose length field ran
    the reader out of the file, or None when nothing points at that field (a cut, then). Certain damage:
    it asks for more than (1) the frame it lies in, a frame whole in the file (protocol 4+: a cut cannot
    leave a frame whole and its contents short), or (2) a terabyte. Either (certain False): it asks for
    more than the whole file, which ends with STOP as a whole pickle does; a cut inside a long text ends
    on that byte (".") as often, so that file is said to be one or the other."""
    f.seek(at)
    op = pickletools.code2op.get(f.read(1).decode("latin-1"))
    form = _LENGTH_BYTES.get(op.arg.n) if op is not None and op.arg is not None else None
    if form is None:
        return None
    field = f.read(form[1])
    if len(field) < form[1]:  # the length field itself cut: a cut
        return None
    asked = struct.unpack(form[0], field)[0]
    end = at + 1 + form[1] + asked
    if frame is not None and frame[0] <= at < frame[1] <= size and end > frame[1]:
        return True, (f"its {op.name} asks for {asked} bytes, more than its frame holds, and the frame is "
                      "whole in the file: a damaged length field, not a cut")
    if asked > _MAX_ARGUMENT:
        return True, (f"its {op.name} asks for {asked} bytes, more than a terabyte, which no checkpoint's "
                      "string holds: a damaged length field, not a cut")
    f.seek(size - 1)
    if asked > size and f.read(1) == pickle.STOP:
        return False, (f"its {op.name} at byte {at} asks for {asked} bytes, more than the whole file holds, "
                       "and the file ends with the byte a whole pickle ends with")
    return None


def _first_op(path) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            for op, _arg, _pos in pickletools.genops(f):
                if op.name != "PROTO":
                    return op.name
    except Exception:  # noqa: BLE001
        return None
    return None


def _zip_without_data(path) -> bool:
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            return not any(m.endswith("data.pkl") for m in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def unreadable_message(path, error: Optional[Exception] = None) -> str:
    """One line naming ``path`` saying why it could not be read (module docstring); ``error`` is what the
    loader raised (torch's refusal, an EOFError, a zip error), used only when the file says nothing
    plainer."""
    return describe_unreadable(path, error)[1]


def describe_unreadable(path, error: Optional[Exception] = None) -> tuple:
    """``(kind, message)``: kind is empty | program (a torch.export / TorchScript archive) | attack (code
    from os, builtins, ...) | model (a whole pickled model, ``is_whole_model``) | code (another
    library's objects, or any other code) | pickle (a plain pickle) | corrupt | object (a numpy array of
    dtype object) | refused; message as ``unreadable_message``."""
    return describe_refusal(path, error)[:2]


def _escaping_entries(path) -> list:
    """The names of a zip archive's entries that would land outside a folder it is extracted into (an
    absolute path, a drive, a '..' part); empty for a file that is not a readable zip."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return []
    return [n for n in names if n.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", n)
            or ".." in re.split(r"[/\\]", n)]


def describe_refusal(path, error: Optional[Exception] = None) -> tuple:
    """``(kind, message, global)``: ``describe_unreadable``'s, with the first global of the file that
    would run code (``code_global``; None when it asks for none or was not read), from the one reading
    of its pickles, for callers that word the refusal further."""
    path = str(path)
    try:
        size = os.path.getsize(path)
    except OSError:
        size = None
    if size == 0:
        return "empty", f"{path} is empty (0 bytes)", None
    from maskrcnn.safe_load import ObjectArrayRefused, ObjectDtypeError

    if isinstance(error, ObjectArrayRefused):  # its message names the file already
        return "object", str(error), None
    if isinstance(error, ObjectDtypeError):
        return "object", f"{path}: {error}", None
    not_torch = not_torch_file_message(path)
    if not_torch is not None:
        return "corrupt", not_torch, None
    from maskrcnn.safe_load import program_archive, program_archive_message

    program = program_archive(path)  # its pickles name __torch__ code: said for what it is
    if program is not None:
        return "program", program_archive_message(path, program), None
    names, outermost, called = _pickle_walk(path)
    bad = next((g for g in names if not is_data_global(g)), None)  # (code_global, the globals read once)
    if bad is not None:
        refused = f"{path} asks to run code (global {bad}) when unpickled; refused"
        if is_whole_model(names, outermost, called):
            return "model", f"{refused}: {whole_model_advice(path, bad)}", bad
        own = own_model_class(names, outermost, called)
        if own is not None:  # the user's own class: its weights, where its code is (no "load it" here)
            return "model", (f"{refused}: a whole pickled model of the class {own} (torch.save(model)), not "
                             "its weights: where that class is defined, save its weights with "
                             "torch.save(model.state_dict(), 'weights.pth'), then, for a torchvision, "
                             "detectron2 or MMDetection R-CNN, maskrcnn convert --from "
                             "{torchvision,detectron2,mmdetection} weights.pth OUT.pth"), bad
        kind = "attack" if is_attack_global(bad) else "code"
        return kind, refused, bad
    if is_plain_pickle(path):  # (torch's words depend on the protocol: an operand, a magic number, a global)
        damaged = damaged_pickle_message(path)  # a cut-off .pkl is no "plain pickle" to convert: said so
        if damaged is not None:
            return "corrupt", damaged, None
        return "pickle", f"{path} is a plain pickle, not a PyTorch file", None
    if _zip_without_data(path):
        return "corrupt", f"{path} is a zip archive without a PyTorch data.pkl, not a PyTorch file", None
    escaping = _escaping_entries(path)
    if escaping:  # torch refuses these with an internal assertion that reads as damage
        shown = ", ".join(repr(n[:80]) for n in escaping[:3]) + (" ..." if len(escaping) > 3 else "")
        return "corrupt", (f"{path} is a zip archive with entries leading outside it ({shown}: '..' or an "
                           "absolute path), not a PyTorch file; refused, nothing extracted"), None
    if error is None:
        return "refused", f"{path}: refused to load", None
    if isinstance(error, (EOFError, zipfile.BadZipFile)) or any(
            w in str(error) for w in ("truncated", "central directory", "zip archive", "Ran out of input",
                                      "not in a subdirectory", "PytorchStreamReader", "magic number")):
        return "corrupt", f"{path} is truncated or corrupt ({_torch_reason(error)})", None
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if unsupported:  # a global the static walk took for data, yet torch's unpickler does not rebuild
        return "code", (f"{path} asks for the global {unsupported.group(1)} when unpickled, which a "
                        "weights-only load does not rebuild; refused"), None
    return "refused", f"{path}: refused to load ({_torch_reason(error)})", None


# the libraries whose model classes a whole pickled detector names first -> (their name, convert's --from)
_MODEL_LIBRARIES = {"torchvision": ("torchvision", "torchvision"), "detectron2": ("detectron2", "detectron2"),
                    "mmdet": ("MMDetection", "mmdetection")}


# The libraries a whole pickled detector's classes come from (torch.nn's layers, the detector libraries
# and their frameworks, ours): a file whose every code global is one of theirs, and whose object is one of
# their classes, is a model saved whole; any other global (torch.hub.load, os.system, a script's own
# function) makes it code, refused without advice to load it
_MODEL_MODULES = ("torch.nn.", "torchvision.", "detectron2.", "mmdet.", "mmcv.", "mmengine.", "maskrcnn.")


def _is_model_global(name: str) -> bool:
    return name.startswith(_MODEL_MODULES)


def is_whole_model(names: list, outermost: list, called=()) -> bool:
    """Whether a file's globals (``names``, ``pickle_globals``) are a whole pickled model's
    (``torch.save(model)``): every global that runs code is a class of torch.nn or of a detector library
    (``_MODEL_MODULES``), and the file's object itself is one of them (``outermost``: the classes the
    pickles' own objects are built from, ``_globals_of_stream``), not a checkpoint dict that holds a model
    (an ``AveragedModel``) beside its state dict. Only such a file is advised to be loaded, by whoever
    trusts it. ``called``: the globals REDUCE calls (``_globals_of_stream``): a model's classes are only
    instantiated, so one of them called (``maskrcnn.cli.main`` run with the file's arguments) is code."""
    code = [g for g in names if not is_data_global(g)]  # (builtins.set is data, builtins.exec an attack)
    return bool(code) and all(_is_model_global(g) and g not in called for g in code) and \
        any(_is_model_global(g) for g in outermost)


def own_model_class(names: list, outermost: list, called) -> Optional[str]:
    """The class of a whole pickled model of the user's own ``nn.Module`` subclass
    (``torch.save(MyNet())``): the file's object is of a class outside ``_MODEL_MODULES`` (and no
    attack), its parts are torch.nn's, and no code global is called (REDUCE), only instantiated.
    None for anything else. It is advised to save its weights, never to load the file."""
    code = [g for g in names if not is_data_global(g)]
    own = [g for g in outermost if g in code and not _is_model_global(g)]
    if not own or is_attack_global(own[0]) or any(g in called for g in code):
        return None
    if not all(_is_model_global(g) or g in own for g in code) or \
            not any(g.startswith("torch.nn.") for g in code):
        return None
    return own[0]


def whole_model_advice(path, first: str) -> str:
    """What to do with ``path``, a whole pickled model whose first class is ``first``: its weights saved
    alone, then the ``maskrcnn convert --from X`` of its library (or, for one of ours, a checkpoint)."""
    root = first.split(".", 1)[0]
    library, flag = _MODEL_LIBRARIES.get(root, (None, None))
    where = "this library" if root == "maskrcnn" else library or "its library"
    load = (f"load it where {where} is installed (torch.load('{path}', weights_only=False): only for a file "
            "you trust, it runs the file's code)")
    if root == "maskrcnn":
        return (f"a whole pickled model (torch.save(model)), not a checkpoint: {load}, then write one with "
                "maskrcnn.checkpoint.save_checkpoint(OUT, model_state=model.state_dict(), config=CONFIG, "
                "class_names=[...])")
    if library is None:
        then = ("then, for a torchvision, detectron2 or MMDetection R-CNN, maskrcnn convert --from "
                "{torchvision,detectron2,mmdetection} weights.pth OUT.pth")
    else:
        then = f"then maskrcnn convert --from {flag} weights.pth OUT.pth"
    what = f"a whole pickled {library} model" if library else "a whole pickled model"
    return (f"{what} (torch.save(model)), not its weights: {load}, save its weights with "
            f"torch.save(model.state_dict(), 'weights.pth'), {then}")


def not_torch_file_message(path) -> Optional[str]:
    """The refusal of a file that cannot be a PyTorch one by its first bytes (text, an image, random
    bytes), None for one that may be: ``torch.save`` writes a zip archive (``PK``) or, in its legacy
    format, a pickle (protocol marker 0x80). Checked before ``torch.load``, whose pickle reader takes
    text for opcodes and fails with a bare KeyError or IndexError."""
    from maskrcnn.safetensors_io import is_safetensors

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    if is_safetensors(path):  # (the readers of weights take it before this; a reader of torch files only)
        return f"{path} is a safetensors file, not a PyTorch one"
    if not head or head.startswith((b"PK", b"\x80")):
        return None
    return f"{path} is not a PyTorch file (neither its zip format nor a pickle; it starts with {head!r})"


def not_weights_message(path) -> Optional[str]:
    """The refusal of a file that holds no weights to load, said before ``torch.load`` sees it (which
    would fail obscurely, or warn and dispatch a TorchScript archive to ``torch.jit.load``): one not
    torch's by its first bytes (``not_torch_file_message``), or a ``.pt2`` / TorchScript program archive
    (``safe_load.program_archive``). None for a file that may hold weights."""
    from maskrcnn.safe_load import program_archive, program_archive_message

    not_torch = not_torch_file_message(path)
    if not_torch is not None:
        return not_torch
    program = program_archive(path)
    return None if program is None else program_archive_message(path, program)


def is_attack_global(name: str) -> bool:
    """Whether the global belongs to a module no checkpoint of any library would ask for (``os.system``,
    ``builtins.exec``): such a file gets no hint to convert it."""
    return name.split(".", 1)[0] in _ATTACK_MODULES
