"""Which files a ``predict --export`` run (or ``predict``'s / ``show-data``'s overlays) wrote in a
folder, so that a re-run into the same ``--output`` can take away the earlier run's files it does not write
again (an image not predicted now, an instance fewer now): left there, they read as this run's.

    FOLDER/written.json             {"files": [path relative to FOLDER, ...], "sha256": {path: [hex, ...]}}:
                                    the last finished run's files, and of those written by ``write`` the
                                    SHA-256 of the content written
    FOLDER/written.partial.jsonl    one JSON list of paths (or {path: hex}) a line, appended before the
                                    files are written; left by a run that was killed, read by the next one

(the two lists can lie elsewhere, ``record``: LabelMe's folder is read back whole, a JSON list there would
be taken for a LabelMe file). Only files listed so are ever removed, and of those only the ones that still
are regular files (not links, not folders) inside FOLDER, with one of the extensions the folder's files
have (``.png``, LabelMe's ``.json``, YOLO's ``.txt``): a file the user put there, or a list edited to name
another file, is left alone. A file listed with its hash is ours only while it still holds that content:
one changed since (a LabelMe file corrected in LabelMe, a YOLO label file in X-AnyLabeling) is the user's,
neither written over (``write``) nor removed (``finish``), and so is a file there that no list names;
``kept_lines`` says which, counted, a few named. A file listed without a hash (the overlays; lists of a
version that recorded none: ``{"files": [...]}``) is ours only while it was not modified after the list
naming it was (written.json is written after its files): a mask painted since is the user's. Nothing of
the user's is removed or written over unless we can show we wrote it as it is. An unreadable or malformed
list (either of the two; a hash entry that is not hex text) is said in one line, naming the file, and no
earlier file is removed or written over then. The lists are JSON, read as data only.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, Optional, Set, Union

from maskrcnn.io_utils import atomic_write_bytes, atomic_write_json

__all__ = ["WRITTEN_FILE", "WRITTEN_PARTIAL", "WrittenFiles", "listed_as_written", "listed_files",
           "lists_and_problems", "partial_record", "read_written"]

WRITTEN_FILE, WRITTEN_PARTIAL = "written.json", "written.partial.jsonl"
SHOWN_NAMES = 3  # files named in a kept line; the rest counted


def content_hash(data: bytes) -> str:
    """The hash a written file is recorded with (SHA-256, hex)."""
    return hashlib.sha256(data).hexdigest()


def _file_hash(path: Path) -> Optional[str]:
    """``content_hash`` of the regular file ``path``; None when it cannot be read (or is not one)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        return content_hash(path.read_bytes())
    except (OSError, ValueError):
        return None


class WrittenFiles:
    """The files one run writes in ``folder`` (``add``, before writing them), and the earlier runs'
    (read when made, before this run writes any); ``finish`` removes the earlier ones not written again
    and lists this run's."""

    def __init__(self, *, folder: Path, label: str, prefix: str = "pre-annotations",
                 also_earlier: Iterable[str] = (), suffixes: Iterable[str] = (".png",),
                 record: Optional[Path] = None, unreadable_means: Optional[str] = None,
                 names: Optional[Iterable[str]] = None):
        """``label``: how the lines name the folder's files ("masks", "cutouts"); ``prefix``: the command
        the lines are from; ``also_earlier``: more earlier runs' files, listed elsewhere (a report from
        before ``written.json``), taken only when the lists here can be read: with one that cannot,
        nothing earlier is removed; ``suffixes``: the extensions of the files this folder's runs write
        (only such files are ever removed); ``record``: the list's path (``FOLDER/written.json`` when
        None), the killed run's list beside it (``<name>.partial.jsonl``); ``unreadable_means``: what the
        line saying a list cannot be read says follows from it (by default that no earlier file is removed
        or written over; a caller that writes its files whatever the list says, the single-file exports,
        says its own); ``names``: the only paths this folder's runs write (the single-file exports'): an
        earlier list naming another (a stale or hostile one: ``../elsewhere.json``) is not believed for it,
        so it is neither read, removed nor listed again."""
        self.folder, self.label, self.prefix = Path(folder), label, prefix
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.record = Path(record) if record is not None else self.folder / WRITTEN_FILE
        self.partial_record = self.record.with_name(_partial_name(self.record))
        # readable: False when a list is there but cannot be read (said in a line): nothing is removed
        # earlier_stamps: {path listed without a hash: the time (ns) of the list naming it}
        self.earlier, self.readable, self.earlier_hashes, self.earlier_stamps = _read_lists(
            self.record, self.partial_record, label=label, prefix=prefix, means=unreadable_means)
        if names is not None:
            allowed = set(names)
            self.earlier &= allowed
            self.earlier_hashes = {p: h for p, h in self.earlier_hashes.items() if p in allowed}
            self.earlier_stamps = {p: t for p, t in self.earlier_stamps.items() if p in allowed}
        # also_earlier's (a report that predates the lists, of overlays drawn from the data: nobody
        # edits them) are ours as they are, listed without a hash or a time
        self.also_earlier = set(also_earlier) if self.readable else set()
        self.earlier |= self.also_earlier
        self.files: Set[str] = set()
        self.hashes: Dict[str, Set[str]] = {}  # this run's files written by ``write``: their content's hash
        # the user's files, left as they are, by why (``kept_lines``)
        self.kept: Dict[str, list] = {"changed": [], "unreadable": [], "unlisted": []}
        self._partial = None

    def add(self, paths: Union[Iterable[str], Dict[str, str]]) -> None:
        """``paths`` (relative to the folder, '/'-separated; a dict: {path: content hash}) are about to be
        written: listed first, so that a run killed mid-write leaves no file unlisted."""
        hashes = dict(paths) if isinstance(paths, dict) else {}
        paths = [p for p in paths if p not in self.files or p in hashes]
        if not paths:
            return
        if self._partial is None:
            self.partial_record.parent.mkdir(parents=True, exist_ok=True)
            # appended to: a killed run's list stays in it until a run finishes
            self._partial = _open_appending(self.partial_record)
        self._partial.write(json.dumps({p: hashes[p] for p in paths} if hashes else paths) + "\n")
        self._partial.flush()
        self.files.update(paths)
        for p in paths:
            if p in hashes:
                self.hashes.setdefault(p, set()).add(hashes[p])

    def owned(self, rel: str) -> bool:
        """Whether ``rel`` may be written over: no file there, or one an earlier run wrote (listed) and
        still as written (its hash; listed without one: not modified after the list). A file no list
        names, or changed since, is the user's (``write`` records why in ``kept``)."""
        return self.users(rel) is None

    def users(self, rel: str, data: Optional[bytes] = None) -> Optional[str]:
        """None when ``rel`` is ours to write over, else why not ("changed", "unreadable", "unlisted");
        ``data``: what would be written: a file holding exactly that loses nothing to it (ours too)."""
        path = self.folder / rel
        if not os.path.lexists(path) or rel in self.files:
            return None
        if data is not None and _file_hash(path) == content_hash(data):
            return None
        if not self.readable:
            return "unreadable"
        if rel not in self.earlier:
            return "unlisted"
        return None if _as_written(path, rel, self.earlier_hashes, self.earlier_stamps, self.also_earlier) \
            else "changed"

    def keep_unchanged(self, rel: str) -> None:
        """List ``rel``, ours (``owned``) and not written again by this run (its pair is the user's), as
        this run's with its present content's hash: neither removed by ``finish`` nor taken later for the
        user's."""
        current = _file_hash(self.folder / rel)
        if current is not None:
            self.add({rel: current})

    def write(self, rel: str, data: bytes) -> bool:
        """Write ``data`` to ``rel`` (atomically, listed with its hash first) unless the file there is the
        user's (``users``): then it is left as it is, counted in ``kept``, and False returned."""
        why = self.users(rel, data)
        if why is not None:
            self.kept[why].append(rel)
            return False
        self.add({rel: content_hash(data)})
        target = self.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)  # a link there is replaced, never written through
        return True

    def kept_lines(self) -> list:
        """One line per reason the user's files were left as they were (``write`` and ``finish``): how
        many, the first few named; [] when none were."""
        lines = []
        moved = "; move or delete them to have this run's written"
        for why, text, tail in (
                ("changed", "changed since an earlier run wrote them: yours,", moved),
                ("unreadable", "whose list could not be read (said above):", moved),
                ("unlisted", "not written by an earlier run (none lists them: yours, or written by a version "
                 "before maskrcnn recorded its files; move them away to have them written again):", "")):
            names = sorted(set(self.kept[why]))
            if names:
                shown = ", ".join(names[:SHOWN_NAMES]) + (f" and {len(names) - SHOWN_NAMES} more"
                                                          if len(names) > SHOWN_NAMES else "")
                lines.append(f"{self.prefix}: {self.label}: kept {len(names)} file(s) in {self.folder}/ "
                             f"{text} neither written over nor removed ({shown}){tail}")
        return lines

    def finish(self, *, replace: bool = True) -> int:
        """Write ``written.json``. With ``replace`` (the run got as far as its first image), first remove
        the earlier runs' files that this run did not write and list this run's only; without it (a run
        stopped before its first image), keep them and list both. Returns how many were removed."""
        if self._partial is not None:
            try:
                self._partial.close()
            except OSError:  # a full disk's flush: written.json below lists the files all the same
                pass
        removed = 0
        if replace:
            removed, changed = _remove_listed(self.folder, self.earlier, keep=self.files,
                                              hashes=self.earlier_hashes, stamps=self.earlier_stamps,
                                              also=self.also_earlier, suffixes=self.suffixes)
            self.kept["changed"] += changed
        if self.files or self.earlier or self.record.exists():
            listed = self.files if replace else self.files | self.earlier
            hashes = {p: set(h) for p, h in self.hashes.items()}
            if not replace:  # the earlier files still as written stay listed, each with its hash now
                listed = self.files | {p for p in self.earlier if p in self.files or _as_written(
                    self.folder / p, p, self.earlier_hashes, self.earlier_stamps, self.also_earlier)}
                for p in listed - self.files:
                    current = _file_hash(self.folder / p)
                    if current is not None:  # else gone: listed as it was, nothing there to take
                        hashes.setdefault(p, set()).add(current)
            data = {"files": sorted(listed)}
            if hashes:
                data["sha256"] = {p: sorted(hashes[p]) for p in sorted(hashes) if p in listed}
            self.record.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.record, data)
        self.partial_record.unlink(missing_ok=True)  # after written.json: nothing is lost
        return removed


def _open_appending(path: Path):
    """``path`` opened to append text to, never through a link: a link there (left by someone else,
    pointing at a file of theirs) is removed first, and the open itself refuses one made meanwhile (where
    the system can say so: ``O_NOFOLLOW``); the list is then a new file of ours."""
    if os.path.islink(path):
        path.unlink()  # its own name in the run's folder: the file it points at is left as it was
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o666)
    return os.fdopen(fd, "a", encoding="utf-8", errors="surrogateescape")


def _partial_name(record: Path) -> str:
    """The killed run's list beside ``record``: written.json -> written.partial.jsonl."""
    return (record.name[:-len(".json")] if record.name.endswith(".json") else record.name) + ".partial.jsonl"


def read_written(folder: Path, *, label: str = "", prefix: str = "pre-annotations") -> Set[str]:
    """The paths listed in ``folder``'s ``written.json`` and in a killed run's ``written.partial.jsonl``
    (a line cut short by the kill is dropped). When either list cannot be read, a line on stderr names the
    file and what is wrong, and nothing is listed: no earlier file is removed, the other list's neither."""
    return _read_lists(folder / WRITTEN_FILE, folder / WRITTEN_PARTIAL, label=label, prefix=prefix)[0]


def _is_hash(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _hash_list(value) -> Optional[Set[str]]:
    """A recorded hash (hex) or list of them as a set; None for anything else."""
    values = [value] if isinstance(value, str) else value
    if isinstance(values, list) and values and all(_is_hash(v) for v in values):
        return set(values)
    return None


def _mtime_ns(path: Path) -> Optional[int]:
    try:
        return os.lstat(path).st_mtime_ns
    except (OSError, ValueError):
        return None


def _as_written(path: Path, rel: str, hashes: dict, stamps: dict, also: Set[str] = frozenset()) -> bool:
    """Whether the listed file ``path`` (``rel``) is still as an earlier run wrote it: the content of a
    recorded hash; listed without one, not modified after the list naming it (written after its files);
    ``also`` (a report from before the lists): as it is. False when that cannot be told (unreadable)."""
    if rel in hashes:
        return _file_hash(path) in hashes[rel]
    if rel in stamps:
        mtime = _mtime_ns(path)
        return mtime is not None and mtime <= stamps[rel]
    return rel in also


def partial_record(record: Path) -> Path:
    """The killed run's list beside the list ``record`` (written.json -> written.partial.jsonl)."""
    return Path(record).with_name(_partial_name(Path(record)))


def listed_files(folder: Path, record: Optional[Path] = None) -> Optional[Set[str]]:
    """The paths ``folder``'s lists name (``written.json`` and a killed run's ``written.partial.jsonl``;
    ``record``: the list kept elsewhere, as ``WrittenFiles`` takes it), relative to it, said nowhere; None
    when a list there cannot be read (``read_written`` says why): ``predict`` then takes the whole folder
    for a run's, as it cannot tell which of its files are."""
    return lists_and_problems(folder, record)[0]


def lists_and_problems(folder: Path, record: Optional[Path] = None) -> tuple:
    """``(listed_files(folder, record), problems)``: ``problems``, ``(list file, what is wrong)`` for each
    list there that cannot be read (a parse error with its line and column), for a caller that says
    why a folder's files cannot be told apart (``predict``'s line of the images it left out)."""
    record = Path(record) if record is not None else folder / WRITTEN_FILE
    found, problems, _, _ = _parse_lists(record, partial_record(record))
    return (None if problems else found), problems


def listed_as_written(folder: Path, record: Path, names: Iterable[str]) -> Optional[Set[str]]:
    """Of ``names`` (paths relative to ``folder``), those the list ``record`` (or a killed run's beside it)
    names and that still hold what was written there (``_as_written``: the recorded hash; listed without
    one, not modified after the list): a file of that name saved there since is the user's. Only
    ``names`` are looked at, whatever else a list names; None when a list cannot be read."""
    found, problems, hashes, stamps = _parse_lists(Path(record), partial_record(Path(record)))
    if problems:
        return None
    return {n for n in names if n in found and _as_written(Path(folder) / n, n, hashes, stamps)}


def _read_lists(final: Path, partial: Path, *, label: str, prefix: str, means: Optional[str] = None) -> tuple:
    """``read_written``'s paths, whether the lists there (if any) could be read, {path: the hashes
    recorded for it}, and {path listed without a hash: the time (ns) of the newest list naming it}. A list
    of the wrong shape (a hash entry that is not hex text, a line neither a list of paths nor {path:
    hash}) cannot be read: nothing earlier is taken then."""
    found, problems, hashes, unhashed = _parse_lists(final, partial)
    if problems:
        said = "; ".join(f"{path}: {what}" for path, what in problems)
        means = means or (f"no file of the earlier runs is removed or written over (those listed in "
                          f"{final.name} and {partial.name} alike)")
        print(f"{prefix}: {label}: {said}; {means}", file=sys.stderr)
        return set(), False, {}, {}
    return found, True, hashes, unhashed


def _parse_lists(final: Path, partial: Path) -> tuple:
    """(paths, problems, hashes, unhashed) of the two lists, as ``_read_lists`` takes them; ``problems``:
    ``(the file, what is wrong)`` for each list that cannot be read."""
    found: Set[str] = set()
    hashes: Dict[str, Set[str]] = {}
    unhashed: Dict[str, int] = {}
    problems = []
    if final.is_file():
        try:
            data = json.loads(final.read_text(encoding="utf-8", errors="surrogateescape"))
            stamp = _mtime_ns(final)
            files = data.get("files") if isinstance(data, dict) else None
            recorded = data.get("sha256", {}) if isinstance(data, dict) else {}
            if not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
                problems.append((final, "field 'files' is not a list of paths"))
            elif not isinstance(recorded, dict) or not all(
                    isinstance(p, str) and _hash_list(h) is not None for p, h in recorded.items()):
                problems.append((final, "field 'sha256' is not {path: [SHA-256 hex, ...]}"))
            elif stamp is None:
                problems.append((final, "its modification time cannot be read"))
            else:
                found.update(files)
                for p in files:
                    if p in recorded:
                        hashes.setdefault(p, set()).update(_hash_list(recorded[p]))
                    else:
                        unhashed[p] = stamp
        except (OSError, ValueError) as e:
            problems.append((final, f"not readable as JSON ({e})"))
    if partial.is_file():
        stamp = _mtime_ns(partial)
        try:
            lines = partial.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except OSError as e:
            lines = []
            problems.append((partial, f"not readable ({e})"))
        for number, line in enumerate(lines, 1):
            try:
                paths = json.loads(line)
            except ValueError:
                continue  # the line a kill cut short: its files may not exist either
            if isinstance(paths, list) and all(isinstance(p, str) for p in paths) and stamp is not None:
                for p in paths:  # appended before its files were written: the last ones may be later
                    found.add(p)
                    unhashed[p] = max(unhashed.get(p, stamp), stamp)
            elif isinstance(paths, dict) and all(isinstance(p, str) and _is_hash(h)
                                                 for p, h in paths.items()):
                for p, h in paths.items():  # {path: hash}: written by ``write``
                    found.add(p)
                    hashes.setdefault(p, set()).add(h)
            else:
                problems.append((partial, f"line {number} is neither a list of paths nor {{path: SHA-256 "
                                          "hex}"))
                break
    for p in hashes:  # a hash proves the content; a time only that nothing changed it since
        unhashed.pop(p, None)
    return found, problems, hashes, unhashed


def _remove_listed(folder: Path, paths: Iterable[str], *, keep: Set[str], hashes: Optional[dict] = None,
                   stamps: Optional[dict] = None, also: Set[str] = frozenset(),
                   suffixes: Iterable[str] = (".png",)) -> tuple:
    """Remove the files ``paths`` (relative to ``folder``) that are not in ``keep`` (this run's files)
    and are regular files inside ``folder`` ending in one of ``suffixes``, still as an earlier run wrote
    them (``_as_written``: ``hashes``, ``stamps``, ``also``; a path in none of them is kept); then the
    folders left empty by it, up to ``folder``. Returns how
    many went, and the paths kept because they changed (the user's). A path that differs from one of
    ``keep`` in case only is kept when it is that very file (``os.path.samefile``: on a macOS or Windows
    disk 'A.png' is this run's 'a.png'), removed when it is another (a case-sensitive disk)."""
    hashes, stamps = hashes or {}, stamps or {}
    changed: list = []
    try:
        top = folder.resolve()
    except (OSError, RuntimeError):
        return 0, changed
    kept: dict = {}
    for k in keep:
        kept.setdefault(k.casefold(), []).append(k)
    removed = 0
    for rel in sorted(paths):
        if rel in keep or _same_as_kept(folder, rel, kept.get(rel.casefold(), ())):
            continue
        path = _inside(top, folder, rel, suffixes)
        if path is None:
            continue
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):  # a link is not followed, nor removed
                continue
            if not _as_written(path, rel, hashes, stamps, also):
                changed.append(rel)  # edited since it was written (or not shown ours): the user's now
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
    return removed, changed


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


def _inside(top: Path, folder: Path, rel: str, suffixes: Iterable[str] = (".png",)) -> Optional[Path]:
    """``folder / rel`` with its folder resolved, when that lies inside ``top`` (``folder`` resolved) and
    the name ends in one of ``suffixes``; None for a path that would leave it (``..``, absolute, a drive,
    a link to a folder elsewhere)."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or not pure.parts or ".." in pure.parts or pure.suffix.lower() not in suffixes \
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
