"""convert-data's ``--output`` checked against the files the conversion reads.

An existing ``--output`` that is one of the source's annotation files (by any spelling: relative or
absolute, a symlink, a hard link, another case on a case-insensitive disk; the file's identity, not its
name, decides) would be lost to the COCO file written at the end: the user's own labels under that name
replaced, or, by a link or another spelling, the name taken from the file they are in (the write is
atomic: it replaces the link, not its target). It is refused before anything is written.

One mechanism for every format: each reader records the annotation files it reads on its ``Report``
(``Report.reading``; ``read_files``), and ``check_read`` compares ``--output`` with exactly those once
the source is read. A file the reader does not read (a ``notes.txt`` beside a VOC tree, another YAML
beside a YOLO one, the labels of a split not converted) is no source file and may be the output. The
formats that take a known list of files (LabelMe, VIA, Label Studio, CVAT) are also checked against it
before reading: LabelMe writes embedded images as it reads, and this command's own earlier output
written into the source folder (a re-run) must be left out before it is read: a COCO instances file
(``images``, ``annotations`` and ``categories`` lists) is no LabelMe, VIA or Label Studio file, so it is
told apart by its content and left out of the conversion with one line saying so, then replaced as any
output is.
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


def refusal(output: Path, found: Path, *, src: Path, source_format: str) -> str:
    """The error of an ``--output`` that is the source's annotation file ``found``."""
    # SRC a file: the conversion reads that one file, so it is the one found
    itself = Path(src).is_file() and same_files(found, [Path(src)])
    what = "SRC itself" if itself else f"one of the source's {source_format} annotation files"
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


def check_read(output: Path, read: Iterable[Path], *, src: Path, source_format: str) -> None:
    """ValueError when an existing ``output`` is one of the files the conversion ``read`` (the reader's
    ``Report.read_files``): called once the source is read, before anything is written."""
    hits = same_files(output, dict.fromkeys(read))  # a file read twice (a YAML and its list) stat'ed once
    if hits:
        raise ValueError(refusal(output, hits[0], src=src, source_format=source_format))
