"""The best checkpoint and early stopping: one evaluation metric followed across a run's evaluations.

``solver.best_metric`` names the metric as ``iou_type/metric`` (``segm/AP``, ``bbox/AP50``,
``keypoints/AP``: the keys of ``CocoEvaluator.evaluate``'s results, AP in percent); ``auto`` (the
default) is ``segm/AP`` for a model with masks, else ``bbox/AP``; ``none`` turns it off. Every metric
here is higher-is-better.

``BestTracker`` is the bookkeeping alone (no files, no model): ``update(value, iteration)`` says whether
the value beats the best so far (strictly: a tie keeps the earlier, already written best) and counts
the evaluations without improvement for early stopping. As in Keras and Lightning, an evaluation resets
that count only when it is at least ``min_delta`` above the value that last reset it, so slow creeping
gains add up rather than each being too small; with ``min_delta`` 0 any improvement resets it. A NaN
(COCO's "no ground truth in that size range", e.g. ``bbox/APs`` on a set without small objects) is
neither an improvement nor a miss: the evaluation is left out.

``state_dict()`` / ``load_state_dict()`` carry the best value and iteration, the reference, the count
and the last evaluated iteration: the trainer keeps them in its checkpoints, so a resumed run writes the
best model and stops when an uninterrupted run would. Plain floats and ints only (checkpoints load with
``weights_only=True``).
"""

from __future__ import annotations

import difflib
import math
from typing import Optional, Sequence

__all__ = [
    "METRICS", "BestTracker", "metric_name_problem", "metric_value", "numeric_metrics", "resolve_metric",
    "unavailable_metric_problem",
]

OFF = "none"
AUTO = "auto"

# The metrics CocoEvaluator.evaluate reports per IoU type, in the order of COCOeval.stats (engine/evaluator.py
# derives its _STAT_INDEX from them). Kept here, free of torch and pycocotools, so that checking a config
# imports neither.
METRICS = {
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "segm": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl"),
}

_KNOWN = [f"{t}/{m}" for t, names in METRICS.items() for m in names]


def is_off(name: Optional[str]) -> bool:
    return name is None or str(name).strip().lower() == OFF


def metric_name_problem(name: Optional[str]) -> str:
    """Why ``name`` cannot be a ``solver.best_metric`` (empty when it can)."""
    if is_off(name) or str(name).strip().lower() == AUTO:
        return ""
    if not str(name).strip():  # `--set solver.best_metric=` from an unset shell variable: not "off"
        return "solver.best_metric is empty: give auto, none or iou_type/metric (e.g. segm/AP)"
    if name in _KNOWN:
        return ""
    near = difflib.get_close_matches(str(name), _KNOWN, n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return (f"solver.best_metric must be auto, none or iou_type/metric: bbox, segm or keypoints / AP, AP50, "
            f"AP75, APs, APm or APl (keypoints: no APs), got {name!r}{hint}")


def resolve_metric(name: Optional[str], *, mask_on: bool) -> Optional[str]:
    """The metric ``name`` stands for (``auto``: ``segm/AP`` with masks, else ``bbox/AP``); None when off."""
    if is_off(name):
        return None
    if str(name).strip().lower() == AUTO:
        return "segm/AP" if mask_on else "bbox/AP"
    return str(name)


def unavailable_metric_problem(metric: str, iou_types: Sequence[str]) -> str:
    """Why a model evaluated on ``iou_types`` cannot report ``metric`` (empty when it can): checked before
    training, not at the first evaluation hours in."""
    if metric.split("/", 1)[0] in iou_types:
        return ""
    offered = [f"{t}/{m}" for t in iou_types for m in METRICS.get(t, ())]
    return (f"solver.best_metric {metric}: this model is evaluated on {', '.join(iou_types)} only; choose "
            f"one of {', '.join(offered)} (or none)")


def numeric_metrics(results: dict) -> list:
    """The ``iou_type/metric`` names of ``results`` that hold a number (per-category tables left out)."""
    return [f"{t}/{m}" for t, row in (results or {}).items() if isinstance(row, dict)
            for m, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def metric_value(results: dict, metric: str) -> float:
    """``results[iou_type][metric]`` as a float; ValueError naming the metrics ``results`` does have."""
    iou_type, _, name = metric.partition("/")
    value = (results.get(iou_type) or {}).get(name) if isinstance(results, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        have = numeric_metrics(results)
        raise ValueError(f"solver.best_metric {metric}: the evaluation does not report it; it reports "
                         f"{', '.join(have) or 'nothing'} (choose one of them, or none)")
    return float(value)


class BestTracker:
    """The best value of one metric over a run's evaluations, and the count for early stopping.

    Args:
        metric: ``iou_type/metric``, higher is better.
        patience: evaluations in a row without an improvement of at least ``min_delta`` that stop the
            run; 0: never stop.
        min_delta: the improvement (in the metric's units: AP points) that resets the count.
    """

    def __init__(self, *, metric: str, patience: int = 0, min_delta: float = 0.0):
        if patience < 0 or not min_delta >= 0 or not math.isfinite(min_delta):  # also refuses NaN
            raise ValueError(f"patience must be >= 0 and min_delta a finite number >= 0, got {patience}, "
                             f"{min_delta}")
        self.metric = str(metric)
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.value: Optional[float] = None  # the best so far; None before the first counted evaluation
        self.iteration = -1  # where the best was evaluated
        self.reference: Optional[float] = None  # the value that last reset the count
        self.waited = 0  # evaluations in a row without a min_delta improvement
        self.evaluated_at = -1  # the last iteration evaluated (whatever came of it)

    @property
    def stop(self) -> bool:
        """True once ``patience`` evaluations in a row went without improvement (never with patience 0)."""
        return self.patience > 0 and self.waited >= self.patience

    def update(self, value: float, iteration: int) -> bool:
        """Count one evaluation; True when ``value`` is a new best (the caller writes the best model)."""
        self.evaluated_at = int(iteration)
        value = float(value)
        if math.isnan(value):
            return False
        # (a hair of tolerance: 35.3 - 35.2 is 0.0999... in floating point)
        gain = float("inf") if self.reference is None else value - self.reference
        if gain > 0 and gain >= self.min_delta - 1e-9:
            self.reference, self.waited = value, 0
        else:
            self.waited += 1
        improved = self.value is None or value > self.value
        if improved:
            self.value, self.iteration = value, int(iteration)
        return improved

    def summary(self) -> dict:
        """``{"metric", "value", "iteration"}`` of the best so far (value None before any)."""
        return {"metric": self.metric, "value": self.value, "iteration": self.iteration}

    def state_dict(self) -> dict:
        return {**self.summary(), "reference": self.reference, "waited": self.waited,
                "evaluated_at": self.evaluated_at}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s values (the caller checks that ``state["metric"]`` is this one's)."""
        value, reference = state.get("value"), state.get("reference")
        self.value = None if value is None else float(value)
        self.iteration = int(state.get("iteration", -1))
        self.reference = None if reference is None else float(reference)
        self.waited = int(state.get("waited", 0))
        self.evaluated_at = int(state.get("evaluated_at", -1))
