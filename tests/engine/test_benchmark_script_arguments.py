"""benchmarks/inference.py and benchmarks/scaling.py check their arguments before anything runs: an
unknown variant or case is refused listing the known ones (not timed and labelled as a run of its own,
not found after the table has started), inference.py's --images is the number of images each run
times, and its table shows "-" for the worst differences when no detection matched."""

from __future__ import annotations

import argparse
import subprocess

import pytest
import torch


def test_inference_refuses_unknown_variants_up_front(benchmark_script, monkeypatch, capsys):
    inference = benchmark_script("inference")
    assert inference.parse_variants("fp32, int8,onnx") == ["fp32", "int8", "onnx"]
    known = "fp32, fp32-opt, bf16, bf16-opt, int8, int8-onednn, onnx"
    with pytest.raises(ValueError, match=f"unknown 'bogus'; known: {known}$"):
        inference.parse_variants("fp32,bogus")
    with pytest.raises(ValueError, match="none given"):
        inference.parse_variants(",")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(SystemExit) as stopped:
        inference.main(["--variants", "bogus", "--tv-python", ""])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "unknown 'bogus'; known: fp32," in err


def test_inference_times_the_number_of_images_asked_for(benchmark_script, monkeypatch):
    inference = benchmark_script("inference")
    five = inference.load_images((24, 32), 5)
    assert len(five) == 5 and all(im.shape == (3, 24, 32) for im in five)
    assert all(torch.equal(a, b) for a, b in zip(five, inference.load_images((24, 32))))  # the first three
    assert not torch.equal(five[0], five[3])  # the same golden image, its own noise
    commands = []
    monkeypatch.setattr(subprocess, "run",
                        lambda cmd, **k: commands.append(cmd) or subprocess.CompletedProcess(cmd, 1))
    monkeypatch.delenv("MASKRCNN_TV_PYTHON", raising=False)
    # every run "failed": no table, but each was asked for the five images
    assert inference.main(["--variants", "fp32", "--images", "5", "--tv-python", ""]) == 1
    assert commands and all(cmd[cmd.index("--images") + 1] == "5" for cmd in commands)
    with pytest.raises(SystemExit):
        inference.main(["--images", "0"])


def test_inference_size_is_parsed_and_bounded_like_the_commands(benchmark_script, monkeypatch, capsys):
    inference = benchmark_script("inference")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a run started"))
    for size, message in (("big", "--size expects HxW (e.g. 800x1067), got 'big'"),
                          ("", "--size expects HxW (e.g. 800x1067), got ''"),
                          ("0x10", "--size 0x10: height and width must be positive"),
                          ("64x5000", "--size 64x5000: each side must be at most 4096")):
        with pytest.raises(SystemExit) as stopped:
            inference.main(["--size", size, "--tv-python", ""])
        assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_inference_shows_a_dash_when_no_detection_matched(benchmark_script):
    inference = benchmark_script("inference")
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 2:5, 2:5] = True

    def dets(label):
        return inference.pack_detections([{"boxes": torch.tensor([[1.0, 1.0, 6.0, 6.0]]),
                                           "scores": torch.tensor([0.9]), "labels": torch.tensor([label]),
                                           "masks": masks}])

    same = inference.compare(dets(1), dets(1))
    assert (same["matched"], same["box"], same["mask_iou"]) == (1.0, 0.0, 1.0)
    none = inference.compare(dets(1), dets(2))  # another label: nothing matches
    assert none["matched"] == 0 and none["box"] is none["score"] is none["mask_iou"] is None
    assert inference._worst(none["mask_iou"], ".4f", 12) == f"{'-':>12}"
    assert inference._worst(same["mask_iou"], ".4f", 12) == f"{'1.0000':>12}"


def test_scaling_checks_every_case_before_the_table_starts(benchmark_script, monkeypatch, capsys):
    scaling = benchmark_script("scaling")
    assert scaling.parse_cases(scaling.DEFAULT_CASES)  # the defaults are all valid
    assert scaling.parse_case("infer-2mp-1000det") == ("infer", 2.0, 1000)
    assert scaling.parse_case("tiled-48mp") == ("tiled", 48.0, 100)
    assert scaling.parse_case("train-10gt") == ("train", None, 10)
    for bad in ("bogus", "infer-xmp", "infer-2mp-5", "infer-0mp", "infer-infmp", "infer-nanmp", "train-0gt",
                "train-10", "infer-2mp-1det-x"):
        with pytest.raises(ValueError, match=f"unknown case '{bad}'"):
            scaling.parse_case(bad)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a case ran"))
    with pytest.raises(SystemExit) as stopped:
        scaling.main(["--cases", "infer-0.5mp,bogus"])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "unknown case 'bogus' (the cases: infer-<P>mp[-<D>det]" in err


@pytest.mark.parametrize("script, argv", [("inference", ["--variants", "fp32", "--tv-python", ""]),
                                          ("scaling", ["--cases", "infer-0.5mp"])])
def test_threads_are_bounded_as_maskrcnn_benchmark_bounds_them(benchmark_script, monkeypatch, capsys, script,
                                                               argv, tmp_path):
    """--threads -1 or 0 failed in every run (torch.set_num_threads), a huge count crashed torch's pool:
    refused before anything runs with maskrcnn benchmark's check; 0 is torch's own choice, as there."""
    from maskrcnn.commands.benchmark import MAX_THREADS_PER_CORE, usable_cores

    module = benchmark_script(script)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a run started"))
    huge = MAX_THREADS_PER_CORE * usable_cores() + 1
    for threads, message in (("-1", "--threads must be >= 0"), (str(huge), f"--threads {huge}: at most")):
        with pytest.raises(SystemExit) as stopped:
            module.main([*argv, "--threads", threads])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
    commands = []

    def failed_run(cmd, **_):
        commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="stopped here")

    monkeypatch.setattr(subprocess, "run", failed_run)
    module.main([*argv, "--threads", "0"])  # each run "failed": only the option handed on is checked
    assert commands and all(cmd[cmd.index("--threads") + 1] == "0" for cmd in commands)
    before = torch.get_num_threads()
    if script == "scaling":  # the case itself leaves torch's choice as it is
        monkeypatch.setattr(module, "_infer", lambda *a, **k: {"peak_mb": 0})
        module.run_case("infer-0.5mp", 0, "auto")
    else:
        monkeypatch.setattr(module, "worker_ours", lambda args: {"dets": []})
        monkeypatch.setattr(module, "pack_detections", lambda dets: dets)
        monkeypatch.setattr(module, "peak_rss_mb", lambda: 0.0)
        module.run_worker(argparse.Namespace(threads=0, worker="ours:fp32", out=tmp_path / "r.pt"))
    assert torch.get_num_threads() == before
