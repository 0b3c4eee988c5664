"""benchmarks/low_precision_scaled.py end to end at a toy budget: data drawn at the given size, the
source model fine-tuned on it (its weights change), every mode measured and written to the JSON."""

from __future__ import annotations

import json
import math

import torch


def test_low_precision_scaled_fine_tunes_and_measures_each_mode(tmp_path, benchmark_script):
    from maskrcnn.checkpoint import load_checkpoint, save_checkpoint
    from maskrcnn.config import load_config
    from maskrcnn.data.shapes import SHAPE_CLASSES
    from maskrcnn.modeling.mask_rcnn import build_model

    torch.manual_seed(0)
    cfg = load_config("demo", {"model.num_classes": len(SHAPE_CLASSES) + 1})  # a consistent source: the
    source = tmp_path / "source.pth"  # demo's classes and head (train --init refuses names that do not fit)
    save_checkpoint(source, model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=["__background__", *SHAPE_CLASSES])
    threads = torch.get_num_threads()
    try:
        rc = benchmark_script("low_precision_scaled").main([
            "--source", str(source), "--work", str(tmp_path / "work"), "--size", "96", "--iters", "2",
            "--num-train", "4", "--num-val", "2", "--modes", "fp32-opt,int8-features", "--rounds", "1",
            "--threads", "1",
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)  # the script sets its stated thread count for the process
    assert rc == 0
    work = tmp_path / "work"
    ann = json.loads((work / "data_96" / "val.json").read_text())
    assert len(ann["images"]) == 2 and all(90 <= im["height"] <= 102 for im in ann["images"])
    tuned = load_checkpoint(work / "finetuned_96" / "model_final.pth")["model"]
    before = load_checkpoint(source)["model"]
    changed = [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, tuned[k])]
    assert changed, "fine-tuning left every weight as it was"
    result = json.loads((work / "low_precision_96.json").read_text())
    assert [r["mode"] for r in result["rows"]] == ["fp32-opt", "int8-features"]
    for row in result["rows"]:
        assert row["s_per_image"] > 0 and math.isfinite(row["s_per_image"])
        assert row["mask_ap"] is not None and row["box_ap"] is not None
    assert result["setup"]["calibration"].startswith("4 images")


def test_bad_source_is_one_line_error(tmp_path, capsys, benchmark_script):
    import pytest

    script = benchmark_script("low_precision_scaled")
    with pytest.raises(SystemExit) as e:
        script.main(["--source", str(tmp_path / "missing.pth"), "--work", str(tmp_path / "w")])
    assert e.value.code == 2 and "missing.pth: no such checkpoint file" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    threads = torch.get_num_threads()
    try:
        rc = script.main(["--source", str(bad), "--work", str(tmp_path / "w"), "--size", "64", "--iters", "1",
                          "--num-train", "2", "--num-val", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "bad.pth is not a PyTorch file (neither its zip format nor a pickle; it starts with b'not ')" \
        in err


def test_ops_benchmark_refuses_bad_device_and_size(monkeypatch, benchmark_script):
    """In this process (two fresh interpreters cost 2 s each to import torch): ``SystemExit`` with a
    message is what a script's ``sys.exit(message)`` turns into exit status 1 and that one line on
    stderr, without a traceback; any other exception would escape ``pytest.raises``."""
    import pytest

    ops = benchmark_script("ops")
    for args, message in ((["--device", "bogus"], "--device: expected cpu, cuda or cuda:N"),
                          (["--image-size", "10x"], "--image-size: expected HxW")):
        monkeypatch.setattr("sys.argv", ["ops.py", *args])  # (main reads its arguments from sys.argv)
        with pytest.raises(SystemExit) as e:
            ops.main()
        assert isinstance(e.value.code, str) and message in e.value.code
