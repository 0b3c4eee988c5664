"""Atomic file writes: a reader (or a crash) never sees half a file.

Every write goes to a temporary file in the target's folder (same file system, so the rename is
atomic), is flushed and fsynced, then ``os.replace``d over the target; the folder is fsynced too, so
the rename survives a power cut (POSIX; best effort elsewhere). A failed write removes its temporary
file and leaves the old target as it was. Temporary names start with a dot and end in ``.tmp``.
``atomic_write_all`` writes several files so: all temporary files first, then the renames, so one failed
write leaves all the old files (outputs that belong together, such as a dataset's parts).

A failed write (a full disk, a file-size limit) raises an OSError with the errno and strerror of the
failure, the target as its ``filename`` and "not written; the previous file is kept" (or "there was no
previous file") in its strerror: a full disk's write error names no file by itself, and the command's
one-line error must say which output it was. A process killed mid-write (SIGKILL, a power cut) leaves
its hidden ``.TARGET.<12 hex>.tmp``; the next successful write of TARGET removes such leftovers that are
older than the writing process and unchanged for 10 minutes (``remove_stale_temps``; each folder is
listed once per process). A target whose name is near the file system's limit (255 bytes) gets a
shortened temporary name (``fitting_prefix``): its start and a hash of the whole name; ``fitting_stem``
shortens an output's own name so (a video's results named after a long video name).

``check_output_dir`` / ``check_output_file`` say, before any work is done, that an output location
cannot be written (a file where a folder is wanted, a folder where a file is, a file among its
parents, an existing folder that refuses new files), in one line naming the option and the path;
``check_output_not_input`` that an output file names the same file as the command's input.

Used for checkpoints and ``last_checkpoint``, ``metrics.jsonl`` rewrites, curves, JSON reports and
datasets the commands write. (The weight download streams into its own temporary file: it cannot hold
the whole file in memory.)
"""

from __future__ import annotations

import contextlib
import errno as errno_module
import hashlib
import json
import os
import re
import secrets
import shutil
import stat as stat_module
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

__all__ = [
    "atomic_write_all", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_output_dir",
    "check_output_file", "check_output_not_input", "create_temp_file", "fitting_prefix", "fitting_stem",
    "folder_targets",
    "remove_stale_temps",
    "replace_durably", "stale_before", "temp_target", "write_error",
]

PathLike = Union[str, os.PathLike]

# No later than any temporary file this process creates (this module is imported before the first
# write): a temporary file last modified before it belongs to an earlier process.
PROCESS_START = time.time()


def create_temp_file(folder: PathLike, *, prefix: str, suffix: str) -> tuple:
    """A new, empty file in ``folder`` with a name no other file has: ``(fd open for writing, path)``.

    Unlike ``tempfile.mkstemp`` (mode 0600: only its owner may read it), the file is created with the
    mode any ordinary new file gets (0666 less the process's umask), since it is renamed into the
    user's result (a checkpoint, predictions.json, a video) that others on the machine (a group, a web
    server, a container's other user) may need to read."""
    folder = Path(folder)
    prefix = fitting_prefix(folder, prefix, suffix)
    for _ in range(100):
        path = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return fd, str(path)
    raise FileExistsError(f"{folder}: no free temporary name {prefix}*{suffix} after 100 tries")


def fitting_prefix(folder: PathLike, prefix: str, suffix: str) -> str:
    """``prefix`` shortened so that ``prefix + 12 hex + suffix`` fits the file system's longest name in
    ``folder`` (``PC_NAME_MAX``, else 255 bytes); ``prefix`` itself when it fits.

    A target name may be up to that limit, and its temporary name adds 18 bytes (``.NAME.<12 hex>.tmp``):
    a 240-byte image name's export would fail "file name too long". The shortened form keeps the name's
    start and adds a hash of the whole prefix (``.LONG_NAME_START~<8 hex>.``), so two long names that
    start alike still get different temporary names, and ``remove_stale_temps`` finds the same form again."""
    return _shortened(prefix, _name_max(folder) - len(os.fsencode(suffix)) - 12)


def fitting_stem(folder: PathLike, stem: str, suffix: str) -> str:
    """``stem`` shortened as ``fitting_prefix`` shortens (``LONG_NAME_START~<8 hex>``) so that
    ``stem + suffix`` fits the file system's longest name in ``folder``; ``stem`` itself when it fits. For
    outputs named after an input with a fixed ending (a video's ``<stem>.predictions.partial.jsonl``): the
    same stem always gives the same shortened one, so a later run finds an earlier run's files."""
    return _shortened(stem, _name_max(folder) - len(os.fsencode(suffix)))


def _shortened(name: str, room: int) -> str:
    """``name`` when it is at most ``room`` bytes, else its start, ``~`` and 8 hex of a hash of the whole
    name (a trailing dot kept last), ``room`` bytes at most."""
    if len(os.fsencode(name)) <= room:
        return name
    digest = hashlib.blake2b(os.fsencode(name), digest_size=4).hexdigest()
    end = name[-1:] if name.endswith(".") else ""
    tail = f"~{digest}{end}"
    start = name[:len(name) - len(end)]
    budget = room - len(tail.encode("ascii"))
    while start and len(os.fsencode(start)) > budget:  # whole characters only: never half a UTF-8 sequence
        start = start[:-1]
    return start + tail


def _name_max(folder: PathLike) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no such folder yet, no pathconf (Windows)
        return 255


def atomic_write_bytes(path: PathLike, data: bytes, *, unless_same: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace).
    ``unless_same``: a file that already holds exactly ``data`` is not rewritten, so that a run with
    nothing to do (a resume of a finished run) leaves its files and their times as they were."""
    if unless_same and _holds(path, data):
        return
    atomic_write_all({path: data})


def _holds(path: PathLike, data: bytes) -> bool:
    """Whether the file ``path`` already holds exactly ``data``."""
    try:
        p = Path(path)  # a size that differs says it without reading the file
        return p.is_file() and p.stat().st_size == len(data) and p.read_bytes() == data
    except OSError:
        return False


def atomic_write_all(contents: dict) -> None:
    """Write several files as one step: ``contents`` is {path: bytes}. Every file is written to its
    temporary file in the target's folder (fsynced) first, and only when all are written are they
    renamed over their targets, so a failed write (a full disk, a folder gone) leaves every old target
    as it was and no temporary file behind. A rename that fails after others were done (a folder in a
    target's place is refused before any) puts the old files back: each old target is hard-linked aside
    before the first rename, or copied aside where no hard link can be made (a file system without them,
    ``protected_hardlinks``); a target that could be neither, and so was not put back, is named in the
    error raised. (The renames themselves, one per file, are not one atomic step: a crash between two
    of them would leave the first ones new.)"""
    folders = folder_targets(contents)
    if folders:  # its rename would fail only after the others were done: refused before writing any
        raise IsADirectoryError(errno_module.EISDIR, "is a folder (not written; every previous file is kept)",
                                ", ".join(folders))
    pending = []  # (temporary path, target), those not renamed yet
    backups: dict = {}  # target -> a hard link to its old file (None: there was none)
    renamed = []  # targets replaced so far
    path = None
    try:
        for path, data in contents.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = create_temp_file(path.parent, prefix=f".{path.name}.", suffix=".tmp")
            pending.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for _, path in pending:
            backups[path] = _link_aside(path)
        while pending:
            path = pending[0][1]
            os.replace(*pending[0])
            pending.pop(0)
            renamed.append(path)
    except BaseException as e:
        for tmp, _ in pending:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        lost = _put_back(renamed, backups)
        _drop(backups)
        # a write's error (no file name) or the temporary file's: named by the target the user asked for
        unnamed = isinstance(e, OSError) and (e.filename is None or str(e.filename).endswith(".tmp"))
        error = write_error(e, path) if unnamed and path is not None else e
        if lost and isinstance(error, OSError):  # "the previous file is kept" is said of the failed one
            were = "was" if len(lost) == 1 else "were"
            error = OSError(error.errno, f"{error.strerror or error}; {', '.join(map(str, lost))} {were} "
                            "already replaced and could not be put back", error.filename)
        if error is e:
            raise
        raise error from e
    _drop(backups)
    for folder in {Path(p).parent for p in contents}:
        _fsync_dir(folder)
    for p in contents:
        remove_stale_temps(p)


def folder_targets(paths) -> list:
    """Those of ``paths`` (files to be written) where a folder is, as strings."""
    return [str(p) for p in paths if Path(p).is_dir()]


_NO_OLD_FILE = "none"  # a target that did not exist: putting it back removes the new one


def _link_aside(path: Path):
    """A hard link, beside ``path``, to its current file (named as a temporary file, so a run killed
    before removing it leaves what ``remove_stale_temps`` clears), or a copy where no hard link can be made;
    ``_NO_OLD_FILE`` when there is none; None when neither can be made (the old file then cannot be put
    back)."""
    if not os.path.lexists(path):
        return _NO_OLD_FILE
    name = path.parent / f"{fitting_prefix(path.parent, f'.{path.name}.', '.tmp')}{secrets.token_hex(6)}.tmp"
    try:
        os.link(path, name, follow_symlinks=False)  # a link in the target's place is kept as a link
    except (OSError, NotImplementedError):
        try:  # a copy (a symlink copied as the link); its mtime is now's, not taken for a dead temporary
            shutil.copy(path, name, follow_symlinks=False)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(name)
            return None
    return name


def _put_back(renamed: list, backups: dict) -> list:
    """The old file of each target in ``renamed`` back in place; returns the targets left new (no backup,
    or putting it back failed), for the error being raised to name."""
    lost = []
    for path in reversed(renamed):
        backup = backups.get(path)
        try:
            if backup == _NO_OLD_FILE:
                os.unlink(path)
            elif backup is not None:
                os.replace(backup, path)
                backups[path] = None
            else:
                lost.append(path)
        except OSError:
            lost.append(path)
    return lost[::-1]


def _drop(backups: dict) -> None:
    for backup in backups.values():
        if backup not in (None, _NO_OLD_FILE):
            try:
                os.unlink(backup)
            except OSError:
                pass


def write_error(error: OSError, path: PathLike) -> OSError:
    """``error`` (a failed write of ``path``, often without a file name: a full disk's ``os.write``) as an
    OSError of the same errno whose filename is ``path`` and whose strerror says the old file is kept."""
    path = Path(path)
    if error.filename is not None and Path(error.filename) == path and "previous file" in str(error.strerror):
        return error  # already told
    reason = error.strerror or str(error) or os.strerror(error.errno or errno_module.EIO)
    kept = "the previous file is kept" if path.exists() else "there was no previous file"
    return OSError(error.errno, f"{reason} (not written; {kept})", str(path))


def remove_stale_temps(path: PathLike) -> list:
    """Remove the leftover temporary files of ``path`` (``.NAME.<12 hex>.tmp``, the form
    ``create_temp_file`` gives them here) that are dead; returns them.

    Such a file is a temporary file of an earlier write of ``path`` whose process was killed before its
    rename (SIGKILL, a power cut: no ``except`` ran to remove it), up to a checkpoint's size. Only that
    exact form is matched (a user's ``.model_final.pth.backup.tmp`` is not one), and only a file last
    modified before ``stale_before()`` goes: before this process started (this process's own temporary
    files are all newer) and more than ``STALE_TEMP_AGE`` (10 minutes) ago. Older than this process is not
    proof of death: another process may still be writing it (a big checkpoint's fsync on a slow NFS
    server, a writer stalled between two chunks: its mtime stops changing while it is alive), and a minute
    without a change happens on a slow disk; ten minutes without one, a writer is not coming back.

    The folder is listed once per process (the first write into it): a temporary file older than this
    process cannot appear after that, so one listing finds all there will ever be, and a writer of many
    files in one folder does not scan it again for each file (which was quadratic)."""
    path = Path(path)
    key = os.path.abspath(path.parent)
    # the target as its temporary names give it: shortened for a name near the length limit
    name = temp_target(f"{fitting_prefix(path.parent, f'.{path.name}.', '.tmp')}{'0' * 12}.tmp")
    with _listing_lock:
        listing = _stale_listings.get(key)
        if listing is None:
            listing = _stale_listings[key] = _list_old_temps(path.parent)
        candidates = listing.pop(name, [])
    removed, kept = [], []
    cutoff = stale_before()
    for tmp in candidates:
        try:
            st = tmp.stat()
            if not stat_module.S_ISREG(st.st_mode) or st.st_mtime >= PROCESS_START:
                continue  # not a file, or written since: a live writer's, never to be looked at again
            if st.st_mtime < cutoff:
                tmp.unlink()
                removed.append(tmp)
            else:
                kept.append(tmp)  # too recent to call dead yet: looked at again by a later write
        except OSError:  # gone meanwhile, or not ours to remove: never a reason to fail a finished write
            pass
    if kept:
        with _listing_lock:
            listing.setdefault(name, []).extend(kept)
    return removed


# ``create_temp_file``'s names as ``atomic_write_all`` asks for them: "." + target + "." + 12 hex + ".tmp"
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{12}\.tmp", re.DOTALL)
# A temporary file unchanged for this long is dead (see remove_stale_temps): seconds.
STALE_TEMP_AGE = 600.0
_stale_listings: dict = {}  # {folder: {target name: [temporary files older than this process]}}
_listing_lock = threading.Lock()


def temp_target(name: str) -> Optional[str]:
    """The target's name of a temporary file named ``name`` in ``create_temp_file``'s form
    (``.model_final.pth.0a1b2c3d4e5f.tmp`` -> ``model_final.pth``), else None. For a name shortened by
    ``fitting_prefix`` it is the shortened form (``LONG_NAME_START~<8 hex>``)."""
    match = _TEMP_NAME.fullmatch(name)
    return match.group("target") if match else None


def stale_before() -> float:
    """The time before which a temporary file's last change makes it dead (``remove_stale_temps``)."""
    return min(PROCESS_START, time.time() - STALE_TEMP_AGE)


def _list_old_temps(folder: Path) -> dict:
    # One os.scandir: {target name: [its temporary files last modified before this process started]}.
    found: dict = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                target = temp_target(entry.name)
                if target is None:
                    continue
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < PROCESS_START:
                        found.setdefault(target, []).append(Path(entry.path))
                except OSError:
                    pass
    except OSError:  # no folder (yet), or unreadable: nothing to remove
        pass
    return found


def replace_durably(tmp: PathLike, path: PathLike) -> None:
    """Rename a finished temporary file (closed by its writer, e.g. a video encoder) over ``path`` as
    ``atomic_write_bytes`` does: its bytes on disk first, then the rename, then the folder entry."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)
    remove_stale_temps(path)


def atomic_write_text(path: PathLike, text: str, *, unless_same: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (``unless_same``: as ``atomic_write_bytes``)."""
    atomic_write_bytes(path, text.encode("utf-8"), unless_same=unless_same)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN / infinite float (in dicts, lists, tuples) as None: ``json.dumps`` would
    write bare ``NaN``, which is not JSON (JavaScript's JSON.parse, jq and many others refuse it). COCO's
    AP of a size range without objects is such a NaN."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def atomic_write_json(path: PathLike, data: Any, *, unless_same: bool = False, **dumps_kwargs: Any) -> None:
    """Write ``json.dumps(data, **dumps_kwargs)`` to ``path`` atomically (serialised first, so an
    object JSON cannot encode raises before the old file is touched). UTF-8 with non-ASCII text as it is
    (``ensure_ascii=False`` unless asked otherwise): a class name such as "Ölfleck" reads as itself in
    our own files (run.json, best.json, init_report.json, metrics.json), as in the YAML config, not as
    ``\\u00d6lfleck``. Files meant for other tools (COCO datasets, predictions.json) pass
    ``ensure_ascii=True``: pycocotools opens them with the locale's encoding (cp1252 on Windows garbles
    UTF-8), and the escapes read back exactly.

    A file name that is not valid UTF-8 (``os.fsdecode`` gives its bytes as lone surrogates, e.g.
    b"caf\\xe9.png" -> "caf\\udce9.png") is written as the escape ``\\udce9`` (what ``ensure_ascii=True``
    writes), which ``json.loads`` reads back as the same string, rather than failing the whole file.
    ``unless_same``: as ``atomic_write_bytes`` (a file with these very bytes is not rewritten)."""
    atomic_write_bytes(path, json_bytes(data, **dumps_kwargs), unless_same=unless_same)


def json_bytes(data: Any, **dumps_kwargs: Any) -> bytes:
    """``data`` as ``atomic_write_json`` writes it: ``json.dumps`` (``ensure_ascii=False`` unless asked
    otherwise) as UTF-8, a lone surrogate (an undecodable file name) as its escape; for a caller that
    needs the bytes first (``written_files`` hashes them before writing)."""
    dumps_kwargs.setdefault("ensure_ascii", False)
    return json.dumps(data, **dumps_kwargs).encode("utf-8", errors="backslashreplace")


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the directory entry is on disk (POSIX); best effort elsewhere.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _parent_problem(path: Path) -> str:
    for parent in path.parents:
        if parent.exists():
            return "" if parent.is_dir() else f"{parent} is a file, so nothing can be written under it"
    return ""


def check_output_dir(path: PathLike, option: str = "--output") -> Path:
    """``path`` as a Path if a folder can be made or used there; ValueError naming ``option`` if not. An
    existing folder is probed for writes (``_unwritable``); one still to be made, in its nearest existing
    parent, where it would be made (a read-only mount is found now, not after the work)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path}: is an existing file, not a folder; choose a folder")
    problem = _parent_problem(path)
    if not problem and path.is_dir():
        problem = _unwritable(path)
    elif not problem:
        parent = next((p for p in path.absolute().parents if p.is_dir()), None)
        refused = _unwritable(parent) if parent is not None else ""
        problem = f"cannot be made: {parent}: {refused}" if refused else ""
    if problem:
        raise ValueError(f"{option} {path}: {problem}")
    return path


def _unwritable(folder: Path) -> str:
    # An existing folder that refuses new files (read-only mount, no permission, chattr +i) or their
    # removal (chattr +a: each write's temporary file would stay) said now, not after an evaluation's
    # hours: one real empty file made and removed, as the writes will (access() misses ACLs, NFS and root
    # squash). Probes left by a run killed in between go the way of any dead temporary file.
    if not folder.is_dir():
        return ""
    try:
        fd, tmp = create_temp_file(folder, prefix=".write-check.", suffix=".tmp")
    except OSError as e:
        return f"cannot write there ({_write_refusal(e)})"
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError as e:  # chattr +a, a sticky folder of another owner: temporary files would stay too
        return f"cannot remove files there ({e.strerror or e}), so temporary files would be left behind"
    finally:
        # probes of earlier runs killed between create and unlink (``.write-check.<12 hex>.tmp``)
        remove_stale_temps(folder / "write-check")
    return ""


def _write_refusal(error: OSError) -> str:
    """Why an existing folder refused a new file, in words true of it: procfs and the like answer
    ENOENT (or ENOTDIR) to a file made in a folder that is there, where "No such file or directory" would
    read as the folder missing."""
    if error.errno in (errno_module.ENOENT, errno_module.ENOTDIR):
        return "its file system refuses new files there"
    return str(error.strerror or error)


def check_output_file(path: PathLike, option: str = "OUT") -> Path:
    """``path`` as a Path if a file can be written there; ValueError naming ``option`` if not."""
    text = os.fspath(path)
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {text}: is a folder; give the path of the file to write")
    # 'new/x/' and 'new/x/.' name a folder (Path drops the '/' and the '.'): written as a file named x,
    # it was not what was meant; 'ex.json/' with ex.json a file is no folder, but no file name either
    last = text.replace(os.sep, "/").rsplit("/", 1)[-1]
    if last in ("", ".", ".."):
        raise ValueError(f"{option} {text}: ends in {text[len(text.rstrip('/' + os.sep + '.')):]!r}, as a "
                         f"folder's path does; give the path of the file to write")
    problem = _parent_problem(path)
    if problem:
        raise ValueError(f"{option} {path}: {problem}")
    return path


def check_output_not_input(output: PathLike, source: PathLike, *, option: str = "--output",
                           source_option: str = "--weights", result: str = "the result") -> None:
    """ValueError naming both options when ``output`` names the same file as ``source``: the same path in
    another spelling, a symlink or a hard link to it (``os.path.samefile``); the result is to be written
    under another name."""
    try:
        same = Path(source).is_file() and Path(output).exists() and os.path.samefile(output, source)
    except OSError:  # gone or unreadable between the checks: not the same file as far as we can tell
        same = False
    if same:
        raise ValueError(f"{option} {os.fspath(output)}: names the same file as {source_option}; "
                         f"write {result} under another name")
