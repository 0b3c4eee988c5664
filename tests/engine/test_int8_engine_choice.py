"""The quantized engine a command runs under (``quantize --engine``; an INT8 file run under its own) and
the INT8 notes and refusals around it (review r_lowp)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import TINY_FROZEN_BN, build_tiny, save_tiny_checkpoint  # tests/ is on the path

from maskrcnn.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def keep_engine():
    """The commands set the process's engine: each test leaves it as it found it."""
    before = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = before


def _need(*names):
    for name in names:
        if name not in torch.backends.quantized.supported_engines:
            pytest.skip(f"this PyTorch has no {name} engine")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A float32 checkpoint and one calibration image."""
    root = tmp_path_factory.mktemp("choice")
    model, cfg = build_tiny(TINY_FROZEN_BN)
    fp32 = save_tiny_checkpoint(root / "fp32.pth", model, cfg)
    img = root / "c0.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(img)
    return fp32, img


def _quantize(fp32, img, out, *extra):
    return main(["quantize", "--weights", str(fp32), "--calib-images", str(img), "--parts", "rpn",
                 "--output", str(out), *extra])


def test_quantize_engine_calibrates_under_it_and_predict_runs_the_file_under_it(files, tmp_path, capsys):
    from maskrcnn.checkpoint import CheckpointError
    from maskrcnn.predictor import Predictor

    _need("x86", "onednn")
    fp32, img = files
    torch.backends.quantized.engine = "x86"
    out = tmp_path / "onednn.pth"
    assert _quantize(fp32, img, out, "--engine", "onednn") == 0
    assert torch.load(out, weights_only=True)["int8"]["engine"] == "onednn"
    torch.backends.quantized.engine = "x86"
    # the library still refuses it, now telling the CLI way too
    with pytest.raises(CheckpointError) as e:
        Predictor.from_checkpoint(out, device="cpu")
    assert "the maskrcnn commands predict, eval, serve and benchmark do so themselves" in str(e.value)
    assert "`maskrcnn quantize --engine x86`" in str(e.value)
    capsys.readouterr()
    assert main(["predict", "--weights", str(out), str(img), "--output", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert err.count("calibrated under the 'onednn' quantized engine") == 1
    assert torch.backends.quantized.engine == "onednn"
    # eval and benchmark do the same
    from tiny_model import write_one_image_set  # tests/ is on the path

    gt = write_one_image_set(tmp_path / "set", 48, 64)
    images = str(tmp_path / "set" / "images")
    for command in (["eval", "--weights", str(out), "--json", str(gt), "--images", images,
                     "--output", str(tmp_path / "m")], ["benchmark", "--weights", str(out), str(img)]):
        torch.backends.quantized.engine = "x86"
        assert main(command) == 0, command[0]
        said = f"maskrcnn {command[0]}: note: {out} was calibrated under the 'onednn'"
        assert said in capsys.readouterr().err
    # a file whose engine is the current one: nothing said, nothing changed
    torch.backends.quantized.engine = "onednn"
    assert main(["predict", "--weights", str(out), str(img), "--output", str(tmp_path / "p")]) == 0
    assert "quantized engine" not in capsys.readouterr().err


def test_quantize_engine_not_offered_is_refused_naming_the_flag(files, tmp_path, capsys, monkeypatch):
    fp32, img = files
    from maskrcnn.commands import int8_engine

    offered = [e for e in int8_engine.offered_engines() if e != "qnnpack"]
    monkeypatch.setattr(int8_engine, "offered_engines", lambda: offered)
    assert _quantize(fp32, img, tmp_path / "q.pth", "--engine", "qnnpack") == 1
    assert "--engine qnnpack: this PyTorch build or CPU does not offer it" in capsys.readouterr().err
    assert not (tmp_path / "q.pth").exists()


def test_an_engine_this_build_lacks_is_explained_without_a_dangling_or():
    from maskrcnn.engine.int8 import engine_problem

    engine = torch.backends.quantized.engine
    message = engine_problem("no-such-engine")
    assert "does not offer" in message
    assert f"): calibrate again under {engine!r} (`maskrcnn quantize --engine {engine}`" in message
    assert ": or " not in message


def test_calib_count_without_int8_is_refused(files, tmp_path, capsys):
    fp32, img = files
    assert main(["predict", "--weights", str(fp32), "--calib-count", "3", str(img),
                 "--output", str(tmp_path / "o")]) == 1
    assert "--calib-count needs --int8" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_calibrating_on_a_file_or_subfolder_of_the_evaluated_images_is_noted(tmp_path):
    from maskrcnn.commands.quantize import calibrating_on_evaluated_note

    val = tmp_path / "val"
    (val / "sub").mkdir(parents=True)
    (val / "c0.png").write_bytes(b"")
    assert "inside the --images folder evaluated" in calibrating_on_evaluated_note(str(val / "c0.png"),
                                                                                    str(val))
    assert "inside the --images folder evaluated" in calibrating_on_evaluated_note(str(val / "sub"), str(val))
    assert calibrating_on_evaluated_note(str(tmp_path / "train"), str(val)) is None


def test_serve_threshold_note_names_the_servers_own_score_thresh():
    from maskrcnn.config import load_config
    from maskrcnn.predictor import Predictor
    from maskrcnn.serve.app import _fixed_threshold_note

    def onnx(server):
        p = SimpleNamespace(runtime=True, cfg=load_config("demo", {"model.roi_heads.score_thresh": 0.05}),
                            score_thresh=server)
        p.fixed_threshold_note = lambda t: Predictor.fixed_threshold_note(p, t)
        return p

    note = _fixed_threshold_note(onnx(0.3), 0.01)
    assert "this server's own 0.3 (serve --score-thresh)" in note and "lower --score-thresh" in note
    assert "export again" not in note
    # the exported threshold is the higher one: export again, as before
    exported_higher = _fixed_threshold_note(onnx(0.02), 0.01)
    assert "export again with --set model.roi_heads.score_thresh=0.01" in exported_higher
    assert "export again" in _fixed_threshold_note(onnx(None), 0.01)


def test_no_winograd_on_an_int8_file_is_noted_as_no_optimise_is(files, tmp_path, capsys):
    fp32, img = files
    out = tmp_path / "int8.pth"
    assert _quantize(fp32, img, out) == 0
    capsys.readouterr()
    assert main(["predict", "--weights", str(out), "--no-winograd", str(img), "--output",
                 str(tmp_path / "o")]) == 0
    assert "note: --no-winograd does not apply to an INT8 file: it always runs its INT8 kernels" in \
        capsys.readouterr().err
    assert main(["benchmark", "--weights", str(out), "--no-winograd", "--no-optimise", str(img),
                 ]) == 0
    assert "--no-optimise and --no-winograd do not apply to an INT8 file" in capsys.readouterr().err
