"""``predict``'s results file as it is written: ``predictions.partial.jsonl`` appended image by image,
``predictions.json`` at the end (``ResultsWriter``), and the side file a killed run left read back
(``read_partial_results``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from maskrcnn.io_utils import atomic_write_json

__all__ = ["ResultsWriter", "read_partial_results"]


class ResultsWriter:
    """Results as they are produced: each image's records are appended (and flushed) to
    ``predictions.partial.jsonl``, so a run killed late keeps what it did; ``finish`` writes
    ``predictions.json`` atomically (also after an error or an interrupt) and removes the side file.
    The side file is opened at the first image's results: until then an earlier run's files stay as they
    are. A write that fails (a full disk) names the side file.
    Both are ASCII (non-ASCII as ``\\u`` escapes, read back exactly): predictions.json is for COCO
    readers (pycocotools ``loadRes`` opens it with the locale's encoding), and a file name that is not
    valid UTF-8 (lone surrogates from ``os.fsdecode``) is the escape ``\\udce9`` instead of an error that
    would lose every image's results."""

    def __init__(self, out_dir: Path):
        self.final = out_dir / "predictions.json"
        self.partial = out_dir / "predictions.partial.jsonl"
        self.results: list = []
        self._file = None

    def add(self, records: list) -> None:
        self.results.extend(records)
        try:
            if self._file is None:
                self._file = open(self.partial, "w", encoding="utf-8", errors="backslashreplace")
            self._file.write("".join(json.dumps(r) + "\n" for r in records))
            self._file.flush()
        except OSError as e:
            if e.filename is not None:
                raise
            raise OSError(e.errno, f"{e.strerror or e} (appending an image's results; those of the earlier "
                                   "images are kept)", str(self.partial)) from e

    def finish(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # the flush of a full disk: the results are in memory, written just below
                pass
        atomic_write_json(self.final, self.results, ensure_ascii=True)
        self.partial.unlink(missing_ok=True)


def read_partial_results(path) -> list:
    """The records of a ``predictions.partial.jsonl`` left by a killed run. Its last line may be cut
    mid-record (a kill or a full disk during the append): that line is dropped with a warning; a bad line
    before the last one is an error naming the file and the line."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if any(rest.strip() for rest in lines[number:]):
                raise ValueError(f"{path}: line {number} is not a JSON record ({e.msg})") from None
            warnings.warn(f"{path}: the last line is cut short (the run writing it was stopped mid-record): "
                          f"dropped, {len(records)} record(s) read", stacklevel=2)
    return records
