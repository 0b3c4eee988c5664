"""INT8 messages in their order and with their way out: an INT8 model given --dtype bfloat16 on a CPU
without native bf16 was warned "emulated" before being refused (the warning noise); --calib-images with
a shell glob (expanded: "unrecognized arguments: ..."; quoted: "not found") did not say to give the folder."""

import warnings

import numpy as np
import pytest
from PIL import Image

import maskrcnn.engine.device as device_mod
from maskrcnn import cli
from maskrcnn.engine.device import EmulatedBF16Warning
from maskrcnn.predictor import Predictor
from tests.tiny_model import build_tiny


def test_int8_with_bfloat16_is_refused_without_the_emulation_warning(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    model, cfg = build_tiny()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="q.pth: an INT8 model runs on the CPU without autocast"):
            Predictor(model, cfg, dtype="bfloat16", int8={"format_version": 1}, int8_source="q.pth")
    assert not [w for w in caught if issubclass(w.category, EmulatedBF16Warning)]
    with pytest.warns(EmulatedBF16Warning):  # a float model still hears it
        Predictor(model, cfg, dtype="bfloat16")


def test_a_shell_glob_for_calib_images_is_told_to_give_the_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "cal" / f"{i}.png")
    with pytest.raises(SystemExit):  # as the shell hands cal/*.png over
        cli.main(["quantize", "--weights", "w.pth", "--calib-images", "cal/0.png", "cal/1.png", "cal/2.png",
                  "--output", "q.pth"])
    assert capsys.readouterr().err.strip().endswith(
        "error: unrecognized arguments: cal/1.png cal/2.png (a shell pattern expanded after --calib-images? "
        "it takes one folder or one file: --calib-images cal)")
    from maskrcnn.engine.int8 import calibration_files

    with pytest.raises(FileNotFoundError) as refused:
        calibration_files("cal/*.png", count=4)
    assert str(refused.value) == ("cal/*.png: calibration image folder or file not found (a pattern is not "
                                  "expanded: give the folder, --calib-images cal)")


def test_quantizing_an_int8_file_again_says_its_calibration_is_replaced(tmp_path, capsys):
    from maskrcnn.checkpoint import save_checkpoint

    model, cfg = build_tiny()
    fp32 = tmp_path / "fp32.pth"
    save_checkpoint(fp32, model_state=model.state_dict(), config=cfg,
                    class_names=["__background__", "a", "b"])
    calib = tmp_path / "cal"
    calib.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(calib / "c.png")
    first, second = tmp_path / "q.pth", tmp_path / "qq.pth"
    for weights, out in ((fp32, first), (first, second)):
        assert cli.main(["quantize", "--weights", str(weights), "--calib-images", str(calib), "--parts",
                         "rpn", "--output", str(out)]) == 0
        said = [x for x in capsys.readouterr().err.splitlines() if "already INT8" in x]
        assert said == ([] if weights == fp32 else [
            f"note: {first} is already INT8: calibrated again from the float32 weights it holds, on "
            f"--calib-images {calib}; its earlier calibration is not kept"])


def test_int8_refusal_comes_before_the_dtype_without_touching_warning_filters(monkeypatch):
    # the order was kept by swapping the process-wide filters (warnings.catch_warnings): a server thread
    # building a Predictor could drop another thread's filters meanwhile
    import maskrcnn.predictor as predictor_mod

    seen = []
    original, filters = predictor_mod.resolve_dtype, warnings.filters

    def spy(dtype, device):
        if device.type == "cpu":  # the argument check's name-only call on "cuda" warns of nothing
            seen.append(warnings.filters is filters)
        return original(dtype, device)

    monkeypatch.setattr(predictor_mod, "resolve_dtype", spy)
    model, cfg = build_tiny()
    with pytest.raises(ValueError, match="an INT8 model runs on the CPU without autocast"):
        Predictor(model, cfg, dtype="bfloat16", int8={"format_version": 1}, int8_source="q.pth")
    assert seen == []  # refused from the arguments, before the dtype is resolved
    Predictor(model, cfg, dtype=None)
    assert seen == [True] and warnings.filters is filters


def _calibration_folder(tmp_path):
    (tmp_path / "cal").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "cal" / f"{i}.png")
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photos" / "p.png")


def test_predict_refuses_a_calibration_glob_the_shell_expanded_into_its_inputs(tmp_path, capsys, monkeypatch):
    # IMAGE_OR_DIR took cal/1.png cal/2.png: calibrated on one image, the others predicted as photos (rc 0)
    monkeypatch.chdir(tmp_path)
    _calibration_folder(tmp_path)
    assert cli.main(["predict", "--weights", "w.pth", "--int8", "--calib-images", "cal/0.png", "cal/1.png",
                     "cal/2.png", "photos/", "--output", "pout"]) == 1
    err = capsys.readouterr().err
    assert err.strip().endswith(
        "error: cal/1.png cal/2.png: image(s) of the --calib-images file's folder given to predict right "
        "after it (a shell pattern expanded after --calib-images? it takes one folder or one file: "
        "--calib-images cal; to predict these very files, write them another way: ./cal/1.png "
        "./cal/2.png)"), err
    assert not (tmp_path / "pout").exists()
    with pytest.raises(SystemExit):  # eval takes no positional: the parser leaves them over, as quantize
        cli.main(["eval", "--weights", "w.pth", "--json", "v.json", "--images", "photos", "--int8",
                  "--calib-images", "cal/0.png", "cal/1.png", "cal/2.png"])
    assert "--calib-images cal)" in capsys.readouterr().err


def test_a_quoted_pattern_hint_names_the_folder_before_the_pattern(tmp_path, monkeypatch):
    from maskrcnn.engine.int8 import calibration_files

    monkeypatch.chdir(tmp_path)

    def hint(pattern):
        with pytest.raises(FileNotFoundError) as refused:
            calibration_files(pattern, count=4)
        return str(refused.value).split("not found", 1)[1]

    # were: --calib-images cal/** (another pattern), --calib-images . (the working folder's images),
    # --calib-images my cal (two words to the shell)
    assert hint("cal/**/*.png") == " (a pattern is not expanded: give the folder, --calib-images cal)"
    assert hint("cal*") == " (a pattern is not expanded: give the folder of the calibration images)"
    assert hint("my cal/*.png") == " (a pattern is not expanded: give the folder, --calib-images 'my cal')"
    assert hint("cal/missing.png") == ""


def test_predict_refuses_only_what_the_command_line_shows_as_an_expanded_glob(tmp_path, capsys, monkeypatch):
    # were all refused from the parsed options alone: an input before --calib-images (no pattern could
    # have expanded there), the '=' form (never split by the shell), and './cal/1.png' only by the luck
    # of two path rules disagreeing; the working folder's hint said '--calib-images .'
    monkeypatch.chdir(tmp_path)
    _calibration_folder(tmp_path)

    def said(*words):
        cli.main(["predict", "--weights", "w.pth", "--output", "pout", *words])
        return capsys.readouterr().err

    refusal = "image(s) of the --calib-images file's folder"
    for legitimate in (["cal/1.png", "--int8", "--calib-images", "cal/0.png"],
                       ["--int8", "--calib-images=cal/0.png", "cal/1.png"],
                       ["--int8", "--calib-images", "cal/0.png", "./cal/1.png"],
                       ["--int8", "--calib-images", "cal/0.png", "photos/p.png", "cal/1.png"]):
        err = said(*legitimate)
        assert refusal not in err and "w.pth" in err, (legitimate, err)
    err = said("--int8", "--calib-images", "cal/0.png", "cal/1.png")
    assert err.strip().endswith(
        "error: cal/1.png: image(s) of the --calib-images file's folder given to predict right after it (a "
        "shell pattern expanded after --calib-images? it takes one folder or one file: --calib-images cal; "
        "to predict these very files, write them another way: ./cal/1.png)"), err
    monkeypatch.chdir(tmp_path / "cal")
    err = said("--int8", "--calib-images", "0.png", "1.png")
    assert "--calib-images ." not in err and "give the folder of the calibration images" in err, err
    assert "write them another way: ./1.png)" in err, err
    with pytest.raises(SystemExit):  # quantize's hint: the same rule, the same working-folder wording
        cli.main(["quantize", "--weights", "w.pth", "--calib-images", "0.png", "1.png", "--output", "q.pth"])
    err = capsys.readouterr().err
    assert "--calib-images ." not in err and "give the folder of the calibration images" in err, err
    with pytest.raises(SystemExit):  # a leftover that no pattern put there gets no pattern hint
        cli.main(["quantize", "--weights", "w.pth", "1.png", "--calib-images", "0.png", "--output", "q.pth"])
    assert "shell pattern" not in capsys.readouterr().err


def test_int8_refusal_takes_the_dtype_spellings_resolve_dtype_takes():
    # "fp32" (resolve_dtype's alias of float32) was refused as an autocast; float64 was called an
    # autocast instead of an unsupported dtype
    import torch

    from maskrcnn.predictor import _refuse_int8_options

    for float32 in (None, "float32", "fp32", torch.float32):
        _refuse_int8_options(torch.device("cpu"), float32, "q.pth")  # not refused
    with pytest.raises(ValueError, match="an INT8 model runs on the CPU without autocast"):
        _refuse_int8_options(torch.device("cpu"), "bf16", "q.pth")
    with pytest.raises(ValueError) as refused:
        _refuse_int8_options(torch.device("cpu"), "float64", "q.pth")
    assert str(refused.value) == "dtype 'float64' not supported (float32, bfloat16, float16)"
