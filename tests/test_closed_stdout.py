"""A reader that stops reading stdout (``| head -1``) stops the printing, not the command: eval and
merge-data still write their files, exit 0, and say nothing on stderr (cli.main, closed_stdout.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

H, W = 16, 20
ROOT = Path(__file__).resolve().parents[1]


def _coco(tmp_path, name, n_images):
    images = [{"id": i + 1, "file_name": f"{name}{i}.png", "height": H, "width": W} for i in range(n_images)]
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64,
                    "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]], "iscrowd": 0} for i in range(n_images)]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "box"}]}))
    return path


def _run_with_stdout_closed(args, cwd):
    """The command with its stdout a pipe whose reader closes it at once (before the child, still importing,
    prints anything): (exit status, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "maskrcnn.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env)
    proc.stdout.close()  # the reader is gone
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    return proc.wait(timeout=120), err


def test_merge_data_writes_its_file_when_stdout_is_closed(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (W, H)).save(tmp_path / name / f"{name}{i}.png")
    a, b = _coco(tmp_path, "a", 3), _coco(tmp_path, "b", 3)
    out = tmp_path / "merged" / "m.json"
    status, err = _run_with_stdout_closed(
        ["merge-data", f"{a}:{tmp_path / 'a'}", f"{b}:{tmp_path / 'b'}", "--output", str(out)], tmp_path)
    assert (status, err) == (0, "")
    assert len(json.loads(out.read_text())["images"]) == 6


def test_eval_writes_metrics_when_stdout_is_closed(tmp_path):
    gt = _coco(tmp_path, "gt", 4)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": i + 1, "category_id": 1, "bbox": [2, 2, 8, 8], "score": 0.9}
                                   for i in range(4)]))
    status, err = _run_with_stdout_closed(
        ["eval", "--results", str(results), "--json", str(gt), "--output", str(tmp_path / "ev")], tmp_path)
    assert "broken pipe" not in err and "Traceback" not in err and "error" not in err, err
    assert status == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["bbox"]["AP"] > 99  # every box found exactly


def test_eval_keeps_metrics_when_predictions_do_not_fit(tmp_path, monkeypatch):
    """A full disk refusing the large predictions.json still gets the small metrics.json (naming no
    predictions.json), and the error says so."""
    import argparse
    import errno

    import pytest

    from maskrcnn.commands import eval as eval_command
    from maskrcnn.io_utils import atomic_write_json

    def disk_full_for_predictions(path, data, **kw):
        if path.name == "predictions.json":
            raise OSError(errno.ENOSPC, "no space left on device (not written; there was no previous file)",
                          str(path))
        return atomic_write_json(path, data, **kw)

    monkeypatch.setattr(eval_command, "atomic_write_json", disk_full_for_predictions)
    out = tmp_path / "ev"
    args = argparse.Namespace(output=str(out), results=None)
    images = {"weights": "/w.pth", "json": "/gt.json", "predictions": str(out / "predictions.json")}
    with pytest.raises(OSError) as caught:
        eval_command._write_outputs(args, {"bbox": {"AP": 12.5}}, images, [{"image_id": 1}])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bbox"] == {"AP": 12.5} and "predictions" not in metrics
    assert metrics["predictions_not_written"].startswith("no space left on device")
    assert caught.value.filename == str(out / "predictions.json")
    assert "metrics.json written" in caught.value.strerror
    assert not (out / "predictions.json").exists()
