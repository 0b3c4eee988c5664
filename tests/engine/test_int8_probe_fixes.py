"""What a hostile probe of quantize / predict --int8 / benchmark / serve / pt2 export found: unreadable
calibration images skipped and counted, --int8 on an INT8 checkpoint ignored with a note, a note for a
--score-thresh below the model's own, benchmark's --threads and empty inputs, the precision in /health,
torch's "No complete tensor" warning filtered around the pt2 save only."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pixel_limit import add_too_large_and_broken, limit_line, small_pixel_limit  # tests/ is on the path
from tiny_model import TINY as TINY_PLAIN  # tests/ is on the path
from tiny_model import TINY_FROZEN_BN as TINY

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides, load_config
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = ["__background__", "cat", "dog"]


def _pngs(folder, n, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / f"c{i}.png")
    return folder


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    path = tmp_path_factory.mktemp("probe") / "fp32.pth"
    save_checkpoint(path, model_state=build_model(cfg).eval().state_dict(), config=cfg, class_names=NAMES)
    return path


def test_unreadable_calibration_image_is_skipped_and_int8_checkpoint_ignores_int8(fp32, tmp_path, capsys):
    calib = _pngs(tmp_path / "calib", 2)
    (calib / "broken.png").write_text("not a png")
    out = tmp_path / "int8.pth"
    assert main(["quantize", "--weights", str(fp32), "--calib-images", str(calib), "--parts", "rpn",
                 "--output", str(out)]) == 0  # one part: quicker
    final, err = capsys.readouterr()
    assert "warning: skipped calibration image" in err and "broken.png" in err
    assert "calibrated on 2 image(s), 1 skipped (1 unreadable_image) in" in err
    assert final.startswith(f"wrote {out}") and out.is_file()
    assert ", 1 calibration image(s) skipped (1 unreadable_image); run it" in final

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_text("not a png")
    assert main(["quantize", "--weights", str(fp32), "--calib-images", str(bad),
                 "--output", str(tmp_path / "no.pth")]) == 1
    err = capsys.readouterr().err
    assert f"none of the 1 calibration image(s) in {bad} could be read" in err
    assert not (tmp_path / "no.pth").exists()

    # an INT8 checkpoint with --int8: the folder (here unreadable) is not even read, one note says why
    photos = _pngs(tmp_path / "photos", 1, seed=5)
    args = [str(photos), "--no-overlays", "--int8", "--calib-images", str(bad)]
    assert main(["predict", "--weights", str(out), "--output", str(tmp_path / "p"), *args]) == 0
    err = capsys.readouterr().err
    assert err.count("already INT8: --int8 / --calib-images not needed") == 1 and ", int8;" in err
    assert "broken.png" not in err


def test_a_calibration_image_over_the_pixel_limit_is_counted_as_too_large_with_the_limit_line(
        fp32, tmp_path, capsys, monkeypatch):
    """Counted as "unreadable", with no word on the limit: the file is good, and a raised limit reads it
    (predict and eval count it as image_too_large, followed by the line saying how to raise it)."""
    small_pixel_limit(monkeypatch, 5000)  # refused over 2 x 5000 pixels
    calib = add_too_large_and_broken(_pngs(tmp_path / "calib", 1), 120)  # c0.png 60x80: under the limit
    out = tmp_path / "int8.pth"
    assert main(["quantize", "--weights", str(fp32), "--calib-images", str(calib), "--parts", "rpn",
                 "--output", str(out)]) == 0
    final, err = capsys.readouterr()
    assert "calibrated on 1 image(s), 2 skipped (1 image_too_large, 1 unreadable_image) in" in err, err
    line = limit_line(1, "0.01")
    assert err.count(line) == 1, err
    assert ", 2 calibration image(s) skipped (1 image_too_large, 1 unreadable_image); run it" in final

    (calib / "c0.png").unlink()  # none left: the refusal counts them and says the limit too
    assert main(["quantize", "--weights", str(fp32), "--calib-images", str(calib), "--parts", "rpn",
                 "--output", str(tmp_path / "no.pth")]) == 1
    err = capsys.readouterr().err
    assert (f"none of the 2 calibration image(s) in {calib} could be read (1 image_too_large, 1 "
            f"unreadable_image); {line}") in err, err


def test_score_thresh_below_the_models_own_lowers_it_for_a_checkpoint_and_is_noted_for_onnx(fp32, tmp_path):
    # random weights score 0.33-0.34 here: a model at 0.333 keeps a few, asked for 0 it keeps the rest too
    image = torch.rand(3, 70, 90, generator=torch.Generator().manual_seed(2))
    own = {"model.roi_heads.score_thresh": 0.333}
    kw = dict(device="cpu", overrides=own, masks="rle")
    as_is = Predictor.from_checkpoint(fp32, **kw)
    lowered = Predictor.from_checkpoint(fp32, score_thresh=0.0, **kw)
    assert as_is.cfg.model.roi_heads.score_thresh == 0.333 and lowered.cfg.model.roi_heads.score_thresh == 0.0
    plain, low = as_is.predict_tensors([image])[0], lowered.predict_tensors([image])[0]
    assert len(plain["scores"]) > 0 and (plain["scores"] > 0.333).all() and (low["scores"] <= 0.333).any()
    above = low["scores"] > 0.333  # what the model kept anyway is unchanged
    assert torch.equal(low["scores"][above], plain["scores"])
    assert torch.equal(low["boxes"][above], plain["boxes"])
    # an ONNX graph's threshold is fixed at export: predict and serve say how to lower it
    cfg = load_config("demo", {"model.roi_heads.score_thresh": 0.05})
    onnx = SimpleNamespace(runtime=True, cfg=cfg)
    note = Predictor.fixed_threshold_note(onnx, 0.0)
    assert "the exported model's own 0.05" in note
    assert "export again with --set model.roi_heads.score_thresh=0 " in note
    assert "detections_per_image" in note
    assert Predictor.fixed_threshold_note(onnx, 0.05) is None
    assert Predictor.fixed_threshold_note(onnx, None) is None
    assert lowered.fixed_threshold_note(0.0) is None  # a checkpoint's was lowered


def test_benchmark_refuses_negative_threads_and_names_empty_inputs(fp32, tmp_path, capsys):
    before = torch.get_num_threads()
    assert main(["benchmark", "--weights", str(fp32), "--threads", "-3"]) == 1
    assert "--threads must be >= 0" in capsys.readouterr().err and torch.get_num_threads() == before
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    assert main(["benchmark", "--weights", str(fp32), str(empty)]) == 1
    assert f"no image files found in the inputs: {empty}" in capsys.readouterr().err


def test_precision_for_health():
    precision = Predictor.precision.fget
    model = torch.nn.Linear(2, 2)
    asked = dict(runtime=None, model=model)
    assert precision(SimpleNamespace(int8_parts=["features"], dtype=None, **asked)) == "int8"
    assert precision(SimpleNamespace(int8_parts=[], dtype=torch.bfloat16, **asked)) == "bfloat16"
    assert precision(SimpleNamespace(int8_parts=[], dtype=None, **asked)) == "float32"
    double = SimpleNamespace(int8_parts=[], dtype=None, runtime=None, model=model.double())
    assert precision(double) == "float64"  # a caller's own float64 model is said as it is


def test_pt2_export_filters_only_torchs_no_complete_tensor_warning(monkeypatch, tmp_path):
    from maskrcnn.export import pt2

    def save(program, buf, **kwargs):  # kwargs: the archive's extra files (its metadata)
        warnings.warn("No complete tensor found in the group! Returning the first one. This may cause "
                      "issues when your weights are not on CPU.", stacklevel=2)
        warnings.warn("another warning", UserWarning, stacklevel=2)
        buf.write(b"x")

    monkeypatch.setattr(torch.export, "export", lambda *a, **k: "program")
    monkeypatch.setattr(torch.export, "save", save)
    model = build_model(load_config("demo", TINY_PLAIN))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        pt2.export_features(model, tmp_path / "m.pt2")
        assert warnings.filters == filters  # no filter left behind for the rest of the process
    assert [str(w.message) for w in seen] == ["another warning"] and (tmp_path / "m.pt2").read_bytes() == b"x"


def test_a_calibration_set_without_detections_is_named_as_the_reason_the_mask_head_saw_nothing(
        fp32, tmp_path, capsys):
    # score_thresh 0.99: the untrained model detects nothing, as a background-only image would give
    calib = _pngs(tmp_path / "calib", 1)
    out = tmp_path / "int8.pth"
    assert main(["quantize", "--weights", str(fp32), "--calib-images", str(calib),
                 "--parts", "box_head,mask_head", "--set", "model.roi_heads.score_thresh=0.99",
                 "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["maskrcnn quantize: error: int8: mask_head is calibrated on the detected boxes, and none "
                   "of the 1 calibration image(s) gave a detection (score >= model.roi_heads.score_thresh "
                   "0.99); calibrate on images that show the objects the model finds (one with a detection "
                   "is enough; check with `maskrcnn predict`), or leave it out with --parts box_head"]
    assert not out.exists()
