"""Which files a ``predict --export masks,cutouts`` run wrote in a format's folder, so that a re-run into
the same ``--output`` can take away the earlier run's files it does not write again (an image not
predicted now, an instance fewer now): left there, they read as this run's.

    FOLDER/written.json             {"files": [path relative to FOLDER, ...]}: the last finished run's
    FOLDER/written.partial.jsonl    one JSON list of paths a line, appended before the files are written;
                                    left by a run that was killed, read by the next one

Only files listed so are ever removed, and of those only the ones that still are regular files (not
links, not folders) inside FOLDER, with the ``.png`` extension every written file has: a file the user put
there, or a list edited to name another file, is left alone. An unreadable list (either of the two) is said
in one line, naming the file, and no earlier file is removed then. The lists are JSON, read as data only.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path, PurePosixPath
from typing import Iterable, Optional, Set

from maskrcnn.io_utils import atomic_write_json

__all__ = ["WRITTEN_FILE", "WRITTEN_PARTIAL", "WrittenFiles"]

WRITTEN_FILE, WRITTEN_PARTIAL = "written.json", "written.partial.jsonl"


class WrittenFiles:
    """The files one run writes in ``folder`` (``add``, before writing them), and the earlier runs'
    (read when made, before this run writes any); ``finish`` removes the earlier ones not written again
    and lists this run's."""

    def __init__(self, *, folder: Path, label: str, prefix: str = "pre-annotations",
                 also_earlier: Iterable[str] = ()):
        """``label``: how the lines name the folder's files ("masks", "cutouts"); ``prefix``: the command
        the lines are from; ``also_earlier``: more earlier runs' files, listed elsewhere (a report from
        before ``written.json``), taken only when the lists here can be read: with one that cannot,
        nothing earlier is removed."""
        self.folder, self.label = Path(folder), label
        # readable: False when a list is there but cannot be read (said in a line): nothing is removed
        self.earlier, self.readable = _read_written(self.folder, label=label, prefix=prefix)
        if self.readable:
            self.earlier |= set(also_earlier)
        self.files: Set[str] = set()
        self._partial = None

    def add(self, paths: Iterable[str]) -> None:
        """``paths`` (relative to the folder, '/'-separated) are about to be written: listed first, so that
        a run killed mid-write leaves no file unlisted."""
        paths = [p for p in paths if p not in self.files]
        if not paths:
            return
        if self._partial is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            # appended to: a killed run's list stays in it until a run finishes
            self._partial = open(self.folder / WRITTEN_PARTIAL, "a", encoding="utf-8",
                                 errors="surrogateescape")
        self._partial.write(json.dumps(paths) + "\n")
        self._partial.flush()
        self.files.update(paths)

    def finish(self, *, replace: bool = True) -> int:
        """Write ``written.json``. With ``replace`` (the run got as far as its first image), first remove
        the earlier runs' files that this run did not write and list this run's only; without it (a run
        stopped before its first image), keep them and list both. Returns how many were removed."""
        if self._partial is not None:
            try:
                self._partial.close()
            except OSError:  # a full disk's flush: written.json below lists the files all the same
                pass
        removed = _remove_listed(self.folder, self.earlier, keep=self.files) if replace else 0
        if self.files or self.earlier or (self.folder / WRITTEN_FILE).exists():
            listed = self.files if replace else self.files | self.earlier
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.folder / WRITTEN_FILE, {"files": sorted(listed)})
        (self.folder / WRITTEN_PARTIAL).unlink(missing_ok=True)  # after written.json: nothing is lost
        return removed


def read_written(folder: Path, *, label: str = "", prefix: str = "pre-annotations") -> Set[str]:
    """The paths listed in ``folder``'s ``written.json`` and in a killed run's ``written.partial.jsonl``
    (a line cut short by the kill is dropped). When either list cannot be read, a line on stderr names the
    file and what is wrong, and nothing is listed: no earlier file is removed, the other list's neither."""
    return _read_written(folder, label=label, prefix=prefix)[0]


def _read_written(folder: Path, *, label: str, prefix: str) -> tuple:
    """``read_written``'s paths, and whether the lists there (if any) could be read."""
    found: Set[str] = set()
    final, partial = folder / WRITTEN_FILE, folder / WRITTEN_PARTIAL
    problems = []
    if final.is_file():
        try:
            data = json.loads(final.read_text(encoding="utf-8", errors="surrogateescape"))
            files = data.get("files") if isinstance(data, dict) else None
            if isinstance(files, list) and all(isinstance(f, str) for f in files):
                found.update(files)
            else:
                problems.append(f"{final}: field 'files' is not a list of paths")
        except (OSError, ValueError) as e:
            problems.append(f"{final}: not readable as JSON ({e})")
    if partial.is_file():
        try:
            lines = partial.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except OSError as e:
            lines = []
            problems.append(f"{partial}: not readable ({e})")
        for line in lines:
            try:
                paths = json.loads(line)
            except ValueError:
                continue  # the line a kill cut short: its files may not exist either
            if isinstance(paths, list):
                found.update(p for p in paths if isinstance(p, str))
    if problems:
        print(f"{prefix}: {label}: {'; '.join(problems)}; no file of the earlier runs is removed (those "
              f"listed in {WRITTEN_FILE} and {WRITTEN_PARTIAL} alike)", file=sys.stderr)
        return set(), False
    return found, True


def _remove_listed(folder: Path, paths: Iterable[str], *, keep: Set[str]) -> int:
    """Remove the files ``paths`` (relative to ``folder``) that are not in ``keep`` (this run's files)
    and are regular ``.png`` files inside ``folder``; then the folders left empty by it, up to ``folder``.
    Returns how many went. A path that differs from one of ``keep`` in case only is kept when it is that
    very file (``os.path.samefile``: on a macOS or Windows disk 'A.png' is this run's 'a.png'), removed
    when it is another (a case-sensitive disk)."""
    try:
        top = folder.resolve()
    except (OSError, RuntimeError):
        return 0
    kept: dict = {}
    for k in keep:
        kept.setdefault(k.casefold(), []).append(k)
    removed = 0
    for rel in sorted(paths):
        if rel in keep or _same_as_kept(folder, rel, kept.get(rel.casefold(), ())):
            continue
        path = _inside(top, folder, rel)
        if path is None:
            continue
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):  # a link is not followed, nor removed
                continue
            path.unlink()
        except (OSError, ValueError):  # gone meanwhile, or not ours to remove
            continue
        removed += 1
        parent = path.parent
        while parent != top and top in parent.parents:
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent
    return removed


def _same_as_kept(folder: Path, rel: str, candidates) -> bool:
    """Whether ``folder / rel`` is the very file of one of ``candidates`` (this run's paths of the same
    name but for case); a path that cannot be compared counts as the same (kept: nothing is lost)."""
    for other in candidates:
        try:
            if os.path.samefile(folder / rel, folder / other):
                return True
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return True
    return False


def _inside(top: Path, folder: Path, rel: str) -> Optional[Path]:
    """``folder / rel`` with its folder resolved, when that lies inside ``top`` (``folder`` resolved) and
    the name ends in ``.png``; None for a path that would leave it (``..``, absolute, a drive, a link to a
    folder elsewhere)."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or not pure.parts or ".." in pure.parts or pure.suffix.lower() != ".png" \
            or "\0" in rel:
        return None
    given = folder.joinpath(*pure.parts)
    try:
        parent = given.parent.resolve()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a link loop (Python < 3.13)
        return None
    if parent != top and top not in parent.parents:
        return None
    return parent / given.name
