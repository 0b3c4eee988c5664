"""One training run per run folder: ``run_lock(output)`` holds ``OUTPUT/.lock`` for the run's duration.

Two runs writing into one folder would overwrite each other's checkpoints and interleave their
``metrics.jsonl`` records; the second is refused in one line, "OUTPUT is in use by another training run
(pid N)". On POSIX the lock is ``fcntl.flock`` (non-blocking) on the lock file: the operating system
releases it when the process ends, however it ends, so a killed run's file left behind blocks nothing.
Where ``fcntl`` is missing (Windows) the lock file is created with O_CREAT | O_EXCL and holds the pid;
one whose process is no longer running is taken as stale and replaced. The file holds only a pid: it is
read as a number, never run. Only the process that takes the lock (rank 0) calls this.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

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
    release = _flock(path, output) if fcntl is not None else _pid_file(path, output)
    try:
        yield path
    finally:
        release()
        if made:
            with contextlib.suppress(OSError):  # not empty (the run wrote there) or already gone
                if [p.name for p in output.iterdir()] == [LOCK_NAME]:
                    path.unlink()
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
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held by a running process
        os.close(fd)
        raise _refusal(output, _read_pid(path)) from None
    # the holder's pid, for the refusal of the next one (the file is not removed: a run that opened it
    # meanwhile would lock a file no later run sees)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))

    def release():
        os.close(fd)  # closing the last descriptor releases the flock
    return release


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
