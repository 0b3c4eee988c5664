"""INT8 under PyTorch's other quantized engines, and the INT8 user paths a low-precision probe found
wanting: onednn calibrating a mask head (its transposed convolution), a file tied to its engine (the
refusal naming the engine to set; x86 and fbgemm told apart only if their settings differ), a model the
engine cannot run refused before its file is written, the float32 deconv note saying what was measured,
--calib-images without --int8, predict --no-optimise on an INT8 file, the precision on the loaded line,
and eval calibrating on the images it evaluates."""

import argparse

import pytest
import torch
from test_int8_kernel_check import MaskHeadLike, mask_head_only_model  # this folder is on the path
from test_int8_probe_fixes import _pngs
from tiny_model import TINY_FROZEN_BN, build_tiny, save_tiny_checkpoint  # tests/ is on the path
from torch import nn

from maskrcnn.cli import main
from maskrcnn.modeling import quantize

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def engine():
    """set(name): torch.backends.quantized.engine for this test only (skipped where it is not offered)."""
    before = torch.backends.quantized.engine

    def set_engine(name):
        if name not in torch.backends.quantized.supported_engines:
            pytest.skip(f"this PyTorch has no {name} engine")
        torch.backends.quantized.engine = name

    yield set_engine
    torch.backends.quantized.engine = before


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    model, cfg = build_tiny(TINY_FROZEN_BN)
    return save_tiny_checkpoint(tmp_path_factory.mktemp("engines") / "fp32.pth", model, cfg)


def test_onednn_calibrates_a_mask_head_and_stays_close_to_float32(engine):
    # onednn's default mapping gave the transposed convolution a per-channel weight observer, which
    # prepare_fx refused with a bare AssertionError; per-tensor weights now, as x86's mapping has
    engine("onednn")
    head = MaskHeadLike().eval()
    x = torch.randn(4, 16, 7, 7, generator=torch.Generator().manual_seed(4))
    model = mask_head_only_model(head, x)
    quantize.convert_int8(model)
    with torch.no_grad():
        ref, out = head(x), model.roi_heads.mask_head(x)
    err = float((out - ref).norm() / (ref - ref.mean(0)).norm())
    assert err < 0.25, err
    quantize.check_int8_runs(model)  # and it runs as converted


def test_x86_and_fbgemm_quantize_alike_and_onednn_does_not_as_torch_says():
    from torch.ao.quantization import get_default_qconfig

    from maskrcnn.modeling.int8_qconfig import same_quantization

    def reduce_range(name):
        return get_default_qconfig(name).activation().reduce_range

    for a, b in (("x86", "fbgemm"), ("x86", "onednn"), ("fbgemm", "qnnpack")):
        if reduce_range(a) != reduce_range(b):
            assert not same_quantization(a, b)
    assert same_quantization("x86", "fbgemm") == (reduce_range("x86") == reduce_range("fbgemm"))


def _section(engine_name):
    return {"format_version": 1, "parts": ["rpn"], "engine": engine_name, "observers": {}, "sites": {}}


def test_a_file_of_another_engine_is_refused_naming_the_engine_to_set(engine):
    from maskrcnn.checkpoint import CheckpointError
    from maskrcnn.engine.int8 import apply_int8_section, engine_problem

    engine("onednn")
    with pytest.raises(CheckpointError) as e:
        apply_int8_section(nn.Module(), _section("x86"), where="m.pth")
    message = str(e.value)
    assert message.startswith("m.pth: 'int8.engine' is 'x86'")
    assert "torch.backends.quantized.engine = 'x86'" in message and "'onednn'" in message
    engine("fbgemm")  # the same settings as x86: accepted
    assert engine_problem("x86") is None
    assert "torch.backends.quantized.engine = 'onednn'" in engine_problem("onednn")


def test_a_model_the_engine_cannot_run_is_refused_before_the_file_is_written(fp32, tmp_path, capsys,
                                                                             monkeypatch):
    real = quantize.convert_int8

    class _NoKernel(nn.Module):
        def forward(self, x):
            raise RuntimeError("failed to create the operator\nsecond line")

    def convert_then_break(model):  # a converted part whose kernel this engine lacks
        real(model)
        model.rpn.head.convs[0] = _NoKernel()
        return model

    monkeypatch.setattr(quantize, "convert_int8", convert_then_break)
    out = tmp_path / "int8.pth"
    assert main(["quantize", "--weights", str(fp32), "--calib-images", str(_pngs(tmp_path / "c", 1)),
                 "--parts", "rpn", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert (f"the quantized rpn cannot run under torch.backends.quantized.engine "
            f"'{torch.backends.quantized.engine}' here (failed to create the operator)") in err
    assert not out.exists()


@pytest.mark.skipif(torch.backends.quantized.supported_engines.count("qnnpack") == 0, reason="no qnnpack")
def test_qnnpack_which_cannot_run_the_fpn_max_pool_is_refused_at_calibration(fp32, tmp_path, engine,
                                                                             capsys):
    from maskrcnn.engine.int8 import quantize_predictor
    from maskrcnn.predictor import Predictor

    p = Predictor.from_checkpoint(fp32, device="cpu", optimise=True, winograd=False, fused_add=False,
                                  int8=False)
    engine("qnnpack")
    try:
        quantize_predictor(p, [torch.rand(3, 48, 64)], parts=["features"])
    except RuntimeError as e:
        assert "engine 'qnnpack'" in str(e)
    else:  # an engine that runs it is fine too: then the converted model must run
        p.predict_tensors([torch.rand(3, 48, 64)])


def test_the_float32_deconv_note_says_what_was_measured(monkeypatch, capsys):
    from maskrcnn.commands import quantize as command
    from maskrcnn.engine import int8

    head = MaskHeadLike(channels=8).eval()
    x = torch.randn(2, 8, 5, 5, generator=torch.Generator().manual_seed(1))
    model = mask_head_only_model(head, x)
    monkeypatch.setattr(quantize, "int8_transposed_conv_error", lambda layer: 1.41)
    quantize.convert_int8(model)
    section = {"parts": ["mask_head"], "engine": "x86", "calibration": {"images": 1, "skipped_reasons": {}}}
    monkeypatch.setattr(int8, "quantize_predictor", lambda *a, **k: section)
    monkeypatch.setattr(int8, "calibration_files", lambda *a, **k: ["a.png"])
    monkeypatch.setattr(quantize, "check_parts", lambda *a, **k: ["mask_head"])
    predictor = argparse.Namespace(int8_parts=[], model=model)
    model.roi_heads.keypoint_head = None
    monkeypatch.setattr(command, "_parts_note", lambda *a: "")
    args = argparse.Namespace(calib_images="c", calib_json=None, calib_count=1, parts=None)
    command.apply_int8_arguments(predictor, args)
    err = capsys.readouterr().err
    engine_name = torch.backends.quantized.engine
    assert (f"note: mask_head.deconv runs in float32: the {engine_name} engine's INT8 kernel for a 8->8 2x2 "
            "stride-2 transposed convolution disagrees with float32 on this CPU (relative error 1.41") in err
    assert "AVX" not in err


def test_calibration_options_without_int8_are_refused(fp32, tmp_path, capsys):
    img = _pngs(tmp_path / "imgs", 1) / "c0.png"
    assert main(["predict", "--weights", str(fp32), "--calib-images", str(img.parent), str(img),
                 "--output", str(tmp_path / "o")]) == 1
    assert "--calib-images needs --int8" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_predict_notes_no_optimise_on_an_int8_file_and_the_loaded_line_names_the_precision(
        fp32, tmp_path, capsys):
    img = _pngs(tmp_path / "imgs", 1) / "c0.png"
    int8 = tmp_path / "int8.pth"
    assert main(["quantize", "--weights", str(fp32), "--calib-images", str(img), "--parts", "rpn",
                 "--output", str(int8)]) == 0  # one part: quicker
    capsys.readouterr()
    assert main(["predict", "--weights", str(int8), "--no-optimise", str(img), "--output",
                 str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "note: --no-optimise does not apply to an INT8 file: it always runs its INT8 kernels" in err
    assert f"loaded {int8} (resnet18, 2 classes) on cpu, int8;" in err
    assert main(["predict", "--weights", str(fp32), "--dtype", "bfloat16", str(img), "--output",
                 str(tmp_path / "b")]) == 0
    assert f"loaded {fp32} (resnet18, 2 classes) on cpu, bfloat16;" in capsys.readouterr().err


def test_eval_notes_calibrating_on_the_images_it_evaluates(tmp_path):
    from maskrcnn.commands.quantize import calibrating_on_evaluated_note

    val, train = _pngs(tmp_path / "val", 1), _pngs(tmp_path / "train", 1)
    assert "calibrate on training images, not on the ones you evaluate" in \
        calibrating_on_evaluated_note(str(val), str(tmp_path / "val" / "." ))
    assert calibrating_on_evaluated_note(str(tmp_path), str(val))  # a folder holding them
    assert calibrating_on_evaluated_note(str(train), str(val)) is None
    # one file of them, or a subfolder: some of the images evaluated, the same leak
    assert "is inside the --images folder evaluated" in calibrating_on_evaluated_note(str(val / "c0.png"),
                                                                                       str(val))


def test_eval_refuses_calib_images_without_int8_and_notes_calibrating_on_the_evaluated_folder(
        fp32, tmp_path, capsys):
    from tiny_model import write_one_image_set  # tests/ is on the path

    gt = write_one_image_set(tmp_path / "set", 48, 64)
    images = tmp_path / "set" / "images"
    base = ["eval", "--weights", str(fp32), "--json", str(gt), "--images", str(images)]
    assert main([*base, "--calib-images", str(images)]) == 1
    assert "--calib-images needs --int8" in capsys.readouterr().err
    assert main([*base, "--int8", "--calib-images", str(images), "--parts", "rpn",
                 "--output", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    assert f"note: --calib-images {images} is (or holds) the --images folder evaluated" in err
