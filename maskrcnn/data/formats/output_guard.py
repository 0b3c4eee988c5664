"""convert-data's ``--output`` checked against the source it converts, before anything is written.

An existing ``--output`` among the source's files would be lost to the COCO file written at the end: the
user's own labels, images or notes under that name replaced, or, by a link or another spelling, the name
taken from the file they are in (the write is atomic: it replaces the link, not its target). Two checks:

- ``check_under_roots``, before reading: an existing ``--output`` under a folder the source is read from
  (the folder SRC; a YOLO YAML's ``path:`` root and split folders) is refused whatever it holds, a
  notes.txt, an image or the labels of a split not converted alike: which files a reader opens is no
  measure of what the user keeps there. The one exception is this command's own earlier output (a COCO
  instances file: ``images``, ``annotations`` and ``categories`` lists, told by its content), so that a
  re-run works; a new file name under SRC is fine.
- ``FileGuard``, as each file is opened: an ``--output`` outside those folders that is one of the files
  read (a hard link, a symlink, ``..``, another case on a case-insensitive disk; the file's identity, not
  its name, decides) is refused at that file, before more work. Readers pass each annotation file through
  ``Report.reading`` and each image through ``CocoBuilder.add_image``.

The formats that take a known list of files (LabelMe, VIA, Label Studio, CVAT) are also checked against it
before reading (``drop_earlier_output``): LabelMe writes embedded images as it reads, and an earlier COCO
output in the source folder is left out of the conversion with one line saying so, then replaced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

from maskrcnn.data.json_values import read_json_file
from maskrcnn.shell import shell_word


def _stat(path: Path) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except (OSError, ValueError):  # gone, unreadable, a NUL in the name: not the same file as we can tell
        return None


def same_files(output: Path, files: Iterable[Path]) -> list:
    """The ``files`` that are the file ``output`` names (none when it does not exist)."""
    # "lm/new/../b.json": no such file while new/ is missing, but the write makes new/ and lands on b.json
    target = _stat(output) or _stat(Path(os.path.normpath(output)))
    if target is None:
        return []
    return [p for p in files if (s := _stat(p)) is not None and os.path.samestat(s, target)]


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies under ``folder``, as spelt or once its links are followed (the folders are
    compared by identity: ``..`` and another case spell the same one)."""
    top = _stat(folder)
    if top is None:
        return False
    for spelling in (Path(os.path.abspath(path)), Path(path).resolve()):
        if any((s := _stat(p)) is not None and os.path.samestat(s, top) for p in spelling.parents):
            return True
    return False


def is_coco_instances(path: Path) -> bool:
    """Whether ``path`` holds a COCO instances file (what convert-data writes), not some tool's labels."""
    try:
        data = read_json_file(path)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and all(isinstance(data.get(k), list)
                                          for k in ("images", "annotations", "categories"))


def suggested_output(src: Path) -> Path:
    """A COCO file path outside SRC's annotations: beside the folder SRC, or beside the file SRC."""
    src = Path(src)
    if src.is_file():
        return src.with_name(f"{src.stem}_coco.json")
    parent = src.parent if src.name not in ("", "..") else Path(os.path.abspath(src)).parent
    return parent / "coco.json"


def refusal(output: Path, found: Path, *, src: Path, source_format: str,
            kind: str = "annotation files") -> str:
    """The error of an ``--output`` that is the source's annotation file ``found``."""
    # SRC a file: the conversion reads that one file, so it is the one found
    itself = Path(src).is_file() and same_files(found, [Path(src)])
    what = "SRC itself" if itself else f"one of the source's {source_format} {kind}"
    if str(found) != str(output) and not itself:  # a link or another spelling: which file
        what += f" ({found}, by a link or another name)"
    # not "would be written over": a link is replaced, its target kept, yet --output would not be the
    # file the user meant either way
    return (f"--output {output}: is {what} (nothing written); choose another file, e.g. --output "
            f"{shell_word(suggested_output(src))}")


def drop_earlier_output(files: Sequence[Path], *, output: Path, src: Path, source_format: str,
                        report) -> list:
    """``files`` (what the conversion is to read) less ``output`` when that is this command's earlier COCO
    file in the folder SRC (said in one line); ValueError when ``output`` is one of them otherwise."""
    hits = same_files(output, files)
    if not hits:
        return list(files)
    if Path(src).is_dir() and is_coco_instances(hits[0]):
        report.tell(str(output), "left out: a COCO file (an earlier output of convert-data), not "
                                 f"{source_format} annotations; replaced by this conversion")
        return [p for p in files if p not in hits]
    raise ValueError(refusal(output, hits[0], src=src, source_format=source_format))


def source_roots(src: Path, source_format: str) -> list:
    """The folders the conversion of SRC reads under: the folder SRC; YOLO: also its YAML's ``path:`` root
    and split folders (``yolo.read_roots``). A file SRC of the other formats: none (the file is checked
    itself, as each file read is)."""
    src = Path(src)
    roots = [src] if src.is_dir() else []
    if source_format == "yolo":
        from maskrcnn.data.formats.yolo import read_roots

        roots += read_roots(src)
    return roots


def check_under_roots(output: Path, *, src: Path, source_format: str) -> None:
    """ValueError when an existing ``output`` lies under a folder the source is read from
    (``source_roots``) and is no COCO instances file: called before reading."""
    if (_stat(output) or _stat(Path(os.path.normpath(output)))) is None:
        return  # a new name: nothing of the user's there
    root = next((r for r in source_roots(src, source_format) if _inside(output, r)), None)
    if root is None or is_coco_instances(output):
        return
    if Path(src).is_file() and same_files(output, [Path(src)]):  # a YOLO YAML: said as what it is
        raise ValueError(refusal(output, Path(src), src=src, source_format=source_format))
    # a notes.txt or an image is refused as a label file is: the COCO file would replace it all the same
    raise ValueError(f"--output {output}: is a file under {root}, a folder the {source_format} source is "
                     f"read from, and no COCO file of convert-data (nothing written); choose another file, "
                     f"e.g. --output {shell_word(suggested_output(src))}")


class OutputIsSource(RuntimeError):
    """``--output`` is a file the conversion opened: not a ValueError, so that no reader takes it for a
    bad record and skips it; said as the command's error."""


class FileGuard:
    """Called with each file the conversion opens (``Report.reading``, ``CocoBuilder.add_image``):
    ``OutputIsSource`` at once when it is the existing ``output``. ``output`` is stat'ed once; each file
    costs one stat, and nothing is kept."""

    def __init__(self, *, output: Path, src: Path, source_format: str):
        self.output = Path(output)
        self.src = Path(src)
        self.source_format = source_format
        # "lm/new/../b.json": no such file while new/ is missing, but the write makes new/ and lands on it
        self._target = _stat(self.output) or _stat(Path(os.path.normpath(self.output)))

    def __call__(self, path: Path, *, kind: str = "annotation files") -> Path:
        if self._target is not None and (s := _stat(path)) is not None and os.path.samestat(s, self._target):
            raise OutputIsSource(refusal(self.output, Path(path), src=self.src,
                                         source_format=self.source_format, kind=kind))
        return path
