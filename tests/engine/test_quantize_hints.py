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
