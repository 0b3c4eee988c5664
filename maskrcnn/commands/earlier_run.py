"""An earlier ``predict`` run's files in the ``--output`` folder: what it holds, for the note said up
front (``earlier_run``; a large results file scanned for two fields only, ``scan_records``), and its
overlays of images this run did not draw, removed once this run's first image is done
(``remove_earlier_overlays``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from maskrcnn.commands.results_writer import read_partial_results

__all__ = ["LARGE_RESULTS_BYTES", "earlier_run", "remove_earlier_overlays", "scan_records"]


# An earlier predictions.json larger than this is not read for the up-front note (with RLE masks it can
# hold gigabytes): the note gives its size instead of its images' count.
LARGE_RESULTS_BYTES = 64 * 1024 * 1024


def earlier_run(out_dir: Path, listed=frozenset()) -> tuple:
    """(results, overlays, stems, paths) of an earlier run in ``out_dir``: the words the note gives its
    results ("3 image(s) with detections in its predictions", or a large file's size; "" when there are
    none; ``listed``, the overlays its ``overlays/written.json`` lists, relative to overlays/, counts the
    images drawn without detections too, which have no record, when the list is known to be the same
    run's as the records (each names its overlay, and each of those is listed): "3 image(s) with
    detections in its predictions, 1 more drawn without detections"), the PNGs
    under overlays/, the stems of the images named (``file_name``) by its records that have no
    ``overlay`` field (the overlays of runs before that field were named after them, flat; a record
    with the field says where its overlay is, and a flat PNG of the same stem is not its) and the overlay
    paths its records name (``overlay``, relative to ``out_dir``). Its predictions.json, or for a killed
    run predictions.partial.jsonl, is read here, before this run writes its own; one above
    ``LARGE_RESULTS_BYTES`` is scanned for those two fields only."""
    final, partial = out_dir / "predictions.json", out_dir / "predictions.partial.jsonl"
    source = final if final.is_file() else partial if partial.is_file() else None
    words, stems, paths = "", set(), set()
    try:
        size = source.stat().st_size if source is not None else 0
        if source is not None and size > LARGE_RESULTS_BYTES:
            found = scan_records(source)
            stems = {Path(name).stem for name, has_overlay, _ in found
                     if isinstance(name, str) and not has_overlay}
            paths = {overlay for _, _, overlay in found if isinstance(overlay, str)}
            words = f"{source.name} of {size / 1e6:.0f} MB, not read to count its images"
        elif source is not None:
            records = json.loads(final.read_text(encoding="utf-8")) if source == final else \
                read_partial_results(partial)
            records = [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
            names = {r.get("file_name", r.get("image_id")) for r in records}
            stems = {Path(n).stem for n in (r.get("file_name", r.get("image_id")) for r in records
                                             if "overlay" not in r) if isinstance(n, str)}
            paths = {r["overlay"] for r in records if isinstance(r.get("overlay"), str)}
            # an overlay listed that no record names is an image drawn without detections only when the
            # list is the records' run's: a run that drew overlays names one in every record and lists
            # each. A --no-overlays run leaves the list of the run before it (its overlays are not this
            # file's images), and records naming no overlay, or none at all, tell nothing of the list
            listed_paths = {f"overlays/{p}" for p in listed}
            same_run = bool(records) and all(isinstance(r.get("overlay"), str) for r in records) \
                and paths <= listed_paths
            bare = len(listed_paths - paths) if same_run else 0
            words = ", ".join(([f"{len(names)} image(s) with detections in its predictions"] if names else [])
                              + ([f"{bare} more drawn without detections"] if bare else []))
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    overlays = out_dir / "overlays"
    count = sum(1 for p in overlays.rglob("*.png") if p.is_file()) if overlays.is_dir() else 0
    return words, count, stems, paths


# In a results file: the text up to the next token, strings other than the two fields' names skipped whole
# (a brace inside a file name is text); then the token: a brace (group 1), the name of a "file_name" or
# "overlay" field (group 2) and its value when it is a string (group 3), or the quote of a string that the
# end of what has been read so far cuts (group 4). Written unrolled (one way to split the text): the
# long RLE strings go by without backtracking.
_STRING = r'[^"\\]*(?:\\.[^"\\]*)*'
_RESULTS_TOKEN = re.compile(rf'[^"{{}}]*(?:"(?!(?:file_name|overlay)"\s*:){_STRING}"[^"{{}}]*)*'
                            rf'(?:([{{}}])|"(file_name|overlay)"\s*:\s*(?:"({_STRING})")?|("))')


def scan_records(path: Path, chunk: int = 1 << 20) -> set:
    """(file_name, has an overlay field, overlay) of each record of a large results file (None for a
    field a record lacks or whose value is not a string), read a chunk at a time; only the two fields'
    values are decoded. Memory: a chunk, the largest record and the values, not the file's records."""
    found, text = set(), ""
    with open(path, encoding="utf-8", errors="replace") as f:
        while True:
            block = f.read(chunk)
            text += block
            depth, done = 0, 0  # ``text`` starts between records: after the last one closed so far
            name = overlay = None
            has_overlay = False
            for match in _RESULTS_TOKEN.finditer(text):
                brace, field, value = match.group(1), match.group(2), match.group(3)
                if match.group(4):
                    break  # a string cut by the end of the block: this record is read again with the next
                if brace == "{":
                    depth += 1
                    if depth == 1:
                        name = overlay = None
                        has_overlay = False
                elif brace == "}":
                    depth = max(depth - 1, 0)
                    if depth == 0:
                        found.add((name, has_overlay, overlay))
                        done = match.end()
                elif depth == 1:  # a field of the record, not of its segmentation
                    try:
                        value = None if value is None else json.loads(f'"{value}"')
                    except ValueError:
                        value = None
                    if field == "file_name":
                        name = value
                    else:
                        has_overlay, overlay = True, value
            if not block:
                return found
            text = text[done:]


def remove_earlier_overlays(out_dir: Path, earlier_stems: set, earlier_paths: set, written: set) -> int:
    """Remove the earlier run's overlays of images this run did not draw: those its records name
    (``overlay``, relative to ``out_dir``; only inside overlays/, whatever a record says) and, of runs
    that wrote flat names, the PNGs directly in overlays/ named after the images its records without an
    ``overlay`` field name (``earlier_stems``: ``<stem>.png``, ``<stem>_2.png``, ...), that this run did
    not write (``written``: paths relative to overlays/). Sub-folders left empty go too. The folder then
    shows this run's images only, as predictions.json holds them; other PNGs (the user's own) stay.
    Returns how many were removed."""
    overlay_dir = out_dir / "overlays"
    if not (earlier_stems or earlier_paths) or not overlay_dir.is_dir():
        return 0
    top = overlay_dir.resolve()
    # Each file once, by its folder's resolved path: 'overlays/../overlays/y.png' is 'overlays/y.png'. The
    # file's own name is not followed: a link is removed, never what it points to.
    doomed = set()
    for rel in earlier_paths:
        try:
            given = out_dir / rel
            p = given.parent.resolve() / given.name
            inside = p.suffix.lower() == ".png" and top in p.parents and top in p.resolve().parents
        except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            continue
        if inside and p.relative_to(top).as_posix() not in written and p.is_file():
            doomed.add(p)
    for p in overlay_dir.glob("*.png"):
        base, _, number = p.stem.rpartition("_")
        earlier = p.stem in earlier_stems or (base in earlier_stems and number.isdigit() and int(number) >= 2)
        if earlier and p.name not in written and p.is_file():
            doomed.add(top / p.name)
    removed = 0
    for p in doomed:
        try:
            p.unlink()
            removed += 1
            folder = p.parent
            while folder != top and top in folder.parents and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        except OSError:  # gone meanwhile, or not ours to remove: this runs in predict's finally block, where
            pass  # an error would lose the exports still to be written and hide the run's own error
    return removed
