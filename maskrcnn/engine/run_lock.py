"""One training run per run folder: ``run_lock(output)`` holds ``OUTPUT/.lock`` for the run's duration.

Two runs writing into one folder would overwrite each other's checkpoints and interleave their
``metrics.jsonl`` records; the second is refused in one line, "OUTPUT is in use by another training run
(pid N)". On POSIX the lock is ``fcntl.flock`` (non-blocking) on the lock file: the operating system
releases it when the process ends, however it ends, so a killed run's file left behind blocks nothing; a
run that ends removes the file (a run that locked it meanwhile sees the path name another file and retries).
On Windows the file's first byte is locked with ``msvcrt.locking`` (also released by the OS); where
neither exists the lock file is created with O_CREAT | O_EXCL and holds the pid, one whose process is no
longer running taken as stale and replaced. A file system without locks (Lustre mounted without
``-o flock``, some FUSE / CIFS mounts) gets a warning and an unlocked run, as before the lock existed.
The file holds only a pid: it is read as a number, never run. Only the process that takes the lock
(rank 0) calls this.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None

LOCK_NAME = ".lock"


class RunInUse(ValueError):
    """The run folder is held by another training run."""


@contextlib.contextmanager
def run_lock(output):
    """Hold ``output``'s lock (the folder made if missing) until the block ends; RunInUse if another
    run holds it. A folder this made that holds nothing but the lock at the end is removed again: a run
    refused before it wrote anything leaves no empty folder behind."""
    output = Path(output)
    made = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    path = output / LOCK_NAME
    if fcntl is not None:
        release = _flock(path, output)
    elif msvcrt is not None:
        release = _msvcrt_lock(path, output)
    else:
        release = _pid_file(path, output)
    try:
        yield path
    finally:
        release()
        if made:  # the lock file is gone with its release
            with contextlib.suppress(OSError):  # not empty (the run wrote there) or already gone
                output.rmdir()


def _refusal(output: Path, pid) -> RunInUse:
    holder = f" (pid {pid})" if pid else ""
    return RunInUse(f"{output} is in use by another training run{holder}; wait for it to end, or choose "
                    "another --output")


def _read_pid(path: Path):
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _flock(path: Path, output: Path):
    for _ in range(100):  # another run removed the file between our open and our lock: open it again
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by a running process
            os.close(fd)
            raise _refusal(output, _read_pid(path)) from None
        except OSError as e:  # no locks on this file system (Lustre without -o flock, some FUSE / CIFS)
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            warnings.warn(f"{output}: this file system does not support file locks ({e.strerror}); another "
                          "training run into this folder is not prevented", stacklevel=3)
            return lambda: None
        if _same_file(fd, path):
            break
        os.close(fd)  # we locked a file its holder has removed on its release: not the lock any more
    else:
        raise _refusal(output, None)
    # the holder's pid, for the refusal of the next one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))

    def release():
        # removed while still locked, so a run that opened it meanwhile sees (by _same_file) that it
        # locked a removed file and opens the path again; a refused or finished run leaves no file behind
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # closing the last descriptor releases the flock
    return release


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:  # another user's lock file left in a shared folder
        raise RunInUse(f"{path}: the run folder's lock file cannot be opened (permission denied); remove it "
                       "if no training run is using this folder") from None


def _msvcrt_lock(path: Path, output: Path):
    """Windows: a non-blocking lock of the file's first byte, released by the OS when the process ends."""
    fd = _open_lock_file(path)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # held by a running process (its pid cannot be read through the lock)
        os.close(fd)
        raise _refusal(output, None) from None

    def release():
        os.lseek(fd, 0, os.SEEK_SET)  # the locked byte: locking() acts from the current position
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.close(fd)
        with contextlib.suppress(OSError):  # opened by a run starting meanwhile: it stays, unlocked
            path.unlink()
    return release


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's (PermissionError), or not to be asked: taken as running
        return True
    return True


def _pid_file(path: Path, output: Path):
    for _ in range(2):  # a stale file removed once, then created again
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = _read_pid(path)
            if pid is not None and _running(pid):
                raise _refusal(output, pid) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a killed run's: nobody holds it
            continue
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        os.close(fd)

        def release():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return release
    raise _refusal(output, _read_pid(path))
