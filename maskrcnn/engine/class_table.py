"""The per-class table ``maskrcnn eval`` prints after its AP table: bbox and segm AP and AP50 of each
class, its ground-truth instances and its detections at the analysis score threshold, worst class first.

Shapes: K categories, one row each. Rows are plain dicts: ``name``, ``category_id``, ``ground_truth``,
``detections``, and ``bbox_AP``, ``bbox_AP50``,
``segm_AP``, ``segm_AP50`` for the kinds evaluated (percent; None where undefined: a class without
ground truth). Worst first: by segm AP when masks were scored, else bbox AP; undefined last; classes
tied at the 2 decimals shown by bbox AP next, then by name.
"""

from __future__ import annotations

import math
from typing import Optional

from maskrcnn.data.coco import category_names
from maskrcnn.shown_text import short_name
from maskrcnn.text_width import display_width, pad

__all__ = ["class_rows", "format_class_table"]

_KINDS = ("bbox", "segm")


def _number(value) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def class_rows(metrics: dict, ground_truth: dict, counts: dict) -> list:
    """Rows for each category of ``ground_truth`` (a COCO dict), from ``metrics`` (the evaluator's:
    ``per_category`` and ``per_category_AP50`` by name) and ``counts`` ({category id: (ground-truth
    instances, detections)}, ``error_analysis.instance_counts``), worst first."""
    kinds = [k for k in _KINDS if k in metrics]
    rows = []
    for cid, name in category_names(ground_truth).items():
        gt, dets = counts.get(cid, (0, 0))
        row = {"name": name, "category_id": cid, "ground_truth": gt, "detections": dets}
        for kind in kinds:
            row[f"{kind}_AP"] = _number(metrics[kind].get("per_category", {}).get(name))
            row[f"{kind}_AP50"] = _number(metrics[kind].get("per_category_AP50", {}).get(name))
        rows.append(row)
    keys = [f"{kind}_AP" for kind in reversed(kinds)]  # segm first when scored, then bbox

    def worst_first(row):
        # compared as shown (2 decimals): classes the table shows tied go by the next AP, then by name
        values = [row.get(key) for key in keys]
        return (*((v is None, round(v, 2) if v is not None else 0.0) for v in values), str(row["name"]))

    return sorted(rows, key=worst_first)


def format_class_table(rows: list, score_threshold: float) -> str:
    """A plain text table of ``class_rows``: one line per class, AP columns in percent ("-": undefined)."""
    kinds = [k for k in _KINDS if rows and f"{k}_AP" in rows[0]]
    names = [short_name(r["name"]) for r in rows]  # one line each, at most 40 columns (JSON has them whole)
    width = max([len("class")] + [display_width(n) for n in names]) + 2  # 葉: 2 columns
    columns = [(f"{k}_{m}", f"{k} {m}") for k in kinds for m in ("AP", "AP50")]
    header = (f"{'class':{width}s}" + "".join(f"{title:>11s}" for _, title in columns)
              + f"{'gt':>7s}{f'dets>={score_threshold:g}':>11s}")
    lines = [header]
    for r, name in zip(rows, names):
        cells = "".join(f"{'-':>11s}" if r[k] is None else f"{r[k]:11.2f}" for k, _ in columns)
        lines.append(f"{pad(name, width)}{cells}{r['ground_truth']:7d}{r['detections']:11d}")
    return "\n".join(lines)
