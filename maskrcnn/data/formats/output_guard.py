"""convert-data's ``--output`` checked against the files the conversion reads.

An existing ``--output`` that is one of the source's annotation files (by any spelling: relative or
absolute, a symlink, a hard link, another case on a case-insensitive disk; the file's identity, not its
name, decides) would be lost to the COCO file written at the end: the user's own labels under that name
replaced, or, by a link or another spelling, the name taken from the file they are in (the write is
atomic: it replaces the link, not its target). It is refused before anything is read or written. The
formats that pick their files by suffix (YOLO, VOC, Cityscapes) are checked against the folders they read
under: the folder SRC, a file SRC's folder and a YOLO YAML's ``path:`` root. The one exception is this
command's own earlier output written into the source folder (a re-run): a COCO instances file
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

# the formats whose readers pick their files by suffix under SRC (a label .txt, a VOC .xml, a Cityscapes
# instanceIds .png or polygons .json): an output of one of these suffixes inside SRC may be read
READ_SUFFIXES = {"yolo": (".yaml", ".yml", ".txt"), "voc": (".xml", ".txt", ".png"),
                 "cityscapes": (".png", ".json")}


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


def read_roots(src: Path, source_format: str) -> list:
    """The folders the conversion of SRC reads its files under: the folder SRC (a file SRC: its folder),
    and for YOLO the YAML's ``path:`` root as its reader resolves it."""
    if source_format == "yolo":
        from maskrcnn.data.formats.yolo import read_roots as yolo_roots

        return yolo_roots(src)
    return [Path(src) if Path(src).is_dir() else Path(src).parent]


def check_by_suffix(output: Path, *, src: Path, source_format: str) -> None:
    """ValueError when an existing ``output`` is SRC itself or lies under a folder the conversion reads
    (``read_roots``) with a suffix the format reads there (a COCO file is none of those formats'
    annotations: let through)."""
    src = Path(src)
    if src.is_file() and same_files(output, [src]):
        raise ValueError(refusal(output, src, src=src, source_format=source_format))
    suffixes = READ_SUFFIXES.get(source_format, ())
    output = Path(os.path.normpath(output)) if _stat(output) is None else Path(output)
    if (_stat(output) is not None and Path(output).suffix.lower() in suffixes
            and any(_inside(output, root) for root in read_roots(src, source_format))
            and not is_coco_instances(output)):
        raise ValueError(refusal(output, Path(output), src=src, source_format=source_format))
