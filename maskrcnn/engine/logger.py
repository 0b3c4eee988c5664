"""Training logs: console progress with ETA, ``metrics.jsonl``, TensorBoard (optional), curve PNG.

Only the main process logs (the trainer gives other ranks ``enabled=False``).

``metrics.jsonl``: one JSON object per line. Training records ``{"iteration": i, "loss": total,
"loss_rpn_cls": .., ..., "lr": .., "time": s/iter, "data_time": ..}`` (``iteration`` counts finished
iterations, 1-based); evaluation records ``{"iteration": i, "bbox/AP": .., "segm/AP": .., ...}``, or
``{"iteration": i, "evaluated": 0}`` for an evaluation that returned no results (nothing evaluated).
A value that is not a finite number (``bbox/APm`` when the validation set has no medium-sized object is
NaN) is written as ``null``, as ``maskrcnn eval``'s ``metrics.json`` writes it: JSON has no NaN, and
strict readers (JavaScript's ``JSON.parse``, jq) refuse the bare token. ``read_metrics`` reads a ``null``
back as NaN.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, TextIO

from maskrcnn.io_utils import atomic_write_bytes, atomic_write_text, json_safe


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def record_line(record: dict) -> str:
    """One metrics.jsonl line: non-finite numbers as ``null`` (valid JSON for every reader)."""
    return json.dumps(json_safe(record), allow_nan=False) + "\n"


def read_metrics(path) -> List[dict]:
    """All records of a metrics.jsonl (a torn last line from a crash is skipped); a ``null`` value (a NaN
    when written) is read as NaN, so that the records hold numbers only."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append({k: float("nan") if v is None else v for k, v in record.items()})
    return records


def truncate_metrics(path, last_iteration: int, *, drop_eval_at_last: bool = False) -> None:
    """Keep only records up to ``last_iteration`` (on resume: drop what the killed run logged after its
    last checkpoint, which the resumed run will log again); ``drop_eval_at_last``: also the evaluation
    record of ``last_iteration`` (the resumed run evaluates it again: its checkpoint predates it)."""
    path = Path(path)
    if not path.is_file():
        return

    def kept_record(r: dict) -> bool:
        it = int(r.get("iteration", 0))
        is_eval = "loss" not in r  # log_iteration's records have the total loss, log_eval's do not
        return it < last_iteration or it == last_iteration and not (drop_eval_at_last and is_eval)

    kept = [r for r in read_metrics(path) if kept_record(r)]
    # nothing to drop (a resume of a finished run): the file is not touched
    atomic_write_text(path, "".join(record_line(r) for r in kept), unless_same=True)


def eval_record(path, iteration: int) -> Optional[dict]:
    """The evaluation record of ``iteration`` in a metrics.jsonl as ``log_eval`` was given it
    (``{"bbox": {"AP": ..}, "segm": {..}}``, NaN for ``null``; the last one if several); ``{}`` for the
    record of an evaluation that returned no results (``{"iteration": i, "evaluated": 0}``); None when the
    file holds none."""
    found = None
    for r in read_metrics(path) if path is not None else ():
        if int(r.get("iteration", -1)) == int(iteration) and "loss" not in r:  # log_eval's: no total loss
            found = r
    if found is None:
        return None
    results: Dict[str, dict] = {}
    for key, value in found.items():
        task, _, name = key.partition("/")
        if name:
            results.setdefault(task, {})[name] = value
    return results


class TrainingLogger:
    def __init__(
        self,
        *,
        output_dir,
        max_iter: int,
        log_period: int = 20,
        enabled: bool = True,
        tensorboard: bool = True,
        stream: Optional[TextIO] = None,
    ):
        self.enabled = enabled
        self.max_iter = int(max_iter)
        self.log_period = max(int(log_period), 1)
        self.stream = stream or sys.stdout
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.metrics_path = self.output_dir / "metrics.jsonl" if self.output_dir is not None else None
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._window: List[float] = []  # recent s/iter, for the ETA
        self._tb = None
        # made at the first record, not here: a run with nothing to do writes no event file
        self._tb_folder = None
        if enabled and self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                self._tb_folder = self.output_dir / "tensorboard"

    def _tensorboard(self):
        """The SummaryWriter (made on first use), or None without TensorBoard."""
        if self._tb_folder is not None:
            self._tb, missing = _make_tensorboard_writer(self._tb_folder)
            self._tb_folder = None
            if missing:  # once, at the first record (training, or the evaluation alone of a resumed run)
                self.stream.write(missing + "\n")
        return self._tb

    # ------------------------------------------------------------------ records
    def _append(self, record: dict) -> None:
        if self.metrics_path is None:
            return
        try:
            with open(self.metrics_path, "a") as f:
                f.write(record_line(record))
                f.flush()
        except OSError as e:  # a full disk's write error names no file: name it, with the iteration
            if e.filename is not None:
                raise
            raise OSError(e.errno, f"{e.strerror or e} (writing the record of iteration "
                                   f"{record.get('iteration')})", str(self.metrics_path)) from e

    def log_iteration(
        self, iteration: int, losses: Dict[str, float], *, lr: float, iter_time: float, data_time: float = 0.0
    ) -> None:
        """Called after every iteration; writes a record every ``log_period`` iterations (and the last)."""
        if not self.enabled:
            return
        self._tensorboard()  # made at the first iteration (not for a run refused before its first step)
        self._window.append(iter_time)
        self._window = self._window[-50:]
        if iteration % self.log_period and iteration != self.max_iter:
            return
        total = float(sum(losses.values()))
        record = {
            "iteration": iteration,
            "loss": total,
            **{k: float(v) for k, v in losses.items()},
            "lr": lr,
            "time": iter_time,
            "data_time": data_time,
        }
        self._append(record)
        if self._tb is not None:  # made above
            for k, v in record.items():
                if k != "iteration":
                    self._tb.add_scalar(f"train/{k}", v, iteration)
        self._print_progress(iteration, total, losses, lr)

    def log_eval(self, iteration: int, results: Dict[str, dict]) -> None:
        """``results`` as CocoEvaluator.evaluate returns it: {"bbox": {"AP": .., ...}, "segm": {...}}.
        Empty (an evaluation that returned no results): the record of the iteration alone,
        ``{"iteration": i, "evaluated": 0}`` (readers of evaluation records look for the metric keys),
        so that a resume knows the evaluation ran; no table, no TensorBoard point."""
        if not self.enabled:
            return
        tb = self._tensorboard()  # (its note, when missing, before the first record: maybe this one)
        if not results:
            self._append({"iteration": iteration, "evaluated": 0})
            return
        record = {"iteration": iteration}
        for task, metrics in results.items():
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    record[f"{task}/{name}"] = float(value)
        self._append(record)
        if tb is not None:
            for k, v in record.items():
                if k != "iteration":
                    tb.add_scalar(f"eval/{k}", v, iteration)
        from maskrcnn.engine.evaluator import format_metrics_table  # pycocotools: only when evaluating

        self.print(format_metrics_table(results))

    def print(self, text: str) -> None:
        if self.enabled:
            if self._tty:
                self.stream.write("\n")
            self.stream.write(text + "\n")
            self.stream.flush()

    def _print_progress(self, iteration: int, total: float, losses: Dict[str, float], lr: float) -> None:
        sec = sum(self._window) / max(len(self._window), 1)
        eta = format_seconds(sec * (self.max_iter - iteration))
        terms = " ".join(f"{k[5:] if k.startswith('loss_') else k}={v:.3f}" for k, v in losses.items())
        text = (
            f"iter {iteration}/{self.max_iter} loss={total:.4f} {terms} lr={lr:.2e} {sec:.3f}s/it eta {eta}"
        )
        if self._tty:
            width = 20
            done = int(width * iteration / max(self.max_iter, 1))
            self.stream.write("\r[" + "#" * done + "." * (width - done) + "] " + text + "\x1b[K")
            if iteration == self.max_iter:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    # ------------------------------------------------------------------ end
    def close(self, *, plot: bool = True) -> Optional[Path]:
        """Flush TensorBoard and draw the curves; returns the PNG's path if one was written."""
        png = None
        if self.enabled and plot and self.metrics_path is not None:
            png = plot_curves(self.metrics_path, self.output_dir / "curves.png")
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        return png


def _make_tensorboard_writer(folder: Path) -> tuple:
    """(a SummaryWriter, "") or, without the optional ``tensorboard`` package, (None, the one line that
    says so): training goes on with metrics.jsonl (and curves.png where matplotlib is installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as e:  # not installed (ImportError), or an install that fails to import
        why = "not installed" if isinstance(e, ImportError) else f"not usable ({type(e).__name__}: {e})"
        return None, (f"TensorBoard {why} (pip install 'maskrcnn[tensorboard]'): curves in metrics.jsonl "
                      "and curves.png only")
    return SummaryWriter(log_dir=str(folder)), ""


def plot_curves(metrics_path, png_path) -> Optional[Path]:
    """Loss terms (left) and AP (right) against iteration; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    from maskrcnn.shown_text import mpl_literal  # metric names drawn as written, never as mathtext

    records = read_metrics(metrics_path)
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if any("/AP" in k for k in r)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        its = [r["iteration"] for r in train]
        keys = ["loss"] + sorted({k for r in train for k in r if k.startswith("loss_")})
        for k in keys:
            axes[0].plot(its, [r.get(k, float("nan")) for r in train], label=mpl_literal(k),
                         lw=2 if k == "loss" else 1)
        axes[0].set_yscale("log")
        axes[0].legend(fontsize=7)
    axes[0].set_xlabel("iteration")
    axes[0].set_title("training losses")
    if evals:
        keys = sorted({k for r in evals for k in r if k.endswith("/AP") or k.endswith("/AP50")})
        for k in keys:
            axes[1].plot([r["iteration"] for r in evals], [r.get(k, float("nan")) for r in evals], "o-",
                         label=mpl_literal(k))
        axes[1].legend(fontsize=7)
    axes[1].set_xlabel("iteration")
    axes[1].set_title("validation AP (%)")
    fig.tight_layout()
    png_path = Path(png_path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(png_path, buf.getvalue())
    return png_path


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        out, self.start = now - self.start, now
        return out
