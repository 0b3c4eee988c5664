"""Files of ``maskrcnn eval --analysis``: analysis.json, the confusion matrix as CSV and PNG, and
drawings of the images with the most errors.

Shapes: K categories; a confusion matrix (K + 1, K + 1) of counts, rows the ground-truth classes and
"background", columns the predicted classes and "missed" (``error_analysis.analyse``).

- ``analysis.json``: {"score_threshold", "bbox": analysis, "segm": analysis} (``error_analysis.analyse``;
  segm when masks were scored);
- ``confusion.csv`` / ``confusion.png``: the box analysis' matrix; ``confusion_segm.csv`` /
  ``confusion_segm.png`` the mask analysis' (PNG only when matplotlib, the ``viz`` extra, is there);
- ``analysis_images/NNN_<file>.png``: the N images with the most errors (``visualize_errors.py``),
  worst first, drawn from the mask analysis when there is one.

Every file is written atomically (``io_utils``); an image that cannot be read or drawn is reported and
skipped (metrics.json is written before: a drawing never fails the command). An image is drawn on the
pixels its record's annotations lie on, as the COCO reader reads it (a photo whose record gives its stored
size, unturned).
"""

from __future__ import annotations

import csv
import io
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from maskrcnn.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text
from maskrcnn.shown_text import mpl_literal, short_name

__all__ = ["confusion_csv", "plot_confusion", "spreadsheet_safe", "worst_images", "write_analysis"]


# A cell starting with one of these is read as a formula by Excel / LibreOffice: a class named
# '=HYPERLINK("http://x","y")' became a live link in confusion.csv (CSV injection)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell):
    """``cell`` as a CSV cell a spreadsheet shows as text: a string starting with ``=``, ``+``, ``-``,
    ``@``, a tab or a CR gets a leading apostrophe (OWASP's advice; the spreadsheet hides it); numbers and
    other strings are left as they are (the JSON files keep the names whole)."""
    return "'" + cell if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS) else cell


def confusion_csv(confusion: dict) -> str:
    """The matrix as CSV: a header row (``ground truth \\ predicted`` and the columns), then one row per
    ground-truth class and "background"; names through ``spreadsheet_safe``."""
    rows = [["ground truth \\ predicted"] + [spreadsheet_safe(c) for c in confusion["columns"]]]
    rows += [[spreadsheet_safe(name)] + [int(v) for v in counts]
             for name, counts in zip(confusion["rows"], confusion["counts"])]
    return "".join(_csv_line(row) for row in rows)


def _csv_line(row: list) -> str:
    """One CSV row ending in "\\n". Written with the "\\r\\n" terminator and that cut off: csv quotes only
    fields holding a character of its terminator, so with "\\n" a name holding a CR was left unquoted and
    ended its row there for every reader."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(row)
    return buf.getvalue()[:-2] + "\n"


def plot_confusion(confusion: dict, png_path, *, title: str = "") -> Optional[Path]:
    """The matrix as a heat map with its counts written in the cells (as ``logger.plot_curves`` draws:
    Agg, written atomically); None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    import numpy as np

    counts = np.asarray(confusion["counts"], dtype=np.int64).reshape(len(confusion["rows"]), -1)  # (K+1, K+1)
    # names as pictures show them (control characters escaped, at most 40 columns; the CSV has them whole),
    # drawn as written: "$x$" is no formula, "a$b $c" no mathtext error
    rows = [mpl_literal(short_name(n)) for n in confusion["rows"]]
    cols = [mpl_literal(short_name(n)) for n in confusion["columns"]]
    side = min(30.0, 2.5 + 0.45 * max(len(rows), len(cols)))
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    # each row scaled by its largest cell: a frequent class does not wash out the rare ones
    shade = counts / np.maximum(counts.max(axis=1, keepdims=True), 1)  # (K+1, K+1)
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if len(rows) <= 40:  # beyond that the numbers are unreadable; the CSV has them
        for (i, j), v in np.ndenumerate(counts):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if shade[i, j] > 0.6 else "black")
    ax.set_title(mpl_literal(title or "confusion matrix"))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    png_path = Path(png_path)
    atomic_write_bytes(png_path, buf.getvalue())
    return png_path


def worst_images(matches: list, n: int) -> list:
    """The ``n`` ImageMatches with the most errors (none without), worst first, ties in image order."""
    from maskrcnn.engine.error_analysis import ERROR_KEYS

    scored = [(sum(m.counts()[k] for k in ERROR_KEYS), i) for i, m in enumerate(matches)]
    ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
    return [matches[i] for _, i in ranked[:max(0, int(n))]]


def _safe_stem(file_name) -> str:
    stem = Path(str(file_name)).stem if file_name else "image"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "image"


def write_analysis(
    output,
    analyses: dict,
    *,
    matches: Optional[dict] = None,
    ground_truth: Optional[dict] = None,
    images_dir=None,
    draw: int = 0,
    unturned: Optional[set] = None,
) -> List[Path]:
    """Write the analysis files into ``output``; returns their paths. ``analyses``: {iou type: analysis}
    (bbox and / or segm). ``draw`` > 0 draws that many images (``matches`` {iou type: ImageMatch list},
    ``ground_truth`` the COCO dict, ``images_dir`` their folder needed). ``unturned``: the ids of images
    the evaluation read on their stored pixels (``CocoDataset.unturned_ids``), drawn so too."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    first = next(iter(analyses.values()))
    atomic_write_json(out / "analysis.json", dict({"score_threshold": first["score_threshold"]}, **analyses))
    written.append(out / "analysis.json")
    for kind, analysis in analyses.items():
        stem = "confusion" if kind == "bbox" else f"confusion_{kind}"
        atomic_write_text(out / f"{stem}.csv", confusion_csv(analysis["confusion"]))
        written.append(out / f"{stem}.csv")
        title = (f"{kind}: score >= {analysis['score_threshold']:g}, IoU >= {analysis['iou_threshold']:g}")
        png = plot_confusion(analysis["confusion"], out / f"{stem}.png", title=title)
        if png is None:
            warnings.warn("matplotlib is not installed (the 'viz' extra): confusion matrices written as CSV "
                          "only", stacklevel=2)
        else:
            written.append(png)
    if draw > 0 and matches:
        written += _draw_worst(out / "analysis_images", matches, ground_truth, images_dir, draw,
                               unturned=unturned or set())
    return written


def _draw_worst(folder: Path, matches: dict, ground_truth: dict, images_dir, n: int, *,
                unturned: set = frozenset()) -> List[Path]:
    from maskrcnn.data.coco import category_names
    from maskrcnn.visualize_errors import draw_errors

    kind = "segm" if "segm" in matches else "bbox"
    names = category_names(ground_truth)
    images = {img["id"]: img for img in ground_truth["images"]}
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, match in enumerate(worst_images(matches[kind], n)):
        info = images[match.image_id]
        path = Path(images_dir) / str(info.get("file_name", ""))
        try:
            image = _read_as_annotated(path, info, unturned=match.image_id in unturned)  # (3, H, W)
        except (OSError, ValueError) as e:  # ImageReadError is a ValueError
            print(f"analysis: skipping image {path}: {e}", file=sys.stderr)
            continue
        target = folder / f"{rank + 1:03d}_{_safe_stem(info.get('file_name'))}.png"
        try:
            size = tuple(image.shape[-2:])
            if size != _record_size(info):
                raise ValueError(f"the image is {size[0]}x{size[1]} (HxW), its record "
                                 f"{_record_size(info)[0]}x{_record_size(info)[1]}")
            picture = draw_errors(image, match, names, masks=kind == "segm")
            buf = io.BytesIO()
            picture.save(buf, format="PNG")
            atomic_write_bytes(target, buf.getvalue())
        except Exception as e:  # noqa: BLE001 -- metrics.json is written already: a drawing never fails eval
            print(f"analysis: skipping image {path}: cannot draw it ({type(e).__name__}: {e})",
                  file=sys.stderr)
            continue
        written.append(target)
    return written


def _record_size(info: dict) -> tuple:
    """(H, W) an image record gives (its annotations' and detections' frame)."""
    return int(info["height"]), int(info["width"])


def _read_as_annotated(path: Path, info: dict, *, unturned: bool = False):
    """(3, H, W) the image of record ``info`` on the pixels its annotations and detections lie on, read as
    the COCO reader reads it (``images.drawn_on_stored_pixels``): unturned when the record gives the
    file's stored size and EXIF turns it by a quarter (the annotating tool showed the stored pixels, and
    eval predicted on those), or when the evaluation read it so (``unturned``: a photo turned 180 degrees
    or mirrored, by its file's evidence), else upright. Turned regardless, such a photo's masks did not
    fit it."""
    from maskrcnn.data.images import drawn_on_stored_pixels, image_header, read_image

    if unturned:
        return read_image(path, orient=False)
    stored, orientation = image_header(path)
    return read_image(path, orient=not drawn_on_stored_pixels(_record_size(info), stored, orientation))
