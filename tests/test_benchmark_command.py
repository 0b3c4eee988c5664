"""``maskrcnn benchmark`` on what a hostile probe gave it: many images (memory must stay flat: images made
one window of up to 4 batches at a time, detections dropped), absurd --threads, --batch-size and --size,
unreadable input files, options that do not apply, and its --help. Tiny sizes: the demo preset at 64x64
or smaller."""

from __future__ import annotations

import argparse
import os
import weakref

import numpy as np
import pytest
import torch
from PIL import Image
from pixel_limit import add_too_large_and_broken, limit_line, small_pixel_limit  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.commands import benchmark
from maskrcnn.predictor import Predictor

pytestmark = pytest.mark.usefixtures("single_thread")

DEMO = ["benchmark", "--config", "demo", "--device", "cpu"]


def _pngs(folder, n, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 56, 3), dtype=np.uint8)).save(folder / f"c{i}.png")
    return folder


def test_the_timing_loop_keeps_no_earlier_images_or_detections(monkeypatch, capsys):
    real = Predictor.predict_tensors
    earlier, calls = [], []  # weak references to every image and detection tensor of the calls so far

    def predict_tensors(self, images):
        alive = [ref for ref in earlier if ref() is not None]
        calls.append(len(alive))  # 0: nothing of an earlier window is held while the next one runs
        dets = real(self, images)
        earlier.extend(weakref.ref(t) for t in images)
        earlier.extend(weakref.ref(d[k]) for d in dets for k in ("boxes", "masks"))
        return dets

    monkeypatch.setattr(Predictor, "predict_tensors", predict_tensors)
    assert main([*DEMO, "--size", "48x64", "--images", "5"]) == 0
    assert calls == [0] * 6  # the warm-up and five windows of one image
    assert "5 image(s) timed, HxW 48x64 (64 wide, 48 high):" in capsys.readouterr().out


def test_synthetic_images_are_made_lazily_and_the_same_on_every_pass():
    many = benchmark.SyntheticImages(size_hw=(16, 24), count=10**12)  # a list of them would never end
    first = next(iter(many))
    assert first.shape == (3, 16, 24)
    assert torch.equal(first, next(iter(many)))


def test_threads_out_of_bounds_are_refused_in_one_line_before_torch_is_told(capsys):
    before = torch.get_num_threads()
    for threads, message in (("100000", "--threads 100000: at most"), ("-1", "--threads must be >= 0")):
        assert main([*DEMO, "--threads", threads]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert torch.get_num_threads() == before
    assert benchmark.check_threads(None) is None and benchmark.check_threads(2, cores=2) is None
    assert benchmark.check_threads(0) is None  # 0, as before: torch's own choice
    assert main([*DEMO, "--threads", "0", "--size", "32x32", "--images", "1"]) == 0
    assert torch.get_num_threads() == before
    capsys.readouterr()
    for batch in ("0", str(benchmark.MAX_BATCH_SIZE + 1)):
        assert main([*DEMO, "--batch-size", batch]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        limit = benchmark.MAX_BATCH_SIZE
        assert len(err) == 1 and f"--batch-size must be 1 to {limit}, got {batch}" in err[0]
    assert 1 <= benchmark.usable_cores() <= (os.cpu_count() or 1)
    assert "more than the 2 cores here" in benchmark.check_threads(3, cores=2)
    assert "more than the 2 cores here" in benchmark.check_threads(8, cores=2)
    with pytest.raises(ValueError, match=r"at most 8 \(4 x the 2 cores here\)"):
        benchmark.check_threads(9, cores=2)


def test_a_size_past_the_maximum_is_refused_in_one_line_before_the_model_is_built(monkeypatch, capsys):
    monkeypatch.setattr(benchmark, "build_predictor", lambda args: pytest.fail("built before --size"))
    for size in ("100000x100000", "64x4097"):
        assert main([*DEMO, "--size", size]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            f"maskrcnn benchmark: error: --size {size}: each side must be at most 4096 (each synthetic image "
            "is allocated whole; the presets resize to at most 2048)"]
    assert main([*DEMO, "--size", ""]) == 1  # given empty is not "not given" (the default)
    assert capsys.readouterr().err.strip().splitlines() == [
        "maskrcnn benchmark: error: --size expects HxW (e.g. 800x1067), got ''"]


def test_unreadable_inputs_are_skipped_named_and_counted_and_only_all_unreadable_refused(tmp_path, capsys,
                                                                                          monkeypatch):
    folder = _pngs(tmp_path / "imgs", 2)
    (folder / "broken.png").write_text("not a png")
    assert main([*DEMO, str(folder)]) == 0
    out, err = capsys.readouterr()
    warned = [line for line in err.splitlines() if "warning: skipped" in line]
    # warned once, though read on three passes (pre-check, warm-up, timed)
    assert len(warned) == 1 and str(folder / "broken.png") in warned[0]
    assert "2 image(s) timed, 1 skipped (1 unreadable_image), 2 sizes:" in out

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_text("not a png")
    monkeypatch.setattr(benchmark, "build_predictor", lambda args: pytest.fail("built with nothing to time"))
    assert main([*DEMO, str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad / "broken.png") in err
    assert "error: none of the 1 input image file(s) could be read" in err


def test_a_file_over_the_pixel_limit_is_counted_as_too_large_with_the_limit_line(tmp_path, capsys,
                                                                                  monkeypatch):
    """Counted as "unreadable", with no word on the limit: the file is good, and a raised limit reads it
    (predict and eval count it as image_too_large, followed by the line saying how to raise it)."""
    small_pixel_limit(monkeypatch)  # refused over 2 x 2000 pixels
    folder = add_too_large_and_broken(_pngs(tmp_path / "imgs", 1), 80)  # c0.png 40x56: under the limit
    assert main([*DEMO, str(folder)]) == 0
    out, err = capsys.readouterr()
    assert ("1 image(s) timed, 2 skipped (1 image_too_large, 1 unreadable_image), HxW 40x56 (56 wide, "
            "40 high):") in out
    line = limit_line(1, "0.004")
    assert err.count(line) == 1, err

    (folder / "c0.png").unlink()  # none left to time: the refusal counts them and says the limit too
    assert main([*DEMO, str(folder)]) == 1
    err = capsys.readouterr().err
    assert ("error: none of the 2 input image file(s) could be read (each is named above: 1 image_too_large, "
            f"1 unreadable_image); {line}") in err, err


def test_a_file_the_model_fails_on_is_skipped_named_and_counted_unless_it_is_in_the_first_batch(
        tmp_path, capsys, monkeypatch):
    """One readable file the model failed on stopped the whole run; now it is left out of its window (the
    rest timed) like an unreadable one. In the first batch, before anything has run, or when every image of
    a window fails alone too, it stops the run (a fault of the model or the device, not of the files)."""
    folder = _pngs(tmp_path / "imgs", 3)  # c0 40x56, c1 48x56, c2 56x56
    real, failing, calls = Predictor.predict_tensors, {48}, []
    after_warm_up = []  # when set: every call after the warm-up fails (a device fault)

    def predict_tensors(self, images):
        calls.append([im.shape[-2] for im in images])
        if any(im.shape[-2] in failing for im in images) or (after_warm_up and len(calls) > 1):
            raise RuntimeError("shape mismatch in the head\n(a second line of torch's)")
        return real(self, images)

    monkeypatch.setattr(Predictor, "predict_tensors", predict_tensors)
    assert main([*DEMO, str(folder)]) == 0
    out, err = capsys.readouterr()
    assert (f"maskrcnn benchmark: warning: skipped {folder / 'c1.png'}: the model failed on it "
            "(RuntimeError: shape mismatch in the head)") in err.splitlines()
    assert "2 image(s) timed, 1 skipped (1 prediction_failed), 2 sizes:" in out
    # at batch 1 the predictor's window is one image: warm-up, then each image once (c1's failure is
    # its own, not run again)
    assert calls == [[40], [40], [48], [56]]

    # at --batch-size 2 one window of 3: warm-up, the window, each image alone (untimed), the window
    # without c2 (timed)
    failing, calls[:] = {56}, []
    assert main([*DEMO, str(folder), "--batch-size", "2"]) == 0
    out, err = capsys.readouterr()
    assert (f"maskrcnn benchmark: warning: skipped {folder / 'c2.png'}: the model failed on it "
            "(RuntimeError: shape mismatch in the head)") in err.splitlines()
    assert "2 image(s) timed, 1 skipped (1 prediction_failed), 2 sizes:" in out
    assert calls == [[40, 48], [40, 48, 56], [40], [48], [56], [40, 48]]

    # every image of that window fails alone too: the last error raised, the run said to have stopped
    failing, calls[:] = set(), []
    after_warm_up.append(True)
    assert main([*DEMO, str(folder), "--batch-size", "2"]) == 1
    err = capsys.readouterr().err
    assert (f"note: the model failed on every image of a window ({folder / 'c0.png'} and 2 more), each "
            "alone too: stopped") in err
    assert "maskrcnn benchmark: error: shape mismatch in the head" in err and "skipped" not in err
    assert calls == [[40, 48], [40, 48, 56], [40], [48], [56]]
    after_warm_up.clear()

    # the first batch fails: named by its first file and how many more
    failing = {40}
    assert main([*DEMO, str(folder), "--batch-size", "2"]) == 1
    err = capsys.readouterr().err
    assert (f"note: the model failed on the first batch ({folder / 'c0.png'} and 1 more), before anything "
            "was timed: stopped") in err

    (folder / "broken.png").write_text("not a png")  # both kinds counted
    failing = {48, 56}
    assert main([*DEMO, str(folder)]) == 0
    out = capsys.readouterr().out
    assert "1 image(s) timed, 3 skipped (2 prediction_failed, 1 unreadable_image), HxW 40x56 (56 wide, " \
           "40 high):" in out

    failing.add(40)  # the first file: nothing has run, so the model or the device is at fault: stopped
    calls.clear()
    assert main([*DEMO, str(folder)]) == 1
    err = capsys.readouterr().err
    assert (f"note: the model failed on the first batch ({folder / 'c0.png'}), before anything was timed: "
            "stopped") in err
    assert "maskrcnn benchmark: error: shape mismatch in the head" in err and "failed on it" not in err
    assert calls == [[40]]


def test_options_that_do_not_apply_are_noted_and_the_images_timed_counted(tmp_path, capsys):
    folder = _pngs(tmp_path / "imgs", 2)
    assert main([*DEMO, str(folder), "--images", "7", "--size", "10x10"]) == 0
    out, err = capsys.readouterr()
    assert "note: --images and --size apply to synthetic images only: ignored" in err
    assert "2 image(s) timed" in out
    assert main([*DEMO, str(folder / "c0.png"), "--size", "10x10"]) == 0
    out, err = capsys.readouterr()
    assert "note: --size applies to synthetic images only" in err
    assert "1 image(s) timed, HxW 40x56 (56 wide, 40 high):" in out


def test_no_optimise_with_an_int8_file_is_noted(tmp_path, capsys):
    from tiny_model import TINY_FROZEN_BN, build_tiny, save_tiny_checkpoint  # tests/ is on the path

    model, cfg = build_tiny(TINY_FROZEN_BN)
    fp32 = save_tiny_checkpoint(tmp_path / "fp32.pth", model, cfg)
    int8 = tmp_path / "int8.pth"
    assert main(["quantize", "--weights", str(fp32), "--calib-images", str(_pngs(tmp_path / "calib", 1)),
                 "--parts", "rpn", "--output", str(int8)]) == 0  # one part: quicker
    capsys.readouterr()
    benchmark_int8 = ["benchmark", "--weights", str(int8), "--size", "32x32", "--images", "1"]
    assert main([*benchmark_int8, "--no-optimise"]) == 0
    out, err = capsys.readouterr()
    assert "note: --no-optimise does not apply to an INT8 file: it always runs its INT8 kernels" in err
    assert "int8 (rpn)" in out
    assert main(benchmark_int8) == 0
    assert "--no-optimise" not in capsys.readouterr().err


def test_every_option_has_a_description():
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    undescribed = [a.option_strings or a.dest for a in parser._actions if not a.help]
    assert undescribed == []


def test_the_size_is_labelled_height_by_width_unlike_predicts_width_by_height(tmp_path, capsys):
    # predict prints "thin.png (300x1)" (width x height); benchmark's "1x300" (its --size HxW) read beside
    # it looked like another image: the label says which side comes first
    Image.fromarray(np.zeros((1, 300, 3), dtype=np.uint8)).save(tmp_path / "thin.png")
    assert main([*DEMO, str(tmp_path / "thin.png")]) == 0
    out = capsys.readouterr().out
    assert "1 image(s) timed, HxW 1x300 (300 wide, 1 high):" in out
    assert main([*DEMO, "--size", "20x30", "--images", "1"]) == 0
    assert "1 image(s) timed, HxW 20x30 (30 wide, 20 high):" in capsys.readouterr().out
